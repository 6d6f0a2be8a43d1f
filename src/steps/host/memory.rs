//! `host.memory`: memory in use, from /proc/meminfo.

use schemars::JsonSchema;
use serde::Deserialize;

use super::disk::round1;
use crate::helpers::threshold::{Limits, check_percent, percent};
use crate::kind::{StepContext, StepKind};
use crate::units::human_bytes;
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Memory in use (total minus available, as `free` reports it) against thresholds.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Warn above this percentage used.
    #[serde(default = "warn_default")]
    pub warn_percent: Option<f64>,
    /// Fail above this percentage used.
    #[serde(default = "fail_default")]
    pub fail_percent: Option<f64>,
}

fn warn_default() -> Option<f64> {
    Some(85.0)
}
fn fail_default() -> Option<f64> {
    Some(95.0)
}

impl StepKind for Memory {
    const NAME: &'static str = "host.memory";
    const MACHINE: bool = true;
    const SUMMARY: &'static str = "memory in use against warn/fail percentages";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "used_percent", ty: "float", help: "percentage of memory in use" },
        Output { name: "total_bytes", ty: "int", help: "total memory" },
        Output { name: "available_bytes", ty: "int", help: "memory available for new work" },
        Output { name: "swap_used_percent", ty: "float", help: "percentage of swap in use, or null without swap" },
    ];

    fn check(&self) -> Result<(), String> {
        check_percent("warn_percent", self.warn_percent)?;
        check_percent("fail_percent", self.fail_percent)?;
        self.limits().check_order("warn_percent", "fail_percent")
    }

    async fn run(&self, _ctx: &StepContext) -> Result<Outcome, StepError> {
        let info = super::read_proc("/proc/meminfo")?;
        let m = parse_meminfo(&info)?;
        let used_percent = (m.total - m.available) as f64 * 100.0 / m.total as f64;
        let limits = self.limits();
        let swap = (m.swap_total > 0).then(|| (m.swap_total - m.swap_free) as f64 * 100.0 / m.swap_total as f64);
        Ok(Outcome::new(
            limits.verdict(used_percent),
            format!("{} of {} in use ({} available)", percent(used_percent), human_bytes(m.total), human_bytes(m.available)),
        )
        .value(percent(used_percent))
        .threshold(limits.describe(percent))
        .output("used_percent", round1(used_percent))
        .output("total_bytes", m.total)
        .output("available_bytes", m.available)
        .output("swap_used_percent", swap.map(round1)))
    }
}

impl Memory {
    fn limits(&self) -> Limits {
        Limits::above(self.warn_percent, self.fail_percent)
    }
}

struct MemInfo {
    total: u64,
    available: u64,
    swap_total: u64,
    swap_free: u64,
}

fn parse_meminfo(text: &str) -> Result<MemInfo, StepError> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))
            .and_then(|l| l[name.len() + 1..].split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    let total = field("MemTotal").filter(|t| *t > 0).ok_or_else(|| StepError::error("/proc/meminfo has no MemTotal"))?;
    // Kernels before 3.14 lack MemAvailable; approximate as free + buffers + cache.
    let available = field("MemAvailable").unwrap_or_else(|| {
        field("MemFree").unwrap_or(0) + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0)
    });
    Ok(MemInfo {
        total,
        available: available.min(total),
        swap_total: field("SwapTotal").unwrap_or(0),
        swap_free: field("SwapFree").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        let m = parse_meminfo("MemTotal:       16000 kB\nMemFree:  1000 kB\nMemAvailable:   4000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n").unwrap();
        assert_eq!(m.total, 16000 * 1024);
        assert_eq!(m.available, 4000 * 1024);
        assert!(parse_meminfo("nothing").is_err());
    }
}
