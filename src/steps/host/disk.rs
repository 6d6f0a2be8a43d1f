//! `host.disk`: how full the filesystem holding a path is.

use std::ffi::CString;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::helpers::threshold::{Limits, check_percent, percent};
use crate::kind::{StepContext, StepKind};
use crate::units::human_bytes;
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// Disk usage of the filesystem that holds `path`, as `df` computes it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Any path on the filesystem to check.
    #[serde(default = "root")]
    pub path: String,
    /// Warn above this percentage used.
    #[serde(default = "warn_default")]
    pub warn_percent: Option<f64>,
    /// Fail above this percentage used.
    #[serde(default = "fail_default")]
    pub fail_percent: Option<f64>,
}

fn root() -> String {
    "/".into()
}
fn warn_default() -> Option<f64> {
    Some(80.0)
}
fn fail_default() -> Option<f64> {
    Some(90.0)
}

impl StepKind for Disk {
    const NAME: &'static str = "host.disk";
    const MACHINE: bool = true;
    const SUMMARY: &'static str = "disk usage of a filesystem against warn/fail percentages";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "used_percent", ty: "float", help: "percentage of the space usable by non-root users that is used" },
        Output { name: "size_bytes", ty: "int", help: "filesystem size" },
        Output { name: "used_bytes", ty: "int", help: "bytes in use" },
        Output { name: "available_bytes", ty: "int", help: "bytes available to non-root users" },
        Output { name: "inodes_used_percent", ty: "float", help: "percentage of inodes used, or null" },
    ];

    fn check(&self) -> Result<(), String> {
        check_percent("warn_percent", self.warn_percent)?;
        check_percent("fail_percent", self.fail_percent)?;
        self.limits().check_order("warn_percent", "fail_percent")
    }

    async fn run(&self, _ctx: &StepContext) -> Result<Outcome, StepError> {
        let path = self.path.clone();
        let st = super::blocking(move || statvfs(&path)).await?;
        let limits = self.limits();
        let verdict = limits.verdict(st.used_percent);
        let message = match verdict {
            Verdict::Passed => format!("{} is {} full", self.path, percent(st.used_percent)),
            _ => format!("{} is {} full ({} free)", self.path, percent(st.used_percent), human_bytes(st.available)),
        };
        Ok(Outcome::new(verdict, message)
            .value(percent(st.used_percent))
            .threshold(limits.describe(percent))
            .output("used_percent", round1(st.used_percent))
            .output("size_bytes", st.size)
            .output("used_bytes", st.used)
            .output("available_bytes", st.available)
            .output("inodes_used_percent", st.inodes_used_percent.map(round1)))
    }
}

impl Disk {
    fn limits(&self) -> Limits {
        Limits::above(self.warn_percent, self.fail_percent)
    }
}

struct Usage {
    size: u64,
    used: u64,
    available: u64,
    used_percent: f64,
    inodes_used_percent: Option<f64>,
}

fn statvfs(path: &str) -> Result<Usage, StepError> {
    let c = CString::new(path).map_err(|_| StepError::invalid("path contains a NUL byte"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(StepError::error(format!("cannot read disk usage of {path}: {}", crate::error::io_reason(&err))));
    }
    let frsize = st.f_frsize as u64;
    let size = st.f_blocks as u64 * frsize;
    let free = st.f_bfree as u64 * frsize;
    let available = st.f_bavail as u64 * frsize;
    let used = size.saturating_sub(free);
    // As df: used / (used + available), so root's reserved blocks count as unavailable.
    let used_percent = if used + available == 0 { 0.0 } else { used as f64 * 100.0 / (used + available) as f64 };
    let inodes_used_percent = (st.f_files > 0)
        .then(|| (st.f_files - st.f_ffree) as f64 * 100.0 / st.f_files as f64);
    Ok(Usage { size, used, available, used_percent, inodes_used_percent })
}

pub(crate) fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_root_filesystem() {
        let u = statvfs("/").unwrap();
        assert!(u.size > 0);
        assert!((0.0..=100.0).contains(&u.used_percent));
    }

    #[test]
    fn missing_paths_are_clear_errors() {
        let err = statvfs("/does/not/exist").err().unwrap();
        assert_eq!(err.message, "cannot read disk usage of /does/not/exist: no such file or directory");
    }

}
