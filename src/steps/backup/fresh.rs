//! `backup.fresh`: the newest backup of each kind the instance has is younger than
//! `max_age`, and (with `verify: true`) its files still match their checksums. The check
//! behind "is last night's backup there?" in the morning check and the deploy gate.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::backup::{self, Manifest};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// The newest backup of each kind is fresh (and intact).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fresh {
    /// The kinds to look at: `postgres`, `dynamodb` (each of `dynamodb.tables`), `redis`.
    /// Default: each of these the instance has.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// The oldest the newest backup may be. Default: the inventory's `backups.max_age`, else 26h.
    #[serde(default)]
    pub max_age: Option<Duration>,
    /// Re-read every file of the newest backups and compare sizes and SHA-256 with their
    /// manifests (a download for a remote store). Default false.
    #[serde(default)]
    pub verify: bool,
}

const KINDS: &[&str] = &["postgres", "dynamodb", "redis"];
const DEFAULT_MAX_AGE: u64 = 26 * 3600;

/// What one backup stands for: a kind, or a DynamoDB table.
#[derive(Debug, PartialEq)]
struct Subject {
    kind: String,
    table: Option<String>,
}

impl Subject {
    fn describe(&self) -> String {
        match &self.table {
            Some(t) => format!("dynamodb table {t}"),
            None => self.kind.clone(),
        }
    }

    fn matches(&self, m: &Manifest) -> bool {
        m.kind == self.kind
            && (self.table.is_none() || m.source::<serde_json::Value>("dynamodb").and_then(|d| d["table"].as_str().map(str::to_string)) == self.table)
    }
}

impl Fresh {
    fn subjects(&self, ctx: &StepContext) -> Vec<Subject> {
        let kinds: Vec<String> =
            if self.kinds.is_empty() { KINDS.iter().filter(|k| ctx.instance.has(k)).map(|k| k.to_string()).collect() } else { self.kinds.clone() };
        let mut out = Vec::new();
        for kind in kinds {
            match (kind.as_str(), &ctx.instance.dynamodb) {
                ("dynamodb", Some(d)) if !d.tables.is_empty() => {
                    out.extend(d.tables.iter().map(|t| Subject { kind: kind.clone(), table: Some(t.clone()) }));
                }
                _ => out.push(Subject { kind, table: None }),
            }
        }
        out
    }

    fn max_age(&self, ctx: &StepContext) -> Duration {
        self.max_age.or_else(|| ctx.instance.backups.as_ref().and_then(|b| b.max_age)).unwrap_or(Duration::from_secs(DEFAULT_MAX_AGE))
    }
}


impl StepKind for Fresh {
    const NAME: &'static str = "backup.fresh";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["s3:GetObject", "s3:ListBucket"], AwsOn::Bucket)]
    };
    const SUMMARY: &'static str =
        "the newest backup of each kind the instance has is younger than max_age (default 26h), its checksums re-read with verify: true";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "id", ty: "string", help: "the newest backup (of the first kind)" },
        Output { name: "age_seconds", ty: "int", help: "its age (the oldest of the newest backups, over every kind)" },
        Output { name: "backups", ty: "list", help: "per kind (or table): {kind, table, id, age_seconds, verified}" },
    ];

    fn check(&self) -> Result<(), String> {
        for k in &self.kinds {
            if !KINDS.contains(&k.as_str()) && !crate::yaml::de::is_template(k) {
                return Err(format!("unknown backup kind `{k}`; use {}", KINDS.join(", ")));
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let subjects = self.subjects(ctx);
        if subjects.is_empty() {
            // A store without a database to back up: nothing can be fresh, and nothing is
            // at risk either — said, not passed.
            return Ok(Outcome::new(
                crate::vocab::Verdict::Warned,
                format!("instance {} has a backup store but no database to back up (postgres, dynamodb.tables or redis); name `kinds:` to look anyway", ctx.instance.name),
            )
            .value("none"));
        }
        let store = ctx.backup_store()?;
        let all = store.list().await.map_err(|e| StepError::error(e.to_string()))?;
        let max_age = self.max_age(ctx);
        let now = jiff::Timestamp::now();
        let mut problems = Vec::new();
        let mut found = Vec::new();
        let mut rows = Vec::new();
        let mut oldest: i64 = 0;
        for subject in &subjects {
            let Some(newest) = all.iter().filter(|m| subject.matches(m)).max_by_key(|m| m.created_at) else {
                problems.push(format!("no {} backup in {}", subject.describe(), store.describe()));
                continue;
            };
            let age = now.as_second() - newest.created_at.as_second();
            oldest = oldest.max(age);
            let mut verified = false;
            if age as u64 > max_age.std().as_secs() {
                problems.push(format!("the newest {} backup {} is {} old (max_age {max_age})", subject.describe(), newest.id, crate::duration::age(age)));
            } else if self.verify {
                match backup::verify_checksums(store.as_ref(), newest).await {
                    Ok(()) => verified = true,
                    Err(e) => problems.push(format!("the newest {} backup {} does not match its checksums: {e}", subject.describe(), newest.id)),
                }
            }
            found.push(format!("{} {} ({} old{})", subject.describe(), newest.id, crate::duration::age(age), if verified { ", checksums match" } else { "" }));
            rows.push(serde_json::json!({ "kind": subject.kind, "table": subject.table, "id": newest.id, "age_seconds": age, "verified": verified }));
        }
        let first_id = rows.first().and_then(|r| r["id"].as_str()).unwrap_or_default().to_string();
        let outcome = if problems.is_empty() {
            Outcome::passed(format!("newest backups within {max_age}: {}", found.join(", ")))
        } else {
            let mut msg = problems.join("; ");
            if !found.is_empty() {
                msg.push_str(&format!(" (newest: {})", found.join(", ")));
            }
            Outcome::failed(msg)
        };
        Ok(outcome
            .value(if rows.is_empty() { "none".to_string() } else { crate::duration::age(oldest) })
            .threshold(Some(format!("fail > {max_age}")))
            .output("id", first_id)
            .output("age_seconds", oldest)
            .output("backups", rows))
    }
}
