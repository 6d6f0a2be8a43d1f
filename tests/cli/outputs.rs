//! Table, JSON and JUnit outputs, several at once; colour rules; the history.

use crate::support::server::servers;
use crate::support::Scratch;

const MIXED: &str = "name: mixed\nsteps:\n  - id: ok\n    sleep: { duration: 0s }\n  - id: warn\n    host.disk: { path: /, warn_percent: 0, fail_percent: 100 }\n  - id: bad\n    assert: { that: false, message: \"x < y & \\\"z\\\"\" }\n    on_failure: continue\n  - id: never\n    when: \"{{ false }}\"\n    sleep: { duration: 0s }\n";

#[test]
fn json_is_one_stable_document() {
    let s = Scratch::new();
    let rb = s.write("rb.yaml", MIXED);
    let run = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).run();
    run.code(1);
    let doc = run.json();
    assert_eq!(doc["schema"], "opsctl.run/v1");
    for key in ["run_id", "runbook", "runbook_source", "instance", "dry_run", "status", "exit_code", "started_at", "finished_at", "duration_ms", "user", "host", "opsctl_version", "params", "summary", "steps"] {
        assert!(doc.get(key).is_some(), "missing {key}");
    }
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["summary"], serde_json::json!({ "total": 4, "passed": 1, "warned": 1, "failed": 1, "skipped": 1, "planned": 0 }));
    let warn = &doc["steps"][1];
    for key in ["id", "name", "kind", "effect", "status", "message", "value", "threshold", "attempts", "started_at", "duration_ms", "outputs"] {
        assert!(warn.get(key).is_some(), "step lacks {key}: {warn}");
    }
    assert_eq!(doc["steps"][2]["error_class"], "failed");
}

#[test]
fn junit_is_valid_xml_with_one_testcase_per_step() {
    let s = Scratch::new();
    let rb = s.write("rb.yaml", MIXED);
    let run = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "junit"]).run();
    run.code(1);
    let doc = roxmltree::Document::parse(&run.stdout).expect("valid XML");
    let suites = doc.root_element();
    assert_eq!(suites.tag_name().name(), "testsuites");
    assert_eq!(suites.attribute("tests"), Some("4"));
    assert_eq!(suites.attribute("failures"), Some("1"));
    assert_eq!(suites.attribute("skipped"), Some("1"));
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), 4);
    assert_eq!(cases[0].attribute("name"), Some("ok (sleep)"));
    assert_eq!(cases[0].attribute("classname"), Some("opsctl.mixed.localhost"));
    let failure = cases[2].children().find(|n| n.has_tag_name("failure")).expect("a failure element");
    assert_eq!(failure.attribute("message"), Some("x < y & \"z\""));
    assert!(cases[3].children().any(|n| n.has_tag_name("skipped")));
    let out = cases[1].children().find(|n| n.has_tag_name("system-out")).unwrap();
    assert!(out.text().unwrap().starts_with("WARNING: / is "));
}

#[test]
fn several_outputs_at_once_and_files_are_written_whole() {
    let s = Scratch::new();
    let rb = s.write("rb.yaml", MIXED);
    let run = s
        .opsctl()
        .args(["run", rb.to_str().unwrap(), "-i", "localhost", "--output", "json=out/run.json", "--output", "junit=report.xml"])
        .run();
    // The report directory does not exist: a clear error, exit 2.
    run.code(2).stderr_has("cannot write report out/run.json: no such file or directory");
    std::fs::create_dir(s.path().join("out")).unwrap();
    let run = s
        .opsctl()
        .args(["run", rb.to_str().unwrap(), "-i", "localhost", "--output", "json=out/run.json", "--output", "junit=report.xml"])
        .run();
    run.code(1);
    // No stdout output was named, so the table goes there.
    run.stdout_has("STATUS").stdout_has("mixed on localhost: FAILED");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(s.path().join("out/run.json")).unwrap()).unwrap();
    assert_eq!(json["summary"]["total"], 4);
    roxmltree::Document::parse(&std::fs::read_to_string(s.path().join("report.xml")).unwrap()).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(s.path().join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("run.json")]);
}

#[test]
fn two_outputs_on_stdout_are_refused() {
    Scratch::new().opsctl().args(["check", "-i", "localhost", "-o", "json", "-o", "junit"]).run().code(2).stderr_has("only one --output can go to standard output");
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let s = Scratch::new();
    let plain = s.opsctl().args(["check", "-i", "localhost"]).run();
    assert!(!plain.stdout.contains('\x1b'), "no colour when stdout is not a terminal");
    let forced = s.opsctl().args(["check", "-i", "localhost", "--color", "always"]).run();
    assert!(forced.stdout.contains("\x1b["), "--color always colours");
    let bad = s.opsctl().args(["run", "nope.yaml", "-i", "localhost", "--color", "always"]).env("NO_COLOR", "1").run();
    assert!(bad.stderr.contains('\x1b'), "--color always wins over NO_COLOR");
    let auto = s.opsctl().args(["run", "nope.yaml", "-i", "localhost"]).env("NO_COLOR", "1").run();
    assert!(!auto.stderr.contains('\x1b'));
}

#[test]
fn quiet_prints_only_problems() {
    let s = Scratch::new();
    let rb = s.write("rb.yaml", "name: t\nsteps:\n  - sleep: { duration: 0s }\n");
    let run = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-q"]).run();
    run.code(0);
    assert_eq!(run.stdout, "");
    let rb = s.write("rb.yaml", MIXED);
    let run = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-q"]).run();
    run.code(1).stdout_has("FAIL").stdout_has("WARN");
    assert!(!run.stdout.contains("PASS "), "{}", run.stdout);
}

#[test]
fn every_run_is_in_the_history() {
    let s = Scratch::new();
    let rb = s.write(
        "rb.yaml",
        "name: hist\nparams:\n  token: { type: secret, default: { env: HIST_TOKEN } }\n  n: { type: int, default: 1 }\nsteps:\n  - id: a\n    sleep: { duration: 0s }\n  - id: b\n    host.command: { argv: [true], effect: mutate }\n",
    );
    let rb = rb.to_str().unwrap();
    s.opsctl().args(["run", rb, "-i", "localhost"]).env("HIST_TOKEN", "hist-secret-value").run().code(0);
    s.opsctl().args(["plan", rb, "-i", "localhost"]).env("HIST_TOKEN", "hist-secret-value").run().code(0);
    let url = servers().url("/status/500");
    let bad = s.write("bad.yaml", &format!("name: bad\nsteps:\n  - http.check: {{ url: \"{url}\" }}\n"));
    s.opsctl().args(["run", bad.to_str().unwrap(), "-i", "localhost"]).run().code(1);
    let h = s.history();
    assert_eq!(h.len(), 3);
    assert_eq!((h[0]["runbook"].as_str(), h[0]["status"].as_str(), h[0]["dry_run"].as_bool()), (Some("hist"), Some("passed"), Some(false)));
    assert_eq!(h[1]["dry_run"], true);
    assert_eq!(h[1]["steps"][1]["status"], "planned");
    assert_eq!(h[2]["status"], "failed");
    assert_eq!(h[0]["params"], serde_json::json!({ "token": "***", "n": 1 }));
    assert!(h[0]["user"].is_string() && h[0]["host"].is_string());
    let raw = std::fs::read_to_string(s.state_dir().join("history.jsonl")).unwrap();
    assert!(!raw.contains("hist-secret-value"));

    let listed = s.opsctl().args(["history"]).run();
    listed.code(0).stdout_has("hist").stdout_has("passed (dry run)").stdout_has("failed");
    let only_bad = s.opsctl().args(["history", "--runbook", "bad", "-o", "json"]).run();
    let runs = only_bad.json();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    let limited = s.opsctl().args(["history", "-n", "1", "-o", "json"]).run();
    assert_eq!(limited.json()[0]["runbook"], "bad");
}
