//! Connections to PostgreSQL: a few kept open for reuse, and a scan that reads a whole table
//! through a cursor in one snapshot.
//!
//! The blocking client runs each connection on a current-thread tokio runtime of its own and
//! `block_on`s it: called (or dropped) on a thread that is inside another runtime, tokio
//! panics. The `Storage` seam is called from the writer's and syncer's std threads and the
//! last-use recorder's; a call from an async task is a bug, refused here with an error
//! instead of a panic, and connections are never dropped on such a thread.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ::postgres::{Client, Config, NoTls, Row};

use crate::ledger::LedgerError;

/// Idle connections kept for reuse: the writer, the syncer's reads, the last-use recorder and
/// a reader or two. More are opened when more are busy at once, and closed after use.
const MAX_IDLE: usize = 4;

/// The name of the cursor a [`Scan`] reads through (one per connection at a time).
const CURSOR: &str = "keyledger_scan";

pub(super) struct Pool {
    config: Config,
    /// Where the connections go, without the password: for error messages.
    target: String,
    idle: Mutex<Vec<Client>>,
}

/// A storage failure of PostgreSQL, naming what was being done.
pub(super) fn database(context: &'static str) -> impl FnOnce(::postgres::Error) -> LedgerError {
    move |source| LedgerError::Storage { context: format!("PostgreSQL, {context}"), source: Box::new(source) }
}

fn refuse_inside_async(context: &'static str) -> Result<(), LedgerError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        let source = "the PostgreSQL store blocks; it must be called from a plain thread, not from an async task".into();
        return Err(LedgerError::Storage { context: format!("PostgreSQL, {context}"), source });
    }
    Ok(())
}

impl Pool {
    pub(super) fn new(config: Config, target: String) -> Self {
        Pool { config, target, idle: Mutex::new(Vec::new()) }
    }

    pub(super) fn target(&self) -> &str {
        &self.target
    }

    /// How the pool connects: for a session that must outlive the pool's comings and goings
    /// (a lock's, a snapshot's).
    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Client>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection, or a new one.
    pub(super) fn get(&self) -> Result<Client, LedgerError> {
        refuse_inside_async("connecting")?;
        while let Some(client) = self.idle().pop() {
            if !client.is_closed() {
                return Ok(client);
            }
        }
        self.config.connect(NoTls).map_err(|source| LedgerError::Unreachable { target: self.target.clone(), source: Box::new(source) })
    }

    /// Keeps `client` for reuse, unless enough are kept already.
    pub(super) fn put(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(client);
        }
    }

    /// Closes every idle connection.
    pub(super) fn close_idle(&self) {
        let closing = std::mem::take(&mut *self.idle());
        closing.into_iter().for_each(close);
    }

    /// Runs `work` on a connection. A connection that failed is closed rather than reused:
    /// it may be broken, or inside a transaction that failed.
    pub(super) fn with<T>(&self, work: impl FnOnce(&mut Client) -> Result<T, LedgerError>) -> Result<T, LedgerError> {
        let mut client = self.get()?;
        let done = work(&mut client);
        if done.is_ok() {
            self.put(client);
        }
        done
    }
}

impl Drop for Pool {
    /// Closing a connection `block_on`s its runtime, which tokio refuses inside another
    /// runtime: there, the connections are closed on a thread of their own.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut *self.idle());
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new().name("postgres-close".into()).spawn(move || drop(idle));
        }
    }
}

/// Closes `client` where that is allowed: closing `block_on`s its runtime, which tokio
/// refuses inside another runtime, so there it is closed on a thread of its own.
pub(super) fn close(client: Client) {
    if tokio::runtime::Handle::try_current().is_ok() {
        let _ = std::thread::Builder::new().name("postgres-close".into()).spawn(move || drop(client));
    } else {
        drop(client);
    }
}

/// A whole-table read, in order, through a server-side cursor inside a read-only REPEATABLE
/// READ transaction: every row comes from one snapshot (a journal replaced while it is read
/// is seen whole, before or after), a page of rows per round trip, and the connection is held
/// only while the scan lives.
pub(super) struct Scan<'a, T> {
    pool: &'a Pool,
    client: Option<Client>,
    fetch: String,
    rows: VecDeque<Row>,
    decode: fn(&Row) -> Result<T, LedgerError>,
    /// An error to hand out next, after which the scan ends.
    failed: Option<LedgerError>,
    done: bool,
}

impl<'a, T> Scan<'a, T> {
    /// `select` is the query, rows in the order they are to be read; `page` rows are fetched
    /// per round trip.
    pub(super) fn open(pool: &'a Pool, select: &str, page: usize, decode: fn(&Row) -> Result<T, LedgerError>) -> Self {
        Scan::open_at(pool, select, page, decode, None)
    }

    /// [`Scan::open`] in the snapshot `snapshot` (from `pg_export_snapshot`) when one is
    /// given: what every read of one command sees, whatever commits meanwhile.
    pub(super) fn open_at(
        pool: &'a Pool,
        select: &str,
        page: usize,
        decode: fn(&Row) -> Result<T, LedgerError>,
        snapshot: Option<&str>,
    ) -> Self {
        let set_snapshot = snapshot.map_or_else(String::new, |id| format!(" SET TRANSACTION SNAPSHOT '{id}';"));
        let mut scan = Scan {
            pool,
            client: None,
            fetch: format!("FETCH {page} FROM {CURSOR}"),
            rows: VecDeque::new(),
            decode,
            failed: None,
            done: false,
        };
        let declared = pool.get().and_then(|mut client| {
            client
                .batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;{set_snapshot} DECLARE {CURSOR} NO SCROLL CURSOR FOR {select}"
                ))
                .map_err(database("opening a scan"))?;
            Ok(client)
        });
        match declared {
            Ok(client) => scan.client = Some(client),
            Err(e) => scan.failed = Some(e),
        }
        scan
    }
}

impl<T> Iterator for Scan<'_, T> {
    type Item = Result<T, LedgerError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.failed.take() {
                self.done = true;
                self.client = None;
                return Some(Err(e));
            }
            if let Some(row) = self.rows.pop_front() {
                let decoded = (self.decode)(&row);
                if decoded.is_err() {
                    // A row that does not decode ends the scan, as a torn record ends a sled
                    // scan: nothing after damage is handed on.
                    self.done = true;
                    self.rows.clear();
                }
                return Some(decoded);
            }
            if self.done {
                return None;
            }
            let client = self.client.as_mut()?;
            match client.query(self.fetch.as_str(), &[]) {
                Ok(rows) if rows.is_empty() => {
                    self.done = true;
                    if let Some(mut client) = self.client.take() {
                        if client.batch_execute("COMMIT").is_ok() {
                            self.pool.put(client);
                        }
                    }
                }
                Ok(rows) => self.rows = rows.into(),
                Err(e) => self.failed = Some(database("reading a scan")(e)),
            }
        }
    }
}

impl<T> Drop for Scan<'_, T> {
    /// A scan left before its end gives its connection back once its transaction is over.
    fn drop(&mut self) {
        if let Some(mut client) = self.client.take() {
            if client.batch_execute("ROLLBACK").is_ok() {
                self.pool.put(client);
            }
        }
    }
}
