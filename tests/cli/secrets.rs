//! A canary secret goes through every path a secret can take; it must appear in no sink.

use crate::support::server::{get_json, servers};
use crate::support::Scratch;

const CANARY: &str = "canary-7f3a9c1e5b";

#[test]
fn a_canary_secret_appears_nowhere() {
    let s = Scratch::new();
    let echo = servers().url("/echo");
    let hook = servers().url(&format!("/hook/{CANARY}"));
    std::fs::write(s.path().join("secret.txt"), format!("file-{CANARY}\n")).unwrap();
    let rb = s.write(
        "rb.yaml",
        &format!(
            r#"name: canary
params:
  token: {{ type: secret }}
  other: {{ type: secret, default: {{ file: secret.txt }} }}
steps:
  - id: header
    name: "call with {{{{ params.token }}}}"
    http.check:
      url: {echo}
      headers: {{ Authorization: {{ env: CANARY_ENV }}, X-Param: "{{{{ params.token }}}}", X-File: "{{{{ params.other }}}}" }}
      expect_body: "does-not-match"
    on_failure: continue
  - id: command
    host.command: {{ shell: 'echo "out $SECRET"; echo "err $SECRET" >&2; exit 1', env: {{ SECRET: {{ env: CANARY_ENV }} }}, effect: read }}
    on_failure: continue
  - id: hook
    notify.webhook: {{ url: {{ env: HOOK }}, text: "done" }}
  - id: bad_hook
    notify.webhook: {{ url: {{ env: BAD_HOOK }}, text: "done" }}
    on_failure: continue
  - id: said
    assert: {{ that: "{{{{ params.token == 'x' }}}}", message: "token was {{{{ params.token }}}}" }}
"#
        ),
    );
    let run = s
        .opsctl()
        .args(["run", rb.to_str().unwrap(), "-i", "localhost", "-p", &format!("token=param-{CANARY}"), "-vv"])
        .args(["--output", "table", "--output", "json=run.json", "--output", "junit=run.xml", "--output", "prometheus=run.prom"])
        .env("CANARY_ENV", &format!("env-{CANARY}"))
        .env("HOOK", &hook)
        .env("BAD_HOOK", &format!("http://127.0.0.1:{}/{CANARY}", crate::support::server::closed_port()))
        .run();
    run.code(1);

    // The secret did reach its destinations.
    let hooks = get_json(&servers().url(&format!("/hooks/{CANARY}")));
    assert_eq!(hooks["bodies"].as_array().unwrap().len(), 1);

    let json = std::fs::read_to_string(s.path().join("run.json")).unwrap();
    let junit = std::fs::read_to_string(s.path().join("run.xml")).unwrap();
    let history = std::fs::read_to_string(s.state_dir().join("history.jsonl")).unwrap();
    let prom = std::fs::read_to_string(s.path().join("run.prom")).unwrap();
    assert!(prom.contains("opsctl_step_status"), "{prom}");
    for (sink, text) in
        [("stdout", &run.stdout), ("stderr (-vv logs)", &run.stderr), ("json", &json), ("junit", &junit), ("history", &history), ("prometheus", &prom)]
    {
        assert!(!text.contains(CANARY), "the canary leaked into {sink}:\n{text}");
    }
    // …and was masked, not dropped: the masks show where it would have been.
    assert!(json.contains("out ***"), "{json}");
    assert!(json.contains("call with ***"), "{json}");
    assert!(json.contains("token was ***"), "{json}");
    assert!(run.stderr.contains("DEBUG"), "-vv produced debug logs");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["params"]["token"], "***");
    assert_eq!(doc["params"]["other"], "***");
}

#[test]
fn secrets_cannot_be_inline_in_webhooks() {
    let s = Scratch::new();
    let rb = s.write("rb.yaml", "name: t\nsteps:\n  - notify.slack: { webhook: \"https://hooks.slack.com/services/T000/B000/XXXX\", text: hi }\n");
    s.opsctl()
        .args(["validate", rb.to_str().unwrap()])
        .run()
        .code(2)
        .stderr_has("a secret is given by reference, `{ env: VAR }`, `{ file: PATH }`, `{ aws_secret: NAME#KEY }` or `{ k8s_secret: NAMESPACE/NAME#KEY }`, never inline");

}

/// `{ aws_secret: … }` (through moto's Secrets Manager) and `{ k8s_secret: … }` (through the
/// fake API server) in a step's env: fetched once when the run starts, scrubbed everywhere,
/// and a wrong key said by reference, never by value.
#[test]
fn aws_and_kubernetes_secret_references() {
    let Some(aws) = crate::support::aws::shared() else { return };
    const AWS_CANARY: &str = "canary-aws-7f3e9b21d4";
    const K8S_CANARY: &str = "canary-k8s-19c4d8e2a6";
    aws.secrets("CreateSecret", serde_json::json!({ "Name": "refs/db", "SecretString": format!("{{\"password\": \"{AWS_CANARY}\", \"user\": \"app\"}}") }));
    // A rotated secret: the previous stage is named after the secret's name.
    aws.secrets("CreateSecret", serde_json::json!({ "Name": "refs/rotated", "SecretString": "{\"password\": \"old-stage-canary-51\"}" }));
    aws.secrets("PutSecretValue", serde_json::json!({ "SecretId": "refs/rotated", "SecretString": "{\"password\": \"new-stage-canary-62\"}" }));
    let k = crate::support::kube::KubeEnv::new();
    k.fake.with(|c| {
        let encoded = crate::k8s::b64(K8S_CANARY);
        c.seed("secrets", serde_json::json!({"metadata": {"name": "db-credentials", "namespace": "team-a"}, "data": {"password": encoded}}));
    });
    k.scratch.write(
        "opsctl.yaml",
        &format!("instances:\n  team-a:\n    kubernetes: {{ kubeconfig: kubeconfig.yaml, namespace: team-a }}\n    aws: {}\n", aws.settings("us-east-1")),
    );
    let rb = k.scratch.write(
        "rb.yaml",
        "name: refs\nparams:\n  db_password: { type: secret, default: { aws_secret: \"refs/db#password\" } }\nsteps:\n\
         \x20 - id: both\n\
         \x20   host.command:\n\
         \x20     shell: 'echo \"got $A and $B\"; test \"$A\" = \"$WANT_A\" && test \"$B\" = \"$WANT_B\"'\n\
         \x20     env: { A: { aws_secret: \"refs/db#password\" }, B: { k8s_secret: \"team-a/db-credentials#password\" }, WANT_A: canary-aws-7f3e9b21d4, WANT_B: canary-k8s-19c4d8e2a6 }\n\
         \x20     effect: read\n\
         \x20 - id: nokey\n\
         \x20   host.command: { argv: [\"true\"], env: { C: { aws_secret: \"refs/db#nokey\" } }, effect: read }\n\
         \x20   on_failure: continue\n\
         \x20 - id: param\n\
         \x20   host.command: { shell: 'test \"$P\" = \"$WANT\"', env: { P: \"{{ params.db_password }}\", WANT: canary-aws-7f3e9b21d4 }, effect: read }\n\
         \x20 - id: stage\n\
         \x20   host.command: { shell: 'test \"$O\" = \"$WANT_O\" && test \"$N\" = \"$WANT_N\"', env: { O: { aws_secret: \"refs/rotated:AWSPREVIOUS#password\" }, N: { aws_secret: \"refs/rotated#password\" }, WANT_O: old-stage-canary-51, WANT_N: new-stage-canary-62 }, effect: read }\n\
         \x20 - id: nosecret\n\
         \x20   host.command: { argv: [\"true\"], env: { D: { k8s_secret: \"team-a/missing#password\" } }, effect: read }\n\
         \x20   on_failure: continue\n",
    );
    let r = crate::aws::creds(k.scratch.opsctl())
        .args(["run", rb.to_str().unwrap(), "-i", "team-a", "-o", "json", "-vv", "--output", "junit=run.xml", "--output", "prometheus=run.prom"])
        .run();
    r.code(1);
    assert_eq!(r.step("both")["status"], "passed", "{}", r.stdout);
    assert_eq!(r.step("both")["outputs"]["stdout"], "got *** and ***\n");
    assert_eq!(r.step("param")["status"], "passed", "a secret param's default by aws_secret: {}", r.stdout);
    assert_eq!(r.step("stage")["status"], "passed", "AWSPREVIOUS by name:STAGE: {}", r.stdout);
    assert_eq!(r.step("nokey")["message"], "env C: aws_secret:refs/db#nokey: secret refs/db has no key nokey; its keys: password, user");
    let m = r.step("nosecret")["message"].as_str().unwrap().to_string();
    assert!(m.starts_with("env D: k8s_secret:team-a/missing#password: Secret missing not found in namespace team-a"), "{m}");
    let junit = std::fs::read_to_string(k.scratch.path().join("run.xml")).unwrap();
    let prom = std::fs::read_to_string(k.scratch.path().join("run.prom")).unwrap();
    assert!(r.stderr.contains("DEBUG") && junit.contains("<testcase") && prom.contains("opsctl_run_success"));
    for text in [&r.stdout, &r.stderr, &junit, &prom] {
        assert!(!text.contains(AWS_CANARY) && !text.contains(K8S_CANARY), "a canary leaked: {text}");
    }
    let history = serde_json::to_string(&k.scratch.history()).unwrap();
    assert!(history.contains("refs") && !history.contains(AWS_CANARY) && !history.contains(K8S_CANARY), "{history}");
}

#[test]
fn rotate_secret_on_secrets_manager_puts_the_previous_version_back_when_health_fails() {
    let Some((s, aws)) = crate::aws::setup() else { return };
    aws.secrets("CreateSecret", serde_json::json!({ "Name": "rs/stripe", "SecretString": "{\"api_key\": \"original-stripe-key-value\", \"account\": \"acct_1\"}" }));
    let current = || {
        let v = aws.secrets("GetSecretValue", serde_json::json!({ "SecretId": "rs/stripe", "VersionStage": "AWSCURRENT" }));
        serde_json::from_str::<serde_json::Value>(v["SecretString"].as_str().unwrap()).unwrap()
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let write = |http: &str| {
        s.write(
            "opsctl.yaml",
            &format!("instances:\n  a:\n    aws: {}\n{http}    secrets:\n      stripe: {{ aws_secret: rs/stripe, key: api_key }}\n", aws.settings("us-east-1")),
        )
    };
    write("");
    let r = crate::aws::creds(s.opsctl()).args(["rotate-secret", "-i", "a", "stripe", "-o", "json"]).run();
    r.code(0);
    let rotated = current()["api_key"].as_str().unwrap().to_string();
    assert_ne!(rotated, "original-stripe-key-value");
    assert_eq!(current()["account"], "acct_1", "the other keys are kept");
    assert!(!r.stdout.contains(&rotated) && !r.stderr.contains(&rotated), "the new value was printed");

    // The API does not answer after the rotation: AWSCURRENT goes back to the previous version.
    write(&format!("    http: {{ base_url: \"http://127.0.0.1:{closed}\", health: [/health] }}\n"));
    let r = crate::aws::creds(s.opsctl()).args(["rotate-secret", "-i", "a", "stripe", "-o", "json"]).run();
    r.code(1);
    assert_eq!(r.step("aws_rollback")["status"], "passed", "{}", r.stdout);
    assert_eq!(r.step("rolled_back")["message"], "rotating stripe failed (health) and the previous values were put back");
    assert_eq!(current()["api_key"], rotated.as_str(), "the value before this rotation is current again");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(!all.contains(&rotated), "a value was printed");
}

/// An unset `{ env: … }` or unreadable `{ file: … }` the run would read is one exit-2 error
/// at the place it is written, before any step runs; one only an unused section holds does
/// not stop the run.
#[test]
fn unreadable_secret_references_stop_the_run_before_it_starts() {
    let s = Scratch::new();
    s.write(
        "opsctl.yaml",
        "instances:\n  a:\n    postgres: { url: { env: OPSCTL_TEST_UNSET_PG } }\n    http:\n      base_url: http://127.0.0.1:1\n      headers: { Authorization: { file: missing-token.txt } }\n  b:\n    postgres: { url: { env: OPSCTL_TEST_UNSET_PG } }\n",
    );
    let pg = s.write("pg.yaml", "name: pg\nsteps:\n  - id: ping\n    postgres.ping: {}\n  - id: again\n    postgres.ping: {}\n");
    let r = s.opsctl().args(["run", pg.to_str().unwrap(), "-i", "a"]).run();
    r.code(2)
        .stderr_has("instance a: environment variable OPSCTL_TEST_UNSET_PG is not set")
        .stderr_has("opsctl.yaml:3:29")
        .stderr_has("`pg` reads `postgres:`: step `ping`, `again`")
        .stderr_has("set it in the environment opsctl runs in");
    assert!(!r.stderr.contains("missing-token"), "the http section is not read by this run: {}", r.stderr);
    assert!(s.history().is_empty(), "nothing ran: {:?}", s.history());

    // A template naming `instance.http` reads the http section.
    let h = s.write("h.yaml", "name: h\nsteps:\n  - id: url\n    host.command: { argv: [echo, \"{{ instance.http.base_url }}\"], effect: read }\n");
    s.opsctl()
        .args(["run", h.to_str().unwrap(), "-i", "a"])
        .run()
        .code(2)
        .stderr_has("instance a: cannot read secret file missing-token.txt: no such file")
        .stderr_has("opsctl.yaml:6:41")
        .stderr_has("`h` reads `http:`: step `url`")
        .stderr_has("make the file readable");
    std::fs::write(s.path().join("missing-token.txt"), "Bearer t\n").unwrap();
    s.opsctl().args(["run", h.to_str().unwrap(), "-i", "a"]).run().code(0);

    // Neither section read, or only by a step the instance has no backend for: the run goes on.
    let plain = s.write("plain.yaml", "name: plain\nsteps:\n  - id: t\n    host.command: { argv: [\"true\"], effect: read }\n  - id: cache\n    needs: redis\n    postgres.ping: {}\n");
    s.opsctl().args(["run", plain.to_str().unwrap(), "-i", "a"]).run().code(0);

    // Several instances: every problem is told at once, and none runs.
    let ran = s.history().len();
    s.opsctl()
        .args(["run", pg.to_str().unwrap(), "-i", "a,b"])
        .run()
        .code(2)
        .stderr_has("instance a: environment variable OPSCTL_TEST_UNSET_PG is not set")
        .stderr_has("instance b: environment variable OPSCTL_TEST_UNSET_PG is not set")
        .stderr_has("opsctl.yaml:8:29");
    // The shipped check, the issue's case: one error, not three failed steps.
    let r = s.opsctl().args(["check", "-i", "b"]).run();
    r.code(2).stderr_has("instance b: environment variable OPSCTL_TEST_UNSET_PG is not set").stderr_has("opsctl.yaml:8:29");
    assert_eq!(r.stderr.matches("is not set").count(), 1, "{}", r.stderr);
    assert_eq!(s.history().len(), ran, "nothing ran");
    // Set, the same run goes to its steps (which fail: nothing listens there).
    s.opsctl().args(["run", pg.to_str().unwrap(), "-i", "b"]).env("OPSCTL_TEST_UNSET_PG", "postgres://u@127.0.0.1:1/db").run().code(1);
}

/// A panic's message may hold whatever the code had in hand: the hook masks secrets in it
/// and says it is a bug. (Debug builds panic on request in a step, with its rendered
/// parameters in the message.)
#[test]
fn a_panic_message_is_scrubbed() {
    let s = Scratch::new();
    let rb = s.write(
        "rb.yaml",
        "name: p\nparams:\n  token: { type: secret, default: { env: CANARY_ENV } }\nsteps:\n  - id: boom\n    http.check: { url: \"http://127.0.0.1:1/{{ params.token }}\" }\n",
    );
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost"]).env("CANARY_ENV", &format!("env-{CANARY}")).env("OPSCTL_DEBUG_PANIC_IN_STEP", "boom").run();
    assert_eq!(r.code, 101, "{}", r.stderr);
    r.stderr_has("opsctl panicked").stderr_has("a panic asked for in step boom, with [\"url\", \"http://127.0.0.1:1/***\"]").stderr_has("this is a bug in opsctl");
    assert!(!r.stderr.contains(CANARY) && !r.stdout.contains(CANARY), "{}", r.stderr);
}

/// A secret on a program's command line is refused: where the template shows a secret
/// parameter, when the runbook loads; otherwise when the rendered value holds one.
#[test]
fn secrets_are_refused_on_command_lines() {
    let s = Scratch::new();
    let rb = s.write(
        "rb.yaml",
        "name: t\nparams:\n  token: { type: secret }\nsteps:\n  - id: call\n    host.command: { argv: [curl, -H, \"Authorization: {{ params.token }}\"], effect: read }\n  - id: sh\n    host.command: { shell: \"echo {{ params.token }}\", effect: read }\n",
    );
    s.opsctl()
        .args(["validate", rb.to_str().unwrap()])
        .run()
        .code(2)
        .stderr_has("secret parameter `token` would be on the command line (`argv`) of step `call`")
        .stderr_has("rb.yaml:6:38")
        .stderr_has("anyone on the host can read a command line")
        .stderr_has("`env: { TOKEN: \"{{ params.token }}\" }`")
        .stderr_has("secret parameter `token` would be on the command line (`shell`) of step `sh`");
    // Through a step's output, only the run sees it: refused before the program starts.
    let rb = s.write(
        "rb2.yaml",
        "name: t\nsteps:\n  - id: read\n    host.command: { shell: 'echo \"$T\"', env: { T: { env: CANARY_ENV } }, effect: read }\n  - id: use\n    host.command: { argv: [touch, \"{{ steps.read.stdout | trim }}\"], effect: mutate }\n",
    );
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "localhost", "-o", "json"]).env("CANARY_ENV", &format!("env-{CANARY}")).run();
    r.code(1);
    assert_eq!(r.step("read")["status"], "passed");
    assert_eq!(r.step("use")["status"], "failed");
    let m = r.step("use")["message"].as_str().unwrap().to_string();
    assert!(m.starts_with("`argv` holds a secret value (item 2); a command line can be read by anyone on the host, so opsctl does not start it: pass the secret through `env:`"), "{m}");
    assert!(!s.path().join(format!("env-{CANARY}")).exists(), "the program ran");
    // The same in a pod.
    let k = crate::support::kube::KubeEnv::new();
    k.deployment("api", 1, "registry/api:v1");
    let r = k.run(
        "  - id: read\n    host.command: { shell: 'echo \"$T\"', env: { T: { env: CANARY_ENV } }, effect: read }\n  - id: use\n    k8s.exec: { target: deployment/api, argv: [echo, \"{{ steps.read.stdout | trim }}\"], effect: read }\n",
        &[],
    );
    let _ = r;
    let r = k.scratch.opsctl().args(["run", k.scratch.path().join("rb.yaml").to_str().unwrap(), "-i", "team-a", "-o", "json"]).env("CANARY_ENV", &format!("env-{CANARY}")).run();
    r.code(1);
    let m = r.step("use")["message"].as_str().unwrap().to_string();
    assert!(m.starts_with("`argv` holds a secret value (item 2)") && m.ends_with("from a Kubernetes Secret (a mounted file or an environment variable of the container) and read it there"), "{m}");
    assert!(k.fake.with(|c| c.requests.iter().all(|r| !r.contains("/exec"))), "the exec was sent");
}

/// Every program opsctl starts — a host command, pg_dump, docker exec — is sampled from
/// /proc while it runs: the canary is on none of their command lines.
#[test]
fn no_child_command_line_holds_a_secret() {
    let Some(pg) = crate::support::postgres::shared() else { return };
    let s = Scratch::new();
    let password = format!("pw-{CANARY}");
    pg.psql("postgres", "DROP DATABASE IF EXISTS t_canary WITH (FORCE)");
    pg.psql("postgres", &format!("DROP ROLE IF EXISTS canary_owner; CREATE ROLE canary_owner LOGIN PASSWORD '{password}'"));
    pg.psql("postgres", "CREATE DATABASE t_canary OWNER canary_owner");
    let url = pg.url("t_canary").replace("postgres:opsctl-test-pw@", &format!("canary_owner:{password}@"));
    assert!(url.contains(&password), "{url}");
    let Some(p) = crate::support::compose::Project::new(&s, "canary", "services:\n  web: { image: {image}, command: [sleep, \"3600\"], stop_signal: SIGKILL }\n") else {
        return;
    };
    p.compose(&["up", "-d"]);
    s.write(
        "opsctl.yaml",
        &format!(
            "instances:\n  c:\n    postgres: {{ url: {{ env: PG_URL }} }}\n    backups: {{ dir: backups }}\n    compose: {{ files: [docker-compose.yml], project: {} }}\n",
            p.name
        ),
    );
    std::fs::write(s.path().join("token.txt"), format!("file-{CANARY}\n")).unwrap();
    let rb = s.write(
        "rb.yaml",
        "name: children\nparams:\n  token: { type: secret, default: { file: token.txt } }\nsteps:\n\
         \x20 - id: host\n    host.command: { argv: [sleep, \"0.4\"], env: { A: { env: CANARY_ENV }, B: \"{{ params.token }}\" }, effect: read }\n\
         \x20 - id: exec\n    compose.exec: { service: web, argv: [sh, -c, 'sleep 0.4; test -n \"$A\"'], env: { A: { env: CANARY_ENV } }, effect: read }\n\
         \x20 - id: dump\n    postgres.backup: {}\n",
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut seen, mut leaked) = (std::collections::BTreeSet::new(), Vec::new());
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                for e in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(raw) = std::fs::read(e.path().join("cmdline")) else { continue };
                    let line = String::from_utf8_lossy(&raw).replace('\0', " ");
                    if line.contains(CANARY) {
                        leaked.push(line.clone());
                    }
                    for program in ["sleep 0.4", "docker exec", "pg_dump"] {
                        if line.contains(program) {
                            seen.insert(program);
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            (seen, leaked)
        })
    };
    let r = s.opsctl().args(["run", rb.to_str().unwrap(), "-i", "c", "-o", "json"]).env("CANARY_ENV", &format!("env-{CANARY}")).env("PG_URL", &url).run();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (seen, leaked) = sampler.join().unwrap();
    r.code(0);
    assert!(leaked.is_empty(), "the canary on a command line: {leaked:?}");
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["docker exec", "pg_dump", "sleep 0.4"], "the sampler saw every program opsctl started");
    assert!(!r.stdout.contains(CANARY) && !r.stderr.contains(CANARY));
}
