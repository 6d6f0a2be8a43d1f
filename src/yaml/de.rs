//! serde over [`Node`]s, with errors that know where they are.
//!
//! Every error raised while deserializing a node (a wrong type, an unknown field, a
//! missing one, a bad value from a custom type's parser) is tagged with the span of the
//! innermost node it surfaced at, so the user sees `file:line:column` and a caret.
//!
//! Two modes:
//! - [`Mode::Strict`]: what runs. Every value must have the right type.
//! - [`Mode::Validate`]: what `opsctl validate` and the loader use before anything runs.
//!   A scalar holding a `{{ }}` template cannot be typed yet, so it stands in for any
//!   scalar: numbers read as zero, booleans as false, strings as [`TEMPLATE_PLACEHOLDER`].
//!   Custom field types that parse strings (durations, regexes) accept the placeholder.
//!   Everything that is not templated is checked exactly as at run time.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};

use super::{Node, Resolved, Scalar, Style, Value};
use crate::diagnostic::did_you_mean;
use crate::source::Span;

/// What a templated scalar reads as in [`Mode::Validate`]. Types that parse strings must
/// accept it (see [`is_placeholder`]).
pub const TEMPLATE_PLACEHOLDER: &str = "\u{1}opsctl-template\u{1}";

pub fn is_placeholder(s: &str) -> bool {
    s == TEMPLATE_PLACEHOLDER
}

/// True when a scalar's text holds template syntax.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Strict,
    Validate,
}

/// A deserialization error and the node it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub span: Option<Span>,
    pub label: Option<String>,
    pub help: Option<String>,
}

impl DeError {
    pub fn new(message: impl Into<String>) -> DeError {
        DeError { message: message.into(), span: None, label: None, help: None }
    }

    /// Tags the error with `span` unless an inner node already did.
    pub fn or_at(mut self, span: Span) -> DeError {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }

    fn with_label(mut self, label: impl Into<String>) -> DeError {
        self.label = Some(label.into());
        self
    }

    /// The error as a diagnostic in `file`, at its node or else at `fallback`.
    pub fn diagnostic(self, file: &std::sync::Arc<crate::source::SourceFile>, fallback: Span) -> crate::diagnostic::Diagnostic {
        let inline_secret = self.message == crate::secret::INLINE_SECRET;
        let mut d = crate::diagnostic::Diagnostic::new(self.message).at(file, self.span.unwrap_or(fallback));
        if inline_secret {
            d = d.hide_source().help("the line is not shown: it may hold the secret");
        }
        if let Some(l) = self.label {
            d = d.label(l);
        }
        if let Some(h) = self.help {
            d = d.help(h);
        }
        d
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(label) = &self.label {
            write!(f, "; {label}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("expected {}, found {}", expected_text(exp), unexpected_text(&unexp)))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("invalid value {}: expected {}", unexpected_text(&unexp), expected_text(exp)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let err = DeError::new(format!("unknown field `{field}`"));
        match did_you_mean(field, expected.iter().copied()) {
            Some(s) => err.with_label(format!("did you mean `{s}`?")),
            None if expected.is_empty() => err.with_label("this takes no fields"),
            None => err.with_label(format!("expected one of {}", quoted_list(expected))),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let err = DeError::new(format!("unknown value `{variant}`"));
        match did_you_mean(variant, expected.iter().copied()) {
            Some(s) => err.with_label(format!("did you mean `{s}`?")),
            None => err.with_label(format!("expected one of {}", quoted_list(expected))),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(format!("missing required field `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::new(format!("field `{field}` is given twice"))
    }
}

pub fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
}

fn expected_text(exp: &dyn de::Expected) -> String {
    let s = exp.to_string();
    match s.as_str() {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number ≥ 0".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        "unit" => "nothing (null)".into(),
        "a borrowed string" => "a string".into(),
        _ if s.starts_with("struct ") => "a mapping".into(),
        _ if s.starts_with("tuple struct ") => "a value".into(),
        _ => s,
    }
}

fn unexpected_text(u: &Unexpected<'_>) -> String {
    match u {
        Unexpected::Str(s) => format!("the string \"{s}\""),
        Unexpected::Signed(v) => v.to_string(),
        Unexpected::Unsigned(v) => v.to_string(),
        Unexpected::Float(v) => v.to_string(),
        Unexpected::Bool(b) => format!("the boolean {b}"),
        Unexpected::Unit => "nothing (null)".into(),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map => "a mapping".into(),
        other => other.to_string(),
    }
}

/// A value written as a string (its shorthand) or as the mapping `M`: `/health` or
/// `{ path: /ready, … }`; `backup` or `{ runbook: backup, … }`. `expecting` is what the
/// error says it wanted.
pub fn string_or_map<'de, D, M, T>(d: D, expecting: &'static str, short: fn(&str) -> T, full: fn(M) -> T) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    M: serde::Deserialize<'de>,
{
    struct V<M, T> {
        expecting: &'static str,
        short: fn(&str) -> T,
        full: fn(M) -> T,
    }
    impl<'de, M: serde::Deserialize<'de>, T> Visitor<'de> for V<M, T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            Ok((self.short)(s))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            M::deserialize(de::value::MapAccessDeserializer::new(map)).map(self.full)
        }
    }
    d.deserialize_any(V { expecting, short, full })
}

/// The JSON Schema of a [`string_or_map`] value: a string (`string` describes it) or `M`.
pub fn string_or_map_schema<M: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator, string: &str) -> schemars::Schema {
    schemars::json_schema!({ "anyOf": [{ "type": "string", "description": string }, g.subschema_for::<M>()] })
}

/// Deserializes a node into `T`.
pub fn from_node<T: DeserializeOwned>(node: &Node, mode: Mode) -> Result<T, DeError> {
    T::deserialize(NodeDe { node, mode })
}

/// A serde `Deserializer` for one node.
#[derive(Clone, Copy)]
pub struct NodeDe<'a> {
    pub node: &'a Node,
    pub mode: Mode,
}

impl<'a> NodeDe<'a> {
    fn scalar(&self) -> Option<&'a Scalar> {
        match &self.node.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// True when this node is a template that cannot be typed yet.
    fn is_wildcard(&self) -> bool {
        self.mode == Mode::Validate && self.scalar().is_some_and(|s| is_template(&s.text))
    }

    fn unexpected(&self) -> Unexpected<'a> {
        match &self.node.value {
            Value::Null => Unexpected::Unit,
            Value::Seq(_) => Unexpected::Seq,
            Value::Map(_) => Unexpected::Map,
            Value::Scalar(s) => match s.resolve() {
                Resolved::Null => Unexpected::Unit,
                Resolved::Bool(b) => Unexpected::Bool(b),
                Resolved::Int(i) => Unexpected::Signed(i),
                Resolved::UInt(u) => Unexpected::Unsigned(u),
                Resolved::Float(f) => Unexpected::Float(f),
                Resolved::Str(_) => Unexpected::Str(&s.text),
            },
        }
    }

    fn type_error(&self, exp: &dyn de::Expected) -> DeError {
        <DeError as de::Error>::invalid_type(self.unexpected(), exp).or_at(self.node.span)
    }

    fn integer<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_wildcard() {
            return visitor.visit_u64(0);
        }
        match self.scalar().map(Scalar::resolve_typed) {
            Some(Resolved::Int(i)) => visitor.visit_i64(i),
            Some(Resolved::UInt(u)) => visitor.visit_u64(u),
            _ => Err(self.type_error(&visitor)),
        }
        .map_err(|e| e.or_at(self.node.span))
    }

    fn float<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_wildcard() {
            return visitor.visit_f64(0.0);
        }
        match self.scalar().map(Scalar::resolve_typed) {
            Some(Resolved::Int(i)) => visitor.visit_f64(i as f64),
            Some(Resolved::UInt(u)) => visitor.visit_f64(u as f64),
            Some(Resolved::Float(f)) => visitor.visit_f64(f),
            _ => Err(self.type_error(&visitor)),
        }
        .map_err(|e| e.or_at(self.node.span))
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_wildcard() {
            return visitor.visit_str(TEMPLATE_PLACEHOLDER);
        }
        let span = self.node.span;
        match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Scalar(s) => match s.resolve() {
                Resolved::Null => visitor.visit_unit(),
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::Int(i) => visitor.visit_i64(i),
                Resolved::UInt(u) => visitor.visit_u64(u),
                Resolved::Float(f) => visitor.visit_f64(f),
                Resolved::Str(t) => visitor.visit_str(t),
            },
            Value::Seq(items) => visitor.visit_seq(SeqAccess { items: items.iter(), mode: self.mode }),
            Value::Map(entries) => visitor.visit_map(MapAccess { entries: entries.iter(), value: None, mode: self.mode }),
        }
        .map_err(|e| e.or_at(span))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_wildcard() {
            return visitor.visit_bool(false);
        }
        match self.scalar().map(Scalar::resolve_typed) {
            Some(Resolved::Bool(b)) => visitor.visit_bool(b),
            _ => Err(self.type_error(&visitor)),
        }
        .map_err(|e| e.or_at(self.node.span))
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.integer(v)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.float(v)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.float(v)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_wildcard() {
            return visitor.visit_str(TEMPLATE_PLACEHOLDER);
        }
        match &self.node.value {
            // Any scalar reads as its text: `version: 1.20` is the string "1.20".
            Value::Scalar(s) if !(s.style == Style::Plain && s.text.is_empty()) => visitor.visit_str(&s.text),
            _ => Err(self.type_error(&visitor)),
        }
        .map_err(|e| e.or_at(self.node.span))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() { visitor.visit_none() } else { visitor.visit_some(self) }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() { visitor.visit_unit() } else { Err(self.type_error(&visitor)) }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_wildcard() {
            return visitor.visit_seq(SeqAccess { items: [].iter(), mode: self.mode });
        }
        match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(SeqAccess { items: items.iter(), mode: self.mode }),
            _ => Err(self.type_error(&visitor)),
        }
        .map_err(|e| e.or_at(self.node.span))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _name: &'static str, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_wildcard() {
            return visitor.visit_map(MapAccess { entries: [].iter(), value: None, mode: self.mode });
        }
        match &self.node.value {
            Value::Map(entries) => visitor.visit_map(MapAccess { entries: entries.iter(), value: None, mode: self.mode }),
            // `headers:` with nothing after it is an empty mapping.
            _ if self.node.is_null() => visitor.visit_map(MapAccess { entries: [].iter(), value: None, mode: self.mode }),
            _ => Err(self.type_error(&visitor)),
        }
        .map_err(|e| e.or_at(self.node.span))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if self.is_wildcard() {
            return Err(DeError::new(format!("a template cannot stand for a whole mapping ({name}) here"))
                .or_at(self.node.span)
                .with_label("write the fields out and template their values"));
        }
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let span = self.node.span;
        if self.is_wildcard() {
            let first = variants.first().copied().unwrap_or("");
            return visitor.visit_enum(first.into_deserializer()).map_err(|e: DeError| e.or_at(span));
        }
        match &self.node.value {
            Value::Scalar(s) => visitor.visit_enum(s.text.as_str().into_deserializer()),
            Value::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                visitor
                    .visit_enum(EnumAccess { key: k, value: v, mode: self.mode })
            }
            Value::Map(entries) => Err(DeError::new(format!(
                "expected exactly one of {}, found {}",
                quoted_list(variants),
                if entries.is_empty() { "none".to_string() } else {
                    entries.iter().filter_map(|(k, _)| k.as_str()).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
                }
            ))),
            _ => Err(self.type_error(&format!("one of {}", quoted_list(variants)).as_str())),
        }
        .map_err(|e| e.or_at(span))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
    mode: Mode,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some(node) => seed.deserialize(NodeDe { node, mode: self.mode }).map(Some).map_err(|e| e.or_at(node.span)),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
    mode: Mode,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.value = Some(v);
                // Keys are never templates: deserialize them strictly.
                seed.deserialize(NodeDe { node: k, mode: Mode::Strict }).map(Some).map_err(|e| e.or_at(k.span))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self.value.take().expect("serde calls next_value after next_key");
        seed.deserialize(NodeDe { node, mode: self.mode }).map_err(|e| e.or_at(node.span))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumAccess<'a> {
    key: &'a Node,
    value: &'a Node,
    mode: Mode,
}

impl<'de> de::EnumAccess<'de> for EnumAccess<'de> {
    type Error = DeError;
    type Variant = NodeDe<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, NodeDe<'de>), DeError> {
        let variant = seed.deserialize(NodeDe { node: self.key, mode: Mode::Strict }).map_err(|e| e.or_at(self.key.span))?;
        Ok((variant, NodeDe { node: self.value, mode: self.mode }))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        if self.node.is_null() { Ok(()) } else { Err(DeError::new("this value takes no parameters").or_at(self.node.span)) }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self).map_err(|e| e.or_at(self.node.span))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        url: String,
        #[serde(default)]
        replicas: Option<u32>,
        #[serde(default)]
        enabled: bool,
        #[serde(default)]
        mode: Option<Kind>,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Fast,
        Slow,
    }

    fn load(text: &str, mode: Mode) -> (std::sync::Arc<SourceFile>, Result<Probe, DeError>) {
        let file = SourceFile::new("p.yaml", text);
        let node = super::super::parse(&file).unwrap();
        let r = from_node::<Probe>(&node, mode);
        (file, r)
    }

    fn position(file: &SourceFile, err: &DeError) -> (usize, usize) {
        file.line_col(err.span.expect("error has a span").start)
    }

    #[test]
    fn reads_typed_values() {
        let (_, r) = load("url: http://x\nreplicas: 3\nenabled: true\nmode: slow\ntags: [a, b]\n", Mode::Strict);
        assert_eq!(
            r.unwrap(),
            Probe { url: "http://x".into(), replicas: Some(3), enabled: true, mode: Some(Kind::Slow), tags: vec!["a".into(), "b".into()] }
        );
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let (file, r) = load("url: http://x\nreplicas: many\n", Mode::Strict);
        let err = r.unwrap_err();
        assert_eq!(err.message, "expected a whole number ≥ 0, found the string \"many\"");
        assert_eq!(position(&file, &err), (2, 11));
    }

    #[test]
    fn negative_numbers_are_out_of_range_for_counts() {
        let (file, r) = load("url: x\nreplicas: -1\n", Mode::Strict);
        let err = r.unwrap_err();
        assert_eq!(err.message, "invalid value -1: expected a whole number ≥ 0");
        assert_eq!(position(&file, &err), (2, 11));
    }

    #[test]
    fn unknown_field_points_at_the_key_and_suggests() {
        let (file, r) = load("url: x\nreplica: 3\n", Mode::Strict);
        let err = r.unwrap_err();
        assert_eq!(err.message, "unknown field `replica`");
        assert_eq!(err.label.as_deref(), Some("did you mean `replicas`?"));
        assert_eq!(position(&file, &err), (2, 1));
    }

    #[test]
    fn missing_field_points_at_the_mapping() {
        let (file, r) = load("outer: 1\n", Mode::Strict);
        let err = r.unwrap_err();
        assert_eq!(err.message, "unknown field `outer`");
        let (file2, r2) = load("replicas: 2\n", Mode::Strict);
        let err2 = r2.unwrap_err();
        assert_eq!(err2.message, "missing required field `url`");
        assert_eq!(position(&file2, &err2), (1, 1));
        let _ = file;
    }

    #[test]
    fn unknown_enum_value_suggests() {
        let (_, r) = load("url: x\nmode: fsat\n", Mode::Strict);
        let err = r.unwrap_err();
        assert_eq!(err.message, "unknown value `fsat`");
        assert_eq!(err.label.as_deref(), Some("did you mean `fast`?"));
    }

    #[test]
    fn templates_are_wildcards_only_when_validating() {
        let text = "url: \"{{ instance.http.base_url }}\"\nreplicas: \"{{ params.n }}\"\nenabled: \"{{ params.on }}\"\nmode: \"{{ params.mode }}\"\n";
        let (_, r) = load(text, Mode::Validate);
        let probe = r.unwrap();
        assert_eq!(probe.url, TEMPLATE_PLACEHOLDER);
        assert_eq!(probe.replicas, Some(0));
        let (_, strict) = load(text, Mode::Strict);
        assert!(strict.is_err());
    }

    #[test]
    fn rendered_scalars_are_typed() {
        let node = Node::new(Span::new(0, 0), Value::Map(vec![
            (Node::string(Span::default(), "url"), Node::string(Span::default(), "x")),
            (Node::string(Span::default(), "replicas"), Node::new(Span::default(), Value::Scalar(Scalar { text: "4".into(), style: Style::Rendered }))),
        ]));
        let probe: Probe = from_node(&node, Mode::Strict).unwrap();
        assert_eq!(probe.replicas, Some(4));
    }
}
