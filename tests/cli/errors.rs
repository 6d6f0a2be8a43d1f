//! Bad input outside runbook files: the command line, the inventory, the environment.

use crate::support::Scratch;

#[test]
fn usage_errors_exit_2() {
    let s = Scratch::new();
    s.opsctl().args(["run"]).run().code(2).stderr_has("required");
    s.opsctl().args(["check"]).run().code(2).stderr_has("--instance");
    s.opsctl().args(["check", "-i", "localhost", "--parallel", "0"]).run().code(2);
    s.opsctl().args(["run", "x.yaml", "-i", "localhost", "-p", "novalue"]).run().code(2).stderr_has("expected NAME=VALUE");
    s.opsctl().args(["check", "-i", "localhost", "-o", "xml"]).run().code(2).stderr_has("unknown output format `xml`");
}

#[test]
fn opsctl_config_names_the_inventory() {
    let s = Scratch::new();
    let inv = s.write("inv.yaml", "instances:\n  team-a: {}\n");
    s.opsctl().args(["list", "instances"]).env("OPSCTL_CONFIG", inv.to_str().unwrap()).run().code(0).stdout_has("team-a");
    s.opsctl()
        .args(["check", "-i", "team-a"])
        .env("OPSCTL_CONFIG", "/nonexistent/opsctl.yaml")
        .run()
        .code(2)
        .stderr_has("cannot read inventory /nonexistent/opsctl.yaml: no such file or directory")
        .stderr_has("the path comes from $OPSCTL_CONFIG");
}

#[test]
fn an_inventory_that_is_a_directory_is_unreadable() {
    let s = Scratch::new();
    std::fs::create_dir(s.path().join("dir.yaml")).unwrap();
    s.opsctl().args(["check", "-i", "x", "--config", "dir.yaml"]).run().code(2).stderr_has("cannot read inventory dir.yaml: is a directory");
}

#[test]
fn an_empty_inventory_is_refused() {
    let s = Scratch::new();
    s.write("opsctl.yaml", "");
    s.opsctl().args(["check", "-i", "localhost"]).run().code(2).stderr_has("inventory opsctl.yaml is empty");
}

#[test]
fn no_inventory_still_has_localhost() {
    let s = Scratch::new();
    s.opsctl().args(["list", "instances"]).run().code(0).stdout_has("localhost");
    s.opsctl().args(["check", "-i", "team-a"]).run().code(2).stderr_has("only `localhost` exists");
}

#[test]
fn an_unwritable_history_warns_but_does_not_fail_the_run() {
    let s = Scratch::new();
    s.write("state", "a file where the state directory should be");
    let run = s.opsctl().args(["run", "rb.yaml", "-i", "localhost"]).run();
    run.code(2); // rb.yaml does not exist yet
    s.write("rb.yaml", "name: t\nsteps:\n  - sleep: { duration: 0s }\n");
    let run = s.opsctl().args(["run", "rb.yaml", "-i", "localhost"]).run();
    run.code(0).stderr_has("the run was not recorded in the history");
}
