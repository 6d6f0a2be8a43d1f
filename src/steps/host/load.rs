//! `host.load`: the load average per CPU.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// The load average divided by the number of online CPUs, against thresholds.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Which average to judge: `1m`, `5m` or `15m`.
    #[serde(default)]
    pub window: Window,
    /// Warn above this load per CPU.
    #[serde(default = "warn_default")]
    pub warn_per_cpu: Option<f64>,
    /// Fail above this load per CPU.
    #[serde(default = "fail_default")]
    pub fail_per_cpu: Option<f64>,
}

fn warn_default() -> Option<f64> {
    Some(1.0)
}
fn fail_default() -> Option<f64> {
    Some(2.0)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Window {
    #[serde(rename = "1m")]
    One,
    #[default]
    #[serde(rename = "5m")]
    Five,
    #[serde(rename = "15m")]
    Fifteen,
}

impl StepKind for Load {
    const NAME: &'static str = "host.load";
    const MACHINE: bool = true;
    const SUMMARY: &'static str = "load average per CPU against warn/fail limits";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "load1", ty: "float", help: "1-minute load average" },
        Output { name: "load5", ty: "float", help: "5-minute load average" },
        Output { name: "load15", ty: "float", help: "15-minute load average" },
        Output { name: "cpus", ty: "int", help: "online CPUs" },
        Output { name: "per_cpu", ty: "float", help: "the judged average divided by cpus" },
    ];

    fn check(&self) -> Result<(), String> {
        for (name, v) in [("warn_per_cpu", self.warn_per_cpu), ("fail_per_cpu", self.fail_per_cpu)] {
            if v.is_some_and(|v| v < 0.0) {
                return Err(format!("`{name}` cannot be negative"));
            }
        }
        self.limits().check_order("warn_per_cpu", "fail_per_cpu")
    }

    async fn run(&self, _ctx: &StepContext) -> Result<Outcome, StepError> {
        let text = super::read_proc("/proc/loadavg")?;
        let loads: Vec<f64> = text.split_whitespace().take(3).filter_map(|v| v.parse().ok()).collect();
        let [l1, l5, l15] = loads[..] else {
            return Err(StepError::error(format!("cannot parse /proc/loadavg: {text:?}")));
        };
        // SAFETY: sysconf has no memory effects.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u64;
        let (label, load) = match self.window {
            Window::One => ("1m", l1),
            Window::Five => ("5m", l5),
            Window::Fifteen => ("15m", l15),
        };
        let per_cpu = load / cpus as f64;
        let limits = self.limits();
        Ok(Outcome::new(limits.verdict(per_cpu), format!("{label} load {load:.2} on {cpus} CPUs ({per_cpu:.2} per CPU)"))
            .value(format!("{per_cpu:.2}/cpu"))
            .threshold(limits.describe(|v| format!("{v:.2}/cpu")))
            .output("load1", l1)
            .output("load5", l5)
            .output("load15", l15)
            .output("cpus", cpus)
            .output("per_cpu", (per_cpu * 100.0).round() / 100.0))
    }
}

impl Load {
    fn limits(&self) -> Limits {
        Limits::above(self.warn_per_cpu, self.fail_per_cpu)
    }
}
