//! The layers of `src/` hold: every import points down (or stays in its layer), no backend
//! folder imports another, no two modules import each other (even through others), and the
//! pure layers name no async runtime or SDK.
//!
//! The layers come from the table in `src/lib.rs` (`| layer | modules | holds |`, top to
//! bottom), so the table and this test cannot drift apart. An import is a `use` of a
//! `crate::`, `super::` or `self::` path, or a `crate::…` path written inline; it points at
//! the longest module that prefix names. Each problem names the file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::repo;

/// Layers that stay pure data and checking: they may not name these crates.
const PURE: &[&str] = &["model", "data", "vocabulary"];
const IMPURE_CRATES: &[&str] = &["tokio", "tokio_util", "tokio_postgres", "kube", "k8s_openapi", "reqwest", "hyper", "hyper_util", "aws_config", "aws_sdk_s3", "aws_sdk_dynamodb", "aws_sdk_cloudwatch", "aws_sdk_secretsmanager", "aws_smithy_types", "aws_smithy_runtime_api"];

#[test]
fn imports_follow_the_layers() {
    let root = repo().join("src");
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("src/lib.rs");
    let layers = Layers::from_lib(&lib).unwrap_or_else(|e| panic!("src/lib.rs: {e}"));
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    assert!(files.len() > 50, "found only {} files under {}", files.len(), root.display());
    let problems = check(&layers, &files);
    assert!(problems.is_empty(), "{} architecture problem(s):\n{}", problems.len(), problems.join("\n"));
}

/// The checker itself, on a small tree with one of each mistake: it must name each.
#[test]
fn wrong_imports_are_named_with_file_and_line() {
    let lib = "//! | layer | modules | holds |\n//! |---|---|---|\n//! | cli | [`cli`] | x |\n//! | engine | [`engine`] | x |\n//! | backends | [`steps`] | x |\n//! | data | `steps::<backend>::settings` | x |\n//! | base | [`error`] | x |\n";
    let layers = Layers::from_lib(lib).unwrap();
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let files = vec![
        file("cli/mod.rs", "use crate::engine::Engine;\n"),
        file("engine/mod.rs", "use crate::error::Error;\n"),
        file("error.rs", "//! base\n\nuse crate::engine::Engine;\n"),
        file("steps/mod.rs", "pub mod a;\npub mod b;\n"),
        file("steps/a/mod.rs", "pub mod settings;\nfn f() { let x = crate::steps::b::thing(); }\n"),
        file("steps/a/settings.rs", "use tokio::sync::Mutex;\n"),
        file("steps/b/mod.rs", "use super::a::settings::S;\n"),
        file("extra.rs", "\n"),
    ];
    let problems = check(&layers, &files);
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("src/error.rs:3: `crate::engine::Engine`: base (error) imports engine (engine), a higher layer"), "{problems:#?}");
    assert!(has("src/steps/a/mod.rs:2: `crate::steps::b::thing`: backend `a` imports backend `b`"), "{problems:#?}");
    assert!(has("src/steps/b/mod.rs:1: `super::a::settings::S`: backend `b` imports backend `a`"), "{problems:#?}");
    assert!(has("src/steps/a/settings.rs:1: `tokio::sync::Mutex`: data (steps::a::settings) must stay pure"), "{problems:#?}");
    assert!(has("src/extra.rs: module `extra` is in no layer"), "{problems:#?}");
    assert!(has("cycle: engine → error (src/engine/mod.rs:1) → engine (src/error.rs:3)"), "{problems:#?}");
    assert!(!has("src/cli/mod.rs"), "cli may import the engine: {problems:#?}");
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

/// The layers, top first: each a name and the module patterns it holds.
struct Layers(Vec<(String, Vec<Vec<String>>)>);

impl Layers {
    /// Reads the markdown table `| layer | modules | holds |` from lib.rs's doc comment.
    fn from_lib(lib: &str) -> Result<Layers, String> {
        let rows: Vec<Vec<String>> = lib
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("//!"))
            .map(str::trim)
            .filter(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
            .collect();
        let header = rows.first().ok_or("no table of layers (`| layer | modules | holds |`) in its doc comment")?;
        if header.first().map(String::as_str) != Some("layer") || header.get(1).map(String::as_str) != Some("modules") {
            return Err(format!("the table of layers must start `| layer | modules |`, not {header:?}"));
        }
        let mut layers = Vec::new();
        for row in rows.iter().skip(1).filter(|r| !r[0].starts_with("---")) {
            let patterns = row
                .get(1)
                .ok_or_else(|| format!("layer {} lists no modules", row[0]))?
                .split(',')
                .map(|p| p.replace(['[', ']', '`'], "").trim().split("::").map(str::to_string).collect::<Vec<_>>())
                .filter(|p: &Vec<String>| !p.is_empty() && !p[0].is_empty())
                .collect();
            layers.push((row[0].clone(), patterns));
        }
        if layers.is_empty() {
            return Err("the table of layers has no rows".into());
        }
        Ok(Layers(layers))
    }

    /// The layer (index from the top, name) of a module: the most specific pattern that is a
    /// prefix of its path (`<backend>` stands for any one name).
    fn of(&self, module: &[String]) -> Option<(usize, &str)> {
        let mut best: Option<(usize, usize)> = None;
        for (i, (_, patterns)) in self.0.iter().enumerate() {
            for p in patterns {
                let fits = p.len() <= module.len() && p.iter().zip(module).all(|(a, b)| a == b || (a.starts_with('<') && a.ends_with('>')));
                if fits && best.is_none_or(|(_, len)| p.len() > len) {
                    best = Some((i, p.len()));
                }
            }
        }
        best.map(|(i, _)| (i, self.0[i].0.as_str()))
    }
}

/// Every `.rs` file under `dir`, as (path relative to `src/`, text).
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).expect("under src").to_string_lossy().into_owned();
            out.push((rel, std::fs::read_to_string(&p).expect("read file")));
        }
    }
}

/// The module a file is: `steps/k8s/mod.rs` → `steps::k8s`.
fn module_of(rel: &str) -> Vec<String> {
    let mut segs: Vec<String> = rel.trim_end_matches(".rs").split('/').map(str::to_string).collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    segs
}

/// One reference from a file to a module.
struct Import {
    file: String,
    line: usize,
    /// As written (`use` trees expanded): `crate::steps::aws::s3store::S3Store`.
    written: String,
    from: Vec<String>,
    to: Vec<String>,
}

fn check(layers: &Layers, files: &[(String, String)]) -> Vec<String> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(rel, _)| module_of(rel)).collect();
    let mut problems = Vec::new();
    let mut imports = Vec::new();
    for (rel, text) in files {
        if rel == "lib.rs" || rel == "main.rs" {
            continue;
        }
        let module = module_of(rel);
        let Some((_, layer_name)) = layers.of(&module) else {
            problems.push(format!("src/{rel}: module `{}` is in no layer; add it to the table of layers in src/lib.rs", module.join("::")));
            continue;
        };
        let code = strip(text);
        for (line, written, inline_modules) in references(&code) {
            let mut at = module.clone();
            at.extend(inline_modules);
            let Some(target) = resolve(&at, &written, &modules) else { continue };
            if target != module {
                imports.push(Import { file: rel.clone(), line, written, from: module.clone(), to: target });
            }
        }
        if PURE.contains(&layer_name) {
            for (line, path) in crate_paths(&code) {
                if IMPURE_CRATES.contains(&path.split("::").next().unwrap_or_default()) {
                    problems.push(format!(
                        "src/{rel}:{line}: `{path}`: {layer_name} ({}) must stay pure: no async runtime, client or SDK",
                        module.join("::")
                    ));
                }
            }
        }
    }
    for i in &imports {
        let name = |m: &[String]| m.join("::");
        let (Some((from_layer, from_name)), Some((to_layer, to_name))) = (layers.of(&i.from), layers.of(&i.to)) else { continue };
        if to_layer < from_layer {
            problems.push(format!(
                "src/{}:{}: `{}`: {from_name} ({}) imports {to_name} ({}), a higher layer; move the piece both need down, or turn the call around",
                i.file,
                i.line,
                i.written,
                name(&i.from),
                name(&i.to)
            ));
        }
        let backend = |m: &[String]| (m.len() >= 2 && m[0] == "steps").then(|| m[1].clone());
        if let (Some(a), Some(b)) = (backend(&i.from), backend(&i.to))
            && a != b
        {
            problems.push(format!(
                "src/{}:{}: `{}`: backend `{a}` imports backend `{b}`; move what both need into helpers, or ask through kind::Backends",
                i.file, i.line, i.written
            ));
        }
    }
    problems.extend(cycles(&imports));
    problems
}

/// Each cycle among modules, as `cycle: a → b (file:line) → a (file:line)`.
fn cycles(imports: &[Import]) -> Vec<String> {
    let mut edges: BTreeMap<&[String], BTreeMap<&[String], &Import>> = BTreeMap::new();
    for i in imports {
        edges.entry(&i.from).or_default().entry(&i.to).or_insert(i);
    }
    // Tarjan's strongly connected components; each one with more than one module holds a cycle.
    struct State<'a> {
        edges: &'a BTreeMap<&'a [String], BTreeMap<&'a [String], &'a Import>>,
        index: BTreeMap<&'a [String], usize>,
        low: BTreeMap<&'a [String], usize>,
        stack: Vec<&'a [String]>,
        on_stack: BTreeSet<&'a [String]>,
        components: Vec<Vec<&'a [String]>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a [String]) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let next: Vec<&'a [String]> = s.edges.get(v).map(|m| m.keys().copied().collect()).unwrap_or_default();
        for w in next {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.components.push(component);
            }
        }
    }
    let mut s = State { edges: &edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), components: Vec::new() };
    let starts: Vec<&[String]> = edges.keys().copied().collect();
    for v in starts {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    let mut out = Vec::new();
    for component in &s.components {
        // One cycle through the component's smallest module, found breadth-first.
        let members: BTreeSet<&[String]> = component.iter().copied().collect();
        let start = *members.iter().next().expect("non-empty");
        let mut came_from: BTreeMap<&[String], &Import> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closing = None;
        while let Some(v) = queue.pop_front() {
            for (w, import) in edges.get(v).into_iter().flatten() {
                if !members.contains(w) {
                    continue;
                }
                if *w == start {
                    closing = Some(*import);
                    queue.clear();
                    break;
                }
                if !came_from.contains_key(w) {
                    came_from.insert(w, import);
                    queue.push_back(w);
                }
            }
        }
        let Some(last) = closing else { continue };
        let mut path = vec![last];
        let mut v: &[String] = &last.from;
        while v != start {
            let import = came_from[v];
            path.push(import);
            v = &import.from;
        }
        path.reverse();
        let mut text = format!("cycle: {}", start.join("::"));
        for i in path {
            text.push_str(&format!(" → {} (src/{}:{})", i.to.join("::"), i.file, i.line));
        }
        out.push(text);
    }
    out
}

/// The module a path names: the longest prefix that is a module of the crate.
fn resolve(at: &[String], written: &str, modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut segs = written.split("::").filter(|s| !s.is_empty());
    let mut path: Vec<String> = match segs.next()? {
        "crate" => Vec::new(),
        "self" => at.to_vec(),
        "super" => at[..at.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    let mut rest: Vec<&str> = segs.collect();
    while rest.first() == Some(&"super") {
        path.pop();
        rest.remove(0);
    }
    path.extend(rest.iter().map(|s| s.to_string()));
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p))
}

/// Code without comments, string and char literals (newlines kept, so lines still count).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |s: &str, out: &mut String| out.extend(s.chars().filter(|c| *c == '\n'));
    while i < b.len() {
        let rest = &text[i..];
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            blank(&rest[..end], &mut out);
            i += end;
        } else if !prev_ident && (rest.starts_with("r\"") || rest.starts_with("r#") || rest.starts_with("br\"") || rest.starts_with("br#")) {
            let start = rest.find('r').expect("raw") + 1;
            let hashes = rest[start..].bytes().take_while(|c| *c == b'#').count();
            if rest.as_bytes().get(start + hashes) != Some(&b'"') {
                out.push(b[i] as char);
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let body = start + hashes + 1;
            let end = rest[body..].find(&close).map_or(rest.len(), |e| body + e + close.len());
            out.push_str("\"\"");
            blank(&rest[..end], &mut out);
            i += end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            blank(&text[i..j.min(b.len())], &mut out);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{1F600}'), else a lifetime.
            let lit = if rest.as_bytes().get(1) == Some(&b'\\') { rest[2..].find('\'').map(|e| e + 3) } else { rest.char_indices().nth(2).filter(|(_, c)| *c == '\'').map(|(e, _)| e + 1) };
            match lit {
                Some(n) => {
                    out.push_str("' '");
                    i += n;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = rest.chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The crate-relative paths code refers to: `(line, path, inline modules it is written in)`.
/// `use` trees are expanded; a path written inline counts when it starts with `crate::`.
fn references(code: &str) -> Vec<(usize, String, Vec<String>)> {
    let mut out = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new(); // (name, brace depth inside it)
    let mut depth = 0usize;
    let b = code.as_bytes();
    let mut line = 1;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let at_word = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':' || b[i - 1] == b'$');
        match c {
            b'\n' => line += 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            _ if at_word && code[i..].starts_with("mod ") => {
                let name: String = code[i + 4..].trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let after = code[i + 4..].trim_start()[name.len()..].trim_start();
                if after.starts_with('{') {
                    inline.push((name, depth + 1));
                }
            }
            _ if at_word && code[i..].starts_with("use ") => {
                let end = code[i..].find(';').map_or(code.len(), |e| i + e);
                let tree = &code[i + 4..end];
                let here: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                for path in expand(tree) {
                    if ["crate", "super", "self"].contains(&path.split("::").next().unwrap_or_default()) {
                        out.push((line, path, here.clone()));
                    }
                }
                line += code[i..end].matches('\n').count();
                i = end + 1;
                continue;
            }
            _ if at_word && code[i..].starts_with("crate::") => {
                let path: String = code[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                let here: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                out.push((line, path.trim_end_matches(':').to_string(), here));
                i += path.len();
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// External crate paths written in code (`tokio::sync::Mutex`), in `use` and inline.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, l) in code.lines().enumerate() {
        let b = l.as_bytes();
        for (i, _) in l.match_indices("::") {
            let start = l[..i].rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |s| s + 1);
            let before_ok = start == 0 || !matches!(b[start - 1], b':' | b'$');
            if before_ok && start < i && IMPURE_CRATES.contains(&&l[start..i]) {
                let end = l[i..].find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).map_or(l.len(), |e| i + e);
                out.push((n + 1, l[start..end].trim_end_matches(':').to_string()));
            }
        }
    }
    out
}

/// A `use` tree expanded to its paths: `crate::{a::b, c::{d, e as f}}` → `crate::a::b`,
/// `crate::c::d`, `crate::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree = tree.trim().trim_start_matches("pub ").trim();
    let mut out = Vec::new();
    expand_into("", tree, &mut out);
    out
}

fn expand_into(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[start..]);
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let join = |p: &str| if prefix.is_empty() { p.to_string() } else if p == "self" { prefix.to_string() } else { format!("{prefix}::{p}") };
        match part.find('{') {
            Some(open) => {
                let head = part[..open].trim().trim_end_matches("::");
                let inner = &part[open + 1..part.rfind('}').unwrap_or(part.len())];
                expand_into(&join(head), inner, out);
            }
            None => {
                let path = part.split(" as ").next().unwrap_or(part).trim();
                out.push(join(path));
            }
        }
    }
}
