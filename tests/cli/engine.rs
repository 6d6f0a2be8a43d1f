//! The engine through the binary: order, parallel bounds, retries, failure handling,
//! confirmation, dry runs, interrupts, locks.

use std::time::{Duration, Instant};

use crate::support::server::{get_json, servers};
use crate::support::{Run, Scratch};

fn run_rb(s: &Scratch, text: &str, extra: &[&str]) -> Run {
    let rb = s.write("rb.yaml", text);
    s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).args(extra).run()
}

fn statuses(run: &Run) -> Vec<(String, String)> {
    run.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn parallel_blocks_are_bounded_by_the_parallel_flag() {
    let s = Scratch::new();
    let url = servers().url("/concurrent/par3/150");
    let mut text = String::from("name: t\nsteps:\n  - parallel:\n");
    for i in 0..9 {
        text.push_str(&format!("      - id: c{i}\n        http.check: {{ url: \"{url}\" }}\n"));
    }
    let run = run_rb(&s, &text, &["--parallel", "3"]);
    run.code(0);
    let stats = get_json(&servers().url("/stats/par3"));
    assert_eq!(stats["count"], 9);
    assert_eq!(stats["max"], 3, "at most --parallel requests at once, and the bound is reached");
}

#[test]
fn for_each_inside_parallel_shares_the_same_bound() {
    let s = Scratch::new();
    let url = servers().url("/concurrent/fe2/100");
    let text = format!(
        "name: t\nsteps:\n  - parallel:\n      - id: a\n        for_each: [1, 2, 3, 4]\n        http.check: {{ url: \"{url}\" }}\n      - id: b\n        for_each: [1, 2, 3]\n        http.check: {{ url: \"{url}\" }}\n"
    );
    run_rb(&s, &text, &["--parallel", "2"]).code(0);
    let stats = get_json(&servers().url("/stats/fe2"));
    assert_eq!(stats["count"], 7);
    assert_eq!(stats["max"], 2);
}

#[test]
fn retries_happen_on_allowed_classes_only() {
    let s = Scratch::new();
    // Fails twice with 503, then passes: three tries.
    let url = servers().url("/flaky/retry-a/2");
    let run = run_rb(&s, &format!("name: t\nsteps:\n  - id: h\n    http.check: {{ url: \"{url}\" }}\n    retry: {{ attempts: 5, delay: 10ms, on: [http_5xx] }}\n"), &[]);
    run.code(0);
    let h = run.step("h");
    assert_eq!(h["attempts"], 3);
    assert_eq!(h["message"].as_str().unwrap(), format!("GET {url} answered 200 (after 3 tries)"));

    // A 503 is not a timeout: no retry.
    let url = servers().url("/flaky/retry-b/2");
    let run = run_rb(&s, &format!("name: t\nsteps:\n  - id: h\n    http.check: {{ url: \"{url}\" }}\n    retry: {{ attempts: 5, delay: 10ms, on: [timeout] }}\n"), &[]);
    run.code(1);
    assert_eq!(run.step("h")["attempts"], 1);

    // Out of attempts: the last failure is reported.
    let url = servers().url("/flaky/retry-c/10");
    let run = run_rb(&s, &format!("name: t\nsteps:\n  - id: h\n    http.check: {{ url: \"{url}\" }}\n    retry: {{ attempts: 3, delay: 10ms }}\n"), &[]);
    run.code(1);
    assert_eq!(run.step("h")["attempts"], 3);
    assert_eq!(run.step("h")["message"], "status 503, expected 2xx (after 3 tries)");
}

#[test]
fn retry_waits_grow_exponentially() {
    let s = Scratch::new();
    let url = servers().url("/flaky/retry-d/3");
    // Waits of ~100ms, ~200ms, ~400ms (±20%): at least 0.56s in all.
    let started = Instant::now();
    let run = run_rb(&s, &format!("name: t\nsteps:\n  - id: h\n    http.check: {{ url: \"{url}\" }}\n    retry: {{ attempts: 4, delay: 100ms, backoff: 2 }}\n"), &["-v"]);
    run.code(0);
    assert!(started.elapsed() >= Duration::from_millis(560), "{:?}", started.elapsed());
    assert_eq!(run.stderr.matches("retrying in").count(), 3, "{}", run.stderr);
}

#[test]
fn an_abort_skips_the_rest_but_not_always_steps() {
    let s = Scratch::new();
    let run = run_rb(
        &s,
        "name: t\nsteps:\n  - id: a\n    assert: { that: false, message: broken }\n  - id: b\n    sleep: { duration: 0s }\n  - id: cleanup\n    always: true\n    sleep: { duration: 0s }\n",
        &[],
    );
    run.code(1);
    assert_eq!(statuses(&run), pairs(&[("a", "failed"), ("b", "skipped"), ("cleanup", "passed")]));
    assert_eq!(run.step("b")["message"], "not run: an earlier step failed");
    assert_eq!(run.step("a")["message"], "broken");
}

#[test]
fn continue_warn_and_run_on_failure() {
    let s = Scratch::new();
    let run = run_rb(
        &s,
        "name: t\nsteps:\n  - id: a\n    assert: { that: false }\n    on_failure: continue\n  - id: b\n    assert: { that: false }\n    on_failure: warn\n  - id: c\n    sleep: { duration: 0s }\n",
        &[],
    );
    run.code(1);
    assert_eq!(statuses(&run), pairs(&[("a", "failed"), ("b", "warned"), ("c", "passed")]));

    let run = run_rb(
        &s,
        "name: t\nsteps:\n  - id: a\n    assert: { that: true }\n  - id: b\n    assert: { that: false }\n    on_failure: warn\n",
        &[],
    );
    run.code(0);
    assert_eq!(run.step("b")["message"], "the condition does not hold (on_failure: warn)");

    let run = run_rb(
        &s,
        "name: t\nsteps:\n  - id: restore\n    assert: { that: false }\n    on_failure: { run: [unquiesce] }\n  - id: verify\n    sleep: { duration: 0s }\n  - id: unquiesce\n    sleep: { duration: 0s }\n",
        &[],
    );
    run.code(1);
    assert_eq!(statuses(&run), pairs(&[("restore", "failed"), ("unquiesce", "passed"), ("verify", "skipped")]));
}

#[test]
fn when_and_outputs_flow_between_steps() {
    let s = Scratch::new();
    let url = servers().url("/health");
    let run = run_rb(
        &s,
        &format!(
            "name: t\nparams:\n  expected: {{ type: int, default: 200 }}\nsteps:\n  - id: api\n    http.check: {{ url: \"{url}\" }}\n  - id: ok\n    assert: {{ that: \"{{{{ steps.api.status_code == params.expected and steps.api.json.status == 'healthy' }}}}\", message: \"API must answer 200\" }}\n  - id: only_on_failure\n    when: \"{{{{ steps.api.failed }}}}\"\n    sleep: {{ duration: 0s }}\n  - id: bare_condition\n    when: steps.api.status == 'passed'\n    sleep: {{ duration: 0s }}\n"
        ),
        &[],
    );
    run.code(0);
    assert_eq!(statuses(&run), pairs(&[("api", "passed"), ("ok", "passed"), ("only_on_failure", "skipped"), ("bare_condition", "passed")]));
    assert_eq!(run.step("only_on_failure")["message"], "when `{{ steps.api.failed }}` is false");
}

#[test]
fn params_are_typed_in_templates() {
    let s = Scratch::new();
    let text = "name: t\nparams:\n  n: { type: int, default: 2, min: 1, max: 5 }\n  wait: { type: duration, default: 10ms }\n  mode: { type: enum, values: [fast, safe], default: safe }\nsteps:\n  - id: a\n    assert: { that: \"{{ params.n * 2 == 4 and params.mode == 'safe' }}\" }\n  - id: w\n    sleep: { duration: \"{{ params.wait }}\" }\n  - id: e\n    host.command: { argv: [sh, -c, 'exit {{ params.n }}'], expect_exit: \"{{ params.n }}\", effect: read }\n";
    let run = run_rb(&s, text, &[]);
    run.code(0);
    assert_eq!(run.step("w")["message"], "slept 10ms");
    let run = run_rb(&s, text, &["-p", "n=3", "-p", "mode=fast"]);
    run.code(1);
    assert_eq!(run.step("a")["status"], "failed");
    assert_eq!(run.json()["params"], serde_json::json!({ "n": 3, "wait": "10ms", "mode": "fast" }));
}

#[test]
fn a_runtime_template_error_fails_the_step_with_its_position() {
    let s = Scratch::new();
    // `steps.a.json` exists for http.check but is null for a non-JSON body.
    let url = servers().url("/text");
    let run = run_rb(&s, &format!("name: t\nsteps:\n  - id: a\n    http.check: {{ url: \"{url}\" }}\n  - id: b\n    sleep: {{ duration: \"{{{{ steps.a.json.wait }}}}\" }}\n"), &[]);
    run.code(1);
    let msg = run.step("b")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("expression `steps.a.json.wait`: undefined value"), "{msg}");
    assert!(msg.ends_with("rb.yaml:6:24)"), "{msg}");
    assert_eq!(run.step("b")["error_class"], "invalid");
}

#[test]
fn dry_runs_execute_nothing_that_mutates() {
    let s = Scratch::new();
    let marker = s.path().join("touched");
    let hook = servers().url("/hook/dry-run");
    let text = format!(
        "name: t\nsteps:\n  - id: look\n    host.command: {{ argv: [echo, hi], effect: read }}\n  - id: touch\n    host.command: {{ argv: [touch, \"{}\"], effect: mutate }}\n  - id: tell\n    notify.webhook: {{ url: {{ env: HOOK }}, text: hi }}\n  - id: after\n    assert: {{ that: \"{{{{ steps.touch.exit_code == 0 }}}}\" }}\n",
        marker.display()
    );
    let rb = s.write("rb.yaml", &text);
    for cmd in [vec!["run", "--dry-run"], vec!["plan"]] {
        let run = s.opsctl().args(&cmd).args([rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).env("HOOK", &hook).run();
        run.code(0);
        assert_eq!(statuses(&run), pairs(&[("look", "passed"), ("touch", "planned"), ("tell", "planned"), ("after", "skipped")]));
        assert_eq!(run.step("touch")["message"], format!("would run touch {}", marker.display()));
        assert_eq!(run.step("tell")["message"], "would POST to the webhook in env:HOOK");
        assert_eq!(run.json()["dry_run"], true);
    }
    assert!(!marker.exists(), "a dry run ran a mutating command");
    assert_eq!(get_json(&servers().url("/hooks/dry-run"))["bodies"], serde_json::json!([]));
}

#[test]
fn destroy_and_confirm_steps_refuse_without_a_terminal_or_yes() {
    let s = Scratch::new();
    let marker = s.path().join("destroyed");
    let text = format!(
        "name: t\nsteps:\n  - id: first\n    host.command: {{ argv: [true], effect: read }}\n  - id: wipe\n    host.command: {{ argv: [touch, \"{}\"], effect: destroy }}\n",
        marker.display()
    );
    let rb = s.write("rb.yaml", &text);
    let refused = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost"]).run();
    refused.code(2).stderr_has("refused: a step needs confirmation (`wipe` (host.command, destroy)), and there is no terminal to ask; run with --yes");
    assert!(!marker.exists());
    assert!(s.history().is_empty(), "nothing ran, nothing recorded");

    s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "--yes"]).run().code(0);
    assert!(marker.exists());

    let rb = s.write("confirm.yaml", "name: t\nsteps:\n  - id: c\n    sleep: { duration: 0s }\n    confirm: \"This overwrites {{ instance.name }}\"\n");
    s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost"]).run().code(2).stderr_has("`c` (sleep, read)");
    // A dry run needs no confirmation.
    s.opsctl().args(["plan", rb.to_str().unwrap(), "-i", "localhost"]).run().code(0);
}

#[test]
fn ctrl_c_cancels_in_flight_steps_runs_always_steps_and_exits_130() {
    let s = Scratch::new();
    let started = s.path().join("started");
    let cleaned = s.path().join("cleaned");
    let text = format!(
        "name: t\nsteps:\n  - id: long\n    host.command: {{ shell: 'touch {} && sleep 30', effect: read }}\n  - id: next\n    sleep: {{ duration: 0s }}\n  - id: cleanup\n    always: true\n    host.command: {{ argv: [touch, \"{}\"], effect: mutate }}\n",
        started.display(),
        cleaned.display()
    );
    let rb = s.write("rb.yaml", &text);
    let child = s
        .opsctl()
        .args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"])
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the long step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t0 = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "the in-flight step was not cancelled");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(cleaned.exists(), "the always step did not run");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "interrupted");
    let st: Vec<&str> = doc["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(st, ["failed", "skipped", "passed"]);
    assert!(doc["steps"][0]["message"].as_str().unwrap().starts_with("interrupted after"));
    assert_eq!(s.history()[0]["status"], "interrupted");
}

#[test]
fn a_second_mutating_run_on_the_same_instance_exits_3_naming_the_holder() {
    let s = Scratch::new();
    let started = s.path().join("started");
    let rb = s.write(
        "rb.yaml",
        &format!("name: slow-change\nsteps:\n  - host.command: {{ shell: 'touch {} && sleep 3', effect: mutate }}\n", started.display()),
    );
    let mut first = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost"]).command().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost"]).run();
    second.code(3).stderr_has("instance localhost is locked by another run").stderr_has("(slow-change by ");
    // Read-only runs and dry runs do not take the lock.
    assert_ne!(s.opsctl().args(["check", "-i", "localhost"]).run().code, 3);
    s.opsctl().args(["plan", rb.to_str().unwrap(), "-i", "localhost"]).run().code(0);
    assert_eq!(first.wait().unwrap().code(), Some(0));
    s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost"]).run().code(0);
}

/// `retry` and `timeout` written as templates are rendered per run and checked as plain
/// values are; a bad rendered value fails the step with where it was written.
#[test]
fn templated_retry_and_timeout_are_rendered_per_run_and_checked() {
    let s = Scratch::new();
    let text = "name: t\nparams:\n  attempts: { type: int, default: 3 }\n  wait: { type: string, default: 10ms }\n  limit: { type: string, default: 5s }\nsteps:\n  - id: flaky\n    retry: { attempts: \"{{ params.attempts }}\", delay: \"{{ params.wait }}\" }\n    on_failure: continue\n    assert: { that: false }\n  - id: slow\n    timeout: \"{{ params.limit }}\"\n    sleep: { duration: 300ms }\n";
    let run = run_rb(&s, text, &[]);
    run.code(1);
    assert_eq!(run.step("flaky")["attempts"], 3, "{}", run.stdout);
    assert_eq!(run.step("flaky")["status"], "failed");
    assert_eq!(run.step("slow")["status"], "passed");
    // The rendered timeout applies: 50ms cuts the 300ms sleep.
    let run = run_rb(&s, text, &["-p", "attempts=1", "-p", "limit=50ms"]);
    assert_eq!(run.step("flaky")["attempts"], 1);
    assert_eq!(run.step("slow")["error_class"], "timeout", "{}", run.stdout);
    assert!(run.step("slow")["message"].as_str().unwrap().contains("timed out after 50ms"), "{}", run.stdout);
    // Values the loader would refuse, refused when rendered, at their place in the file.
    let run = run_rb(&s, text, &["-p", "attempts=0"]);
    let msg = run.step("flaky")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("`attempts` counts every try") && msg.ends_with("rb.yaml:8:24)"), "{msg}");
    assert_eq!(run.step("flaky")["error_class"], "invalid");
    let run = run_rb(&s, text, &["-p", "wait=soon"]);
    let msg = run.step("flaky")["message"].as_str().unwrap().to_string();
    assert!(msg.contains("invalid duration `soon`") && msg.ends_with("rb.yaml:8:56)"), "{msg}");
    let run = run_rb(&s, text, &["-p", "limit=0s"]);
    let msg = run.step("slow")["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("`timeout` must be longer than 0s") && msg.ends_with("rb.yaml:12:14)"), "{msg}");
    // In a dry run, a retry that reads a step which was only planned cannot be rendered: the
    // step is skipped and says why, as a templated parameter is.
    let text = "name: t\nsteps:\n  - id: change\n    host.command: { argv: [\"true\"], effect: mutate }\n  - id: after\n    retry: { attempts: \"{{ steps.change.exit_code + 1 }}\" }\n    assert: { that: true }\n";
    let run = run_rb(&s, text, &["--dry-run"]);
    run.code(0);
    assert_eq!(run.step("after")["status"], "skipped");
    assert!(run.step("after")["message"].as_str().unwrap().starts_with("cannot render in a dry run"), "{}", run.stdout);
}

/// `on_cancel`: the steps that undo a step the interrupt caught in flight run (and only
/// then), with `always` steps, for `--grace` at most; SIGTERM exits 143; the history says
/// interrupted.
#[test]
fn on_cancel_undoes_the_step_in_flight_within_the_grace_period() {
    let s = Scratch::new();
    let started = s.path().join("started");
    let undone = s.path().join("undone");
    let text = format!(
        "name: t\nsteps:\n\
         \x20 - id: work\n    host.command: {{ shell: 'touch {started} && sleep 30', effect: mutate }}\n    on_cancel: {{ run: [undo] }}\n\
         \x20 - id: later\n    sleep: {{ duration: 0s }}\n\
         \x20 - id: undo\n    host.command: {{ argv: [touch, \"{undone}\"], effect: mutate }}\n\
         \x20 - id: slow_cleanup\n    always: true\n    host.command: {{ argv: [sleep, \"30\"], effect: read }}\n",
        started = started.display(),
        undone = undone.display()
    );
    let rb = s.write("rb.yaml", &text);
    let child = s
        .opsctl()
        .args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json", "--grace", "1s"])
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the long step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t0 = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(t0.elapsed() < Duration::from_secs(8), "the grace period did not stop the slow cleanup: {stderr}");
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("terminated: stopping; `always` and `on_cancel` steps still run, for 1s at most"), "{stderr}");
    assert!(stderr.contains("the grace period (1s) is over"), "{stderr}");
    assert!(undone.exists(), "the on_cancel step did not run");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "interrupted");
    assert_eq!(doc["exit_code"], 143);
    let st: Vec<(&str, &str)> = doc["steps"].as_array().unwrap().iter().map(|s| (s["id"].as_str().unwrap(), s["status"].as_str().unwrap())).collect();
    assert_eq!(st, [("work", "failed"), ("later", "skipped"), ("undo", "passed"), ("slow_cleanup", "failed")]);
    assert!(doc["steps"][3]["message"].as_str().unwrap().starts_with("interrupted after"), "{}", doc["steps"][3]);
    assert_eq!(s.history()[0]["status"], "interrupted");

    // Not interrupted: the undo step does not run, and says why.
    let quick = s.write("quick.yaml", &text.replace("&& sleep 30", "&& true").replace("[sleep, \"30\"]", "[\"true\"]"));
    let r = s.opsctl().args(["run", quick.to_str().unwrap(), "-i", "localhost", "-o", "json"]).run();
    r.code(0);
    assert_eq!(r.step("undo")["status"], "skipped");
    assert_eq!(r.step("undo")["message"], "runs only when the run is interrupted while `work` runs (on_cancel)");
    assert_eq!(r.step("slow_cleanup")["status"], "passed");

    // It names later steps that exist, and says where it does not.
    let bad = s.write("bad.yaml", "name: t\nsteps:\n  - id: a\n    sleep: { duration: 0s }\n  - id: b\n    sleep: { duration: 0s }\n    on_cancel: { run: [a, udno] }\n  - id: undo\n    sleep: { duration: 0s }\n");
    s.opsctl()
        .args(["validate", bad.to_str().unwrap()])
        .run()
        .code(2)
        .stderr_has("on_cancel of `b` runs `a`, which does not come after it")
        .stderr_has("bad.yaml:7:24")
        .stderr_has("on_cancel runs unknown step `udno`")
        .stderr_has("did you mean `undo`?");
}
