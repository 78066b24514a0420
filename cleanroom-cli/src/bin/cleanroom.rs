//! The `cleanroom` binary: see the crate docs.

fn main() -> std::process::ExitCode {
    cleanroom_cli::run()
}
