//! The `opsctl` binary: all of it is the library (`src/lib.rs`); this only calls [`opsctl::cli::main`].
fn main() -> std::process::ExitCode {
    opsctl::cli::main()
}
