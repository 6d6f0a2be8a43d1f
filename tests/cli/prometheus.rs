//! The Prometheus backend against a real Prometheus (see `support::prometheus`): queries
//! judged both ways, empty answers and NaN, `for` windows, targets up and down, rules that
//! evaluate and one that cannot, an alert that fires, an unreachable server.

use serde_json::Value;

use crate::support::prometheus::{self, Prometheus};
use crate::support::{Run, Scratch};

/// Runs `steps` on instance `prom`, whose Prometheus is `url`.
fn run(url: &str, steps: &str) -> (Scratch, Run) {
    let s = Scratch::new();
    s.write("opsctl.yaml", &format!("instances:\n  prom:\n    prometheus: {{ url: \"{url}\", timeout: 10s }}\n"));
    let rb = s.write("rb.yaml", &format!("name: prom\nsteps:\n{steps}"));
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "prom", "-o", "json"]).run();
    (s, r)
}

fn status(r: &Run, id: &str) -> String {
    r.step(id)["status"].as_str().unwrap_or_default().to_string()
}

fn message(r: &Run, id: &str) -> String {
    r.step(id)["message"].as_str().unwrap_or_default().to_string()
}

/// Sets the series and waits until Prometheus has scraped them.
fn scraped(p: &Prometheus, case: &str, series: &[(&str, f64)]) {
    for (labels, v) in series {
        p.set(&format!("opsctl_test_value{{case=\"{case}\",{labels}}}"), *v);
    }
    let want: Vec<f64> = series.iter().map(|s| s.1).collect();
    p.wait_for(&format!("opsctl_test_value{{case=\"{case}\"}}"), |r| {
        let mut got: Vec<f64> = r.iter().filter_map(|s| s["value"][1].as_str()?.parse().ok()).collect();
        let mut want = want.clone();
        got.sort_by(f64::total_cmp);
        want.sort_by(f64::total_cmp);
        got == want
    });
}

#[test]
fn a_query_judges_every_series_both_ways() {
    let Some(p) = prometheus::shared() else { return };
    scraped(p, "q1", &[("n=\"a\"", 0.5), ("n=\"b\"", 0.95)]);
    let q = "opsctl_test_value{case=\\\"q1\\\"}";
    let (_s, r) = run(
        &p.url(),
        &format!(
            "  - {{ id: fine, prometheus.query: {{ query: \"{q}\", fail_above: 1 }} }}\n\
             \x20 - {{ id: warns, prometheus.query: {{ query: \"{q}\", warn_above: 0.9 }}, on_failure: continue }}\n\
             \x20 - {{ id: fails, prometheus.query: {{ query: \"{q}\", warn_above: 0.8, fail_above: 0.9 }}, on_failure: continue }}\n\
             \x20 - {{ id: below, prometheus.query: {{ query: \"{q}\", fail_below: 0.6 }}, on_failure: continue }}\n\
             \x20 - {{ id: one, prometheus.query: {{ query: \"scalar(max(opsctl_test_value{{case=\\\"q1\\\"}}))\", warn_below: 1 }}, on_failure: continue }}\n"
        ),
    );
    assert_eq!(status(&r, "fine"), "passed", "{}", r.stdout);
    assert_eq!(r.step("fine")["outputs"]["series"], 2);
    assert!(message(&r, "fine").starts_with("2 series, 0 beyond the limits; worst opsctl_test_value{"), "{}", message(&r, "fine"));
    assert_eq!(status(&r, "warns"), "warned");
    assert_eq!(status(&r, "fails"), "failed");
    let m = message(&r, "fails");
    assert!(m.contains("2 series, 1 beyond the limits; worst opsctl_test_value{") && m.contains("n=\"b\"") && m.ends_with("} = 0.95"), "{m}");
    assert_eq!(r.step("fails")["threshold"], "warn > 0.8, fail > 0.9");
    assert_eq!(r.step("fails")["value"], "0.95");
    assert_eq!(r.step("fails")["outputs"]["worst"]["labels"]["n"], "b");
    assert_eq!(r.step("fails")["outputs"]["worst"]["value"], 0.95);
    assert_eq!(status(&r, "below"), "failed");
    assert!(message(&r, "below").contains("n=\"a\"") && message(&r, "below").ends_with("= 0.5"), "{}", message(&r, "below"));
    // A scalar answer is one series without labels.
    assert_eq!(status(&r, "one"), "warned");
    assert_eq!(message(&r, "one"), "{} = 0.95");
}

#[test]
fn an_empty_answer_or_a_nan_never_passes_unless_told() {
    let Some(p) = prometheus::shared() else { return };
    let (_s, r) = run(
        &p.url(),
        "  - { id: empty, prometheus.query: { query: \"opsctl_test_value{case=\\\"none\\\"}\", fail_above: 1 }, on_failure: continue }\n\
         \x20 - { id: empty_ok, prometheus.query: { query: \"opsctl_test_value{case=\\\"none\\\"}\", on_empty: pass } }\n\
         \x20 - { id: nan, prometheus.query: { query: \"vector(0) / 0\", fail_above: 1 }, on_failure: continue }\n\
         \x20 - { id: nan_warn, prometheus.query: { query: \"vector(0) / 0\", on_nan: warn } }\n",
    );
    assert_eq!(status(&r, "empty"), "failed");
    assert_eq!(message(&r, "empty"), "query returned 0 series (on_empty: fail)");
    assert_eq!(r.step("empty")["outputs"]["series"], 0);
    assert_eq!(status(&r, "empty_ok"), "passed");
    assert_eq!(status(&r, "nan"), "failed");
    assert_eq!(message(&r, "nan"), "{} = NaN; 1 NaN (on_nan: fail)");
    assert_eq!(r.step("nan")["outputs"]["worst"]["value"], Value::Null);
    assert_eq!(status(&r, "nan_warn"), "warned");
}

#[test]
fn for_judges_every_point_of_the_window() {
    let Some(p) = prometheus::shared() else { return };
    scraped(p, "for", &[("n=\"x\"", 0.95)]);
    // Three seconds of it being high.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let q = "opsctl_test_value{case=\\\"for\\\"}";
    let (_s, r) = run(
        &p.url(),
        &format!(
            "  - {{ id: held, prometheus.query: {{ query: \"{q}\", fail_above: 0.9, for: 3s, step: 1s }}, on_failure: continue }}\n\
             \x20 - {{ id: young, prometheus.query: {{ query: \"{q}\", fail_above: 0.9, for: 1h }}, on_failure: continue }}\n"
        ),
    );
    assert_eq!(status(&r, "held"), "failed", "{}", r.stdout);
    assert!(message(&r, "held").ends_with("= 0.95 for the last 3s"), "{}", message(&r, "held"));
    // The series has not been there for an hour: it has not held for the whole window.
    assert_eq!(status(&r, "young"), "passed");
    assert!(message(&r, "young").contains("crossed the limits only for "), "{}", message(&r, "young"));
    assert!(message(&r, "young").ends_with(" of 1h, not the whole window"), "{}", message(&r, "young"));
    // Back to normal: the window no longer held at every point.
    scraped(p, "for", &[("n=\"x\"", 0.5)]);
    let (_s, r) = run(&p.url(), &format!("  - {{ id: held, prometheus.query: {{ query: \"{q}\", fail_above: 0.9, for: 3s, step: 1s }} }}\n"));
    assert_eq!(status(&r, "held"), "passed", "{}", r.stdout);
}

#[test]
fn query_mistakes_say_what_is_wrong() {
    let Some(p) = prometheus::shared() else { return };
    let (_s, r) = run(
        &p.url(),
        "  - { id: parse, prometheus.query: { query: \"sum(\" }, on_failure: continue }\n\
         \x20 - { id: range, prometheus.query: { query: \"up[1m]\" }, on_failure: continue }\n\
         \x20 - { id: eval, prometheus.query: { query: \"up * on() up\" }, on_failure: continue }\n",
    );
    assert_eq!(status(&r, "parse"), "failed");
    assert_eq!(r.step("parse")["error_class"], "invalid");
    assert!(message(&r, "parse").starts_with("Prometheus rejected the query: "), "{}", message(&r, "parse"));
    assert!(message(&r, "range").starts_with("the query returns a range vector"), "{}", message(&r, "range"));
    assert!(message(&r, "eval").starts_with("Prometheus could not evaluate the query: ") && message(&r, "eval").contains("many-to-many"), "{}", message(&r, "eval"));
}

#[test]
fn targets_up_and_down() {
    let Some(p) = prometheus::shared() else { return };
    let (_s, r) = run(
        &p.url(),
        "  - { id: app, prometheus.targets: { job: app } }\n\
         \x20 - { id: all, prometheus.targets: {}, on_failure: continue }\n\
         \x20 - { id: tolerated, prometheus.targets: { warn_down: 0, fail_down: 1 } }\n\
         \x20 - { id: none, prometheus.targets: { job: nosuch }, on_failure: continue }\n",
    );
    assert_eq!(status(&r, "app"), "passed", "{}", r.stdout);
    assert_eq!(message(&r, "app"), "1/1 targets of job app up");
    assert_eq!(status(&r, "all"), "failed");
    let m = message(&r, "all");
    assert!(m.starts_with("1/2 targets up; down: gone/127.0.0.1:") && m.contains("connection refused"), "{m}");
    assert_eq!(r.step("all")["outputs"]["down_targets"][0]["job"], "gone");
    assert_eq!(status(&r, "tolerated"), "warned");
    assert_eq!(status(&r, "none"), "failed");
    assert_eq!(message(&r, "none"), "no active targets of job nosuch");
}

#[test]
fn rules_that_fail_to_evaluate_and_alerts_that_fire() {
    let Some(p) = prometheus::shared() else { return };
    p.wait_for_rules(|groups| groups.iter().any(|g| g["name"] == "broken" && g["rules"][0]["health"] == "err"));
    let (_s, r) = run(
        &p.url(),
        "  - { id: app, prometheus.rules: { group: app, fail_firing: 0 } }\n\
         \x20 - { id: all, prometheus.rules: {}, on_failure: continue }\n\
         \x20 - { id: none, prometheus.rules: { group: nosuch }, on_failure: continue }\n",
    );
    assert_eq!(status(&r, "app"), "passed", "{}", r.stdout);
    assert_eq!(message(&r, "app"), "2 rule(s) in group app in 1 group(s), all evaluated without errors");
    assert_eq!(status(&r, "all"), "failed");
    let m = message(&r, "all");
    assert!(m.contains("1 failing to evaluate: broken/opsctl_test_broken: ") && m.contains("many-to-many"), "{m}");
    assert_eq!(status(&r, "none"), "failed");
    assert_eq!(message(&r, "none"), "no rules loaded in group nosuch");
    // Fire the alert.
    p.set("opsctl_test_trigger", 1.0);
    p.wait_for("ALERTS{alertname=\"OpsctlTestTriggered\",alertstate=\"firing\"}", |r| !r.is_empty());
    let (_s, r) = run(&p.url(), "  - { id: app, prometheus.rules: { group: app, warn_firing: 0, fail_firing: 1 } }\n");
    p.set("opsctl_test_trigger", 0.0);
    assert_eq!(status(&r, "app"), "warned", "{}", r.stdout);
    assert!(message(&r, "app").ends_with("; firing: 1 critical (OpsctlTestTriggered)"), "{}", message(&r, "app"));
    assert_eq!(r.step("app")["outputs"]["firing"]["critical"], 1);
}

#[test]
fn an_unreachable_prometheus_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (_s, r) = run(&format!("http://127.0.0.1:{port}"), "  - { id: q, prometheus.query: { query: up } }\n");
    r.code(1);
    assert_eq!(r.step("q")["error_class"], "unavailable");
    assert_eq!(message(&r, "q"), format!("connection refused to 127.0.0.1:{port}"));
    // An instance without Prometheus says how to add it.
    let s = Scratch::new();
    let rb = s.write("rb.yaml", "name: p\nsteps:\n  - { id: q, prometheus.targets: {} }\n");
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).run();
    assert_eq!(message(&r, "q"), "instance localhost has no Prometheus settings; add `prometheus: { url: http://prometheus:9090 }` to it in the inventory");
}

#[test]
fn check_looks_at_the_scrape_targets_of_an_instance_with_prometheus() {
    let Some(p) = prometheus::shared() else { return };
    let s = Scratch::new();
    s.write("opsctl.yaml", &format!("instances:\n  prom:\n    prometheus: {{ url: \"{}\" }}\n", p.url()));
    let r = s.opsctl().args(["check", "-i", "prom", "-o", "json"]).run();
    assert_eq!(status(&r, "targets"), "failed", "{}", r.stdout);
    assert!(message(&r, "targets").starts_with("1/2 targets up; down: gone/"), "{}", message(&r, "targets"));
    // Without `prometheus:` the step is not run.
    let r = s.opsctl().args(["check", "-i", "localhost", "-o", "json"]).run();
    // Not run and not listed: the report names the backend once as not configured.
    assert!(r.json()["steps"].as_array().unwrap().iter().all(|s| s["id"] != "targets"), "{}", r.stdout);
    assert!(r.json()["not_configured"].as_array().unwrap().contains(&serde_json::json!("prometheus")), "{}", r.stdout);
}
