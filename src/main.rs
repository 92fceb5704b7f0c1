//! The `keyledger` binary: the command line around the library. `anyhow` lives here only.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyledger: {e:#}");
            ExitCode::FAILURE
        }
    }
}
