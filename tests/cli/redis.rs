//! The Redis backend against real Redis servers (see `support::redis`): PING and INFO both
//! ways, ACL users and wrong passwords, a full `maxmemory`, replication up and down, and an
//! unreachable server.

use crate::support::redis::{Redis, fresh, shared};
use crate::support::{Run, Scratch};

/// Runs `steps` on instance `cache`, whose `redis:` section is `settings`, with `env`.
fn run(settings: &str, steps: &str, env: &[(&str, &str)]) -> (Scratch, Run) {
    let s = Scratch::new();
    s.write("opsctl.yaml", &format!("instances:\n  cache:\n    redis: {settings}\n"));
    let rb = s.write("rb.yaml", &format!("name: redis\nsteps:\n{steps}"));
    let mut o = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "cache", "-o", "json"]);
    for (k, v) in env {
        o = o.env(k, v);
    }
    let r = o.run();
    (s, r)
}

fn plain(r: &Redis) -> String {
    format!("{{ url: \"{}\" }}", r.url())
}

fn status(r: &Run, id: &str) -> String {
    r.step(id)["status"].as_str().unwrap_or_default().to_string()
}

fn message(r: &Run, id: &str) -> String {
    r.step(id)["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn ping_answers_with_version_and_role() {
    let Some(redis) = shared() else { return };
    let (_s, r) = run(
        &plain(redis),
        "  - { id: ping, redis.ping: { warn_latency: 1s, fail_latency: 5s } }\n\
         \x20 - { id: slow, redis.ping: { fail_latency: 0ms }, on_failure: continue }\n",
        &[],
    );
    assert_eq!(status(&r, "ping"), "passed", "{}", r.stdout);
    let m = message(&r, "ping");
    assert!(m.starts_with("PONG from Redis 7.") && m.contains(&format!("(master) at redis://127.0.0.1:{}/0 in ", redis.port)), "{m}");
    assert_eq!(r.step("ping")["outputs"]["role"], "master");
    assert!(r.step("ping")["outputs"]["version"].as_str().unwrap().starts_with("7."));
    assert!(r.step("ping")["outputs"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(status(&r, "slow"), "failed");
    assert_eq!(r.step("slow")["threshold"], "fail > 0s");
}

#[test]
fn acl_users_and_wrong_passwords() {
    let Some(redis) = fresh("user default on >default-secret ~* &* +@all\n") else { return };
    let url = |user: &str, pass: &str| format!("redis://{user}:{pass}@127.0.0.1:{}/0", redis.port);
    let by_env = "{ url: { env: REDIS_URL } }";
    // The ACL user, by reference.
    let (_s, r) = run(by_env, "  - { id: ping, redis.ping: {} }\n", &[("REDIS_URL", &url("opsctl", "opsctl-test-secret"))]);
    assert_eq!(status(&r, "ping"), "passed", "{}", r.stdout);
    // A wrong password: a clear error, and the password is in no output.
    let (_s, r) = run(by_env, "  - { id: ping, redis.ping: {} }\n", &[("REDIS_URL", &url("opsctl", "not-the-password-1234"))]);
    r.code(1);
    assert_eq!(
        message(&r, "ping"),
        format!("Redis at redis://127.0.0.1:{}/0 refused the credentials (WRONGPASS: invalid username-password pair or user is disabled.): check the user and password in redis.url", redis.port)
    );
    assert!(!r.stdout.contains("not-the-password-1234") && !r.stderr.contains("not-the-password-1234"));
    // No password at all, where one is needed.
    let (_s, r) = run(&plain(&redis), "  - { id: ping, redis.ping: {} }\n", &[]);
    r.code(1);
    assert_eq!(message(&r, "ping"), format!("Redis at redis://127.0.0.1:{}/0 needs a password: give it in redis.url (`redis://:PASSWORD@host`, by reference)", redis.port));
    // A user that may not read INFO.
    let (_s, r) = run(by_env, "  - { id: info, redis.info: {} }\n", &[("REDIS_URL", &url("limited", "limited-secret"))]);
    r.code(1);
    assert!(message(&r, "info").starts_with(&format!("Redis at redis://127.0.0.1:{}/0 refused INFO: NOPERM", redis.port)), "{}", message(&r, "info"));
    // A password written inline in the inventory is refused before it is used.
    let (_s, r) = run(&format!("{{ url: \"{}\" }}", url("opsctl", "opsctl-test-secret")), "  - { id: ping, redis.ping: {} }\n", &[]);
    r.code(1);
    assert!(message(&r, "ping").starts_with("redis.url holds a password: give the URL by reference"), "{}", message(&r, "ping"));
}

#[test]
fn info_judges_memory_hit_rate_clients_and_persistence() {
    let Some(redis) = shared() else { return };
    redis.cli(&["SET", "opsctl:info:k", "v"]);
    for _ in 0..3 {
        redis.cli(&["GET", "opsctl:info:k"]);
    }
    redis.cli(&["GET", "opsctl:info:missing"]);
    let (_s, r) = run(
        &plain(redis),
        "  - { id: info, redis.info: {} }\n\
         \x20 - { id: picky, redis.info: { min_hit_rate: 0.9999 } }\n\
         \x20 - { id: fresh, redis.info: { max_last_save_age: 1h } }\n",
        &[],
    );
    assert_eq!(status(&r, "fresh"), "passed");
    assert!(message(&r, "fresh").contains("last RDB save ") && message(&r, "fresh").contains(" ago"), "{}", message(&r, "fresh"));
    assert_eq!(status(&r, "info"), "passed", "{}", r.stdout);
    let m = message(&r, "info");
    assert!(m.starts_with("memory ") && m.contains(" of the host's memory (no maxmemory is set)"), "{m}");
    assert!(m.contains(" hits, ") && m.contains(" clients") && m.contains("RDB ok") && m.contains("master with "), "{m}");
    let out = &r.step("info")["outputs"];
    assert!(out["keyspace_hits"].as_u64().unwrap() >= 3 && out["keyspace_misses"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(out["maxmemory"], 0);
    assert_eq!(out["role"], "master");
    assert_eq!(out["rdb_last_bgsave_status"], "ok");
    assert_eq!(status(&r, "picky"), "warned");
    assert!(message(&r, "picky").contains(", below 100.0%)"), "{}", message(&r, "picky"));
    // `save ""`: never saved since start, which INFO gives in whole seconds.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (_s, r) = run(&plain(redis), "  - { id: stale, redis.info: { max_last_save_age: 1s } }\n", &[]);
    assert_eq!(status(&r, "stale"), "failed");
    assert!(message(&r, "stale").starts_with("last RDB save ") && message(&r, "stale").contains(" ago (more than 1s)"), "{}", message(&r, "stale"));
}

#[test]
fn a_full_maxmemory_fails() {
    let Some(redis) = fresh("maxmemory 3mb\nmaxmemory-policy noeviction\n") else { return };
    // Fill it until Redis refuses writes.
    let value = "x".repeat(10_000);
    for i in 0..400 {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "--user", "opsctl", "--pass", "opsctl-test-secret", "--no-auth-warning", "SET", &format!("fill:{i}"), &value])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("OOM") {
            break;
        }
    }
    let (_s, r) = run(&plain(&redis), "  - { id: info, redis.info: {} }\n", &[]);
    assert_eq!(status(&r, "info"), "failed", "{}", r.stdout);
    let m = message(&r, "info");
    assert!(m.starts_with("memory ") && m.contains("% of maxmemory (") && m.contains(" of 3.0 MiB)"), "{m}");
    assert!(r.step("info")["outputs"]["memory_ratio"].as_f64().unwrap() > 0.95);
    assert_eq!(r.step("info")["outputs"]["maxmemory"], 3 * 1024 * 1024);
}

#[test]
fn replication_up_and_down() {
    let Some(master) = fresh("") else { return };
    let Some(replica) = fresh(&format!("replicaof 127.0.0.1 {}\nmasteruser opsctl\nmasterauth opsctl-test-secret\n", master.port)) else { return };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while replica.info("master_link_status").as_deref() != Some("up") {
        assert!(std::time::Instant::now() < deadline, "the replica never linked up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (_s, r) = run(&plain(&replica), "  - { id: replica, redis.info: {} }\n", &[]);
    assert_eq!(status(&r, "replica"), "passed", "{}", r.stdout);
    assert!(message(&r, "replica").contains(&format!("replica of 127.0.0.1:{}, link up", master.port)), "{}", message(&r, "replica"));
    assert_eq!(r.step("replica")["outputs"]["master_link_status"], "up");
    let (_s, r) = run(
        &plain(&master),
        "  - { id: one, redis.info: { expect_replicas: 1, max_replica_lag: 30s } }\n\
         \x20 - { id: two, redis.info: { expect_replicas: 2 }, on_failure: continue }\n",
        &[],
    );
    assert_eq!(status(&r, "one"), "passed", "{}", r.stdout);
    assert!(message(&r, "one").contains("master with 1/1 replica(s): 127.0.0.1:"), "{}", message(&r, "one"));
    assert_eq!(status(&r, "two"), "failed");
    assert!(message(&r, "two").starts_with("master with 1/2 replica(s)"), "{}", message(&r, "two"));
    // The master goes away: the replica says its link is down.
    master.cli(&["SHUTDOWN", "NOSAVE"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while replica.info("master_link_status").as_deref() != Some("down") {
        assert!(std::time::Instant::now() < deadline, "the replica never noticed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (_s, r) = run(&plain(&replica), "  - { id: replica, redis.info: {} }\n", &[]);
    assert_eq!(status(&r, "replica"), "failed");
    assert!(message(&r, "replica").starts_with(&format!("replica of 127.0.0.1:{}, link down", master.port)), "{}", message(&r, "replica"));
}

#[test]
fn an_unreachable_redis_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (_s, r) = run(&format!("{{ url: \"redis://127.0.0.1:{port}\" }}"), "  - { id: ping, redis.ping: {} }\n", &[]);
    r.code(1);
    assert_eq!(r.step("ping")["error_class"], "unavailable");
    assert_eq!(message(&r, "ping"), format!("cannot reach Redis at 127.0.0.1:{port}: connection refused"));
    let s = Scratch::new();
    let rb = s.write("rb.yaml", "name: r\nsteps:\n  - { id: ping, redis.ping: {} }\n");
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).run();
    assert_eq!(message(&r, "ping"), "instance localhost has no Redis settings; add `redis: { url: { env: REDIS_URL } }` to it in the inventory");
}

#[test]
fn check_pings_and_reads_the_redis_of_an_instance() {
    let Some(redis) = shared() else { return };
    let s = Scratch::new();
    s.write("opsctl.yaml", &format!("instances:\n  cache:\n    redis: {}\n", plain(redis)));
    let r = s.opsctl().args(["check", "-i", "cache", "-o", "json"]).run();
    assert_eq!(status(&r, "redis"), "passed", "{}", r.stdout);
    assert_eq!(status(&r, "redis_info"), "passed");
    let r = s.opsctl().args(["check", "-i", "localhost", "-o", "json"]).run();
    // Not run and not listed: the report names the backend once as not configured.
    assert!(r.json()["steps"].as_array().unwrap().iter().all(|s| s["id"] != "redis"), "{}", r.stdout);
    assert!(r.json()["not_configured"].as_array().unwrap().contains(&serde_json::json!("redis")), "{}", r.stdout);
}

#[test]
fn queue_depth_by_the_key_type() {
    let Some(redis) = shared() else { return };
    redis.cli(&["DEL", "opsctl:q:jobs", "opsctl:q:stream", "opsctl:q:z", "opsctl:q:s", "opsctl:q:str"]);
    redis.cli(&["RPUSH", "opsctl:q:jobs", "a", "b", "c"]);
    redis.cli(&["XADD", "opsctl:q:stream", "*", "f", "v"]);
    redis.cli(&["ZADD", "opsctl:q:z", "1", "a", "2", "b"]);
    redis.cli(&["SADD", "opsctl:q:s", "a"]);
    redis.cli(&["SET", "opsctl:q:str", "x"]);
    let (_s, r) = run(
        &plain(redis),
        "  - { id: all, redis.queue_depth: { keys: ['opsctl:q:jobs', 'opsctl:q:stream', 'opsctl:q:z', 'opsctl:q:s'], fail_above: 5 } }\n\
         \x20 - { id: warns, redis.queue_depth: { keys: ['opsctl:q:jobs'], warn_above: 2 } }\n\
         \x20 - { id: fails, redis.queue_depth: { keys: ['opsctl:q:jobs'], fail_above: 2 }, on_failure: continue }\n\
         \x20 - { id: empty, redis.queue_depth: { keys: ['opsctl:q:none'] } }\n\
         \x20 - { id: strict, redis.queue_depth: { keys: ['opsctl:q:none'], on_missing: fail }, on_failure: continue }\n\
         \x20 - { id: string, redis.queue_depth: { keys: ['opsctl:q:str'] }, on_failure: continue }\n",
        &[],
    );
    assert_eq!(status(&r, "all"), "passed", "{}", r.stdout);
    assert_eq!(message(&r, "all"), "opsctl:q:jobs 3 (list), opsctl:q:stream 1 (stream), opsctl:q:z 2 (zset), opsctl:q:s 1 (set)");
    assert_eq!(r.step("all")["outputs"]["depths"]["opsctl:q:jobs"], 3);
    assert_eq!(r.step("all")["outputs"]["max"], 3);
    assert_eq!(status(&r, "warns"), "warned");
    assert_eq!(status(&r, "fails"), "failed");
    assert_eq!(status(&r, "empty"), "passed");
    assert_eq!(message(&r, "empty"), "opsctl:q:none does not exist (an empty queue, or a wrong name)");
    assert_eq!(status(&r, "strict"), "failed");
    assert_eq!(status(&r, "string"), "failed");
    assert_eq!(r.step("string")["error_class"], "invalid");
    assert_eq!(message(&r, "string"), "key opsctl:q:str is a string, not a queue (a list, stream, sorted set or set)");
}

#[test]
fn the_slowlog_names_commands_never_their_arguments() {
    let Some(redis) = fresh("slowlog-log-slower-than 0\n") else { return };
    redis.cli(&["SET", "opsctl:secret", "canary-slowlog-value"]);
    redis.cli(&["GET", "opsctl:secret"]);
    let (_s, r) = run(
        &plain(&redis),
        "  - { id: any, redis.slowlog: { slower_than: 0ms, fail_above: 0 }, on_failure: continue }\n\
         \x20 - { id: slow, redis.slowlog: { slower_than: 10s, fail_above: 0 } }\n",
        &[],
    );
    assert_eq!(status(&r, "any"), "failed", "{}", r.stdout);
    assert!(message(&r, "any").contains(" command(s) slower than 0s in the last 1h; slowest "), "{}", message(&r, "any"));
    let samples = r.step("any")["outputs"]["samples"].as_array().unwrap().clone();
    assert!(!samples.is_empty() && samples.iter().all(|s| s["command"].as_str().is_some_and(|c| c.chars().all(|c| c.is_ascii_uppercase()))), "{samples:?}");
    assert!(!r.stdout.contains("canary-slowlog-value") && !r.stdout.contains("opsctl:secret"), "arguments leaked: {}", r.stdout);
    assert_eq!(status(&r, "slow"), "passed");
    assert_eq!(message(&r, "slow"), "no command slower than 10s in the last 1h");
}

/// A backup, verified, then restored the documented way: the RDB put in a new server's dir.
fn backup_round_trip(config: &str) {
    let Some(redis) = fresh(config) else { return };
    for i in 0..100 {
        redis.cli(&["SET", &format!("opsctl:backup:{i}"), &format!("value {i}")]);
    }
    redis.cli(&["RPUSH", "opsctl:backup:list", "a", "b"]);
    let s = Scratch::new();
    s.write("opsctl.yaml", &format!("instances:\n  cache:\n    redis: {}\n    backups: {{ dir: {} }}\n", plain(&redis), s.path().join("backups").display()));
    let rb = s.write("rb.yaml", "name: redis-backup\nsteps:\n  - { id: backup, redis.backup: {} }\n");
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "cache", "-o", "json"]).run();
    r.code(0);
    let m = message(&r, "backup");
    assert!(m.starts_with("snapshot of Redis 7.") && m.contains(&format!(" at redis://127.0.0.1:{}/0 (101 keys) into ", redis.port)), "{m}");
    let out = &r.step("backup")["outputs"];
    let id = out["id"].as_str().unwrap().to_string();
    assert_eq!(out["keys"], 101);
    // Verified: header, EOF opcode, CRC64.
    let v = s.opsctl().args(["backup", "verify", &id, "-o", "json"]).run();
    v.code(0);
    assert!(v.json()["steps"][0]["message"].as_str().unwrap().ends_with(", RDB version 10, CRC64 matches"), "{}", v.stdout);
    let listed = s.opsctl().args(["backup", "list"]).run();
    assert!(listed.stdout.contains(&format!("redis://127.0.0.1:{}/0 @ Redis 7.", redis.port)) && listed.stdout.contains(" 101"), "{}", listed.stdout);
    // `opsctl restore` says how a snapshot is restored, and restores nothing online.
    let restore = s.opsctl().args(["restore", "-i", "cache", "--from", &id, "--yes", "-o", "json"]).run();
    restore.code(1);
    assert!(message(&restore, "restore_redis").starts_with("a Redis snapshot is restored with the server stopped"), "{}", restore.stdout);
    // Restored: a new server started on the file has every key.
    let rdb = s.path().join("backups/cache").join(&id).join("dump.rdb");
    let target = tempfile::tempdir().unwrap();
    std::fs::copy(&rdb, target.path().join("dump.rdb")).unwrap();
    let Some(loaded) = fresh(&format!("dir {}\ndbfilename dump.rdb\n", target.path().display())) else { return };
    assert_eq!(loaded.cli(&["DBSIZE"]), "101");
    assert_eq!(loaded.cli(&["GET", "opsctl:backup:42"]), "value 42");
    // A flipped byte is caught.
    let mut bytes = std::fs::read(&rdb).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&rdb, &bytes).unwrap();
    let v = s.opsctl().args(["backup", "verify", &id, "-o", "json"]).run();
    v.code(1);
    let m = v.json()["steps"][0]["message"].as_str().unwrap().to_string();
    assert!(m.contains("does not match its checksum") || m.contains("fails its CRC64"), "{m}");
}

#[test]
fn a_backup_streamed_diskless_is_verified_and_restores() {
    backup_round_trip("repl-diskless-sync yes\nrepl-diskless-sync-delay 0\n");
}

#[test]
fn a_backup_from_a_disk_snapshot_is_verified_and_restores() {
    backup_round_trip("repl-diskless-sync no\n");
}

#[test]
fn tls_with_a_ca_file_and_without() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, (cert, key), _) = crate::support::server::certificates();
    for (name, pem) in [("ca.pem", &ca), ("server.crt", &cert), ("server.key", &key)] {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    let d = dir.path().display();
    let Some(redis) = fresh(&format!("tls-port {{tls_port}}\ntls-cert-file {d}/server.crt\ntls-key-file {d}/server.key\ntls-ca-cert-file {d}/ca.pem\ntls-auth-clients no\n")) else {
        return;
    };
    let url = format!("rediss://localhost:{}/0", redis.tls_port);
    let (_s, r) = run(&format!("{{ url: \"{url}\", ca_file: {d}/ca.pem }}"), "  - { id: ping, redis.ping: {} }\n", &[]);
    assert_eq!(status(&r, "ping"), "passed", "{}{}", r.stdout, r.stderr);
    assert!(message(&r, "ping").contains(&format!("at rediss://localhost:{}/0 in ", redis.tls_port)), "{}", message(&r, "ping"));
    // The system's trust store does not know the test CA.
    let (_s, r) = run(&format!("{{ url: \"{url}\" }}"), "  - { id: ping, redis.ping: {} }\n", &[]);
    r.code(1);
    assert!(message(&r, "ping").starts_with(&format!("TLS handshake with Redis at localhost:{} failed: ", redis.tls_port)), "{}", message(&r, "ping"));
    // insecure: true goes through, and says so.
    let (_s, r) = run(&format!("{{ url: \"{url}\", insecure: true }}"), "  - { id: ping, redis.ping: {} }\n", &[]);
    assert_eq!(status(&r, "ping"), "passed");
    r.stderr_has(&format!("certificate verification is off for Redis at localhost:{} (insecure: true)", redis.tls_port));
}
