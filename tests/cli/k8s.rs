//! The Kubernetes backend against the fake API server (tests/cli/support/fake_kube): no
//! real kube-apiserver can run here. Each test has its own fake cluster.

use serde_json::json;

use crate::support::kube::{KubeEnv, NS, deployment, node, pod, statefulset};

fn status(r: &crate::support::Run, id: &str) -> String {
    r.step(id)["status"].as_str().unwrap_or_default().to_string()
}

fn message(r: &crate::support::Run, id: &str) -> String {
    r.step(id)["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn nodes_ready_both_ways() {
    let k = KubeEnv::new();
    k.fake.with(|c| {
        c.seed("nodes", node("node-2", true));
    });
    let ok = k.run("  - { id: n, k8s.nodes_ready: {} }\n", &[]);
    ok.code(0);
    assert_eq!(status(&ok, "n"), "passed");
    assert_eq!(message(&ok, "n"), "2/2 nodes Ready");
    k.fake.with(|c| {
        c.seed("nodes", node("node-3", false));
        let mut cordoned = node("node-2", true);
        cordoned["spec"]["unschedulable"] = json!(true);
        c.seed("nodes", cordoned);
    });
    let bad = k.run("  - { id: n, k8s.nodes_ready: {} }\n", &[]);
    bad.code(1);
    assert_eq!(message(&bad, "n"), "2/3 nodes Ready; not ready: node-3 (NotReady: KubeletNotReady); cordoned: node-2");
    assert_eq!(bad.step("n")["outputs"]["cordoned"], json!(["node-2"]));
    let only = k.run("  - { id: n, k8s.nodes_ready: { selector: kubernetes.io/hostname=node-2 } }\n", &[]);
    only.code(0);
    assert_eq!(status(&only, "n"), "warned");
}

#[test]
fn pods_healthy_judges_phase_crash_loops_restarts_and_ratio() {
    let k = KubeEnv::new();
    k.fake.with(|c| {
        c.seed("pods", pod("api-1", "api", true, None, 0));
        c.seed("pods", pod("api-2", "api", true, None, 3));
        c.seed("pods", pod("worker-1", "worker", false, Some("CrashLoopBackOff"), 12));
        c.seed("pods", pod("worker-2", "worker", true, None, 0));
    });
    let r = k.run(
        "  - { id: api, k8s.pods_healthy: { selector: app=api } }\n\
         \x20 - { id: api_restarts, k8s.pods_healthy: { selector: app=api, warn_restarts: 2, max_restarts: 5 }, on_failure: continue }\n\
         \x20 - { id: api_strict, k8s.pods_healthy: { selector: app=api, max_restarts: 2 }, on_failure: continue }\n\
         \x20 - { id: workers, k8s.pods_healthy: { selector: app=worker }, on_failure: continue }\n\
         \x20 - { id: half, k8s.pods_healthy: { selector: app=worker, min_ready_ratio: 0.5 }, on_failure: continue }\n\
         \x20 - { id: none, k8s.pods_healthy: { selector: app=nothing }, on_failure: continue }\n\
         \x20 - { id: none_ok, k8s.pods_healthy: { selector: app=nothing, allow_none: true } }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "api"), "passed");
    assert_eq!(message(&r, "api"), "2/2 pods matching app=api ready");
    assert_eq!(status(&r, "api_restarts"), "warned");
    assert_eq!(message(&r, "api_restarts"), "2/2 pods matching app=api ready; restarted more than 2 times: api-2 (3)");
    assert_eq!(status(&r, "api_strict"), "failed");
    assert_eq!(status(&r, "workers"), "failed");
    assert_eq!(message(&r, "workers"), "1/2 pods matching app=worker ready; CrashLoopBackOff: worker-1; not ready: worker-1: worker CrashLoopBackOff");
    assert_eq!(r.step("workers")["outputs"]["crash_looping"], json!(["worker-1"]));
    assert_eq!(r.step("workers")["outputs"]["max_restarts"], 12);
    // Crash-looping fails whatever the ratio.
    assert_eq!(status(&r, "half"), "failed");
    assert_eq!(status(&r, "none"), "failed");
    assert_eq!(message(&r, "none"), format!("no pods matching app=nothing in namespace {NS}"));
    assert_eq!(status(&r, "none_ok"), "passed");
}

#[test]
fn pods_are_listed_page_by_page() {
    let k = KubeEnv::new();
    k.fake.with(|c| {
        for i in 0..1203 {
            c.seed("pods", pod(&format!("web-{i:04}"), "web", true, None, 0));
        }
    });
    let r = k.run("  - { id: p, k8s.pods_healthy: { selector: app=web } }\n", &[]);
    r.code(0);
    assert_eq!(message(&r, "p"), "1203/1203 pods matching app=web ready");
    let lists = k.fake.with(|c| c.requests.iter().filter(|r| r.starts_with("GET /api/v1/namespaces/team-a/pods?")).cloned().collect::<Vec<_>>());
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(lists.iter().all(|l| l.contains("limit=500")), "{lists:?}");
    assert!(lists[1].contains("continue="), "{lists:?}");
}

#[test]
fn deployments_and_workloads_roll_out() {
    let k = KubeEnv::new();
    k.deployment("api", 2, "registry/api:v1");
    k.fake.with(|c| c.seed("statefulsets", statefulset("db", 1, "postgres:16")));
    k.wait_ready("statefulsets", "db");
    let r = k.run(
        "  - { id: api, k8s.deployment_ready: { target: deployment/api } }\n\
         \x20 - { id: db, k8s.deployment_ready: { target: sts/db } }\n\
         \x20 - { id: all, k8s.workloads: {} }\n",
        &[],
    );
    r.code(0);
    assert_eq!(message(&r, "api"), "deployment/api: 2/2 ready, 2 updated, 2 available");
    assert_eq!(r.step("api")["outputs"]["revision"], "1");
    assert_eq!(r.step("api")["outputs"]["images"], json!(["registry/api:v1"]));
    assert_eq!(message(&r, "all"), "2 workloads rolled out");
    k.fake.with(|c| c.crashing_images.push("broken".into()));
    k.fake.with(|c| c.seed("deployments", deployment("bad", 1, "registry/bad:broken")));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = k.run(
        "  - { id: bad, k8s.deployment_ready: { target: bad }, on_failure: continue }\n\
         \x20 - { id: all, k8s.workloads: {} }\n",
        &[],
    );
    r.code(1);
    assert_eq!(message(&r, "bad"), "deployment/bad: 0/1 ready, 1 updated, 0 available");
    assert_eq!(message(&r, "all"), "1 of 3 workloads not rolled out: deployment/bad: 0/1 ready, 1 updated, 0 available");
    let missing = k.run("  - { id: m, k8s.deployment_ready: { target: deployment/nope } }\n", &[]);
    missing.code(1);
    assert_eq!(message(&missing, "m"), "deployment nope not found in namespace team-a (context `fake`)");
}

#[test]
fn a_bad_image_times_out_and_is_rolled_back() {
    let k = KubeEnv::new();
    k.fake.with(|c| c.crashing_images.push("broken".into()));
    k.deployment("api", 2, "registry/api:v1");
    let r = k.run(
        "  - { id: deploy, k8s.set_image: { target: deployment/api, container: api, image: \"registry/api:v2-broken\" } }\n\
         \x20 - { id: wait, k8s.rollout_status: { target: deployment/api, timeout: 2s }, on_failure: continue }\n\
         \x20 - { id: undo, k8s.rollout_undo: { target: deployment/api }, when: \"{{ steps.wait.failed }}\" }\n\
         \x20 - { id: healthy, k8s.rollout_status: { target: deployment/api, timeout: 20s } }\n\
         \x20 - { id: pods, k8s.pods_healthy: { selector: app=api } }\n\
         \x20 - { id: history, k8s.rollout_history: { target: deployment/api } }\n",
        &[],
    );
    // The rollout failed, so the run fails — but the service is healthy again.
    r.code(1);
    assert_eq!(status(&r, "deploy"), "passed");
    assert_eq!(r.step("deploy")["outputs"]["previous_image"], "registry/api:v1");
    assert_eq!(status(&r, "wait"), "failed");
    let waited = message(&r, "wait");
    // New pods exist but crash; the old ones still serve.
    assert_eq!(waited, "not rolled out after 2s: deployment/api: 2/2 ready, 2 updated, 2 available, 2 old pending termination");
    assert_eq!(status(&r, "undo"), "passed");
    assert_eq!(r.step("undo")["outputs"]["from_revision"], 2);
    assert_eq!(r.step("undo")["outputs"]["to_revision"], 1);
    assert!(message(&r, "undo").starts_with("deployment/api rolled back from revision 2 (registry/api:v2-broken) to the template of revision 1 (registry/api:v1)"), "{}", message(&r, "undo"));
    assert_eq!(status(&r, "healthy"), "passed");
    // As in Kubernetes, the old template comes back as a new revision number.
    assert_eq!(r.step("healthy")["outputs"]["revision"], "3");
    assert_eq!(status(&r, "pods"), "passed");
    let revisions = r.step("history")["outputs"]["revisions"].clone();
    assert_eq!(revisions.as_array().unwrap().len(), 2, "{revisions}");
    assert_eq!(revisions[0]["revision"], 2);
    assert_eq!(revisions[0]["images"], json!(["registry/api:v2-broken"]));
    assert!(revisions[0]["change_cause"].as_str().unwrap().contains("set image api=registry/api:v2-broken"), "{revisions}");
    assert_eq!(revisions[1]["revision"], 3);
    assert_eq!(revisions[1]["images"], json!(["registry/api:v1"]));
    let d = k.get("deployments", "api");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "registry/api:v1");
    assert!(d["spec"]["template"]["metadata"]["labels"].get("pod-template-hash").is_none());
    // Undo to an explicit revision, and to one that does not exist.
    let to = k.run("  - { id: u, k8s.rollout_undo: { target: api, to_revision: 9 } }\n", &[]);
    to.code(1);
    assert_eq!(message(&to, "u"), "deployment/api has no revision 9 (revisions: 2, 3)");
}

#[test]
fn scale_and_scale_all_remember_the_counts() {
    let k = KubeEnv::new();
    k.deployment("api", 2, "registry/api:v1");
    k.deployment("worker", 3, "registry/worker:v1");
    k.fake.with(|c| c.seed("statefulsets", statefulset("db", 1, "postgres:16")));
    k.wait_ready("statefulsets", "db");
    let r = k.run("  - { id: s, k8s.scale: { target: deployment/api, replicas: 4, wait_timeout: 20s } }\n", &[]);
    r.code(0);
    assert_eq!(r.step("s")["outputs"]["previous"], 2);
    assert_eq!(r.step("s")["value"], "2 → 4");
    assert_eq!(message(&r, "s"), "deployment/api scaled 2 → 4; deployment/api: 4/4 ready, 4 updated, 4 available");
    let down = k.run("  - { id: down, k8s.scale_all: { replicas: 0, wait_timeout: 20s } }\n", &[]);
    down.code(0);
    assert_eq!(down.step("down")["outputs"]["previous"], json!({"deployment/api": 4, "deployment/worker": 3, "statefulset/db": 1}));
    assert_eq!(k.fake.with(|c| c.all("pods", Some(NS)).len()), 0);
    // A second scale to 0 changes nothing and forgets nothing.
    let again = k.run("  - { id: down, k8s.scale_all: { replicas: 0 } }\n", &[]);
    again.code(0);
    assert_eq!(message(&again, "down"), "every workload in namespace team-a is already at 0");
    let up = k.run("  - { id: up, k8s.scale_all: { restore: true, wait_timeout: 20s } }\n", &[]);
    up.code(0);
    assert_eq!(message(&up, "up"), "scaled 3 workloads: deployment/api 0 → 4, deployment/worker 0 → 3, statefulset/db 0 → 1");
    for (plural, name, n) in [("deployments", "api", 4), ("deployments", "worker", 3), ("statefulsets", "db", 1)] {
        let o = k.get(plural, name);
        assert_eq!(o["spec"]["replicas"], n);
        assert_eq!(o["status"]["readyReplicas"], n);
        assert!(o["metadata"]["annotations"].get("opsctl.io/previous-replicas").is_none(), "{o}");
    }
    let bad = k.run("  - { id: x, k8s.scale_all: { replicas: 1, restore: true } }\n", &[]);
    bad.code(2);
    bad.stderr_has("give either `replicas` or `restore: true`, not both");
}

#[test]
fn resources_and_restarts_roll_out_new_revisions() {
    let k = KubeEnv::new();
    k.deployment("api", 1, "registry/api:v1");
    let r = k.run(
        "  - { id: res, k8s.set_resources: { target: api, container: api, requests: { cpu: 250m }, limits: { cpu: \"1\", memory: 512Mi }, wait: true, wait_timeout: 20s } }\n\
         \x20 - { id: restart, k8s.rollout_restart: { target: deployment/api, wait: true, wait_timeout: 20s } }\n",
        &[],
    );
    r.code(0);
    assert!(message(&r, "res").starts_with("deployment/api container api: requests cpu=100m,memory=128Mi, limits none → requests cpu=250m,memory=128Mi, limits cpu=1,memory=512Mi"), "{}", message(&r, "res"));
    assert_eq!(r.step("res")["outputs"]["revision"], "2");
    assert_eq!(r.step("restart")["outputs"]["revision"], "3");
    let d = k.get("deployments", "api");
    assert!(d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string());
    let wrong = k.run("  - { id: res, k8s.set_image: { target: api, container: apu, image: x } }\n", &[]);
    wrong.code(1);
    assert_eq!(message(&wrong, "res"), "deployment/api has no container `apu`; did you mean `api`? (containers: api)");
    let bad = k.run("  - { id: res, k8s.set_resources: { target: api, container: api, limits: { memory: 512MB } } }\n", &[]);
    bad.code(2);
    bad.stderr_has("`limits.memory` `512MB` is not a Kubernetes quantity");
}

#[test]
fn dry_runs_change_no_resource_version() {
    let k = KubeEnv::new();
    k.deployment("api", 2, "registry/api:v1");
    k.fake.with(|c| c.seed("deployments", deployment("api", 2, "registry/api:v2")));
    k.wait_ready("deployments", "api");
    k.fake.with(|c| {
        c.seed("configmaps", json!({"metadata": {"name": "app", "namespace": NS}, "data": {"A": "1"}}));
        c.seed("secrets", json!({"metadata": {"name": "app", "namespace": NS}, "data": {"token": "b2xk"}}));
    });
    let before = k.fake.with(|c| c.versions());
    let r = k.run(
        "  - { id: scale, k8s.scale: { target: api, replicas: 5 } }\n\
         \x20 - { id: all, k8s.scale_all: { replicas: 0 } }\n\
         \x20 - { id: image, k8s.set_image: { target: api, container: api, image: registry/api:v3 } }\n\
         \x20 - { id: res, k8s.set_resources: { target: api, container: api, limits: { memory: 1Gi } } }\n\
         \x20 - { id: restart, k8s.rollout_restart: { target: api } }\n\
         \x20 - { id: undo, k8s.rollout_undo: { target: api } }\n\
         \x20 - { id: cordon, k8s.cordon: { node: node-1 } }\n\
         \x20 - { id: drain, k8s.drain: { node: node-1 } }\n\
         \x20 - { id: patch, k8s.patch: { target: configmap/app, patch: { data: { A: \"2\" } } } }\n\
         \x20 - { id: rotate, k8s.secret_rotate: { name: app, keys: { token: { generate: { length: 16 } } }, restart: [api] } }\n\
         \x20 - { id: exec, k8s.exec: { target: deployment/api, argv: [touch, /tmp/opsctl-dry-run-must-not-create-this], effect: mutate } }\n",
        &["--dry-run"],
    );
    r.code(0);
    assert!(!std::path::Path::new("/tmp/opsctl-dry-run-must-not-create-this").exists());
    assert_eq!(message(&r, "cordon"), "would cordon node node-1: schedulable → unschedulable");
    assert_eq!(message(&r, "scale"), "would scale deployment/api 2 → 5 (accepted by the API server's dry run)");
    assert_eq!(message(&r, "all"), "would scale 1 workloads: deployment/api 2 → 0 (accepted by the API server's dry run)");
    assert_eq!(message(&r, "image"), "would set deployment/api container api: registry/api:v2 → registry/api:v3 (accepted by the API server's dry run)");
    assert_eq!(message(&r, "undo"), "would roll deployment/api back from revision 2 (registry/api:v2) to revision 1 (registry/api:v1) (accepted by the API server's dry run)");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(k.fake.with(|c| c.versions()), before);
    let writes = k.fake.with(|c| c.requests.iter().filter(|r| !r.starts_with("GET ")).cloned().collect::<Vec<_>>());
    assert!(!writes.is_empty());
    assert!(writes.iter().all(|w| w.contains("dryRun=All")), "{writes:?}");
}

#[test]
fn a_lease_that_cannot_be_taken_warns_and_the_run_goes_on() {
    let k = KubeEnv::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    k.scratch.write("kubeconfig.yaml", &k.fake.kubeconfig(NS).replace(&k.fake.url(), &format!("http://127.0.0.1:{port}")));
    let r = k.run("  - { id: c, host.command: { argv: [\"true\"], effect: mutate } }\n", &[]);
    r.code(0);
    r.stderr_has(&format!("no Kubernetes Lease for team-a: cannot reach the Kubernetes API server at http://127.0.0.1:{port} (context `fake`): connection refused"));
    assert_eq!(r.json()["steps"][0]["status"], "passed");
}

#[test]
fn a_second_mutating_run_is_refused_while_a_lease_is_held() {
    let k = KubeEnv::new();
    k.deployment("api", 1, "registry/api:v1");
    let since = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let holder = json!({"run_id": "r-other", "runbook": "restore", "user": "alice", "host": "ops-1", "pid": 42, "since": since});
    k.fake.with(|c| {
        c.seed(
            "leases",
            json!({"metadata": {"name": "opsctl-team-a", "namespace": NS, "annotations": {"opsctl.io/holder": holder.to_string()}},
                   "spec": {"holderIdentity": "r-other", "leaseDurationSeconds": 60, "acquireTime": since, "renewTime": since}}),
        )
    });
    let refused = k.run("  - { id: s, k8s.scale: { target: api, replicas: 2 } }\n", &[]);
    refused.code(3);
    refused.stderr_has("run r-other (restore by alice@ops-1, pid 42) since ");
    refused.stderr_has("(Kubernetes Lease team-a/opsctl-team-a)");
    assert_eq!(k.get("deployments", "api")["spec"]["replicas"], 1);
    // Reading needs no lease.
    k.run("  - { id: r, k8s.deployment_ready: { target: api } }\n", &[]).code(0);
    // An expired lease is taken over, and released when the run ends.
    k.fake.with(|c| {
        let mut l = c.get(crate::support::fake_kube::store::type_of("leases"), NS, "opsctl-team-a").unwrap();
        l["spec"]["renewTime"] = json!("2026-01-01T00:00:00.000000Z");
        l["spec"]["leaseDurationSeconds"] = json!(3);
        c.seed("leases", l);
    });
    let r = k.run("  - { id: s, k8s.scale: { target: api, replicas: 2, wait: false } }\n", &[]);
    r.code(0).stderr_has("took over the expired run r-other (restore by alice@ops-1, pid 42)").stderr_has("not renewed in the 1s since");
    let lease = k.get("leases", "opsctl-team-a");
    assert!(lease["spec"].get("holderIdentity").is_none(), "{lease}");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert!(k.fake.with(|c| c.requests.iter().any(|r| r.starts_with("PUT /apis/coordination.k8s.io/v1/namespaces/team-a/leases/opsctl-team-a"))));
}

#[test]
fn api_errors_say_what_to_do() {
    let k = KubeEnv::new();
    k.deployment("api", 1, "registry/api:v1");
    // 403
    k.fake.with(|c| c.forbidden.push(("patch".into(), "deployments".into())));
    let r = k.run("  - { id: s, k8s.set_image: { target: api, container: api, image: registry/api:v2 } }\n", &[]);
    r.code(1);
    assert_eq!(
        message(&r, "s"),
        "forbidden (403): deployments.apps \"api\" is forbidden: User \"system:serviceaccount:ops:opsctl\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"team-a\"; grant this permission to the identity opsctl runs as (RBAC Role/RoleBinding)"
    );
    k.fake.with(|c| c.forbidden.clear());
    // 409 on the replace an undo makes.
    k.run("  - { id: s, k8s.set_image: { target: api, container: api, image: registry/api:v2, wait: true, wait_timeout: 20s } }\n", &[]).code(0);
    k.fake.with(|c| c.fail_next.push(("update".into(), "deployments".into(), 409)));
    let r = k.run("  - { id: u, k8s.rollout_undo: { target: api } }\n", &[]);
    r.code(1);
    assert!(message(&r, "u").starts_with("deployment api was changed by someone else while opsctl was updating it (409 Conflict: Operation cannot be fulfilled on deployments.apps \"api\""), "{}", message(&r, "u"));
    // 429 and 5xx are retried when the runbook says so.
    k.fake.with(|c| {
        c.fail_next.push(("get".into(), "deployments".into(), 503));
        c.fail_next.push(("get".into(), "deployments".into(), 429));
    });
    let r = k.run("  - { id: d, k8s.deployment_ready: { target: api }, retry: { attempts: 3, delay: 10ms, on: [http_5xx, throttled] } }\n", &[]);
    r.code(0);
    assert_eq!(r.step("d")["attempts"], 3);
    k.fake.with(|c| c.fail_next.push(("get".into(), "deployments".into(), 500)));
    let r = k.run("  - { id: d, k8s.deployment_ready: { target: api } }\n", &[]);
    r.code(1);
    assert_eq!(message(&r, "d"), "the API server answered 500 for deployment api: Internal error occurred: etcdserver: request timed out");
    // 401: a wrong token.
    let wrong = k.fake.kubeconfig(NS).replace(crate::support::fake_kube::TOKEN, "stale-token");
    k.scratch.write("kubeconfig.yaml", &wrong);
    let r = k.run("  - { id: d, k8s.deployment_ready: { target: api } }\n", &[]);
    r.code(1);
    assert_eq!(
        message(&r, "d"),
        format!("the API server at {} refused the credentials of context `fake` (401 Unauthorized): the token is wrong or expired; refresh the kubeconfig's credentials", k.fake.url())
    );
    // Unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    k.scratch.write("kubeconfig.yaml", &k.fake.kubeconfig(NS).replace(&k.fake.url(), &format!("http://127.0.0.1:{port}")));
    let r = k.run("  - { id: d, k8s.deployment_ready: { target: api } }\n", &[]);
    r.code(1);
    assert_eq!(message(&r, "d"), format!("cannot reach the Kubernetes API server at http://127.0.0.1:{port} (context `fake`): connection refused"));
    // An unknown context.
    k.scratch.write("kubeconfig.yaml", &k.fake.kubeconfig(NS));
    k.scratch.write("opsctl.yaml", "instances:\n  team-a:\n    kubernetes: { kubeconfig: kubeconfig.yaml, context: faek }\n");
    let r = k.run("  - { id: d, k8s.deployment_ready: { target: api } }\n", &[]);
    r.code(1);
    assert_eq!(message(&r, "d"), "kubeconfig has no context `faek`; did you mean `fake`? (contexts: fake)");
    // A missing kubeconfig.
    k.scratch.write("opsctl.yaml", "instances:\n  team-a:\n    kubernetes: { kubeconfig: nowhere.yaml }\n");
    let r = k.run("  - { id: d, k8s.deployment_ready: { target: api } }\n", &[]);
    r.code(1);
    assert_eq!(message(&r, "d"), "cannot read kubeconfig nowhere.yaml: No such file or directory (os error 2)");
}

#[test]
fn scale_rollback_and_check_commands() {
    let k = KubeEnv::new();
    k.fake.with(|c| c.crashing_images.push("broken".into()));
    k.deployment("api", 1, "registry/api:v1");
    let o = |args: &[&str]| k.scratch.opsctl().args(args).args(["--output", "json"]).run();
    let plan = o(&["scale", "-i", "team-a", "api", "--replicas", "3", "--dry-run"]);
    plan.code(0);
    assert_eq!(plan.step("kubernetes")["message"], "would scale deployment/api 1 → 3 (accepted by the API server's dry run)");
    o(&["scale", "-i", "team-a", "api", "--replicas", "3"]).code(0);
    assert_eq!(k.get("deployments", "api")["status"]["readyReplicas"], 3);
    k.run("  - { id: s, k8s.set_image: { target: api, container: api, image: registry/api:broken } }\n", &[]).code(0);
    let check = o(&["check", "-i", "team-a"]);
    check.code(1);
    assert_eq!(check.step("nodes")["status"], "passed");
    assert_eq!(check.step("workloads")["status"], "failed");
    assert_eq!(check.step("pods")["status"], "failed");
    let back = o(&["rollback", "-i", "team-a", "deployment/api"]);
    back.code(0);
    assert_eq!(back.step("undo")["outputs"]["to_revision"], 1);
    assert_eq!(back.step("status")["status"], "passed");
    let check = o(&["check", "-i", "team-a"]);
    crate::procedures::passed_but_for_the_machine(&check);
    assert_eq!(check.step("workloads")["message"], "1 workloads rolled out");
    let to = o(&["rollback", "-i", "team-a", "api", "--to-revision", "2", "--dry-run"]);
    to.code(0);
    assert!(to.step("undo")["message"].as_str().unwrap().starts_with("would roll deployment/api back from revision 3 (registry/api:v1) to revision 2 (registry/api:broken)"), "{}", to.stdout);
}

fn ago(secs: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[test]
fn events_in_a_window_newest_first() {
    let k = KubeEnv::new();
    let ev = |name: &str, reason: &str, object: &str, secs: i64, count: i64, ty: &str| {
        json!({"metadata": {"name": name, "namespace": NS}, "involvedObject": {"kind": "Pod", "name": object, "namespace": NS},
               "reason": reason, "message": format!("{reason} on {object}"), "type": ty, "count": count, "lastTimestamp": ago(secs), "firstTimestamp": ago(secs + 60)})
    };
    k.fake.with(|c| {
        c.seed("events", ev("e1", "BackOff", "api-1", 120, 4, "Warning"));
        c.seed("events", ev("e2", "FailedScheduling", "worker-1", 30, 1, "Warning"));
        c.seed("events", ev("e3", "OOMKilling", "api-2", 7200, 1, "Warning"));
        c.seed("events", ev("e4", "Pulled", "api-1", 10, 1, "Normal"));
    });
    let r = k.run(
        "  - { id: all, k8s.events: { window: 1h, fail_above: 10 } }\n\
         \x20 - { id: backoff, k8s.events: { reasons: [BackOff], fail_above: 3 }, on_failure: continue }\n\
         \x20 - { id: worker, k8s.events: { object: worker-1 } }\n\
         \x20 - { id: day, k8s.events: { window: 24h, reasons: [OOMKilling] } }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "all"), "warned");
    assert_eq!(r.step("all")["outputs"]["count"], 5);
    assert_eq!(r.step("all")["outputs"]["by_reason"], json!({"BackOff": 4, "FailedScheduling": 1}));
    assert_eq!(r.step("all")["outputs"]["events"][0]["reason"], "FailedScheduling");
    assert!(message(&r, "all").starts_with("5 warning events in the last 1h (BackOff: 4, FailedScheduling: 1); latest: pod/worker-1 FailedScheduling"), "{}", message(&r, "all"));
    assert_eq!(status(&r, "backoff"), "failed");
    assert_eq!(r.step("worker")["outputs"]["count"], 1);
    assert_eq!(r.step("day")["outputs"]["count"], 1);
    assert!(k.fake.with(|c| c.requests.iter().any(|q| q.contains("fieldSelector=type%3DWarning%2CinvolvedObject.name%3Dworker-1"))));
}

#[test]
fn logs_count_matches_across_a_deployments_pods() {
    let k = KubeEnv::new();
    k.deployment("api", 2, "registry/api:v1");
    k.fake.with(|c| {
        let pods: Vec<String> = c.all("pods", Some(NS)).iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
        let now = jiff::Timestamp::now();
        for (i, p) in pods.iter().enumerate() {
            let mut lines = vec![
                (now - jiff::SignedDuration::from_secs(7200), "ERROR old failure".to_string()),
                (now - jiff::SignedDuration::from_secs(60), format!("GET /orders 200 pod {i}")),
                (now - jiff::SignedDuration::from_secs(50), "ERROR payment gateway timeout".to_string()),
                (now - jiff::SignedDuration::from_secs(40), "GET /admin 403 forbidden".to_string()),
                (now - jiff::SignedDuration::from_secs(30), "POST /login 401".to_string()),
            ];
            if i == 0 {
                lines.push((now - jiff::SignedDuration::from_secs(20), "GET /search 429 rate limited".to_string()));
            }
            c.logs.insert((NS.to_string(), p.clone(), "api".to_string()), lines);
        }
    });
    let r = k.run(
        "  - { id: errors, k8s.logs: { target: deployment/api, pattern: \"ERROR\", since: 1h, warn_above: 0, fail_above: 5 } }\n\
         \x20 - { id: tail, k8s.logs: { selector: app=api, pattern: \"ERROR\", since: 24h, tail: 4 } }\n\
         \x20 - { id: many, k8s.logs: { target: api, pattern: \"ERROR\", since: 24h, fail_above: 3 }, on_failure: continue }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "errors"), "warned");
    let e = r.step("errors");
    assert_eq!(e["outputs"]["matches"], 2);
    assert_eq!(e["outputs"]["lines"], 9);
    assert_eq!(e["outputs"]["status_counts"], json!({"401": 2, "403": 2, "429": 1}));
    assert!(message(&r, "errors").starts_with("2 of 9 lines of deployment/api (2 pods) in the last 1h match /ERROR/; HTTP 401: 2, 403: 2, 429: 1, e.g. api-"), "{}", message(&r, "errors"));
    // tail: the last 4 lines of each pod, whatever `since`.
    assert_eq!(r.step("tail")["outputs"]["lines"], 8);
    assert_eq!(r.step("tail")["outputs"]["matches"], 2);
    assert_eq!(status(&r, "many"), "failed");
    assert_eq!(r.step("many")["outputs"]["matches"], 4);
    let none = k.run("  - { id: l, k8s.logs: { selector: app=nothing, pattern: x } }\n", &[]);
    none.code(1);
    assert_eq!(message(&none, "l"), "pods matching app=nothing: no pods to read logs from");
}

#[test]
fn top_uses_metrics_server_or_says_it_is_missing() {
    let k = KubeEnv::new();
    let missing = k.run("  - { id: t, k8s.top: { warn_cpu: 500m } }\n", &[]);
    missing.code(0);
    assert_eq!(status(&missing, "t"), "warned");
    assert_eq!(message(&missing, "t"), format!("metrics.k8s.io is not served by {} (404): install metrics-server for k8s.top", k.fake.url()));
    k.fake.with(|c| {
        let mut n = c.get(crate::support::fake_kube::store::type_of("nodes"), "", "node-1").unwrap();
        n["status"]["allocatable"] = json!({"cpu": "4", "memory": "8Gi"});
        c.seed("nodes", n);
        c.pod_metrics = Some(vec![
            json!({"metadata": {"name": "api-1", "namespace": NS}, "containers": [{"name": "api", "usage": {"cpu": "750000000n", "memory": "300Mi"}}, {"name": "proxy", "usage": {"cpu": "50m", "memory": "20Mi"}}]}),
            json!({"metadata": {"name": "api-2", "namespace": NS}, "containers": [{"name": "api", "usage": {"cpu": "100m", "memory": "1200Mi"}}]}),
            json!({"metadata": {"name": "other", "namespace": "team-b"}, "containers": [{"name": "x", "usage": {"cpu": "3", "memory": "1Gi"}}]}),
        ]);
        c.node_metrics = Some(vec![json!({"metadata": {"name": "node-1"}, "usage": {"cpu": "3400m", "memory": "2Gi"}})]);
    });
    let r = k.run(
        "  - { id: pods, k8s.top: { warn_cpu: 500m, fail_memory: 1Gi }, on_failure: continue }\n\
         \x20 - { id: nodes, k8s.top: { what: nodes, warn_percent: 80, fail_percent: 90 } }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "pods"), "failed");
    assert_eq!(message(&r, "pods"), "2 pods; heaviest api-1: 800m CPU, 320Mi; over the limit: api-1 (800m CPU, 320Mi), api-2 (100m CPU, 1.2Gi)");
    assert_eq!(status(&r, "nodes"), "warned");
    assert_eq!(r.step("nodes")["outputs"]["usage"][0]["cpu_percent"], 85.0);
    assert_eq!(r.step("nodes")["outputs"]["usage"][0]["memory_percent"], 25.0);
}

#[test]
fn cronjobs_and_jobs() {
    let k = KubeEnv::new();
    let cj = k.fake.with(|c| {
        c.seed(
            "cronjobs",
            json!({"metadata": {"name": "backup-job", "namespace": NS},
                   "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "b", "image": "backup:1"}]}}}}},
                   "status": {"lastSuccessfulTime": ago(3 * 3600), "lastScheduleTime": ago(3 * 3600 + 60)}}),
        )
    });
    let job = |name: &str, ok: bool, secs: i64| {
        json!({"metadata": {"name": name, "namespace": NS, "labels": {"app": "backup"},
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "backup-job", "uid": cj["metadata"]["uid"], "controller": true}]},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "b", "image": "backup:1"}]}}},
               "status": {"startTime": ago(secs + 30), "completionTime": if ok { json!(ago(secs)) } else { json!(null) },
                          "succeeded": if ok { 1 } else { 0 }, "failed": if ok { 0 } else { 1 },
                          "conditions": [{"type": if ok { "Complete" } else { "Failed" }, "status": "True", "lastTransitionTime": ago(secs),
                                          "reason": if ok { "Completed" } else { "BackoffLimitExceeded" }, "message": if ok { "" } else { "Job has reached the specified backoff limit" }}]}})
    };
    k.fake.with(|c| {
        c.seed("jobs", job("backup-job-1", true, 3 * 3600));
        c.seed("jobs", job("backup-job-2", false, 1800));
    });
    let r = k.run(
        "  - { id: ok, k8s.cronjob_succeeded: { name: backup-job, within: 26h } }\n\
         \x20 - { id: strict, k8s.cronjob_succeeded: { name: backup-job, within: 1h }, on_failure: continue }\n\
         \x20 - { id: jobs, k8s.jobs: { selector: app=backup }, on_failure: continue }\n\
         \x20 - { id: missing, k8s.cronjob_succeeded: { name: nightly, within: 26h }, on_failure: continue }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "ok"), "warned");
    assert_eq!(message(&r, "ok"), "cronjob/backup-job last succeeded 3h ago; 1 failed since: backup-job-2: BackoffLimitExceeded: Job has reached the specified backoff limit");
    assert_eq!(status(&r, "strict"), "failed");
    assert!(message(&r, "strict").contains(" ago (more than 1h); 1 failed since: backup-job-2"), "{}", message(&r, "strict"));
    assert_eq!(status(&r, "jobs"), "failed");
    assert_eq!(message(&r, "jobs"), "2 jobs: 1 succeeded and 1 failed in the last 1d, 0 running; failed: backup-job-2: BackoffLimitExceeded: Job has reached the specified backoff limit");
    assert_eq!(message(&r, "missing"), "cronjob nightly not found in namespace team-a (context `fake`)");
}

#[test]
fn cordon_drain_uncordon_respect_disruption_budgets() {
    let k = KubeEnv::new();
    k.deployment("api", 2, "registry/api:v1");
    k.fake.with(|c| {
        c.seed("nodes", node("node-2", true));
        c.seed("pods", json!({"metadata": {"name": "fluentd-x", "namespace": "kube-system", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd", "uid": "ds-1", "controller": true}]},
                              "spec": {"nodeName": "node-1", "containers": [{"name": "f", "image": "fluentd"}]}, "status": {"phase": "Running"}}));
        c.seed("poddisruptionbudgets", json!({"metadata": {"name": "api", "namespace": NS}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "api"}}}}));
    });
    let plan = k.run("  - { id: d, k8s.drain: { node: node-1 } }\n", &["--dry-run"]);
    plan.code(0);
    let m = message(&plan, "d");
    assert!(m.starts_with("would cordon it and evict 2 pods from node node-1: team-a/api-"), "{m}");
    assert!(m.contains("; a PodDisruptionBudget blocks team-a/api-"), "{m}");
    assert!(m.ends_with("; left on the node: kube-system/fluentd-x (DaemonSet)"), "{m}");
    assert!(k.get("deployments", "api")["status"]["readyReplicas"] == 2);
    // minAvailable 2 of 2: no eviction can happen; the drain gives up at its timeout.
    let blocked = k.run("  - { id: d, k8s.drain: { node: node-1, timeout: 1s } }\n", &[]);
    blocked.code(1);
    let m = message(&blocked, "d");
    assert!(m.contains("could not be evicted within 1s: Cannot evict pod as it would violate the pod's disruption budget."), "{m}");
    assert_eq!(k.fake.with(|c| c.get(crate::support::fake_kube::store::type_of("nodes"), "", "node-1").unwrap())["spec"]["unschedulable"], true);
    // With room in the budget, pods move to node-2 one by one.
    k.fake.with(|c| c.seed("poddisruptionbudgets", json!({"metadata": {"name": "api", "namespace": NS}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "api"}}}})));
    let r = k.run("  - { id: d, k8s.drain: { node: node-1, timeout: 30s } }\n", &[]);
    r.code(0);
    assert_eq!(r.step("d")["outputs"]["evicted"].as_array().unwrap().len(), 2);
    assert_eq!(r.step("d")["outputs"]["skipped"], json!(["kube-system/fluentd-x (DaemonSet)"]));
    // The replacements are scheduled on node-2 while node-1 is cordoned.
    k.wait_ready("deployments", "api");
    let on_node_1 = k.fake.with(|c| c.all("pods", Some(NS)).iter().filter(|p| p["spec"]["nodeName"] == "node-1").count());
    assert_eq!(on_node_1, 0);
    let r = k.run("  - { id: u, k8s.uncordon: { node: node-1 } }\n  - { id: again, k8s.uncordon: { node: node-1 } }\n", &[]);
    r.code(0);
    assert_eq!(message(&r, "u"), "node node-1 uncordoned");
    assert_eq!(message(&r, "again"), "node node-1 was already schedulable");
    let c = k.run("  - { id: c, k8s.cordon: { node: node-2 } }\n", &[]);
    c.code(0);
    assert_eq!(message(&c, "c"), "node node-2 cordoned");
}

#[test]
fn patches_show_each_changed_field() {
    let k = KubeEnv::new();
    k.fake.with(|c| c.seed("configmaps", json!({"metadata": {"name": "app-config", "namespace": NS}, "data": {"LOG_LEVEL": "info", "FEATURE_X": "off"}})));
    let before = k.fake.with(|c| c.versions());
    let plan = k.run("  - { id: p, k8s.patch: { target: configmap/app-config, patch: { data: { LOG_LEVEL: debug, NEW: \"1\" } } } }\n", &["--dry-run"]);
    plan.code(0);
    assert_eq!(message(&plan, "p"), "would patch configmap/app-config: data.LOG_LEVEL: info → debug; data.NEW: (none) → 1 (accepted by the API server's dry run)");
    assert_eq!(k.fake.with(|c| c.versions()), before);
    let r = k.run("  - { id: p, k8s.patch: { target: cm/app-config, type: merge, patch: { data: { LOG_LEVEL: debug, FEATURE_X: null } } } }\n", &[]);
    r.code(0);
    assert_eq!(message(&r, "p"), "configmap/app-config patched: data.FEATURE_X: off → (none); data.LOG_LEVEL: info → debug");
    assert_eq!(k.get("configmaps", "app-config")["data"], json!({"LOG_LEVEL": "debug"}));
    let same = k.run("  - { id: p, k8s.patch: { target: configmap/app-config, patch: { data: { LOG_LEVEL: debug } } } }\n", &[]);
    assert_eq!(message(&same, "p"), "configmap/app-config already as patched: nothing changed");
    let secret = k.run("  - { id: p, k8s.patch: { target: secret/db, patch: { data: {} } } }\n", &[]);
    secret.code(2);
    secret.stderr_has("Secrets are changed with `k8s.secret_rotate`, which never shows their values");
}

#[test]
fn secret_rotation_keeps_the_previous_values_and_never_prints_them() {
    let k = KubeEnv::new();
    k.deployment("api", 1, "registry/api:v1");
    let old = "old-canary-password-4f7d1c";
    let given = "given-canary-value-9a8b7c6d";
    k.fake.with(|c| {
        c.seed("secrets", json!({"metadata": {"name": "db-credentials", "namespace": NS}, "type": "Opaque",
                                  "data": {"password": b64(old), "username": b64("app")}}))
    });
    let steps = "  - { id: rot, k8s.secret_rotate: { name: db-credentials, keys: { password: { generate: { length: 40 } }, api_key: { env: NEW_KEY } }, restart: [deployment/api] } }\n";
    let plan = k.scratch.opsctl().env("NEW_KEY", given).args(["run", k.scratch.write("rb.yaml", &format!("name: rot\nsteps:\n{steps}")).to_str().unwrap(), "-i", "team-a", "--output", "json", "--dry-run"]).run();
    plan.code(0);
    assert_eq!(plan.step("rot")["message"], "would set keys of secret db-credentials: api_key (added, env:NEW_KEY), password (replaced, 40 random alphanumeric characters); previous values kept in db-credentials-opsctl-previous, then restart deployment/api");
    let r = k.scratch.opsctl().env("NEW_KEY", given).args(["run", "rb.yaml", "-i", "team-a", "--output", "json", "-vv"]).run();
    r.code(0);
    assert_eq!(r.step("rot")["message"], "secret db-credentials: new values for api_key, password (previous values kept in db-credentials-opsctl-previous); restarted deployment/api");
    let s = k.get("secrets", "db-credentials");
    let password = String::from_utf8(unb64(s["data"]["password"].as_str().unwrap())).unwrap();
    assert_eq!(password.len(), 40);
    assert_eq!(unb64(s["data"]["api_key"].as_str().unwrap()), given.as_bytes());
    let kept = k.get("secrets", "db-credentials-opsctl-previous");
    assert_eq!(unb64(kept["data"]["password"].as_str().unwrap()), old.as_bytes());
    for text in [&r.stdout, &r.stderr, &plan.stdout, &plan.stderr, &std::fs::read_to_string(k.scratch.state_dir().join("history.jsonl")).unwrap()] {
        for secret in [old, given, password.as_str()] {
            assert!(!text.contains(secret), "a secret leaked:\n{text}");
        }
    }
    assert_eq!(k.get("deployments", "api")["metadata"]["generation"], 2);
    let back = k.run("  - { id: back, k8s.secret_rotate: { name: db-credentials, rollback: true } }\n", &[]);
    back.code(0);
    assert_eq!(unb64(k.get("secrets", "db-credentials")["data"]["password"].as_str().unwrap()), old.as_bytes());
    let none = k.run("  - { id: back, k8s.secret_rotate: { name: other, rollback: true } }\n", &[]);
    none.code(1);
}

pub(crate) fn b64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let vals: Vec<u32> = s.bytes().filter(|c| *c != b'=').map(|c| T.iter().position(|t| *t == c).unwrap() as u32).collect();
    let mut out = Vec::new();
    for chunk in vals.chunks(4) {
        let mut n = 0u32;
        for (i, v) in chunk.iter().enumerate() {
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i) & 255) as u8);
        }
    }
    out
}

#[test]
fn exec_runs_argv_in_a_pods_container() {
    let k = KubeEnv::new();
    k.fake.with(|c| {
        let mut p = pod("tools-0", "tools", true, None, 0);
        p["spec"]["containers"] = json!([{"name": "main", "image": "tools:1", "env": [{"name": "GREETING", "value": "hello from the pod"}]}, {"name": "sidecar", "image": "s:1"}]);
        c.seed("pods", p);
    });
    let r = k.run(
        "  - { id: env, k8s.exec: { target: pod/tools-0, argv: [printenv, GREETING], effect: read, expect_stdout: \"hello\" } }\n\
         \x20 - { id: code, k8s.exec: { target: pod/tools-0, container: sidecar, argv: [sh, -c, \"echo out; echo err >&2; exit 3\"], effect: read, expect_exit: [3] } }\n\
         \x20 - { id: wrong, k8s.exec: { target: pod/tools-0, argv: [sh, -c, \"exit 4\"], effect: read }, on_failure: continue }\n\
         \x20 - { id: missing, k8s.exec: { target: pod/tools-0, argv: [no-such-program-here], effect: read }, on_failure: continue }\n\
         \x20 - { id: nopod, k8s.exec: { target: pod/nope, argv: [true], effect: read }, on_failure: continue }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "env"), "passed");
    assert_eq!(r.step("env")["outputs"]["stdout"], "hello from the pod\n");
    assert_eq!(r.step("code")["outputs"]["exit_code"], 3);
    assert_eq!(r.step("code")["outputs"]["stderr"], "err\n");
    assert_eq!(status(&r, "wrong"), "failed");
    assert_eq!(r.step("wrong")["outputs"]["exit_code"], 4);
    assert!(message(&r, "missing").starts_with("cannot run \"no-such-program-here\" in pod tools-0 container main: Internal error occurred: error executing command in container"), "{}", message(&r, "missing"));
    assert_eq!(message(&r, "nopod"), "pod nope not found in namespace team-a (context `fake`)");
    let req = k.fake.with(|c| c.requests.iter().find(|q| q.contains("/pods/tools-0/exec")).cloned().unwrap());
    assert!(req.contains("command=printenv&command=GREETING"), "{req}");
}

#[test]
fn postgres_backup_and_restore_run_inside_a_pod() {
    let Some(pg) = crate::support::postgres::shared() else { return };
    let k = KubeEnv::new();
    k.fake.with(|c| {
        let mut p = pod("postgres-primary-0", "postgres", true, None, 0);
        p["spec"]["containers"] = json!([{"name": "postgres", "image": "postgres:15"}]);
        c.seed("pods", p);
    });
    pg.create_db("t_podexec");
    // Big enough (≈ 8 MB as a dump) that `pg_restore --list`, which reads only the table of
    // contents, exits long before opsctl has streamed the dump into the pod.
    pg.psql("t_podexec", "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 200000) g; ANALYZE");
    k.scratch.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  team-a:\n    kubernetes: {{ kubeconfig: kubeconfig.yaml, namespace: team-a }}\n    postgres: {{ url: {{ env: PG_URL }}, exec: {{ pod: postgres-primary-0, container: postgres }} }}\n    backups: {{ dir: \"{}\" }}\n",
            k.scratch.path().join("backups").display()
        ),
    );
    let url = pg.url("t_podexec");
    let b = k.scratch.opsctl().args(["backup", "-i", "team-a", "-o", "json"]).env("PG_URL", &url).run();
    b.code(0);
    let id = b.step("postgres")["outputs"]["id"].as_str().unwrap().to_string();
    assert!(b.step("verify")["message"].as_str().unwrap().contains("checksums match"), "{}", b.stdout);
    // The connection settings went through standard input, not the exec arguments.
    let execs: Vec<String> = k.fake.with(|c| c.requests.iter().filter(|q| q.contains("/exec")).cloned().collect());
    assert!(execs.iter().any(|q| q.contains("command=pg_dump")), "{execs:?}");
    assert!(execs.iter().all(|q| !q.contains("PGPASSWORD") && !q.contains("PGHOST")), "{execs:?}");
    pg.psql("t_podexec", "DELETE FROM items WHERE id > 10");
    let r = k.scratch.opsctl().args(["restore", "-i", "team-a", "--from", &id, "--yes", "-o", "json"]).env("PG_URL", &url).run();
    r.code(0);
    assert_eq!(pg.psql("t_podexec", "SELECT count(*) FROM items"), "200000");
}

#[test]
fn the_kubeconfig_comes_from_kubeconfig_and_the_context_namespace() {
    let k = KubeEnv::new();
    k.deployment("api", 1, "registry/api:v1");
    k.scratch.write("opsctl.yaml", "instances:\n  team-a:\n    kubernetes: {}\n");
    let rb = k.scratch.write("rb.yaml", "name: t\nsteps:\n  - { id: d, k8s.deployment_ready: { target: api } }\n");
    let kubeconfig = k.scratch.path().join("kubeconfig.yaml");
    let r = k.scratch.opsctl().env("KUBECONFIG", kubeconfig.to_str().unwrap()).args(["run", rb.to_str().unwrap(), "-i", "team-a", "-o", "json"]).run();
    r.code(0);
    assert_eq!(r.step("d")["message"], "deployment/api: 1/1 ready, 1 updated, 1 available");
    let none = k.scratch.opsctl().env("KUBECONFIG", "/nonexistent/kubeconfig").env("HOME", k.scratch.path().to_str().unwrap()).args(["run", rb.to_str().unwrap(), "-i", "team-a", "-o", "json"]).run();
    none.code(1);
    assert!(none.step("d")["message"].as_str().unwrap().starts_with("cannot read the kubeconfig at $KUBECONFIG (/nonexistent/kubeconfig): "), "{}", none.stdout);
}
