fn main() -> std::process::ExitCode {
    opsctl::cli::main()
}
