//! A regular expression parameter, compiled when the runbook loads.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::yaml::de::is_placeholder;

/// A regex written in a runbook (`expect_body: "(?i)ok"`). Compiled at load time so a bad
/// pattern is an error with a position, not a failure in the middle of a run.
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
    /// `None` while the pattern is a template that has not been rendered yet.
    regex: Option<regex::Regex>,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, String> {
        let regex = regex::RegexBuilder::new(source)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("invalid regular expression `{source}`: {}", first_line(&e.to_string())))?;
        Ok(Pattern { source: source.to_string(), regex: Some(regex) })
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(text))
    }

    pub fn regex(&self) -> Option<&regex::Regex> {
        self.regex.as_ref()
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

fn first_line(s: &str) -> String {
    // regex errors are multi-line with their own caret; keep the last line, the reason.
    s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(s).trim().trim_start_matches("error: ").to_string()
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let s = String::deserialize(d)?;
        if is_placeholder(&s) {
            return Ok(Pattern { source: s, regex: None });
        }
        Pattern::new(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Pattern {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Pattern".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "regex", "description": "A regular expression (Rust regex syntax)" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_matches() {
        let p = Pattern::new("(?i)ok").unwrap();
        assert!(p.is_match("All OK"));
        assert_eq!(p.to_string(), "/(?i)ok/");
    }

    #[test]
    fn bad_patterns_say_why() {
        let err = Pattern::new("a(b").unwrap_err();
        assert_eq!(err, "invalid regular expression `a(b`: unclosed group");
    }
}
