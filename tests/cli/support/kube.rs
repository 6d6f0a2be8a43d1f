//! Kubernetes test set-up: a fake API server (see [`super::fake_kube`]) per test, a
//! kubeconfig and an inventory pointing at it, and objects to seed.

use serde_json::{Value, json};

use super::fake_kube::FakeKube;
use super::{Run, Scratch};

pub const NS: &str = "team-a";

pub struct KubeEnv {
    pub fake: FakeKube,
    pub scratch: Scratch,
}

impl KubeEnv {
    /// A fake cluster with one ready node, and instance `team-a` using it.
    pub fn new() -> KubeEnv {
        let fake = FakeKube::start();
        let scratch = Scratch::new();
        scratch.write("kubeconfig.yaml", &fake.kubeconfig(NS));
        scratch.write("opsctl.yaml", "instances:\n  team-a:\n    kubernetes: { kubeconfig: kubeconfig.yaml, namespace: team-a }\n");
        fake.with(|c| {
            c.ready_after = std::time::Duration::from_millis(150);
            c.seed("nodes", node("node-1", true));
        });
        KubeEnv { fake, scratch }
    }

    /// Runs a runbook (its steps as YAML) on team-a with JSON output.
    pub fn run(&self, steps: &str, extra: &[&str]) -> Run {
        let rb = self.scratch.write("rb.yaml", &format!("name: k8s-test\nsteps:\n{steps}"));
        self.scratch.opsctl().args(["run", rb.to_str().unwrap(), "-i", "team-a", "--output", "json", "--yes"]).args(extra).run()
    }

    /// Seeds a Deployment and waits until its pods are ready.
    pub fn deployment(&self, name: &str, replicas: i64, image: &str) {
        self.fake.with(|c| c.seed("deployments", deployment(name, replicas, image)));
        self.wait_ready("deployments", name);
    }

    pub fn wait_ready(&self, plural: &str, name: &str) {
        self.fake.wait_until(&format!("{plural}/{name} ready"), |c| {
            let ty = super::fake_kube::store::type_of(plural);
            c.get(ty, NS, name).is_ok_and(|d| {
                let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
                d["status"]["readyReplicas"].as_i64().unwrap_or(0) == want
                    && d["status"]["observedGeneration"] == d["metadata"]["generation"]
                    && d["status"]["replicas"].as_i64().unwrap_or(-1) == want
            })
        });
    }

    pub fn get(&self, plural: &str, name: &str) -> Value {
        self.fake.with(|c| c.get(super::fake_kube::store::type_of(plural), NS, name).expect("object exists"))
    }
}

pub fn node(name: &str, ready: bool) -> Value {
    json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
           "spec": {},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": if ready { "KubeletReady" } else { "KubeletNotReady" }}]}})
}

pub fn deployment(name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": name, "image": image, "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}},
        }
    })
}

pub fn statefulset(name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": name, "image": image}]}},
        }
    })
}

/// A bare pod with the given phase, readiness, waiting reason and restarts.
pub fn pod(name: &str, app: &str, ready: bool, waiting: Option<&str>, restarts: i64) -> Value {
    let state = match waiting {
        Some(r) => json!({"waiting": {"reason": r}}),
        None => json!({"running": {"startedAt": "2026-11-23T00:00:00Z"}}),
    };
    json!({
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
        "spec": {"containers": [{"name": app, "image": "registry/x:1"}], "nodeName": "node-1"},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                   "containerStatuses": [{"name": app, "image": "registry/x:1", "imageID": "", "ready": ready, "restartCount": restarts, "state": state}]}
    })
}
