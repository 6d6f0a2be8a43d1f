//! Commands on several instances: every command that takes an instance takes `a,b,c`,
//! `--all` and `--selector`; instances run at once; a locked instance is reported and does
//! not stop the others; a runbook that does not apply to an instance says so; the machine's
//! own checks are measured once per command.

use crate::support::server::servers;
use crate::support::{Run, Scratch};

fn opsctl(s: &Scratch, args: &[&str]) -> Run {
    s.opsctl().args(args).run()
}

/// Three instances with an HTTP health endpoint; `c` fails its endpoint. `check` looks at
/// the endpoints only, so a busy test machine cannot warn.
fn inventory(s: &Scratch) {
    let base = servers().url("");
    s.write("runbooks/check.yaml", "name: check\nsteps:\n  - id: http\n    for_each: \"{{ instance.http.health }}\"\n    http.check: { url: \"{{ instance.http.base_url }}{{ item.path }}\", expect_status: 200 }\n");
    s.write(
        "opsctl.yaml",
        &format!(
            "runbooks_dir: runbooks\ninstances:\n  a:\n    labels: {{ team: x }}\n    http: {{ base_url: \"{base}\", health: [/health] }}\n  b:\n    labels: {{ team: x }}\n    http: {{ base_url: \"{base}\", health: [/health] }}\n  c:\n    labels: {{ team: y }}\n    http: {{ base_url: \"{base}\", health: [/status/500] }}\n"
        ),
    );
}

fn statuses(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["runs"].as_array().unwrap().iter().map(|r| (r["instance"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string())).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn every_instance_command_takes_a_list_all_and_a_selector() {
    let s = Scratch::new();
    inventory(&s);
    // A runbook that only reads the instance's endpoint, run by name with -p.
    s.write("probe.yaml", "name: probe\nparams:\n  path: { type: string, default: /health }\nsteps:\n  - id: http\n    http.check: { url: \"{{ instance.http.base_url }}{{ params.path }}\", expect_status: 200 }\n");
    let r = opsctl(&s, &["run", "probe.yaml", "--selector", "team=x", "-o", "json"]);
    r.code(0);
    assert_eq!(statuses(&r.json()), pairs(&[("a", "passed"), ("b", "passed")]));
    let r = opsctl(&s, &["plan", "probe.yaml", "-i", "b,a", "-p", "path=/status/500", "-o", "json"]);
    r.code(1);
    assert_eq!(statuses(&r.json()), pairs(&[("b", "failed"), ("a", "failed")]), "a plan runs read steps");

    // The gate on every instance: one summary table, one row each, the worst exit code.
    let r = opsctl(&s, &["gate", "--all"]);
    r.code(1);
    r.stdout_has("gate on 3 instances:").stdout_has("INSTANCE").stdout_has("FIRST FAILURE");
    let rows: Vec<&str> = r.stdout.lines().map(str::trim_start).filter(|l| l.starts_with(['a', 'b', 'c'])).collect();
    assert_eq!(rows.len(), 3, "{}", r.stdout);
    assert!(rows[2].starts_with('c') && rows[2].contains("FAIL") && rows[2].contains("500"), "{}", r.stdout);
    let junit = s.path().join("gate.xml");
    opsctl(&s, &["gate", "--all", "-o", &format!("junit={}", junit.display())]).code(1);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");

    // A routine on several instances: a sequence per instance, in one fleet document.
    let r = opsctl(&s, &["routine", "daily", "-i", "a,c", "-o", "json"]);
    r.code(1);
    let doc = r.json();
    assert_eq!(doc["schema"], "opsctl.fleet/v1");
    assert_eq!(doc["command"], "routine daily");
    assert_eq!(statuses(&doc), pairs(&[("a", "passed"), ("c", "failed")]));
    assert_eq!(doc["runs"][0]["schema"], "opsctl.sequence/v1");
    let ran: Vec<&str> = doc["runs"][1]["runs"].as_array().unwrap().iter().map(|r| r["runbook"].as_str().unwrap()).collect();
    assert_eq!(ran, ["check"], "daily on an HTTP-only instance: check; backup and logs do not apply");
    assert_eq!(doc["runs"][1]["not_run"][0]["runbook"], "backup");
    let table = opsctl(&s, &["routine", "daily", "--all"]);
    table.code(1);
    table.stdout_has("routine daily on 3 instances: 1 failed, 2 passed").stdout_has("check: http");

    // logs and triage take the same (logs applies to none of these: no log source); the
    // history has one record per instance's run.
    opsctl(&s, &["logs", "--all"]).code(2).stderr_has("`logs` applies to none of the 3 instances");
    let t = opsctl(&s, &["triage", "--selector", "team=y", "-o", "json"]);
    assert_eq!(statuses(&t.json()), pairs(&[("c", "passed")]), "{}", t.stdout);
    let h = opsctl(&s, &["history", "--runbook", "gate", "-n", "100", "-o", "json"]);
    assert_eq!(h.json().as_array().unwrap().len(), 6, "two gate commands on three instances");

    // Naming no instance is a usage error that says how to name them.
    opsctl(&s, &["gate"]).code(2).stderr_has("`gate` needs an instance: --instance NAME (or several: a,b,c), --all, or --selector LABEL=VALUE");
    opsctl(&s, &["routine", "daily", "--selector", "team=z"]).code(2).stderr_has("no instance matches the selector");
    opsctl(&s, &["check", "-i", "a", "--all"]).code(2).stderr_has("cannot be used with");
}

#[test]
fn a_locked_instance_is_reported_and_does_not_stop_the_others() {
    let s = Scratch::new();
    inventory(&s);
    s.write("touch.yaml", "name: touch\nsteps:\n  - id: touch\n    host.command: { argv: [\"true\"], effect: mutate }\n");
    // Another run holds b's lock: the lock file as opsctl writes it, held with flock.
    let dir = s.state_dir().join("locks");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.join("b.lock")).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(
        dir.join("b.lock"),
        r#"{"run_id":"r-held","runbook":"restore","user":"ops","host":"bastion","pid":4242,"since":"2026-11-30T10:00:00Z"}"#,
    )
    .unwrap();
    let r = opsctl(&s, &["run", "touch.yaml", "--all", "-o", "json"]);
    r.code(3);
    let doc = r.json();
    assert_eq!(statuses(&doc), pairs(&[("a", "passed"), ("b", "locked"), ("c", "passed")]));
    assert!(doc["runs"][1]["reason"].as_str().unwrap().starts_with("locked by run r-held (restore by ops@bastion, pid 4242)"), "{doc}");
    assert_eq!(doc["exit_code"], 3);
    let table = opsctl(&s, &["run", "touch.yaml", "-i", "a,b"]);
    table.code(3);
    table.stdout_has("LOCKED").stdout_has("touch on 2 instances: 1 locked, 1 passed");
    // One instance by name: the lock is the command's error, as it always was.
    opsctl(&s, &["run", "touch.yaml", "-i", "b"]).code(3).stderr_has("instance b is locked by another run");
    drop(lock);
    opsctl(&s, &["run", "touch.yaml", "-i", "b"]).code(0);
}

#[test]
fn a_runbook_that_does_not_apply_to_some_instances_says_so_for_them() {
    let s = Scratch::new();
    let base = servers().url("");
    let store = s.path().join("store");
    s.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  web:\n    http: {{ base_url: \"{base}\", health: [/health] }}\n  also-web:\n    http: {{ base_url: \"{base}\", health: [/health] }}\n  stored:\n    backups: {{ dir: \"{}\" }}\n",
            store.display()
        ),
    );
    // backup-prune needs a backup store: on the fleet, the others are not applicable.
    let r = opsctl(&s, &["backup", "prune", "--all", "--dry-run", "-o", "json"]);
    r.code(0);
    let doc = r.json();
    assert_eq!(statuses(&doc), pairs(&[("web", "not_applicable"), ("also-web", "not_applicable"), ("stored", "passed")]));
    assert!(doc["runs"][0]["reason"].as_str().unwrap().starts_with("does not apply:"), "{doc}");
    // On instances it applies to none of, it is refused; on one by name, refused as before.
    opsctl(&s, &["backup", "prune", "-i", "web,also-web"]).code(2).stderr_has("applies to none of the 2 instances");
    opsctl(&s, &["backup", "prune", "-i", "web"]).code(2).stderr_has("refused");
}

/// The machine opsctl runs on is measured once per command, not once per instance.
#[test]
fn host_checks_are_measured_once_per_command() {
    let s = Scratch::new();
    inventory(&s);
    s.write("machine.yaml", "name: machine\nsteps:\n  - id: load\n    host.load: { warn_per_cpu: 1000, fail_per_cpu: 2000 }\n  - id: memory\n    host.memory: { warn_percent: 99.99, fail_percent: 100 }\n");
    let r = opsctl(&s, &["run", "machine.yaml", "--all", "--max-concurrency", "1", "-o", "json"]);
    r.code(0);
    let doc = r.json();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for id in ["load", "memory"] {
        let steps: Vec<&serde_json::Value> = runs.iter().map(|run| run["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()).collect();
        assert!(!steps[0]["message"].as_str().unwrap().contains("measured once"), "{}", steps[0]);
        for later in &steps[1..] {
            assert!(later["message"].as_str().unwrap().ends_with("(measured once for this command)"), "{later}");
            assert_eq!(later["outputs"], steps[0]["outputs"], "the same measurement");
        }
    }
    // Two commands measure twice: the sharing is per command.
    let one = opsctl(&s, &["run", "machine.yaml", "-i", "a", "-o", "json"]);
    assert!(!one.step("load")["message"].as_str().unwrap().contains("measured once"));
}

/// The history reads newest first and filters; its retention is the inventory's.
#[test]
fn history_reads_newest_first_with_filters_and_keeps_what_the_inventory_says() {
    let s = Scratch::new();
    inventory(&s);
    opsctl(&s, &["check", "--all", "--max-concurrency", "1"]).code(1);
    opsctl(&s, &["check", "-i", "a"]).code(0);
    let h = opsctl(&s, &["history", "-o", "json"]);
    let runs: Vec<(String, String)> = h.json().as_array().unwrap().iter().map(|r| (r["instance"].as_str().unwrap().into(), r["status"].as_str().unwrap().into())).collect();
    assert_eq!(runs, pairs(&[("a", "passed"), ("c", "failed"), ("b", "passed"), ("a", "passed")]), "newest first");
    let failed = opsctl(&s, &["history", "--status", "failed", "-o", "json"]);
    assert_eq!(failed.json().as_array().unwrap().len(), 1);
    let a = opsctl(&s, &["history", "-i", "a", "-n", "1", "-o", "json"]);
    assert_eq!(a.json().as_array().unwrap().len(), 1);
    let recent = opsctl(&s, &["history", "--since", "1h", "-o", "json"]);
    assert_eq!(recent.json().as_array().unwrap().len(), 4);
    let future = opsctl(&s, &["history", "--since", "2099-01-01T00:00:00Z"]);
    future.code(0).stdout_has("no runs recorded in");
    opsctl(&s, &["history", "--status", "faild"]).code(2).stderr_has("unknown status `faild`").stderr_has("did you mean `failed`?");
    opsctl(&s, &["history", "--since", "yesterday"]).code(2).stderr_has("--since `yesterday`");

    // `history:` in the inventory: checked where it is written.
    let inv = std::fs::read_to_string(s.path().join("opsctl.yaml")).unwrap();
    s.write("opsctl.yaml", &format!("history: {{ keep_days: 30, max_bytes: 64MiB }}\n{inv}"));
    opsctl(&s, &["check", "-i", "a"]).code(0);
    s.write("opsctl.yaml", &format!("history:\n  keep_days: 30\n  max_bytes: 10KB\n{inv}"));
    opsctl(&s, &["check", "-i", "a"]).code(2).stderr_has("history.max_bytes is below 1MiB").stderr_has("opsctl.yaml:3:");
    s.write("opsctl.yaml", &format!("history:\n  keep: 30\n{inv}"));
    opsctl(&s, &["check", "-i", "a"]).code(2).stderr_has("keep").stderr_has("opsctl.yaml:2:");
}

/// promtool, or `None` outside CI when Debian's prometheus package is not installed.
fn promtool() -> Option<std::path::PathBuf> {
    let found = crate::support::which("promtool");
    if found.is_none() {
        assert!(!crate::support::in_ci(), "promtool (Debian's prometheus package) is needed under CI=true");
        eprintln!("skipped: no promtool");
    }
    found
}

/// `--output prometheus=FILE`: the textfile collector's format, checked by promtool.
#[test]
fn prometheus_output_is_a_valid_textfile_with_a_series_per_instance_and_step() {
    let Some(promtool) = promtool() else { return };
    let s = Scratch::new();
    inventory(&s);
    // The endpoints, and the machine's load (a measured value), never failing here.
    s.write("runbooks/check.yaml", "name: check\nsteps:\n  - id: http\n    for_each: \"{{ instance.http.health }}\"\n    http.check: { url: \"{{ instance.http.base_url }}{{ item.path }}\", expect_status: 200 }\n  - id: load\n    host.load: { warn_per_cpu: 1000, fail_per_cpu: 2000 }\n");
    let file = s.path().join("textfile/opsctl.prom");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    opsctl(&s, &["check", "--all", "-o", &format!("prometheus={}", file.display())]).code(1);
    let text = std::fs::read_to_string(&file).unwrap();
    let check = std::process::Command::new(&promtool).args(["check", "metrics"]).stdin(std::fs::File::open(&file).unwrap()).output().unwrap();
    assert!(check.status.success(), "promtool: {}{}\n{text}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    for line in [
        "opsctl_run_success{runbook=\"check\",opsctl_instance=\"a\"} 1",
        "opsctl_run_success{runbook=\"check\",opsctl_instance=\"c\"} 0",
        "opsctl_run_status{runbook=\"check\",opsctl_instance=\"c\",status=\"failed\"} 1",
        "opsctl_run_exit_code{runbook=\"check\",opsctl_instance=\"c\"} 1",
        "opsctl_step_status{runbook=\"check\",opsctl_instance=\"c\",step=\"http[0]\",kind=\"http.check\"} 2",
        "opsctl_step_status{runbook=\"check\",opsctl_instance=\"b\",step=\"http[0]\",kind=\"http.check\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("opsctl_step_value{runbook=\"check\",opsctl_instance=\"a\",step=\"load\",kind=\"host.load\",unit=\"/cpu\"} ")), "{text}");
    for family in ["opsctl_run_duration_seconds", "opsctl_run_timestamp_seconds", "opsctl_step_duration_seconds", "opsctl_step_value"] {
        assert!(text.contains(&format!("# TYPE {family} gauge\n{family}{{")), "{family} in\n{text}");
    }
    let ts: f64 = text.lines().find(|l| l.starts_with("opsctl_run_timestamp_seconds{")).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - ts).abs() < 120.0, "{ts} vs {now}");
    // A routine's runs, each its own series; no temporary file left beside it.
    opsctl(&s, &["routine", "daily", "-i", "a", "-o", &format!("prometheus={}", file.display())]).code(0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("opsctl_run_success{runbook=\"check\",opsctl_instance=\"a\"} 1"), "{text}");
    assert_eq!(std::fs::read_dir(file.parent().unwrap()).unwrap().count(), 1, "written atomically: one file");
}

/// A raw HTTP GET: (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// `opsctl serve` on a free port; returns the child and its address.
fn serve(s: &Scratch, args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(crate::support::bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(s.path())
        .env("OPSCTL_STATE_DIR", s.state_dir())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    // Keep reading stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in err.lines() {});
    (child, addr)
}

#[test]
fn serve_answers_healthz_per_instance_and_metrics_caches_and_shares_one_run_and_stops_on_sigterm() {
    let srv = servers();
    let s = Scratch::new();
    let key = format!("serve-{}", std::process::id());
    s.write("runbooks/check.yaml", "name: check\nsteps:\n  - id: http\n    for_each: \"{{ instance.http.health }}\"\n    http.check: { url: \"{{ instance.http.base_url }}{{ item.path }}\", expect_status: 200 }\n");
    s.write(
        "opsctl.yaml",
        &format!(
            "runbooks_dir: runbooks\ninstances:\n  slow:\n    http: {{ base_url: \"{base}\", health: [/concurrent/{key}/400] }}\n  bad:\n    http: {{ base_url: \"{base}\", health: [/status/500] }}\n",
            base = srv.url("")
        ),
    );
    // A routine cron ran earlier: its result is in /metrics from the history.
    s.write("probe.yaml", "name: nightly\nsteps:\n  - id: ok\n    sleep: { duration: 0s }\n");
    opsctl(&s, &["run", "probe.yaml", "-i", "slow"]).code(0);
    let (mut child, addr) = serve(&s, &["--cache", "3s"]);

    // Five requests at once: one run of the checks (the slow endpoint is hit once).
    let answers: Vec<(u16, String)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..5).map(|_| sc.spawn(|| get(&addr, "/healthz"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stats = || crate::support::server::get_json(&srv.url(&format!("/stats/{key}")));
    assert_eq!(stats()["count"], 1, "single flight: {}", stats());
    for (status, body) in &answers {
        assert_eq!(*status, 503, "one instance fails: {body}");
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["schema"], "opsctl.fleet/v1");
        assert_eq!(statuses(&doc), pairs(&[("slow", "passed"), ("bad", "failed")]));
    }
    // Cached: per instance, from the same results.
    let (status, body) = get(&addr, "/healthz/slow");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["instance"], "slow");
    assert_eq!(get(&addr, "/healthz/bad").0, 503);
    assert_eq!(get(&addr, "/healthz/nope").0, 404);
    assert_eq!(get(&addr, "/nope").0, 404);
    let (status, metrics) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("opsctl_run_success{runbook=\"check\",opsctl_instance=\"bad\"} 0"), "{metrics}");
    assert!(metrics.contains("opsctl_run_success{runbook=\"nightly\",opsctl_instance=\"slow\"} 1"), "the cron-run runbook from the history: {metrics}");
    assert_eq!(stats()["count"], 1, "all from the cache");
    if let Some(promtool) = promtool() {
        let mut p = std::process::Command::new(promtool).args(["check", "metrics"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(p.stdin.as_mut().unwrap(), metrics.as_bytes()).unwrap();
        assert!(p.wait().unwrap().success());
    }
    // Past the cache, the next request runs the checks again; serve's checks are not history.
    std::thread::sleep(std::time::Duration::from_millis(3100));
    get(&addr, "/healthz");
    assert_eq!(stats()["count"], 2);
    assert_eq!(opsctl(&s, &["history", "-o", "json"]).json().as_array().unwrap().len(), 1);

    // SIGTERM while a request is in flight: it is answered, then the server exits 0.
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let pending = std::thread::spawn({
        let addr = addr.clone();
        move || get(&addr, "/healthz/slow")
    });
    std::thread::sleep(std::time::Duration::from_millis(150));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(pending.join().unwrap().0, 200, "the request in flight is answered");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(std::net::TcpStream::connect(&addr).is_err(), "no longer listening");
}

#[test]
fn serve_refuses_a_mutating_check_and_a_port_in_use() {
    let s = Scratch::new();
    inventory(&s);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    opsctl(&s, &["serve", "--listen", &addr]).code(2).stderr_has(&format!("cannot listen on {addr}"));
    s.write("runbooks/check.yaml", "name: check\nsteps:\n  - id: fix\n    host.command: { argv: [\"true\"], effect: mutate }\n");
    opsctl(&s, &["serve", "--listen", "127.0.0.1:0"]).code(2).stderr_has("`serve` runs only read-only runbooks").stderr_has("fix (host.command)");
}

/// 40 instances, 20 of them failing, `--max-errors 5`: no instance starts after the sixth
/// failure (runs already in flight finish), the rest are not started.
#[test]
fn with_max_errors_5_no_instance_is_launched_after_the_sixth_failure() {
    let srv = servers();
    let s = Scratch::new();
    s.write("runbooks/check.yaml", "name: check\nsteps:\n  - id: http\n    for_each: \"{{ instance.http.health }}\"\n    http.check: { url: \"{{ instance.http.base_url }}{{ item.path }}\", expect_status: 200 }\n");
    let key = format!("maxerr-{}", std::process::id());
    let mut inv = String::from("runbooks_dir: runbooks\ninstances:\n");
    for i in 0..40 {
        // Every other instance fails at once; the others answer after 150 ms.
        let path = if i % 2 == 1 { "/status/500".to_string() } else { format!("/concurrent/{key}/150") };
        inv.push_str(&format!("  t{i:02}:\n    http: {{ base_url: \"{}\", health: [\"{path}\"] }}\n", srv.url("")));
    }
    s.write("opsctl.yaml", &inv);
    let r = opsctl(&s, &["check", "--all", "--max-concurrency", "4", "--max-errors", "5", "-o", "json"]);
    r.code(1);
    let doc = r.json();
    let runs = doc["runs"].as_array().unwrap();
    let ts = |r: &serde_json::Value, f: &str| r[f].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let mut failed: Vec<jiff::Timestamp> = runs.iter().filter(|r| r["status"] == "failed").map(|r| ts(r, "finished_at")).collect();
    failed.sort();
    assert!(failed.len() >= 6, "{}", failed.len());
    let sixth = failed[5];
    let started: Vec<&serde_json::Value> = runs.iter().filter(|r| r["status"] != "not_started").collect();
    for run in &started {
        let late = ts(run, "started_at").duration_since(sixth);
        assert!(late < jiff::SignedDuration::from_millis(50), "{} started {late:?} after the sixth failure", run["instance"]);
    }
    let not_started = runs.iter().filter(|r| r["status"] == "not_started").count();
    assert!(not_started >= 20, "{not_started} not started of 40");
    assert_eq!(started.len() + not_started, 40);
    assert!(failed.len() < 20, "stopped launching: {} failed", failed.len());
}
