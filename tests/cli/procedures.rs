//! The procedure commands as an operator meets them: each adapts to the backends an instance
//! has, and refuses, before anything runs, an instance it cannot apply to.

use std::time::{Duration, Instant};

use crate::support::compose::Project;
use crate::support::{Run, Scratch};

/// A Compose host deployed the way the guides do it: the API's image is a variable the env
/// file sets; the worker's image is written literally. The API is healthy only when its image
/// serves `/` (opsctl-test-busybox:broken does not).
pub(crate) const HOST: &str = r#"version: "2.4"
services:
  api:
    image: ${API_IMAGE}
    command: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
    stop_grace_period: 1s
    healthcheck: { test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"], interval: 1s, timeout: 2s, retries: 2 }
  worker:
    image: {image}
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
"#;

fn host(s: &Scratch, test: &str) -> Option<Project> {
    s.write(".env", "# images\nAPI_IMAGE=opsctl-test-busybox:1\n");
    let p = Project::new(s, test, HOST)?;
    p.compose(&["up", "-d"]);
    s.write("opsctl.yaml", &format!("instances:\n  app:\n    compose: {{ files: [docker-compose.yml], project: {}, env_file: .env }}\n", p.name));
    wait(&format!("{} api healthy", p.name), || image_and_health(&p, "api").1 == "healthy");
    Some(p)
}

/// The image and health of a service's first container.
fn image_and_health(p: &Project, service: &str) -> (String, String) {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label=com.docker.compose.project={}", p.name)])
        .args(["--filter", &format!("label=com.docker.compose.service={service}"), "--format", "{{.Image}}|{{.Status}}"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text.lines().next().unwrap_or_default().to_string();
    let (image, status) = line.split_once('|').unwrap_or_default();
    let health = ["unhealthy", "healthy", "health: starting"].iter().find(|h| status.contains(*h)).map_or(status.to_string(), |h| h.to_string());
    (image.to_string(), health)
}

#[track_caller]
fn wait(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Exit 0 — or 1 only because the machine running the tests is busy: `check` holds this
/// machine's disk, memory and load too, and a loaded CI machine may fail its `host.load`.
#[track_caller]
pub(crate) fn passed_but_for_the_machine(r: &Run) {
    if r.code == 0 {
        return;
    }
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let doc = r.json();
    // A run, a sequence of runs, or a fleet of either.
    let mut runs: Vec<serde_json::Value> = match doc["runs"].as_array() {
        Some(runs) => runs.clone(),
        None => vec![doc.clone()],
    };
    while runs.iter().any(|r| r["runs"].is_array()) {
        runs = runs.into_iter().flat_map(|r| r["runs"].as_array().cloned().unwrap_or_else(|| vec![r])).collect();
    }
    for run in runs {
        for st in run["steps"].as_array().into_iter().flatten() {
            if st["status"] == "failed" {
                assert!(st["kind"].as_str().unwrap_or_default().starts_with("host."), "{st}");
            }
        }
    }
}

fn opsctl(s: &Scratch, args: &[&str]) -> Run {
    s.opsctl().args(args).run()
}

fn ids(r: &Run) -> Vec<String> {
    r.json()["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn check_on_a_compose_host_looks_at_its_services_and_lists_only_what_it_has() {
    let s = Scratch::new();
    let Some(p) = host(&s, "proc-check") else {
        return;
    };
    let r = opsctl(&s, &["check", "-i", "app", "-o", "json"]);
    passed_but_for_the_machine(&r);
    assert_eq!(ids(&r), ["disk", "memory", "load", "services", "docker_disk"], "{}", r.stdout);
    assert_eq!(r.step("services")["status"], "passed");
    assert_eq!(r.step("services")["value"], "2/2 ready");
    let not = r.json()["not_configured"].clone();
    for b in ["kubernetes", "postgres", "redis", "http", "ecs", "alertmanager"] {
        assert!(not.as_array().unwrap().contains(&serde_json::json!(b)), "{not}");
    }
    // The shipped daily routine on this host: check, then the log review; no backup store,
    // so the backup is listed as not applying.
    let daily = opsctl(&s, &["routine", "daily", "-i", "app", "-o", "json"]);
    passed_but_for_the_machine(&daily);
    assert_eq!(seq(&daily).iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["check", "logs"]);
    assert_eq!(seq(&daily)[1].1, "passed");
    assert_eq!(daily.json()["not_run"][0]["runbook"], "backup");
    let logs = step_of(&run_of(&daily, "logs"), "compose");
    assert!(logs["message"].as_str().unwrap().contains(&format!("lines of every service of {} in the last 1d match", p.name)), "{logs}");
    let table = opsctl(&s, &["check", "-i", "app"]);
    table.stdout_has(
        "not configured on app: alarms, alertmanager, backups, dynamodb, ecs, elb, http, kubernetes, postgres, prometheus, redis (their steps did not run)",
    );
    assert!(!table.stdout.contains("SKIP"), "{}", table.stdout);

    // A stopped service fails the check, named.
    p.compose(&["stop", "worker"]);
    let r = opsctl(&s, &["check", "-i", "app", "-o", "json"]);
    r.code(1);
    let msg = r.step("services")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("worker: none running ("), "{msg}");
}

#[test]
fn compose_deploy_keeps_the_previous_image_and_rollback_puts_it_back() {
    let s = Scratch::new();
    let Some(p) = host(&s, "proc-deploy") else {
        return;
    };
    let env = || std::fs::read_to_string(s.path().join(".env")).unwrap();
    let deploy = |image: &str, extra: &[&str]| {
        let rb = s.write("d.yaml", &format!("name: d\nsteps:\n  - id: d\n    compose.deploy: {{ service: api, image: \"{image}\", wait_timeout: 8s }}\n"));
        s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "app", "-o", "json"]).args(extra).run()
    };
    // Nothing recorded yet: a rollback says where the previous image would be.
    let r = opsctl(&s, &["rollback", "-i", "app", "api", "-o", "json"]);
    r.code(1);
    assert_eq!(r.step("compose")["message"], "no previous image is recorded for this service (API_IMAGE_PREVIOUS is not in .env); `opsctl deploy` records it");

    // A dry run says what it would do and changes nothing.
    let plan = deploy("opsctl-test-busybox:2", &["--dry-run"]);
    plan.code(0);
    assert_eq!(
        plan.step("d")["message"],
        "would set API_IMAGE=opsctl-test-busybox:2 in .env (now opsctl-test-busybox:1, kept as API_IMAGE_PREVIOUS), recreate api and wait up to 8s until it runs the image and is ready"
    );
    assert_eq!(env(), "# images\nAPI_IMAGE=opsctl-test-busybox:1\n");
    assert_eq!(image_and_health(&p, "api").0, "opsctl-test-busybox:1");

    let r = deploy("opsctl-test-busybox:2", &[]);
    r.code(0);
    let d = r.step("d");
    assert_eq!(d["value"], "opsctl-test-busybox:1 → opsctl-test-busybox:2");
    assert_eq!(d["outputs"]["previous"], "opsctl-test-busybox:1");
    assert_eq!(env(), "# images\nAPI_IMAGE=opsctl-test-busybox:2\nAPI_IMAGE_PREVIOUS=opsctl-test-busybox:1\n");
    assert_eq!(image_and_health(&p, "api"), ("opsctl-test-busybox:2".to_string(), "healthy".to_string()));

    // The rollback command puts the previous image back and waits until healthy.
    let r = opsctl(&s, &["rollback", "-i", "app", "api", "-o", "json"]);
    r.code(0);
    assert_eq!(ids(&r), ["compose"], "{}", r.stdout);
    assert_eq!(r.step("compose")["value"], "opsctl-test-busybox:2 → opsctl-test-busybox:1");
    assert_eq!(env(), "# images\nAPI_IMAGE=opsctl-test-busybox:1\nAPI_IMAGE_PREVIOUS=opsctl-test-busybox:2\n");
    assert_eq!(image_and_health(&p, "api"), ("opsctl-test-busybox:1".to_string(), "healthy".to_string()));

    // A release that never gets healthy fails the step with the containers' state.
    let r = deploy("opsctl-test-busybox:broken", &[]);
    r.code(1);
    let msg = r.step("d")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("api running opsctl-test-busybox:broken and ready did not happen within 8s:"), "{msg}");
    assert!(msg.ends_with("(.env now says API_IMAGE=opsctl-test-busybox:broken, the previous kept as API_IMAGE_PREVIOUS)"), "{msg}");
    assert_eq!(r.step("d")["outputs"]["previous"], "opsctl-test-busybox:1");

    // A literal image is refused with how to make it a variable; nothing is written.
    let before = env();
    let rb = s.write("w.yaml", "name: w\nsteps:\n  - id: w\n    compose.deploy: { service: worker, image: \"opsctl-test-busybox:2\" }\n");
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "app", "-o", "json"]).run();
    r.code(1);
    assert_eq!(
        r.step("w")["message"],
        "service `worker` has a literal image (`image: opsctl-test-busybox:1` in docker-compose.yml); opsctl deploys through a variable so the compose file stays yours: write `image: ${WORKER_IMAGE}` there and put `WORKER_IMAGE=opsctl-test-busybox:1` in the env file"
    );
    assert_eq!(env(), before);
}

#[test]
fn scale_works_on_a_compose_host() {
    let s = Scratch::new();
    let Some(p) = host(&s, "proc-scale") else {
        return;
    };
    let r = opsctl(&s, &["scale", "-i", "app", "worker", "--replicas", "2", "-o", "json"]);
    r.code(0);
    assert_eq!(ids(&r), ["compose"], "{}", r.stdout);
    assert_eq!(r.step("compose")["value"], "1 → 2");
    assert_eq!(p.running("worker"), 2);
    assert_eq!(r.json()["not_configured"], serde_json::json!(["ecs", "kubernetes"]));
    // Asking for another platform than the instance has is refused before anything runs.
    let r = opsctl(&s, &["scale", "-i", "app", "worker", "--replicas", "1", "--on", "ecs"]);
    r.code(2);
    assert_eq!(r.stderr.trim(), "error: refused: `scale` does not apply to instance app: it needs ecs (`ecs:`); app has host, compose");
    assert_eq!(p.running("worker"), 2);
}

#[test]
fn procedures_refuse_an_instance_they_cannot_apply_to_before_anything_runs() {
    let s = Scratch::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["scale", "-i", "localhost", "api", "--replicas", "2"],
            "`scale` does not apply to instance localhost: it needs one of kubernetes (`kubernetes:`), compose (`compose:`), ecs (`ecs:`); localhost has host",
        ),
        (
            &["rollback", "-i", "localhost", "api"],
            "`rollback` does not apply to instance localhost: it needs one of kubernetes (`kubernetes:`), compose (`compose:`), ecs (`ecs:`); localhost has host",
        ),
        (
            &["backup", "-i", "localhost"],
            "`backup` does not apply to instance localhost: it needs backups (a backup store, `backups:`), and one of postgres (`postgres:`), dynamodb (`dynamodb.tables:`), redis (`redis:`); localhost has host",
        ),
        (
            &["backup", "prune", "-i", "localhost"],
            "`backup-prune` does not apply to instance localhost: it needs backups (a backup store, `backups:`); localhost has host",
        ),
    ];
    for (args, msg) in cases {
        let r = opsctl(&s, args);
        r.code(2);
        assert_eq!(r.stderr.trim(), format!("error: refused: {msg}"), "{args:?}");
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    // Nothing ran, so nothing was recorded.
    opsctl(&s, &["history"]).code(0).stdout_has("no runs recorded");
    // --what names a database the instance lacks.
    s.write(
        "opsctl.yaml",
        &format!("instances:\n  r:\n    redis: {{ url: \"redis://127.0.0.1:1\" }}\n    backups: {{ dir: \"{}\" }}\n", s.path().join("b").display()),
    );
    let r = opsctl(&s, &["backup", "-i", "r", "--what", "postgres"]);
    r.code(2);
    assert_eq!(r.stderr.trim(), "error: refused: `backup` does not apply to instance r: it needs postgres (`postgres:`); r has host, backups, redis");
}

#[test]
fn requires_and_needs_are_checked_when_a_runbook_loads() {
    let s = Scratch::new();
    let rb = s.write("r.yaml", "name: r\nrequires: { any: [kubernets] }\nsteps:\n  - id: a\n    needs: [redis, postgress]\n    sleep: { duration: 1ms }\n");
    let r = opsctl(&s, &["validate", rb.to_str().unwrap()]);
    r.code(2);
    r.stderr_has("unknown backend `kubernets`").stderr_has("did you mean `kubernetes`?").stderr_has("r.yaml:2:19");
    r.stderr_has("unknown backend `postgress`").stderr_has("r.yaml:5:20");
    let rb = s.write("r.yaml", "name: r\nrequires: [{ when: \"{{ true }}\" }]\nsteps:\n  - sleep: { duration: 1ms }\n");
    opsctl(&s, &["validate", rb.to_str().unwrap()]).code(2).stderr_has("this requirement names no backend");
    // A step that needs what the instance lacks is not run; later steps can still read it.
    let rb = s.write(
        "r.yaml",
        "name: r\nsteps:\n  - id: a\n    needs: redis\n    sleep: { duration: 1ms }\n  - id: b\n    assert: { that: \"{{ steps.a.status == 'skipped' and not run.failed }}\" }\n",
    );
    let r = opsctl(&s, &["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]);
    r.code(0);
    assert_eq!(ids(&r), ["b"]);
    assert_eq!(r.json()["not_configured"], serde_json::json!(["redis"]));
}

fn seq(r: &Run) -> Vec<(String, String)> {
    r.json()["runs"].as_array().unwrap().iter().map(|r| (r["runbook"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string())).collect()
}

fn run_of(r: &Run, runbook: &str) -> serde_json::Value {
    r.json()["runs"].as_array().unwrap().iter().find(|x| x["runbook"] == runbook).cloned().unwrap_or_else(|| panic!("no run of {runbook} in {}", r.stdout))
}

fn step_of(run: &serde_json::Value, id: &str) -> serde_json::Value {
    run["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).cloned().unwrap_or_else(|| panic!("no step {id} in {run}"))
}

#[test]
fn deploy_gates_verifies_and_rolls_back_a_release_that_does_not_come_up() {
    let s = Scratch::new();
    let Some(p) = host(&s, "proc-release") else { return };
    let env = || std::fs::read_to_string(s.path().join(".env")).unwrap();
    let deploy = |image: &str| opsctl(&s, &["deploy", "-i", "app", "api", "--image", image, "--watch", "1s", "--timeout", "8s", "-o", "json"]);

    // A good release: the gate passes, the image changes, health and errors are watched.
    let r = deploy("opsctl-test-busybox:2");
    r.code(0);
    assert_eq!(r.json()["schema"], "opsctl.sequence/v1");
    assert_eq!(seq(&r), [("gate".to_string(), "passed".to_string()), ("deploy".to_string(), "passed".to_string())]);
    let d = run_of(&r, "deploy");
    assert_eq!(step_of(&d, "compose")["value"], "opsctl-test-busybox:1 → opsctl-test-busybox:2");
    assert_eq!(step_of(&d, "compose_errors")["status"], "passed");
    assert_eq!(step_of(&d, "rollback_compose")["status"], "skipped");
    assert_eq!(image_and_health(&p, "api"), ("opsctl-test-busybox:2".to_string(), "healthy".to_string()));

    // A release that never gets healthy is rolled back to exactly what ran before.
    let r = deploy("opsctl-test-busybox:broken");
    r.code(1);
    let d = run_of(&r, "deploy");
    assert_eq!(step_of(&d, "compose")["status"], "failed");
    assert_eq!(step_of(&d, "rollback_compose")["status"], "passed", "{d}");
    assert_eq!(step_of(&d, "rollback_compose")["value"], "opsctl-test-busybox:broken → opsctl-test-busybox:2");
    assert_eq!(step_of(&d, "rolled_back")["message"], "the deploy of opsctl-test-busybox:broken to api failed (compose) and was rolled back");
    assert_eq!(env(), "# images\nAPI_IMAGE=opsctl-test-busybox:2\nAPI_IMAGE_PREVIOUS=opsctl-test-busybox:broken\n");
    assert_eq!(image_and_health(&p, "api"), ("opsctl-test-busybox:2".to_string(), "healthy".to_string()));
    let table = opsctl(&s, &["history", "-n", "2"]);
    table.code(0);

    // A gate that fails stops the deploy before anything changes; the table says so.
    p.compose(&["stop", "worker"]);
    let r = opsctl(&s, &["deploy", "-i", "app", "api", "--image", "opsctl-test-busybox:1", "--watch", "1s"]);
    r.code(1);
    r.stdout_has("deploy on app: FAILED — gate failed; not run: deploy (`gate` failed and stops the sequence)");
    assert_eq!(image_and_health(&p, "api").0, "opsctl-test-busybox:2");
    let junit = s.path().join("gate.xml");
    opsctl(&s, &["gate", "-i", "app", "--output", &format!("junit={}", junit.display())]).code(1);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuite name=\"gate@app\"") && xml.contains("worker: none running"), "{xml}");
    // --dry-run: the plan of both, nothing changed.
    p.compose(&["start", "worker"]);
    wait("worker running", || p.running("worker") == 1);
    let r = opsctl(&s, &["deploy", "-i", "app", "api", "--image", "opsctl-test-busybox:1", "--dry-run", "-o", "json"]);
    r.code(0);
    assert_eq!(step_of(&run_of(&r, "deploy"), "compose")["status"], "planned");
    assert_eq!(image_and_health(&p, "api").0, "opsctl-test-busybox:2");
    assert!(env().contains("API_IMAGE=opsctl-test-busybox:2\n"));
}

#[test]
fn a_routine_runs_every_runbook_and_one_failure_does_not_stop_the_others() {
    let s = Scratch::new();
    s.write("runbooks/fails.yaml", "name: fails\nsteps:\n  - { id: a, assert: { that: false, message: \"this runbook always fails\" } }\n");
    s.write("runbooks/passes.yaml", "name: passes\nsteps:\n  - { id: a, sleep: { duration: 1ms } }\n");
    s.write(
        "opsctl.yaml",
        "runbooks_dir: runbooks\ninstances:\n  web:\n    routines:\n      daily: [fails, passes, check]\n      strict: [{ runbook: fails, stop_on_failure: true }, passes]\n      bad: [nope]\n      nightly: [passes, backup]\n",
    );
    let junit = s.path().join("daily.xml");
    let r = opsctl(&s, &["routine", "daily", "-i", "web", "-o", "json", "-o", &format!("junit={}", junit.display())]);
    r.code(1);
    let runs = seq(&r);
    assert_eq!(runs[..2], [("fails".to_string(), "failed".to_string()), ("passes".to_string(), "passed".to_string())]);
    assert_eq!(runs[2].0, "check");
    assert_eq!(r.json()["name"], "routine daily");
    assert_eq!(r.json()["exit_code"], 1);
    let xml = std::fs::read_to_string(&junit).unwrap();
    for suite in ["fails@web", "passes@web", "check@web"] {
        assert!(xml.contains(&format!("<testsuite name=\"{suite}\"")), "{xml}");
    }
    assert!(xml.contains("this runbook always fails"), "{xml}");
    // Each runbook is its own run in the history.
    let h = opsctl(&s, &["history", "-i", "web"]);
    h.stdout_has("fails").stdout_has("passes").stdout_has("check");

    let r = opsctl(&s, &["routine", "strict", "-i", "web"]);
    r.code(1);
    r.stdout_has("routine strict on web: FAILED — fails failed; not run: passes (`fails` failed and stops the sequence)");
    // An unknown runbook in a routine is refused before anything runs.
    let r = opsctl(&s, &["routine", "bad", "-i", "web"]);
    r.code(2);
    r.stderr_has("unknown runbook `nope`");
    // A runbook the inventory names that cannot apply is refused before anything runs.
    let r = opsctl(&s, &["routine", "nightly", "-i", "web"]);
    r.code(2);
    r.stderr_has("`backup` does not apply to instance web");
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let r = opsctl(&s, &["routine", "dayly", "-i", "web"]);
    r.code(2);
    r.stderr_has("unknown routine `dayly`").stderr_has("did you mean `daily`?");
    // The shipped daily routine on an instance without a backup store: check runs, backup
    // is listed as not applying, and that is not a failure.
    let r = opsctl(&s, &["routine", "daily", "-i", "localhost"]);
    assert!(r.code == 0 || (r.code == 1 && r.stdout.lines().filter(|l| l.trim_start().starts_with("FAIL")).all(|l| l.contains(" host."))), "{}", r.stdout);
    // (PASSED, or with warnings, or failed: this machine's load decides.)
    r.stdout_has("routine daily on localhost: ");
    r.stdout_has(" — check ");
    r.stdout_has("; not run: backup (does not apply: it needs backups (a backup store, `backups:`), and one of postgres (`postgres:`), dynamodb (`dynamodb.tables:`), redis (`redis:`); localhost has host); logs (does not apply: it needs one of kubernetes (`kubernetes:`), compose (`compose:`), cloudwatch_logs (`cloudwatch_logs.groups:`); localhost has host)");
}

/// A service that reads a secret from the env file and is healthy only while it has the
/// value it started with (a consumer that cannot take the new one), and one that takes any.
const ROTATING: &str = r#"version: "2.4"
services:
  api:
    image: {image}
    command: ["sleep", "3600"]
    env_file: [secrets.env]
    stop_signal: SIGKILL
    healthcheck: { test: ["CMD-SHELL", "test -n \"$$JWT_SECRET\""], interval: 1s, timeout: 2s, retries: 1 }
  legacy:
    image: {image}
    command: ["sleep", "3600"]
    env_file: [legacy.env]
    stop_signal: SIGKILL
    healthcheck: { test: ["CMD-SHELL", "test \"$$LEGACY_TOKEN\" = original-legacy-token-value"], interval: 1s, timeout: 2s, retries: 1 }
"#;

#[test]
fn rotate_secret_rotates_a_declared_env_file_key_and_rolls_back_when_the_consumer_does_not_come_back() {
    let s = Scratch::new();
    s.write("secrets.env", "JWT_SECRET=original-jwt-secret-value-0123456789\n");
    s.write("legacy.env", "LEGACY_TOKEN=original-legacy-token-value\n");
    let Some(p) = Project::new(&s, "proc-rotate", ROTATING) else { return };
    p.compose(&["up", "-d"]);
    s.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  app:\n    compose: {{ files: [docker-compose.yml], project: {} }}\n    secrets:\n      jwt: {{ env_file: secrets.env, key: JWT_SECRET, restart: [api] }}\n      legacy: {{ env_file: legacy.env, key: LEGACY_TOKEN, restart: [legacy] }}\n",
            p.name
        ),
    );
    wait("api and legacy healthy", || image_and_health(&p, "api").1 == "healthy" && image_and_health(&p, "legacy").1 == "healthy");

    let r = opsctl(&s, &["rotate-secret", "-i", "app", "jwt", "-o", "json"]);
    r.code(0);
    let env = std::fs::read_to_string(s.path().join("secrets.env")).unwrap();
    let new = env.trim().strip_prefix("JWT_SECRET=").unwrap().to_string();
    assert_eq!(new.len(), 32);
    assert_ne!(new, "original-jwt-secret-value-0123456789");
    assert!(!r.stdout.contains(&new) && !r.stderr.contains(&new), "the new value was printed");
    assert_eq!(r.step("env_file")["outputs"]["keys"], serde_json::json!(["JWT_SECRET"]));

    // The legacy consumer does not come back with a new value: the old file is put back.
    let r = opsctl(&s, &["rotate-secret", "-i", "app", "legacy", "--timeout", "5s", "-o", "json"]);
    r.code(1);
    let msg = r.step("env_file")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("rotation rolled back:") && msg.contains("the old file is back and the services are healthy with it"), "{msg}");
    assert_eq!(std::fs::read_to_string(s.path().join("legacy.env")).unwrap(), "LEGACY_TOKEN=original-legacy-token-value\n");
    wait("legacy healthy again", || image_and_health(&p, "legacy").1 == "healthy");

    // Only declared secrets; a declared one the instance cannot reach is refused up front.
    let r = opsctl(&s, &["rotate-secret", "-i", "app", "jtw"]);
    r.code(2);
    r.stderr_has("instance app declares no secret `jtw`").stderr_has("did you mean `jwt`?");
    s.write("opsctl.yaml", "instances:\n  bare:\n    secrets:\n      db: { k8s_secret: api-secrets, key: DB_PASSWORD, restart: [deployment/api] }\n");
    let r = opsctl(&s, &["rotate-secret", "-i", "bare", "db"]);
    r.code(2);
    r.stderr_has("`rotate-secret` does not apply to instance bare: it needs kubernetes (`kubernetes:`); bare has host");
}

mod kubernetes {
    use serde_json::json;

    use super::{run_of, seq, step_of};
    use crate::support::kube::{KubeEnv, NS, node};

    fn big_node(name: &str, cpu: &str, memory: &str) -> serde_json::Value {
        let mut n = node(name, true);
        n["status"]["allocatable"] = json!({"cpu": cpu, "memory": memory, "pods": "110"});
        n
    }

    fn image(k: &KubeEnv) -> String {
        k.get("deployments", "api")["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_string()
    }

    #[test]
    fn deploy_on_a_tenant_rolls_back_a_crash_looping_release_to_the_image_it_ran() {
        let k = KubeEnv::new();
        k.fake.with(|c| {
            c.crashing_images.push("broken".into());
            c.seed("nodes", big_node("node-1", "4", "8Gi"));
        });
        k.deployment("api", 2, "registry/api:v1");
        let o = |args: &[&str]| k.scratch.opsctl().args(args).args(["--output", "json"]).run();

        let r = o(&["deploy", "-i", "team-a", "api", "--image", "registry/api:v2", "--watch", "1s", "--timeout", "10s"]);
        r.code(0);
        assert_eq!(seq(&r), [("gate".to_string(), "passed".to_string()), ("deploy".to_string(), "passed".to_string())]);
        let gate = run_of(&r, "gate");
        assert_eq!(step_of(&gate, "headroom")["status"], "passed", "{gate}");
        assert_eq!(step_of(&gate, "headroom")["outputs"]["nodes"]["node-1"]["cpu_requested"], 0.2);
        assert_eq!(step_of(&run_of(&r, "deploy"), "set_image")["outputs"]["previous_image"], "registry/api:v1");
        assert_eq!(image(&k), "registry/api:v2");

        // A release whose pods crash-loop: the rollout times out, is undone, and rolls out.
        let r = o(&["deploy", "-i", "team-a", "api", "--image", "registry/api:broken", "--watch", "1s", "--timeout", "3s", "--no-gate"]);
        r.code(1);
        assert_eq!(seq(&r), [("deploy".to_string(), "failed".to_string())]);
        let d = run_of(&r, "deploy");
        assert_eq!(step_of(&d, "rollout")["status"], "failed");
        assert_eq!(step_of(&d, "rollback_kubernetes")["status"], "passed", "{d}");
        assert_eq!(step_of(&d, "rolled_back_kubernetes")["status"], "passed", "{d}");
        assert_eq!(step_of(&d, "rolled_back")["message"], "the deploy of registry/api:broken to api failed (rollout) and was rolled back");
        assert_eq!(image(&k), "registry/api:v2", "exactly the image it ran before");
        k.wait_ready("deployments", "api");

        // The gate fails on a crash-looping workload, naming it, and the deploy does not run.
        k.run("  - { id: s, k8s.set_image: { target: api, image: registry/api:broken } }\n", &[]).code(0);
        let r = o(&["deploy", "-i", "team-a", "api", "--image", "registry/api:v3", "--watch", "1s"]);
        r.code(1);
        assert_eq!(seq(&r), [("gate".to_string(), "failed".to_string())]);
        assert_eq!(r.json()["not_run"], json!([{"runbook": "deploy", "reason": "`gate` failed and stops the sequence"}]));
        let gate = run_of(&r, "gate");
        assert_eq!(step_of(&gate, "workloads")["status"], "failed");
        assert!(step_of(&gate, "pods")["message"].as_str().unwrap().contains("CrashLoopBackOff"), "{gate}");
        assert_eq!(image(&k), "registry/api:broken");
    }

    #[test]
    fn capacity_judges_the_room_left_on_nodes() {
        let k = KubeEnv::new();
        k.fake.with(|c| {
            c.seed("nodes", big_node("node-1", "500m", "1Gi"));
            c.seed("nodes", big_node("node-2", "250m", "1Gi"));
        });
        k.deployment("api", 4, "registry/api:v1");
        let r = k.run("  - { id: c, k8s.capacity: { warn_ratio: 0.5, fail_ratio: 0.9 } }\n", &[]);
        let c = r.step("c");
        let n1 = &c["outputs"]["nodes"]["node-1"];
        let n2 = &c["outputs"]["nodes"]["node-2"];
        let cpu = n1["cpu_requested"].as_f64().unwrap() + n2["cpu_requested"].as_f64().unwrap();
        assert!((cpu - 0.4).abs() < 1e-9, "{c}");
        assert_eq!(n1["pods"].as_u64().unwrap() + n2["pods"].as_u64().unwrap(), 4);
        // Every node (here: the one with the pods) over fail_ratio: no room.
        let busy = if n1["pods"].as_u64().unwrap() > 0 { "node-1" } else { "node-2" };
        let r = k.run(&format!("  - {{ id: c, k8s.capacity: {{ fail_ratio: 0.1, selector: kubernetes.io/hostname={busy} }} }}\n"), &[]);
        r.code(1);
        assert!(r.step("c")["message"].as_str().unwrap().starts_with("every node is "), "{}", r.stdout);
        let r = k.run("  - { id: c, k8s.capacity: { selector: pool=none } }\n", &[]);
        r.code(1);
        assert_eq!(r.step("c")["message"], "no nodes match pool=none: no room to schedule anything");
    }

    #[test]
    fn rotate_secret_on_a_tenant_puts_the_previous_values_back_when_health_fails() {
        let k = KubeEnv::new();
        k.fake.with(|c| {
            c.seed("secrets", json!({"metadata": {"name": "api-secrets", "namespace": NS}, "type": "Opaque", "data": {"DB_PASSWORD": "b2xkLXBhc3N3b3Jk"}}))
        });
        k.deployment("api", 1, "registry/api:v1");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let inv = |http: &str| {
            format!(
                "instances:\n  team-a:\n    kubernetes: {{ kubeconfig: kubeconfig.yaml, namespace: team-a }}\n{http}    secrets:\n      db: {{ k8s_secret: api-secrets, key: DB_PASSWORD, restart: [deployment/api] }}\n"
            )
        };
        k.scratch.write("opsctl.yaml", &inv(""));
        let password = || k.get("secrets", "api-secrets")["data"]["DB_PASSWORD"].as_str().unwrap().to_string();
        let r = k.scratch.opsctl().args(["rotate-secret", "-i", "team-a", "db", "--timeout", "10s", "-o", "json"]).run();
        r.code(0);
        let rotated = password();
        assert_ne!(rotated, "b2xkLXBhc3N3b3Jk");
        assert_eq!(r.step("rollout[0]")["status"], "passed", "{}", r.stdout);
        assert_eq!(k.get("secrets", "api-secrets-opsctl-previous")["data"]["DB_PASSWORD"], "b2xkLXBhc3N3b3Jk");

        // The API does not answer its health check after the restart: the previous values go back.
        k.scratch.write("opsctl.yaml", &inv(&format!("    http: {{ base_url: \"http://127.0.0.1:{closed}\", health: [/health] }}\n")));
        let r = k.scratch.opsctl().args(["rotate-secret", "-i", "team-a", "db", "--timeout", "10s", "-o", "json"]).run();
        r.code(1);
        assert_eq!(r.step("k8s_rollback")["status"], "passed", "{}", r.stdout);
        assert_eq!(r.step("rolled_back")["message"], "rotating db failed (health) and the previous values were put back");
        assert_eq!(password(), rotated, "the values before this rotation are back");
        for text in [&r.stdout, &r.stderr] {
            assert!(!text.contains(&rotated), "a value was printed");
        }
    }
}

#[test]
fn a_declared_secret_names_exactly_one_place_and_its_key() {
    let s = Scratch::new();
    for (decl, msg) in [
        ("{ key: JWT_SECRET }", "secret `jwt` of instance a names no place: give one of `env_file`, `k8s_secret` or `aws_secret`"),
        ("{ env_file: .env, k8s_secret: s, key: K }", "secret `jwt` of instance a names more than one place"),
        ("{ env_file: .env }", "secret `jwt` of instance a needs `key`: the variable (env file) or key (Secret) to rotate"),
        ("{ env_file: .env, key: K, length: 8 }", "secret `jwt` of instance a: `length` is 8; use 16 to 256 characters"),
    ] {
        s.write("opsctl.yaml", &format!("instances:\n  a:\n    secrets:\n      jwt: {decl}\n"));
        let r = opsctl(&s, &["list", "instances"]);
        r.code(2);
        r.stderr_has(msg).stderr_has("opsctl.yaml:4:12");
    }
}

mod tenant {
    use serde_json::json;

    use crate::support::kube::{KubeEnv, NS, pod};
    use crate::support::postgres::PASSWORD;

    fn seed_custom(k: &KubeEnv) {
        k.fake.with(|c| {
            c.seed(
                "applications",
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "go-coffee", "namespace": "argocd"},
                "status": {"health": {"status": "Healthy"}, "sync": {"status": "Synced"}}}),
            );
            c.seed(
                "buckets",
                json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket", "metadata": {"name": "team-a-assets", "labels": {"tenant": "team-a"}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}]}}),
            );
            let done = jiff::Timestamp::now().to_string();
            c.seed(
                "backups",
                json!({"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": "daily-1", "namespace": "velero"},
                "status": {"phase": "Completed", "completionTimestamp": done}}),
            );
        });
    }

    /// A tenant as the multi-tenant guides run one: a namespace with its API behind a service
    /// and an ingress, PostgreSQL in a pod reached through the API server, DynamoDB tables,
    /// Argo CD, Crossplane and Velero resources, and a backup store.
    #[test]
    fn check_on_a_kubernetes_tenant_passes_healthy_and_names_what_is_broken() {
        let Some(pg) = crate::support::postgres::shared() else { return };
        let Some(aws) = crate::support::aws::shared() else { return };
        pg.create_db("t_tenant");
        aws.table("users-team-a", 3);
        let k = KubeEnv::new();
        k.deployment("api", 2, "registry/api:v1");
        k.fake.with(|c| {
            c.seed("services", json!({"metadata": {"name": "api", "namespace": NS}, "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}));
            c.seed("ingresses", json!({"metadata": {"name": "api", "namespace": NS}, "spec": {"rules": [{"host": "team-a.example.com"}]},
                "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}}));
            let mut p = pod("postgres-primary-0", "postgres", true, None, 0);
            p["spec"]["containers"] = json!([{"name": "postgres", "image": "postgres:16", "ports": [{"containerPort": 5432}]}]);
            c.seed("pods", p);
            c.forwards.insert((NS.to_string(), "postgres-primary-0".to_string(), 5432), std::net::SocketAddr::from(([127, 0, 0, 1], pg.port)));
        });
        seed_custom(&k);
        let resources = "      resources:\n        - { api_version: argoproj.io/v1alpha1, kind: Application, namespace: argocd, name: go-coffee, expect: { status.health.status: Healthy, status.sync.status: Synced } }\n        - { api_version: s3.aws.upbound.io/v1beta1, kind: Bucket, selector: tenant=team-a, conditions: [Ready=True, Synced=True] }\n        - { api_version: velero.io/v1, kind: Backup, namespace: velero, newest: true, expect: { status.phase: Completed }, age_field: status.completionTimestamp, max_age: 26h }\n";
        k.scratch.write(
            "opsctl.yaml",
            &format!(
                "instances:\n  team-a:\n    kubernetes:\n      kubeconfig: kubeconfig.yaml\n      namespace: team-a\n{resources}    postgres: {{ url: {{ env: PG_URL }}, port_forward: {{ pod: postgres-primary-0, port: 5432 }} }}\n    aws: {}\n    dynamodb: {{ tables: [users-team-a] }}\n    backups: {{ dir: \"{}\" }}\n",
                aws.settings("us-east-1"),
                k.scratch.path().join("backups").display()
            ),
        );
        let url = format!("postgres://postgres:{PASSWORD}@postgres.team-a.svc:5432/t_tenant");
        let opsctl = || crate::aws::creds(k.scratch.opsctl()).env("PG_URL", &url);
        let check = || opsctl().args(["check", "-i", "team-a", "-o", "json"]).run();
        let backup = opsctl().args(["backup", "-i", "team-a", "-o", "json"]).run();
        backup.code(0);
        assert_eq!(
            backup.json()["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect::<Vec<_>>(),
            ["postgres", "verify", "dynamodb[0]", "verify_dynamodb[0]"]
        );

        let r = check();
        super::passed_but_for_the_machine(&r);
        for id in ["workloads", "pods", "endpoints", "resources[0]", "resources[1]", "resources[2]", "postgres", "dynamodb[0]", "backup"] {
            assert!(matches!(r.step(id)["status"].as_str(), Some("passed" | "warned")), "{id}: {}", r.step(id));
        }
        assert_eq!(r.step("endpoints")["message"], "1 services with ready endpoints, 1 ingresses with an address");
        assert_eq!(
            r.step("resources[0]")["message"],
            "Application go-coffee in namespace argocd as expected: status.health.status Healthy, status.sync.status Synced"
        );
        assert_eq!(
            r.step("resources[2]")["message"],
            "the newest Backup in namespace velero as expected: status.phase Completed, status.completionTimestamp within 1d2h"
        );
        assert!(r.step("backup")["message"].as_str().unwrap().contains("dynamodb table users-team-a"), "{}", r.step("backup"));

        // Broken: a crash-looping pod, an Application out of sync, an ingress without an
        // address, a failed newest Velero backup — each named.
        k.fake.with(|c| {
            c.seed("pods", pod("api-crash", "api", false, Some("CrashLoopBackOff"), 7));
            c.seed(
                "applications",
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "go-coffee", "namespace": "argocd"},
                "status": {"health": {"status": "Degraded"}, "sync": {"status": "OutOfSync"}}}),
            );
            c.seed("ingresses", json!({"metadata": {"name": "admin", "namespace": NS}, "spec": {"rules": [{"host": "admin.example.com"}]}}));
            c.seed(
                "backups",
                json!({"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": "daily-2", "namespace": "velero"},
                "status": {"phase": "PartiallyFailed", "completionTimestamp": jiff::Timestamp::now().to_string()}}),
            );
        });
        let r = check();
        r.code(1);
        assert!(r.step("pods")["message"].as_str().unwrap().contains("CrashLoopBackOff: api-crash"), "{}", r.step("pods"));
        assert_eq!(
            r.step("resources[0]")["message"],
            "0/1 Application go-coffee in namespace argocd as expected; go-coffee: status.health.status is Degraded, expected Healthy, status.sync.status is OutOfSync, expected Synced"
        );
        assert_eq!(
            r.step("resources[2]")["message"],
            "0/1 Backup in namespace velero as expected; daily-2: status.phase is PartiallyFailed, expected Completed"
        );
        assert!(r.step("endpoints")["message"].as_str().unwrap().ends_with("without: ingress admin (no address)"), "{}", r.step("endpoints"));
        assert_eq!(r.step("resources[1]")["status"], "passed");
    }

    #[test]
    fn resource_and_endpoints_say_what_is_missing() {
        let k = KubeEnv::new();
        let rb = |steps: &str| k.run(steps, &[]);
        let r = rb("  - { id: r, k8s.resource: { api_version: monitoring.coreos.com/v1, kind: ServiceMonitor, expect: { spec.x: y } } }\n");
        r.code(1);
        assert_eq!(r.step("r")["message"], "the API server does not serve monitoring.coreos.com/v1 (is its CRD installed?)");
        let r = rb("  - { id: r, k8s.resource: { api_version: argoproj.io/v1alpha1, kind: AppProject, expect: { spec.x: y } } }\n");
        r.code(1);
        assert_eq!(
            r.step("r")["message"],
            "the API server does not serve argoproj.io/v1alpha1 AppProject (is its CRD installed? check `kind` and `api_version`)"
        );
        let r = rb("  - { id: r, k8s.resource: { api_version: argoproj.io/v1alpha1, kind: Application, name: nope, expect: { spec.x: y } } }\n");
        r.code(1);
        assert_eq!(r.step("r")["message"], format!("Application nope in namespace {NS} does not exist"));
        let r = rb("  - { id: r, k8s.resource: { api_version: v1, kind: Service, on_empty: warn } }\n");
        r.code(0);
        assert_eq!(r.step("r")["status"], "warned");
        assert_eq!(r.step("r")["message"], format!("no Service in namespace {NS}"));
        // Nothing to check is not a pass, unless the step says so.
        let r = rb("  - { id: e, k8s.endpoints: {} }\n");
        r.code(1);
        assert_eq!(r.step("e")["message"], format!("no services with a selector and no ingresses in namespace {NS}"));
        let r = rb("  - { id: ok, k8s.endpoints: { on_empty: pass } }\n");
        r.code(0);
        // A service whose pods are not ready has no ready endpoints.
        k.fake.with(|c| {
            c.seed("pods", pod("web-1", "web", false, None, 0));
            c.seed("services", json!({"metadata": {"name": "web", "namespace": NS}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}));
        });
        k.fake.wait_until("the endpoints controller", |c| c.get(crate::support::fake_kube::store::type_of("endpoints"), NS, "web").is_ok());
        let r = rb("  - { id: e, k8s.endpoints: {} }\n");
        r.code(1);
        assert_eq!(r.step("e")["message"], "0 services with ready endpoints, 0 ingresses with an address; without: service web (1 not ready)");
        let bad = rb("  - { id: r, k8s.resource: { api_version: a/b/c, kind: X } }\n");
        bad.code(2);
        bad.stderr_has("`api_version` `a/b/c` is `group/version` (`argoproj.io/v1alpha1`) or `v1`");
    }
}

mod review {
    use serde_json::json;

    use crate::support::Scratch;
    use crate::support::compose::Project;
    use crate::support::kube::{KubeEnv, NS, pod};

    #[test]
    fn the_log_review_groups_messages_per_component_on_a_tenant() {
        let k = KubeEnv::new();
        k.deployment("api", 2, "registry/api:v1");
        let now = jiff::Timestamp::now();
        let ago = |s: i64| now - jiff::SignedDuration::from_secs(s);
        let cj = k.fake.with(|c| {
            c.seed("cronjobs", json!({"metadata": {"name": "backup", "namespace": NS},
                "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "b", "image": "backup:1"}]}}}}}}))
        });
        k.fake.with(|c| {
            for (i, job) in ["backup-1", "backup-2"].iter().enumerate() {
                c.seed("jobs", json!({"metadata": {"name": job, "namespace": NS,
                        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "backup", "uid": cj["metadata"]["uid"], "controller": true}]},
                    "spec": {"selector": {"matchLabels": {"job-name": job}}, "template": {"metadata": {"labels": {"job-name": job}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "b", "image": "backup:1"}]}}}}));
                let mut p = pod(&format!("{job}-x{i}"), "backup", true, None, 0);
                p["metadata"]["labels"] = json!({"job-name": job});
                p["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": "u", "controller": true}]);
                p["spec"]["containers"] = json!([{"name": "b", "image": "backup:1"}]);
                c.seed("pods", p);
                c.logs.insert((NS.to_string(), format!("{job}-x{i}"), "b".to_string()), vec![(ago(60), format!("ERROR upload of part {} failed", i + 7))]);
                std::thread::sleep(std::time::Duration::from_millis(1100)); // creation times one second apart
            }
            let pods: Vec<String> = c.all("pods", Some(NS)).iter().filter(|p| p["metadata"]["labels"]["app"] == "api").map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
            for (i, p) in pods.iter().enumerate() {
                c.logs.insert(
                    (NS.to_string(), p.clone(), "api".to_string()),
                    vec![
                        (ago(300), format!("{} ERROR order {} failed for 10.0.0.{}:5432", ago(300), 1000 + i, i + 1)),
                        (ago(200), format!("{} ERROR order {} failed for 10.0.0.{}:5432", ago(200), 2000 + i, i + 1)),
                        (ago(100), format!("ERROR session 5f2b9c1e-8a7d-4c3b-9e1f-0a2b3c4d5e6{i} expired")),
                        (ago(90), "GET /admin 403 forbidden".to_string()),
                        (ago(80), "GET /search 429 too many requests".to_string()),
                    ],
                );
            }
        });
        let r = k.scratch.opsctl().args(["logs", "-i", "team-a", "-o", "json"]).run();
        r.code(0);
        let s = r.step("kubernetes");
        assert_eq!(s["status"], "warned", "{s}");
        assert_eq!(s["outputs"]["groups"][0], json!({"count": 4, "message": "<time> ERROR order <n> failed for <ip>", "example": s["outputs"]["groups"][0]["example"]}), "{s}");
        assert_eq!(s["outputs"]["groups"][1]["message"], "ERROR session <uuid> expired");
        assert_eq!(s["outputs"]["groups"][1]["count"], 2);
        assert_eq!(s["outputs"]["groups"][2]["message"], "ERROR upload of part <n> failed");
        assert_eq!(s["outputs"]["status_counts"], json!({"401": 0, "403": 2, "429": 2}));
        assert_eq!(s["outputs"]["by_component"]["deployment/api"], 6);
        assert_eq!(s["outputs"]["by_component"]["job/backup-2"], 1);
        assert!(s["message"].as_str().unwrap().contains("; top: 4× <time> ERROR order <n> failed for <ip>; 2× ERROR session <uuid> expired;"), "{s}");
        assert!(s["message"].as_str().unwrap().contains("HTTP 401: 0, 403: 2, 429: 2"), "{s}");

        // One component: a CronJob is the pods of its newest Job.
        let r = k.scratch.opsctl().args(["logs", "-i", "team-a", "cronjob/backup", "--since", "1h", "-o", "json"]).run();
        r.code(0);
        let s = r.step("kubernetes");
        assert_eq!(s["outputs"]["matches"], 1, "{s}");
        assert!(s["message"].as_str().unwrap().starts_with("1 of 1 lines of cronjob/backup (its newest Job, backup-2) (1 pods) in the last 1h"), "{s}");
        assert_eq!(s["outputs"]["groups"][0]["example"], "backup-2-x1: ERROR upload of part 8 failed");
    }

    const NOISY: &str = r#"version: "2.4"
services:
  noisy:
    image: {image}
    command: ["sh", "-c", "i=0; while true; do i=$$((i+1)); echo \"ERROR request $$i failed\"; echo \"GET /login 401 user $$i\"; sleep 0.2; done"]
    stop_signal: SIGKILL
  quiet:
    image: {image}
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
"#;

    #[test]
    fn the_log_review_groups_messages_on_a_compose_host() {
        let s = Scratch::new();
        let Some(p) = Project::new(&s, "review", NOISY) else { return };
        p.compose(&["up", "-d"]);
        s.write("opsctl.yaml", &format!("instances:\n  app:\n    compose: {{ files: [docker-compose.yml], project: {} }}\n    logs: {{ fail_above: 1000 }}\n", p.name));
        std::thread::sleep(std::time::Duration::from_millis(1200));
        let r = s.opsctl().args(["logs", "-i", "app", "-o", "json"]).run();
        r.code(0);
        let c = r.step("compose");
        let n = c["outputs"]["matches"].as_u64().unwrap();
        assert!(n >= 3, "{c}");
        assert_eq!(c["outputs"]["groups"][0]["message"], "ERROR request <n> failed");
        assert_eq!(c["outputs"]["groups"][0]["count"], n);
        assert_eq!(c["outputs"]["by_service"]["noisy"], n);
        assert_eq!(c["outputs"]["by_service"]["quiet"], 0);
        assert!(c["outputs"]["status_counts"]["401"].as_u64().unwrap() >= 3, "{c}");
        assert_eq!(c["threshold"], "warn > 0, fail > 1000");
        let one = s.opsctl().args(["logs", "-i", "app", "quiet", "-o", "json"]).run();
        one.code(0);
        assert_eq!(one.step("compose")["status"], "passed");
        assert_eq!(one.step("compose")["outputs"]["matches"], 0);
    }

    #[test]
    fn the_log_review_groups_cloudwatch_events() {
        let Some((s, aws)) = crate::aws::setup() else { return };
        aws.log_group(
            "/ecs/review/app",
            &[("app/1", 120, "ERROR payment 123 declined for card 4242"), ("app/2", 60, "ERROR payment 456 declined for card 4000"), ("app/1", 30, "GET /checkout 429")],
        );
        crate::aws::inventory(&s, aws, "    cloudwatch_logs: { groups: [/ecs/review/app] }\n");
        let r = crate::aws::creds(s.opsctl()).args(["logs", "-i", "a", "/ecs/review/app", "--since", "1h", "-o", "json"]).run();
        r.code(0);
        let c = r.step("cloudwatch");
        assert_eq!(c["outputs"]["groups"][0], json!({"count": 2, "message": "ERROR payment <n> declined for card <n>", "example": "app/1: ERROR payment 123 declined for card 4242"}), "{c}");
        assert_eq!(c["outputs"]["status_counts"]["429"], 1, "{c}");
        assert_eq!(c["outputs"]["by_group"], json!({"/ecs/review/app": 2}));
        assert_eq!(c["outputs"]["matches"], 2);
    }
}

mod triage {
    use serde_json::json;

    use super::{host, opsctl};
    use crate::support::Scratch;
    use crate::support::kube::{KubeEnv, NS};

    fn ago(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)
    }

    #[test]
    fn triage_on_a_tenant_with_a_bad_rollout_says_what_changed_and_changes_nothing() {
        let k = KubeEnv::new();
        k.fake.with(|c| c.crashing_images.push("broken".into()));
        k.deployment("api", 2, "registry/api:v1");
        // An error burst on the healthy pods, a while ago; then the bad rollout.
        k.fake.with(|c| {
            for p in c.all("pods", Some(NS)) {
                let name = p["metadata"]["name"].as_str().unwrap().to_string();
                let lines = (0..5).map(|i| (ago(600 - i), format!("ERROR checkout {} failed: upstream timeout", 100 + i))).collect();
                c.logs.insert((NS.to_string(), name, "api".to_string()), lines);
            }
        });
        k.run("  - { id: s, k8s.set_image: { target: api, image: registry/api:broken } }\n", &[]).code(0);
        k.fake.wait_until("the broken pods", |c| c.all("pods", Some(NS)).iter().filter(|p| p["spec"]["containers"][0]["image"] == "registry/api:broken").count() == 2);
        k.fake.with(|c| {
            c.seed("events", json!({"metadata": {"name": "e1", "namespace": NS}, "involvedObject": {"kind": "Pod", "name": "api-crash", "namespace": NS},
                "reason": "BackOff", "message": "Back-off restarting failed container api", "type": "Warning", "count": 7,
                "lastTimestamp": ago(30).strftime("%Y-%m-%dT%H:%M:%SZ").to_string(), "firstTimestamp": ago(200).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}));
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let before = k.fake.with(|c| c.versions());
        let r = k.scratch.opsctl().args(["triage", "-i", "team-a", "-o", "json"]).run();
        r.code(0);
        assert_eq!(k.fake.with(|c| c.versions()), before, "triage changed nothing");
        assert_eq!(r.json()["status"], "passed");
        for id in ["workloads", "pods", "events", "errors", "rollouts"] {
            assert_eq!(r.step(id)["status"], "warned", "{id}: {}", r.step(id));
        }
        assert!(r.step("pods")["message"].as_str().unwrap().contains("CrashLoopBackOff"), "{}", r.step("pods"));
        let rollouts = r.step("rollouts");
        assert_eq!(rollouts["outputs"]["rollouts"][0]["images"], json!(["registry/api:broken"]), "{rollouts}");
        assert_eq!(rollouts["outputs"]["rollouts"][0]["revision"], "2");
        assert!(rollouts["outputs"]["rollouts"][0]["change_cause"].as_str().unwrap().contains("set image api=registry/api:broken"), "{rollouts}");
        assert_eq!(rollouts["outputs"]["in_progress"], json!(["deployment/api"]));
        let errors = r.step("errors");
        assert_eq!(errors["outputs"]["groups"][0]["message"], "ERROR checkout <n> failed: upstream timeout", "{errors}");

        // The timeline: newest first — the bad rollout, the warning event, the first error.
        let entries = r.step("timeline")["outputs"]["entries"].as_array().unwrap().clone();
        let whats: Vec<&str> = entries.iter().map(|e| e["what"].as_str().unwrap()).collect();
        assert_eq!(whats, ["rollout", "rollout", "event", "first error"], "{entries:?}");
        assert!(entries[0]["message"].as_str().unwrap().starts_with("revision 2: registry/api:broken"), "{entries:?}");
        assert_eq!(entries[3]["component"], "deployment/api");
        let times: Vec<jiff::Timestamp> = entries.iter().map(|e| e["time"].as_str().unwrap().parse().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
        assert!(r.step("timeline")["message"].as_str().unwrap().contains("event pod/api-crash: BackOff: Back-off restarting failed container api"), "{}", r.step("timeline"));

        // --fail-on-findings makes the findings the exit code.
        k.scratch.opsctl().args(["triage", "-i", "team-a", "--fail-on-findings"]).run().code(1);
    }

    #[test]
    fn triage_on_a_compose_host_names_a_stopped_service() {
        let s = Scratch::new();
        let Some(p) = host(&s, "proc-triage") else { return };
        p.compose(&["stop", "worker"]);
        let r = opsctl(&s, &["triage", "-i", "app", "-o", "json"]);
        r.code(0);
        assert_eq!(r.step("services")["status"], "warned");
        assert!(r.step("services")["message"].as_str().unwrap().starts_with("worker: none running ("), "{}", r.step("services"));
        assert_eq!(r.step("timeline")["status"], "passed");
        opsctl(&s, &["triage", "-i", "app", "--fail-on-findings"]).code(1);
    }
}

/// `check --all` runs the instances at once, `--max-concurrency` at most.
#[test]
fn check_all_runs_instances_concurrently_up_to_max_concurrency() {
    let srv = crate::support::server::servers();
    let s = Scratch::new();
    let stats = |key: &str| crate::support::server::get_json(&srv.url(&format!("/stats/{key}")));
    for (key, limit, expect) in [(format!("fleet4-{}", std::process::id()), "4", "4"), (format!("fleet1-{}", std::process::id()), "1", "1"), (format!("fleet50-{}", std::process::id()), "25%", "2")] {
        let mut inv = String::from("instances:\n");
        for i in 0..8 {
            inv.push_str(&format!("  t{i}:\n    labels: {{ fleet: x }}\n    http: {{ base_url: \"{}\", health: [/concurrent/{key}/300] }}\n", srv.url("")));
        }
        s.write("opsctl.yaml", &inv);
        let r = opsctl(&s, &["check", "--all", "--max-concurrency", limit, "-o", "json"]);
        passed_but_for_the_machine(&r);
        let runs = r.json();
        let names: Vec<&str> = runs["runs"].as_array().unwrap().iter().map(|x| x["instance"].as_str().unwrap()).collect();
        assert_eq!(names, ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"], "in the inventory's order");
        let st = stats(&key);
        assert_eq!(st["count"], 8, "{st}");
        assert_eq!(st["max"].as_u64().unwrap().to_string(), expect, "at most {limit} at once, and that many: {st}");
    }
}

/// `--max-errors N`: once more than N instances have failed, no new one is launched; runs in
/// flight finish; the rest are reported `not started`.
#[test]
fn max_errors_stops_launching_once_more_than_n_have_failed() {
    let srv = crate::support::server::servers();
    let s = Scratch::new();
    // A check of the HTTP endpoint only, so this machine's load cannot fail an instance.
    s.write("runbooks/check.yaml", "name: check\nsteps:\n  - id: http\n    for_each: \"{{ instance.http.health }}\"\n    http.check: { url: \"{{ instance.http.base_url }}{{ item.path }}\", expect_status: 200 }\n");
    let mut inv = String::from("runbooks_dir: runbooks\ninstances:\n");
    for i in 0..6 {
        let path = if i < 2 { "/status/500" } else { "/health" };
        inv.push_str(&format!("  t{i}:\n    http: {{ base_url: \"{}\", health: [{path}] }}\n", srv.url("")));
    }
    s.write("opsctl.yaml", &inv);
    let statuses = |max: &str| {
        let r = opsctl(&s, &["check", "--all", "--max-concurrency", "1", "--max-errors", max, "-o", "json"]);
        r.code(1);
        r.json()["runs"].as_array().unwrap().iter().map(|x| x["status"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(statuses("1"), ["failed", "failed", "not_started", "not_started", "not_started", "not_started"]);
    assert_eq!(statuses("0"), ["failed", "not_started", "not_started", "not_started", "not_started", "not_started"]);
    assert_eq!(statuses("50%"), ["failed", "failed", "passed", "passed", "passed", "passed"], "50% of 6 is 3: two failures launch everything");
    let table = opsctl(&s, &["check", "--all", "--max-concurrency", "1", "--max-errors", "0"]);
    table.code(1);
    table.stdout_has("check on 6 instances: 1 failed, 5 not started").stdout_has("NOT STARTED");
    assert!(table.stdout.contains("t0") && table.stdout.contains("http[0]: "), "{}", table.stdout);
    opsctl(&s, &["check", "--all", "--max-errors", "x"]).code(2).stderr_has("`x` is not a count (3) or a percentage (10%)");
    // `--instance a,b,c`: those, in that order, each once; an unknown one is refused first.
    let r = opsctl(&s, &["check", "--instance", "t3,t2,t3", "-o", "json"]);
    r.code(0);
    assert_eq!(r.json()["runs"].as_array().unwrap().iter().map(|x| x["instance"].as_str().unwrap()).collect::<Vec<_>>(), ["t3", "t2"]);
    opsctl(&s, &["check", "--instance", "t3,t9"]).code(2).stderr_has("unknown instance `t9`");
}
