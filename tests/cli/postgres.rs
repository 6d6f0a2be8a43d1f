//! The PostgreSQL backend against real servers: every step kind on real catalog data,
//! backup and restore round trips, refusals, crashes, dry runs and locks.

use std::time::Duration;

use crate::support::postgres::{self, Cluster, PASSWORD, eventually};
use crate::support::{Run, Scratch};

/// A scratch directory with an inventory whose instance `pg` points at `db` through
/// `$PG_URL`, with a backup store; plus the shared cluster. `None` when PostgreSQL is
/// missing outside CI.
fn setup(db: &str) -> Option<(Scratch, &'static Cluster)> {
    let pg = postgres::shared()?;
    pg.create_db(db);
    let s = Scratch::new();
    inventory(&s, "");
    Some((s, pg))
}

fn inventory(s: &Scratch, extra: &str) {
    s.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  pg:\n    postgres: {{ url: {{ env: PG_URL }}{extra} }}\n    backups: {{ dir: \"{}\", keep_last: 2 }}\n",
            s.path().join("backups").display()
        ),
    );
}

fn run(s: &Scratch, pg: &Cluster, db: &str, steps: &str, extra: &[&str]) -> Run {
    let rb = s.write("rb.yaml", &format!("name: t\nsteps:\n{steps}"));
    s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "pg", "-o", "json"]).args(extra).env("PG_URL", &pg.url(db)).run()
}

fn cmd(s: &Scratch, pg: &Cluster, db: &str, args: &[&str]) -> Run {
    s.opsctl().args(args).env("PG_URL", &pg.url(db)).run()
}

/// A login role for sessions a test owns, so it never touches other tests' sessions.
fn role(pg: &Cluster, name: &str) {
    pg.psql(
        "postgres",
        &format!("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'; END IF; END $$"),
    );
}

fn count(pg: &Cluster, db: &str, sql: &str) -> i64 {
    pg.psql(db, sql).parse().unwrap_or_else(|_| panic!("not a number from {sql}"))
}

#[test]
fn ping_reports_version_and_latency_thresholds() {
    let Some((s, pg)) = setup("t_ping") else { return };
    let r = run(&s, pg, "t_ping", "  - id: p\n    postgres.ping: { warn_latency: 10s }\n", &[]);
    r.code(0);
    let p = r.step("p");
    assert!(p["outputs"]["server_version"].as_str().unwrap().starts_with(&pg.major.to_string()));
    assert_eq!(p["outputs"]["in_recovery"], false);
    assert_eq!(p["outputs"]["database"], "t_ping");
    let r = run(&s, pg, "t_ping", "  - id: p\n    postgres.ping: { warn_latency: 1ms, fail_latency: 10s }\n", &[]);
    assert_eq!(r.step("p")["status"], "warned");
    let r = run(&s, pg, "t_ping", "  - id: p\n    postgres.ping: { fail_latency: 1ms }\n", &[]);
    r.code(1);
}

#[test]
fn connection_errors_are_clear() {
    let Some((s, pg)) = setup("t_connerr") else { return };
    let port = crate::support::server::closed_port();
    let step = "  - id: p\n    postgres.ping: {}\n";
    let refused = s
        .opsctl()
        .args(["run", s.write("rb.yaml", &format!("name: t\nsteps:\n{step}")).to_str().unwrap(), "-i", "pg", "-o", "json"])
        .env("PG_URL", &format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/x"))
        .run();
    refused.code(1);
    assert_eq!(refused.step("p")["message"], format!("cannot connect to PostgreSQL at 127.0.0.1:{port}: connection refused"));
    assert_eq!(refused.step("p")["error_class"], "unavailable");

    let bad_pw = s.opsctl().args(["run", "rb.yaml", "-i", "pg", "-o", "json"]).env("PG_URL", &format!("postgres://postgres:wrong@127.0.0.1:{}/t_connerr", pg.port)).run();
    bad_pw.code(1);
    assert_eq!(bad_pw.step("p")["message"], format!("authentication failed for user \"postgres\" at 127.0.0.1:{}: check the password", pg.port));
    assert!(!bad_pw.stdout.contains("wrong"), "the password leaked: {}", bad_pw.stdout);

    let malformed = s.opsctl().args(["run", "rb.yaml", "-i", "pg", "-o", "json"]).env("PG_URL", "host=127.0.0.1 port").run();
    malformed.code(1);
    assert_eq!(malformed.step("p")["message"], "postgres url in env:PG_URL: expected `key=value`, found `port` without a value");

    let no_db = run(&s, pg, "nope_db", step, &[]);
    no_db.code(1);
    assert_eq!(no_db.step("p")["message"], format!("database \"nope_db\" does not exist at 127.0.0.1:{}", pg.port));

    // The PG* environment is honoured when there is no connection string.
    s.write("opsctl.yaml", "instances:\n  pg:\n    postgres: { database: t_connerr }\n");
    let env = s
        .opsctl()
        .args(["run", "rb.yaml", "-i", "pg", "-o", "json"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &pg.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "disable")
        .run();
    env.code(0);
    assert_eq!(env.step("p")["outputs"]["database"], "t_connerr");
}

#[test]
fn connections_count_states_against_max_connections() {
    let Some((s, pg)) = setup("t_conns") else { return };
    let _idle = pg.background("t_conns", "postgres", "SELECT 1;");
    let _in_tx = pg.background("t_conns", "postgres", "BEGIN; SELECT 1;");
    eventually("two sessions on t_conns", || count(pg, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = 't_conns'") >= 2);
    let r = run(&s, pg, "t_conns", "  - id: c\n    postgres.connections: {}\n", &[]);
    r.code(0);
    let o = &r.step("c")["outputs"];
    assert!(o["by_database"]["t_conns"].as_i64().unwrap() >= 2, "{o}");
    assert!(o["idle_in_transaction"].as_i64().unwrap() >= 1, "{o}");
    assert_eq!(o["max_connections"], 80);
    let r = run(&s, pg, "t_conns", "  - id: c\n    postgres.connections: { warn_ratio: 0.0001, fail_ratio: 0.001 }\n", &[]);
    r.code(1);
    assert_eq!(r.step("c")["threshold"], "warn > 0%, fail > 0%");
}

#[test]
fn long_queries_and_idle_transactions_are_found() {
    let Some((s, pg)) = setup("t_long") else { return };
    role(pg, "lq_role");
    let _sleep = pg.background("t_long", "lq_role", "SELECT pg_sleep(120);");
    let _idle_tx = pg.background("t_long", "lq_role", "BEGIN; SELECT 1;");
    std::thread::sleep(Duration::from_millis(1300));
    let r = run(&s, pg, "t_long", "  - id: l\n    postgres.long_queries: { older_than: 1s }\n", &[]);
    r.code(0);
    let l = r.step("l");
    assert_eq!(l["status"], "warned");
    let mine: Vec<&serde_json::Value> = l["outputs"]["queries"].as_array().unwrap().iter().filter(|q| q["user"] == "lq_role").collect();
    let states: Vec<&str> = mine.iter().map(|q| q["state"].as_str().unwrap()).collect();
    assert!(states.contains(&"active") && states.contains(&"idle in transaction"), "{l}");
    assert!(mine.iter().any(|q| q["query"].as_str().unwrap().contains("pg_sleep")));
    let r = run(&s, pg, "t_long", "  - id: l\n    postgres.long_queries: { older_than: 1s, states: [active], fail_above: 0 }\n", &[]);
    r.code(1);
    let r = run(&s, pg, "t_long", "  - id: l\n    postgres.long_queries: { older_than: 1h }\n", &[]);
    r.code(0);
    assert_eq!(r.step("l")["status"], "passed");
}

#[test]
fn terminate_lists_in_a_dry_run_then_terminates() {
    let Some((s, pg)) = setup("t_term") else { return };
    role(pg, "term_role");
    let _sleep = pg.background("t_term", "term_role", "SELECT pg_sleep(300);");
    let alive = || count(pg, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE usename = 'term_role' AND state = 'active'");
    eventually("the sleeping session", || alive() == 1);
    std::thread::sleep(Duration::from_millis(1200));
    let pid = pg.psql("postgres", "SELECT pid FROM pg_stat_activity WHERE usename = 'term_role'");
    let step = "  - id: t\n    postgres.terminate_long_queries: { older_than: 1s, users: [term_role] }\n";
    let plan = run(&s, pg, "t_term", step, &["--dry-run"]);
    plan.code(0);
    let msg = plan.step("t")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with(&format!("would terminate 1: pid {pid} term_role@t_term active for")), "{msg}");
    assert_eq!(alive(), 1, "the dry run terminated a session");
    let done = run(&s, pg, "t_term", step, &[]);
    done.code(0);
    assert_eq!(done.step("t")["outputs"]["count"], 1);
    eventually("the session to end", || alive() == 0);
}

#[test]
fn size_lists_the_largest_tables() {
    let Some((s, pg)) = setup("t_size") else { return };
    pg.psql("t_size", "CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 20000) g; CREATE TABLE small (id int); ANALYZE");
    let r = run(&s, pg, "t_size", "  - id: z\n    postgres.size: { top: 1, warn_bytes: 1KB, fail_bytes: 1TB }\n", &[]);
    r.code(0);
    let z = r.step("z");
    assert_eq!(z["status"], "warned");
    let tables = z["outputs"]["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0]["name"], "public.big");
    assert_eq!(tables[0]["rows_estimate"], 20000);
    run(&s, pg, "t_size", "  - postgres.size: { fail_bytes: 1KB }\n", &[]).code(1);
}

#[test]
fn bloat_estimates_dead_rows() {
    let Some((s, pg)) = setup("t_bloat") else { return };
    pg.psql("t_bloat", "CREATE TABLE b (id int, pad text) WITH (autovacuum_enabled = off); INSERT INTO b SELECT g, repeat('y', 100) FROM generate_series(1, 20000) g");
    pg.psql("t_bloat", "DELETE FROM b WHERE id > 5000");
    eventually("dead rows in the statistics", || count(pg, "t_bloat", "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'b'") > 0);
    let r = run(&s, pg, "t_bloat", "  - id: b\n    postgres.bloat: {}\n", &[]);
    r.code(0);
    let b = r.step("b");
    assert_eq!(b["status"], "warned");
    assert_eq!(b["outputs"]["tables"][0]["name"], "public.b");
    assert_eq!(b["outputs"]["tables"][0]["dead_rows"], 15000);
    assert_eq!(b["outputs"]["worst_ratio"], 0.75);
    run(&s, pg, "t_bloat", "  - postgres.bloat: { fail_ratio: 0.5 }\n", &[]).code(1);
}

#[test]
fn slow_queries_with_and_without_pg_stat_statements() {
    let Some((s, pg)) = setup("t_slow") else { return };
    pg.psql("t_slow", "CREATE EXTENSION pg_stat_statements");
    for _ in 0..3 {
        pg.psql("t_slow", "SELECT pg_sleep(0.05)");
    }
    let r = run(&s, pg, "t_slow", "  - id: q\n    postgres.slow_queries: { top: 3, warn_mean: 10ms }\n", &[]);
    r.code(0);
    let q = r.step("q");
    assert_eq!(q["status"], "warned");
    assert_eq!(q["outputs"]["available"], true);
    let top = &q["outputs"]["queries"][0];
    assert!(top["query"].as_str().unwrap().contains("pg_sleep"), "{q}");
    assert!(top["mean_ms"].as_f64().unwrap() >= 50.0);

    pg.create_db("t_slow_none");
    let r = run(&s, pg, "t_slow_none", "  - id: q\n    postgres.slow_queries: {}\n", &[]);
    r.code(0);
    assert_eq!(r.step("q")["status"], "warned");
    assert_eq!(r.step("q")["message"], "pg_stat_statements is not installed in database t_slow_none: run CREATE EXTENSION pg_stat_statements in it");
    run(&s, pg, "t_slow_none", "  - postgres.slow_queries: { require_extension: true }\n", &[]).code(1);
}

#[test]
fn vacuum_dry_run_changes_nothing_then_vacuums() {
    let Some((s, pg)) = setup("t_vac") else { return };
    pg.psql("t_vac", "CREATE TABLE v (id int) WITH (autovacuum_enabled = off); INSERT INTO v SELECT generate_series(1, 5000)");
    pg.psql("t_vac", "DELETE FROM v WHERE id % 2 = 0");
    eventually("dead rows", || count(pg, "t_vac", "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'v'") == 2500);
    let stats = || pg.psql("t_vac", "SELECT vacuum_count || '/' || analyze_count || '/' || n_dead_tup FROM pg_stat_user_tables WHERE relname = 'v'");
    let before = stats();
    let step = "  - id: v\n    postgres.vacuum: { table: public.v }\n";
    let plan = run(&s, pg, "t_vac", step, &["--dry-run"]);
    plan.code(0);
    assert_eq!(plan.step("v")["message"], "would run VACUUM (ANALYZE) \"public\".\"v\" on t_vac: 1 tables, 2500 dead rows (most: public.v 2500)");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(stats(), before, "the dry run vacuumed");
    run(&s, pg, "t_vac", step, &[]).code(0);
    eventually("the vacuum in the statistics", || stats() == "1/1/0");
    let missing = run(&s, pg, "t_vac", "  - id: v\n    postgres.vacuum: { table: nope }\n", &[]);
    missing.code(1);
    assert_eq!(missing.step("v")["message"], "table nope does not exist");
    run(&s, pg, "t_vac", "  - postgres.vacuum: {}\n", &[]).code(0);
}

#[test]
fn reindex_a_table_and_the_database_concurrently() {
    let Some((s, pg)) = setup("t_reindex") else { return };
    pg.psql("t_reindex", "CREATE TABLE r (id int PRIMARY KEY, v text); CREATE INDEX r_v ON r (v); INSERT INTO r SELECT g, g::text FROM generate_series(1, 2000) g");
    let r = run(&s, pg, "t_reindex", "  - id: r\n    postgres.reindex: { table: r }\n", &[]);
    r.code(0);
    let step = r.step("r");
    assert!(step["message"].as_str().unwrap().starts_with("REINDEX TABLE CONCURRENTLY \"r\": 2 indexes"), "{step}");
    let plan = run(&s, pg, "t_reindex", "  - id: r\n    postgres.reindex: {}\n", &["--dry-run"]);
    assert!(plan.step("r")["message"].as_str().unwrap().starts_with("would run REINDEX DATABASE CONCURRENTLY \"t_reindex\": 2 indexes"));
    run(&s, pg, "t_reindex", "  - postgres.reindex: {}\n", &[]).code(0);
    run(&s, pg, "t_reindex", "  - postgres.reindex: { table: nope }\n", &[]).code(1);
}

#[test]
fn replication_lag_from_the_primary_and_the_replica() {
    if postgres::shared().is_none() {
        return;
    }
    let primary = Cluster::start(&[]).expect("a primary starts");
    let replica = primary.start_replica().expect("a replica starts");
    eventually("the replica streaming", || primary.psql("postgres", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "1");
    let s = Scratch::new();
    inventory(&s, "");
    let r = run(&s, &primary, "postgres", "  - id: r\n    postgres.replication: { expect_replicas: 1, warn_lag: 1m, fail_lag_bytes: 1GB }\n", &[]);
    r.code(0);
    let o = &r.step("r")["outputs"];
    assert_eq!(o["role"], "primary");
    assert_eq!(o["replicas"][0]["state"], "streaming");
    run(&s, &primary, "postgres", "  - postgres.replication: { expect_replicas: 2 }\n", &[]).code(1);
    let on_replica = run(&s, &replica, "postgres", "  - id: r\n    postgres.replication: { fail_lag: 1h }\n", &[]);
    on_replica.code(0);
    assert_eq!(on_replica.step("r")["outputs"]["role"], "replica");
    let alone = Cluster::start(&[]).expect("a lone server starts");
    let r = run(&s, &alone, "postgres", "  - id: r\n    postgres.replication: {}\n", &[]);
    assert_eq!(r.step("r")["message"], "primary with no replicas connected");
}

#[test]
fn query_binds_parameters_and_checks_values() {
    let Some((s, pg)) = setup("t_query") else { return };
    pg.psql("t_query", "CREATE TABLE orders (id int, total numeric, placed timestamptz, status text); CREATE SEQUENCE s; \
        INSERT INTO orders SELECT g, g * 1.5, now() - make_interval(hours => g), CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'ok' END FROM generate_series(1, 100) g");
    let ok = run(
        &s,
        pg,
        "t_query",
        "  - id: q\n    postgres.query:\n      sql: \"SELECT count(*) AS n, max(total) AS top FROM orders WHERE placed > now() - $1::interval AND status = $2\"\n      params: [\"2 days\", ok]\n      expect_rows: 1\n      expect: { n: { min: 40, max: 48 }, top: { above: 50 } }\n",
        &[],
    );
    ok.code(0);
    let q = ok.step("q");
    assert_eq!(q["outputs"]["first"]["n"], 43);
    assert_eq!(q["outputs"]["value"], 43);
    let bad = run(&s, pg, "t_query", "  - id: q\n    postgres.query: { sql: \"SELECT count(*) AS failed FROM orders WHERE status = 'failed'\", expect: { failed: 0 } }\n", &[]);
    bad.code(1);
    assert_eq!(bad.step("q")["message"], "failed is 10, expected 0");
    let rows = run(&s, pg, "t_query", "  - id: q\n    postgres.query: { sql: \"SELECT id FROM orders ORDER BY id\", expect_rows: { max: 10 }, max_rows: 5 }\n", &[]);
    rows.code(1);
    assert_eq!(rows.step("q")["message"], "100 rows, expected at most 10");
    assert_eq!(rows.step("q")["outputs"]["rows"].as_array().unwrap().len(), 5);
    // A write hidden in a function is refused by the read-only transaction.
    let write = run(&s, pg, "t_query", "  - id: q\n    postgres.query: { sql: \"SELECT nextval('s')\" }\n", &[]);
    write.code(1);
    assert_eq!(write.step("q")["message"], "postgres.query is read-only; the server refused: cannot execute nextval() in a read-only transaction");
    assert_eq!(pg.psql("t_query", "SELECT last_value || '/' || is_called FROM s"), "1/false");
    let syntax = run(&s, pg, "t_query", "  - id: q\n    postgres.query: { sql: \"SELECT idd FROM orders\" }\n", &[]);
    assert_eq!(syntax.step("q")["message"], "the query: column \"idd\" does not exist (at character 8 of the SQL)");
}

#[test]
fn a_read_write_statement_is_refused_before_anything_runs() {
    let Some((s, _pg)) = setup("t_query_rw") else { return };
    let rb = s.write("rb.yaml", "name: t\nsteps:\n  - postgres.query: { sql: \"DELETE FROM orders\" }\n");
    s.opsctl()
        .args(["validate", rb.to_str().unwrap()])
        .run()
        .code(2)
        .stderr_has("postgres.query runs read-only queries (SELECT, WITH, VALUES, TABLE); `DELETE` is not one");
}

/// A database with two related tables and known row counts.
fn sample(pg: &Cluster, db: &str, users: i64, orders: i64) {
    pg.psql(
        db,
        &format!(
            "CREATE TABLE users (id int PRIMARY KEY, name text); CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users, total numeric); \
             INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, {users}) g; \
             INSERT INTO orders SELECT g, 1 + g % {users}, g * 0.5 FROM generate_series(1, {orders}) g; ANALYZE"
        ),
    );
}

fn backup(s: &Scratch, pg: &Cluster, db: &str) -> String {
    let r = cmd(s, pg, db, &["backup", "-i", "pg", "-o", "json"]);
    r.code(0);
    let id = r.step("postgres")["outputs"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.step("verify")["status"], "passed");
    id
}

#[test]
fn backup_drop_restore_gives_equal_row_counts() {
    let Some((s, pg)) = setup("t_roundtrip") else { return };
    sample(pg, "t_roundtrip", 3000, 7000);
    let id = backup(&s, pg, "t_roundtrip");
    let listed = s.opsctl().args(["backup", "list", "-o", "json"]).run();
    let manifests = listed.json();
    assert_eq!(manifests[0]["id"], id.as_str());
    assert_eq!(manifests[0]["postgres"]["database"], "t_roundtrip");
    assert_eq!(manifests[0]["postgres"]["rows_estimate"], 10000);
    assert!(std::fs::metadata(s.path().join("backups/pg").join(&id).join("manifest.json")).is_ok());
    s.opsctl().args(["backup", "verify", &id]).run().code(0).stdout_has("checksums match");

    pg.psql("t_roundtrip", "DROP TABLE orders; DELETE FROM users WHERE id > 10");
    let r = cmd(&s, pg, "t_roundtrip", &["restore", "-i", "pg", "--from", &id, "--yes", "-o", "json"]);
    r.code(0);
    let restore = r.step("restore");
    assert_eq!(count(pg, "t_roundtrip", "SELECT count(*) FROM users"), 3000);
    assert_eq!(count(pg, "t_roundtrip", "SELECT count(*) FROM orders"), 7000);
    let previous = restore["outputs"]["previous"].as_str().unwrap().to_string();
    assert!(previous.starts_with("t_roundtrip_before_"), "{restore}");
    assert_eq!(count(pg, &previous, "SELECT count(*) FROM users"), 10, "the replaced database is kept as it was");
    assert!(restore["message"].as_str().unwrap().contains("(2 tables, ~10000 rows"), "{restore}");

    // In place, with pg_restore --clean.
    pg.psql("t_roundtrip", "DELETE FROM orders WHERE id > 100");
    let rb = s.write("clean.yaml", &format!("name: clean\nsteps:\n  - postgres.restore: {{ from: \"{id}\", clean: true }}\n"));
    cmd(&s, pg, "t_roundtrip", &["run", rb.to_str().unwrap(), "-i", "pg", "--yes"]).code(0);
    assert_eq!(count(pg, "t_roundtrip", "SELECT count(*) FROM orders"), 7000);
}

#[test]
fn corrupt_and_truncated_backups_are_refused_before_the_database_is_touched() {
    let Some((s, pg)) = setup("t_corrupt") else { return };
    sample(pg, "t_corrupt", 500, 1000);
    let id = backup(&s, pg, "t_corrupt");
    pg.psql("t_corrupt", "DELETE FROM orders WHERE id > 10");
    let dump = s.path().join("backups/pg").join(&id).join("postgres.dump");
    let original = std::fs::read(&dump).unwrap();
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&dump, &flipped).unwrap();
    let r = cmd(&s, pg, "t_corrupt", &["restore", "-i", "pg", "--from", &id, "--yes", "-o", "json"]);
    r.code(1);
    let msg = r.step("verify")["message"].as_str().unwrap().to_string();
    assert!(msg.contains("postgres.dump of backup") && msg.contains("does not match its checksum"), "{msg}");
    assert_eq!(r.step("restore")["status"], "skipped");
    s.opsctl().args(["backup", "verify", &id]).run().code(1);

    std::fs::write(&dump, &original[..original.len() - 100]).unwrap();
    let r = cmd(&s, pg, "t_corrupt", &["run", s.write("r.yaml", &format!("name: r\nsteps:\n  - id: r\n    postgres.restore: {{ from: \"{id}\" }}\n")).to_str().unwrap(), "-i", "pg", "--yes", "-o", "json"]);
    r.code(1);
    let msg = r.step("r")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("refusing to restore: postgres.dump of backup") && msg.contains("the file is truncated") && msg.ends_with("nothing was touched"), "{msg}");
    assert_eq!(count(pg, "t_corrupt", "SELECT count(*) FROM orders"), 10, "the database was touched");
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 't_corrupt_%'"), "0");
}

#[test]
fn a_dump_from_a_newer_major_version_is_refused() {
    let Some((s, pg)) = setup("t_newer") else { return };
    sample(pg, "t_newer", 10, 10);
    let id = backup(&s, pg, "t_newer");
    let path = s.path().join("backups/pg").join(&id).join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m["postgres"]["server_version_num"] = serde_json::json!(990_001);
    m["postgres"]["server_version"] = serde_json::json!("99.1");
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    let r = cmd(&s, pg, "t_newer", &["restore", "-i", "pg", "--from", &id, "--yes", "-o", "json"]);
    r.code(1);
    let msg = r.step("restore")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with(&format!("backup {id} comes from PostgreSQL 99.1")), "{msg}");
    assert!(msg.contains("cannot be restored into an older major version; nothing was touched"), "{msg}");
}

#[test]
fn an_unknown_backup_id_names_the_nearest_ones() {
    let Some((s, pg)) = setup("t_unknown") else { return };
    sample(pg, "t_unknown", 10, 10);
    let id = backup(&s, pg, "t_unknown");
    let typo = format!("{}x", &id[..id.len() - 1]);
    let r = cmd(&s, pg, "t_unknown", &["restore", "-i", "pg", "--from", &typo, "--yes"]);
    r.code(2).stderr_has(&format!("no backup `{typo}`")).stderr_has(&format!("did you mean `{id}`?"));
    s.opsctl().args(["backup", "verify", "20990101T000000Z-postgres"]).run().code(2).stderr_has("no backup `20990101T000000Z-postgres` in any instance's store");
}

#[test]
fn sessions_connected_make_a_restore_refuse_unless_asked_to_disconnect() {
    let Some((s, pg)) = setup("t_sessions") else { return };
    sample(pg, "t_sessions", 100, 100);
    let id = backup(&s, pg, "t_sessions");
    let _app = pg.background("t_sessions", "postgres", "SELECT 1;");
    eventually("the app session", || count(pg, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = 't_sessions'") >= 1);
    let r = cmd(&s, pg, "t_sessions", &["restore", "-i", "pg", "--from", &id, "--yes", "-o", "json"]);
    r.code(1);
    let msg = r.step("restore")["message"].as_str().unwrap().to_string();
    assert!(msg.contains("session(s) are connected to t_sessions") && msg.contains("stop the application first"), "{msg}");
    let rb = s.write("force.yaml", &format!("name: force\nsteps:\n  - postgres.restore: {{ from: \"{id}\", disconnect: true, keep_previous: false }}\n"));
    cmd(&s, pg, "t_sessions", &["run", rb.to_str().unwrap(), "-i", "pg", "--yes"]).code(0);
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 't_sessions_before_%'"), "0");
}

#[test]
fn a_restore_dry_run_changes_nothing() {
    let Some((s, pg)) = setup("t_dryrestore") else { return };
    sample(pg, "t_dryrestore", 200, 300);
    let id = backup(&s, pg, "t_dryrestore");
    pg.psql("t_dryrestore", "DELETE FROM orders");
    let dbs = || pg.psql("postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 't_dryrestore%'");
    let before = dbs();
    let r = cmd(&s, pg, "t_dryrestore", &["restore", "-i", "pg", "--from", &id, "--dry-run", "-o", "json"]);
    r.code(0);
    let plan = r.step("restore");
    assert_eq!(plan["status"], "planned");
    assert!(plan["message"].as_str().unwrap().starts_with(&format!("would restore {id} (t_dryrestore, 2 tables, ~500 rows")), "{plan}");
    assert_eq!(dbs(), before);
    assert_eq!(count(pg, "t_dryrestore", "SELECT count(*) FROM orders"), 0);
}

#[test]
fn the_server_dying_during_a_backup_leaves_no_backup() {
    if postgres::shared().is_none() {
        return;
    }
    let pg = Cluster::start(&[]).expect("a server starts");
    pg.psql("postgres", "CREATE DATABASE big");
    pg.psql("big", "CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS a FROM generate_series(1, 3000000) g");
    let s = Scratch::new();
    inventory(&s, "");
    let child = s
        .opsctl()
        .args(["backup", "-i", "pg", "-o", "json"])
        .env("PG_URL", &pg.url("big"))
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let store = s.path().join("backups/pg");
    postgres::wait_until_dumping(&store);
    pg.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let msg = doc["steps"][0]["message"].as_str().unwrap();
    assert!(msg.starts_with("pg_dump of postgres@127.0.0.1:") && msg.contains("failed, no backup was kept"), "{msg}");
    let left: Vec<String> = std::fs::read_dir(&store).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    s.opsctl().args(["backup", "list"]).run().code(0).stdout_has("no backups in");
}

#[test]
fn two_concurrent_restores_the_second_exits_3() {
    let Some((s, pg)) = setup("t_twice") else { return };
    pg.psql("t_twice", "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS a FROM generate_series(1, 600000) g; CREATE INDEX ON t (a)");
    let id = backup(&s, pg, "t_twice");
    let first = s
        .opsctl()
        .args(["restore", "-i", "pg", "--from", &id, "--yes"])
        .env("PG_URL", &pg.url("t_twice"))
        .command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the first restore to hold the lock", || {
        count(pg, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'opsctl % restore %'") >= 1
    });
    // Same machine, same state directory: the local lock answers.
    let local = cmd(&s, pg, "t_twice", &["restore", "-i", "pg", "--from", &id, "--yes"]);
    local.code(3).stderr_has("instance pg is locked by another run").stderr_has("(restore by ");
    // Another machine (another state directory): the PostgreSQL advisory lock answers.
    let remote = s
        .opsctl()
        .args(["restore", "-i", "pg", "--from", &id, "--yes"])
        .env("PG_URL", &pg.url("t_twice"))
        .env("OPSCTL_STATE_DIR", s.path().join("other-state").to_str().unwrap())
        .run();
    remote.code(3).stderr_has("instance pg is locked by another run").stderr_has("(PostgreSQL advisory lock)").stderr_has(" restore ");
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn retention_prunes_old_backups_with_a_dry_run_first() {
    let Some((s, pg)) = setup("t_prune") else { return };
    sample(pg, "t_prune", 10, 10);
    let ids: Vec<String> = (0..3).map(|_| backup(&s, pg, "t_prune")).collect();
    let plan = s.opsctl().args(["backup", "prune", "-i", "pg", "--dry-run", "-o", "json"]).run();
    plan.code(0);
    assert!(plan.step("prune")["message"].as_str().unwrap().starts_with(&format!("would delete 1 of 3 from dir {}", s.path().join("backups/pg").display())));
    assert!(plan.step("prune")["message"].as_str().unwrap().ends_with(&format!("(keep the last 2): {}", ids[0])));
    assert_eq!(s.opsctl().args(["backup", "list", "-o", "json"]).run().json().as_array().unwrap().len(), 3);
    s.opsctl().args(["backup", "prune", "-i", "pg"]).run().code(2).stderr_has("needs confirmation");
    let done = s.opsctl().args(["backup", "prune", "-i", "pg", "--yes", "-o", "json"]).run();
    done.code(0);
    assert_eq!(done.step("prune")["outputs"]["deleted"], serde_json::json!([ids[0]]));
    let left: Vec<String> = s.opsctl().args(["backup", "list", "-o", "json"]).run().json().as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(left, ids[1..].to_vec());
}

#[test]
fn pg_dump_missing_names_the_package() {
    let Some((s, pg)) = setup("t_nodump") else { return };
    inventory(&s, ", bin_dir: /nonexistent/bin");
    let r = cmd(&s, pg, "t_nodump", &["backup", "-i", "pg", "-o", "json"]);
    r.code(1);
    let msg = r.step("postgres")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("pg_dump was not found (in /nonexistent/bin); install the PostgreSQL client programs (Debian/Ubuntu: `apt-get install postgresql-client`"), "{msg}");
    assert_eq!(std::fs::read_dir(s.path().join("backups/pg")).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn an_instance_without_a_backup_store_says_how_to_add_one() {
    let Some((s, pg)) = setup("t_nostore") else { return };
    s.write("opsctl.yaml", "instances:\n  pg:\n    postgres: { url: { env: PG_URL } }\n");
    // The procedure is refused before anything runs, saying what the instance lacks.
    let r = cmd(&s, pg, "t_nostore", &["backup", "-i", "pg", "-o", "json"]);
    r.code(2);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert_eq!(
        r.stderr.trim(),
        "error: refused: `backup` does not apply to instance pg: it needs backups (a backup store, `backups:`); pg has host, postgres"
    );
    // A step that asks anyway is told how to add one.
    let rb = s.write("rb.yaml", "name: b\nsteps:\n  - { id: postgres, postgres.backup: {} }\n");
    let r = cmd(&s, pg, "t_nostore", &["run", rb.to_str().unwrap(), "-i", "pg", "-o", "json"]);
    r.code(1);
    assert_eq!(r.step("postgres")["message"], "instance pg has no backup store; set `backups: { dir: /var/backups/opsctl }` in the inventory");
}

#[test]
fn sslmode_is_honoured_like_libpq() {
    if postgres::shared().is_none() {
        return;
    }
    let (pg, ca) = Cluster::start_tls().expect("a TLS server starts");
    let s = Scratch::new();
    inventory(&s, "");
    let step = "  - id: q\n    postgres.query: { sql: \"SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()\" }\n";
    let with = |query: &str| {
        let rb = s.write("rb.yaml", &format!("name: t\nsteps:\n{step}"));
        s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "pg", "-o", "json"]).env("PG_URL", &format!("{}?{query}", pg.url("postgres"))).run()
    };
    let require = with("sslmode=require");
    require.code(0);
    assert_eq!(require.step("q")["outputs"]["value"], true, "not encrypted");
    let disable = with("sslmode=disable");
    assert_eq!(disable.step("q")["outputs"]["value"], false);
    let full = with(&format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    full.code(0);
    assert_eq!(full.step("q")["outputs"]["value"], true);
    // Another CA: verification fails.
    let (other_ca, _, _) = crate::support::server::certificates();
    let other = s.write("other-ca.pem", &other_ca);
    let wrong = with(&format!("sslmode=verify-ca&sslrootcert={}", other.display()));
    wrong.code(1);
    assert_eq!(
        wrong.step("q")["message"],
        format!("TLS with PostgreSQL at 127.0.0.1:{} failed: the server's certificate is not signed by the CA in sslrootcert {}", pg.port, other.display())
    );
    let bad = with("sslmode=sometimes");
    bad.code(1);
    assert_eq!(bad.step("q")["message"], "unknown sslmode `sometimes`; use disable, prefer, require, verify-ca or verify-full");
    // A server without TLS and sslmode=require.
    let plain = postgres::shared().unwrap();
    let rb = s.write("rb.yaml", &format!("name: t\nsteps:\n{step}"));
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "pg", "-o", "json"]).env("PG_URL", &format!("{}?sslmode=require", plain.url("postgres"))).run();
    r.code(1);
    assert_eq!(r.step("q")["message"], format!("127.0.0.1:{} does not support TLS, and sslmode is require", plain.port));
}

#[test]
fn check_covers_postgres_on_instances_that_have_it() {
    let Some((s, pg)) = setup("t_check") else { return };
    let r = cmd(&s, pg, "t_check", &["check", "-i", "pg", "-o", "json"]);
    let doc = r.json();
    let kinds: Vec<(&str, &str)> = doc["steps"].as_array().unwrap().iter().map(|s| (s["kind"].as_str().unwrap(), s["status"].as_str().unwrap())).collect();
    for kind in ["postgres.ping", "postgres.connections", "postgres.long_queries"] {
        let status = kinds.iter().find(|(k, _)| *k == kind).map(|(_, s)| *s);
        assert!(matches!(status, Some("passed" | "warned")), "{kind}: {status:?}");
    }
}

#[test]
fn query_can_reach_another_server_with_the_same_credentials() {
    let Some((s, pg)) = setup("t_otherhost") else { return };
    // The instance's URL names a port nothing listens on; host/port send the query to the
    // real server (as a restore drill's copy would be reached).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{closed}/t_otherhost");
    let rb = s.write("rb.yaml", &format!("name: t\nsteps:\n  - {{ id: q, postgres.query: {{ sql: \"SELECT 1 AS one\", host: 127.0.0.1, port: {}, expect: {{ one: 1 }} }} }}\n  - {{ id: direct, postgres.query: {{ sql: \"SELECT 1\" }}, on_failure: continue }}\n", pg.port));
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "pg", "-o", "json"]).env("PG_URL", &url).run();
    r.code(1);
    assert_eq!(r.step("q")["status"], "passed", "{}", r.stdout);
    assert!(r.step("direct")["message"].as_str().unwrap().contains("connection refused"), "{}", r.stdout);
}

#[test]
fn check_fails_on_a_missing_stale_or_corrupt_newest_backup() {
    let Some((s, pg)) = setup("t_fresh") else {
        return;
    };
    pg.psql(
        "t_fresh",
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1)",
    );
    let check = || cmd(&s, pg, "t_fresh", &["check", "-i", "pg", "-o", "json"]);
    // No backup yet: the check says so instead of passing on nothing.
    let r = check();
    r.code(1);
    assert_eq!(
        r.step("backup")["message"],
        format!(
            "no postgres backup in dir {}",
            s.path().join("backups/pg").display()
        )
    );
    assert_eq!(r.step("backup")["value"], "none");

    let b = cmd(&s, pg, "t_fresh", &["backup", "-i", "pg", "-o", "json"]);
    b.code(0);
    let id = b.step("postgres")["outputs"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = check();
    assert_eq!(r.step("backup")["status"], "passed", "{}", r.stdout);
    assert_eq!(r.step("backup")["outputs"]["id"], id.as_str());
    assert_eq!(r.step("backup")["threshold"], "fail > 1d2h");

    // Older than backups.max_age: failed, with its age.
    inventory(&s, "");
    let text = std::fs::read_to_string(s.path().join("opsctl.yaml"))
        .unwrap()
        .replace("keep_last: 2", "keep_last: 2, max_age: 1s");
    s.write("opsctl.yaml", &text);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = check();
    r.code(1);
    let msg = r.step("backup")["message"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with(&format!("the newest postgres backup {id} is "))
            && msg.contains("s old (max_age 1s)"),
        "{msg}"
    );

    // verify: true re-reads the checksums: a flipped byte fails it.
    inventory(&s, "");
    let dump = s.path().join(format!("backups/pg/{id}/postgres.dump"));
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let rb = s.write("rb.yaml", "name: t\nsteps:\n  - { id: f, backup.fresh: { verify: true } }\n  - { id: g, backup.fresh: {} }\n");
    let r = cmd(
        &s,
        pg,
        "t_fresh",
        &["run", rb.to_str().unwrap(), "-i", "pg", "-o", "json"],
    );
    r.code(1);
    let msg = r.step("f")["message"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with(&format!(
            "the newest postgres backup {id} does not match its checksums:"
        )),
        "{msg}"
    );
    assert_eq!(r.step("g")["status"], "skipped");
}

#[test]
fn weekly_and_monthly_routines_maintain_test_and_drill_the_database() {
    let Some((s, pg)) = setup("t_routines") else { return };
    // Autovacuum would race the routine for the dead rows: off for this table.
    pg.psql("t_routines", "CREATE TABLE big (id int) WITH (autovacuum_enabled = false); INSERT INTO big SELECT generate_series(1, 5000); CREATE INDEX big_id ON big (id); CREATE TABLE small (id int); INSERT INTO small VALUES (1)");
    pg.psql("t_routines", "DELETE FROM big WHERE id <= 3000");
    eventually("dead rows counted", || count(pg, "t_routines", "SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables WHERE relname = 'big'") >= 3000);
    cmd(&s, pg, "t_routines", &["backup", "-i", "pg"]).code(0);
    let runs = |r: &Run| -> Vec<(String, String)> {
        r.json()["runs"].as_array().unwrap().iter().map(|x| (x["runbook"].as_str().unwrap().to_string(), x["status"].as_str().unwrap().to_string())).collect()
    };
    let step = |r: &Run, runbook: &str, id: &str| -> serde_json::Value {
        let run = r.json()["runs"].as_array().unwrap().iter().find(|x| x["runbook"] == runbook).cloned().unwrap();
        run["steps"].as_array().unwrap().iter().find(|x| x["id"] == id).cloned().unwrap_or_else(|| panic!("no {id} in {run}"))
    };

    let r = cmd(&s, pg, "t_routines", &["routine", "weekly", "-i", "pg", "-o", "json"]);
    r.code(0);
    assert_eq!(runs(&r).iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["db-maintenance", "utilisation", "backup-test"], "{}", r.stdout);
    assert!(runs(&r).iter().all(|(_, st)| st == "passed"), "{}", r.stdout);
    // VACUUM ANALYZE and REINDEX went to the table with 60 % dead rows, and only to it.
    assert_eq!(step(&r, "db-maintenance", "vacuum[0]")["name"], "VACUUM ANALYZE public.big");
    assert_eq!(step(&r, "db-maintenance", "reindex[0]")["name"], "REINDEX public.big");
    eventually("the dead rows vacuumed", || count(pg, "t_routines", "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'big'") == 0);
    // The backup test restored the newest backup into a scratch database, checked it, dropped it.
    let restore = step(&r, "backup-test", "restore");
    assert_eq!(restore["outputs"]["tables"], 2, "{restore}");
    let scratch = restore["outputs"]["database"].as_str().unwrap().to_string();
    assert!(scratch.starts_with("opsctl_drill_"), "{scratch}");
    assert_eq!(count(pg, "postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{scratch}'")), 0);
    assert_eq!(step(&r, "backup-test", "fresh")["status"], "passed");

    // The monthly drill measures RTO and RPO against targets; a target missed fails it.
    let r = cmd(&s, pg, "t_routines", &["routine", "monthly", "-i", "pg", "-o", "json", "--yes"]);
    r.code(0);
    assert_eq!(runs(&r), [("restore-drill".to_string(), "passed".to_string()), ("backup-prune".to_string(), "passed".to_string())]);
    let drill = step(&r, "restore-drill", "postgres");
    assert!(drill["outputs"]["rto_seconds"].as_f64().unwrap() > 0.0 && drill["outputs"]["rpo_seconds"].as_i64().unwrap() >= 0, "{drill}");
    assert!(drill["message"].as_str().unwrap().contains("(RTO); the backup is "), "{drill}");
    std::thread::sleep(Duration::from_millis(1100));
    let r = cmd(&s, pg, "t_routines", &["run", "restore-drill", "-i", "pg", "-p", "max_rpo=1s", "-o", "json"]);
    r.code(1);
    assert!(r.step("postgres")["message"].as_str().unwrap().contains("old, more than max_rpo 1s"), "{}", r.stdout);
    assert_eq!(count(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'opsctl_drill_%'"), 0, "every scratch database was dropped");
}

#[test]
fn the_database_slowdown_incident_reports_then_terminates_after_confirmation() {
    let Some((s, pg)) = setup("t_slow") else { return };
    role(pg, "slow_role");
    let _sleep = pg.background("t_slow", "slow_role", "SELECT pg_sleep(300);");
    let alive = || count(pg, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE usename = 'slow_role' AND state = 'active'");
    eventually("the sleeping session", || alive() == 1);
    std::thread::sleep(Duration::from_millis(1200));
    // Without a terminal or --yes, the run is refused before anything runs.
    let r = cmd(&s, pg, "t_slow", &["run", "incident-db-slowdown", "-i", "pg", "-p", "older_than=1s"]);
    r.code(2);
    r.stderr_has("a step needs confirmation (`terminate` (postgres.terminate_long_queries, mutate))");
    // The plan lists the session it would terminate, and terminates nothing.
    let plan = cmd(&s, pg, "t_slow", &["run", "incident-db-slowdown", "-i", "pg", "-p", "older_than=1s", "--dry-run", "-o", "json"]);
    plan.code(0);
    assert!(plan.step("terminate")["message"].as_str().unwrap().contains("slow_role@t_slow active for"), "{}", plan.stdout);
    assert_eq!(alive(), 1);
    // With the guide's threshold (10 minutes) nothing on this server qualifies.
    let r = cmd(&s, pg, "t_slow", &["run", "incident-db-slowdown", "-i", "pg", "--yes", "-o", "json"]);
    r.code(0);
    assert_eq!(r.step("terminate")["outputs"]["count"], 0);
    assert_eq!(alive(), 1);
}
