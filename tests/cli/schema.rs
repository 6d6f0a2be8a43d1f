//! The JSON Schemas `opsctl schema` prints accept what opsctl accepts: every shipped and
//! example runbook and inventory is valid under them for another validator
//! (python-jsonschema, tests/schema/validate.py), and files opsctl refuses are refused by
//! both.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Scratch, in_ci, repo};

/// The test venv's Python with jsonschema and PyYAML (scripts/test.sh installs them).
fn python() -> Option<PathBuf> {
    let py = crate::support::aws::venv().join("bin/python");
    let ok = Command::new(&py).args(["-c", "import jsonschema, yaml"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(!in_ci(), "{} with jsonschema and PyYAML is needed under CI=true (scripts/test.sh installs it)", py.display());
        eprintln!("skipped: no {} with jsonschema and PyYAML", py.display());
        return None;
    }
    Some(py)
}

/// Writes both schemas into the scratch directory; runs the validator over `files`.
fn validate(s: &Scratch, py: &PathBuf, files: &[PathBuf]) -> (bool, String) {
    for what in ["runbook", "inventory"] {
        let run = s.opsctl().args(["schema", what]).run();
        run.code(0);
        std::fs::write(s.path().join(format!("{what}.schema.json")), &run.stdout).unwrap();
    }
    let out = Command::new(py)
        .arg(repo().join("tests/schema/validate.py"))
        .arg(s.path().join("runbook.schema.json"))
        .arg(s.path().join("inventory.schema.json"))
        .args(files)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join(dir)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    out.sort();
    out
}

#[test]
fn every_shipped_and_example_runbook_and_inventory_is_valid_under_the_schemas() {
    let Some(py) = python() else { return };
    let s = Scratch::new();
    let mut files = yaml_files("runbooks");
    files.extend(yaml_files("examples/runbooks"));
    files.push(repo().join("examples/opsctl.yaml"));
    let platforms = repo().join("examples/platforms");
    for entry in std::fs::read_dir(&platforms).unwrap() {
        let inventory = entry.unwrap().path().join("opsctl.yaml");
        if inventory.exists() {
            files.push(inventory);
        }
    }
    assert!(files.len() >= 25, "{files:?}");
    let (ok, out) = validate(&s, &py, &files);
    assert!(ok, "the schemas refuse files opsctl accepts:\n{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("valid ")).count(), files.len(), "{out}");
}

#[test]
fn files_opsctl_refuses_are_refused_by_the_schemas_too() {
    let Some(py) = python() else { return };
    let s = Scratch::new();
    let cases = [
        ("unknown-kind.yaml", "name: bad\nsteps:\n  - http.chek: { url: \"http://127.0.0.1:1/\" }\n"),
        ("unknown-field.yaml", "name: bad\nsteps:\n  - http.check: { url: \"http://127.0.0.1:1/\", expect_staus: 200 }\n"),
        ("wrong-type.yaml", "name: bad\nsteps:\n  - host.disk: { path: /, warn_percent: lots }\n"),
        ("params-a-template.yaml", "name: bad\nsteps:\n  - http.check: \"{{ params.check }}\"\n"),
        ("inventory-unknown-section.yaml", "instances:\n  a:\n    htp: { base_url: \"http://127.0.0.1:1\" }\n"),
    ];
    for (name, text) in cases {
        let file = s.write(name, text);
        let (ok, out) = validate(&s, &py, std::slice::from_ref(&file));
        assert!(!ok && out.contains("invalid "), "the schema accepts {name}:\n{out}");
        let run = if name.starts_with("inventory") {
            s.opsctl().args(["validate", "--config", file.to_str().unwrap()]).run()
        } else {
            s.opsctl().args(["validate", file.to_str().unwrap()]).run()
        };
        assert_eq!(run.code, 2, "opsctl accepts {name}:\n{}{}", run.stdout, run.stderr);
    }
}

#[test]
fn templated_mappings_and_controls_are_valid_where_opsctl_takes_them() {
    let Some(py) = python() else { return };
    let s = Scratch::new();
    let file = s.write(
        "templated.yaml",
        "name: ok\nsteps:\n  - retry: { attempts: \"{{ vars.n }}\", delay: 2s }\n    timeout: \"{{ vars.t }}\"\n    http.check:\n      url: \"http://127.0.0.1:1/\"\n      headers: \"{{ vars.headers }}\"\n      expect_json: \"{{ vars.expect }}\"\n",
    );
    let (ok, out) = validate(&s, &py, std::slice::from_ref(&file));
    assert!(ok, "{out}");
}
