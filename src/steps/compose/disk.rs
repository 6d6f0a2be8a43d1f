//! `docker.disk`: what Docker uses on disk (`docker system df`), and how full the
//! filesystem under Docker's root directory is.

use schemars::JsonSchema;
use serde::Deserialize;

use super::docker::Docker;
use crate::helpers::threshold::{Limits, check_percent, percent};
use crate::kind::{StepContext, StepKind};
use crate::units::{ByteSize, human_bytes};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Docker's disk use against byte thresholds, and its filesystem against percentages.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Warn when images, containers, volumes and build cache together exceed this.
    #[serde(default)]
    pub warn_bytes: Option<ByteSize>,
    /// Fail when they exceed this.
    #[serde(default)]
    pub fail_bytes: Option<ByteSize>,
    /// Warn when the filesystem holding Docker's root directory is fuller. Default 80.
    #[serde(default = "warn_default")]
    pub warn_percent: Option<f64>,
    /// Fail when it is fuller. Default 90.
    #[serde(default = "fail_default")]
    pub fail_percent: Option<f64>,
}

fn warn_default() -> Option<f64> {
    Some(80.0)
}
fn fail_default() -> Option<f64> {
    Some(90.0)
}

impl StepKind for Disk {
    const NAME: &'static str = "docker.disk";
    const SUMMARY: &'static str = "docker system df: images, containers, volumes, build cache, reclaimable; filesystem fullness";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "total_bytes", ty: "int", help: "images + containers + volumes + build cache" },
        Output { name: "reclaimable_bytes", ty: "int", help: "what `docker system prune -a --volumes` could free, estimated" },
        Output { name: "images_bytes", ty: "int", help: "images" },
        Output { name: "containers_bytes", ty: "int", help: "containers' writable layers" },
        Output { name: "volumes_bytes", ty: "int", help: "volumes" },
        Output { name: "build_cache_bytes", ty: "int", help: "build cache" },
        Output { name: "filesystem_used_percent", ty: "float", help: "how full Docker's filesystem is" },
    ];

    fn check(&self) -> Result<(), String> {
        check_percent("warn_percent", self.warn_percent)?;
        check_percent("fail_percent", self.fail_percent)?;
        self.bytes().check_order("warn_bytes", "fail_bytes")?;
        self.fs().check_order("warn_percent", "fail_percent")
    }

    async fn run(&self, _ctx: &StepContext) -> Result<Outcome, StepError> {
        let docker = Docker::from_env()?;
        let df = docker.get("/system/df", "reading docker system df").await?;
        let info = docker.get("/info", "reading docker info").await?;
        let sum = |arr: &serde_json::Value, f: &dyn Fn(&serde_json::Value) -> f64| arr.as_array().into_iter().flatten().map(f).sum::<f64>();
        let images = sum(&df["Images"], &|i| i["Size"].as_f64().unwrap_or(0.0) - i["SharedSize"].as_f64().unwrap_or(0.0).max(0.0));
        let shared = df["Images"].as_array().into_iter().flatten().filter_map(|i| i["SharedSize"].as_f64()).filter(|s| *s > 0.0).fold(0.0, f64::max);
        let images = images + shared;
        let unused_images = sum(&df["Images"], &|i| if i["Containers"].as_i64().unwrap_or(0) == 0 { i["Size"].as_f64().unwrap_or(0.0) } else { 0.0 });
        let containers = sum(&df["Containers"], &|c| c["SizeRw"].as_f64().unwrap_or(0.0));
        let stopped = sum(&df["Containers"], &|c| if c["State"].as_str() != Some("running") { c["SizeRw"].as_f64().unwrap_or(0.0) } else { 0.0 });
        let volumes = sum(&df["Volumes"], &|v| v["UsageData"]["Size"].as_f64().unwrap_or(0.0).max(0.0));
        let unused_volumes = sum(&df["Volumes"], &|v| if v["UsageData"]["RefCount"].as_i64().unwrap_or(1) == 0 { v["UsageData"]["Size"].as_f64().unwrap_or(0.0).max(0.0) } else { 0.0 });
        let cache = sum(&df["BuildCache"], &|b| b["Size"].as_f64().unwrap_or(0.0));
        let total = images + containers + volumes + cache;
        let reclaimable = unused_images + stopped + unused_volumes + cache;
        let root = info["DockerRootDir"].as_str().unwrap_or("/var/lib/docker").to_string();
        let fs_used = fs_percent(&root);
        let verdict = self.bytes().verdict(total).max(fs_used.map_or(crate::vocab::Verdict::Passed, |p| self.fs().verdict(p)));
        let mut message = format!(
            "Docker uses {} (images {}, containers {}, volumes {}, build cache {}); {} reclaimable",
            human_bytes(total as u64),
            human_bytes(images as u64),
            human_bytes(containers as u64),
            human_bytes(volumes as u64),
            human_bytes(cache as u64),
            human_bytes(reclaimable as u64)
        );
        if let Some(p) = fs_used {
            message.push_str(&format!("; {root} is on a filesystem {} full", percent(p)));
        }
        let mut thresholds = Vec::new();
        thresholds.extend(self.bytes().describe(|b| human_bytes(b as u64)));
        thresholds.extend(self.fs().describe(|p| format!("filesystem {}", percent(p))));
        Ok(Outcome::new(verdict, message)
            .value(human_bytes(total as u64))
            .threshold((!thresholds.is_empty()).then(|| thresholds.join("; ")))
            .output("total_bytes", total as u64)
            .output("reclaimable_bytes", reclaimable as u64)
            .output("images_bytes", images as u64)
            .output("containers_bytes", containers as u64)
            .output("volumes_bytes", volumes as u64)
            .output("build_cache_bytes", cache as u64)
            .output("filesystem_used_percent", fs_used.map(|p| (p * 10.0).round() / 10.0)))
    }
}

/// How full the filesystem holding `path` is (None when opsctl cannot see it, e.g. a
/// remote engine).
fn fs_percent(path: &str) -> Option<f64> {
    let c = std::ffi::CString::new(path).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let f = st.f_frsize as f64;
    let used = (st.f_blocks - st.f_bfree) as f64 * f;
    let avail = st.f_bavail as f64 * f;
    (used + avail > 0.0).then(|| used * 100.0 / (used + avail))
}

impl Disk {
    fn bytes(&self) -> Limits {
        Limits::above(self.warn_bytes.map(|b| b.0 as f64), self.fail_bytes.map(|b| b.0 as f64))
    }
    fn fs(&self) -> Limits {
        Limits::above(self.warn_percent, self.fail_percent)
    }
}
