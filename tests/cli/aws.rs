//! The AWS backend against moto's server (through the test proxy): every step kind, backup
//! and restore round trips on both paths, the S3 store, faults, errors, secrets, leases.
//! Each test names its own tables, buckets, secrets and metrics: the emulator is shared.

use serde_json::{Value, json};

use crate::support::aws::{self, Aws};
use crate::support::{Run, Scratch};

pub(crate) fn setup() -> Option<(Scratch, &'static Aws)> {
    let aws = aws::shared()?;
    Some((Scratch::new(), aws))
}

/// An inventory with instance `a` on the emulator in us-east-1, a local backup store, and
/// `extra` lines (indented under the instance).
pub(crate) fn inventory(s: &Scratch, aws: &Aws, extra: &str) {
    s.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  a:\n    aws: {}\n    backups: {{ dir: \"{}\", keep_last: 5 }}\n{extra}",
            aws.settings("us-east-1"),
            s.path().join("backups").display()
        ),
    );
}

pub(crate) fn creds(o: crate::support::Opsctl) -> crate::support::Opsctl {
    o.env("AWS_ACCESS_KEY_ID", "test").env("AWS_SECRET_ACCESS_KEY", "test")
}

pub(crate) fn run(s: &Scratch, steps: &str, extra: &[&str]) -> Run {
    let rb = s.write("rb.yaml", &format!("name: t\nsteps:\n{steps}"));
    creds(s.opsctl()).args(["run", rb.to_str().unwrap(), "-i", "a", "-o", "json"]).args(extra).run()
}

fn cmd(s: &Scratch, args: &[&str]) -> Run {
    creds(s.opsctl()).args(args).run()
}

#[test]
fn table_status_and_pitr() {
    let Some((s, aws)) = setup() else { return };
    aws.table("ts-users", 12);
    inventory(&s, aws, "");
    let r = run(&s, "  - id: t\n    dynamodb.table_status: { table: ts-users }\n", &[]);
    r.code(0);
    let t = r.step("t");
    assert_eq!(t["outputs"]["table_status"], "ACTIVE");
    assert_eq!(t["outputs"]["item_count"], 12);
    assert_eq!(t["outputs"]["billing_mode"], "provisioned");
    assert_eq!(t["outputs"]["read_capacity"], 5);
    assert_eq!(t["outputs"]["pitr"], false);
    assert!(t["outputs"]["arn"].as_str().unwrap().contains("table/ts-users"));
    assert!(t["message"].as_str().unwrap().starts_with("ts-users is ACTIVE: 12 items"), "{t}");

    // Point-in-time recovery is required but off: a failure that says so.
    let r = run(&s, "  - id: t\n    dynamodb.table_status: { table: ts-users, expect_pitr: true }\n", &[]);
    r.code(1);
    assert!(r.step("t")["message"].as_str().unwrap().starts_with("point-in-time recovery is off"));

    // A dry run plans and changes nothing; then it is turned on, once.
    let r = run(&s, "  - id: p\n    dynamodb.pitr: { table: ts-users }\n", &["--dry-run"]);
    r.code(0);
    assert_eq!(r.step("p")["message"], "would turn point-in-time recovery on for ts-users");
    let pitr = |aws: &Aws| aws.dynamodb("DescribeContinuousBackups", json!({ "TableName": "ts-users" }))["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"].clone();
    assert_eq!(pitr(aws), "DISABLED");
    let r = run(&s, "  - id: p\n    dynamodb.pitr: { table: ts-users }\n", &[]);
    r.code(0);
    assert_eq!(r.step("p")["outputs"]["enabled_now"], true);
    assert!(r.step("p")["outputs"]["earliest_restorable"].as_str().is_some());
    assert_eq!(pitr(aws), "ENABLED");
    let r = run(&s, "  - id: p\n    dynamodb.pitr: { table: ts-users }\n", &[]);
    assert_eq!(r.step("p")["outputs"]["enabled_now"], false);
    run(&s, "  - id: t\n    dynamodb.table_status: { table: ts-users, expect_pitr: true }\n", &[]).code(0);
}

#[test]
fn set_capacity_plans_then_changes() {
    let Some((s, aws)) = setup() else { return };
    aws.table("cap-users", 1);
    inventory(&s, aws, "");
    let step = "  - id: c\n    dynamodb.set_capacity: { table: cap-users, read: 10, write: 7 }\n";
    let r = run(&s, step, &["--dry-run"]);
    r.code(0);
    assert_eq!(r.step("c")["message"], "would change cap-users: provisioned 5 RCU / 5 WCU → provisioned 10 RCU / 7 WCU");
    let rcu = |aws: &Aws| aws.dynamodb("DescribeTable", json!({ "TableName": "cap-users" }))["Table"]["ProvisionedThroughput"]["ReadCapacityUnits"].clone();
    assert_eq!(rcu(aws), 5, "a dry run changes nothing");
    let r = run(&s, step, &[]);
    r.code(0);
    assert_eq!(r.step("c")["outputs"]["previous"], "provisioned 5 RCU / 5 WCU");
    assert_eq!(r.step("c")["outputs"]["current"], "provisioned 10 RCU / 7 WCU");
    assert_eq!(rcu(aws), 10);
    // Again: nothing to do, and it says so.
    assert!(run(&s, step, &[]).step("c")["message"].as_str().unwrap().contains("already provisioned 10 RCU / 7 WCU"));
    let r = run(&s, "  - id: c\n    dynamodb.set_capacity: { table: cap-users, billing_mode: on_demand }\n", &[]);
    r.code(0);
    assert_eq!(r.step("c")["outputs"]["current"], "on-demand");
    // Parameters that contradict each other are refused before anything runs.
    let r = run(&s, "  - id: c\n    dynamodb.set_capacity: { table: cap-users }\n", &[]);
    r.code(2).stderr_has("give `read`/`write` or `billing_mode`");
}

#[test]
fn on_demand_backup_then_restore_into_a_new_table() {
    let Some((s, aws)) = setup() else { return };
    aws.table("odb-users", 60);
    inventory(&s, aws, "");
    let r = run(&s, "  - id: b\n    dynamodb.backup: { table: odb-users, name: odb-users-before }\n", &[]);
    r.code(0);
    let arn = r.step("b")["outputs"]["arn"].as_str().unwrap().to_string();
    assert_eq!(r.step("b")["outputs"]["name"], "odb-users-before");
    assert!(r.step("b")["message"].as_str().unwrap().contains("(AVAILABLE"), "{}", r.stdout);

    aws.delete_items("odb-users", 0..20);
    assert_eq!(aws.count("odb-users"), 40);

    let restore = format!("  - id: r\n    dynamodb.restore: {{ from_backup: \"{arn}\", table: odb-users-restored }}\n");
    let r = run(&s, &restore, &["--dry-run"]);
    r.code(0);
    assert_eq!(r.step("r")["message"], format!("would restore backup {arn} into a new table odb-users-restored"));
    let r = run(&s, &restore, &[]);
    r.code(0);
    assert_eq!(r.step("r")["outputs"]["item_count"], 60);
    assert!(r.step("r")["message"].as_str().unwrap().contains("60 items, as many as odb-users had at backup time"), "{}", r.stdout);
    assert_eq!(aws.count("odb-users-restored"), 60);

    // DynamoDB never restores over a table: a clear refusal.
    let r = run(&s, &restore, &[]);
    r.code(1);
    assert!(r.step("r")["message"].as_str().unwrap().starts_with("table odb-users-restored already exists"));
    // A backup that does not exist.
    let r = run(&s, "  - id: r\n    dynamodb.restore: { from_backup: \"arn:aws:dynamodb:us-east-1:123456789012:table/x/backup/01234567890123-abcdefgh\", table: odb-x }\n", &[]);
    r.code(1);
    assert!(r.step("r")["message"].as_str().unwrap().starts_with("no backup arn:aws:dynamodb"), "{}", r.stdout);
}

#[test]
fn point_in_time_restore() {
    let Some((s, aws)) = setup() else { return };
    aws.table("pitr-users", 15);
    inventory(&s, aws, "");
    let step = "  - id: r\n    dynamodb.restore: { point_in_time: latest, source_table: pitr-users, table: pitr-users-copy }\n";
    let r = run(&s, step, &[]);
    r.code(1);
    assert!(r.step("r")["message"].as_str().unwrap().starts_with("point-in-time recovery is off for pitr-users"), "{}", r.stdout);
    run(&s, "  - id: p\n    dynamodb.pitr: { table: pitr-users }\n", &[]).code(0);
    let r = run(&s, step, &[]);
    r.code(0);
    assert_eq!(r.step("r")["outputs"]["item_count"], 15);
    let r = run(&s, "  - id: r\n    dynamodb.restore: { point_in_time: yesterday, source_table: pitr-users, table: x }\n", &[]);
    r.code(2).stderr_has("`point_in_time` is an RFC 3339 time");
}

#[test]
fn export_delete_restore_counts_match() {
    let Some((s, aws)) = setup() else { return };
    aws.table("exp-users", 300);
    inventory(&s, aws, "    dynamodb: { tables: [exp-users] }\n");
    let r = run(&s, "  - id: e\n    dynamodb.export: { table: exp-users, segments: 4, page_size: 40 }\n", &[]);
    r.code(0);
    let e = r.step("e");
    assert_eq!(e["outputs"]["items"], 300);
    let id = e["outputs"]["id"].as_str().unwrap().to_string();
    assert!(id.ends_with("-dynamodb-exp-users"), "{id}");
    let dir = s.path().join("backups/a").join(&id);
    let lines = std::fs::read_to_string(dir.join("items.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 300);
    let mut ids: Vec<String> = lines.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["Item"]["id"]["S"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300, "every item once, whatever the segment");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "dynamodb");
    assert_eq!(manifest["dynamodb"]["item_count"], 300);
    assert_eq!(manifest["dynamodb"]["key"], json!([{ "name": "id", "key_type": "HASH", "attribute_type": "S" }]));
    assert_eq!(manifest["files"][0]["sha256"], e["outputs"]["sha256"]);

    cmd(&s, &["backup", "verify", &id]).code(0).stdout_has("300 items");
    cmd(&s, &["backup", "list", "-i", "a"]).code(0).stdout_has(&id);

    // Lose a third of the table, then restore: every item is back.
    aws.delete_items("exp-users", 0..100);
    assert_eq!(aws.count("exp-users"), 200);
    let r = cmd(&s, &["restore", "-i", "a", "--from", &id, "--dry-run", "-o", "json"]);
    r.code(0);
    assert_eq!(r.step("restore_dynamodb")["message"], format!("would write the 300 items of {id} into exp-users, overwriting items with the same key"));
    assert_eq!(aws.count("exp-users"), 200, "a dry run writes nothing");
    // It overwrites data: refused without a TTY or --yes.
    cmd(&s, &["restore", "-i", "a", "--from", &id]).code(2);
    let r = cmd(&s, &["restore", "-i", "a", "--from", &id, "--yes", "-o", "json"]);
    r.code(0);
    let rs = r.step("restore_dynamodb");
    assert_eq!(rs["outputs"]["items_written"], 300);
    assert_eq!(rs["outputs"]["item_count"], 300);
    assert_eq!(aws.count("exp-users"), 300);

    // Into a table that does not exist: created with the export's key.
    let r = run(&s, &format!("  - id: r\n    dynamodb.restore: {{ from_export: \"{id}\", table: exp-users-new }}\n"), &["--yes"]);
    r.code(0);
    assert!(r.step("r")["message"].as_str().unwrap().contains("created exp-users-new; 300 items now"), "{}", r.stdout);
    assert_eq!(aws.count("exp-users-new"), 300);

    // `opsctl backup --what dynamodb` exports every table of the instance and verifies it.
    let r = cmd(&s, &["backup", "-i", "a", "--what", "dynamodb", "-o", "json"]);
    r.code(0);
    assert_eq!(r.step("dynamodb[0]")["outputs"]["items"], 300);
    assert!(r.step("verify_dynamodb[0]")["message"].as_str().unwrap().contains("300 items"), "{}", r.stdout);
    // And `opsctl check` looks at the tables.
    let r = cmd(&s, &["check", "-i", "a", "-o", "json"]);
    assert_eq!(r.step("dynamodb[0]")["outputs"]["table_status"], "ACTIVE", "{}", r.stdout);

    // A corrupted export is caught by verify and refused by restore, which writes nothing.
    let items = dir.join("items.jsonl");
    std::fs::write(&items, lines.replacen("user 1", "user X", 1)).unwrap();
    cmd(&s, &["backup", "verify", &id]).code(1).stdout_has("does not match its checksum");
    aws.delete_items("exp-users", 0..10);
    let r = run(&s, &format!("  - id: r\n    dynamodb.restore: {{ from_export: \"{id}\" }}\n"), &["--yes"]);
    r.code(1);
    assert!(r.step("r")["message"].as_str().unwrap().contains("refusing to restore"), "{}", r.stdout);
    assert!(r.step("r")["message"].as_str().unwrap().ends_with("nothing was written"), "{}", r.stdout);
    assert_eq!(aws.count("exp-users"), 290);
}

#[test]
fn restore_from_a_backup_json_file() {
    let Some((s, aws)) = setup() else { return };
    aws.table("file-users", 0);
    inventory(&s, aws, "");
    // What `aws dynamodb scan --table-name X > backup.json` writes.
    let items: Vec<Value> = (0..30).map(|i| json!({ "id": { "S": format!("f{i}") }, "tags": { "SS": ["a", "b"] }, "n": { "N": i.to_string() } })).collect();
    s.write("backup.json", &serde_json::to_string_pretty(&json!({ "Items": items, "Count": 30, "ScannedCount": 30, "ConsumedCapacity": null })).unwrap());
    let r = run(&s, "  - id: r\n    dynamodb.restore: { from_file: backup.json, table: file-users }\n", &["--yes"]);
    r.code(0);
    assert_eq!(r.step("r")["outputs"]["items_written"], 30);
    assert_eq!(aws.count("file-users"), 30);
    let got = aws.dynamodb("GetItem", json!({ "TableName": "file-users", "Key": { "id": { "S": "f7" } } }));
    assert_eq!(got["Item"]["n"], json!({ "N": "7" }));

    // A bad item: the file and item are named, and nothing is written.
    let mut bad = items.clone();
    bad.push(json!({ "id": { "S": "f99" } }));
    bad.push(json!({ "id": { "X": "f100" } }));
    s.write("bad.json", &json!({ "Items": bad }).to_string());
    let r = run(&s, "  - id: r\n    dynamodb.restore: { from_file: bad.json, table: file-users }\n", &["--yes"]);
    r.code(1);
    assert_eq!(r.step("r")["message"], "bad.json: item 32: unknown DynamoDB type `X`; nothing was written");
    assert_eq!(aws.count("file-users"), 30);
    // Into a table that does not exist.
    let r = run(&s, "  - id: r\n    dynamodb.restore: { from_file: backup.json, table: file-none }\n", &["--yes"]);
    r.code(1);
    assert!(r.step("r")["message"].as_str().unwrap().contains("create it first"), "{}", r.stdout);
}

#[test]
fn s3_store_round_trip_and_corruption() {
    let Some((s, aws)) = setup() else { return };
    aws.table("s3-users", 80);
    aws.bucket("s3-backups");
    inventory(&s, aws, "");
    // The same instance, with its backups in S3.
    s.write(
        "opsctl.yaml",
        &format!("instances:\n  a:\n    aws: {}\n    backups: {{ s3: {{ bucket: s3-backups, prefix: opsctl/ }}, keep_last: 1 }}\n", aws.settings("us-east-1")),
    );
    let r = run(&s, "  - id: e\n    dynamodb.export: { table: s3-users }\n", &[]);
    r.code(0);
    let id = r.step("e")["outputs"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.step("e")["outputs"]["path"], format!("s3://s3-backups/opsctl/a/{id}/"));
    let keys = aws.s3_keys("s3-backups", "opsctl/a/");
    assert_eq!(keys, vec![format!("opsctl/a/{id}/items.jsonl"), format!("opsctl/a/{id}/manifest.json")]);
    cmd(&s, &["backup", "list", "-i", "a"]).code(0).stdout_has(&id);
    cmd(&s, &["backup", "verify", &id]).code(0).stdout_has("80 items");

    aws.delete_items("s3-users", 0..80);
    let r = cmd(&s, &["restore", "-i", "a", "--from", &id, "--yes", "-o", "json"]);
    r.code(0);
    assert_eq!(r.step("restore_dynamodb")["outputs"]["item_count"], 80);
    assert_eq!(aws.count("s3-users"), 80);

    // Objects without a manifest are not a backup.
    aws.s3_put("s3-backups", "opsctl/a/20200101T000000Z-half/items.jsonl", b"{}");
    let r = cmd(&s, &["backup", "list", "-i", "a", "-o", "json"]);
    assert_eq!(r.json().as_array().unwrap().len(), 1, "{}", r.stdout);

    // Retention works on S3 too: a second export, then prune keeps the newest.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = run(&s, "  - id: e\n    dynamodb.export: { table: s3-users }\n", &[]);
    second.code(0);
    let second_id = second.step("e")["outputs"]["id"].as_str().unwrap().to_string();
    let r = cmd(&s, &["backup", "prune", "-i", "a", "--yes", "-o", "json"]);
    r.code(0);
    assert!(aws.s3_get("s3-backups", &format!("opsctl/a/{id}/manifest.json")).is_none(), "pruned");
    assert!(aws.s3_get("s3-backups", &format!("opsctl/a/{id}/items.jsonl")).is_none(), "pruned whole");
    assert!(aws.s3_get("s3-backups", &format!("opsctl/a/{second_id}/manifest.json")).is_some());

    // A replaced object is caught on download, before anything is written.
    let key = format!("opsctl/a/{second_id}/items.jsonl");
    let mut data = aws.s3_get("s3-backups", &key).unwrap();
    data[10] ^= 1;
    aws.s3_put("s3-backups", &key, &data);
    cmd(&s, &["backup", "verify", &second_id]).code(1).stdout_has("does not match its checksum");
    aws.delete_items("s3-users", 0..5);
    let r = cmd(&s, &["restore", "-i", "a", "--from", &second_id, "--yes", "-o", "json"]);
    r.code(1);
    assert_eq!(aws.count("s3-users"), 75, "nothing was written");
    // A truncated object (an upload cut short by hand, a copy gone wrong): the same.
    data[10] ^= 1;
    data.truncate(data.len() / 2);
    aws.s3_put("s3-backups", &key, &data);
    cmd(&s, &["backup", "verify", &second_id]).code(1).stdout_has("is 2625 bytes, the manifest says 5250: the file is truncated or was replaced");
    let r = cmd(&s, &["restore", "-i", "a", "--from", &second_id, "--yes", "-o", "json"]);
    r.code(1);
    assert_eq!(aws.count("s3-users"), 75, "nothing was written");

    // An export bigger than one 8 MiB part goes up as a multipart upload.
    aws.table("s3-big", 0);
    aws.put_big_items("s3-big", 250, 40_000);
    let r = run(&s, "  - id: e\n    dynamodb.export: { table: s3-big }\n", &[]);
    r.code(0);
    assert!(r.step("e")["outputs"]["bytes"].as_u64().unwrap() > 9_000_000, "{}", r.stdout);
    let big = r.step("e")["outputs"]["id"].as_str().unwrap().to_string();
    cmd(&s, &["backup", "verify", &big]).code(0).stdout_has("250 items");
    let r = run(&s, &format!("  - id: r\n    dynamodb.restore: {{ from_export: \"{big}\", table: s3-big-copy }}\n"), &["--yes"]);
    r.code(0);
    assert_eq!(aws.count("s3-big-copy"), 250);

    // A bucket that does not exist: a clear error.
    s.write("opsctl.yaml", &format!("instances:\n  a:\n    aws: {}\n    backups: {{ s3: {{ bucket: s3-nope }} }}\n", aws.settings("us-east-1")));
    let r = run(&s, "  - id: e\n    dynamodb.export: { table: s3-users }\n", &[]);
    r.code(1);
    assert!(r.step("e")["message"].as_str().unwrap().contains("s3://s3-nope/a/"), "{}", r.stdout);
}

#[test]
fn postgres_backup_in_s3_round_trips() {
    let Some((s, aws)) = setup() else { return };
    let Some(pg) = crate::support::postgres::shared() else { return };
    pg.create_db("t_s3");
    pg.psql("t_s3", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g; ANALYZE t");
    aws.bucket("pg-backups");
    s.write(
        "opsctl.yaml",
        &format!("instances:\n  a:\n    aws: {}\n    postgres: {{ url: {{ env: PG_URL }} }}\n    backups: {{ s3: {{ bucket: pg-backups }} }}\n", aws.settings("us-east-1")),
    );
    let pg_cmd = |args: &[&str]| creds(s.opsctl()).args(args).env("PG_URL", &pg.url("t_s3")).run();
    let r = pg_cmd(&["backup", "-i", "a", "-o", "json"]);
    r.code(0);
    let id = r.step("postgres")["outputs"]["id"].as_str().unwrap().to_string();
    assert!(r.step("verify")["message"].as_str().unwrap().contains("archive entries"), "{}", r.stdout);
    assert!(aws.s3_get("pg-backups", &format!("a/{id}/postgres.dump")).is_some());
    pg.psql("t_s3", "DELETE FROM t WHERE id > 100");
    let r = pg_cmd(&["restore", "-i", "a", "--from", &id, "--yes", "-o", "json"]);
    r.code(0);
    assert_eq!(pg.psql("t_s3", "SELECT count(*) FROM t"), "500");
}

#[test]
fn throttling_and_5xx_are_retried_and_reported() {
    let Some((s, aws)) = setup() else { return };
    aws.table("thr-users", 50);
    inventory(&s, aws, "");
    // Two throttled scans: the SDK retries them, the step says so.
    aws.fault(&["DynamoDB_20120810.Scan", "thr-users"], 400, "ProvisionedThroughputExceededException", 2);
    let r = run(&s, "  - id: e\n    dynamodb.export: { table: thr-users, segments: 2 }\n", &[]);
    r.code(0);
    assert_eq!(r.step("e")["outputs"]["items"], 50);
    assert!(r.step("e")["message"].as_str().unwrap().ends_with("; AWS throttled 2 request(s), retried"), "{}", r.stdout);
    assert_eq!(aws.faults_served("DynamoDB_20120810.Scan"), 2);

    // A 500 once: retried.
    aws.fault(&["DynamoDB_20120810.DescribeTable", "thr-users"], 500, "InternalServerError", 1);
    let r = run(&s, "  - id: t\n    dynamodb.table_status: { table: thr-users }\n", &[]);
    r.code(0);
    assert!(r.step("t")["message"].as_str().unwrap().ends_with("; AWS answered 5xx to 1 request(s), retried"), "{}", r.stdout);

    // Throttled beyond the retries: a failure of class `throttled`, which `retry.on` can name.
    aws.fault(&["DynamoDB_20120810.DescribeTable", "thr-users"], 400, "ThrottlingException", 3);
    let r = run(&s, "  - id: t\n    dynamodb.table_status: { table: thr-users }\n", &[]);
    r.code(1);
    assert_eq!(r.step("t")["error_class"], "throttled");
    assert!(r.step("t")["message"].as_str().unwrap().starts_with("describing table thr-users: throttled by AWS (ThrottlingException) after the SDK's retries"), "{}", r.stdout);
    aws.fault(&["DynamoDB_20120810.DescribeTable", "thr-users"], 400, "ThrottlingException", 3);
    let r = run(&s, "  - id: t\n    retry: { attempts: 2, delay: 10ms, on: [throttled] }\n    dynamodb.table_status: { table: thr-users }\n", &[]);
    r.code(0);
    assert_eq!(r.step("t")["attempts"], 2);

    // CloudWatch speaks CBOR: a 503 there is retried too.
    aws.fault(&["DescribeAlarms", "thr-"], 503, "ServiceUnavailable", 1);
    let r = run(&s, "  - id: a\n    cloudwatch.alarms: { prefix: thr- }\n", &[]);
    r.code(0);
    assert!(r.step("a")["message"].as_str().unwrap().ends_with("; AWS answered 5xx to 1 request(s), retried"), "{}", r.stdout);
}

#[test]
fn errors_say_what_to_do() {
    let Some((s, aws)) = setup() else { return };
    aws.table("err-users", 1);
    inventory(&s, aws, "");
    let step = "  - id: t\n    dynamodb.table_status: { table: err-users }\n";
    // A table that does not exist.
    let r = run(&s, "  - id: t\n    dynamodb.table_status: { table: err-nope }\n", &[]);
    r.code(1);
    assert_eq!(r.step("t")["message"], format!("table err-nope does not exist in region us-east-1 at {} (check aws.region)", aws.endpoint()));
    // The table is in us-east-1; the instance says eu-west-1.
    s.write("opsctl.yaml", &format!("instances:\n  a:\n    aws: {}\n", aws.settings("eu-west-1")));
    let r = run(&s, step, &[]);
    r.code(1);
    assert_eq!(r.step("t")["message"], format!("table err-users does not exist in region eu-west-1 at {} (check aws.region)", aws.endpoint()));
    // No credentials anywhere (environment, files, instance metadata disabled).
    inventory(&s, aws, "");
    let rb = s.write("rb.yaml", &format!("name: t\nsteps:\n{step}"));
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "a", "-o", "json"]).run();
    r.code(1);
    assert!(r.step("t")["message"].as_str().unwrap().contains("no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, `aws.profile`, or run with a role"), "{}", r.stdout);
    assert_eq!(r.step("t")["error_class"], "invalid");
    // An endpoint nobody listens on.
    let port = crate::support::server::closed_port();
    s.write("opsctl.yaml", &format!("instances:\n  a:\n    aws: {{ region: us-east-1, endpoint_url: \"http://127.0.0.1:{port}\", max_attempts: 1 }}\n"));
    let r = run(&s, step, &[]);
    r.code(1);
    assert!(r.step("t")["message"].as_str().unwrap().starts_with("describing table err-users: cannot reach AWS"), "{}", r.stdout);
    assert_eq!(r.step("t")["error_class"], "unavailable");
    // An instance without AWS settings.
    s.write("opsctl.yaml", "instances:\n  a: {}\n");
    let r = run(&s, step, &[]);
    r.code(1);
    assert_eq!(r.step("t")["message"], "instance a has no AWS settings; add `aws: { region: us-east-1 }` to it in the inventory");
    // A typo in the inventory's aws block: file, line and column.
    s.write("opsctl.yaml", "instances:\n  a:\n    aws: { regoin: us-east-1 }\n");
    let r = run(&s, step, &[]);
    r.code(2).stderr_has("opsctl.yaml:3:12").stderr_has("unknown field `regoin`");
}

#[test]
fn secrets_rotate_and_the_canary_never_shows() {
    let Some((s, aws)) = setup() else { return };
    inventory(&s, aws, "");
    let canary = "canary-6f1d0c2b-initial-value";
    let created = aws.secrets("CreateSecret", json!({ "Name": "rot/db", "SecretString": canary }));
    let first_version = created["VersionId"].as_str().unwrap().to_string();
    // By stage: moto answers a bare GetSecretValue with the version it created first, where
    // AWS answers AWSCURRENT.
    let current = |aws: &Aws| aws.secrets("GetSecretValue", json!({ "SecretId": "rot/db", "VersionStage": "AWSCURRENT" }));

    // A dry run plans, without touching the secret.
    let step = "  - id: r\n    secrets.rotate: { secret_id: rot/db, length: 40, charset: alphanumeric_symbols }\n";
    let r = run(&s, step, &["--dry-run"]);
    r.code(0);
    assert!(r.step("r")["message"].as_str().unwrap().starts_with("would stage a new 40-character alphanumeric+symbols value as AWSPENDING of rot/db"), "{}", r.stdout);
    assert_eq!(current(aws)["SecretString"], canary);

    let r = run(&s, step, &["-o", "junit=report.xml"]);
    r.code(0);
    let out = r.step("r");
    let version = out["outputs"]["version_id"].as_str().unwrap().to_string();
    assert_eq!(out["outputs"]["previous_version_id"], first_version);
    let now = current(aws);
    let new_value = now["SecretString"].as_str().unwrap().to_string();
    assert_eq!(now["VersionId"], version.as_str());
    assert_eq!(new_value.chars().count(), 40);
    assert_ne!(new_value, canary);
    // The previous version is kept for a rollback; nothing is left pending.
    let described = aws.secrets("DescribeSecret", json!({ "SecretId": "rot/db" }));
    assert_eq!(described["VersionIdsToStages"][&first_version], json!(["AWSPREVIOUS"]));
    assert_eq!(described["VersionIdsToStages"][&version], json!(["AWSCURRENT"]));
    let previous = aws.secrets("GetSecretValue", json!({ "SecretId": "rot/db", "VersionStage": "AWSPREVIOUS" }));
    assert_eq!(previous["SecretString"], canary);

    // A value from a secret reference, into one key of a JSON secret.
    let pw_canary = "canary-pw-8e2b4f7a";
    aws.secrets("CreateSecret", json!({ "Name": "rot/app", "SecretString": json!({ "username": "app", "password": "canary-old-pw-1234" }).to_string() }));
    let rb = s.write("rb2.yaml", "name: t\nsteps:\n  - id: r\n    secrets.rotate: { secret_id: rot/app, json_key: password, value: { env: NEW_PW } }\n");
    let r2 = creds(s.opsctl()).args(["run", rb.to_str().unwrap(), "-i", "a", "-o", "json", "-v"]).env("NEW_PW", pw_canary).run();
    r2.code(0);
    let app: Value = serde_json::from_str(current_of(aws, "rot/app").as_str()).unwrap();
    assert_eq!(app, json!({ "username": "app", "password": pw_canary }));
    // A JSON key on a secret that is not JSON: refused, nothing changed.
    let r3 = run(&s, "  - id: r\n    secrets.rotate: { secret_id: rot/db, json_key: password }\n", &[]);
    r3.code(1);
    assert!(r3.step("r")["message"].as_str().unwrap().contains("is not a JSON object"), "{}", r3.stdout);
    assert_eq!(current(aws)["SecretString"], new_value.as_str());
    // A secret that does not exist.
    let r4 = run(&s, "  - id: r\n    secrets.rotate: { secret_id: rot/none }\n", &[]);
    r4.code(1);
    assert!(r4.step("r")["message"].as_str().unwrap().starts_with("secret rot/none does not exist in region us-east-1"));

    // No value — old, new, or given — appears anywhere opsctl writes.
    let junit = std::fs::read_to_string(s.path().join("report.xml")).unwrap();
    let history = std::fs::read_to_string(s.state_dir().join("history.jsonl")).unwrap();
    for text in [&r.stdout, &r.stderr, &r2.stdout, &r2.stderr, &r3.stdout, &r3.stderr, &junit, &history] {
        for secret in [canary, new_value.as_str(), pw_canary, "canary-old-pw-1234"] {
            assert!(!text.contains(secret), "a secret value leaked:\n{text}");
        }
    }
}

fn current_of(aws: &Aws, id: &str) -> String {
    aws.secrets("GetSecretValue", json!({ "SecretId": id, "VersionStage": "AWSCURRENT" }))["SecretString"].as_str().unwrap().to_string()
}

#[test]
fn cloudwatch_metric_thresholds_and_alarms() {
    let Some((s, aws)) = setup() else { return };
    inventory(&s, aws, "");
    let now = jiff::Timestamp::now();
    for (i, v) in [50.0, 85.0, 60.0].iter().enumerate() {
        let t = (now - jiff::SignedDuration::from_mins(10 * (3 - i as i64))).to_string();
        aws.cloudwatch(&[
            ("Action", "PutMetricData"),
            ("Namespace", "AWS/RDS"),
            ("MetricData.member.1.MetricName", "CPUUtilization"),
            ("MetricData.member.1.Dimensions.member.1.Name", "DBInstanceIdentifier"),
            ("MetricData.member.1.Dimensions.member.1.Value", "cw-prod"),
            ("MetricData.member.1.Value", &v.to_string()),
            ("MetricData.member.1.Unit", "Percent"),
            ("MetricData.member.1.Timestamp", &t),
        ]);
    }
    let metric = |extra: &str| {
        format!("  - id: m\n    cloudwatch.metric: {{ namespace: AWS/RDS, metric: CPUUtilization, dimensions: {{ DBInstanceIdentifier: cw-prod }}, stat: Average, period: 5m, window: 1h{extra} }}\n")
    };
    let r = run(&s, &metric(", warn_above: 80, fail_above: 90"), &[]);
    r.code(0);
    let m = r.step("m");
    assert_eq!(m["status"], "warned");
    assert_eq!(m["value"], "85%");
    assert_eq!(m["threshold"], "warn > 80, fail > 90");
    assert_eq!(m["outputs"]["datapoints"], 3);
    assert_eq!(m["outputs"]["unit"], "Percent");
    let r = run(&s, &metric(", fail_above: 80"), &[]);
    r.code(1);
    let r = run(&s, &metric(", reduce: latest, warn_above: 80"), &[]);
    assert_eq!(r.step("m")["value"], "60%");
    assert_eq!(r.step("m")["status"], "passed");
    let r = run(&s, &metric(", reduce: avg, warn_below: 70"), &[]);
    assert_eq!(r.step("m")["value"], "65%");
    assert_eq!(r.step("m")["status"], "warned");
    // No datapoints: a warning by default, a failure if asked.
    let r = run(&s, "  - id: m\n    cloudwatch.metric: { namespace: AWS/RDS, metric: CPUUtilization, dimensions: { DBInstanceIdentifier: cw-none } }\n", &[]);
    assert_eq!(r.step("m")["status"], "warned");
    assert!(r.step("m")["message"].as_str().unwrap().contains("no datapoints"));
    run(&s, "  - id: m\n    cloudwatch.metric: { namespace: AWS/RDS, metric: NoSuchMetric, missing: fail }\n", &[]).code(1);
    // Bad parameters are refused before anything runs.
    run(&s, "  - id: m\n    cloudwatch.metric: { namespace: A, metric: B, stat: Mean }\n", &[]).code(2).stderr_has("`stat` is one of Average");
    run(&s, "  - id: m\n    cloudwatch.metric: { namespace: A, metric: B, period: 1m, window: 2d }\n", &[]).code(2).stderr_has("at most 1440 datapoints");

    // Alarms: one of two in ALARM.
    for name in ["cw-team-a-cpu", "cw-team-a-latency"] {
        aws.cloudwatch(&[
            ("Action", "PutMetricAlarm"),
            ("AlarmName", name),
            ("MetricName", "CPUUtilization"),
            ("Namespace", "AWS/RDS"),
            ("Statistic", "Average"),
            ("Period", "300"),
            ("EvaluationPeriods", "1"),
            ("Threshold", "90"),
            ("ComparisonOperator", "GreaterThanThreshold"),
        ]);
    }
    let r = run(&s, "  - id: a\n    cloudwatch.alarms: { prefix: cw-team-a- }\n", &[]);
    r.code(0);
    assert_eq!(r.step("a")["message"], "none of 2 alarms cw-team-a-* in ALARM");
    aws.cloudwatch(&[("Action", "SetAlarmState"), ("AlarmName", "cw-team-a-cpu"), ("StateValue", "ALARM"), ("StateReason", "CPU above 90% for 5 minutes")]);
    let r = run(&s, "  - id: a\n    cloudwatch.alarms: { prefix: cw-team-a- }\n", &[]);
    r.code(1);
    assert_eq!(r.step("a")["message"], "1 of 2 alarms cw-team-a-* in ALARM: cw-team-a-cpu (CPU above 90% for 5 minutes)");
    assert_eq!(r.step("a")["outputs"]["firing"], json!(["cw-team-a-cpu"]));
    run(&s, "  - id: a\n    cloudwatch.alarms: { prefix: cw-team-b- }\n", &[]).code(0);
    // The instance's own alarms (`aws.alarm_prefix`): check and the deploy gate fail on them.
    s.write("opsctl.yaml", &format!("instances:\n  a:\n    aws: {}\n", aws.settings("us-east-1").replace(" }", ", alarm_prefix: cw-team-a- }")));
    for command in ["check", "gate"] {
        let r = cmd(&s, &[command, "-i", "a", "-o", "json"]);
        r.code(1);
        assert_eq!(r.step("alarms")["message"], "1 of 2 alarms cw-team-a-* in ALARM: cw-team-a-cpu (CPU above 90% for 5 minutes)", "{command}");
    }
}

#[test]
fn put_metrics_publishes_the_runs_results() {
    let Some((s, aws)) = setup() else { return };
    inventory(&s, aws, "");
    let steps = "  - id: ok\n    assert: { that: \"{{ 1 == 1 }}\" }\n  - id: bad\n    on_failure: continue\n    assert: { that: \"{{ 1 == 2 }}\" }\n  - id: publish\n    always: true\n    cloudwatch.put_metrics: { namespace: pm-opsctl }\n";
    let r = run(&s, steps, &[]);
    r.code(1);
    assert_eq!(r.step("publish")["outputs"]["published"], 6);
    assert!(r.step("publish")["message"].as_str().unwrap().contains("(1 failed step(s))"), "{}", r.stdout);
    let end = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(5)).to_string();
    let start = (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(5)).to_string();
    let stat = |metric: &str, step: Option<&str>| {
        let mut p = vec![
            ("Action", "GetMetricStatistics"),
            ("Namespace", "pm-opsctl"),
            ("MetricName", metric),
            ("StartTime", start.as_str()),
            ("EndTime", end.as_str()),
            ("Period", "60"),
            ("Statistics.member.1", "Maximum"),
            ("Dimensions.member.1.Name", "Runbook"),
            ("Dimensions.member.1.Value", "t"),
            ("Dimensions.member.2.Name", "Instance"),
            ("Dimensions.member.2.Value", "a"),
        ];
        if let Some(st) = step {
            p.push(("Dimensions.member.3.Name", "Step"));
            p.push(("Dimensions.member.3.Value", st));
        }
        let xml = aws.cloudwatch(&p);
        xml.split("<Maximum>").nth(1).and_then(|x| x.split("</Maximum>").next()).map(|v| v.parse::<f64>().unwrap())
    };
    assert_eq!(stat("RunFailed", None), Some(1.0));
    assert_eq!(stat("StepFailed", Some("bad")), Some(1.0));
    assert_eq!(stat("StepFailed", Some("ok")), Some(0.0));
    assert!(stat("StepDuration", Some("ok")).is_some());
    // A dry run publishes nothing.
    let r = run(&s, "  - id: publish\n    cloudwatch.put_metrics: { namespace: pm-dry }\n", &["--dry-run"]);
    r.code(0);
    assert!(r.step("publish")["message"].as_str().unwrap().starts_with("dry run: would publish"));
    let listed = aws.cloudwatch(&[("Action", "ListMetrics"), ("Namespace", "pm-dry")]);
    assert!(!listed.contains("<MetricName>"), "{listed}");
}

#[test]
fn a_dynamodb_lease_keeps_mutating_runs_apart() {
    let Some((s, aws)) = setup() else { return };
    aws.dynamodb(
        "CreateTable",
        json!({
            "TableName": "lease-locks",
            "AttributeDefinitions": [{ "AttributeName": "instance", "AttributeType": "S" }],
            "KeySchema": [{ "AttributeName": "instance", "KeyType": "HASH" }],
            "BillingMode": "PAY_PER_REQUEST",
        }),
    );
    let settings = aws.settings("us-east-1").replace(" }", ", lease_table: lease-locks }");
    s.write("opsctl.yaml", &format!("instances:\n  a:\n    aws: {settings}\n"));
    let rb = s.write("slow.yaml", "name: slow\nsteps:\n  - id: s\n    host.command: { argv: [sleep, \"3\"], effect: mutate }\n");
    // Another machine: its own state directory, so the local lock does not see it.
    let other = Scratch::new();
    std::fs::copy(s.path().join("opsctl.yaml"), other.path().join("opsctl.yaml")).unwrap();
    let mut first = creds(other.opsctl()).args(["run", rb.to_str().unwrap(), "-i", "a"]).command().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    crate::support::postgres::eventually("the first run holds the lease", || {
        aws.dynamodb("GetItem", json!({ "TableName": "lease-locks", "Key": { "instance": { "S": "a" } } })).get("Item").is_some()
    });
    let r = cmd(&s, &["run", rb.to_str().unwrap(), "-i", "a"]);
    r.code(3).stderr_has("instance a is locked by another run").stderr_has("(DynamoDB lease in lease-locks, expires");
    // Read-only runs do not need the lease.
    crate::procedures::passed_but_for_the_machine(&cmd(&s, &["check", "-i", "a", "-o", "json"]));
    assert!(first.wait().unwrap().success());
    let item = aws.dynamodb("GetItem", json!({ "TableName": "lease-locks", "Key": { "instance": { "S": "a" } } }));
    assert!(item.get("Item").is_none(), "released at the end of the run: {item}");

    // A lease left by a run that died expires; then the next run takes it, after watching
    // it for one renewal period (a TTL of 3 s: 1.5 s), and says so.
    let put = |aws: &aws::Aws, run: &str, expires: i64| {
        let who = json!({ "run_id": run, "runbook": "slow", "user": "ops", "host": "gone", "pid": 1, "since": "2026-01-01T00:00:00Z" }).to_string();
        let item = json!({ "instance": { "S": "a" }, "run_id": { "S": run }, "holder": { "S": who }, "expires_at": { "N": expires.to_string() }, "ttl_seconds": { "N": "3" } });
        aws.dynamodb("PutItem", json!({ "TableName": "lease-locks", "Item": item }))
    };
    put(aws, "old", jiff::Timestamp::now().as_second() + 600);
    cmd(&s, &["run", rb.to_str().unwrap(), "-i", "a"]).code(3).stderr_has("run old (slow by ops@gone, pid 1)");
    put(aws, "old", jiff::Timestamp::now().as_second() - 120);
    let r = cmd(&s, &["run", rb.to_str().unwrap(), "-i", "a"]);
    r.code(0).stderr_has("took over the expired run old (slow by ops@gone, pid 1) since 2026-01-01 00:00:00Z (DynamoDB lease in lease-locks): it expired 2m");
    r.stderr_has("was not renewed in the 1s since");
    let item = aws.dynamodb("GetItem", json!({ "TableName": "lease-locks", "Key": { "instance": { "S": "a" } } }));
    assert!(item.get("Item").is_none(), "released at the end of the run: {item}");

    // Alive, on a machine whose clock is two minutes behind: it renews every 300 ms, writing
    // expiry times that are already past by ours. Not taken over: exit 3, saying why.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                put(aws, "skewed", jiff::Timestamp::now().as_second() - 120 + 3);
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    let r = cmd(&s, &["run", rb.to_str().unwrap(), "-i", "a"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    renewer.join().unwrap();
    r.code(3).stderr_has("instance a is locked by another run").stderr_has("run skewed (slow by ops@gone, pid 1)");
    r.stderr_has("it is being renewed, though by this machine's clock it expired 1m").stderr_has("the holder's clock is behind this one's (check NTP on both)");
    let item = aws.dynamodb("GetItem", json!({ "TableName": "lease-locks", "Key": { "instance": { "S": "a" } } }));
    assert_eq!(item["Item"]["run_id"]["S"], "skewed", "still the holder's: {item}");
    aws.dynamodb("DeleteItem", json!({ "TableName": "lease-locks", "Key": { "instance": { "S": "a" } } }));
}

#[test]
fn a_profile_and_the_endpoint_from_the_environment() {
    let Some((s, aws)) = setup() else { return };
    aws.table("prof-users", 3);
    // Credentials and region from a named profile; the endpoint from $AWS_ENDPOINT_URL.
    s.write("aws-config", "[profile ops]\nregion = us-east-1\n");
    s.write("aws-credentials", "[ops]\naws_access_key_id = profkey\naws_secret_access_key = profsecret\n");
    s.write("opsctl.yaml", "instances:\n  a:\n    aws: { profile: ops }\n");
    let rb = s.write("rb.yaml", "name: t\nsteps:\n  - id: t\n    dynamodb.table_status: { table: prof-users }\n");
    let with = |profile_files: bool| {
        let mut o = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "a", "-o", "json"]).env("AWS_ENDPOINT_URL", &aws.endpoint());
        if profile_files {
            o = o.env("AWS_CONFIG_FILE", s.path().join("aws-config").to_str().unwrap()).env("AWS_SHARED_CREDENTIALS_FILE", s.path().join("aws-credentials").to_str().unwrap());
        }
        o.run()
    };
    let r = with(true);
    r.code(0);
    assert_eq!(r.step("t")["outputs"]["item_count"], 3);
    // Without the files, the profile is missing: no region and no credentials, said plainly.
    let r = with(false);
    r.code(1);
    let m = r.step("t")["message"].as_str().unwrap().to_string();
    assert!(m.contains("no AWS region") || m.contains("no AWS credentials found"), "{m}");
}
