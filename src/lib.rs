//! keyledger: an event-sourced, hash-chained ledger of API keys behind a JSON:API front end.
//!
//! Layers, arrows pointing down only (see ARCHITECTURE.md):
//! [`http`] (and the binary's CLI) → [`service`] → [`ledger`] and `keyledger_projections`.
//! [`audit`] answers an auditor's questions for the CLI straight from the log: it sits beside
//! [`service`], below the CLI, and uses only [`ledger`] and `keyledger_projections`.
//! [`telemetry`] names the metrics [`http`] and [`service`] record; it uses nothing of ours.

// A user, a file or the network can make almost anything fail: outside tests, failures are
// errors to handle, never `unwrap`/`expect` panics.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod http;
pub mod ledger;
pub mod service;
pub mod telemetry;
