//! The fuzz targets' corpus (`fuzz/corpus/<target>/`, seeds and what fuzzing kept) and every
//! input that ever made one fail (`fuzz/regressions/<target>/`, named after what it found),
//! replayed through the same entry points `scripts/fuzz.sh` fuzzes: none may panic.

use crate::support::repo;

#[test]
fn every_fuzz_input_that_ever_failed_and_the_corpus_pass() {
    let mut fed = 0;
    let mut regressions = 0;
    for (name, target) in opsctl::fuzz::TARGETS {
        for dir in ["corpus", "regressions"] {
            let path = repo().join("fuzz").join(dir).join(name);
            let mut inputs: Vec<_> = std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).flatten().map(|e| e.path()).collect();
            inputs.sort();
            for input in inputs.iter().filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))) {
                let data = std::fs::read(input).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "fuzz target {name} panics on {}", input.display());
                fed += 1;
                regressions += usize::from(dir == "regressions");
            }
        }
    }
    assert!(fed > 20, "only {fed} inputs found under fuzz/");
    eprintln!("{fed} fuzz inputs replayed, {regressions} of them regressions");
}
