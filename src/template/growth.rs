//! How much a template can make.
//!
//! Fuel (see [`super::FUEL`]) charges for the work a template does and the data it makes,
//! but minijinja makes `list * n` lazily: no item is made, nothing is charged, and turning
//! `[1] * 66686666` into text (`~`, printing, `tojson`) walked 66 million items before
//! anything was — a template that hung (found by fuzzing). Shared values are worse: after
//! `{% set x = … %}`, `[x] * 1000` holds one list a thousand times, and `[x, x]` in a loop
//! doubles it each time round.
//!
//! So opsctl templates are expressions (`{{ … }}`) and `{% if %}` blocks — none of the
//! statements that bind a name (`set`, `for`, `with`; macros are not built in): a template
//! fills one value, and a step loops with `for_each:`. Without names nothing is shared, so
//! what a template holds is bounded by its text, except where one operator multiplies it:
//! `a * b` becomes a call, `__opsctl_mul((a), (b))`, that refuses to repeat a list past
//! [`MAX_ITEMS`] items (counting the items of lists inside it), and `range` stops at as
//! many. Text made by `~` (also a call), by printing and by the `string` filter stops at
//! [`MAX_TEXT`] bytes as it is written. The parts come from minijinja's own parser (its
//! `unstable_machinery`): the operator's span from the tree, the operator itself as the last
//! `*` (`~`) outside brackets in that span (operators of one precedence group to the left).

use std::sync::LazyLock;

use minijinja::machinery::ast::{CallArg, Expr, Stmt};
use minijinja::machinery::{self, Token};
use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// The most items a list made by `*` or `range` may have, counting the items of lists in it.
pub const MAX_ITEMS: usize = 10_000;

/// The longest text `~` or printing may make: 1 MB.
pub const MAX_TEXT: usize = 1_000_000;

/// The names of the calls the operators become.
pub const MUL: &str = "__opsctl_mul";
pub const CONCAT: &str = "__opsctl_concat";

/// The operators checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mul,
    Concat,
}

impl Kind {
    fn call(self) -> &'static str {
        match self {
            Kind::Mul => MUL,
            Kind::Concat => CONCAT,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Kind::Mul => "*",
            Kind::Concat => "~",
        }
    }
}

/// `text` with its `*` and `~` turned into checked calls; `None` when it has none (or does
/// not parse: compiling it reports the error). A statement that binds a name is an error.
pub fn guarded(text: &str, expression: bool) -> Result<Option<String>, Error> {
    let mut ops = Vec::new();
    let parsed = if expression {
        machinery::parse_expr(text).map(|e| walk_expr(&e, &mut ops))
    } else {
        match machinery::parse(text, "<template>", Default::default()) {
            Ok(s) => Ok(walk_stmt(&s, &mut ops)?),
            Err(e) => Err(e),
        }
    };
    if parsed.is_err() || ops.is_empty() {
        return Ok(None);
    }
    // (The tokenizer yields its error again and again: stop at the first.)
    let tokens: Vec<(Option<Kind>, i32, usize, usize)> = machinery::tokenize(text, expression, Default::default())
        .map_while(Result::ok)
        .map(|(token, span)| {
            let depth = match token {
                Token::ParenOpen | Token::BracketOpen | Token::BraceOpen => 1,
                Token::ParenClose | Token::BracketClose | Token::BraceClose => -1,
                _ => 0,
            };
            let kind = match token {
                Token::Mul => Some(Kind::Mul),
                Token::Tilde => Some(Kind::Concat),
                _ => None,
            };
            (kind, depth, span.start_offset as usize, span.end_offset as usize)
        })
        .collect();
    let mut found: Vec<Op> = Vec::with_capacity(ops.len());
    for (kind, start, end) in ops {
        // The operator: the last `*` (`~`) at the span's own bracket depth.
        let mut depth = 0;
        let mut operator = None;
        let first = tokens.partition_point(|t| t.2 < start);
        for &(k, d, s, e) in tokens[first..].iter().take_while(|t| t.3 <= end) {
            if d < 0 {
                depth += d;
            }
            if depth == 0 && k == Some(kind) {
                operator = Some((s, e));
            }
            if d > 0 {
                depth += d;
            }
        }
        // Never seen; refused rather than run unchecked.
        let Some((op_start, op_end)) = operator else {
            return Err(Error::new(ErrorKind::InvalidOperation, format!("opsctl cannot check a `{}` in it; make it simpler", kind.symbol())));
        };
        found.push(Op { kind, start, end, op_start, op_end });
    }
    found.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut out = String::with_capacity(text.len() + found.len() * 24);
    emit(text, 0, text.len(), &found, &mut out);
    // The calls nest deeper than the operators did: past minijinja's depth, say so.
    let parses = if expression { machinery::parse_expr(&out).map(drop) } else { machinery::parse(&out, "<template>", Default::default()).map(drop) };
    if parses.is_err() {
        return Err(Error::new(ErrorKind::InvalidOperation, "opsctl cannot check its `*` and `~` (nested too deeply?); make it simpler"));
    }
    Ok(Some(out))
}

struct Op {
    kind: Kind,
    start: usize,
    end: usize,
    op_start: usize,
    op_end: usize,
}

/// Writes `text[from..to]`, each outermost operator in it as a call. A chain of one
/// operator (`a ~ b ~ c`: `(a ~ b) ~ c`) becomes one call, `__opsctl_concat((a), (b), (c))`,
/// not calls nested as deep as the chain is long (minijinja's parser stops at some depth).
fn emit(text: &str, from: usize, to: usize, ops: &[Op], out: &mut String) {
    let mut pos = from;
    for (i, op) in ops.iter().enumerate() {
        if op.start < pos || op.end > to {
            continue;
        }
        out.push_str(&text[pos..op.start]);
        let rest = &ops[i + 1..];
        let mut chain = vec![op];
        loop {
            let last = chain[chain.len() - 1];
            let left_end = op.start + text[op.start..last.op_start].trim_end().len();
            match rest.iter().find(|o| o.start == op.start && o.end <= last.op_start) {
                Some(child) if child.kind == op.kind && child.end == left_end => chain.push(child),
                _ => break,
            }
        }
        let inner = chain[chain.len() - 1];
        out.push_str(op.kind.call());
        out.push_str("((");
        emit(text, inner.start, inner.op_start, rest, out);
        for link in chain.iter().rev() {
            out.push_str("), (");
            emit(text, link.op_end, link.end, rest, out);
        }
        out.push_str("))");
        pos = op.end;
    }
    out.push_str(&text[pos..to]);
}

fn walk_stmts(stmts: &[Stmt], ops: &mut Vec<(Kind, usize, usize)>) -> Result<(), Error> {
    stmts.iter().try_for_each(|s| walk_stmt(s, ops))
}

fn walk_stmt(stmt: &Stmt, ops: &mut Vec<(Kind, usize, usize)>) -> Result<(), Error> {
    let binds = |what: &str, span: machinery::Span| {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "`{{% {what} %}}` (line {}) is not available in opsctl templates: a template fills one value, from expressions and `{{% if %}}`; use filters (`| join(', ')`, `| map(attribute='name')`), `vars:`, or `for_each:` on the step",
                span.start_line
            ),
        ))
    };
    match stmt {
        Stmt::Template(t) => walk_stmts(&t.children, ops),
        Stmt::EmitExpr(e) => Ok(walk_expr(&e.expr, ops)),
        Stmt::EmitRaw(_) => Ok(()),
        Stmt::IfCond(i) => {
            walk_expr(&i.expr, ops);
            walk_stmts(&i.true_body, ops)?;
            walk_stmts(&i.false_body, ops)
        }
        Stmt::AutoEscape(a) => {
            walk_expr(&a.enabled, ops);
            walk_stmts(&a.body, ops)
        }
        Stmt::FilterBlock(f) => {
            walk_expr(&f.filter, ops);
            walk_stmts(&f.body, ops)
        }
        Stmt::Do(d) => {
            walk_expr(&d.call.expr, ops);
            walk_args(&d.call.args, ops);
            Ok(())
        }
        Stmt::ForLoop(f) => binds("for", f.span()),
        Stmt::WithBlock(w) => binds("with", w.span()),
        Stmt::Set(s) => binds("set", s.span()),
        Stmt::SetBlock(s) => binds("set", s.span()),
    }
}

fn walk_args(args: &[CallArg], ops: &mut Vec<(Kind, usize, usize)>) {
    for arg in args {
        match arg {
            CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => walk_expr(e, ops),
        }
    }
}

fn walk_expr(expr: &Expr, ops: &mut Vec<(Kind, usize, usize)>) {
    use minijinja::machinery::ast::BinOpKind;
    // Deep trees (a long `a + b + c …`) are walked with a stack, not recursion.
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Var(_) | Expr::Const(_) => {}
            Expr::Slice(s) => {
                stack.push(&s.expr);
                stack.extend(s.start.iter().chain(&s.stop).chain(&s.step));
            }
            Expr::UnaryOp(u) => stack.push(&u.expr),
            Expr::BinOp(b) => {
                let kind = match b.op {
                    BinOpKind::Mul => Some(Kind::Mul),
                    BinOpKind::Concat => Some(Kind::Concat),
                    _ => None,
                };
                if let Some(kind) = kind {
                    let span = b.span();
                    ops.push((kind, span.start_offset as usize, span.end_offset as usize));
                }
                stack.push(&b.left);
                stack.push(&b.right);
            }
            Expr::Compare(c) => {
                stack.push(&c.expr);
                stack.extend(c.ops.iter().map(|o| &o.expr));
            }
            Expr::IfExpr(i) => {
                stack.push(&i.test_expr);
                stack.push(&i.true_expr);
                stack.extend(&i.false_expr);
            }
            Expr::Filter(f) => {
                stack.extend(&f.expr);
                walk_args(&f.args, ops);
            }
            Expr::Test(t) => {
                stack.push(&t.expr);
                walk_args(&t.args, ops);
            }
            Expr::GetAttr(g) => stack.push(&g.expr),
            Expr::GetItem(g) => {
                stack.push(&g.expr);
                stack.push(&g.subscript_expr);
            }
            Expr::Call(c) => {
                stack.push(&c.expr);
                walk_args(&c.args, ops);
            }
            Expr::List(l) => stack.extend(&l.items),
            Expr::Tuple(t) => stack.extend(&t.items),
            Expr::Map(m) => stack.extend(m.keys.iter().chain(&m.values)),
        }
    }
}

fn too_many(what: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("{what} would make a list of more than {MAX_ITEMS} items; opsctl templates stop there"))
}

/// The operator itself, for what passes the check.
static OPS: LazyLock<minijinja::Expression<'static, 'static>> = LazyLock::new(|| super::ENV.compile_expression("a * b").expect("a * b compiles"));

/// `a * b (* c …)`, refusing to repeat a list past [`MAX_ITEMS`] items.
pub fn mul(operands: Rest<Value>) -> Result<Value, Error> {
    fold(operands, |a, b| {
        for (list, count) in [(a, b), (b, a)] {
            if let (true, Some(times)) = (matches!(list.kind(), ValueKind::Seq | ValueKind::Iterable), count.as_i64())
                && times > 0
            {
                let n = weight(list, MAX_ITEMS);
                if (n as u128) * (times as u128) > MAX_ITEMS as u128 {
                    let n = if n > MAX_ITEMS { format!("more than {MAX_ITEMS}") } else { n.to_string() };
                    return Err(too_many(format!("repeating a list of {n} items {times} times")));
                }
            }
        }
        OPS.eval(minijinja::context! { a, b })
    })
}

/// How many items `list` holds, counting the items of the lists and maps in it — or, once
/// past `limit`, `limit + 1` (it stops there).
fn weight(list: &Value, limit: usize) -> usize {
    let mut n = 0;
    let mut stack = vec![list.clone()];
    while let Some(v) = stack.pop() {
        let items: Box<dyn Iterator<Item = Value>> = match v.kind() {
            ValueKind::Seq | ValueKind::Iterable => match v.try_iter() {
                Ok(it) => Box::new(it),
                Err(_) => continue,
            },
            ValueKind::Map => match v.try_iter() {
                Ok(keys) => Box::new(keys.filter_map(move |k| v.get_item(&k).ok())),
                Err(_) => continue,
            },
            _ => continue,
        };
        for item in items {
            n += 1;
            if n > limit {
                return limit + 1;
            }
            if matches!(item.kind(), ValueKind::Seq | ValueKind::Iterable | ValueKind::Map) {
                stack.push(item);
            }
        }
    }
    n
}

/// `range` as minijinja has it, up to [`MAX_ITEMS`] numbers.
pub fn range(lower: i64, upper: Option<i64>, step: Option<i64>) -> Result<Value, Error> {
    let (start, end) = match upper {
        Some(upper) => (lower, upper),
        None => (0, lower),
    };
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(Error::new(ErrorKind::InvalidOperation, "cannot create range with step of 0"));
    }
    let span = if step > 0 { end.saturating_sub(start) } else { start.saturating_sub(end) };
    let len = if span <= 0 { 0 } else { (span as u64).div_ceil(step.unsigned_abs()) };
    if len > MAX_ITEMS as u64 {
        return Err(too_many(format!("range of {len} numbers")));
    }
    Ok(Value::from((0..len as i64).map(|i| start + i * step).collect::<Vec<_>>()))
}

/// `a ~ b (~ c …)`: the operands as text, refusing past [`MAX_TEXT`] bytes.
pub fn concat(operands: Rest<Value>) -> Result<Value, Error> {
    let mut out = String::new();
    for v in operands.iter() {
        if v.is_undefined() {
            return Err(Error::from(ErrorKind::UndefinedError));
        }
        text_of(v, &mut out)?;
    }
    Ok(if operands.iter().all(Value::is_safe) { Value::from_safe_string(out) } else { Value::from(out) })
}

/// `value` as text: a string as it is, anything else written out with [`text_of`] (what
/// printing and the `string` filter do).
pub fn as_text(value: &Value) -> Result<Value, Error> {
    if value.as_str().is_some() {
        return Ok(value.clone());
    }
    let mut text = String::new();
    text_of(value, &mut text)?;
    Ok(Value::from(text))
}

/// Appends `value` as minijinja writes it into text, refusing past [`MAX_TEXT`] bytes in
/// all — and stopping there: a list shared many times over inside another is not walked.
pub fn text_of(value: &Value, out: &mut String) -> Result<(), Error> {
    use std::fmt::Write;
    struct Bounded<'a>(&'a mut String, bool);
    impl Write for Bounded<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            if self.0.len() + s.len() > MAX_TEXT {
                self.1 = true;
                return Err(std::fmt::Error);
            }
            self.0.push_str(s);
            Ok(())
        }
    }
    let mut w = Bounded(out, false);
    match write!(w, "{value}") {
        Ok(()) => Ok(()),
        Err(_) if w.1 => Err(Error::new(ErrorKind::InvalidOperation, format!("the text would be longer than {MAX_TEXT} bytes; opsctl templates stop there"))),
        Err(_) => Err(Error::new(ErrorKind::InvalidOperation, "the value cannot be turned into text")),
    }
}

/// The operands from the left, as the operator groups them. Templates are strict: an
/// undefined operand is an error, as it is for the operator itself.
fn fold(operands: Rest<Value>, op: impl Fn(&Value, &Value) -> Result<Value, Error>) -> Result<Value, Error> {
    let mut operands = operands.0.into_iter();
    let mut acc = operands.next().ok_or_else(|| Error::new(ErrorKind::MissingArgument, "an operator needs two operands"))?;
    for b in operands {
        if acc.is_undefined() || b.is_undefined() {
            return Err(Error::from(ErrorKind::UndefinedError));
        }
        acc = op(&acc, &b)?;
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_become_calls_with_their_operands() {
        let g = |t: &str, e: bool| guarded(t, e).unwrap().unwrap();
        assert_eq!(g("a * b", true), "__opsctl_mul((a ), ( b))");
        assert_eq!(g("1 + 2 * 3", true), "1 + __opsctl_mul((2 ), ( 3))");
        assert_eq!(g("a * b / c", true), "__opsctl_mul((a ), ( b)) / c");
        assert_eq!(g("a / b * c", true), "__opsctl_mul((a / b ), ( c))");
        assert_eq!(g("(a) * (b * 1)", true), "__opsctl_mul(((a) ), ( (__opsctl_mul((b ), ( 1)))))");
        assert_eq!(g("x|f(y * 2) * 2", true), "__opsctl_mul((x|f(__opsctl_mul((y ), ( 2))) ), ( 2))");
        assert_eq!(g("[1, 2]*3", true), "__opsctl_mul(([1, 2]), (3))");
        assert_eq!(g("a * b * c", true), "__opsctl_mul((a ), ( b), ( c))");
        assert_eq!(g("a ~ b * c ~ (d ~ e)", true), "__opsctl_concat((a ), ( __opsctl_mul((b ), ( c))), ( (__opsctl_concat((d ), ( e)))))");
        assert_eq!(g("'a*b' ~ x", true), "__opsctl_concat(('a*b' ), ( x))");
        assert_eq!(g("u{{ n * 2 }}/{% if a * 1 %}{{ '*' }}{% endif %}", false), "u{{ __opsctl_mul((n ), ( 2)) }}/{% if __opsctl_mul((a ), ( 1)) %}{{ '*' }}{% endif %}");
        assert!(guarded("a - b + 'x' == y", true).unwrap().is_none(), "nothing to do");
        assert!(guarded("a *", true).unwrap().is_none(), "a syntax error is left to the compiler");
        // Parentheses as deep as minijinja allows: the calls would be deeper.
        let deep = format!("{}1{}", "1 * (".repeat(70), ")".repeat(70));
        assert!(machinery::parse_expr(&deep).is_ok());
        let e = guarded(&deep, true).unwrap_err();
        assert_eq!(e.detail(), Some("opsctl cannot check its `*` and `~` (nested too deeply?); make it simpler"));
    }

    #[test]
    fn statements_that_bind_a_name_are_refused() {
        for (t, what) in [
            ("{% for i in x %}{{ i }}{% endfor %}", "for"),
            ("a\n{% set x = 1 %}", "set"),
            ("{% set x %}b{% endset %}", "set"),
            ("{% with x = 1 %}{% endwith %}", "with"),
            ("{% if a %}{% for i in x %}{% endfor %}{% endif %}", "for"),
        ] {
            let e = guarded(t, false).unwrap_err();
            let detail = e.detail().unwrap();
            assert!(detail.starts_with(&format!("`{{% {what} %}}` (line ")), "{t}: {detail}");
            assert!(detail.ends_with("use filters (`| join(', ')`, `| map(attribute='name')`), `vars:`, or `for_each:` on the step"), "{detail}");
        }
        assert!(guarded("a\n{% set x = 1 %}", false).unwrap_err().detail().unwrap().contains("(line 2)"));
        assert!(guarded("{% if a %}x{% elif b %}y{% else %}{{ c|upper }}{% endif %}", false).unwrap().is_none());
    }

    #[test]
    fn weight_counts_the_items_of_lists_inside() {
        let v = |j: serde_json::Value| Value::from(minijinja::value::Serde(j));
        assert_eq!(weight(&v(serde_json::json!([1, [2, 3], {"a": [4]}])), 100), 7, "1, [2, 3], 2, 3, the map, [4], 4");
        assert_eq!(weight(&v(serde_json::json!([[1, 2, 3], [4, 5, 6]])), 4), 5, "stops past the limit");
        assert_eq!(weight(&v(serde_json::json!([])), 0), 0);
    }
}
