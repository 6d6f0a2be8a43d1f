//! Counting log lines that match a pattern, with samples: what `compose.logs`, `k8s.logs`
//! and `cloudwatch.logs` do to the lines they read (`logs --since 1h | grep -c error`) —
//! and, as an operator does with `sort | uniq -c | sort -rn`, the matching lines grouped
//! once numbers, ids, addresses and times are normalised, so repeats of one message count
//! together; and the lines mentioning HTTP 401, 403 and 429.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::text::truncate;
use super::threshold::Limits;
use crate::duration::Duration;
use crate::pattern::Pattern;
use crate::vocab::Outcome;

/// The default window, `since: 1h`.
pub fn hour() -> Duration {
    Duration::from_secs(3600)
}

/// The default number of samples kept.
pub fn five() -> usize {
    5
}

/// Lines read, lines matching, and the first matching lines.
#[derive(Debug, Default)]
pub struct Tally {
    pub lines: u64,
    pub matches: u64,
    pub samples: Vec<String>,
    /// Matching lines by their normalised text: (count, the first such line).
    pub groups: HashMap<String, (u64, String)>,
    /// Lines mentioning HTTP 401, 403, 429.
    pub status: [u64; 3],
}

static NORMALISE: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "<time>"),
        (r"\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "<time>"),
        (r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<uuid>"),
        (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", "<ip>"),
        (r"(?i)\b0x[0-9a-f]+\b", "<hex>"),
        (r"(?i)\b[0-9a-f]*\d[0-9a-f]*[a-f][0-9a-f]*\b|\b[0-9a-f]*[a-f][0-9a-f]*\d[0-9a-f]*\b", "<hex>"),
        (r"\d+(?:\.\d+)?", "<n>"),
    ]
    .into_iter()
    .map(|(re, to)| (Regex::new(re).expect("normalising regex"), to))
    .collect()
});

static STATUS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(401|403|429)\b").expect("status regex"));

/// A log line with what differs between repeats of one message replaced: times, UUIDs, IP
/// addresses, hex ids (8+ characters with a digit and a letter), then any number.
/// `2026-11-30T08:00:01Z ERROR order 1234 failed for 10.0.0.7:5432` →
/// `<time> ERROR order <n> failed for <ip>`.
pub fn normalise(line: &str) -> String {
    let mut s = line.trim().to_string();
    for (re, to) in NORMALISE.iter() {
        if re.is_match(&s) {
            s = re.replace_all(&s, *to).into_owned();
        }
    }
    let collapsed: Vec<&str> = s.split_whitespace().collect();
    truncate(&collapsed.join(" "), 200)
}

/// How many groups a report keeps.
pub const TOP_GROUPS: usize = 10;

impl Tally {
    /// Counts one line; a match is kept as a sample (`label: line`, cut to 300 characters)
    /// while there are fewer than `keep`.
    pub fn line(&mut self, line: &str, pattern: &Pattern, keep: usize, label: Option<&str>) {
        self.lines += 1;
        if let Some(c) = STATUS.captures(line) {
            self.status[match &c[1] {
                "401" => 0,
                "403" => 1,
                _ => 2,
            }] += 1;
        }
        if pattern.is_match(line) {
            self.matches += 1;
            let entry = self.groups.entry(normalise(line)).or_insert_with(|| (0, String::new()));
            if entry.0 == 0 {
                entry.1 = truncate(&match label {
                    Some(l) => format!("{l}: {line}"),
                    None => line.to_string(),
                }, 300);
            }
            entry.0 += 1;
            if self.samples.len() < keep {
                let text = match label {
                    Some(l) => format!("{l}: {line}"),
                    None => line.to_string(),
                };
                self.samples.push(truncate(&text, 300));
            }
        }
    }

    /// Adds another tally (another container's), keeping at most `keep` samples.
    pub fn merge(&mut self, other: Tally, keep: usize) {
        self.lines += other.lines;
        self.matches += other.matches;
        self.samples.extend(other.samples);
        self.samples.truncate(keep);
        for (k, (n, example)) in other.groups {
            let entry = self.groups.entry(k).or_insert_with(|| (0, example));
            entry.0 += n;
        }
        for i in 0..3 {
            self.status[i] += other.status[i];
        }
    }

    /// The most frequent groups, most first (ties by text): `{count, message, example}`.
    pub fn top_groups(&self, n: usize) -> Vec<serde_json::Value> {
        let mut all: Vec<(&String, &(u64, String))> = self.groups.iter().collect();
        all.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(b.0)));
        all.into_iter().take(n).map(|(k, (c, e))| serde_json::json!({ "count": c, "message": k, "example": e })).collect()
    }

    /// `12× <time> ERROR order <n> failed; 3× …`: the top groups for a message.
    pub fn describe_groups(&self, n: usize) -> String {
        self.top_groups(n).iter().map(|g| format!("{}× {}", g["count"], g["message"].as_str().unwrap_or_default())).collect::<Vec<_>>().join("; ")
    }

    /// `HTTP 401: 3, 403: 0, 429: 12` when any was seen.
    pub fn describe_status(&self) -> Option<String> {
        self.status.iter().any(|s| *s > 0).then(|| format!("HTTP 401: {}, 403: {}, 429: {}", self.status[0], self.status[1], self.status[2]))
    }

    /// The matches judged against `limits`; `message` gets the first sample appended, and
    /// the outcome the `matches`, `lines` and `samples` outputs.
    /// With `group`, the message lists the top groups instead of the first sample; the
    /// outcome also has `groups` (the top ten) and `status_counts`.
    pub fn outcome(self, limits: &Limits, message: String) -> Outcome {
        self.outcome_grouped(limits, message, false)
    }

    pub fn outcome_grouped(self, limits: &Limits, mut message: String, group: bool) -> Outcome {
        if let Some(s) = self.describe_status() {
            message.push_str(&format!("; {s}"));
        }
        if group && !self.groups.is_empty() {
            message.push_str(&format!("; top: {}", self.describe_groups(3)));
        } else if let Some(first) = self.samples.first() {
            message.push_str(&format!(", e.g. {first}"));
        }
        let groups = self.top_groups(TOP_GROUPS);
        Outcome::new(limits.verdict(self.matches as f64), message)
            .value(self.matches.to_string())
            .threshold(limits.describe(|v| format!("{v:.0}")))
            .output("matches", self.matches)
            .output("lines", self.lines)
            .output("samples", self.samples)
            .output("groups", groups)
            .output("status_counts", serde_json::json!({"401": self.status[0], "403": self.status[1], "429": self.status[2]}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_of_one_message_normalise_alike() {
        assert_eq!(normalise("2026-11-30T08:00:01.123Z ERROR order 1234 failed for 10.0.0.7:5432"), "<time> ERROR order <n> failed for <ip>");
        assert_eq!(
            normalise("ERROR  user 5f2b9c1e-8a7d-4c3b-9e1f-0a2b3c4d5e6f session deadbeef42 took 12.5ms"),
            "ERROR user <uuid> session <hex> took <n>ms"
        );
        assert_eq!(normalise("panic at 0x7ffd1234 [12:00:01]"), "panic at <hex> [<time>]");
        // Words that merely look like hex stay.
        assert_eq!(normalise("failed to decode cafe"), "failed to decode cafe");
    }

    #[test]
    fn groups_count_repeats_and_merge() {
        let p = Pattern::new("(?i)error").unwrap();
        let mut a = Tally::default();
        for i in 0..5 {
            a.line(&format!("ERROR request {i} failed"), &p, 2, None);
        }
        a.line("ERROR database timeout after 30s", &p, 2, None);
        a.line("GET /api 429 Too Many Requests", &p, 2, None);
        let mut b = Tally::default();
        b.line("ERROR request 99 failed", &p, 2, Some("pod-b"));
        a.merge(b, 2);
        let top = a.top_groups(2);
        assert_eq!(top[0], serde_json::json!({"count": 6, "message": "ERROR request <n> failed", "example": "ERROR request 0 failed"}));
        assert_eq!(top[1]["count"], 1);
        assert_eq!(a.status, [0, 0, 1]);
        assert_eq!(a.describe_status().unwrap(), "HTTP 401: 0, 403: 0, 429: 1");
    }
}
