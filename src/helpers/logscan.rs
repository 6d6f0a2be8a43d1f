//! Counting log lines that match a pattern, with samples: what `compose.logs` and
//! `k8s.logs` both do to the lines they read (`logs --since 1h | grep -c error`).

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
}

impl Tally {
    /// Counts one line; a match is kept as a sample (`label: line`, cut to 300 characters)
    /// while there are fewer than `keep`.
    pub fn line(&mut self, line: &str, pattern: &Pattern, keep: usize, label: Option<&str>) {
        self.lines += 1;
        if pattern.is_match(line) {
            self.matches += 1;
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
    }

    /// The matches judged against `limits`; `message` gets the first sample appended, and
    /// the outcome the `matches`, `lines` and `samples` outputs.
    pub fn outcome(self, limits: &Limits, mut message: String) -> Outcome {
        if let Some(first) = self.samples.first() {
            message.push_str(&format!(", e.g. {first}"));
        }
        Outcome::new(limits.verdict(self.matches as f64), message)
            .value(self.matches.to_string())
            .threshold(limits.describe(|v| format!("{v:.0}")))
            .output("matches", self.matches)
            .output("lines", self.lines)
            .output("samples", self.samples)
    }
}
