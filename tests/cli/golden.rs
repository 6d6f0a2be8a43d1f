//! Golden tests for error messages: every `tests/golden/NAME.args` is a command line run in
//! `tests/golden/`; its standard error must equal `NAME.stderr` and it must exit 2.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test golden`, then
//! read the diff.


use crate::support::Opsctl;

#[test]
fn error_messages_match_their_golden_files() {
    let dir = crate::support::repo().join("tests/golden");
    let state = tempfile::tempdir().unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "args"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "golden cases went missing");
    let mut failures = Vec::new();
    for case in &cases {
        let args = std::fs::read_to_string(case).unwrap();
        let run = Opsctl::new()
            .args(args.split_whitespace())
            .current_dir(&dir)
            .env("OPSCTL_STATE_DIR", state.path().to_str().unwrap())
            .run();
        let expected_path = case.with_extension("stderr");
        if update {
            std::fs::write(&expected_path, &run.stderr).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        let name = case.file_stem().unwrap().to_string_lossy();
        if run.code != 2 {
            failures.push(format!("{name}: exit {} (expected 2)\n{}", run.code, run.stderr));
        } else if run.stderr != expected {
            failures.push(format!("{name}: stderr differs\n--- expected\n{expected}--- got\n{}", run.stderr));
        }
    }
    assert!(failures.is_empty(), "{} of {} golden cases failed:\n\n{}", failures.len(), cases.len(), failures.join("\n"));
}
