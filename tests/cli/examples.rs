//! Every example and shipped runbook loads; the README's examples are valid and its
//! commands run as written.

use std::path::{Path, PathBuf};

use crate::support::{bin, Opsctl, Scratch};

fn repo() -> PathBuf {
    crate::support::repo()
}

#[test]
fn shipped_and_example_runbooks_validate() {
    let s = Scratch::new();
    s.opsctl().current_dir(repo()).args(["validate"]).run().code(0).stdout_has("ok    check");
    let run = s.opsctl().current_dir(repo()).args(["validate", "--config", "examples/opsctl.yaml", "--instance", "team-a"]).run();
    run.code(0);
    let files: Vec<_> = std::fs::read_dir(repo().join("examples/runbooks")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(files.len() >= 4);
    for f in files {
        let stem = Path::new(&f).file_stem().unwrap().to_string_lossy().into_owned();
        assert!(run.stdout.contains(&format!("ok    {stem} ")), "{stem} not validated:\n{}", run.stdout);
    }
}

/// The fenced blocks of a given language in the README.
fn readme_blocks(lang: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => current = Some(String::new()),
            Some(b) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn readme_yaml_examples_are_valid() {
    let s = Scratch::new();
    let blocks = readme_blocks("yaml");
    assert!(blocks.len() >= 2);
    for (i, block) in blocks.iter().enumerate() {
        let file = s.write(&format!("readme-{i}.yaml"), block);
        let run = if block.contains("instances:") {
            std::fs::create_dir_all(s.path().join("runbooks")).unwrap();
            s.opsctl().args(["list", "instances", "--config", file.to_str().unwrap()]).run()
        } else {
            s.opsctl().args(["validate", file.to_str().unwrap()]).run()
        };
        assert_eq!(run.code, 0, "README yaml block {i} is invalid:\n{block}\n{}", run.stderr);
    }
}

#[test]
fn readme_commands_run_as_written() {
    let s = Scratch::new();
    let bin_dir = Path::new(bin()).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut ran = 0;
    for block in readme_blocks("sh") {
        for line in block.lines().map(|l| l.split(" #").next().unwrap().trim()).filter(|l| l.starts_with("opsctl ")) {
            let out = std::process::Command::new("sh")
                .args(["-c", line])
                .current_dir(repo())
                .env("PATH", &path)
                .env("OPSCTL_STATE_DIR", s.state_dir())
                .env_remove("OPSCTL_CONFIG")
                .output()
                .unwrap();
            assert!(out.status.success(), "README command failed: {line}\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            ran += 1;
        }
    }
    assert!(ran >= 4, "README shell examples went missing");
}

#[test]
fn readme_indexes_every_step_kind_and_names_no_other() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let run = Opsctl::new().args(["list", "kinds", "-o", "json"]).run();
    run.code(0);
    let kinds: Vec<String> = run.json().as_array().unwrap().iter().map(|k| k["kind"].as_str().unwrap().to_string()).collect();
    let index = &readme[readme.find("## Step kinds").unwrap()..readme.find("## The runbook language").unwrap()];
    for name in &kinds {
        assert!(index.contains(&format!("`{name}`")), "README's step kind index lacks {name}");
    }
    // Every `backend.kind` the README mentions is one (a renamed kind is caught).
    let prefixes = ["host", "http", "postgres", "redis", "backup", "compose", "docker", "k8s", "prometheus", "alertmanager", "dynamodb", "ecs", "elb", "rds", "cloudwatch", "secrets", "notify"];
    for token in readme.split('`').skip(1).step_by(2) {
        let Some((prefix, rest)) = token.split_once('.') else { continue };
        let file = ["json", "jsonl", "yaml", "yml", "sh", "rs", "md", "gz", "dump", "xml", "toml", "log", "rdb"].contains(&rest);
        if !file && prefixes.contains(&prefix) && !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c == '_') && token.len() < 40 {
            assert!(kinds.iter().any(|k| k == token) || readme_setting(token), "README names `{token}`, which is not a step kind");
        }
    }
}

/// Dotted names in the README that are inventory settings, not kinds (`postgres.url`).
fn readme_setting(token: &str) -> bool {
    let settings = [
        "backups.", "http.health", "http.base_url", "dynamodb.tables", "elb.target_groups", "rds.instances", "cloudwatch_logs.groups", "ecs.cluster", "ecs.services",
        "postgres.", "redis.", "k8s.", "compose.", "alertmanager.matchers", "prometheus.", "secrets.", "docker.", "host.", "aws.",
    ];
    settings.iter().any(|s| token.starts_with(s)) && !token.contains("..")
}

#[test]
fn schema_and_completions_print() {
    let run = Opsctl::new().args(["schema"]).run();
    run.code(0);
    let schema = run.json();
    assert_eq!(schema["title"], "opsctl runbook");
    let run = Opsctl::new().args(["schema", "inventory"]).run();
    run.code(0);
    assert!(run.json()["properties"]["instances"].is_object());
    Opsctl::new().args(["completions", "bash"]).run().code(0).stdout_has("_opsctl");
}

#[test]
fn explain_gives_every_kinds_reference_from_the_binary() {
    let s = Scratch::new();
    let kinds = s.opsctl().args(["list", "kinds", "-o", "json"]).run();
    kinds.code(0);
    for k in kinds.json().as_array().unwrap() {
        let name = k["kind"].as_str().unwrap();
        let r = s.opsctl().args(["explain", name, "-o", "json"]).run();
        r.code(0);
        let doc = r.json();
        assert_eq!(doc["kind"], name);
        assert!(doc["example"].as_str().is_some_and(|e| e.contains(name)), "{name}: no example");
        assert!(doc["parameters"].is_array() && doc["outputs"].is_array(), "{name}");
    }
    let text = s.opsctl().args(["explain", "k8s.resource"]).run();
    text.code(0);
    text.stdout_has("k8s.resource — any resource by apiVersion/kind")
        .stdout_has("effect: read — changes nothing")
        .stdout_has("needs: `kubernetes:`")
        .stdout_has("  api_version  text, required")
        .stdout_has("  on_empty     one of pass, warn, fail, default fail")
        .stdout_has("example:\n  - id: argocd\n");
    s.opsctl().args(["explain", "k8s.resorce"]).run().code(2).stderr_has("unknown step kind `k8s.resorce`").stderr_has("did you mean `k8s.resource`?");
}

#[test]
fn every_reference_platform_loads_and_validates_every_runbook_for_each_instance() {
    let s = Scratch::new();
    let dir = repo().join("examples/platforms");
    let mut platforms: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    platforms.sort();
    assert_eq!(platforms.len(), 5, "{platforms:?}");
    for p in platforms {
        let inv = p.join("opsctl.yaml");
        assert!(p.join("README.md").is_file(), "{} has no README", p.display());
        let list = s.opsctl().args(["list", "instances", "--config", inv.to_str().unwrap(), "-o", "json"]).run();
        list.code(0);
        for i in list.json().as_array().unwrap() {
            let name = i["name"].as_str().unwrap();
            let r = s.opsctl().args(["validate", "--config", inv.to_str().unwrap(), "--instance", name]).run();
            r.code(0);
            assert!(r.stdout.contains("ok    check ") && r.stdout.contains("ok    triage "), "{}: {}", p.display(), r.stdout);
        }
    }
}
