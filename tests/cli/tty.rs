//! Behaviour on a terminal, through a pseudo-terminal made by `script` (util-linux):
//! confirmations, colour by default, the live progress line.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{bin, in_ci, Scratch};

/// Runs `opsctl ARGS` on a pty, typing `input` once it started; returns (exit code, output).
fn on_tty(s: &Scratch, args: &str, input: &str, env: &[(&str, &str)]) -> Option<(i32, String)> {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(!in_ci(), "`script` (util-linux) is needed for the terminal tests");
        eprintln!("skipped: `script` is not installed");
        return None;
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{} {args}", bin()), "/dev/null"])
        .current_dir(s.path())
        .env("OPSCTL_STATE_DIR", s.state_dir())
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    stdin.write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    Some((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn runbook(s: &Scratch) -> std::path::PathBuf {
    let marker = s.path().join("wiped");
    s.write(
        "wipe.yaml",
        &format!("name: wipe\nsteps:\n  - id: wipe\n    host.command: {{ argv: [touch, \"{}\"], effect: destroy }}\n    confirm: \"This wipes {{{{ instance.name }}}}\"\n", marker.display()),
    );
    marker
}

#[test]
fn a_terminal_confirmation_goes_ahead_on_yes() {
    let s = Scratch::new();
    let marker = runbook(&s);
    let Some((code, out)) = on_tty(&s, "run wipe.yaml -i localhost", "yes\n", &[]) else { return };
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("This wipes localhost"), "{out}");
    assert!(out.contains("Type `yes` to continue"), "{out}");
    assert!(marker.exists());
}

#[test]
fn a_declined_confirmation_refuses_with_exit_2() {
    let s = Scratch::new();
    let marker = runbook(&s);
    let Some((code, out)) = on_tty(&s, "run wipe.yaml -i localhost", "no\n", &[]) else { return };
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("declined by the operator"), "{out}");
    assert!(out.contains("REFUSED"), "{out}");
    assert!(!marker.exists());
    assert_eq!(s.history()[0]["status"], "refused");
}

#[test]
fn colour_and_a_progress_line_on_a_terminal_only() {
    let s = Scratch::new();
    s.write("slow.yaml", "name: slow\nsteps:\n  - id: nap\n    sleep: { duration: 900ms }\n");
    let Some((code, out)) = on_tty(&s, "run slow.yaml -i localhost", "", &[]) else { return };
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\x1b[K⠋ [0/1] nap") || out.contains("[0/1] nap"), "no progress line: {out:?}");
    assert!(out.contains("\x1b[1mPASSED\x1b[0m"), "no colour on a terminal: {out:?}");
    let Some((_, plain)) = on_tty(&s, "run slow.yaml -i localhost", "", &[("NO_COLOR", "1")]) else { return };
    assert!(!plain.contains("\x1b[1m"), "NO_COLOR was not honoured: {plain:?}");
}
