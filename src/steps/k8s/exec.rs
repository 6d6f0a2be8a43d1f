//! `k8s.exec`: argv in a pod's container, through the API server's exec subresource
//! (WebSocket, the `v5.channel.k8s.io` / `v4.channel.k8s.io` protocols, as kubectl exec);
//! exit code and stdout checked like `host.command`.

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::{Kube, Target, client, valid_name};
use crate::helpers::exec::{ExitCodes, judge};
use crate::kind::{StepContext, StepKind};
use crate::pattern::Pattern;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Run argv in a pod's container.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// `pod/NAME`, or `deployment/NAME` / `statefulset/NAME` (its first ready pod).
    pub target: String,
    /// The container. Default: the pod's first.
    #[serde(default)]
    pub container: Option<String>,
    /// The program and its arguments, run without a shell.
    pub argv: Vec<String>,
    /// What it changes: `read`, `mutate` or `destroy`. Required.
    pub effect: Effect,
    /// Exit code(s) that pass. Default 0.
    #[serde(default)]
    pub expect_exit: ExitCodes,
    /// A regex stdout must match.
    #[serde(default)]
    pub expect_stdout: Option<Pattern>,
}

/// The pod a target names: `pod/NAME`, or a workload's first ready pod.
pub async fn pod_for(kube: &Kube, target: &str) -> Result<Pod, StepError> {
    if let Some(name) = target.strip_prefix("pod/").or_else(|| target.strip_prefix("po/")) {
        return kube.api::<Pod>().get(name).await.map_err(|e| kube.error(e, &format!("pod {name}")));
    }
    let t = Target::parse(target).map_err(StepError::invalid)?;
    let selector = super::workload_selector(kube, &t).await?;
    let pods = kube.api::<Pod>().list(&ListParams::default().labels(&selector)).await.map_err(|e| kube.error(e, "pods"))?;
    let ready = |p: &Pod| p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let mut items = pods.items;
    items.sort_by_key(|p| p.metadata.name.clone());
    items.into_iter().find(ready).ok_or_else(|| StepError::new(ErrorClass::Failed, format!("{t} has no ready pod to exec in")))
}

/// The first 64 KiB of a stream, read to its end so the exec stream never stalls.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> String {
    let mut buf = Vec::new();
    let _ = (&mut *r).take(64 * 1024).read_to_end(&mut buf).await;
    let _ = tokio::io::copy(r, &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// The exit code in the status the exec stream ends with (`NonZeroExitCode` carries it in
/// its causes), or the reason it could not run.
pub fn exit_code(status: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> Result<i32, String> {
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if status.reason.as_deref() == Some("NonZeroExitCode")
        && let Some(code) = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
            .and_then(|c| c.message.as_deref()?.parse().ok())
    {
        return Ok(code);
    }
    Err(status.message.clone().filter(|m| !m.is_empty()).or_else(|| status.reason.clone()).unwrap_or_else(|| "the exec failed".into()))
}

/// How a program in a pod gets a secret instead of on its command line.
pub const K8S_SECRET_HINT: &str = "give the pod the secret from a Kubernetes Secret (a mounted file or an environment variable of the container) and read it there";

impl StepKind for Exec {
    const NAME: &'static str = "k8s.exec";
    const ARGV: &'static [&'static str] = &["argv"];
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("", "pods", &["get", "list"]), kube("", "pods/exec", &["create"])]
    };
    const SUMMARY: &'static str = "run argv in a pod's container (the exec subresource); check exit code and stdout";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "exit_code", ty: "int", help: "the exit code" },
        Output { name: "stdout", ty: "string", help: "standard output (first 64 KiB)" },
        Output { name: "stderr", ty: "string", help: "standard error (first 64 KiB)" },
        Output { name: "pod", ty: "string", help: "the pod it ran in" },
    ];

    fn effect(&self) -> Effect {
        self.effect
    }

    fn check(&self) -> Result<(), String> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err("`argv` needs at least the program".into());
        }
        match self.target.strip_prefix("pod/") {
            Some(n) if !valid_name(n) => Err(format!("`target` pod name `{n}` is not a valid Kubernetes name")),
            Some(_) => Ok(()),
            None => Target::parse(&self.target).map(|_| ()),
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        crate::helpers::exec::refuse_secrets_on_command_line("argv", &self.argv, K8S_SECRET_HINT)?;
        let kube = client(ctx).await?;
        let pod = pod_for(&kube, &self.target).await?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let container = match &self.container {
            Some(c) => c.clone(),
            None => pod.spec.as_ref().and_then(|s| s.containers.first()).map(|c| c.name.clone()).unwrap_or_default(),
        };
        let started = super::stream::exec(&kube, &name, Some(&container), self.argv.clone(), false).await?;
        let (mut stdout, mut stderr) = (started.stdout, started.stderr);
        let (out, err, status) = tokio::join!(read_capped(&mut stdout), read_capped(&mut stderr), started.status);
        let status = status.ok().flatten();
        let status = status.ok_or_else(|| StepError::new(ErrorClass::Unavailable, format!("the exec stream of pod {name} ended without an exit status")))?;
        let code = exit_code(&status).map_err(|m| StepError::new(ErrorClass::Error, format!("cannot run {:?} in pod {name} container {container}: {m}", self.argv[0])))?;
        let outcome = judge(&self.argv[0], Some(code), None, out, err, &self.expect_exit, self.expect_stdout.as_ref());
        Ok(outcome.output("pod", name))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let pod = pod_for(&kube, &self.target).await?;
        Ok(format!("would run {:?} in pod {}", self.argv.join(" "), pod.metadata.name.unwrap_or_default()))
    }
}
