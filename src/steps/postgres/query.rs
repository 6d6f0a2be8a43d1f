//! `postgres.query`: a read-only query with typed assertions on its rows and values.
//!
//! The SQL runs in a READ ONLY transaction on its own connection, so the server refuses any
//! write; parameters are bound (sent as text and parsed by the server for whatever type the
//! query needs), never interpolated into the SQL. Rows come back as JSON, built by the
//! server (`json_agg`), so every column type arrives as the server would print it.

use std::error::Error;

use bytes::BytesMut;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};

use crate::helpers::text::truncate;
use crate::kind::{StepContext, StepKind};
use crate::pattern::Pattern;
use crate::vocab::{Effect, Outcome, Output, Severity, StepError};

/// Run a read-only SELECT and check its result.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// A SELECT (or WITH, VALUES, TABLE) statement; `$1`, `$2`… are bound from `params`.
    pub sql: String,
    /// Values for `$1`, `$2`…; the server parses them for the types the query needs.
    #[serde(default)]
    pub params: Vec<serde_json::Value>,
    /// Another database on the instance's server.
    #[serde(default)]
    pub database: Option<String>,
    /// Another server, with the instance's user, password and TLS settings: a restore
    /// drill's copy (`{{ steps.drill.host }}`).
    #[serde(default)]
    pub host: Option<String>,
    /// That server's port. Default: the connection's.
    #[serde(default)]
    pub port: Option<u16>,
    /// The number of rows: exact (`3`) or `{ min, max }`.
    #[serde(default)]
    pub expect_rows: Option<RowCount>,
    /// Per column of the first row: a value it must equal, or tests such as
    /// `{ above: 0 }`, `{ below: 100 }`, `{ min, max }`, `{ not_equals }`, `{ matches: regex }`, `{ null: false }`.
    #[serde(default)]
    pub expect: IndexMap<String, Expect>,
    /// `warn` to only warn when an expectation fails.
    #[serde(default)]
    pub severity: Severity,
    /// Rows kept in the outputs. Default 100.
    #[serde(default = "hundred")]
    pub max_rows: u32,
}

fn hundred() -> u32 {
    100
}

/// `3` or `{ min: 1, max: 10 }`.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum RowCount {
    Exactly(u64),
    Range {
        #[serde(default)]
        min: Option<u64>,
        #[serde(default)]
        max: Option<u64>,
    },
}

impl<'de> Deserialize<'de> for RowCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RowCount, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Range {
            #[serde(default)]
            min: Option<u64>,
            #[serde(default)]
            max: Option<u64>,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RowCount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a row count such as 3, or { min: 1, max: 10 }")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RowCount, E> {
                Ok(RowCount::Exactly(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RowCount, E> {
                u64::try_from(v).map(RowCount::Exactly).map_err(|_| E::custom("a row count cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RowCount, E> {
                if crate::yaml::de::is_placeholder(s) {
                    return Ok(RowCount::Exactly(0));
                }
                s.trim().parse().map(RowCount::Exactly).map_err(|_| E::custom(format!("\"{s}\" is not a row count")))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RowCount, A::Error> {
                let r = Range::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RowCount::Range { min: r.min, max: r.max })
            }
        }
        d.deserialize_any(V)
    }
}

impl RowCount {
    fn check(&self, n: u64) -> Option<String> {
        match *self {
            RowCount::Exactly(want) if n != want => Some(format!("{n} rows, expected {want}")),
            RowCount::Range { min: Some(lo), .. } if n < lo => Some(format!("{n} rows, expected at least {lo}")),
            RowCount::Range { max: Some(hi), .. } if n > hi => Some(format!("{n} rows, expected at most {hi}")),
            _ => None,
        }
    }
}

/// What a column's value must be.
#[derive(Clone, Debug, JsonSchema)]
#[serde(untagged)]
pub enum Expect {
    Equals(serde_json::Value),
    Tests(Tests),
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tests {
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    #[serde(default)]
    pub not_equals: Option<serde_json::Value>,
    #[serde(default)]
    pub above: Option<f64>,
    #[serde(default)]
    pub below: Option<f64>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub matches: Option<Pattern>,
    #[serde(default)]
    pub null: Option<bool>,
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Expect, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Expect;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a value, or tests such as { above: 0 }")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Expect, E> {
                Ok(Expect::Equals(v.into()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Expect, E> {
                Ok(Expect::Equals(v.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Expect, E> {
                Ok(Expect::Equals(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Expect, E> {
                Ok(Expect::Equals(v.into()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Expect, E> {
                Ok(Expect::Equals(v.into()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Expect, E> {
                Ok(Expect::Equals(serde_json::Value::Null))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Expect, A::Error> {
                Tests::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Expect::Tests)
            }
        }
        d.deserialize_any(V)
    }
}

fn num(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b || a.as_str().is_some_and(|s| Some(s) == b.as_str()) || b.as_str() == Some(&a.to_string()),
    }
}

impl Expect {
    /// What is wrong with `got`, if anything.
    fn check(&self, col: &str, got: &serde_json::Value) -> Vec<String> {
        let t = match self {
            Expect::Equals(want) => return if same(got, want) { vec![] } else { vec![format!("{col} is {got}, expected {want}")] },
            Expect::Tests(t) => t,
        };
        let mut out = Vec::new();
        if let Some(want) = &t.equals
            && !same(got, want) {
                out.push(format!("{col} is {got}, expected {want}"));
            }
        if let Some(no) = &t.not_equals
            && same(got, no) {
                out.push(format!("{col} is {got}, expected anything else"));
            }
        if let Some(null) = t.null
            && got.is_null() != null {
                out.push(format!("{col} is {got}, expected {}", if null { "null" } else { "a value" }));
            }
        let bounds = [("above", t.above), ("below", t.below), ("min", t.min), ("max", t.max)];
        if bounds.iter().any(|(_, b)| b.is_some()) {
            match num(got) {
                None => out.push(format!("{col} is {got}, not a number")),
                Some(x) => {
                    for (name, b) in bounds {
                        let Some(b) = b else { continue };
                        let ok = match name {
                            "above" => x > b,
                            "below" => x < b,
                            "min" => x >= b,
                            _ => x <= b,
                        };
                        if !ok {
                            let rel = match name {
                                "above" => "above",
                                "below" => "below",
                                "min" => "at least",
                                _ => "at most",
                            };
                            out.push(format!("{col} is {x}, expected {rel} {b}"));
                        }
                    }
                }
            }
        }
        if let Some(p) = &t.matches {
            let text = got.as_str().map(str::to_string).unwrap_or_else(|| got.to_string());
            if !p.is_match(&text) {
                out.push(format!("{col} is {got}, which does not match {p}"));
            }
        }
        out
    }
}

/// A parameter sent as text; the server parses it for the type the query needs.
#[derive(Debug)]
struct TextParam(Option<String>);

impl ToSql for TextParam {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// The SQL without comments, leading parentheses or a trailing `;`, if it is a query.
pub fn read_only_statement(sql: &str) -> Result<String, String> {
    let trimmed = sql.trim().trim_end_matches(';').trim_end().to_string();
    let mut rest = trimmed.as_str();
    loop {
        let r = rest.trim_start();
        if let Some(after) = r.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(after) = r.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else if let Some(after) = r.strip_prefix('(') {
            rest = after;
        } else {
            rest = r;
            break;
        }
    }
    let first: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_uppercase();
    match first.as_str() {
        "SELECT" | "WITH" | "VALUES" | "TABLE" => Ok(trimmed),
        "" => Err("the SQL is empty".into()),
        other => Err(format!(
            "postgres.query runs read-only queries (SELECT, WITH, VALUES, TABLE); `{other}` is not one: use postgres.vacuum, postgres.reindex or another step for changes"
        )),
    }
}

impl StepKind for Query {
    const NAME: &'static str = "postgres.query";
    const SUMMARY: &'static str = "a read-only SELECT with bound parameters and typed assertions on rows and values";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "row_count", ty: "int", help: "rows the query returned" },
        Output { name: "rows", ty: "list", help: "the rows as maps (at most max_rows)" },
        Output { name: "first", ty: "map", help: "the first row, or null" },
        Output { name: "value", ty: "any", help: "the first column of the first row, or null" },
    ];

    fn check(&self) -> Result<(), String> {
        if crate::yaml::de::is_placeholder(&self.sql) {
            return Ok(());
        }
        read_only_statement(&self.sql).map(|_| ())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let sql = read_only_statement(&self.sql).map_err(StepError::invalid)?;
        let mut info = super::conn_info(ctx, self.database.as_deref()).await?;
        if let Some(host) = &self.host {
            info.host = host.clone();
            info.via = None;
        }
        if let Some(port) = self.port {
            info.port = port;
        }
        let mut client = info.connect("opsctl query").await?;
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| super::conn::query_error(&e, "BEGIN READ ONLY"))?;
        let prefix = "WITH opsctl_q AS (";
        let wrapped = format!(
            "{prefix}{sql}\n) SELECT (SELECT count(*) FROM opsctl_q), (SELECT coalesce(json_agg(r), '[]'::json)::text FROM (SELECT * FROM opsctl_q LIMIT {}) r)",
            self.max_rows
        );
        let params: Vec<TextParam> = self
            .params
            .iter()
            .map(|v| match v {
                serde_json::Value::Null => TextParam(None),
                serde_json::Value::String(s) => TextParam(Some(s.clone())),
                other => TextParam(Some(other.to_string())),
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let row = tx.query_one(&wrapped, &refs).await.map_err(|e| {
            let Some(db) = e.as_db_error() else { return super::conn::query_error(&e, "the query") };
            if db.code() == &tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION {
                return StepError::invalid(format!("postgres.query is read-only; the server refused: {}", db.message()));
            }
            let at = match db.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(p)) if (*p as usize) > prefix.len() => {
                    format!(" (at character {} of the SQL)", *p as usize - prefix.len())
                }
                _ => String::new(),
            };
            if db.code() == &tokio_postgres::error::SqlState::PROTOCOL_VIOLATION || db.message().contains("bind message supplies") {
                return StepError::invalid(format!("the query: {}{at}; check `params`", db.message()));
            }
            StepError::new(crate::vocab::ErrorClass::Error, format!("the query: {}{at}", db.message()))
        })?;
        let _ = tx.rollback().await;
        let count: i64 = row.get(0);
        let json: String = row.get(1);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap_or_default();
        let first = rows.first().cloned().unwrap_or(serde_json::Value::Null);
        let value = first.as_object().and_then(|o| o.values().next().cloned()).unwrap_or(serde_json::Value::Null);

        let mut problems = Vec::new();
        if let Some(rc) = &self.expect_rows {
            problems.extend(rc.check(count as u64));
        }
        for (col, exp) in &self.expect {
            match first.get(col) {
                Some(got) => problems.extend(exp.check(col, got)),
                None if first.is_null() => problems.push(format!("no row to read {col} from")),
                None => problems.push(format!(
                    "the result has no column {col} (it has {})",
                    first.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default()
                )),
            }
        }
        let verdict = self.severity.verdict(problems.is_empty());
        let message = if problems.is_empty() {
            format!("{count} row{}{}", if count == 1 { "" } else { "s" }, if value.is_null() { String::new() } else { format!(", first value {value}") })
        } else {
            problems.join("; ")
        };
        let shown = match &value {
            serde_json::Value::String(s) => truncate(s, 40),
            serde_json::Value::Null => format!("{count} rows"),
            other => other.to_string(),
        };
        Ok(Outcome::new(verdict, message)
            .value(shown)
            .output("row_count", count)
            .output("rows", rows)
            .output("first", first)
            .output("value", value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queries_are_accepted() {
        assert!(read_only_statement("SELECT 1;").is_ok());
        assert!(read_only_statement("  -- count\n/* c */ (select 1)").is_ok());
        assert!(read_only_statement("with x as (select 1) select * from x").is_ok());
        let err = read_only_statement("DELETE FROM users").unwrap_err();
        assert!(err.contains("`DELETE` is not one"), "{err}");
        assert!(read_only_statement("  ").is_err());
    }

    #[test]
    fn expectations_compare_by_meaning() {
        let e = Expect::Tests(Tests { above: Some(0.0), below: Some(10.0), ..Tests::default() });
        assert!(e.check("n", &serde_json::json!(5)).is_empty());
        assert_eq!(e.check("n", &serde_json::json!(12)), vec!["n is 12, expected below 10"]);
        assert_eq!(e.check("n", &serde_json::json!("x")), vec!["n is \"x\", not a number"]);
        assert!(Expect::Equals(serde_json::json!(3)).check("n", &serde_json::json!("3")).is_empty());
        assert_eq!(RowCount::Range { min: Some(1), max: None }.check(0), Some("0 rows, expected at least 1".into()));
    }
}
