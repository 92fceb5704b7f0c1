//! The `keyledger` binary: the command line around the library. `anyhow` lives here only.

// A user, a file or the network can make almost anything fail: outside tests, failures are
// errors to handle, never `unwrap`/`expect` panics.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cli;

use std::process::ExitCode;

/// glibc's allocator spent a fifth of `rebuild`'s and a tenth of `audit verify`'s time in
/// malloc/free and page faults on a million-key ledger (millions of small rows and keys);
/// mimalloc keeps freed memory per thread for reuse. The library leaves the choice to binaries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyledger: {e:#}");
            ExitCode::FAILURE
        }
    }
}
