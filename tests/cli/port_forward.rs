//! In-cluster databases through the API server (`port_forward:` in `postgres:` and
//! `redis:`): every PostgreSQL and Redis step kind through the fake API server's
//! portforward subresource, which forwards to the real local servers; and each way it can
//! go wrong (a pod that is missing or not running, a refused port, a service without a ready
//! pod or without the port, RBAC, no Kubernetes settings, a setting that names both).
//!
//! The connection strings name hosts that do not resolve (`postgres.team-a.svc`), so a
//! step that passes went through the tunnel.

use serde_json::json;

use crate::support::Run;
use crate::support::kube::{KubeEnv, NS, pod};
use crate::support::postgres::PASSWORD;

fn status(r: &Run, id: &str) -> String {
    r.step(id)["status"].as_str().unwrap_or_default().to_string()
}

fn message(r: &Run, id: &str) -> String {
    r.step(id)["message"].as_str().unwrap_or_default().to_string()
}

/// A running pod `name` (labels `app`), ready or not, whose container has `port` named
/// `port_name`.
fn seed_pod(k: &KubeEnv, name: &str, app: &str, ready: bool, port: u16, port_name: &str) {
    k.fake.with(|c| {
        let mut p = pod(name, app, ready, None, 0);
        p["spec"]["containers"] = json!([{"name": app, "image": format!("{app}:1"), "ports": [{"name": port_name, "containerPort": port}]}]);
        c.seed("pods", p);
    });
}

fn seed_service(k: &KubeEnv, name: &str, app: &str, port: u16, target: serde_json::Value) {
    k.fake.with(|c| {
        c.seed(
            "services",
            json!({"metadata": {"name": name, "namespace": NS},
                   "spec": {"selector": {"app": app}, "ports": [{"name": "db", "port": port, "targetPort": target}]}}),
        );
    });
}

/// Maps port `port` of pod `name` to a real server on loopback.
fn map(k: &KubeEnv, name: &str, port: u16, real: u16) {
    k.fake.with(|c| {
        c.forwards.insert((NS.to_string(), name.to_string(), port), std::net::SocketAddr::from(([127, 0, 0, 1], real)));
    });
}

fn inventory(k: &KubeEnv, sections: &str) {
    k.scratch.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  team-a:\n    kubernetes: {{ kubeconfig: kubeconfig.yaml, namespace: team-a }}\n{sections}    backups: {{ dir: \"{}\" }}\n",
            k.scratch.path().join("backups").display()
        ),
    );
}

fn forwards(k: &KubeEnv, pod: &str) -> usize {
    k.fake.with(|c| c.requests.iter().filter(|q| q.contains(&format!("/pods/{pod}/portforward"))).count())
}

#[test]
fn every_postgres_step_runs_through_a_port_forward_to_a_service() {
    let Some(pg) = crate::support::postgres::shared() else { return };
    let k = KubeEnv::new();
    pg.create_db("t_portfwd");
    pg.psql("t_portfwd", "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 5000) g; ANALYZE");
    // postgres-0 is not ready: the service's ready pod is postgres-1, whose port named
    // `postgresql` is 5432.
    seed_pod(&k, "postgres-0", "postgres", false, 5432, "postgresql");
    seed_pod(&k, "postgres-1", "postgres", true, 5432, "postgresql");
    seed_service(&k, "postgres", "postgres", 5432, json!("postgresql"));
    map(&k, "postgres-1", 5432, pg.port);
    inventory(&k, "    postgres: { url: { env: PG_URL }, port_forward: { service: postgres, port: 5432 } }\n");
    let url = format!("postgres://postgres:{PASSWORD}@postgres.team-a.svc:5432/t_portfwd");
    let rb = k.scratch.write(
        "rb.yaml",
        "name: pf\nsteps:\n\
         \x20 - { id: ping, postgres.ping: {} }\n\
         \x20 - { id: connections, postgres.connections: {} }\n\
         \x20 - { id: long, postgres.long_queries: { older_than: 1h } }\n\
         \x20 - { id: terminate, postgres.terminate_long_queries: { older_than: 1h, users: [nobody_here] } }\n\
         \x20 - { id: size, postgres.size: {} }\n\
         \x20 - { id: bloat, postgres.bloat: {} }\n\
         \x20 - { id: slow, postgres.slow_queries: {} }\n\
         \x20 - { id: vacuum, postgres.vacuum: { table: public.items } }\n\
         \x20 - { id: reindex, postgres.reindex: { table: items } }\n\
         \x20 - { id: replication, postgres.replication: {} }\n\
         \x20 - { id: query, postgres.query: { sql: \"SELECT count(*) AS n FROM items\", expect: { n: 5000 } } }\n\
         \x20 - { id: backup, postgres.backup: {} }\n\
         \x20 - { id: verify, backup.verify: { id: \"{{ steps.backup.id }}\" } }\n",
    );
    let r = k.scratch.opsctl().args(["run", rb.to_str().unwrap(), "-i", "team-a", "-o", "json", "--yes"]).env("PG_URL", &url).run();
    r.code(0);
    for id in ["ping", "connections", "long", "terminate", "size", "bloat", "slow", "vacuum", "reindex", "replication", "query", "backup", "verify"] {
        assert!(["passed", "warned"].contains(&status(&r, id).as_str()), "{id}: {} — {}", status(&r, id), message(&r, id));
    }
    assert!(message(&r, "ping").contains("at postgres-1:5432 (port-forward to service postgres) answered in "), "{}", message(&r, "ping"));
    assert_eq!(r.step("query")["outputs"]["rows"][0]["n"], 5000, "{}", r.stdout);
    // The advisory lock came through the tunnel too: no warning that it could not be taken.
    assert!(!r.stderr.contains("no PostgreSQL advisory lock"), "{}", r.stderr);
    assert_eq!(forwards(&k, "postgres-0"), 0);
    assert!(forwards(&k, "postgres-1") >= 3, "one forward per connection");
    let id = r.step("backup")["outputs"]["id"].as_str().unwrap().to_string();

    // pg_restore (a program on this machine) reaches the server through a loopback port
    // that lives as long as the step.
    pg.psql("t_portfwd", "DELETE FROM items WHERE id > 10");
    let r = k.scratch.opsctl().args(["restore", "-i", "team-a", "--from", &id, "--yes", "-o", "json"]).env("PG_URL", &url).run();
    r.code(0);
    assert_eq!(pg.psql("t_portfwd", "SELECT count(*) FROM items"), "5000");
}

#[test]
fn every_redis_step_runs_through_a_port_forward_to_a_pod() {
    let Some(redis) = crate::support::redis::shared() else { return };
    let k = KubeEnv::new();
    seed_pod(&k, "redis-master-0", "redis", true, 6379, "redis");
    map(&k, "redis-master-0", 6379, redis.port);
    redis.cli(&["DEL", "opsctl:pf:q"]);
    redis.cli(&["RPUSH", "opsctl:pf:q", "a", "b", "c"]);
    inventory(&k, "    redis: { url: \"redis://redis-master.team-a.svc:6379/0\", port_forward: { pod: redis-master-0, port: 6379 } }\n");
    let r = k.run(
        "  - { id: ping, redis.ping: {} }\n\
         \x20 - { id: info, redis.info: {} }\n\
         \x20 - { id: queue, redis.queue_depth: { keys: ['opsctl:pf:q'], fail_above: 5 } }\n\
         \x20 - { id: slowlog, redis.slowlog: { slower_than: 10s, fail_above: 0 } }\n\
         \x20 - { id: backup, redis.backup: {} }\n\
         \x20 - { id: verify, backup.verify: { id: \"{{ steps.backup.id }}\" } }\n",
        &[],
    );
    r.code(0);
    for id in ["ping", "info", "queue", "slowlog", "backup", "verify"] {
        assert_eq!(status(&r, id), "passed", "{id}: {}", message(&r, id));
    }
    assert!(message(&r, "ping").contains("(master) at redis-master-0:6379 (port-forward) in "), "{}", message(&r, "ping"));
    assert_eq!(r.step("queue")["outputs"]["depths"]["opsctl:pf:q"], 3, "{}", r.stdout);
    assert!(message(&r, "verify").contains("CRC64 matches"), "{}", message(&r, "verify"));
    assert_eq!(forwards(&k, "redis-master-0"), 5, "one forward per step that connects");
}

#[test]
fn what_goes_wrong_on_the_way_is_said() {
    let k = KubeEnv::new();
    seed_pod(&k, "redis-0", "redis", true, 6379, "redis");
    seed_pod(&k, "cold-0", "cold", false, 6379, "redis");
    k.fake.with(|c| {
        let mut p = pod("pending-0", "pending", false, None, 0);
        p["status"]["phase"] = json!("Pending");
        c.seed("pods", p);
    });
    seed_service(&k, "redis", "redis", 6379, json!(6379));
    seed_service(&k, "cold", "cold", 6379, json!("redis"));
    seed_service(&k, "empty", "nothing-has-this-label", 6379, json!(6379));
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    map(&k, "redis-0", 6379, closed);
    let instance = |to: &str| format!("    redis: {{ url: \"redis://redis:6379/0\", timeout: 5s, port_forward: {to} }}\n");
    let ping = |to: &str| {
        inventory(&k, &instance(to));
        let r = k.run("  - { id: ping, redis.ping: {} }\n", &[]);
        r.code(1);
        message(&r, "ping")
    };
    let refused = ping("{ pod: redis-0, port: 6379 }");
    assert!(
        refused.starts_with("Redis at redis-0:6379 (port-forward): PING failed: port-forward to pod redis-0 port 6379: error forwarding port 6379 to pod redis-0")
            && refused.ends_with("connect: connection refused"),
        "{refused}"
    );
    assert_eq!(ping("{ pod: nope, port: 6379 }"), "pod nope (port_forward) not found in namespace team-a (context `fake`)");
    assert_eq!(ping("{ pod: pending-0, port: 6379 }"), "cannot forward to port 6379 of pod pending-0: it is Pending, not Running");
    assert_eq!(ping("{ service: redis, port: 6380 }"), "service redis has no port 6380; its ports: 6379 (db)");
    assert_eq!(
        ping("{ service: cold, port: 6379 }"),
        "service cold has no ready pod to forward to (1 match its selector app=cold, none is running and ready)"
    );
    assert_eq!(ping("{ service: empty, port: 6379 }"), "service empty has no pods (none matches its selector app=nothing-has-this-label); nothing to forward to");
    k.fake.with(|c| c.forbidden.push(("create".into(), "pods/portforward".into())));
    let forbidden = ping("{ pod: redis-0, port: 6379 }");
    assert!(forbidden.starts_with("forbidden (403): pods \"redis-0\" is forbidden: User \"opsctl\" cannot create resource \"pods/portforward\""), "{forbidden}");

    // Without Kubernetes settings there is no API server to go through.
    k.scratch.write("opsctl.yaml", &format!("instances:\n  team-a:\n{}", instance("{ pod: redis-0, port: 6379 }")));
    let r = k.run("  - { id: ping, redis.ping: {} }\n", &[]);
    r.code(1);
    assert!(message(&r, "ping").starts_with("`port_forward` goes through the Kubernetes API server, and instance team-a has no Kubernetes settings"), "{}", message(&r, "ping"));

    // Both a pod and a service: refused where it is written.
    inventory(&k, &instance("{ pod: redis-0, service: redis, port: 6379 }"));
    let r = k.run("  - { id: ping, redis.ping: {} }\n", &[]);
    r.code(2);
    assert!(r.stderr.contains("`port_forward` takes one of `pod` and `service`, not both"), "{}", r.stderr);
    assert!(r.stderr.contains("opsctl.yaml:4:"), "{}", r.stderr);
}

#[test]
fn pg_dump_and_the_driver_say_why_the_tunnel_failed() {
    let Some(pg) = crate::support::postgres::shared() else { return };
    let k = KubeEnv::new();
    pg.create_db("t_portfwd_gone");
    seed_pod(&k, "postgres-0", "postgres", true, 5432, "postgresql");
    map(&k, "postgres-0", 5432, pg.port);
    inventory(&k, "    postgres: { url: { env: PG_URL }, port_forward: { pod: postgres-0, port: 5432 } }\n");
    let url = format!("postgres://postgres:{PASSWORD}@postgres.team-a.svc:5432/t_portfwd_gone");
    let run = |steps: &str| {
        let rb = k.scratch.write("rb.yaml", &format!("name: pf\nsteps:\n{steps}"));
        k.scratch.opsctl().args(["run", rb.to_str().unwrap(), "-i", "team-a", "-o", "json", "--yes"]).env("PG_URL", &url).run()
    };
    // Two forwards go through (the advisory lock, the catalog read); pg_dump's own
    // connection is refused inside the pod, and pg_dump's failure says why.
    k.fake.with(|c| c.forward_budget = Some(2));
    let r = run("  - { id: backup, postgres.backup: {} }\n");
    r.code(1);
    let m = message(&r, "backup");
    assert!(m.starts_with("pg_dump of postgres/t_portfwd_gone at postgres-0:5432 (port-forward) failed, no backup was kept: "), "{m}");
    assert!(m.contains("port-forward to pod postgres-0 port 5432: error forwarding port 5432 to pod postgres-0") && m.ends_with("connect: connection refused"), "{m}");
    assert!(std::fs::read_dir(k.scratch.path().join("backups")).map_or(0, |d| d.count()) <= 1, "no backup kept");
    // The driver's connection, refused the same way.
    let r = run("  - { id: ping, postgres.ping: {} }\n");
    r.code(1);
    let m = message(&r, "ping");
    assert!(m.starts_with("cannot connect to PostgreSQL at postgres-0:5432 (port-forward): ") && m.ends_with("connect: connection refused"), "{m}");
}
