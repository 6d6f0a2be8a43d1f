//! The in-cluster path, the way examples/kubernetes/cronjob-daily.yaml runs it: opsctl in a
//! container image built from the binary under test (no registry: `docker import`), the
//! service-account token, CA and namespace mounted at the in-cluster paths,
//! `KUBERNETES_SERVICE_HOST`/`PORT` pointing at the fake API server over TLS, RBAC enforced
//! with examples/kubernetes/rbac.yaml, no kubeconfig anywhere.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::support::fake_kube::{FakeKube, TOKEN};
use crate::support::kube::{NS, node};

/// `opsctl:local` (the CronJob's image) holding the binary under test, stripped, and the
/// shared libraries it loads; `None` outside CI without Docker.
fn image() -> Option<&'static str> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        crate::support::compose::available().ok_or("no Docker")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = dir.path();
        for d in ["tmp", "etc"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
        }
        std::fs::set_permissions(root.join("tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).map_err(|e| e.to_string())?;
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/opsctl\nnonroot:x:65532:65532:nonroot:/tmp:/opsctl\n").map_err(|e| e.to_string())?;
        let bin = crate::support::bin();
        let strip = Command::new("strip").args(["--strip-debug", "-o"]).arg(root.join("opsctl")).arg(bin).status().map_err(|e| e.to_string())?;
        if !strip.success() {
            std::fs::copy(bin, root.join("opsctl")).map_err(|e| e.to_string())?;
        }
        let ldd = Command::new("ldd").arg(bin).output().map_err(|e| e.to_string())?;
        for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
            let to = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
            std::fs::copy(lib, &to).map_err(|e| format!("{lib}: {e}"))?;
        }
        let tar = Command::new("tar").arg("-C").arg(root).args(["-cf", "-", "."]).output().map_err(|e| e.to_string())?;
        let mut import = Command::new("docker")
            .args(["import", "-c", "ENTRYPOINT [\"/opsctl\"]", "-c", "USER 65532", "-", "opsctl:local"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        std::io::Write::write_all(import.stdin.as_mut().unwrap(), &tar.stdout).map_err(|e| e.to_string())?;
        drop(import.stdin.take());
        if !import.wait().map_err(|e| e.to_string())?.success() {
            return Err("docker import of opsctl:local failed".into());
        }
        Ok(())
    });
    match built {
        Ok(()) => Some("opsctl:local"),
        Err(why) => {
            assert!(!crate::support::in_ci(), "the in-cluster test needs Docker under CI=true: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

fn manifest(name: &str) -> serde_json::Value {
    let path = crate::support::repo().join("examples/kubernetes").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let file = opsctl::source::SourceFile::new(path.display().to_string(), text);
    opsctl::yaml::de::from_node(&opsctl::yaml::parse(&file).unwrap(), opsctl::yaml::de::Mode::Strict).unwrap()
}

fn writable(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
}

#[test]
fn the_daily_cronjob_runs_in_a_container_with_the_service_account_and_the_generated_role() {
    let Some(image) = image() else { return };
    // The API server over TLS, with a certificate for 127.0.0.1 from a CA of its own (the
    // pod's ca.crt).
    let (ca, leaf, _) = crate::support::server::certificates();
    let fake = FakeKube::start_tls(crate::support::server::tls_config(leaf));
    fake.with(|c| {
        c.seed("nodes", node("node-1", true));
        c.ready_after = std::time::Duration::from_millis(100);
        c.seed("deployments", crate::support::kube::deployment("api", 1, "registry/api:v1"));
        c.rbac = Some(crate::support::fake_kube::rbac::rules_of(&std::fs::read_to_string(crate::support::repo().join("examples/kubernetes/rbac.yaml")).unwrap()));
    });
    let s = crate::support::Scratch::new();
    let sa = s.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), TOKEN).unwrap();
    std::fs::write(sa.join("ca.crt"), &ca).unwrap();
    std::fs::write(sa.join("namespace"), NS).unwrap();
    let inventory = s.path().join("inventory");
    std::fs::create_dir_all(&inventory).unwrap();
    std::fs::write(inventory.join("opsctl.yaml"), manifest("configmap.yaml")["data"]["opsctl.yaml"].as_str().unwrap()).unwrap();
    let (results, textfile) = (s.path().join("results"), s.path().join("textfile"));
    writable(&results);
    writable(&textfile);

    // The container as the CronJob describes it: its args and env, its user, a read-only root.
    let cron = manifest("cronjob-daily.yaml");
    let container = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], image);
    let args: Vec<String> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    let mut docker = Command::new("docker");
    docker.args(["run", "--rm", "--network", "host", "--read-only", "--cap-drop", "ALL", "--user", "65532"]);
    for e in container["env"].as_array().unwrap() {
        docker.args(["-e", &format!("{}={}", e["name"].as_str().unwrap(), e["value"].as_str().unwrap())]);
    }
    docker.args(["-e", "KUBERNETES_SERVICE_HOST=127.0.0.1", "-e", &format!("KUBERNETES_SERVICE_PORT={}", fake.addr.port())]);
    docker.arg("-v").arg(format!("{}:/var/run/secrets/kubernetes.io/serviceaccount:ro", sa.display()));
    docker.arg("-v").arg(format!("{}:/etc/opsctl:ro", inventory.display()));
    docker.arg("-v").arg(format!("{}:/results", results.display()));
    docker.arg("-v").arg(format!("{}:/textfile", textfile.display()));
    let out = docker.arg(image).args(&args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let code = out.status.code().unwrap_or(-1);

    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(results.join("daily.json")).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: exit {code}\n{stdout}\n{stderr}"));
    assert_eq!(doc["schema"], "opsctl.sequence/v1");
    let ran: Vec<&str> = doc["runs"].as_array().unwrap().iter().map(|r| r["runbook"].as_str().unwrap()).collect();
    assert_eq!(ran, ["check", "logs"], "{stdout}");
    // Every failure, if any, is this busy machine's own (host.*); the cluster's checks pass.
    for run in doc["runs"].as_array().unwrap() {
        for st in run["steps"].as_array().unwrap() {
            if st["status"] == "failed" {
                assert!(st["kind"].as_str().unwrap().starts_with("host."), "{st}");
            }
        }
    }
    assert!(code == 0 || code == 1, "exit {code}\n{stdout}\n{stderr}");
    let check = &doc["runs"][0];
    let workloads = check["steps"].as_array().unwrap().iter().find(|s| s["id"] == "workloads").unwrap_or_else(|| panic!("{check}"));
    assert_eq!(workloads["status"], "passed", "{workloads}");
    assert!(std::fs::read_to_string(results.join("daily.xml")).unwrap().contains("<testsuite name=\"check@team-a\""));
    assert!(std::fs::read_to_string(textfile.join("opsctl_daily.prom")).unwrap().contains("opsctl_run_success{runbook=\"logs\",opsctl_instance=\"team-a\"}"));
    assert!(results.join("state/history.jsonl").exists(), "the history on the results volume");
    // In the cluster, over TLS, with the pod's token and namespace, and nothing refused.
    let requests = fake.with(|c| c.requests.clone());
    assert!(requests.iter().any(|r| r.contains(&format!("/namespaces/{NS}/deployments"))), "{requests:?}");
    assert_eq!(fake.with(|c| c.denied.clone()), Vec::<String>::new(), "the generated Role is enough");
}
