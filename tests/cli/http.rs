//! `http.check` and `notify.*` against the local test server.

use crate::support::server::{closed_port, get_json, servers};
use crate::support::Scratch;

fn run_one(step: &str) -> (Scratch, crate::support::Run) {
    let s = Scratch::new();
    let rb = s.write("rb.yaml", &format!("name: t\nsteps:\n  - id: s\n{step}"));
    let run = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "--output", "json"]).run();
    (s, run)
}

#[test]
fn status_and_json_fields_pass() {
    let url = servers().url("/health");
    let (_s, run) = run_one(&format!(
        "    http.check:\n      url: {url}\n      expect_status: 200\n      expect_json: {{ status: healthy, checks.database.status: healthy, version: 2 }}\n      expect_body: \"(?i)healthy\"\n"
    ));
    run.code(0);
    let step = run.step("s");
    assert_eq!(step["status"], "passed");
    assert_eq!(step["outputs"]["status_code"], 200);
    assert_eq!(step["outputs"]["json"]["status"], "healthy");
    assert!(step["value"].as_str().unwrap().starts_with("200 in "));
}

#[test]
fn json_field_mismatches_are_named() {
    let url = servers().url("/degraded");
    let (_s, run) = run_one(&format!(
        "    http.check: {{ url: \"{url}\", expect_json: {{ status: healthy, checks.database.status: healthy, checks.cache.status: up }} }}\n"
    ));
    run.code(1);
    let step = run.step("s");
    assert_eq!(step["status"], "failed");
    assert_eq!(
        step["message"],
        "status is \"degraded\", expected \"healthy\"; checks.database.status is \"down\", expected \"healthy\"; checks.cache.status is missing"
    );
    assert_eq!(step["error_class"], "failed");
}

#[test]
fn a_body_that_is_not_json_fails_clearly() {
    let url = servers().url("/notjson");
    let (_s, run) = run_one(&format!("    http.check: {{ url: \"{url}\", expect_json: {{ status: healthy }} }}\n"));
    run.code(1);
    assert_eq!(run.step("s")["message"], "the body is not JSON: <html>oops</html>");
}

#[test]
fn body_regex_both_ways() {
    let url = servers().url("/text");
    let (_s, ok) = run_one(&format!("    http.check: {{ url: \"{url}\", expect_body: \"(?i)systems ok\" }}\n"));
    ok.code(0);
    let (_s, bad) = run_one(&format!("    http.check: {{ url: \"{url}\", expect_body: \"^down$\" }}\n"));
    bad.code(1);
    assert_eq!(bad.step("s")["message"], "the body does not match /^down$/: All systems OK");
}

#[test]
fn status_5xx_is_classed_for_retries() {
    let url = servers().url("/status/503");
    let (_s, run) = run_one(&format!("    http.check: {{ url: \"{url}\" }}\n"));
    run.code(1);
    let step = run.step("s");
    assert_eq!(step["message"], "status 503, expected 2xx");
    assert_eq!(step["error_class"], "http_5xx");
    let url = servers().url("/status/429");
    let (_s, run) = run_one(&format!("    http.check: {{ url: \"{url}\" }}\n"));
    assert_eq!(run.step("s")["error_class"], "throttled");
}

#[test]
fn expected_status_lists() {
    let url = servers().url("/status/204");
    let (_s, run) = run_one(&format!("    http.check: {{ url: \"{url}\", expect_status: [200, 204] }}\n"));
    run.code(0);
    let url = servers().url("/status/404");
    let (_s, run) = run_one(&format!("    http.check: {{ url: \"{url}\", expect_status: 404 }}\n"));
    run.code(0);
}

#[test]
fn latency_thresholds_warn_and_fail() {
    let url = servers().url("/slow/120");
    let (_s, warn) = run_one(&format!("    http.check: {{ url: \"{url}\", warn_latency: 50ms, fail_latency: 5s }}\n"));
    warn.code(0);
    let step = warn.step("s");
    assert_eq!(step["status"], "warned");
    assert!(step["message"].as_str().unwrap().contains("more than 50ms"), "{step}");
    assert_eq!(step["threshold"], "latency warn > 50ms, fail > 5s");
    let (_s, fail) = run_one(&format!("    http.check: {{ url: \"{url}\", warn_latency: 10ms, fail_latency: 50ms }}\n"));
    fail.code(1);
    assert_eq!(fail.step("s")["status"], "failed");
    let (_s, pass) = run_one(&format!("    http.check: {{ url: \"{url}\", warn_latency: 10s }}\n"));
    assert_eq!(pass.step("s")["status"], "passed");
}

#[test]
fn a_closed_port_is_connection_refused_not_a_panic() {
    let port = closed_port();
    let (_s, run) = run_one(&format!("    http.check: {{ url: \"http://127.0.0.1:{port}/health\" }}\n"));
    run.code(1);
    let step = run.step("s");
    assert_eq!(step["message"], format!("connection refused to 127.0.0.1:{port}"));
    assert_eq!(step["error_class"], "unavailable");
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn a_slow_answer_hits_the_step_timeout() {
    let url = servers().url("/slow/3000");
    let (_s, run) = run_one(&format!("    http.check: {{ url: \"{url}\" }}\n    timeout: 200ms\n"));
    run.code(1);
    let step = run.step("s");
    assert_eq!(step["message"], "timed out after 200ms");
    assert_eq!(step["error_class"], "timeout");
}

#[test]
fn self_signed_tls_is_refused_until_its_ca_is_trusted() {
    let url = servers().https_url("/health");
    let (_s, refused) = run_one(&format!("    http.check: {{ url: \"{url}\" }}\n"));
    refused.code(1);
    let msg = refused.step("s")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with(&format!("TLS handshake with localhost:{} failed: the certificate is not trusted", servers().https.port())), "{msg}");
    assert!(msg.contains("set `ca_file`"), "{msg}");

    let ca = servers().ca_file.display().to_string();
    let (_s, ok) = run_one(&format!("    http.check: {{ url: \"{url}\", ca_file: \"{ca}\" }}\n"));
    ok.code(0);
    let step = ok.step("s");
    let days = step["outputs"]["cert_days_left"].as_i64().unwrap();
    assert!((360..=366).contains(&days), "{step}");
    assert!(step["value"].as_str().unwrap().ends_with(&format!("cert {days}d")));

    let (_s, insecure) = run_one(&format!("    http.check: {{ url: \"{url}\", insecure: true }}\n"));
    insecure.code(0);
}

#[test]
fn a_certificate_close_to_expiry_warns_then_fails() {
    let url = servers().expiring_url("/health");
    let ca = servers().ca_file.display().to_string();
    let (_s, warn) = run_one(&format!("    http.check: {{ url: \"{url}\", ca_file: \"{ca}\" }}\n"));
    warn.code(0);
    let step = warn.step("s");
    assert_eq!(step["status"], "warned");
    let days = step["outputs"]["cert_days_left"].as_i64().unwrap();
    assert!((3..=5).contains(&days), "{step}");
    assert_eq!(step["message"], format!("the TLS certificate expires in {days} days"));
    let (_s, fail) = run_one(&format!("    http.check: {{ url: \"{url}\", ca_file: \"{ca}\", fail_cert_days: 30, warn_cert_days: 60 }}\n"));
    fail.code(1);
}

#[test]
fn headers_are_sent_including_secret_ones() {
    let url = servers().url("/echo");
    let s = Scratch::new();
    let rb = s.write(
        "rb.yaml",
        &format!("name: t\nsteps:\n  - id: s\n    http.check:\n      url: {url}\n      method: POST\n      headers: {{ X-Plain: hello, Authorization: {{ env: TEST_TOKEN }} }}\n      json: {{ a: 1 }}\n"),
    );
    let run = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).env("TEST_TOKEN", "Bearer sekrit-token-123").run();
    run.code(0);
    // The echo comes back in the outputs, where the secret is masked.
    let body = run.step("s")["outputs"]["json"].clone();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["headers"]["x-plain"], "hello");
    assert_eq!(body["headers"]["authorization"], "***");
    assert_eq!(body["body"], "{\"a\":1}");
    assert!(!run.stdout.contains("sekrit-token-123"));
}

#[test]
fn a_missing_secret_env_var_is_a_clear_error_before_the_run() {
    let url = servers().url("/echo");
    let (_s, run) = run_one(&format!("    http.check: {{ url: \"{url}\", headers: {{ Authorization: {{ env: OPSCTL_TEST_UNSET_VAR }} }} }}\n"));
    run.code(2).stderr_has("environment variable OPSCTL_TEST_UNSET_VAR is not set").stderr_has("step `s` reads it");
    // A templated name is read when the step runs.
    let (_s, run) = run_one(&format!("    http.check: {{ url: \"{url}\", headers: {{ Authorization: {{ env: \"{{{{ 'OPSCTL_TEST_' ~ 'UNSET_VAR' }}}}\" }} }} }}\n"));
    run.code(1);
    assert_eq!(run.step("s")["message"], "header Authorization: environment variable OPSCTL_TEST_UNSET_VAR is not set");
}

#[test]
fn webhook_and_slack_post_json() {
    let s = Scratch::new();
    let hook = servers().url("/hook/notify-test");
    let rb = s.write(
        "rb.yaml",
        "name: t\nsteps:\n  - id: w\n    notify.webhook: { url: { env: HOOK }, json: { event: done, instance: \"{{ instance.name }}\" } }\n  - id: sl\n    notify.slack: { webhook: { env: HOOK }, text: \"restore of {{ instance.name }} done\", channel: \"#ops\" }\n",
    );
    s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost"]).env("HOOK", &hook).run().code(0);
    let got = get_json(&servers().url("/hooks/notify-test"));
    let bodies: Vec<serde_json::Value> = got["bodies"].as_array().unwrap().iter().map(|b| serde_json::from_str(b.as_str().unwrap()).unwrap()).collect();
    assert_eq!(bodies, vec![
        serde_json::json!({ "event": "done", "instance": "localhost" }),
        serde_json::json!({ "text": "restore of localhost done", "channel": "#ops" }),
    ]);
    assert_eq!(got["headers"][0]["content-type"], "application/json");
}

#[test]
fn a_failing_webhook_fails_the_step() {
    let (_s, run) = {
        let s = Scratch::new();
        let rb = s.write("rb.yaml", "name: t\nsteps:\n  - id: s\n    notify.webhook: { url: { env: HOOK }, text: hi }\n");
        let run = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).env("HOOK", &servers().url("/status/500")).run();
        (s, run)
    };
    run.code(1);
    assert_eq!(run.step("s")["message"], "the webhook answered 500: status 500");
    assert_eq!(run.step("s")["error_class"], "http_5xx");
}

#[test]
fn an_inventory_instance_gets_its_health_endpoints_checked() {
    let s = Scratch::new();
    let base = servers().url("");
    let inv = s.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  team-a:\n    labels: {{ tier: prod }}\n    http:\n      base_url: {base}\n      headers: {{ Authorization: {{ env: TEAM_A_TOKEN }} }}\n      health:\n        - /health\n        - {{ path: /degraded, expect_json: {{ status: healthy }} }}\n        - {{ path: /status/204, expect_status: 204 }}\n"
        ),
    );
    let run = s.opsctl().args(["check", "-i", "team-a", "--config", inv.to_str().unwrap(), "-o", "json"]).env("TEAM_A_TOKEN", "tok-abcdef").run();
    run.code(1);
    let doc = run.json();
    let http: Vec<&serde_json::Value> = doc["steps"].as_array().unwrap().iter().filter(|s| s["kind"] == "http.check").collect();
    let names: Vec<&str> = http.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["GET /health", "GET /degraded", "GET /status/204"]);
    let statuses: Vec<&str> = http.iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["passed", "failed", "passed"]);
    assert_eq!(http[1]["id"], "http[1]");
    // The same check without the failing endpoint passes, from ./opsctl.yaml.
    s.write(
        "opsctl.yaml",
        &format!("instances:\n  team-a:\n    http:\n      base_url: {base}\n      health: [/health]\n"),
    );
    let r = s.opsctl().args(["check", "-i", "team-a", "-o", "json"]).run();
    crate::procedures::passed_but_for_the_machine(&r);
    assert_eq!(r.step("http[0]")["name"], "GET /health");
    assert_eq!(r.step("http[0]")["status"], "passed");
}

#[test]
fn check_all_fans_out_over_selected_instances() {
    let s = Scratch::new();
    let base = servers().url("");
    let inv = s.write(
        "opsctl.yaml",
        &format!("instances:\n  a:\n    labels: {{ tier: prod }}\n    http: {{ base_url: \"{base}\", health: [/health] }}\n  b:\n    labels: {{ tier: prod }}\n    http: {{ base_url: \"{base}\", health: [/status/500] }}\n  c:\n    labels: {{ tier: dev }}\n"),
    );
    let run = s.opsctl().args(["check", "--all", "--selector", "tier=prod", "--config", inv.to_str().unwrap(), "-o", "json"]).run();
    run.code(1);
    let doc = run.json();
    assert_eq!(doc["schema"], "opsctl.fleet/v1");
    assert_eq!(doc["exit_code"], 1);
    let docs = &doc["runs"];
    let instances: Vec<&str> = docs.as_array().unwrap().iter().map(|d| d["instance"].as_str().unwrap()).collect();
    assert_eq!(instances, ["a", "b"]);
    let http = |d: &serde_json::Value| d["steps"].as_array().unwrap().iter().find(|s| s["id"] == "http[0]").unwrap()["status"].clone();
    assert_eq!(http(&docs[0]), "passed");
    assert_eq!(http(&docs[1]), "failed");
    assert_eq!(docs[1]["status"], "failed");
    // a passed, unless this busy machine failed its own host checks (the same for both).
    let host_failed = docs[0]["steps"].as_array().unwrap().iter().any(|s| s["status"] == "failed");
    assert_eq!(doc["counts"], if host_failed { serde_json::json!({ "failed": 2 }) } else { serde_json::json!({ "passed": 1, "failed": 1 }) });
}
