//! `host.*` steps on this machine, thresholds both ways.

use crate::support::Scratch;

fn run(steps: &str) -> (Scratch, crate::support::Run) {
    let s = Scratch::new();
    let rb = s.write("rb.yaml", &format!("name: t\nsteps:\n{steps}"));
    let run = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).run();
    (s, run)
}

#[test]
fn disk_memory_and_load_pass_and_fail_on_their_thresholds() {
    let (_s, ok) = run(
        "  - id: disk\n    host.disk: { path: /, warn_percent: 100, fail_percent: 100 }\n  - id: mem\n    host.memory: { warn_percent: 100, fail_percent: 100 }\n  - id: load\n    host.load: { warn_per_cpu: 1000, fail_per_cpu: 1000 }\n",
    );
    ok.code(0);
    for id in ["disk", "mem", "load"] {
        assert_eq!(ok.step(id)["status"], "passed", "{id}");
    }
    let disk = ok.step("disk");
    let used = disk["outputs"]["used_percent"].as_f64().unwrap();
    assert!(used > 0.0 && used <= 100.0);
    assert_eq!(disk["threshold"], "warn > 100.0%, fail > 100.0%");
    assert!(ok.step("mem")["outputs"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(ok.step("load")["outputs"]["cpus"].as_u64().unwrap() >= 1);

    // Zero thresholds: anything in use crosses them.
    let (_s, warn) = run("  - id: disk\n    host.disk: { path: /, warn_percent: 0, fail_percent: null }\n");
    warn.code(0);
    assert_eq!(warn.step("disk")["status"], "warned");
    let (_s, fail) = run(
        "  - id: disk\n    host.disk: { path: /, warn_percent: 0, fail_percent: 0 }\n    on_failure: continue\n  - id: mem\n    host.memory: { warn_percent: 0, fail_percent: 0 }\n",
    );
    fail.code(1);
    assert_eq!(fail.step("disk")["status"], "failed");
    assert_eq!(fail.step("mem")["status"], "failed");
}

#[test]
fn a_missing_path_is_a_clear_error() {
    let (_s, r) = run("  - id: disk\n    host.disk: { path: /no/such/dir }\n");
    r.code(1);
    assert_eq!(r.step("disk")["message"], "cannot read disk usage of /no/such/dir: no such file or directory");
}

#[test]
fn warn_above_fail_is_refused_at_load_time() {
    let s = Scratch::new();
    let rb = s.write("rb.yaml", "name: t\nsteps:\n  - host.disk: { warn_percent: 95, fail_percent: 90 }\n");
    s.opsctl()
        .args(["validate", rb.to_str().unwrap()])
        .run()
        .code(2)
        .stderr_has("`warn_percent` (95) is above `fail_percent` (90); a warning must come before a failure");
}

#[test]
fn commands_check_exit_code_and_stdout() {
    let (_s, ok) = run(
        "  - id: c\n    host.command: { argv: [sh, -c, 'echo up to date; echo warn >&2'], expect_stdout: \"up to date\", effect: read }\n",
    );
    ok.code(0);
    let c = ok.step("c");
    assert_eq!(c["outputs"]["exit_code"], 0);
    assert_eq!(c["outputs"]["stdout"], "up to date\n");
    assert_eq!(c["outputs"]["stderr"], "warn\n");

    let (_s, bad) = run("  - id: c\n    host.command: { argv: [sh, -c, 'echo boom >&2; exit 3'], effect: read }\n");
    bad.code(1);
    assert_eq!(bad.step("c")["message"], "exit 3, expected 0: boom");

    let (_s, listed) = run("  - id: c\n    host.command: { argv: [sh, -c, 'exit 3'], expect_exit: [0, 3], effect: read }\n");
    listed.code(0);

    let (_s, nomatch) = run("  - id: c\n    host.command: { argv: [echo, pending], expect_stdout: \"^done\", effect: read }\n");
    nomatch.code(1);
    assert_eq!(nomatch.step("c")["message"], "stdout does not match /^done/");
}

#[test]
fn argv_is_not_a_shell_unless_asked() {
    // With argv, `$HOME` and `;` are plain arguments.
    let (_s, r) = run("  - id: c\n    host.command: { argv: [echo, '$HOME;', 'x'], effect: read }\n");
    r.code(0);
    assert_eq!(r.step("c")["outputs"]["stdout"], "$HOME; x\n");
    let (_s, r) = run("  - id: c\n    host.command: { shell: 'echo a | tr a b', effect: read }\n");
    assert_eq!(r.step("c")["outputs"]["stdout"], "b\n");
}

#[test]
fn a_program_that_does_not_exist_is_a_clear_error() {
    let (_s, r) = run("  - id: c\n    host.command: { argv: [/no/such/program], effect: read }\n");
    r.code(1);
    assert_eq!(r.step("c")["message"], "cannot run `/no/such/program`: no such file or directory");
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let s = Scratch::new();
    let marker = s.path().join("survived");
    let rb = s.write(
        "rb.yaml",
        &format!("name: t\nsteps:\n  - id: c\n    host.command: {{ shell: 'sleep 1.5 && touch {}', effect: mutate }}\n    timeout: 300ms\n", marker.display()),
    );
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).run();
    r.code(1);
    assert_eq!(r.step("c")["message"], "timed out after 300ms");
    std::thread::sleep(std::time::Duration::from_millis(1800));
    assert!(!marker.exists(), "the shell's child outlived the timeout");
}

#[test]
fn the_author_must_declare_the_effect() {
    let s = Scratch::new();
    let rb = s.write("rb.yaml", "name: t\nsteps:\n  - host.command: { argv: [true] }\n");
    s.opsctl().args(["validate", rb.to_str().unwrap()]).run().code(2).stderr_has("missing required field `effect`");
}
