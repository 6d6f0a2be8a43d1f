//! ECS against moto (through the test proxy, which completes deployments as a cluster with
//! capacity would and sets what moto cannot: counts, rollouts, stopped tasks — see
//! tests/aws/proxy.py). Each test names its own cluster (and the deploy test its own task
//! definition family): the emulator is shared.

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
    assert_eq!(message(&r, "rollout_ok"), "1 service in svc-a, 1 rolling out (on_rollout: pass): worker: rolling out: running 0/1 (1 pending), rollout IN_PROGRESS, 2 deployments, worker:1");
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

#[test]
fn deploy_a_revision_or_an_image_then_roll_back() {
    let Some((s, aws)) = setup() else { return };
    aws.ecs_cluster("deploy-a", &[("dapi", 2)]);
    aws.ecs("RegisterTaskDefinition", json!({ "family": "dapi", "containerDefinitions": [{ "name": "dapi", "image": "dapi:2", "memory": 128 }] }));
    inventory(&s, aws, "    ecs: { cluster: deploy-a }\n");
    let running = || {
        let d = aws.ecs("DescribeServices", json!({"cluster": "deploy-a", "services": ["dapi"]}));
        d["services"][0]["deployments"][0]["taskDefinition"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
    };
    let one = |step: &str, extra: &[&str]| run(&s, &format!("  - {{ id: s, {step} }}\n"), extra);

    let r = one("ecs.deploy: { service: dapi, task_definition: \"dapi:2\" }", &["--dry-run"]);
    r.code(0);
    assert_eq!(message(&r, "s"), "would deploy dapi:2 to dapi in deploy-a (now dapi:1), then wait until stable");
    assert_eq!(running(), "dapi:1");

    let r = one("ecs.deploy: { service: dapi, task_definition: \"dapi:2\", poll: 100ms }", &[]);
    r.code(0);
    assert!(message(&r, "s").starts_with("dapi in deploy-a: dapi:1 → dapi:2; stable after "), "{}", message(&r, "s"));
    assert_eq!((r.step("s")["outputs"]["previous"].as_str(), r.step("s")["outputs"]["current"].as_str()), (Some("dapi:1"), Some("dapi:2")));
    assert_eq!(running(), "dapi:2");

    // A new image: a revision like the running one, registered, then deployed.
    let r = one("ecs.deploy: { service: dapi, image: \"registry/dapi:3\" }", &["--dry-run"]);
    assert_eq!(message(&r, "s"), "would register a revision of dapi with container dapi on registry/dapi:3 (now dapi:2), deploy it to dapi in deploy-a, then wait until stable");
    let r = one("ecs.deploy: { service: dapi, image: \"registry/dapi:3\", poll: 100ms }", &[]);
    r.code(0);
    assert!(message(&r, "s").starts_with("dapi in deploy-a: dapi:2 → dapi:3 (registered, image registry/dapi:3); stable after "), "{}", message(&r, "s"));
    assert_eq!(r.step("s")["outputs"]["registered"], true);
    let td = aws.ecs("DescribeTaskDefinition", json!({"taskDefinition": "dapi:3"}))["taskDefinition"].clone();
    assert_eq!(td["containerDefinitions"][0]["image"], "registry/dapi:3");
    assert_eq!(td["containerDefinitions"][0]["memory"], 128, "everything else copied");
    let r = one("ecs.deploy: { service: dapi, image: \"registry/dapi:3\" }", &[]);
    assert_eq!(message(&r, "s"), "dapi in deploy-a already runs dapi:3");

    // Back to the revision before the running one, then to a named one.
    let r = one("ecs.rollback: { service: dapi }", &["--dry-run"]);
    assert_eq!(message(&r, "s"), "would roll dapi in deploy-a back: dapi:3 → dapi:2, then wait until stable");
    let r = one("ecs.rollback: { service: dapi, poll: 100ms }", &[]);
    r.code(0);
    assert!(message(&r, "s").starts_with("dapi in deploy-a rolled back: dapi:3 → dapi:2; stable after "), "{}", message(&r, "s"));
    assert_eq!(running(), "dapi:2");
    let r = one("ecs.rollback: { service: dapi, to: \"dapi:1\", poll: 100ms }", &[]);
    r.code(0);
    assert_eq!(running(), "dapi:1");
    let r = one("ecs.rollback: { service: dapi }", &[]);
    r.code(1);
    assert_eq!(message(&r, "s"), "dapi runs dapi:1, and dapi has no ACTIVE revision before it to roll back to; give `to:`");

    // What cannot be done is said before anything changes.
    let r = one("ecs.deploy: { service: dapi, task_definition: \"dapi:99\" }", &[]);
    r.code(1);
    assert!(message(&r, "s").starts_with("task definition dapi:99 does not exist [region us-east-1"), "{}", message(&r, "s"));
    aws.ecs("RegisterTaskDefinition", json!({ "family": "dapi", "containerDefinitions": [
        { "name": "dapi", "image": "dapi:4", "memory": 128 }, { "name": "sidecar", "image": "envoy:1", "memory": 64 }] }));
    let r = one("ecs.deploy: { service: dapi, task_definition: \"dapi:4\", poll: 100ms }", &[]);
    r.code(0);
    let r = one("ecs.deploy: { service: dapi, image: \"registry/dapi:5\" }", &[]);
    r.code(1);
    assert_eq!(message(&r, "s"), "task definition dapi:4 has 2 containers (dapi, sidecar); say which gets the image with `container:`");
    let r = one("ecs.deploy: { service: dapi, image: \"registry/dapi:5\", container: nope }", &[]);
    assert_eq!(message(&r, "s"), "task definition dapi:4 has no container nope; its containers: dapi, sidecar");
    let r = one("ecs.deploy: { service: dapi, image: \"x\", task_definition: \"dapi:1\" }", &[]);
    r.code(2);
    assert!(r.stderr.contains("give `task_definition` or `image`, not both"), "{}", r.stderr);
    assert_eq!(running(), "dapi:4");
}

#[test]
fn check_covers_the_ecs_services_of_instances_that_have_them() {
    let Some((s, aws)) = setup() else { return };
    aws.ecs_cluster("check-a", &[("api", 2), ("jobs", 1)]);
    aws.ecs_control(json!({"op": "service", "cluster": "check-a", "service": "jobs", "hold": true, "running": 0, "pending": 0, "rollout": "COMPLETED"}));
    inventory(&s, aws, "    ecs: { cluster: check-a }\n");
    let r = crate::aws::creds(s.opsctl()).args(["check", "-i", "a", "-o", "json"]).run();
    r.code(1);
    assert_eq!(status(&r, "ecs"), "failed", "{}", r.stdout);
    assert_eq!(message(&r, "ecs"), "1 of 2 services in check-a not as desired: jobs: running 0/1, rollout COMPLETED, jobs:1");
}

#[test]
fn scale_deploy_and_rollback_commands_on_an_ecs_instance() {
    let Some((s, aws)) = setup() else { return };
    aws.ecs_cluster("cmd-a", &[("capi", 2)]);
    aws.ecs_control(json!({"op": "failing_image", "image": "registry/capi:broken", "reason": "ECS deployment circuit breaker: tasks failed to start."}));
    inventory(&s, aws, "    ecs: { cluster: cmd-a }\n");
    let o = |args: &[&str]| crate::aws::creds(s.opsctl()).args(args).args(["-o", "json"]).run();
    let running = || {
        let d = aws.ecs("DescribeServices", json!({"cluster": "cmd-a", "services": ["capi"]}));
        d["services"][0]["deployments"][0]["taskDefinition"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
    };
    let step = |r: &Run, runbook: &str, id: &str| -> serde_json::Value {
        let run = r.json()["runs"].as_array().unwrap().iter().find(|x| x["runbook"] == runbook).cloned().unwrap();
        run["steps"].as_array().unwrap().iter().find(|x| x["id"] == id).cloned().unwrap_or_else(|| panic!("no {id} in {run}"))
    };

    let r = o(&["scale", "-i", "a", "capi", "--replicas", "3"]);
    r.code(0);
    assert_eq!(r.step("ecs")["outputs"]["previous"], 2);
    assert_eq!(r.step("ecs")["outputs"]["desired"], 3);

    // The gate passes (the store has no database to look at: a warning), the image is deployed.
    let r = o(&["deploy", "-i", "a", "capi", "--image", "registry/capi:2", "--watch", "1s", "--timeout", "20s"]);
    r.code(0);
    assert_eq!(step(&r, "gate", "ecs")["status"], "passed");
    assert_eq!(step(&r, "gate", "backup")["status"], "warned");
    assert_eq!(step(&r, "deploy", "ecs")["outputs"]["current"], "capi:2");
    assert_eq!(running(), "capi:2");

    // An image whose tasks never start: the circuit breaker fails the rollout, the deploy
    // puts the previous revision back.
    let r = o(&["deploy", "-i", "a", "capi", "--image", "registry/capi:broken", "--watch", "1s", "--timeout", "20s", "--no-gate"]);
    r.code(1);
    let failed = step(&r, "deploy", "ecs");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["message"], "the rollout of capi failed: ECS deployment circuit breaker: tasks failed to start. (the service was updated from capi:2 to capi:3)");
    assert_eq!(step(&r, "deploy", "rollback_ecs")["status"], "passed");
    assert_eq!(step(&r, "deploy", "rolled_back")["message"], "the deploy of registry/capi:broken to capi failed (ecs) and was rolled back");
    assert_eq!(running(), "capi:2");

    // The rollback command: the revision before the running one.
    let r = o(&["rollback", "-i", "a", "capi"]);
    r.code(0);
    assert_eq!(r.step("ecs")["outputs"]["current"], "capi:1");
    assert_eq!(running(), "capi:1");
    let r = o(&["rollback", "-i", "a", "capi", "--to-revision", "2"]);
    r.code(0);
    assert_eq!(running(), "capi:2");
}
