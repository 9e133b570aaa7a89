//! The `mimr` command: a thin wrapper over the library's CLI.

fn main() -> std::process::ExitCode {
    mimr::cli::main()
}
