//! `opsctl permissions`: the least privilege a set of runbooks needs on one instance,
//! computed from the step kinds they use (each kind declares its Kubernetes verbs and
//! resources and its AWS IAM actions, `kind::StepKind::PERMISSIONS`) and what the instance
//! adds: the instance lease of mutating runs, secret references, `kubernetes.resources`,
//! port-forwards. Steps whose `needs:` the instance lacks are left out: they never run.

use std::collections::{BTreeMap, BTreeSet};

use crate::instance::Instance;
use crate::runbook::Runbook;
use crate::vocab::{AwsOn, Effect, Permission};

/// Kubernetes rules: (cluster-wide, API group, resource) → verbs.
pub type KubeRules = BTreeMap<(bool, String, String), BTreeSet<String>>;

/// What the runbooks need on the instance.
#[derive(Debug, Default)]
pub struct Needs {
    pub kube: KubeRules,
    /// (resource sort, action), each once.
    pub aws: BTreeSet<(AwsOn, String)>,
    /// Said in a comment of the output: what could not be computed exactly.
    pub notes: BTreeSet<String>,
}

/// Computes what `runbooks` need on `instance`.
pub fn compute(runbooks: &[&Runbook], instance: &Instance) -> Needs {
    let mut n = Needs::default();
    let has = instance.backends();
    let mut mutating = false;
    let mut kinds = BTreeSet::new();
    for rb in runbooks {
        for step in rb.steps() {
            if !step.controls.needs.iter().all(|b| has.contains(&b.as_str())) {
                continue;
            }
            mutating |= step.effect >= Effect::Mutate;
            kinds.insert(step.kind.name);
            for p in step.kind.permissions {
                n.add(*p);
            }
        }
    }
    let s3_store = instance.backups.as_ref().is_some_and(|b| b.s3.is_some());
    if !s3_store {
        n.aws.retain(|(on, _)| *on != AwsOn::Bucket);
    }
    // The instance lease of a mutating run: a Kubernetes Lease, else a DynamoDB item.
    if mutating {
        if instance.kubernetes.as_ref().is_some_and(|k| k.lease) {
            n.add(crate::vocab::kube("coordination.k8s.io", "leases", &["get", "create", "update"]));
        } else if let Some(table) = instance.aws.as_ref().and_then(|a| a.lease_table.clone()) {
            for a in ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"] {
                n.aws.insert((AwsOn::Tables, a.to_string()));
            }
            n.notes.insert(format!("the DynamoDB lease table `{table}` is among the tables"));
        }
    }
    // Secret references in the instance's settings are read before the steps run.
    for r in instance.remote_secret_refs() {
        match r {
            crate::secret::SecretRef::K8sSecret(_) => n.add(crate::vocab::kube("", "secrets", &["get"])),
            crate::secret::SecretRef::AwsSecret(_) => {
                n.aws.insert((AwsOn::Secrets, "secretsmanager:GetSecretValue".to_string()));
            }
            _ => {}
        }
    }
    // Databases reached through a Kubernetes port-forward.
    let forwards = (instance.postgres.as_ref().is_some_and(|p| p.port_forward.is_some()) && kinds.iter().any(|k| k.starts_with("postgres.")))
        || (instance.redis.as_ref().is_some_and(|r| r.port_forward.is_some()) && kinds.iter().any(|k| k.starts_with("redis.")));
    if forwards {
        n.add(crate::vocab::kube("", "pods", &["get", "list"]));
        n.add(crate::vocab::kube("", "services", &["get"]));
        n.add(crate::vocab::kube("", "pods/portforward", &["create"]));
    }
    // `k8s.resource` reads kinds the inventory names (`kubernetes.resources`).
    if kinds.contains("k8s.resource")
        && let Some(k) = &instance.kubernetes
    {
        for r in &k.resources {
            let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g).to_string();
            n.kube.entry((false, group, plural(&r.kind))).or_default().extend(["get".to_string(), "list".to_string()]);
        }
        if !k.resources.is_empty() {
            n.notes.insert("k8s.resource: the plural of each of kubernetes.resources is guessed from its kind, and a cluster-scoped one needs its rule in the ClusterRole".into());
        }
        n.notes.insert("k8s.resource with a kind written in a step (not in kubernetes.resources) needs get and list on that kind too".into());
    }
    if kinds.contains("k8s.patch") {
        n.notes.insert("k8s.patch: get and patch are given on deployments and statefulsets; another kind it patches needs the same".into());
    }
    n
}

impl Needs {
    fn add(&mut self, p: Permission) {
        match p {
            Permission::Kube { group, resource, verbs, cluster } => {
                self.kube.entry((cluster, group.to_string(), resource.to_string())).or_default().extend(verbs.iter().map(|v| v.to_string()));
            }
            Permission::Aws { actions, on } => self.aws.extend(actions.iter().map(|a| (on, a.to_string()))),
        }
    }

    /// A Role (and RoleBinding) in the instance's namespace, and a ClusterRole (and
    /// binding) for what is cluster-wide, for `service_account` (`namespace/name`).
    pub fn kubernetes_yaml(&self, header: &str, namespace: &str, service_account: (&str, &str)) -> String {
        let mut out = String::new();
        for line in header.lines() {
            out.push_str(&format!("# {line}\n"));
        }
        for note in &self.notes {
            out.push_str(&format!("# note: {note}\n"));
        }
        let (sa_ns, sa_name) = service_account;
        let role = sa_name.to_string();
        let subject = format!("subjects:\n  - kind: ServiceAccount\n    name: {sa_name}\n    namespace: {sa_ns}\n");
        let namespaced = rules(&self.kube, false);
        out.push_str(&format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {role}\n  namespace: {namespace}\nrules:\n{namespaced}"));
        out.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {role}\n  namespace: {namespace}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {role}\n{subject}"
        ));
        if self.kube.keys().any(|(cluster, _, _)| *cluster) {
            let cluster_role = format!("{sa_name}-{sa_ns}");
            out.push_str(&format!("---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {cluster_role}\nrules:\n{}", rules(&self.kube, true)));
            out.push_str(&format!(
                "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {cluster_role}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {cluster_role}\n{subject}"
            ));
        }
        out
    }

    /// An IAM policy document: one statement per sort of resource, on the instance's ARNs.
    pub fn aws_policy(&self, instance: &Instance) -> serde_json::Value {
        let region = instance.aws.as_ref().and_then(|a| a.region.clone()).unwrap_or_else(|| "*".into());
        let mut statements = Vec::new();
        let mut by: BTreeMap<AwsOn, Vec<String>> = BTreeMap::new();
        for (on, action) in &self.aws {
            by.entry(*on).or_default().push(action.clone());
        }
        for (on, actions) in by {
            let (sid, resources) = match on {
                AwsOn::Any => ("Read", vec!["*".to_string()]),
                AwsOn::Tables => {
                    let mut tables: Vec<String> = instance.dynamodb.as_ref().map(|d| d.tables.clone()).unwrap_or_default();
                    tables.extend(instance.aws.as_ref().and_then(|a| a.lease_table.clone()));
                    ("DynamoDBTables", tables.iter().flat_map(|t| [format!("arn:aws:dynamodb:{region}:*:table/{t}"), format!("arn:aws:dynamodb:{region}:*:table/{t}/backup/*")]).collect())
                }
                AwsOn::Bucket => {
                    let Some(s3) = instance.backups.as_ref().and_then(|b| b.s3.as_ref()) else { continue };
                    let prefix = s3.prefix.clone().unwrap_or_default();
                    ("BackupStore", vec![format!("arn:aws:s3:::{}", s3.bucket), format!("arn:aws:s3:::{}/{}*", s3.bucket, prefix.trim_start_matches('/'))])
                }
                AwsOn::Secrets => {
                    let mut names = BTreeSet::new();
                    for r in instance.remote_secret_refs() {
                        if let crate::secret::SecretRef::AwsSecret(spec) = r {
                            names.insert(spec.split(['#', ':']).next().unwrap_or_default().to_string());
                        }
                    }
                    for decl in instance.secrets.values() {
                        if let Some(name) = &decl.aws_secret {
                            names.insert(name.clone());
                        }
                    }
                    if names.is_empty() {
                        continue;
                    }
                    ("Secrets", names.iter().map(|n| format!("arn:aws:secretsmanager:{region}:*:secret:{n}-*")).collect())
                }
                AwsOn::LogGroups => {
                    let groups = instance.cloudwatch_logs.as_ref().map(|c| c.groups.clone()).unwrap_or_default();
                    ("LogGroups", groups.iter().map(|g| format!("arn:aws:logs:{region}:*:log-group:{g}:*")).collect())
                }
                AwsOn::EcsServices => {
                    let Some(ecs) = &instance.ecs else { continue };
                    let mut arns: Vec<String> = ecs.services.iter().map(|s| format!("arn:aws:ecs:{region}:*:service/{}/{s}", ecs.cluster)).collect();
                    if arns.is_empty() {
                        arns.push(format!("arn:aws:ecs:{region}:*:service/{}/*", ecs.cluster));
                    }
                    ("EcsServices", arns)
                }
                AwsOn::DbInstances => ("RdsInstancesAndSnapshots", vec![format!("arn:aws:rds:{region}:*:db:*"), format!("arn:aws:rds:{region}:*:snapshot:*")]),
            };
            if resources.is_empty() {
                continue;
            }
            statements.push(serde_json::json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources }));
        }
        serde_json::json!({ "Version": "2012-10-17", "Statement": statements })
    }
}

/// YAML rules for the namespaced or the cluster-wide part: per API group, resources with
/// the same verbs together.
fn rules(all: &KubeRules, cluster: bool) -> String {
    let mut grouped: BTreeMap<(String, Vec<String>), Vec<String>> = BTreeMap::new();
    for ((c, group, resource), verbs) in all {
        if *c == cluster {
            grouped.entry((group.clone(), verbs.iter().cloned().collect())).or_default().push(resource.clone());
        }
    }
    if grouped.is_empty() {
        return "  []\n".into();
    }
    let mut out = String::new();
    for ((group, verbs), resources) in grouped {
        out.push_str(&format!("  - apiGroups: [\"{group}\"]\n    resources: [{}]\n    verbs: [{}]\n", resources.join(", "), verbs.join(", ")));
    }
    out
}

/// The plural Kubernetes uses for a kind, as discovery gives it for the usual kinds.
fn plural(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    if k.ends_with('s') || k.ends_with("sh") || k.ends_with("ch") || k.ends_with('x') {
        format!("{k}es")
    } else if let Some(stem) = k.strip_suffix('y').filter(|s| !s.ends_with(['a', 'e', 'i', 'o', 'u'])) {
        format!("{stem}ies")
    } else {
        format!("{k}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_follow_the_api_server() {
        assert_eq!(plural("Application"), "applications");
        assert_eq!(plural("Backup"), "backups");
        assert_eq!(plural("NetworkPolicy"), "networkpolicies");
        assert_eq!(plural("Ingress"), "ingresses");
        assert_eq!(plural("Gateway"), "gateways");
    }

    #[test]
    fn every_kubernetes_and_aws_kind_declares_its_permissions() {
        for k in crate::registry::KINDS {
            let remote = ["k8s.", "ecs.", "elb.", "rds.", "dynamodb.", "cloudwatch.", "secrets."].iter().any(|p| k.name.starts_with(p));
            if remote && k.name != "k8s.resource" {
                assert!(!k.permissions.is_empty(), "{} declares no permissions", k.name);
            }
        }
    }
}
