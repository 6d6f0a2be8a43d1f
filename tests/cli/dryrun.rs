//! Dry runs change nothing, proven kind by kind: every step kind that can mutate or destroy
//! has a case in [`CASES`]; each case runs alone with `--dry-run` against the real backend
//! (the fake API server for Kubernetes) between two snapshots of everything it could
//! change, which must be identical, and the step must have been planned. A new mutating
//! kind without a case fails `every_mutating_kind_has_a_dry_run_case`.

use serde_json::{Value, json};

use crate::support::{Opsctl, Scratch};

/// Which test proves each kind, by the backend it needs. Kinds whose effect depends on their
/// parameters (`host.command`, `k8s.exec`, `compose.exec`, `http.check` with a method that
/// writes, `dynamodb.restore`) are here with the parameters that make them mutate.
const CASES: &[(&str, &[&str])] = &[
    ("local", &["host.command", "http.check", "notify.slack", "notify.webhook"]),
    (
        "postgres",
        &[
            "backup.prune",
            "postgres.backup",
            "postgres.reindex",
            "postgres.restore",
            "postgres.restore_test",
            "postgres.terminate_long_queries",
            "postgres.vacuum",
        ],
    ),
    ("redis", &["redis.backup"]),
    ("alertmanager", &["alertmanager.expire", "alertmanager.silence"]),
    (
        "kubernetes",
        &[
            "k8s.cordon",
            "k8s.drain",
            "k8s.exec",
            "k8s.patch",
            "k8s.rollout_restart",
            "k8s.rollout_undo",
            "k8s.scale",
            "k8s.scale_all",
            "k8s.secret_rotate",
            "k8s.set_image",
            "k8s.set_resources",
            "k8s.uncordon",
        ],
    ),
    (
        "compose",
        &[
            "compose.deploy",
            "compose.env_rotate",
            "compose.exec",
            "compose.restart",
            "compose.rollback",
            "compose.scale",
            "compose.start",
            "compose.stop",
            "compose.up",
        ],
    ),
    (
        "aws",
        &[
            "dynamodb.backup",
            "dynamodb.export",
            "dynamodb.pitr",
            "dynamodb.restore",
            "dynamodb.set_capacity",
            "ecs.deploy",
            "ecs.rollback",
            "ecs.scale",
            "rds.delete_drill",
            "rds.restore_drill",
            "secrets.rotate",
        ],
    ),
];

#[test]
fn every_mutating_kind_has_a_dry_run_case() {
    let listed = Opsctl::new().args(["list", "kinds", "-o", "json"]).run();
    listed.code(0);
    let kinds: Vec<Value> = serde_json::from_str(&listed.stdout).unwrap();
    let covered: Vec<&str> = CASES.iter().flat_map(|(_, k)| k.iter().copied()).collect();
    let missing: Vec<String> = kinds
        .iter()
        .filter(|k| k["effect"] == "mutate" || k["effect"] == "destroy")
        .map(|k| k["kind"].as_str().unwrap().to_string())
        .filter(|k| !covered.contains(&k.as_str()))
        .collect();
    assert!(missing.is_empty(), "mutating kinds without a dry-run case in tests/cli/dryrun.rs: {}", missing.join(", "));
    let known: Vec<&str> = kinds.iter().map(|k| k["kind"].as_str().unwrap()).collect();
    let stale: Vec<&&str> = covered.iter().filter(|k| !known.contains(k)).collect();
    assert!(stale.is_empty(), "cases for kinds that do not exist: {stale:?}");
}

/// Runs each case alone with `--dry-run` on `instance`, between two snapshots that must be
/// identical; the step must be planned with an effect that changes something. `cases` must
/// be exactly the kinds [`CASES`] gives `backend`.
fn prove(backend: &str, s: &Scratch, instance: &str, cases: &[(&str, String)], snapshot: &dyn Fn() -> String, opsctl: &dyn Fn(Opsctl) -> Opsctl) {
    let mut kinds: Vec<&str> = cases.iter().map(|(k, _)| *k).collect();
    kinds.sort();
    kinds.dedup();
    let expected = CASES.iter().find(|(b, _)| *b == backend).map(|(_, k)| k.to_vec()).unwrap_or_default();
    assert_eq!(kinds, expected, "the cases run for {backend} are not the ones CASES lists");
    for (kind, params) in cases {
        let rb = s.write("dry.yaml", &format!("name: dry\nsteps:\n  - id: c\n    {kind}: {params}\n"));
        let before = snapshot();
        let r = opsctl(s.opsctl()).args(["run", rb.to_str().unwrap(), "-i", instance, "--dry-run", "-o", "json"]).run();
        let after = snapshot();
        assert_eq!(r.code, 0, "{kind} {params}: {}\n{}", r.stdout.lines().filter(|l| l.contains("\"message\"")).collect::<Vec<_>>().join("\n"), r.stderr);
        let step = r.step("c");
        assert_eq!(step["status"], "planned", "{kind} {params}: {}", r.stdout);
        assert!(step["effect"] == "mutate" || step["effect"] == "destroy", "{kind} {params} is not a mutating case: {step}");
        assert_eq!(before, after, "the dry run of {kind} {params} changed {backend} (plan: {})", step["message"]);
    }
}

/// The snapshot sees a change: `case` run for real changes it (so an unchanged snapshot
/// after a dry run means something).
fn sees(s: &Scratch, instance: &str, (kind, params): (&str, &str), snapshot: &dyn Fn() -> String, opsctl: &dyn Fn(Opsctl) -> Opsctl) {
    let rb = s.write("dry.yaml", &format!("name: real\nsteps:\n  - id: c\n    {kind}: {params}\n"));
    let before = snapshot();
    let r = opsctl(s.opsctl()).args(["run", rb.to_str().unwrap(), "-i", instance, "--yes", "-o", "json"]).run();
    assert_eq!(r.step("c")["status"], "passed", "{kind} {params} for real: {}", r.stdout);
    assert_ne!(snapshot(), before, "the snapshot did not see {kind} {params} run for real");
}

/// Every file under `dir` with its length and a hash of its bytes, but the state directory (a dry run is recorded in
/// the history).
fn files(dir: &std::path::Path) -> String {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "state") {
                continue;
            }
            if p.is_dir() {
                out.push(format!("{}/", p.display()));
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != "dry.yaml") {
                use std::hash::{Hash, Hasher};
                let bytes = std::fs::read(&p).unwrap_or_default();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                out.push(format!("{} {} bytes, hash {:016x}", p.display(), bytes.len(), h.finish()));
            }
        }
    }
    out.sort();
    out.join("\n")
}

#[test]
fn local_kinds_change_nothing_in_a_dry_run() {
    use crate::support::server::{get_json, servers};
    let s = Scratch::new();
    s.write("keep.txt", "keep me\n");
    let hook = servers().url("/hook/dryrun-local");
    s.write("opsctl.yaml", "instances:\n  l: {}\n");
    let cases = [
        ("host.command", "{ argv: [rm, -f, keep.txt], effect: destroy }".to_string()),
        ("host.command", "{ shell: 'echo x > made.txt', effect: mutate }".to_string()),
        ("http.check", format!("{{ url: \"{hook}\", method: POST, json: {{ a: 1 }} }}")),
        ("notify.webhook", "{ url: { env: HOOK }, text: done }".to_string()),
        ("notify.slack", "{ webhook: { env: HOOK }, text: done }".to_string()),
    ];
    let snapshot = || format!("{}\n{}", files(s.path()), get_json(&servers().url("/hooks/dryrun-local")));
    prove("local", &s, "l", &cases, &snapshot, &|o| o.env("HOOK", &hook));
    assert!(s.path().join("keep.txt").exists());
    sees(&s, "l", ("host.command", "{ argv: [rm, -f, keep.txt], effect: destroy }"), &snapshot, &|o| o);
    sees(&s, "l", ("notify.webhook", "{ url: { env: HOOK }, text: done }"), &snapshot, &|o| o.env("HOOK", &hook));
}

#[test]
fn postgres_kinds_change_nothing_in_a_dry_run() {
    if crate::support::postgres::shared().is_none() {
        return;
    }
    // A server of its own: other tests create and drop databases on the shared one.
    let pg = &crate::support::postgres::Cluster::start(&[]).expect("a server starts");
    let db = pg.create_db("t_dryall");
    pg.psql(
        &db,
        "CREATE TABLE items (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false); \
         INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 3000) g; UPDATE items SET v = v || 'x' WHERE id % 2 = 0; ANALYZE items",
    );
    let s = Scratch::new();
    s.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  pg:\n    postgres: {{ url: {{ env: PG_URL }} }}\n    backups: {{ dir: \"{}\", keep_last: 1 }}\n",
            s.path().join("backups").display()
        ),
    );
    let url = pg.url(&db);
    let with_url = |o: Opsctl| o.env("PG_URL", &url);
    // Two backups, so retention has one to delete.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = with_url(s.opsctl()).args(["backup", "-i", "pg", "-o", "json"]).run();
        r.code(0);
        ids.push(r.step("postgres")["outputs"]["id"].as_str().unwrap().to_string());
    }
    // A long query for the terminator to find.
    let _long = pg.background(&db, "postgres", "SELECT pg_sleep(600);");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    crate::support::postgres::eventually("the long query runs", || {
        pg.psql("postgres", &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE 'SELECT pg_sleep(600)%'")) == "1"
    });
    // Statistics settle before the first snapshot (they are flushed after a transaction).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let snapshot = || {
        let server = pg.psql(
            "postgres",
            &format!(
                "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database; \
                 SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE 'SELECT pg_sleep(600)%'"
            ),
        );
        let tables = pg.psql(
            &db,
            "SELECT string_agg(format('%s live=%s dead=%s vacuums=%s analyzes=%s', relname, n_live_tup, n_dead_tup, vacuum_count, analyze_count), ';') FROM pg_stat_user_tables; \
             SELECT string_agg(format('%s %s', c.relname, c.relfilenode), ';' ORDER BY c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'; \
             SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM items",
        );
        format!("{server}\n{tables}\n{}", files(s.path()))
    };
    let cases = [
        ("postgres.backup", "{}".to_string()),
        ("postgres.vacuum", "{ table: items, full: true }".to_string()),
        ("postgres.vacuum", "{}".to_string()),
        ("postgres.reindex", "{ table: items }".to_string()),
        ("postgres.terminate_long_queries", "{ older_than: 1s }".to_string()),
        ("postgres.restore", format!("{{ from: \"{}\" }}", ids[0])),
        ("postgres.restore_test", "{}".to_string()),
        ("backup.prune", "{}".to_string()),
    ];
    prove("postgres", &s, "pg", &cases, &snapshot, &|o| with_url(o).arg_yes());
    sees(
        &s,
        "pg",
        ("postgres.vacuum", "{ table: items }"),
        &|| {
            std::thread::sleep(std::time::Duration::from_millis(1100));
            snapshot()
        },
        &with_url,
    );
}

#[test]
fn redis_kinds_change_nothing_in_a_dry_run() {
    // A server of its own: other tests save the shared one.
    let Some(redis) = crate::support::redis::fresh("") else { return };
    let s = Scratch::new();
    s.write(
        "opsctl.yaml",
        &format!("instances:\n  r:\n    redis: {{ url: \"{}\" }}\n    backups: {{ dir: \"{}\" }}\n", redis.url(), s.path().join("backups").display()),
    );
    let snapshot = || format!("{} {}\n{}", redis.info("rdb_last_save_time").unwrap_or_default(), redis.info("rdb_saves").unwrap_or_default(), files(s.path()));
    prove("redis", &s, "r", &[("redis.backup", "{}".to_string())], &snapshot, &|o| o);
    sees(&s, "r", ("redis.backup", "{}"), &snapshot, &|o| o);
}

#[test]
fn alertmanager_kinds_change_nothing_in_a_dry_run() {
    let Some(am) = crate::support::prometheus::alertmanager() else { return };
    let s = Scratch::new();
    s.write("opsctl.yaml", &format!("instances:\n  am:\n    alertmanager: {{ url: \"{}\" }}\n", am.url()));
    // A silence to expire.
    let rb = s.write("make.yaml", "name: make\nsteps:\n  - { id: s, alertmanager.silence: { matchers: ['case=\"dryrun\"'], duration: 1h } }\n");
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "am", "-o", "json"]).run();
    r.code(0);
    let id = r.step("s")["outputs"]["id"].as_str().unwrap().to_string();
    let url = am.url();
    let snapshot = || {
        // This test's silences only: other tests silence the shared Alertmanager too.
        let ours = |s: &Value| s["matchers"].as_array().is_some_and(|m| m.iter().any(|m| m["name"] == "case" && m["value"].as_str().is_some_and(|v| v.starts_with("dryrun"))));
        let mut silences: Vec<Value> =
            crate::support::server::get_json(&format!("{url}/api/v2/silences")).as_array().cloned().unwrap_or_default().into_iter().filter(ours).collect();
        silences.sort_by_key(|s| s["id"].as_str().unwrap_or_default().to_string());
        silences.iter().map(|s| json!([s["id"], s["status"], s["endsAt"], s["updatedAt"]]).to_string()).collect::<Vec<_>>().join("\n")
    };
    let cases =
        [("alertmanager.silence", "{ matchers: ['case=\"dryrun-new\"'], duration: 10m }".to_string()), ("alertmanager.expire", format!("{{ id: \"{id}\" }}"))];
    prove("alertmanager", &s, "am", &cases, &snapshot, &|o| o);
    sees(&s, "am", ("alertmanager.expire", &format!("{{ id: \"{id}\" }}")), &snapshot, &|o| o);
}

#[test]
fn kubernetes_kinds_change_nothing_in_a_dry_run() {
    use crate::support::kube::{KubeEnv, NS, deployment};
    let k = KubeEnv::new();
    k.deployment("api", 2, "registry/api:v1");
    k.fake.with(|c| c.seed("deployments", deployment("api", 2, "registry/api:v2")));
    k.wait_ready("deployments", "api");
    k.fake.with(|c| {
        c.seed("configmaps", json!({"metadata": {"name": "app", "namespace": NS}, "data": {"A": "1"}}));
        c.seed("secrets", json!({"metadata": {"name": "app", "namespace": NS}, "data": {"token": "b2xk"}}));
        c.seed("nodes", crate::support::kube::node("node-2", true));
    });
    // node-2 is cordoned, for uncordon to have something to do.
    k.run("  - { id: c, k8s.cordon: { node: node-2 } }\n", &[]).code(0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let marker = k.scratch.path().join("exec-ran");
    let snapshot = || format!("{:?} {}", k.fake.with(|c| c.versions()), marker.exists());
    let cases = [
        ("k8s.scale", "{ target: api, replicas: 5 }".to_string()),
        ("k8s.scale_all", "{ replicas: 0 }".to_string()),
        ("k8s.set_image", "{ target: api, container: api, image: registry/api:v3 }".to_string()),
        ("k8s.set_resources", "{ target: api, container: api, limits: { memory: 1Gi } }".to_string()),
        ("k8s.rollout_restart", "{ target: api }".to_string()),
        ("k8s.rollout_undo", "{ target: api }".to_string()),
        ("k8s.cordon", "{ node: node-1 }".to_string()),
        ("k8s.uncordon", "{ node: node-2 }".to_string()),
        ("k8s.drain", "{ node: node-1 }".to_string()),
        ("k8s.patch", "{ target: configmap/app, patch: { data: { A: \"2\" } } }".to_string()),
        ("k8s.secret_rotate", "{ name: app, keys: { token: { generate: { length: 16 } } }, restart: [api] }".to_string()),
        ("k8s.exec", format!("{{ target: deployment/api, argv: [touch, \"{}\"], effect: mutate }}", marker.display())),
    ];
    let seen = k.fake.with(|c| c.requests.len());
    prove("kubernetes", &k.scratch, "team-a", &cases, &snapshot, &|o| o.arg_yes());
    // Every write the dry runs sent asked the API server for its dry run.
    let writes = k.fake.with(|c| c.requests[seen..].iter().filter(|r| !r.starts_with("GET ")).cloned().collect::<Vec<_>>());
    assert!(!writes.is_empty() && writes.iter().all(|w| w.contains("dryRun=All")), "a write without dryRun: {writes:?}");
    sees(&k.scratch, "team-a", ("k8s.cordon", "{ node: node-1 }"), &snapshot, &|o| o);
}

#[test]
fn compose_kinds_change_nothing_in_a_dry_run() {
    let s = Scratch::new();
    let Some(p) = crate::compose::started(&s, "dryall") else { return };
    // Deploys go through an image variable in the env file, with a previous one to roll back to.
    let text = std::fs::read_to_string(&p.file).unwrap();
    std::fs::write(&p.file, text.replacen(&format!("image: {}", crate::support::compose::BUSYBOX), "image: ${WEB_IMAGE}", 1)).unwrap();
    s.write(".env", "WEB_IMAGE=opsctl-test-busybox:1\nWEB_IMAGE_PREVIOUS=opsctl-test-busybox:2\n");
    p.inventory(&s, ", env_file: .env");
    let snapshot = || format!("{:?}\n{}", p.snapshot(), files(s.path()));
    let cases = [
        ("compose.stop", "{ services: [noisy] }".to_string()),
        ("compose.start", "{ services: [oneshot] }".to_string()),
        ("compose.restart", "{ services: [web] }".to_string()),
        ("compose.scale", "{ service: web, replicas: 4 }".to_string()),
        ("compose.env_rotate", "{ file: web.env, keys: [SECRET_TOKEN] }".to_string()),
        ("compose.up", "{}".to_string()),
        ("compose.exec", "{ service: web, argv: [rm, -rf, /var/www], effect: destroy }".to_string()),
        ("compose.deploy", "{ service: web, image: \"opsctl-test-busybox:2\" }".to_string()),
        ("compose.rollback", "{ service: web }".to_string()),
    ];
    prove("compose", &s, "app", &cases, &snapshot, &|o| o.arg_yes());
}

#[test]
fn aws_kinds_change_nothing_in_a_dry_run() {
    let Some((s, aws)) = crate::aws::setup() else { return };
    aws.table("dry-users", 20);
    aws.ecs_cluster("dry-c", &[("dryapi", 2)]);
    aws.ecs("RegisterTaskDefinition", json!({ "family": "dryapi", "containerDefinitions": [{ "name": "dryapi", "image": "dryapi:2", "memory": 128 }] }));
    aws.db_instance("dry-db", 7, false);
    aws.secrets("CreateSecret", json!({ "Name": "dry/db", "SecretString": "{\"password\": \"dry-run-original\"}" }));
    crate::aws::inventory(&s, aws, "    ecs: { cluster: dry-c }\n    rds: { instances: [dry-db] }\n");
    // A backup to restore from, and the restore file.
    let r = crate::aws::run(&s, "  - id: b\n    dynamodb.backup: { table: dry-users, name: dry-users-b }\n", &[]);
    r.code(0);
    let arn = r.step("b")["outputs"]["arn"].as_str().unwrap().to_string();
    // A drill instance (tagged by opsctl) for delete_drill to plan deleting.
    let r = crate::aws::run(&s, "  - id: d\n    rds.restore_drill: { poll: 100ms }\n", &["--yes"]);
    r.code(0);
    let drill = r.step("d")["outputs"]["instance"].as_str().unwrap().to_string();
    s.write("items.json", "{\"Items\": []}\n");
    let snapshot = || {
        let mut items: Vec<String> =
            aws.dynamodb("Scan", json!({ "TableName": "dry-users" }))["Items"].as_array().unwrap().iter().map(|i| i.to_string()).collect();
        items.sort();
        let table = &aws.dynamodb("DescribeTable", json!({ "TableName": "dry-users" }))["Table"];
        // This test's tables, backups and DB instances only (`dry-…`): the emulator is shared.
        let dry = |v: &Value| v.as_str().is_some_and(|n| n.starts_with("dry-"));
        let tables: Vec<Value> = aws.dynamodb("ListTables", json!({}))["TableNames"].as_array().unwrap().iter().filter(|t| dry(t)).cloned().collect();
        let backups: Vec<Value> = aws.dynamodb("ListBackups", json!({}))["BackupSummaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["TableName"].clone())
            .filter(|n| dry(n))
            .collect();
        let pitr = aws.dynamodb("DescribeContinuousBackups", json!({ "TableName": "dry-users" }))["ContinuousBackupsDescription"].clone();
        let services = aws.ecs("DescribeServices", json!({"cluster": "dry-c", "services": ["dryapi"]}));
        let svc = &services["services"][0];
        let dbs = aws.query("rds", "2014-10-31", &[("Action", "DescribeDBInstances")]);
        let mut db_ids: Vec<&str> = dbs.split("<DBInstanceIdentifier>").skip(1).filter_map(|p| p.split('<').next()).filter(|id| id.starts_with("dry-")).collect();
        db_ids.sort();
        let versions = aws.secrets("ListSecretVersionIds", json!({ "SecretId": "dry/db" }))["Versions"].as_array().unwrap().len();
        let current = aws.secrets("GetSecretValue", json!({ "SecretId": "dry/db" }))["SecretString"].clone();
        format!(
            "{items:?}\n{} {} {}\n{tables:?}\n{backups:?}\n{pitr}\n{} {} {}\n{db_ids:?}\n{versions} {current}\n{}",
            table["TableStatus"],
            table["ProvisionedThroughput"]["ReadCapacityUnits"],
            table["ProvisionedThroughput"]["WriteCapacityUnits"],
            svc["desiredCount"],
            svc["taskDefinition"],
            svc["deployments"].as_array().map_or(0, Vec::len),
            files(s.path())
        )
    };
    let cases = [
        ("dynamodb.backup", "{ table: dry-users }".to_string()),
        ("dynamodb.export", "{ table: dry-users }".to_string()),
        ("dynamodb.pitr", "{ table: dry-users }".to_string()),
        ("dynamodb.set_capacity", "{ table: dry-users, read: 10, write: 7 }".to_string()),
        ("dynamodb.restore", format!("{{ from_backup: \"{arn}\", table: dry-users-restored }}")),
        ("dynamodb.restore", "{ from_file: items.json, table: dry-users }".to_string()),
        ("ecs.scale", "{ service: dryapi, desired: 4 }".to_string()),
        ("ecs.deploy", "{ service: dryapi, task_definition: \"dryapi:2\" }".to_string()),
        ("ecs.rollback", "{ service: dryapi, to: \"dryapi:1\" }".to_string()),
        ("rds.restore_drill", "{}".to_string()),
        ("rds.delete_drill", format!("{{ instance: \"{drill}\" }}")),
        ("secrets.rotate", "{ secret_id: dry/db, json_key: password }".to_string()),
    ];
    prove("aws", &s, "a", &cases, &snapshot, &|o| crate::aws::creds(o).arg_yes());
}

/// `--yes`: a destructive step is planned without a terminal to confirm on.
trait Yes {
    fn arg_yes(self) -> Self;
}

impl Yes for Opsctl {
    fn arg_yes(self) -> Opsctl {
        self.args(["--yes"])
    }
}
