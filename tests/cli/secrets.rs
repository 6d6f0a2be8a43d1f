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
        .args(["--output", "table", "--output", "json=run.json", "--output", "junit=run.xml"])
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
    for (sink, text) in [("stdout", &run.stdout), ("stderr (-vv logs)", &run.stderr), ("json", &json), ("junit", &junit), ("history", &history)] {
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
        .stderr_has("a secret is given by reference, `{ env: VAR }` or `{ file: PATH }`, never inline");

}
