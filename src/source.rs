//! Source text with positions.
//!
//! Every user error in opsctl points at a place in a file. A [`SourceFile`] holds the
//! text of one runbook or inventory and turns byte offsets into `line:column` pairs; a
//! [`Span`] is a byte range inside it. The YAML loader records a span for every node,
//! so errors found long after parsing (a bad reference, a duplicate id) still know where
//! they came from.

use std::sync::Arc;

/// A byte range `start..end` in a [`SourceFile`]'s text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end: end.max(start) }
    }

    /// A sub-range of this span, `offset..offset+len` bytes from its start, clamped to it.
    pub fn sub(self, offset: usize, len: usize) -> Span {
        let start = (self.start + offset).min(self.end.max(self.start));
        Span::new(start, (start + len).min(self.end.max(start + 1)))
    }
}

/// One file's text, shared by everything that was loaded from it.
#[derive(Debug)]
pub struct SourceFile {
    /// How the file is named in messages: the path as the user gave it, or
    /// `<embedded>/check.yaml` for a runbook shipped inside the binary.
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<SourceFile> {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Arc::new(SourceFile { name: name.into(), text, line_starts })
    }

    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self.text[start..floor_char_boundary(&self.text, offset)].chars().count();
        (line + 1, col + 1)
    }

    /// The text of a 1-based line, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else { return "" };
        let end = self.line_starts.get(line).map_or(self.text.len(), |&e| e);
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }

    /// Byte offset of a 1-based line and a 0-based column counted in characters, as the
    /// YAML scanner reports them.
    pub fn offset_of(&self, line: usize, col_chars: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        match rest.char_indices().nth(col_chars) {
            Some((i, _)) => start + i,
            None => self.text.len(),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let f = SourceFile::new("x.yaml", "a: 1\nbé: xyz\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(5), (2, 1));
        // 'é' is two bytes; "xyz" starts at byte 10 but column 5.
        assert_eq!(f.line_col(10), (2, 5));
        assert_eq!(f.line_text(2), "bé: xyz");
        assert_eq!(f.offset_of(2, 4), 10);
    }
}
