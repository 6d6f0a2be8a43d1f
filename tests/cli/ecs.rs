//! ECS against moto (through the test proxy, which completes deployments as a cluster with
//! capacity would and sets what moto cannot: counts, rollouts, stopped tasks — see
//! tests/aws/proxy.py). Each test names its own cluster: the emulator is shared.

use serde_json::json;

use crate::aws::{inventory, run, setup};
use crate::support::Run;

fn status(r: &Run, id: &str) -> String {
    r.step(id)["status"].as_str().unwrap_or_default().to_string()
}

fn message(r: &Run, id: &str) -> String {
    r.step(id)["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn services_judged_by_counts_rollouts_and_stopped_tasks() {
    let Some((s, aws)) = setup() else { return };
    aws.ecs_cluster("svc-a", &[("api", 2), ("worker", 1), ("web", 3)]);
    aws.ecs_control(json!({"op": "service", "cluster": "svc-a", "service": "worker", "hold": true, "running": 0, "pending": 1, "rollout": "IN_PROGRESS", "deployments": 2}));
    aws.ecs_control(json!({"op": "service", "cluster": "svc-a", "service": "web", "hold": true, "running": 1, "rollout": "FAILED",
                           "reason": "ECS deployment circuit breaker: tasks failed to start."}));
    aws.ecs_control(json!({"op": "stopped", "cluster": "svc-a", "service": "api", "task_definition": "api:1", "reason": "Essential container in task exited",
                           "exit_code": 137, "container_reason": "OutOfMemoryError: Container killed due to memory usage", "age_seconds": 120}));
    // Outside the window, and a routine replacement inside it: neither counts.
    aws.ecs_control(json!({"op": "stopped", "cluster": "svc-a", "service": "api", "task_definition": "api:1", "reason": "Essential container in task exited", "age_seconds": 7200}));
    aws.ecs_control(json!({"op": "stopped", "cluster": "svc-a", "service": "api", "task_definition": "api:1", "reason": "Scaling activity initiated by (deployment ecs-svc/1)",
                           "stop_code": "ServiceSchedulerInitiated", "exit_code": 0, "age_seconds": 60}));
    inventory(&s, aws, "");
    let r = run(
        &s,
        "  - { id: all, ecs.services: { cluster: svc-a }, on_failure: continue }\n\
         \x20 - { id: api, ecs.services: { cluster: svc-a, services: [api], warn_stopped: 1 } }\n\
         \x20 - { id: rollout_ok, ecs.services: { cluster: svc-a, services: [worker], on_rollout: pass } }\n\
         \x20 - { id: nope, ecs.services: { cluster: svc-a, services: [api, nope] }, on_failure: continue }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "all"), "failed", "{}", r.stdout);
    let m = message(&r, "all");
    assert!(m.starts_with("2 of 3 services in svc-a not as desired: "), "{m}");
    assert!(m.contains("worker: rolling out: running 0/1 (1 pending), rollout IN_PROGRESS, 2 deployments, worker:1"), "{m}");
    assert!(m.contains("web: rollout FAILED (ECS deployment circuit breaker: tasks failed to start.); running 1/3"), "{m}");
    assert!(
        m.ends_with("1 task stopped in the last 1h: api: Essential container in task exited (api: exit 137 OutOfMemoryError: Container killed due to memory usage)"),
        "{m}"
    );
    let out = &r.step("all")["outputs"];
    assert_eq!(out["stopped"], 1);
    assert_eq!(out["unhealthy"], json!(["web", "worker", "api"]));
    assert_eq!(out["services"]["api"]["running"], 2);
    assert_eq!(out["services"]["api"]["rollout"], "COMPLETED");
    assert_eq!(out["services"]["api"]["task_definition"], "api:1");
    assert_eq!(out["services"]["api"]["stopped"][0]["exit_codes"]["api"], 137);
    assert_eq!(out["services"]["web"]["rollout"], "FAILED");
    assert_eq!(status(&r, "api"), "passed", "{}", message(&r, "api"));
    assert_eq!(r.step("api")["threshold"], "warn > 1 stopped tasks");
    assert_eq!(status(&r, "rollout_ok"), "passed");
    assert_eq!(status(&r, "nope"), "failed");
    assert!(message(&r, "nope").starts_with("cluster svc-a has no service nope [region us-east-1 at http://127.0.0.1:"), "{}", message(&r, "nope"));
}

#[test]
fn services_default_to_the_inventory_and_an_empty_cluster_is_not_a_pass() {
    let Some((s, aws)) = setup() else { return };
    aws.ecs_cluster("svc-b", &[("api", 1), ("jobs", 1)]);
    aws.ecs("CreateCluster", json!({ "clusterName": "svc-empty" }));
    inventory(&s, aws, "    ecs: { cluster: svc-b, services: [jobs] }\n");
    let r = run(
        &s,
        "  - { id: listed, ecs.services: {} }\n\
         \x20 - { id: empty, ecs.services: { cluster: svc-empty }, on_failure: continue }\n\
         \x20 - { id: empty_ok, ecs.services: { cluster: svc-empty, on_empty: pass } }\n",
        &[],
    );
    r.code(1);
    assert_eq!(message(&r, "listed"), "1 service in svc-b: all running as desired");
    assert_eq!(r.step("listed")["outputs"]["services"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["jobs"]);
    assert_eq!(status(&r, "empty"), "failed");
    assert_eq!(message(&r, "empty"), "cluster svc-empty has no services (on_empty: fail)");
    assert_eq!(status(&r, "empty_ok"), "passed");
    // Without `ecs:` in the inventory, every service of the cluster; without a cluster, a clear error.
    inventory(&s, aws, "");
    let r = run(&s, "  - { id: all, ecs.services: { cluster: svc-b } }\n  - { id: none, ecs.services: {} }\n", &[]);
    r.code(1);
    assert_eq!(message(&r, "all"), "2 services in svc-b: all running as desired");
    assert_eq!(message(&r, "none"), "no ECS cluster: give `cluster:` to the step, or add `ecs: { cluster: NAME }` to instance a in the inventory");
}

#[test]
fn scale_plans_then_waits_until_stable() {
    let Some((s, aws)) = setup() else { return };
    aws.ecs_cluster("scale-a", &[("api", 2)]);
    inventory(&s, aws, "    ecs: { cluster: scale-a }\n");
    let desired = || aws.ecs("DescribeServices", json!({"cluster": "scale-a", "services": ["api"]}))["services"][0]["desiredCount"].as_i64().unwrap();
    // The dry run reads and changes nothing.
    let r = run(&s, "  - { id: scale, ecs.scale: { service: api, desired: 4 } }\n", &["--dry-run"]);
    r.code(0);
    assert_eq!(status(&r, "scale"), "planned");
    assert_eq!(message(&r, "scale"), "would scale api in scale-a: desired 2 → 4 (now running 2/2, rollout COMPLETED, api:1), then wait until stable");
    assert_eq!(desired(), 2);
    let r = run(&s, "  - { id: scale, ecs.scale: { service: api, desired: 4, poll: 100ms } }\n", &[]);
    r.code(0);
    assert!(message(&r, "scale").starts_with("api in scale-a: desired 2 → 4; stable after "), "{}", message(&r, "scale"));
    assert_eq!(r.step("scale")["outputs"]["previous"], 2);
    assert_eq!(r.step("scale")["outputs"]["running"], 4);
    assert_eq!(desired(), 4);
    // A rollout that does not finish: the wait ends and says where it stopped.
    aws.ecs_control(json!({"op": "service", "cluster": "scale-a", "service": "api", "hold": true, "running": 4, "rollout": "IN_PROGRESS", "deployments": 2}));
    let r = run(&s, "  - { id: scale, ecs.scale: { service: api, desired: 5, wait_timeout: 1s, poll: 200ms } }\n", &[]);
    r.code(1);
    assert_eq!(r.step("scale")["error_class"], "timeout");
    assert!(message(&r, "scale").starts_with("api was not stable after 1s: running 5/5, rollout IN_PROGRESS, 2 deployments"), "{}", message(&r, "scale"));
    // A circuit breaker that fires: failed at once, with its reason.
    aws.ecs_control(json!({"op": "service", "cluster": "scale-a", "service": "api", "rollout": "FAILED", "reason": "ECS deployment circuit breaker: tasks failed to start.", "deployments": 1}));
    let r = run(&s, "  - { id: scale, ecs.scale: { service: api, desired: 3, poll: 100ms } }\n", &[]);
    r.code(1);
    assert_eq!(message(&r, "scale"), "the rollout of api failed: ECS deployment circuit breaker: tasks failed to start.");
}
