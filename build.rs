//! Embeds every runbook in `runbooks/` into the binary (see src/catalog.rs).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read at run time: a build script compiled for one checkout may be reused for another
    // that shares the target directory, and `env!` would point at the first one.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest_dir).join("runbooks");
    println!("cargo:rerun-if-changed=runbooks");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("runbooks/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    let mut out = String::from("/// Shipped runbooks: (name, file name, text).\npub static EMBEDDED: &[(&str, &str, &str)] = &[\n");
    for n in &names {
        println!("cargo:rerun-if-changed=runbooks/{n}");
        let stem = n.trim_end_matches(".yaml");
        let path = dir.join(n);
        let _ = writeln!(out, "    ({stem:?}, {n:?}, include_str!({:?})),", path.display().to_string());
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_runbooks.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
