//! YAML as a tree of nodes that remember where they came from.
//!
//! Runbooks and the inventory are parsed into [`Node`]s, each with a [`Span`], instead of
//! straight into Rust types. That lets us:
//! - report every error at `file:line:column`, including errors found after parsing
//!   (unresolved references, duplicate ids);
//! - keep step parameters as data until run time, when `{{ }}` templates are rendered,
//!   and deserialize them into each step kind's typed struct with [`de::from_node`];
//! - refuse hostile input early: alias expansion is budgeted (no "billion laughs"),
//!   nesting depth is bounded, duplicate keys are errors.
//!
//! Scalars keep their source text; types are resolved on demand with the YAML 1.2 core
//! schema (`true`, `12`, `1.5`, `null`), so `version: 1.20` stays `"1.20"` when a string is
//! wanted.

pub mod de;

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::diagnostic::Diagnostic;
use crate::source::{SourceFile, Span};

/// Nodes added by expanding aliases, at most. A legitimate runbook reuses a few anchored
/// blocks; an alias bomb asks for billions.
pub const ALIAS_EXPANSION_LIMIT: usize = 100_000;
/// Nesting depth, at most.
pub const DEPTH_LIMIT: usize = 64;
/// Files larger than this are not runbooks.
pub const SIZE_LIMIT: usize = 16 * 1024 * 1024;

/// One YAML node and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in source order; keys are unique scalars.
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub style: Style,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Unquoted: the type comes from the text (`12` is a number, `true` a boolean).
    Plain,
    /// Quoted or a block scalar: always a string.
    Quoted,
    /// Text produced by rendering a template: a string, but a number or boolean field
    /// parses it (`replicas: "{{ params.n }}"` works whether `n` is `3` or `"3"`).
    Rendered,
}

/// A scalar resolved with the YAML 1.2 core schema.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a str),
}

impl Scalar {
    pub fn resolve(&self) -> Resolved<'_> {
        match self.style {
            Style::Plain => resolve_plain(&self.text),
            Style::Quoted | Style::Rendered => Resolved::Str(&self.text),
        }
    }

    /// The value for a number or boolean field: rendered text is parsed like plain text.
    pub fn resolve_typed(&self) -> Resolved<'_> {
        match self.style {
            Style::Plain | Style::Rendered => resolve_plain(&self.text),
            Style::Quoted => Resolved::Str(&self.text),
        }
    }
}

/// The YAML 1.2 core schema for plain scalars.
pub fn resolve_plain(t: &str) -> Resolved<'_> {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Resolved::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let bytes = t.as_bytes();
    let numeric_start = matches!(bytes[0], b'0'..=b'9' | b'-' | b'+' | b'.');
    if !numeric_start {
        return Resolved::Str(t);
    }
    if let Some(hex) = t.strip_prefix("0x")
        && let Ok(v) = u64::from_str_radix(hex, 16) {
            return Resolved::UInt(v);
        }
    if let Some(oct) = t.strip_prefix("0o")
        && let Ok(v) = u64::from_str_radix(oct, 8) {
            return Resolved::UInt(v);
        }
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = t.parse::<i64>() {
            return Resolved::Int(v);
        }
        if let Ok(v) = t.trim_start_matches('+').parse::<u64>() {
            return Resolved::UInt(v);
        }
    }
    let float_like = digits.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    if float_like
        && let Ok(v) = t.parse::<f64>() {
            return Resolved::Float(v);
        }
    Resolved::Str(t)
}

impl Node {
    pub fn new(span: Span, value: Value) -> Node {
        Node { span, value }
    }

    pub fn string(span: Span, text: impl Into<String>) -> Node {
        Node::new(span, Value::Scalar(Scalar { text: text.into(), style: Style::Quoted }))
    }

    /// The scalar's text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        match &self.value {
            Value::Null => true,
            Value::Scalar(s) => s.style == Style::Plain && matches!(resolve_plain(&s.text), Resolved::Null),
            _ => false,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// "a mapping", "a list", "a string", … for messages.
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing (null)",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Scalar(s) => match s.resolve() {
                Resolved::Null => "nothing (null)",
                Resolved::Bool(_) => "a boolean",
                Resolved::Int(_) | Resolved::UInt(_) => "a number",
                Resolved::Float(_) => "a number",
                Resolved::Str(_) => "a string",
            },
        }
    }

    /// Every scalar below this node, depth first, in source order.
    pub fn scalars(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            match &node.value {
                Value::Scalar(_) => out.push(node),
                Value::Null => {}
                Value::Seq(items) => stack.extend(items.iter().rev()),
                Value::Map(entries) => {
                    for (k, v) in entries.iter().rev() {
                        stack.push(v);
                        stack.push(k);
                    }
                }
            }
        }
        out
    }
}

/// Reads a file for the YAML loader, with clear errors for what is not text. `what` names
/// the file's role in messages: "runbook", "inventory".
pub fn read_source(path: &std::path::Path, what: &str) -> Result<Arc<SourceFile>, Diagnostic> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| Diagnostic::new(format!("cannot read {what} {name}: {}", crate::error::io_reason(&e))))?;
    source_from_bytes(&name, what, bytes)
}

/// Checks size and encoding of raw file bytes.
pub fn source_from_bytes(name: &str, what: &str, bytes: Vec<u8>) -> Result<Arc<SourceFile>, Diagnostic> {
    let display = format!("{what} {name}");
    if bytes.len() > SIZE_LIMIT {
        return Err(Diagnostic::new(format!(
            "{display} is {} bytes; a runbook or inventory may be at most {SIZE_LIMIT} bytes",
            bytes.len()
        )));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(name, text)),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            let file = SourceFile::new(name, text);
            let (line, col) = file.line_col(valid);
            Err(Diagnostic::new(format!(
                "{display} is not valid UTF-8: byte {valid} (line {line}, column {col}) is 0x{:02x}",
                bytes[valid]
            ))
            .help("save the file as UTF-8"))
        }
    }
}

/// Parses one YAML document. An empty document is [`Value::Null`].
pub fn parse(file: &Arc<SourceFile>) -> Result<Node, Diagnostic> {
    Builder::new(file).run()
}

struct Builder<'f> {
    file: &'f Arc<SourceFile>,
    anchors: HashMap<usize, (Node, usize)>,
    expanded: usize,
}

enum Frame {
    Seq { start: usize, anchor: usize, items: Vec<Node>, size: usize },
    Map { start: usize, anchor: usize, entries: Vec<(Node, Node)>, key: Option<Node>, size: usize, merges: Vec<Node> },
}

impl<'f> Builder<'f> {
    fn new(file: &'f Arc<SourceFile>) -> Builder<'f> {
        Builder { file, anchors: HashMap::new(), expanded: 0 }
    }

    fn offset(&self, m: &saphyr_parser::Marker) -> usize {
        self.file.offset_of(m.line(), m.col())
    }

    fn error(&self, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic::new(message).at(self.file, span)
    }

    fn run(mut self) -> Result<Node, Diagnostic> {
        let mut parser = Parser::new_from_str(&self.file.text);
        let mut stack: Vec<Frame> = Vec::new();
        let mut root: Option<Node> = None;
        let mut documents = 0;
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|e| {
                let at = self.offset(e.marker());
                self.error(format!("invalid YAML: {}", e.info()), Span::new(at, at + 1))
            })?;
            let start = self.offset(&span.start);
            let end = self.offset(&span.end);
            let node = match event {
                Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(self
                            .error("expected a single YAML document, found another one", Span::new(start, end.max(start + 3)))
                            .help("split the documents into separate files"));
                    }
                    continue;
                }
                Event::SequenceStart(anchor, tag) => {
                    self.check_tag(tag.as_deref(), Span::new(start, end))?;
                    if stack.len() >= DEPTH_LIMIT {
                        return Err(self.error(format!("YAML is nested more than {DEPTH_LIMIT} levels deep"), Span::new(start, end)));
                    }
                    stack.push(Frame::Seq { start, anchor, items: Vec::new(), size: 1 });
                    continue;
                }
                Event::MappingStart(anchor, tag) => {
                    self.check_tag(tag.as_deref(), Span::new(start, end))?;
                    if stack.len() >= DEPTH_LIMIT {
                        return Err(self.error(format!("YAML is nested more than {DEPTH_LIMIT} levels deep"), Span::new(start, end)));
                    }
                    stack.push(Frame::Map { start, anchor, entries: Vec::new(), key: None, size: 1, merges: Vec::new() });
                    continue;
                }
                Event::SequenceEnd => {
                    let Some(Frame::Seq { start, anchor, items, size }) = stack.pop() else {
                        unreachable!("the YAML parser balances sequences")
                    };
                    let node = Node::new(Span::new(start, end), Value::Seq(items));
                    self.remember(anchor, &node, size);
                    (node, size)
                }
                Event::MappingEnd => {
                    let Some(Frame::Map { start, anchor, mut entries, size, merges, .. }) = stack.pop() else {
                        unreachable!("the YAML parser balances mappings")
                    };
                    self.apply_merges(&mut entries, merges)?;
                    let node = Node::new(Span::new(start, end), Value::Map(entries));
                    self.remember(anchor, &node, size);
                    (node, size)
                }
                Event::Scalar(text, style, anchor, tag) => {
                    let span = Span::new(start, end);
                    let forced_string = self.check_tag(tag.as_deref(), span)?;
                    let style = match style {
                        ScalarStyle::Plain if !forced_string => Style::Plain,
                        _ => Style::Quoted,
                    };
                    let node = Node::new(span, Value::Scalar(Scalar { text: text.into_owned(), style }));
                    self.remember(anchor, &node, 1);
                    (node, 1)
                }
                Event::Alias(anchor) => {
                    let span = Span::new(start, end);
                    let Some((target, size)) = self.anchors.get(&anchor) else {
                        return Err(self.error("alias to an unknown anchor", span));
                    };
                    self.expanded = self.expanded.saturating_add(*size);
                    if self.expanded > ALIAS_EXPANSION_LIMIT {
                        return Err(self
                            .error(
                                format!("YAML aliases expand to more than {ALIAS_EXPANSION_LIMIT} nodes"),
                                span,
                            )
                            .label("this alias goes over the limit")
                            .help("this looks like an alias bomb; write the data out or use fewer nested aliases"));
                    }
                    let mut node = target.clone();
                    node.span = span;
                    (node, *size)
                }
            };
            let (node, size) = node;
            match stack.last_mut() {
                None => root = Some(node),
                Some(Frame::Seq { items, size: total, .. }) => {
                    *total += size;
                    items.push(node);
                }
                Some(Frame::Map { entries, key, size: total, merges, .. }) => {
                    *total += size;
                    match key.take() {
                        None => {
                            if !matches!(node.value, Value::Scalar(_) | Value::Null) {
                                let mut d = self.error("mapping keys must be plain words or strings", node.span);
                                if matches!(node.value, Value::Map(_)) {
                                    // `url: {{ x }}` without quotes is a flow mapping used as a key.
                                    d = d.help("a `{{ }}` template must be quoted: url: \"{{ … }}\"");
                                }
                                return Err(d);
                            }
                            *key = Some(node);
                        }
                        Some(k) => {
                            if matches!(&k.value, Value::Scalar(s) if s.text == "<<" && s.style == Style::Plain) {
                                merges.push(node);
                                continue;
                            }
                            let name = k.as_str().unwrap_or("");
                            if let Some((first, _)) = entries.iter().find(|(e, _)| e.as_str().unwrap_or("") == name) {
                                let (line, _) = self.file.line_col(first.span.start);
                                return Err(self
                                    .error(format!("duplicate key `{name}`"), k.span)
                                    .label(format!("`{name}` is already set on line {line}")));
                            }
                            entries.push((k, node));
                        }
                    }
                }
            }
        }
        Ok(root.unwrap_or_else(|| Node::new(Span::new(0, 0), Value::Null)))
    }

    fn remember(&mut self, anchor: usize, node: &Node, size: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
    }

    /// `<<: *defaults` merges the entries of the aliased mapping(s) that are not set explicitly.
    fn apply_merges(&self, entries: &mut Vec<(Node, Node)>, merges: Vec<Node>) -> Result<(), Diagnostic> {
        for merge in merges {
            let sources: Vec<Node> = match merge.value {
                Value::Map(_) => vec![merge],
                Value::Seq(items) => items,
                _ => return Err(self.error("`<<` merges a mapping or a list of mappings", merge.span)),
            };
            for source in sources {
                let Value::Map(more) = source.value else {
                    return Err(self.error("`<<` merges a mapping or a list of mappings", source.span));
                };
                for (k, v) in more {
                    if !entries.iter().any(|(e, _)| e.as_str() == k.as_str()) {
                        entries.push((k, v));
                    }
                }
            }
        }
        Ok(())
    }

    /// Accepts the core-schema tags; `!!str` forces a string. Anything else is refused: tags
    /// are how YAML loaders in other languages instantiate arbitrary objects.
    fn check_tag(&self, tag: Option<&saphyr_parser::Tag>, span: Span) -> Result<bool, Diagnostic> {
        let Some(tag) = tag else { return Ok(false) };
        if tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:" {
            return match tag.suffix.as_str() {
                "str" => Ok(true),
                "int" | "float" | "bool" | "null" | "map" | "seq" => Ok(false),
                other => Err(self.error(format!("unsupported YAML tag `!!{other}`"), span)),
            };
        }
        Err(self
            .error(format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix), span)
            .help("opsctl does not use YAML tags; remove it"))
    }
}

/// Every secret reference written below `node` — `{ env: VAR }`, `{ file: PATH }`,
/// `{ aws_secret: … }`, `{ k8s_secret: … }` — with where its name is written. A name may be
/// a template (`SecretRef::describe` shows it); the caller decides what that means.
pub fn secret_refs(node: &Node, out: &mut Vec<(crate::secret::SecretRef, Span)>) {
    use crate::secret::SecretRef;
    match &node.value {
        Value::Map(entries) => {
            if let [(k, v)] = entries.as_slice()
                && let (Some(key), Some(text)) = (k.as_str(), v.as_str())
            {
                let found = match key {
                    "env" => Some(SecretRef::Env(text.to_string())),
                    "file" => Some(SecretRef::File(std::path::PathBuf::from(text))),
                    "aws_secret" => Some(SecretRef::AwsSecret(text.to_string())),
                    "k8s_secret" => Some(SecretRef::K8sSecret(text.to_string())),
                    _ => None,
                };
                out.extend(found.map(|r| (r, v.span)));
            }
            for (_, v) in entries {
                secret_refs(v, out);
            }
        }
        Value::Seq(items) => items.iter().for_each(|v| secret_refs(v, out)),
        _ => {}
    }
}

/// The `{ env: VAR }` and `{ file: PATH }` references below `node` whose names are written
/// out (a templated name is left for the run to resolve), with where each name is written.
pub fn local_secret_refs(node: &Node, out: &mut Vec<(crate::secret::SecretRef, Span)>) {
    let mut all = Vec::new();
    secret_refs(node, &mut all);
    out.extend(all.into_iter().filter(|(r, _)| !r.is_remote() && !de::is_template(&r.describe())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Node, Diagnostic> {
        parse(&SourceFile::new("t.yaml", text))
    }

    #[test]
    fn builds_a_tree_with_spans() {
        let file = SourceFile::new("t.yaml", "name: check\nsteps:\n  - sleep: { duration: 1s }\n");
        let root = parse(&file).unwrap();
        let steps = root.get("steps").unwrap().as_seq().unwrap();
        let (k, v) = &steps[0].as_map().unwrap()[0];
        assert_eq!(k.as_str(), Some("sleep"));
        assert_eq!(file.line_col(k.span.start), (3, 5));
        let d = v.get("duration").unwrap();
        assert_eq!(d.as_str(), Some("1s"));
        assert_eq!(file.line_col(d.span.start), (3, 24));
    }

    #[test]
    fn resolves_plain_scalars_with_the_core_schema() {
        assert_eq!(resolve_plain("12"), Resolved::Int(12));
        assert_eq!(resolve_plain("-3"), Resolved::Int(-3));
        assert_eq!(resolve_plain("1.5"), Resolved::Float(1.5));
        assert_eq!(resolve_plain("true"), Resolved::Bool(true));
        assert_eq!(resolve_plain("yes"), Resolved::Str("yes"));
        assert_eq!(resolve_plain("~"), Resolved::Null);
        assert_eq!(resolve_plain("1.20.3"), Resolved::Str("1.20.3"));
        assert_eq!(resolve_plain("0x1f"), Resolved::UInt(31));
        assert_eq!(resolve_plain("150ms"), Resolved::Str("150ms"));
    }

    #[test]
    fn quoted_scalars_are_strings() {
        let root = parse_str("a: '12'\nb: 12\n").unwrap();
        assert_eq!(root.get("a").unwrap().describe(), "a string");
        assert_eq!(root.get("b").unwrap().describe(), "a number");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse_str("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.message, "duplicate key `a`");
        assert_eq!(err.position().unwrap(), "t.yaml:3:1");
        assert_eq!(err.label.as_deref(), Some("`a` is already set on line 1"));
    }

    #[test]
    fn merge_keys_fill_in_missing_entries() {
        let root = parse_str("base: &b { x: 1, y: 2 }\nc:\n  <<: *b\n  y: 3\n").unwrap();
        let c = root.get("c").unwrap();
        assert_eq!(c.get("x").unwrap().as_str(), Some("1"));
        assert_eq!(c.get("y").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn alias_bombs_are_refused_quickly() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", [prev.as_str(); 10].join(", ")));
        }
        let started = std::time::Instant::now();
        let err = parse_str(&text).unwrap_err();
        assert!(err.message.contains("aliases expand to more than"), "{}", err.message);
        // Not a timing assertion on speed targets: a guard that we did not expand 10^10 nodes.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let err = parse_str(&text).unwrap_err();
        assert!(err.message.contains("nested more than"), "{}", err.message);
    }

    #[test]
    fn unknown_tags_are_refused_and_str_forces_a_string() {
        assert!(parse_str("a: !!python/object:os.system x\n").unwrap_err().message.contains("unsupported YAML tag"));
        let root = parse_str("a: !!str 12\n").unwrap();
        assert_eq!(root.get("a").unwrap().describe(), "a string");
    }

    #[test]
    fn unquoted_templates_get_a_hint() {
        let err = parse_str("url: {{ x }}\n").unwrap_err();
        assert_eq!(err.help, vec!["a `{{ }}` template must be quoted: url: \"{{ … }}\"".to_string()]);
        assert_eq!(err.position().unwrap(), "t.yaml:1:7");
    }

    #[test]
    fn several_documents_are_refused() {
        let err = parse_str("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("single YAML document"));
    }

    #[test]
    fn empty_input_is_null() {
        assert!(parse_str("").unwrap().is_null());
        assert!(parse_str("# only a comment\n").unwrap().is_null());
    }

    #[test]
    fn non_utf8_is_refused_with_position() {
        let err = source_from_bytes("x.yaml", "runbook", b"name: a\nsummary: \xff\n".to_vec()).unwrap_err();
        assert_eq!(err.message, "runbook x.yaml is not valid UTF-8: byte 17 (line 2, column 10) is 0xff");
    }
}
