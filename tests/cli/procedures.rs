//! The procedure commands as an operator meets them: each adapts to the backends an instance
//! has, and refuses, before anything runs, an instance it cannot apply to.

use std::time::{Duration, Instant};

use crate::support::compose::Project;
use crate::support::{Run, Scratch};

/// A Compose host deployed the way the guides do it: the API's image is a variable the env
/// file sets; the worker's image is written literally. The API is healthy only when its image
/// serves `/` (opsctl-test-busybox:broken does not).
const HOST: &str = r#"version: "2.4"
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
    s.write(
        "opsctl.yaml",
        &format!("instances:\n  app:\n    compose: {{ files: [docker-compose.yml], project: {}, env_file: .env }}\n", p.name),
    );
    wait(&format!("{} api healthy", p.name), || {
        image_and_health(&p, "api").1 == "healthy"
    });
    Some(p)
}

/// The image and health of a service's first container.
fn image_and_health(p: &Project, service: &str) -> (String, String) {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", p.name),
        ])
        .args([
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
            "--format",
            "{{.Image}}|{{.Status}}",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text.lines().next().unwrap_or_default().to_string();
    let (image, status) = line.split_once('|').unwrap_or_default();
    let health = ["unhealthy", "healthy", "health: starting"]
        .iter()
        .find(|h| status.contains(*h))
        .map_or(status.to_string(), |h| h.to_string());
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

fn opsctl(s: &Scratch, args: &[&str]) -> Run {
    s.opsctl().args(args).run()
}

fn ids(r: &Run) -> Vec<String> {
    r.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn check_on_a_compose_host_looks_at_its_services_and_lists_only_what_it_has() {
    let s = Scratch::new();
    let Some(p) = host(&s, "proc-check") else {
        return;
    };
    let r = opsctl(&s, &["check", "-i", "app", "-o", "json"]);
    r.code(0);
    assert_eq!(
        ids(&r),
        ["disk", "memory", "load", "services", "docker_disk"],
        "{}",
        r.stdout
    );
    assert_eq!(r.step("services")["status"], "passed");
    assert_eq!(r.step("services")["value"], "2/2 ready");
    let not = r.json()["not_configured"].clone();
    for b in [
        "kubernetes",
        "postgres",
        "redis",
        "http",
        "ecs",
        "alertmanager",
    ] {
        assert!(
            not.as_array().unwrap().contains(&serde_json::json!(b)),
            "{not}"
        );
    }
    let table = opsctl(&s, &["check", "-i", "app"]);
    table.stdout_has("not configured on app: alertmanager, backups, dynamodb, ecs, elb, http, kubernetes, postgres, prometheus, redis (their steps did not run)");
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
        s.opsctl()
            .args(["run", rb.to_str().unwrap(), "-i", "app", "-o", "json"])
            .args(extra)
            .run()
    };
    // Nothing recorded yet: a rollback says where the previous image would be.
    let r = opsctl(&s, &["rollback", "-i", "app", "api", "-o", "json"]);
    r.code(1);
    assert_eq!(
        r.step("compose")["message"],
        "no previous image is recorded for this service (API_IMAGE_PREVIOUS is not in .env); `opsctl deploy` records it"
    );

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
    assert_eq!(
        env(),
        "# images\nAPI_IMAGE=opsctl-test-busybox:2\nAPI_IMAGE_PREVIOUS=opsctl-test-busybox:1\n"
    );
    assert_eq!(
        image_and_health(&p, "api"),
        ("opsctl-test-busybox:2".to_string(), "healthy".to_string())
    );

    // The rollback command puts the previous image back and waits until healthy.
    let r = opsctl(&s, &["rollback", "-i", "app", "api", "-o", "json"]);
    r.code(0);
    assert_eq!(ids(&r), ["compose"], "{}", r.stdout);
    assert_eq!(
        r.step("compose")["value"],
        "opsctl-test-busybox:2 → opsctl-test-busybox:1"
    );
    assert_eq!(
        env(),
        "# images\nAPI_IMAGE=opsctl-test-busybox:1\nAPI_IMAGE_PREVIOUS=opsctl-test-busybox:2\n"
    );
    assert_eq!(
        image_and_health(&p, "api"),
        ("opsctl-test-busybox:1".to_string(), "healthy".to_string())
    );

    // A release that never gets healthy fails the step with the containers' state.
    let r = deploy("opsctl-test-busybox:broken", &[]);
    r.code(1);
    let msg = r.step("d")["message"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with(
            "api running opsctl-test-busybox:broken and ready did not happen within 8s:"
        ),
        "{msg}"
    );

    // A literal image is refused with how to make it a variable; nothing is written.
    let before = env();
    let rb = s.write("w.yaml", "name: w\nsteps:\n  - id: w\n    compose.deploy: { service: worker, image: \"opsctl-test-busybox:2\" }\n");
    let r = s
        .opsctl()
        .args(["run", rb.to_str().unwrap(), "-i", "app", "-o", "json"])
        .run();
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
    let r = opsctl(
        &s,
        &[
            "scale",
            "-i",
            "app",
            "worker",
            "--replicas",
            "2",
            "-o",
            "json",
        ],
    );
    r.code(0);
    assert_eq!(ids(&r), ["compose"], "{}", r.stdout);
    assert_eq!(r.step("compose")["value"], "1 → 2");
    assert_eq!(p.running("worker"), 2);
    assert_eq!(
        r.json()["not_configured"],
        serde_json::json!(["ecs", "kubernetes"])
    );
    // Asking for another platform than the instance has is refused before anything runs.
    let r = opsctl(
        &s,
        &[
            "scale",
            "-i",
            "app",
            "worker",
            "--replicas",
            "1",
            "--on",
            "ecs",
        ],
    );
    r.code(2);
    assert_eq!(
        r.stderr.trim(),
        "error: refused: `scale` does not apply to instance app: it needs ecs (`ecs:`); app has host, compose"
    );
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
        assert_eq!(
            r.stderr.trim(),
            format!("error: refused: {msg}"),
            "{args:?}"
        );
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    // Nothing ran, so nothing was recorded.
    opsctl(&s, &["history"])
        .code(0)
        .stdout_has("no runs recorded");
    // --what names a database the instance lacks.
    s.write("opsctl.yaml", &format!("instances:\n  r:\n    redis: {{ url: \"redis://127.0.0.1:1\" }}\n    backups: {{ dir: \"{}\" }}\n", s.path().join("b").display()));
    let r = opsctl(&s, &["backup", "-i", "r", "--what", "postgres"]);
    r.code(2);
    assert_eq!(
        r.stderr.trim(),
        "error: refused: `backup` does not apply to instance r: it needs postgres (`postgres:`); r has host, backups, redis"
    );
}

#[test]
fn requires_and_needs_are_checked_when_a_runbook_loads() {
    let s = Scratch::new();
    let rb = s.write("r.yaml", "name: r\nrequires: { any: [kubernets] }\nsteps:\n  - id: a\n    needs: [redis, postgress]\n    sleep: { duration: 1ms }\n");
    let r = opsctl(&s, &["validate", rb.to_str().unwrap()]);
    r.code(2);
    r.stderr_has("unknown backend `kubernets`")
        .stderr_has("did you mean `kubernetes`?")
        .stderr_has("r.yaml:2:19");
    r.stderr_has("unknown backend `postgress`")
        .stderr_has("r.yaml:5:20");
    let rb = s.write(
        "r.yaml",
        "name: r\nrequires: [{ when: \"{{ true }}\" }]\nsteps:\n  - sleep: { duration: 1ms }\n",
    );
    opsctl(&s, &["validate", rb.to_str().unwrap()])
        .code(2)
        .stderr_has("this requirement names no backend");
    // A step that needs what the instance lacks is not run; later steps can still read it.
    let rb = s.write(
        "r.yaml",
        "name: r\nsteps:\n  - id: a\n    needs: redis\n    sleep: { duration: 1ms }\n  - id: b\n    assert: { that: \"{{ steps.a.status == 'skipped' and not run.failed }}\" }\n",
    );
    let r = opsctl(
        &s,
        &["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"],
    );
    r.code(0);
    assert_eq!(ids(&r), ["b"]);
    assert_eq!(r.json()["not_configured"], serde_json::json!(["redis"]));
}
