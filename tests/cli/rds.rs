//! RDS against moto (through the test proxy, which answers DescribePendingMaintenanceActions
//! — moto does not — and ages snapshots on request). Free storage comes from CloudWatch
//! `FreeStorageSpace` data the tests put, as RDS would. Each test names its own DB instances.

use serde_json::json;

use crate::aws::{inventory, run, setup};
use crate::support::Run;
use crate::support::aws::Aws;

fn status(r: &Run, id: &str) -> String {
    r.step(id)["status"].as_str().unwrap_or_default().to_string()
}

fn message(r: &Run, id: &str) -> String {
    r.step(id)["message"].as_str().unwrap_or_default().to_string()
}

fn free_storage(aws: &Aws, id: &str, bytes: u64) {
    let bytes = bytes.to_string();
    aws.cloudwatch(&[
        ("Action", "PutMetricData"),
        ("Namespace", "AWS/RDS"),
        ("MetricData.member.1.MetricName", "FreeStorageSpace"),
        ("MetricData.member.1.Value", &bytes),
        ("MetricData.member.1.Unit", "Bytes"),
        ("MetricData.member.1.Dimensions.member.1.Name", "DBInstanceIdentifier"),
        ("MetricData.member.1.Dimensions.member.1.Value", id),
    ]);
}

#[test]
fn instances_status_storage_maintenance_and_backups() {
    let Some((s, aws)) = setup() else { return };
    const GIB: u64 = 1 << 30;
    aws.db_instance("rds-a1", 7, true);
    free_storage(aws, "rds-a1", GIB);
    aws.db_instance("rds-a2", 0, false);
    free_storage(aws, "rds-a2", 15 * GIB);
    aws.db_instance("rds-a3", 7, true);
    aws.rds_control(json!({"op": "maintenance", "instance": "rds-a3", "action": "system-update", "description": "New Operating System update is available", "auto_applied_after": "2026-12-07T00:00:00Z"}));
    aws.db_instance("rds-a4", 7, false);
    free_storage(aws, "rds-a4", 10 * GIB);
    inventory(&s, aws, "    rds: { instances: [rds-a4] }\n");
    let r = run(
        &s,
        "  - { id: full, rds.instances: { instances: [rds-a1] }, on_failure: continue }\n\
         \x20 - { id: nobackups, rds.instances: { instances: [rds-a2] } }\n\
         \x20 - { id: multi, rds.instances: { instances: [rds-a2], expect_multi_az: true, min_backup_retention_days: 0 } }\n\
         \x20 - { id: maint, rds.instances: { instances: [rds-a3] } }\n\
         \x20 - { id: default, rds.instances: {} }\n\
         \x20 - { id: nope, rds.instances: { instances: [rds-none] }, on_failure: continue }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "full"), "failed", "{}", r.stdout);
    assert!(message(&r, "full").starts_with("rds-a1: 1.0 GiB free of 20.0 GiB (5.0%)"), "{}", message(&r, "full"));
    assert_eq!(r.step("full")["outputs"]["instances"]["rds-a1"]["free_percent"], 5.0);
    assert_eq!(status(&r, "nobackups"), "warned");
    assert_eq!(message(&r, "nobackups"), "rds-a2: automated backups are off");
    assert_eq!(message(&r, "multi"), "rds-a2: not Multi-AZ");
    assert_eq!(status(&r, "maint"), "warned");
    assert_eq!(
        message(&r, "maint"),
        "rds-a3: free storage unknown: no FreeStorageSpace data in the last 15m (on_no_storage_data: warn), pending maintenance: system-update: New Operating System update is available (applied after 2026-12-07T00:00:00Z)"
    );
    assert_eq!(status(&r, "default"), "passed");
    assert_eq!(message(&r, "default"), "1 DB instance available");
    assert_eq!(r.step("default")["outputs"]["instances"]["rds-a4"]["status"], "available");
    assert!(message(&r, "nope").starts_with("DB instance rds-none does not exist [region us-east-1"), "{}", message(&r, "nope"));
}

#[test]
fn the_newest_snapshot_is_young_enough() {
    let Some((s, aws)) = setup() else { return };
    aws.db_instance("rds-b1", 7, false);
    aws.query("rds", "2014-10-31", &[("Action", "CreateDBSnapshot"), ("DBInstanceIdentifier", "rds-b1"), ("DBSnapshotIdentifier", "rds-b1-manual")]);
    aws.rds_control(json!({"op": "snapshot_age", "snapshot": "rds-b1-manual", "age_seconds": 3 * 86400}));
    inventory(&s, aws, "    rds: { instances: [rds-b1] }\n");
    let r = run(
        &s,
        "  - { id: any, rds.snapshots: { max_age: 1h } }\n\
         \x20 - { id: manual, rds.snapshots: { type: manual }, on_failure: continue }\n\
         \x20 - { id: nope, rds.snapshots: { instances: [rds-none] }, on_failure: continue }\n",
        &[],
    );
    r.code(1);
    assert_eq!(status(&r, "any"), "passed", "{}", r.stdout);
    assert!(message(&r, "any").starts_with("rds-b1: rds:rds-b1-"), "{}", message(&r, "any"));
    assert!(message(&r, "any").contains("(automated), "), "{}", message(&r, "any"));
    assert!(r.step("any")["outputs"]["age_seconds"].as_u64().unwrap() < 600);
    assert_eq!(status(&r, "manual"), "failed");
    assert!(message(&r, "manual").starts_with("rds-b1: newest snapshot rds-b1-manual (manual) is 3d"), "{}", message(&r, "manual"));
    assert!(message(&r, "manual").ends_with("old, older than 1d2h"), "{}", message(&r, "manual"));
    assert_eq!(r.step("manual")["outputs"]["snapshot"], "rds-b1-manual");
    assert!(message(&r, "nope").starts_with("DB instance rds-none does not exist"), "{}", message(&r, "nope"));
}

#[test]
fn a_restore_drill_measures_rto_and_rpo_and_is_deleted_even_when_a_later_step_fails() {
    let Some((s, aws)) = setup() else { return };
    aws.db_instance("rds-c1", 7, false);
    inventory(&s, aws, "    rds: { instances: [rds-c1] }\n");
    let exists = |id: &str| {
        let out = aws.query("rds", "2014-10-31", &[("Action", "DescribeDBInstances")]);
        out.contains(&format!("<DBInstanceIdentifier>{id}</DBInstanceIdentifier>"))
    };
    let steps = "  - { id: drill, rds.restore_drill: { poll: 100ms } }\n\
                 \x20 - { id: rows, assert: { that: \"{{ steps.drill.port == 5432 and false }}\", message: \"the restored database fails its row count\" } }\n\
                 \x20 - { id: cleanup, always: true, rds.delete_drill: { instance: \"{{ steps.drill.instance }}\" } }\n";
    // The dry run restores nothing.
    let r = run(&s, steps, &["--dry-run"]);
    assert_eq!(status(&r, "drill"), "planned", "{}", r.stdout);
    assert!(message(&r, "drill").starts_with("would restore rds:rds-c1-"), "{}", message(&r, "drill"));
    assert!(!aws.query("rds", "2014-10-31", &[("Action", "DescribeDBInstances")]).contains("rds-c1-drill-"), "the dry run created no drill instance");

    // Deleting is `destroy`: a cron job runs the drill with --yes.
    let r = run(&s, steps, &["--yes"]);
    r.code(1);
    assert_eq!(status(&r, "drill"), "passed", "{}", r.stdout);
    let scratch = r.step("drill")["outputs"]["instance"].as_str().unwrap().to_string();
    assert!(scratch.starts_with("rds-c1-drill-"), "{scratch}");
    assert!(message(&r, "drill").contains("(RTO); the snapshot was "), "{}", message(&r, "drill"));
    assert!(r.step("drill")["outputs"]["endpoint"].as_str().unwrap().ends_with(":5432"));
    assert!(r.step("drill")["outputs"]["rpo_seconds"].as_u64().unwrap() < 600);
    assert_eq!(status(&r, "rows"), "failed");
    assert_eq!(status(&r, "cleanup"), "passed", "{}", message(&r, "cleanup"));
    assert!(!exists(&scratch), "the drill instance is gone");
    assert!(exists("rds-c1"), "the source is untouched");

    // An instance that is not a drill is never deleted.
    let r = run(&s, "  - { id: del, rds.delete_drill: { instance: rds-c1 } }\n", &["--yes"]);
    r.code(1);
    assert_eq!(message(&r, "del"), "refusing to delete rds-c1: it is not an opsctl drill (no `opsctl:drill` tag); nothing was deleted");
    assert!(exists("rds-c1"));
}

#[test]
fn a_drill_that_never_becomes_available_deletes_its_instance() {
    let Some((s, aws)) = setup() else { return };
    aws.db_instance("rds-d1", 7, false);
    aws.rds_control(json!({"op": "hold", "prefix": "rds-d1-drill-"}));
    inventory(&s, aws, "    rds: { instances: [rds-d1] }\n");
    let r = run(&s, "  - { id: drill, rds.restore_drill: { wait_timeout: 1s, poll: 200ms } }\n", &[]);
    r.code(1);
    assert_eq!(r.step("drill")["error_class"], "timeout");
    let m = message(&r, "drill");
    assert!(m.starts_with("the drill instance rds-d1-drill-") && m.contains("was not available after 1s (status creating); rds-d1-drill-") && m.ends_with("is being deleted"), "{m}");
    let all = aws.query("rds", "2014-10-31", &[("Action", "DescribeDBInstances")]);
    assert!(!all.contains("rds-d1-drill-"), "the drill instance was deleted");
}
