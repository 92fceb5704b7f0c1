//! The ledger: the hash-chained event log and the stored rows of the projections.
//!
//! This module knows bytes and disk and nothing of HTTP. [`chain`] turns events into
//! envelopes and checks the chain; [`Storage`] is the one seam behind which everything
//! backend-specific sits ([`sled_store`], the embedded default, and [`postgres`]), so that the same tests
//! can run against every backend. [`LastUseStore`] is a second, smaller seam: when each key
//! was last used, kept beside the log and never in it.

pub mod chain;
pub mod checkpoint;
#[cfg(test)]
pub(crate) mod conformance;
pub mod envelope;
pub mod journal;
#[cfg(test)]
pub(crate) mod memory;
pub mod postgres;
pub mod sled_store;
pub mod transfer;
pub mod verify;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use keyledger_projections::ProjectionId;
use uuid::Uuid;

pub use chain::{ChainHead, StoredEvent};
pub use postgres::PostgresStorage;
pub use sled_store::SledStorage;

/// Everything one group commit writes, atomically and durably.
#[derive(Debug, Default)]
pub struct Commit {
    pub events: Vec<StoredEvent>,
    /// The projection rows these events changed, journaled with them.
    pub rows: Vec<RowChange>,
    /// (projection, position it has now applied).
    pub checkpoints: Vec<(ProjectionId, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the data directory {dir} is in use by another keyledger process{holder}; stop it (or use the HTTP API) and try again")]
    Locked { dir: PathBuf, holder: String },
    #[error("no ledger in {dir}; run `keyledger init --data {dir}` (or `keyledger serve`) first, or check --data")]
    Missing { dir: PathBuf },
    #[error("cannot open the data directory {dir}: {source}")]
    Open { dir: PathBuf, source: std::io::Error },
    #[error("storage failed ({context}): {source}")]
    Storage { context: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{what} is too large to store ({bytes} bytes)")]
    TooLarge { what: String, bytes: usize },
    #[error("event {position} cannot be encoded: {source}")]
    Encode { position: u64, source: serde_json::Error },
    #[error("the thread {thread} panicked")]
    ThreadPanicked { thread: &'static str },
    #[error("cannot make the commit durable (fdatasync of {file}): {source}")]
    Sync { file: PathBuf, source: std::io::Error },
    #[error("the log is damaged at position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error(transparent)]
    Row(#[from] keyledger_projections::RowError),
    #[error("the database URL is not a PostgreSQL connection URL such as postgres://user@host:5432/database")]
    DatabaseUrl { source: Box<dyn std::error::Error + Send + Sync> },
    #[error("cannot connect to PostgreSQL at {target}")]
    Unreachable { target: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{schema:?} is not a schema name keyledger uses: lowercase letters, digits and _, starting with a letter, at most 48")]
    SchemaName { schema: String },
    #[error("no ledger in schema {schema} at {target}; run `keyledger init --database-url … --database-schema {schema}` (or `keyledger serve`) first, or check --database-schema")]
    NoSchema { schema: String, target: String },
    #[error("the schema {schema} was written by a newer keyledger (schema version {found}; this build knows up to {known}): run that keyledger or a newer one")]
    NewerSchema { schema: String, found: u32, known: u32 },
    /// A command that must have the ledger to itself, refused because nodes serve it
    /// (see `postgres::locks`).
    #[error("a node serves the ledger in schema {schema} at {target} ({holders})")]
    Serving { schema: String, target: String, holders: String },
    /// An append whose first event is not right after the stored head: another writer
    /// appended first (or the caller lost track of the head). Nothing of the commit is written.
    #[error(
        "the commit starts at position {position} but the log's head is at {head}: another writer appended first; nothing was written"
    )]
    NotNext { position: u64, head: u64 },
}

/// One change to one stored projection row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowChange {
    pub projection: ProjectionId,
    pub key: String,
    /// The row's new encoding, or `None` when the row is gone.
    pub value: Option<Vec<u8>>,
}

/// The seam between the ledger's logic and a storage backend.
///
/// [`Storage::append`] must be atomic (all of a commit or none of it, also across a crash)
/// and keep commits in order: after a crash, what survives is a prefix of the appended
/// commits. [`Storage::sync`] returns once everything appended before it would survive a
/// power loss. Splitting the two lets the writer decide and append the next batch while the
/// previous one is being synced.
pub trait Storage: Send + Sync {
    /// Appends events, journals row changes and stores checkpoints, all or nothing.
    fn append(&self, commit: Commit) -> Result<(), LedgerError>;

    /// Makes every appended commit durable.
    fn sync(&self) -> Result<(), LedgerError>;

    /// Opens an append: returns the events other writers committed after `after` (the
    /// caller's head), in order, and a session that appends the caller's commit with nobody
    /// else committing in between. The caller folds those events, decides against the result
    /// and appends through the session (or drops it, appending nothing): every rule then
    /// holds across writers, because each decision sees the whole log (DESIGN.md, "PostgreSQL
    /// and several nodes").
    ///
    /// A store only this process writes has nothing to catch up on: by default no events and
    /// a session that is [`Storage::append`].
    fn begin_append(&self, after: u64) -> Result<(Vec<StoredEvent>, Box<dyn AppendSession + '_>), LedgerError> {
        let _ = after;
        Ok((Vec::new(), Box::new(Direct(self))))
    }

    /// The log as other writers share it, for stores that have any (`None`: this process is
    /// the only writer, there is nothing to follow).
    fn shared(&self) -> Option<&dyn SharedLog> {
        None
    }

    /// Lets go of whatever this handle holds that a failed append or sync may have left
    /// out of step with what is durable, so that the next calls read and write what is: a
    /// writer calls it before it resumes after such a failure. By default nothing: a store
    /// whose every call goes to durable storage has nothing to let go of.
    fn reopen(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    /// Appends and syncs.
    fn commit(&self, commit: Commit) -> Result<(), LedgerError> {
        self.append(commit)?;
        self.sync()
    }

    /// Stored events from `position` (inclusive) on, in order.
    fn events_from(&self, position: u64) -> Box<dyn Iterator<Item = Result<StoredEvent, LedgerError>> + '_>;

    /// The last stored event, if any.
    fn last_event(&self) -> Result<Option<StoredEvent>, LedgerError>;

    /// Every journal record (the row changes of one commit each), in commit order.
    fn journal(&self) -> Box<dyn Iterator<Item = Result<journal::Record, LedgerError>> + '_>;

    /// The position a projection's stored rows reflect (0: none).
    fn checkpoint(&self, projection: ProjectionId) -> Result<u64, LedgerError>;

    /// Replaces the whole projection journal by `rows` (every row of every projection, as
    /// they should now be) and stores `checkpoints`, atomically and durably: after a crash
    /// either the old journal or the new one is there, never a mix. Returns the number of
    /// rows written.
    ///
    /// This is how `rebuild` swaps fresh projections in, and it compacts the journal (one
    /// row per entity instead of one per change ever made). The events are untouched. `rows`
    /// is drawn as it is written: a million keys' rows held at once would cost gigabytes.
    fn replace_journal(
        &self,
        rows: &mut dyn Iterator<Item = RowChange>,
        checkpoints: Vec<(ProjectionId, u64)>,
    ) -> Result<usize, LedgerError>;
}

/// An append in progress (see [`Storage::begin_append`]): nobody else appends until it is
/// used or dropped.
pub trait AppendSession {
    /// Appends as [`Storage::append`] does, and ends the session.
    fn append(self: Box<Self>, commit: Commit) -> Result<(), LedgerError>;
}

/// The session of a store with no other writers: nothing to hold.
struct Direct<'a, S: ?Sized>(&'a S);

impl<S: Storage + ?Sized> AppendSession for Direct<'_, S> {
    fn append(self: Box<Self>, commit: Commit) -> Result<(), LedgerError> {
        self.0.append(commit)
    }
}

/// A log several processes append to: how a node learns of what the others committed.
pub trait SharedLog: Send + Sync {
    /// The position of the last committed event (one cheap read).
    fn head(&self) -> Result<u64, LedgerError>;

    /// Starts listening for appends (by anyone).
    fn listen(&self) -> Result<Box<dyn AppendListener>, LedgerError>;
}

/// Told of appends as they commit.
pub trait AppendListener: Send {
    /// Waits up to `timeout` for appends: `true` when some were announced (all announcements
    /// so far are taken), `false` when the time ran out. An error means the connection is
    /// lost: announcements may have been missed, and the listener is to be replaced.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, LedgerError>;
}

/// When each key was last used: a hint kept apart from the log, because a use is not a
/// change to the key (recording it would grow the log with every request and put reads
/// behind the writer). `rebuild`, `export` and `import` work on the log and its projections
/// and leave this alone.
pub trait LastUseStore: Send + Sync {
    /// Every stored last use, one per key.
    fn last_uses(&self) -> Result<Vec<(Uuid, DateTime<Utc>)>, LedgerError>;

    /// Stores these last uses, each replacing what its key had, and makes them durable.
    fn record_last_uses(&self, uses: &[(Uuid, DateTime<Utc>)]) -> Result<(), LedgerError>;
}

/// The chain head as it stood after `position` (genesis for 0): where a replay that resumes
/// after `position` starts checking links.
pub fn head_at(storage: &dyn Storage, position: u64) -> Result<ChainHead, LedgerError> {
    if position == 0 {
        return Ok(ChainHead::genesis());
    }
    let stored = storage
        .events_from(position)
        .next()
        .transpose()?
        .filter(|stored| stored.position == position)
        .ok_or_else(|| LedgerError::Corrupt { position, reason: "a checkpoint names a missing event".into() })?;
    Ok(ChainHead { position, hash: stored.hash })
}
