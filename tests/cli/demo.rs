//! The demo (`scripts/demo.sh`): two reference platforms on what this machine runs — real
//! PostgreSQL, Redis, Alertmanager and a Docker Compose project; Kubernetes is the test
//! suite's fake API server — walked through check → routine daily → gate → a deploy of a
//! broken image (verification fails, automatic rollback) → gate again → a restore drill.
//! Under `cargo test` it runs with its assertions, so it cannot rot; `OPSCTL_DEMO=1` (what
//! `scripts/demo.sh` sets) prints every table as an operator would see it. A backend this
//! machine lacks skips its platform, saying why (outside CI).

use serde_json::json;

use crate::support::compose::Project;
use crate::support::kube::{KubeEnv, NS, pod};
use crate::support::postgres::PASSWORD;
use crate::support::{Run, Scratch};

fn showing() -> bool {
    std::env::var_os("OPSCTL_DEMO").is_some()
}

/// Runs `opsctl ARGS` (with `env`): the table on standard output, printed as a terminal
/// shows it when demoing, and the JSON document into a file, returned; checks the exit code.
#[track_caller]
fn step(s: &Scratch, env: &[(&str, String)], args: &[&str], expect: i32, say: &str) -> serde_json::Value {
    let json = s.path().join("last.json");
    let _ = std::fs::remove_file(&json);
    let mut o = s.opsctl().args(args).args(["--color", "never", "--output", "table"]).args([format!("--output=json={}", json.display())]);
    for (k, v) in env {
        o = o.env(k, v);
    }
    let r: Run = o.run();
    if showing() {
        println!("\n# {say}\n$ opsctl {}\n{}{}", args.join(" "), r.stdout, r.stderr);
    }
    assert_eq!(r.code, expect, "opsctl {}: {}\n{}", args.join(" "), r.stdout, r.stderr);
    std::fs::read_to_string(&json).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// `check`'s exit code here: 0, or 1 only when this (test) machine is too busy for its own
/// `host.load`/`host.memory`/`host.disk` — every other step passes or warns.
#[track_caller]
fn check_code(s: &Scratch, env: &[(&str, String)], instance: &str) -> i32 {
    let mut o = s.opsctl().args(["check", "--instance", instance, "-o", "json"]);
    for (k, v) in env {
        o = o.env(k, v);
    }
    let r = o.run();
    crate::procedures::passed_but_for_the_machine(&r);
    r.code
}

/// Loyalty: one host, Docker Compose, PostgreSQL, Redis.
#[test]
fn demo_loyalty_on_a_compose_host() {
    let Some(pg) = crate::support::postgres::shared() else { return };
    let Some(redis) = crate::support::redis::shared() else { return };
    let s = Scratch::new();
    s.write(".env", "API_IMAGE=opsctl-test-busybox:1\n");
    let Some(p) = Project::new(&s, "demo-loyalty", crate::procedures::HOST) else { return };
    p.compose(&["up", "-d"]);
    pg.create_db("demo_loyalty");
    pg.psql("demo_loyalty", "CREATE TABLE members (id int PRIMARY KEY, points int); INSERT INTO members SELECT g, g * 10 FROM generate_series(1, 2000) g; ANALYZE");
    s.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  prod:\n    labels: {{ platform: loyalty }}\n    compose: {{ files: [docker-compose.yml], project: {}, env_file: .env }}\n    postgres: {{ url: {{ env: LOYALTY_DATABASE_URL }} }}\n    redis: {{ url: {{ env: LOYALTY_REDIS_URL }} }}\n    backups: {{ dir: \"{}\", keep_last: 3 }}\n",
            p.name,
            s.path().join("backups").display()
        ),
    );
    let env = [
        ("LOYALTY_DATABASE_URL", pg.url("demo_loyalty")),
        ("LOYALTY_REDIS_URL", format!("redis://opsctl:opsctl-test-secret@127.0.0.1:{}/0", redis.port)),
    ];
    let healthy = || {
        let out = std::process::Command::new("docker")
            .args(["ps", "--filter", &format!("label=com.docker.compose.project={}", p.name), "--filter", "label=com.docker.compose.service=api", "--format", "{{.Status}}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("(healthy)")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !healthy() {
        assert!(std::time::Instant::now() < deadline, "the demo's api never got healthy");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    step(&s, &env, &["backup", "--instance", "prod"], 0, "last night's backup (PostgreSQL and Redis, checksummed, verified)");
    let code = check_code(&s, &env, "prod");
    step(&s, &env, &["check", "--instance", "prod"], code, "the morning check: only what this host has");
    let daily = step(&s, &env, &["routine", "daily", "--instance", "prod"], code, "the daily routine: check, backup, log review");
    assert_eq!(daily["runs"].as_array().unwrap().len(), 3);
    step(&s, &env, &["gate", "--instance", "prod"], 0, "the pre-deploy gate CI runs");
    let bad = step(
        &s,
        &env,
        &["deploy", "--instance", "prod", "api", "--image", "opsctl-test-busybox:broken", "--watch", "1s", "--timeout", "8s", "--no-gate"],
        1,
        "a deploy of a broken image: it never gets healthy, so it is rolled back",
    );
    let run = &bad["runs"][0];
    let rolled = run["steps"].as_array().unwrap().iter().find(|x| x["id"] == "rollback_compose").unwrap();
    assert_eq!(rolled["status"], "passed");
    assert_eq!(std::fs::read_to_string(s.path().join(".env")).unwrap().lines().next(), Some("API_IMAGE=opsctl-test-busybox:1"));
    step(&s, &env, &["gate", "--instance", "prod"], 0, "the gate again: the rollback left it healthy");
    let drill = step(&s, &env, &["routine", "monthly", "--instance", "prod", "--yes"], 0, "the monthly restore drill: a scratch database, RTO and RPO, then retention");
    let steps = drill["runs"][0]["steps"].clone();
    assert!(steps[0]["outputs"]["rto_seconds"].as_f64().is_some(), "{steps}");
}

/// Go Coffee: a Kubernetes tenant (the fake API server) with PostgreSQL and Redis in pods
/// (forwarded to the real local servers) and a real Alertmanager.
#[test]
fn demo_go_coffee_on_a_kubernetes_tenant() {
    let Some(pg) = crate::support::postgres::shared() else { return };
    let Some(redis) = crate::support::redis::shared() else { return };
    let Some(am) = crate::support::prometheus::alertmanager() else { return };
    pg.create_db("demo_go_coffee");
    pg.psql("demo_go_coffee", "CREATE TABLE orders (id int PRIMARY KEY, total numeric); INSERT INTO orders SELECT g, g FROM generate_series(1, 3000) g; ANALYZE");
    let k = KubeEnv::new();
    k.fake.with(|c| c.crashing_images.push("broken".into()));
    k.deployment("coffee-service", 2, "go-coffee/backend:v1.2.3");
    k.fake.with(|c| {
        c.seed("services", json!({"metadata": {"name": "coffee-service", "namespace": NS}, "spec": {"selector": {"app": "coffee-service"}, "ports": [{"port": 80, "targetPort": 8080}]}}));
        c.seed("ingresses", json!({"metadata": {"name": "coffee", "namespace": NS}, "spec": {"rules": [{"host": "api.go-coffee.test"}]}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}}));
        for (name, app, port, real) in [("postgres-primary-0", "postgres", 5432, pg.port), ("redis-0", "redis", 6379, redis.port)] {
            let mut p = pod(name, app, true, None, 0);
            p["spec"]["containers"] = json!([{"name": app, "image": format!("{app}:1"), "ports": [{"containerPort": port}]}]);
            c.seed("pods", p);
            c.forwards.insert((NS.to_string(), name.to_string(), port), std::net::SocketAddr::from(([127, 0, 0, 1], real)));
        }
    });
    k.scratch.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  production:\n    labels: {{ platform: go-coffee }}\n    kubernetes: {{ kubeconfig: kubeconfig.yaml, namespace: {NS} }}\n    postgres: {{ url: {{ env: GO_COFFEE_DATABASE_URL }}, port_forward: {{ pod: postgres-primary-0, port: 5432 }} }}\n    redis: {{ url: {{ env: GO_COFFEE_REDIS_URL }}, port_forward: {{ pod: redis-0, port: 6379 }} }}\n    alertmanager: {{ url: \"{}\", matchers: ['namespace=\"demo-go-coffee\"'] }}\n    backups: {{ dir: \"{}\", keep_last: 3 }}\n",
            am.url(),
            k.scratch.path().join("backups").display()
        ),
    );
    let env = [
        ("GO_COFFEE_DATABASE_URL", format!("postgres://postgres:{PASSWORD}@postgres-primary.{NS}.svc:5432/demo_go_coffee")),
        ("GO_COFFEE_REDIS_URL", "redis://opsctl:opsctl-test-secret@redis-0.redis:6379/0".to_string()),
    ];
    let s = &k.scratch;
    step(s, &env, &["backup", "--instance", "production"], 0, "last night's backup, through the API server's port-forwarding");
    let code = check_code(s, &env, "production");
    step(s, &env, &["check", "--instance", "production"], code, "the morning check of the tenant");
    step(s, &env, &["routine", "daily", "--instance", "production"], code, "the daily routine");
    step(s, &env, &["gate", "--instance", "production"], 0, "the pre-deploy gate");
    let bad = step(
        s,
        &env,
        &["deploy", "--instance", "production", "deployment/coffee-service", "--image", "go-coffee/backend:broken", "--watch", "1s", "--timeout", "3s"],
        1,
        "a deploy of a crash-looping image: the rollout never completes, so it is undone",
    );
    let deploy = bad["runs"].as_array().unwrap().iter().find(|r| r["runbook"] == "deploy").cloned().unwrap();
    assert!(deploy["steps"].as_array().unwrap().iter().any(|x| x["id"] == "rollback_kubernetes" && x["status"] == "passed"), "{deploy}");
    let image = k.get("deployments", "coffee-service")["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image, "go-coffee/backend:v1.2.3");
    step(s, &env, &["gate", "--instance", "production"], 0, "the gate again");
    step(s, &env, &["run", "restore-drill", "--instance", "production"], 0, "the restore drill: the newest backup into a scratch database, through the tunnel");
    step(s, &env, &["triage", "--instance", "production"], 0, "and the page an on-call would read");
}
