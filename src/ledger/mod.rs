//! The ledger: the hash-chained event log and the stored rows of the projections.
//!
//! This module knows bytes and disk and nothing of HTTP. [`chain`] turns events into
//! envelopes and checks the chain; [`Storage`] is the one seam behind which everything
//! backend-specific sits ([`sled_store`] today, PostgreSQL later), so that the same tests
//! can run against every backend.

pub mod chain;
pub mod sled_store;

use std::path::PathBuf;

pub use chain::{ChainHead, StoredEvent};
pub use sled_store::SledStorage;

/// Everything one group commit writes, atomically and durably.
#[derive(Debug, Default)]
pub struct Commit {
    pub events: Vec<StoredEvent>,
    /// (projection, row key, new value or `None` to delete).
    pub rows: Vec<(&'static str, String, Option<Vec<u8>>)>,
    /// (projection, position it has now applied).
    pub checkpoints: Vec<(&'static str, u64)>,
    /// (stream, its new version).
    pub streams: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the data directory {dir} is in use by another keyledger process{holder}; stop it (or use the HTTP API) and try again")]
    Locked { dir: PathBuf, holder: String },
    #[error("no ledger in {dir}; run `keyledger init --data {dir}` (or `keyledger serve`) first, or check --data")]
    Missing { dir: PathBuf },
    #[error("cannot open the data directory {dir}: {source}")]
    Open { dir: PathBuf, source: std::io::Error },
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("cannot make the commit durable (fdatasync of {file}): {source}")]
    Sync { file: PathBuf, source: std::io::Error },
    #[error("the log is damaged at position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error(transparent)]
    Row(#[from] keyledger_projections::RowError),
}

/// A stored projection row: (row key, encoded value).
pub type Row = (String, Vec<u8>);

/// The seam between the ledger's logic and a storage backend.
///
/// Implementations must make [`Storage::commit`] atomic (all of it or none of it, also
/// across a crash) and durable before it returns.
pub trait Storage: Send + Sync {
    /// Appends events and stores rows, checkpoints and stream versions, all or nothing,
    /// and returns only once all of it would survive a power loss.
    fn commit(&self, commit: Commit) -> Result<(), LedgerError>;

    /// Stored events from `position` (inclusive) on, in order.
    fn events_from(&self, position: u64) -> Box<dyn Iterator<Item = Result<StoredEvent, LedgerError>> + '_>;

    /// The last stored event, if any.
    fn last_event(&self) -> Result<Option<StoredEvent>, LedgerError>;

    /// Every stored row of a projection, as (row key, value).
    fn rows(&self, projection: &str) -> Box<dyn Iterator<Item = Result<Row, LedgerError>> + '_>;

    /// The position a projection's stored rows reflect (0: none).
    fn checkpoint(&self, projection: &str) -> Result<u64, LedgerError>;

    /// The version of a stream (0: no event yet).
    fn stream_version(&self, stream: &str) -> Result<u64, LedgerError>;
}
