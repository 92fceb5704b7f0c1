//! keyledger's event vocabulary and the projections folded from it.
//!
//! Everything here is pure: no I/O, no clocks, no randomness. The ledger (`keyledger::ledger`)
//! stores [`RecordedEvent`]s and the rows that projections say they changed; the service
//! decides commands against a [`State`]. Because a projection is a deterministic fold, any
//! of them can be rebuilt from the log at any time and compared with the live copy.

// A user, a file or the network can make almost anything fail: outside tests, failures are
// errors to handle, never `unwrap`/`expect` panics.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod creation_order;
pub mod directory;
pub mod event;
pub mod expiry_schedule;
pub mod keys_view;
pub mod name_index;
pub mod projection;
pub mod service_accounts;
pub mod state;
pub mod timestamp;
pub mod token_index;

pub use event::{Actor, ApiKeyKind, Event, Permission, RecordedEvent};
pub use projection::{Projection, RowError};
pub use state::{ProjectionId, State};
