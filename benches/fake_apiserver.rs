//! The tests' fake Kubernetes API server as a process, for `scripts/bench-k8s.sh`:
//! `fake-apiserver KUBECONFIG_PATH PODS` seeds a ready node and PODS ready pods (label
//! `app=web`) in namespace `bench`, writes a kubeconfig pointing at itself, prints
//! `READY <url>` and serves until killed. Never part of the opsctl binary.
#![allow(dead_code)]

#[path = "../tests/cli/support/fake_kube/mod.rs"]
mod fake_kube;

use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let kubeconfig = args.next().expect("usage: fake-apiserver KUBECONFIG_PATH PODS");
    let pods: usize = args.next().and_then(|n| n.parse().ok()).expect("usage: fake-apiserver KUBECONFIG_PATH PODS");
    let fake = fake_kube::FakeKube::start();
    fake.with(|c| {
        c.seed("nodes", json!({"metadata": {"name": "node-1"}, "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        for i in 0..pods {
            c.seed(
                "pods",
                json!({
                    "metadata": {"name": format!("web-{i:05}"), "namespace": "bench", "labels": {"app": "web", "pod-template-hash": "6d4cf56db6"},
                                 "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-20T10:00:00Z"}},
                    "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "registry.example.com/web:1.4.2",
                             "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                             "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                             "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": "8080"}]}]},
                    "status": {"phase": "Running", "podIP": format!("10.1.{}.{}", i / 250, i % 250), "startTime": "2026-11-20T10:00:00Z",
                               "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                                              {"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "True"}],
                               "containerStatuses": [{"name": "web", "image": "registry.example.com/web:1.4.2", "imageID": "sha256:0f0e", "ready": true,
                                                      "restartCount": (i % 3) as i64, "started": true, "state": {"running": {"startedAt": "2026-11-20T10:00:05Z"}}}]}
                }),
            );
        }
    });
    std::fs::write(&kubeconfig, fake.kubeconfig("bench")).expect("write kubeconfig");
    println!("READY {}", fake.url());
    loop {
        std::thread::park();
    }
}
