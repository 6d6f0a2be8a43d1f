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
