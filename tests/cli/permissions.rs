//! `opsctl permissions`: the Role computed from the runbooks is exactly enough — the fake API
//! server enforces it, `routine daily` passes with it, and fails with one rule fewer.

use crate::procedures::passed_but_for_the_machine;
use crate::support::fake_kube::rbac::rules_of;
use crate::support::kube::{KubeEnv, NS};

#[test]
fn the_generated_role_is_exactly_what_the_daily_routine_and_a_scale_need() {
    let k = KubeEnv::new();
    k.deployment("api", 2, "registry/api:v1");
    let o = |args: &[&str]| k.scratch.opsctl().args(args).run();
    let role = o(&["permissions", "--routine", "daily", "-i", "team-a"]);
    role.code(0).stdout_has("kind: Role\n").stdout_has("kind: ClusterRole\n").stdout_has(&format!("namespace: {NS}"));
    assert!(role.stdout.contains("resources: [nodes]"), "node-level reads are in the ClusterRole: {}", role.stdout);
    let rules = rules_of(&role.stdout);
    assert!(rules.iter().any(|r| r.namespace.is_none()) && rules.iter().any(|r| r.namespace.as_deref() == Some(NS)));

    // With exactly the generated rules, the routine passes and nothing is refused.
    k.fake.with(|c| c.rbac = Some(rules.clone()));
    let r = o(&["routine", "daily", "-i", "team-a", "-o", "json"]);
    passed_but_for_the_machine(&r);
    assert_eq!(k.fake.with(|c| c.denied.clone()), Vec::<String>::new());

    // One rule fewer (reading pod logs): the 403 names the verb and the resource.
    let mut fewer = rules.clone();
    for rule in &mut fewer {
        rule.resources.retain(|x| x != "pods/log");
    }
    k.fake.with(|c| c.rbac = Some(fewer));
    let r = o(&["routine", "daily", "-i", "team-a", "-o", "json"]);
    r.code(1);
    assert!(r.stdout.contains(r#"cannot get resource \"pods/log\" in API group \"\" in the namespace \"team-a\""#), "{}", r.stdout);
    assert!(k.fake.with(|c| c.denied.contains(&"get /pods/log".to_string())));

    // A mutating runbook needs its writes and the instance lease; with them, it runs.
    let scale = o(&["permissions", "scale", "-i", "team-a"]);
    scale.code(0).stdout_has("coordination.k8s.io").stdout_has("deployments/scale");
    k.fake.with(|c| {
        c.rbac = Some(rules_of(&scale.stdout));
        c.denied.clear();
    });
    o(&["scale", "-i", "team-a", "deployment/api", "--replicas", "3", "--yes"]).code(0);
    assert_eq!(k.fake.with(|c| c.denied.clone()), Vec::<String>::new());
    // Without the lease rule the run cannot take its lease: refused, the verb named.
    let mut no_lease = rules_of(&scale.stdout);
    no_lease.retain(|r| !r.resources.contains(&"leases".to_string()));
    k.fake.with(|c| c.rbac = Some(no_lease));
    let r = o(&["scale", "-i", "team-a", "deployment/api", "--replicas", "2", "--yes"]);
    assert!(k.fake.with(|c| c.denied.iter().any(|d| d.contains("coordination.k8s.io/leases"))), "{}{}", r.stdout, r.stderr);
}

#[test]
fn permissions_for_aws_are_a_policy_on_the_instances_resources() {
    let s = crate::support::Scratch::new();
    s.write(
        "opsctl.yaml",
        "instances:\n  shop:\n    aws: { region: eu-west-1, lease_table: opsctl-leases }\n    dynamodb: { tables: [users] }\n    backups: { s3: { bucket: shop-backups, prefix: opsctl/ } }\n    secrets: { jwt: { aws_secret: shop/jwt, key: JWT } }\n  plain:\n    http: { base_url: \"http://127.0.0.1:1\" }\n",
    );
    let r = s.opsctl().args(["permissions", "backup", "rotate-secret", "-i", "shop"]).run();
    r.code(0);
    let doc = r.json();
    let statement = |sid: &str| doc["Statement"].as_array().unwrap().iter().find(|x| x["Sid"] == sid).cloned().unwrap_or_else(|| panic!("no {sid} in {doc}"));
    let tables = statement("DynamoDBTables");
    assert!(tables["Action"].as_array().unwrap().contains(&serde_json::json!("dynamodb:Scan")), "{tables}");
    assert!(tables["Action"].as_array().unwrap().contains(&serde_json::json!("dynamodb:PutItem")), "the lease item: {tables}");
    assert!(tables["Resource"].as_array().unwrap().contains(&serde_json::json!("arn:aws:dynamodb:eu-west-1:*:table/users")));
    assert_eq!(statement("BackupStore")["Resource"], serde_json::json!(["arn:aws:s3:::shop-backups", "arn:aws:s3:::shop-backups/opsctl/*"]));
    assert_eq!(statement("Secrets")["Resource"], serde_json::json!(["arn:aws:secretsmanager:eu-west-1:*:secret:shop/jwt-*"]));
    s.opsctl().args(["permissions", "check", "-i", "plain"]).run().code(2).stderr_has("has neither `kubernetes:` nor `aws:`");
    s.opsctl().args(["permissions", "-i", "shop"]).run().code(2).stderr_has("needs runbooks or --routine NAME");
    s.opsctl().args(["permissions", "check", "-i", "shop", "--format", "kubernetes"]).run().code(2).stderr_has("has no `kubernetes:`");
}

/// The manifests of examples/kubernetes/, parsed with opsctl's YAML reader: (file, object).
fn manifests() -> Vec<(String, serde_json::Value)> {
    let dir = crate::support::repo().join("examples/kubernetes");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in text.split("\n---\n") {
            let file = opsctl::source::SourceFile::new(f.display().to_string(), doc);
            let node = opsctl::yaml::parse(&file).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let v: serde_json::Value = opsctl::yaml::de::from_node(&node, opsctl::yaml::de::Mode::Strict).unwrap();
            out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out
}

/// Every field of `want` is in `got` with the same value (the server dropped nothing).
fn contains(got: &serde_json::Value, want: &serde_json::Value, at: &str) -> Result<(), String> {
    match (got, want) {
        (serde_json::Value::Object(g), serde_json::Value::Object(w)) => {
            for (k, v) in w {
                contains(g.get(k).unwrap_or(&serde_json::Value::Null), v, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (serde_json::Value::Array(g), serde_json::Value::Array(w)) if g.len() == w.len() => {
            g.iter().zip(w).enumerate().try_for_each(|(i, (g, w))| contains(g, w, &format!("{at}[{i}]")))
        }
        (g, w) if g == w => Ok(()),
        (g, w) => Err(format!("{at}: sent {w}, the server kept {g}")),
    }
}

#[test]
fn the_kubernetes_examples_are_valid_objects_and_accepted_command_lines() {
    let k = KubeEnv::new();
    let docs = manifests();
    let kinds: Vec<&str> = docs.iter().map(|(_, d)| d["kind"].as_str().unwrap()).collect();
    for want in ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "CronJob"] {
        assert!(kinds.contains(&want), "examples/kubernetes has a {want}: {kinds:?}");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::new();
    for (file, doc) in &docs {
        let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (format!("apis/{g}"), v.to_string()),
            None => ("api".to_string(), doc["apiVersion"].as_str().unwrap().to_string()),
        };
        let kind = doc["kind"].as_str().unwrap().to_ascii_lowercase();
        let plural = format!("{kind}s");
        let scope = match doc["metadata"]["namespace"].as_str() {
            Some(ns) => format!("namespaces/{ns}/"),
            None => String::new(),
        };
        let url = format!("{}/{group}/{version}/{scope}{plural}", k.fake.url());
        let created = rt.block_on(async {
            let r = http.post(&url).bearer_auth(crate::support::fake_kube::TOKEN).header("content-type", "application/json").body(doc.to_string()).send().await.unwrap();
            let status = r.status().as_u16();
            (status, serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap())
        });
        assert_eq!(created.0, 201, "{file}: {} {}", doc["kind"], created.1);
        contains(&created.1, doc, &format!("{file} {}", doc["kind"])).unwrap();
    }

    // rbac.yaml is what the binary computes for configmap.yaml's inventory.
    let cm = docs.iter().find(|(_, d)| d["kind"] == "ConfigMap").unwrap();
    k.scratch.write("in-cluster.yaml", cm.1["data"]["opsctl.yaml"].as_str().unwrap());
    let r = k.scratch.opsctl().args(["--config", "in-cluster.yaml", "permissions", "--routine", "daily", "--routine", "weekly", "-i", "team-a"]).run();
    r.code(0);
    let file = std::fs::read_to_string(crate::support::repo().join("examples/kubernetes/rbac.yaml")).unwrap();
    let generated: String = file.lines().skip(2).map(|l| format!("{l}\n")).collect();
    assert_eq!(generated, r.stdout, "examples/kubernetes/rbac.yaml is stale: regenerate it (see its first line)");

    // Every opsctl command line in the examples is one the binary accepts.
    let mut lines: Vec<Vec<String>> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "CronJob")
        .map(|(_, d)| d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect())
        .collect();
    let dir = crate::support::repo().join("examples/kubernetes");
    for f in ["systemd/opsctl-daily.service", "github-actions/deploy.yml"] {
        for line in std::fs::read_to_string(dir.join(f)).unwrap().lines() {
            let t = line.trim();
            let Some(cmd) = t.strip_prefix("ExecStart=/usr/local/bin/opsctl ").or_else(|| t.strip_prefix("run: opsctl ")) else { continue };
            let words: Vec<String> = cmd.split_whitespace().map(|w| w.trim_matches('"').to_string()).collect();
            lines.push(words);
        }
    }
    assert!(lines.len() >= 5, "{lines:?}");
    for args in &lines {
        let argv = std::iter::once("opsctl".to_string()).chain(args.iter().cloned());
        if let Err(e) = <opsctl::cli::args::Cli as clap::Parser>::try_parse_from(argv) {
            panic!("the binary refuses `opsctl {}`: {e}", args.join(" "));
        }
    }
}
