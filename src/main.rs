//! The `opsctl` binary: all of it is the library (`src/lib.rs`); this only calls [`opsctl::cli::main`].

/// mimalloc rather than the system allocator: a fleet's runs allocate on several threads at
/// once, and glibc's allocator spent a fifth of `check --all`'s time (scripts/bench-fleet.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    opsctl::cli::main()
}
