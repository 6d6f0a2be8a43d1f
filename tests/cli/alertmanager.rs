//! The Alertmanager backend against a real Alertmanager (see `support::prometheus`): alerts
//! counted both ways, a silence that covers an alert, its dry run (nothing created), expiry
//! (twice), and the mistakes.

use serde_json::json;

use crate::support::prometheus::alertmanager;
use crate::support::{Run, Scratch};

fn run(url: &str, steps: &str, extra: &[&str]) -> (Scratch, Run) {
    let s = Scratch::new();
    s.write("opsctl.yaml", &format!("instances:\n  am:\n    alertmanager: {{ url: \"{url}\" }}\n"));
    let rb = s.write("rb.yaml", &format!("name: am\nsteps:\n{steps}"));
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "am", "-o", "json"]).args(extra).run();
    (s, r)
}

fn status(r: &Run, id: &str) -> String {
    r.step(id)["status"].as_str().unwrap_or_default().to_string()
}

fn message(r: &Run, id: &str) -> String {
    r.step(id)["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn firing_alerts_are_counted_both_ways() {
    let Some(am) = alertmanager() else { return };
    am.fire(json!({"alertname": "OpsctlTestHigh", "case": "a1", "severity": "critical"}), "something is high");
    let (_s, r) = run(
        &am.url(),
        "  - { id: any, alertmanager.alerts: { matchers: ['case=\"a1\"'] }, on_failure: continue }\n\
         \x20 - { id: none, alertmanager.alerts: { matchers: ['case=\"nosuch\"'] } }\n\
         \x20 - { id: tolerated, alertmanager.alerts: { matchers: ['case=a1'], warn_above: 0, fail_above: 5 } }\n\
         \x20 - { id: regex, alertmanager.alerts: { matchers: ['case=\"a1\"', 'severity=~\"crit.*|page\"'] }, on_failure: continue }\n\
         \x20 - { id: other, alertmanager.alerts: { matchers: ['case=\"a1\"', 'severity!=\"critical\"'] } }\n",
        &[],
    );
    assert_eq!(status(&r, "any"), "failed", "{}", r.stdout);
    let m = message(&r, "any");
    assert!(m.starts_with("1 alert(s) firing matching case=\"a1\": OpsctlTestHigh {case=\"a1\", severity=\"critical\"} since "), "{m}");
    assert!(m.ends_with(" — something is high"), "{m}");
    assert_eq!(r.step("any")["outputs"]["alerts"][0]["alertname"], "OpsctlTestHigh");
    assert_eq!(r.step("any")["threshold"], "fail > 0");
    assert_eq!(status(&r, "none"), "passed");
    assert_eq!(message(&r, "none"), "no active alerts matching case=\"nosuch\"");
    assert_eq!(status(&r, "tolerated"), "warned");
    assert_eq!(status(&r, "regex"), "failed");
    assert_eq!(status(&r, "other"), "passed");
}

#[test]
fn a_silence_covers_an_alert_until_it_is_expired() {
    let Some(am) = alertmanager() else { return };
    am.fire(json!({"alertname": "OpsctlTestMaintenance", "case": "s1", "severity": "warning"}), "a restore is running");
    let steps = "  - { id: silence, alertmanager.silence: { matchers: ['case=\"s1\"'], duration: 10m } }\n\
                 \x20 - { id: quiet, alertmanager.alerts: { matchers: ['case=\"s1\"'] } }\n\
                 \x20 - { id: expire, alertmanager.expire: { id: \"{{ steps.silence.id }}\" }, always: true }\n";
    // The dry run says what it would cover and creates nothing (the alert still fires, so
    // the read step in between fails: nothing was silenced).
    let before = am.silences().len();
    let (_s, r) = run(&am.url(), steps, &["--dry-run"]);
    assert_eq!(status(&r, "silence"), "planned", "{}", r.stdout);
    assert_eq!(status(&r, "quiet"), "failed");
    assert_eq!(message(&r, "silence"), "would silence case=\"s1\" for 10m; it would cover 1 alert(s) firing now: OpsctlTestMaintenance");
    assert_eq!(am.silences().len(), before, "a dry run created a silence");
    // The real run: silenced while the run lasts, lifted at its end.
    let (_s, r) = run(&am.url(), steps, &[]);
    r.code(0);
    let m = message(&r, "silence");
    assert!(m.starts_with("silenced case=\"s1\" for 10m (until ") && m.ends_with("; it covers 1 alert(s) firing now: OpsctlTestMaintenance"), "{m}");
    let id = r.step("silence")["outputs"]["id"].as_str().unwrap().to_string();
    assert_eq!(status(&r, "quiet"), "passed", "{}", r.stdout);
    assert_eq!(message(&r, "expire"), format!("expired silence {id} (case=\"s1\")"));
    let silence = am.silences().into_iter().find(|s| s["id"] == id.as_str()).expect("the silence is kept, expired");
    assert_eq!(silence["status"]["state"], "expired");
    let run_id = r.json()["run_id"].as_str().unwrap().to_string();
    assert_eq!(silence["comment"], format!("opsctl: runbook am, run {run_id}"));
    // Firing again; expiring again is no error.
    let (_s, r) = run(
        &am.url(),
        &format!("  - {{ id: loud, alertmanager.alerts: {{ matchers: ['case=\"s1\"'] }}, on_failure: continue }}\n  - {{ id: again, alertmanager.expire: {{ id: \"{id}\" }} }}\n"),
        &[],
    );
    assert_eq!(status(&r, "loud"), "failed");
    assert_eq!(status(&r, "again"), "passed");
    assert_eq!(message(&r, "again"), format!("silence {id} (case=\"s1\") is already expired"));
}

#[test]
fn alertmanager_mistakes_say_what_is_wrong() {
    let Some(am) = alertmanager() else { return };
    let (_s, r) = run(&am.url(), "  - { id: gone, alertmanager.expire: { id: 00000000-0000-4000-8000-000000000000 } }\n", &[]);
    r.code(1);
    assert_eq!(message(&r, "gone"), format!("no silence 00000000-0000-4000-8000-000000000000 in Alertmanager at {}", am.url()));
    // A matcher that is not one is refused before anything runs.
    let (_s, r) = run(&am.url(), "  - { id: bad, alertmanager.alerts: { matchers: ['sev-erity=x'] } }\n", &[]);
    r.code(2);
    r.stderr_has("`sev-erity=x`: `sev-erity` is not a label name (letters, digits and _)");
    // A silence of everything is refused.
    let (_s, r) = run(&am.url(), "  - { id: all, alertmanager.silence: { matchers: [], duration: 1h } }\n", &[]);
    r.code(2);
    r.stderr_has("`matchers` is empty: a silence needs at least one, or it would silence everything");
    // Unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (_s, r) = run(&format!("http://127.0.0.1:{port}"), "  - { id: a, alertmanager.alerts: {} }\n", &[]);
    r.code(1);
    assert_eq!(r.step("a")["error_class"], "unavailable");
    assert_eq!(message(&r, "a"), format!("connection refused to 127.0.0.1:{port}"));
}

#[test]
fn check_looks_at_the_firing_alerts_of_an_instance_with_alertmanager() {
    let Some(am) = alertmanager() else { return };
    am.fire(json!({"alertname": "OpsctlTestDown", "case": "c1", "severity": "critical"}), "the API is down");
    let s = Scratch::new();
    s.write("opsctl.yaml", &format!("instances:\n  am:\n    alertmanager: {{ url: \"{}\" }}\n", am.url()));
    let r = s.opsctl().args(["check", "-i", "am", "-o", "json"]).run();
    assert_eq!(status(&r, "alerts"), "warned", "{}", r.stdout);
    assert_eq!(status(&r, "critical_alerts"), "failed");
    assert!(message(&r, "critical_alerts").contains("OpsctlTestDown {case=\"c1\", severity=\"critical\"}"), "{}", message(&r, "critical_alerts"));
    // The deploy gate fails on it too, and a deploy does not start.
    let r = s.opsctl().args(["gate", "-i", "am", "-o", "json"]).run();
    r.code(1);
    assert_eq!(status(&r, "critical_alerts"), "failed");
    // Another tenant's instance (its own `matchers`) does not see that alert.
    s.write("opsctl.yaml", &format!("instances:\n  other:\n    alertmanager: {{ url: \"{}\", matchers: ['case=\"someone-else\"'] }}\n", am.url()));
    let r = s.opsctl().args(["gate", "-i", "other", "-o", "json"]).run();
    r.code(0);
    assert_eq!(status(&r, "critical_alerts"), "passed");
    assert!(message(&r, "critical_alerts").contains("case=\"someone-else\""), "{}", message(&r, "critical_alerts"));
    // Without `alertmanager:` neither runs; a runbook that asks anyway is told what to add.
    let r = s.opsctl().args(["check", "-i", "localhost", "-o", "json"]).run();
    // Not run and not listed: the report names the backend once as not configured.
    assert!(r.json()["steps"].as_array().unwrap().iter().all(|s| s["id"] != "alerts"), "{}", r.stdout);
    assert!(r.json()["not_configured"].as_array().unwrap().contains(&serde_json::json!("alertmanager")), "{}", r.stdout);
    let rb = s.write("rb.yaml", "name: a\nsteps:\n  - { id: a, alertmanager.alerts: {} }\n");
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).run();
    assert_eq!(message(&r, "a"), "instance localhost has no Alertmanager settings; add `alertmanager: { url: http://alertmanager:9093 }` to it in the inventory");
}

#[test]
fn a_restore_silences_its_instance_while_it_works() {
    let Some(am) = alertmanager() else { return };
    let Some(pg) = crate::support::postgres::shared() else { return };
    pg.create_db("t_silenced_restore");
    pg.psql("t_silenced_restore", "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)");
    am.fire(json!({"alertname": "OpsctlTestRestoreNoise", "case": "r1", "severity": "critical"}), "the database is being replaced");
    let s = Scratch::new();
    s.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  pg:\n    postgres: {{ url: {{ env: PG_URL }} }}\n    backups: {{ dir: \"{}\" }}\n    alertmanager: {{ url: \"{}\", matchers: ['case=\"r1\"'] }}\n",
            s.path().join("backups").display(),
            am.url()
        ),
    );
    let url = pg.url("t_silenced_restore");
    let backup = s.opsctl().args(["backup", "-i", "pg", "-o", "json"]).env("PG_URL", &url).run();
    backup.code(0);
    let id = backup.json()["steps"][0]["outputs"]["id"].as_str().unwrap().to_string();
    let r = s.opsctl().args(["restore", "-i", "pg", "--from", &id, "--yes", "-o", "json"]).env("PG_URL", &url).run();
    r.code(0);
    assert_eq!(status(&r, "silence"), "passed", "{}", r.stdout);
    assert!(message(&r, "silence").ends_with("it covers 1 alert(s) firing now: OpsctlTestRestoreNoise"), "{}", message(&r, "silence"));
    assert_eq!(status(&r, "restore"), "passed");
    assert_eq!(status(&r, "unsilence"), "passed");
    let silence_id = r.step("silence")["outputs"]["id"].as_str().unwrap().to_string();
    let silence = am.silences().into_iter().find(|x| x["id"] == silence_id.as_str()).expect("the silence exists");
    assert_eq!(silence["status"]["state"], "expired");
    assert!(silence["comment"].as_str().unwrap().starts_with(&format!("opsctl restore of pg from {id} (run ")), "{silence}");
}
