//! The Docker Compose backend against the real Docker engine and whichever compose CLI
//! is installed.

use std::time::{Duration, Instant};

use crate::support::compose::Project;
use crate::support::{Run, Scratch};

/// A project with one service of each kind the tests need:
/// - web: busybox httpd with a healthcheck; reads web.env
/// - noisy: logs an error line and an info line every 0.2s
/// - oneshot: prints and exits 3
/// - sick: a healthcheck that always fails
/// - gate: healthy only while MODE=good in gate.env
const PROJECT: &str = r#"version: "2.4"
services:
  web:
    image: {image}
    command: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
    env_file: [web.env]
    stop_grace_period: 1s
    healthcheck: { test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"], interval: 1s, timeout: 2s, retries: 3 }
  noisy:
    image: {image}
    command: ["sh", "-c", "i=0; while true; do i=$$((i+1)); echo \"ERROR request $$i failed\"; echo \"info request $$i ok\"; sleep 0.2; done"]
    stop_signal: SIGKILL
  oneshot:
    image: {image}
    command: ["sh", "-c", "echo done; exit 3"]
    restart: "no"
  sick:
    image: {image}
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    healthcheck: { test: ["CMD", "false"], interval: 1s, retries: 1 }
  gate:
    image: {image}
    command: ["sleep", "3600"]
    env_file: [gate.env]
    stop_signal: SIGKILL
    healthcheck: { test: ["CMD-SHELL", "test \"$$MODE\" = good"], interval: 1s, timeout: 2s, retries: 1 }
"#;

/// The project, up, with web and gate healthy and sick unhealthy.
pub(crate) fn started(s: &Scratch, test: &str) -> Option<Project> {
    s.write("web.env", "# web\nSECRET_TOKEN=initial-token-value\nOTHER=keep-me\n");
    s.write("gate.env", "MODE=good\n");
    let p = Project::new(s, test, PROJECT)?;
    p.compose(&["up", "-d"]);
    p.inventory(s, "");
    wait_for(&p, "web and gate healthy, sick unhealthy", |p| {
        health(p, "web") == "healthy" && health(p, "gate") == "healthy" && health(p, "sick") == "unhealthy"
    });
    Some(p)
}

fn health(p: &Project, service: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label=com.docker.compose.project={}", p.name)])
        .args(["--filter", &format!("label=com.docker.compose.service={service}"), "--format", "{{.Status}}"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    for h in ["unhealthy", "healthy", "health: starting"] {
        if status.contains(h) {
            return h.to_string();
        }
    }
    status.trim().to_string()
}

/// The snapshot line of a service's (first) container; compose v1 names it
/// `project_web_1`, v2 `project-web-1`.
fn line_of(snapshot: &[String], service: &str) -> Option<String> {
    snapshot.iter().find(|l| l.contains(&format!("_{service}_")) || l.contains(&format!("-{service}-"))).cloned()
}

#[track_caller]
fn wait_for(p: &Project, what: &str, f: impl Fn(&Project) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f(p) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(s: &Scratch, steps: &str, extra: &[&str]) -> Run {
    let rb = s.write("rb.yaml", &format!("name: t\nsteps:\n{steps}"));
    s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "app", "-o", "json"]).args(extra).run()
}

#[test]
fn services_healthy_reports_each_kind_of_trouble() {
    let s = Scratch::new();
    let Some(_p) = started(&s, "health") else { return };
    let all = run(&s, "  - id: h\n    compose.services_healthy: {}\n", &[]);
    all.code(1);
    let msg = all.step("h")["message"].as_str().unwrap().to_string();
    assert!(msg.contains("oneshot: none running (") && msg.contains("exited (3)"), "{msg}");
    assert!(msg.contains("sick: unhealthy ("), "{msg}");
    assert!(!msg.contains("web:"), "{msg}");
    let h = all.step("h");
    assert_eq!(h["outputs"]["services"]["web"]["healthy"], 1);
    assert_eq!(h["value"], "3/5 ready");

    run(&s, "  - compose.services_healthy: { services: [web, noisy, gate] }\n", &[]).code(0);
    run(&s, "  - compose.services_healthy: { ignore: [oneshot, sick] }\n", &[]).code(0);
    let replicas = run(&s, "  - id: h\n    compose.services_healthy: { services: [web], replicas: { web: 2 } }\n", &[]);
    replicas.code(1);
    assert_eq!(replicas.step("h")["message"], "web: 1 running, expected 2");
    let unknown = run(&s, "  - id: h\n    compose.services_healthy: { services: [wbe] }\n", &[]);
    unknown.code(1);
    assert_eq!(unknown.step("h")["message"], "service `wbe` is not in the compose files; did you mean `web`? (services: web, noisy, oneshot, sick, gate)");
}

#[test]
fn scale_up_and_down_with_a_plan() {
    let s = Scratch::new();
    let Some(p) = started(&s, "scale") else { return };
    let plan = run(&s, "  - id: sc\n    compose.scale: { service: web, replicas: 3 }\n", &["--dry-run"]);
    assert_eq!(plan.step("sc")["message"], "would scale web from 1 to 3 running containers");
    assert_eq!(p.running("web"), 1);
    let up = run(&s, "  - id: sc\n    compose.scale: { service: web, replicas: 3 }\n", &[]);
    up.code(0);
    assert_eq!(up.step("sc")["outputs"]["previous"], 1);
    assert_eq!(p.running("web"), 3);
    run(&s, "  - compose.services_healthy: { services: [web], replicas: { web: 3 } }\n", &[]).code(0);
    let down = run(&s, "  - id: sc\n    compose.scale: { service: web, replicas: 1 }\n", &[]);
    down.code(0);
    assert_eq!(down.step("sc")["value"], "3 → 1");
    assert_eq!(p.running("web"), 1);
}

#[test]
fn restart_waits_until_healthy_again_and_stop_start_up_work() {
    let s = Scratch::new();
    let Some(p) = started(&s, "restart") else { return };
    let before = p.snapshot();
    let r = run(&s, "  - id: r\n    compose.restart: { services: [web], grace: 1s, wait_timeout: 60s }\n", &[]);
    r.code(0);
    assert!(r.step("r")["message"].as_str().unwrap().starts_with("restarted 1 container(s): web: 1/1 running (healthy)"), "{}", r.stdout);
    assert_eq!(health(&p, "web"), "healthy");
    assert!(line_of(&before, "web").is_some(), "{before:?}");

    run(&s, "  - compose.stop: { services: [noisy], grace: 1s }\n", &[]).code(0);
    assert_eq!(p.running("noisy"), 0);
    run(&s, "  - compose.start: { services: [noisy] }\n", &[]).code(0);
    assert_eq!(p.running("noisy"), 1);
    run(&s, "  - compose.up: { services: [web, gate] }\n", &[]).code(0);
    // Waiting for something that never gets healthy times out with the state.
    let never = run(&s, "  - id: u\n    compose.up: { services: [sick], wait_timeout: 2s }\n", &[]);
    never.code(1);
    let msg = never.step("u")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("services ready did not happen within 2s:") && msg.contains("running (unhealthy)"), "{msg}");
}

#[test]
fn logs_count_matching_lines_with_samples() {
    let s = Scratch::new();
    let Some(_p) = started(&s, "logs") else { return };
    std::thread::sleep(Duration::from_millis(800));
    let r = run(&s, "  - id: l\n    compose.logs: { service: noisy, pattern: \"(?i)error\", since: 10m, warn_above: 0 }\n", &[]);
    r.code(0);
    let l = r.step("l");
    assert_eq!(l["status"], "warned");
    let (matches, lines) = (l["outputs"]["matches"].as_u64().unwrap(), l["outputs"]["lines"].as_u64().unwrap());
    assert!(matches >= 2 && lines >= 2 * matches - 1, "{l}");
    assert!(l["outputs"]["samples"][0].as_str().unwrap().starts_with("ERROR request 1 failed"), "{l}");
    run(&s, "  - compose.logs: { service: noisy, pattern: ERROR, fail_above: 0 }\n", &[]).code(1);
    let tail = run(&s, "  - id: l\n    compose.logs: { service: noisy, pattern: ERROR, tail: 2 }\n", &[]);
    assert_eq!(tail.step("l")["outputs"]["lines"], 2);
    let none = run(&s, "  - id: l\n    compose.logs: { service: web, pattern: panic, fail_above: 0 }\n", &[]);
    none.code(0);
    assert_eq!(none.step("l")["outputs"]["matches"], 0);
}

#[test]
fn stats_and_exec_and_disk() {
    let s = Scratch::new();
    let Some(_p) = started(&s, "stats") else { return };
    let r = run(&s, "  - id: st\n    compose.stats: { services: [web, noisy], warn_cpu: 1000 }\n", &[]);
    r.code(0);
    let web = &r.step("st")["outputs"]["services"]["web"];
    assert!(web["memory_bytes"].as_u64().unwrap() > 0, "{web}");
    run(&s, "  - compose.stats: { services: [web], warn_memory: 0, fail_memory: 0.0000001 }\n", &[]).code(1);

    let ex = run(&s, "  - id: e\n    compose.exec: { service: web, argv: [cat, /var/www/index.html], expect_stdout: \"opsctl test\", effect: read }\n", &[]);
    ex.code(0);
    assert_eq!(ex.step("e")["outputs"]["stdout"], "<h1>opsctl test</h1>\n");
    let bad = run(&s, "  - id: e\n    compose.exec: { service: web, argv: [sh, -c, 'echo nope >&2; exit 4'], effect: read }\n", &[]);
    bad.code(1);
    assert_eq!(bad.step("e")["message"], "exit 4, expected 0: nope");
    // A secret reaches the program through docker's environment: its length comes back, not it.
    let rb = s.write("rb.yaml", "name: t\nsteps:\n  - id: e\n    compose.exec: { service: web, argv: [sh, -c, 'echo ${#TOKEN}'], env: { TOKEN: { env: EXEC_TOKEN } }, effect: read }\n");
    let env = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "app", "-o", "json"]).env("EXEC_TOKEN", "twelve-chars").run();
    env.code(0);
    assert_eq!(env.step("e")["outputs"]["stdout"], "12\n");
    let none = run(&s, "  - id: e\n    compose.exec: { service: oneshot, argv: [true], effect: read }\n", &[]);
    assert_eq!(none.step("e")["message"], "service oneshot has no running container");

    let d = run(&s, "  - id: d\n    docker.disk: { warn_bytes: 1B, fail_bytes: 100TB, warn_percent: 100, fail_percent: 100 }\n", &[]);
    d.code(0);
    let disk = d.step("d");
    assert_eq!(disk["status"], "warned");
    assert!(disk["outputs"]["images_bytes"].as_u64().unwrap() > 0, "{disk}");
    run(&s, "  - docker.disk: { fail_bytes: 1B }\n", &[]).code(1);
}

#[test]
fn env_rotation_recreates_services_and_keeps_a_private_backup() {
    let s = Scratch::new();
    let Some(p) = started(&s, "rotate") else { return };
    let web_before = line_of(&p.snapshot(), "web").unwrap();
    let r = run(&s, "  - id: rot\n    compose.env_rotate: { file: web.env, keys: [SECRET_TOKEN] }\n", &[]);
    r.code(0);
    let text = std::fs::read_to_string(s.path().join("web.env")).unwrap();
    let new = text.lines().find_map(|l| l.strip_prefix("SECRET_TOKEN=")).unwrap().to_string();
    assert_eq!(new.len(), 32);
    assert_ne!(new, "initial-token-value");
    assert!(text.starts_with("# web\n") && text.contains("OTHER=keep-me"), "{text}");
    assert!(!r.stdout.contains(&new) && !r.stderr.contains(&new), "the new value was printed");
    // Relative, as the step was given the file: relative to opsctl's working directory.
    let backup = s.path().join(r.step("rot")["outputs"]["backup"].as_str().unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&backup).unwrap().contains("SECRET_TOKEN=initial-token-value"));
    assert_eq!(r.step("rot")["outputs"]["services"], serde_json::json!(["web"]));
    let web_after = line_of(&p.snapshot(), "web").unwrap();
    assert_ne!(web_before.split(' ').next(), web_after.split(' ').next(), "web was not recreated");
    assert_eq!(health(&p, "web"), "healthy");
    let seen = std::process::Command::new("docker").args(["exec", web_after.split(' ').next().unwrap(), "sh", "-c", "echo $SECRET_TOKEN"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), new, "the container did not get the new value");
}

#[test]
fn env_rotation_rolls_back_when_health_fails() {
    let s = Scratch::new();
    let Some(p) = started(&s, "rollback") else { return };
    let original = std::fs::read_to_string(s.path().join("gate.env")).unwrap();
    let r = run(&s, "  - id: rot\n    compose.env_rotate: { file: gate.env, keys: [MODE], wait_timeout: 6s }\n", &[]);
    r.code(1);
    let msg = r.step("rot")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("rotation rolled back: the recreated services healthy did not happen within 6s"), "{msg}");
    assert!(msg.ends_with("the old file is back and the services are healthy with it"), "{msg}");
    assert_eq!(std::fs::read_to_string(s.path().join("gate.env")).unwrap(), original);
    assert_eq!(health(&p, "gate"), "healthy");
}

#[test]
fn engine_and_file_problems_are_clear() {
    let s = Scratch::new();
    let Some(p) = Project::new(&s, "errors", "services:\n  web: { image: {image} }\n") else { return };
    p.inventory(&s, "");
    let step = "  - id: h\n    compose.services_healthy: {}\n";
    let rb = s.write("rb.yaml", &format!("name: t\nsteps:\n{step}"));
    let no_engine = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "app", "-o", "json"]).env("DOCKER_HOST", "unix:///nonexistent/docker.sock").run();
    no_engine.code(1);
    assert_eq!(
        no_engine.step("h")["message"],
        "cannot reach the Docker engine at unix:///nonexistent/docker.sock: no such file or directory (is Docker running? DOCKER_HOST selects another engine)"
    );
    std::fs::remove_file(&p.file).unwrap();
    let missing = run(&s, step, &[]);
    // Paths are reported as the inventory gives them (relative to it).
    assert_eq!(missing.step("h")["message"], "cannot read compose file docker-compose.yml: no such file or directory");
    s.write("docker-compose.yml", "services:\n  web: { image: [unclosed\n");
    let invalid = run(&s, step, &[]);
    let msg = invalid.step("h")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("docker-compose.yml:3:1: invalid YAML"), "{msg}");
    s.write("docker-compose.yml", "version: \"2.4\"\nservices:\n  web: { image: {image}, bogus_key: 1 }\n".replace("{image}", crate::support::compose::BUSYBOX).as_str());
    let rejected = run(&s, "  - id: u\n    compose.up: {}\n", &[]);
    rejected.code(1);
    let msg = rejected.step("u")["message"].as_str().unwrap().to_string();
    assert!(msg.contains("failed") && msg.contains("bogus_key"), "{msg}");
}

#[test]
fn postgres_backup_and_restore_run_inside_a_compose_service() {
    let Some(pg) = crate::support::postgres::shared() else { return };
    let s = Scratch::new();
    let Some(p) = Project::new(&s, "pgexec", "version: \"2.4\"\nservices:\n  db:\n    image: {pgclient}\n    command: [sleep, \"3600\"]\n    network_mode: host\n    stop_signal: SIGKILL\n") else { return };
    p.compose(&["up", "-d"]);
    pg.create_db("t_pgexec");
    pg.psql("t_pgexec", "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 4000) g; ANALYZE");
    s.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  app:\n    compose: {{ files: [docker-compose.yml], project: {} }}\n    postgres: {{ url: {{ env: PG_URL }}, exec: {{ compose_service: db, port: {} }} }}\n    backups: {{ dir: \"{}\" }}\n",
            p.name,
            pg.port,
            s.path().join("backups").display()
        ),
    );
    let url = pg.url("t_pgexec");
    let b = s.opsctl().args(["backup", "-i", "app", "-o", "json"]).env("PG_URL", &url).run();
    b.code(0);
    let id = b.step("postgres")["outputs"]["id"].as_str().unwrap().to_string();
    assert!(b.step("verify")["message"].as_str().unwrap().contains("checksums match"));
    let plan = s.opsctl().args(["plan", "backup", "-i", "app", "-o", "json"]).env("PG_URL", &url).run();
    assert!(plan.step("postgres")["message"].as_str().unwrap().contains("on compose service db"), "{}", plan.stdout);
    pg.psql("t_pgexec", "DELETE FROM items WHERE id > 100");
    let r = s.opsctl().args(["restore", "-i", "app", "--from", &id, "--yes", "-o", "json"]).env("PG_URL", &url).run();
    r.code(0);
    assert_eq!(pg.psql("t_pgexec", "SELECT count(*) FROM items"), "4000");
}
