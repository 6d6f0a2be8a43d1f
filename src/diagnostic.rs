//! User-facing errors with a position, rendered in one place.
//!
//! A [`Diagnostic`] is what opsctl says when input is wrong: a message, the file and span
//! it is about, a short label under the caret and optional help lines. Rendering mimics
//! rustc so people recognise it:
//!
//! ```text
//! error: unknown step kind `http.chek`
//!   --> deploy.yaml:7:5
//!    |
//!  7 |     http.chek: { url: "https://x" }
//!    |     ^^^^^^^^^ did you mean `http.check`?
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use crate::source::{SourceFile, Span};

/// An error in user input, with where it is.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub message: String,
    pub location: Option<(Arc<SourceFile>, Span)>,
    /// Printed after the caret.
    pub label: Option<String>,
    /// `= help: …` lines.
    pub help: Vec<String>,
    /// Show where, but not the source line (it may hold a secret written inline).
    pub hide_source: bool,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic { message: message.into(), location: None, label: None, help: Vec::new(), hide_source: false }
    }

    pub fn at(mut self, file: &Arc<SourceFile>, span: Span) -> Diagnostic {
        self.location = Some((file.clone(), span));
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help.push(help.into());
        self
    }

    /// Keeps the source line out of the message.
    pub fn hide_source(mut self) -> Diagnostic {
        self.hide_source = true;
        self
    }

    /// `file:line:column`, or `None` when the error is not about a file.
    pub fn position(&self) -> Option<String> {
        self.location.as_ref().map(|(file, span)| {
            let (line, col) = file.line_col(span.start);
            format!("{}:{line}:{col}", file.name)
        })
    }

    /// The full text, with ANSI colours when `color` is set.
    pub fn render(&self, color: bool) -> String {
        let paint = Paint { on: color };
        let mut out = String::new();
        let _ = writeln!(out, "{}{}", paint.red_bold("error"), paint.bold(&format!(": {}", self.message)));
        if let Some((file, span)) = &self.location {
            let (line, col) = file.line_col(span.start);
            let text = file.line_text(line);
            let number = line.to_string();
            let pad = " ".repeat(number.len());
            let _ = writeln!(out, "{pad}{} {}:{line}:{col}", paint.blue("-->"), file.name);
            if self.hide_source {
                if let Some(label) = &self.label {
                    let _ = writeln!(out, "{pad} {} {label}", paint.blue("="));
                }
                for help in &self.help {
                    let _ = writeln!(out, "  {} {help}", paint.bold("= help:"));
                }
                return out;
            }
            let _ = writeln!(out, "{pad} {}", paint.blue("|"));
            let _ = writeln!(out, "{} {} {}", paint.blue(&number), paint.blue("|"), text.replace('\t', " "));
            // The caret runs to the end of the span or of the line, at least one character.
            let (end_line, end_col) = file.line_col(span.end);
            let width = if end_line == line && end_col > col {
                end_col - col
            } else {
                text.chars().count().saturating_sub(col - 1).max(1)
            };
            let indent = " ".repeat(col - 1);
            let mut caret = format!("{indent}{}", "^".repeat(width));
            if let Some(label) = &self.label {
                caret.push(' ');
                caret.push_str(label);
            }
            let _ = writeln!(out, "{pad} {} {}", paint.blue("|"), paint.red_bold(&caret));
        } else if let Some(label) = &self.label {
            let _ = writeln!(out, "  {label}");
        }
        for help in &self.help {
            let _ = writeln!(out, "  {} {help}", paint.bold("= help:"));
        }
        out
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(position) = self.position() {
            write!(f, "{position}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(label) = &self.label {
            write!(f, " ({label})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// The "did you mean" suggestion: the closest candidate, if it is close enough.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (c, strsim::damerau_levenshtein(&word_lower, &c.to_lowercase())))
        .filter(|&(c, d)| d <= 2.max(c.len() / 3) && d < c.len().max(word.len()))
        .min_by_key(|&(_, d)| d)
        .map(|(c, _)| c)
}

/// ANSI styling that disappears when colour is off.
#[derive(Clone, Copy)]
pub struct Paint {
    pub on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }
    pub fn red_bold(&self, s: &str) -> String {
        self.wrap("1;31", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    pub fn blue(&self, s: &str) -> String {
        self.wrap("1;34", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_position_snippet_and_caret() {
        let file = SourceFile::new("bad.yaml", "steps:\n  - http.chek: {}\n");
        let d = Diagnostic::new("unknown step kind `http.chek`")
            .at(&file, Span::new(11, 20))
            .label("did you mean `http.check`?");
        assert_eq!(
            d.render(false),
            "error: unknown step kind `http.chek`\n --> bad.yaml:2:5\n  |\n2 |   - http.chek: {}\n  |     ^^^^^^^^^ did you mean `http.check`?\n"
        );
    }

    #[test]
    fn suggestions_are_close_words_only() {
        let kinds = ["http.check", "host.disk", "host.memory"];
        assert_eq!(did_you_mean("http.chek", kinds), Some("http.check"));
        assert_eq!(did_you_mean("host.dsik", kinds), Some("host.disk"));
        assert_eq!(did_you_mean("postgres.ping", kinds), None);
    }
}
