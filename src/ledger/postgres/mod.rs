//! The PostgreSQL backend, for ledgers that several nodes share (DESIGN.md, "PostgreSQL and
//! several nodes"). The same seams as sled ([`Storage`], [`LastUseStore`]) over four tables in
//! a schema of the caller's choosing (see [`migrations`]):
//!
//! - `events (position BIGINT PRIMARY KEY, hash BYTEA, canonical BYTEA)`: one row per event,
//!   the same canonical bytes and hash as sled, so an export is the same bytes from either.
//! - `journal (record BIGINT PRIMARY KEY, rows BYTEA)`: one [`journal`] record per commit
//!   that changed rows, whole (PostgreSQL has no reason for sled's 4 KiB pieces).
//! - `checkpoints (projection TEXT PRIMARY KEY, position BIGINT)`.
//! - `last_used (key_id UUID PRIMARY KEY, at TIMESTAMPTZ)`.
//!
//! **Appends.** One transaction per commit: it takes a transaction-scoped advisory lock on the
//! ledger (`pg_advisory_xact_lock`, a key derived from the schema's name), reads the head and
//! refuses the commit unless its first event is at exactly head + 1 (and its events follow
//! each other), then writes the events, the journal record (numbered max + 1 under the same
//! lock), the checkpoints and a `NOTIFY` on the channel `<schema>_appended` with the new head,
//! and commits. Positions never come from a sequence: sequence values commit out of order,
//! and a follower reading "everything after my position" would skip an event for good.
//!
//! **Round trips.** An append runs under the append lock, so its round trips to the database
//! bound how many commits all nodes together make per second. Each statement goes as one
//! message (`query_typed`: parse, bind and execute at once, parameter types given) rather
//! than a prepare and then an execute; the lock is taken in the same message as `BEGIN`, its
//! key written as a literal; and the writes of a commit (head check, events, journal record,
//! checkpoints, `NOTIFY`) are one statement ([`WRITE_COMMIT`]). An append from the writer is
//! four round trips: `BEGIN` + lock, the read of other nodes' events, the writes, `COMMIT`.
//!
//! **Durability.** Every connection runs with `synchronous_commit = on`, so COMMIT returns
//! only once the transaction's WAL is flushed on the server: [`Storage::sync`] has nothing
//! left to do. Whether the server
//! itself flushes (`fsync`) is its configuration; a server with `fsync = off` is warned about
//! at open.
//!
//! **Damage.** PostgreSQL cannot hold a torn write (its WAL replays whole transactions), so
//! damage here is rows changed behind keyledger's back: such bytes are handed on as they are
//! and the reader that checks the chain ([`super::chain::Replay`]) names the position; a row
//! that is not even an event (a hash of the wrong size, a position out of range) is reported
//! damaged by the scan itself, which then ends.
//!
//! **Client.** The blocking `postgres` crate: the seam is synchronous and called from the
//! writer's and syncer's std threads, so an async client would only add a runtime to block
//! on. Each connection brings its own current-thread runtime (see [`pool`] for what that
//! forbids); a few connections are kept open for reuse. TLS is not supported yet.

mod import;
mod locks;
mod migrations;
mod pool;
mod snapshot;

pub use locks::LedgerLock;
pub use snapshot::PostgresSnapshot;

use std::collections::BTreeMap;
use std::time::Duration;

use ::postgres::types::Type;
use ::postgres::{Client, Config, GenericClient, Row};
use chrono::{DateTime, Utc};
use keyledger_projections::ProjectionId;
use uuid::Uuid;

use super::{journal, Commit, LastUseStore, LedgerError, RowChange, Storage, StoredEvent};
use pool::{database, Pool, Scan};

/// The schema `--database-schema` names unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "keyledger";

/// Events fetched per round trip when reading the log.
const EVENTS_PER_FETCH: usize = 1000;
/// Journal records fetched per round trip (a replaced journal's records hold up to
/// [`ROWS_PER_RECORD`] rows each).
const RECORDS_PER_FETCH: usize = 16;
/// Rows per journal record when the journal is replaced, as in sled: bounded records keep
/// any one value far below PostgreSQL's 1 GiB limit and the client's memory small.
const ROWS_PER_RECORD: usize = 20_000;
/// How long a connection attempt may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sent data may go unacknowledged before the connection counts as dead, unless
/// the URL says (`tcp_user_timeout`): a database behind a silently dropped route would
/// otherwise hold the writer in a COMMIT for the kernel's retransmission limit (minutes).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// A commit's writes as one statement, so that they cost one round trip under the append
/// lock. Parameters: the events' positions, hashes and canonical bytes (`$1`–`$3`, empty
/// arrays for none), the journal record (`$4`, NULL for none), the checkpoints' projections
/// and positions (`$5`, `$6`, one per projection), the channel and payload of the `NOTIFY`
/// (`$7`, `$8`, NULL payload for none). Answers the head before it and whether the commit
/// followed it; one that did not wrote nothing.
///
/// Every part reads the snapshot the statement started with (the head and the last journal
/// record before this commit's), and every part runs whether or not the last `SELECT` reads
/// it (PostgreSQL runs each data-modifying `WITH` to completion); `go` has its one row only
/// when the commit has no events or its first is at head + 1, and every write depends on it.
/// `notified` is a plain `SELECT`, run only because the last one counts its rows.
const WRITE_COMMIT: &str = "\
WITH head AS (SELECT coalesce(max(position), 0) AS position FROM events),
go AS (SELECT FROM head WHERE cardinality($1) = 0 OR $1[1] = head.position + 1),
new_events AS (
    INSERT INTO events (position, hash, canonical) SELECT e.* FROM unnest($1, $2, $3) AS e, go),
new_record AS (
    INSERT INTO journal (record, rows) SELECT (SELECT coalesce(max(record), 0) + 1 FROM journal), $4 FROM go WHERE $4 IS NOT NULL),
new_checkpoints AS (
    INSERT INTO checkpoints (projection, position) SELECT c.* FROM unnest($5, $6) AS c, go
    ON CONFLICT (projection) DO UPDATE SET position = excluded.position),
notified AS MATERIALIZED (SELECT pg_notify($7, $8) FROM go WHERE $8 IS NOT NULL)
SELECT head.position, EXISTS (SELECT FROM go), (SELECT count(*) FROM notified) FROM head";

/// The PostgreSQL-backed [`Storage`] and [`LastUseStore`] of the ledger in one schema.
pub struct PostgresStorage {
    pool: Pool,
    schema: String,
    /// The advisory lock appends (and journal replacements) take, per ledger.
    append_lock: i64,
}

/// Whether opening may create the schema.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    IfMissing,
    Never,
}

/// A schema name that can be written into SQL as it is, unquoted (and fit, with a suffix, in
/// a 63-byte channel name): no quoting rules to get wrong, no case folding to surprise.
fn check_schema_name(schema: &str) -> Result<(), LedgerError> {
    let mut chars = schema.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 48
        && !schema.starts_with("pg_");
    if plain {
        Ok(())
    } else {
        Err(LedgerError::SchemaName { schema: schema.to_owned() })
    }
}

/// A lock key for `what` of the ledger in `schema`: the same on every node, different per
/// schema, so two ledgers in one database never wait for each other.
fn lock_key(what: &str, schema: &str) -> i64 {
    let hash = blake3::hash(format!("keyledger {what} {schema}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&hash.as_bytes()[..8]);
    i64::from_be_bytes(key)
}

/// `user@host:port/database`, never the password: what error messages name.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            ::postgres::config::Host::Tcp(name) => name.clone(),
            ::postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().map_or(5432, |port| *port);
    format!(
        "{}@{}:{port}/{}",
        config.get_user().unwrap_or("(default user)"),
        if hosts.is_empty() { "localhost".to_owned() } else { hosts.join(",") },
        config.get_dbname().unwrap_or("(default database)")
    )
}

/// The server a URL names, as [`PostgresStorage::target`] does (`None` for no URL at all).
pub fn server(url: &str) -> Option<String> {
    url.parse::<Config>().ok().map(|config| describe(&config))
}

fn position_param(position: u64) -> Result<i64, LedgerError> {
    i64::try_from(position).map_err(|_| LedgerError::TooLarge { what: format!("position {position}"), bytes: 8 })
}

/// `checkpoints` as the projections' names and positions to upsert, one per projection: the
/// last one named wins, as in sled, and one statement may not update a row twice.
fn checkpoint_params(checkpoints: &[(ProjectionId, u64)]) -> Result<(Vec<&'static str>, Vec<i64>), LedgerError> {
    let latest: BTreeMap<&'static str, u64> = checkpoints.iter().map(|(projection, position)| (projection.name(), *position)).collect();
    let positions = latest.values().map(|position| position_param(*position)).collect::<Result<Vec<i64>, _>>()?;
    Ok((latest.into_keys().collect(), positions))
}

/// A projection's checkpoint from its row; none stored is position 0.
fn checkpoint_of(row: Option<&Row>) -> Result<u64, LedgerError> {
    let position: i64 = match row {
        Some(row) => row.try_get(0).map_err(database("reading a checkpoint"))?,
        None => 0,
    };
    Ok(u64::try_from(position).unwrap_or(0))
}

fn decode_event(row: &Row) -> Result<StoredEvent, LedgerError> {
    let position: i64 = row.try_get(0).map_err(database("reading an event"))?;
    let position = u64::try_from(position)
        .map_err(|_| LedgerError::Corrupt { position: 0, reason: format!("a stored position is negative ({position})") })?;
    let hash: &[u8] = row.try_get(1).map_err(database("reading an event"))?;
    let hash = <[u8; 32]>::try_from(hash)
        .map_err(|_| LedgerError::Corrupt { position, reason: format!("its stored hash is {} bytes, not 32", hash.len()) })?;
    let canonical: Vec<u8> = row.try_get(2).map_err(database("reading an event"))?;
    Ok(StoredEvent { position, hash: blake3::Hash::from_bytes(hash), canonical })
}

fn decode_record(row: &Row) -> Result<journal::Record, LedgerError> {
    let number: i64 = row.try_get(0).map_err(database("reading the journal"))?;
    let bytes: Vec<u8> = row.try_get(1).map_err(database("reading the journal"))?;
    Ok(journal::Record { number: u64::try_from(number).unwrap_or(0), bytes })
}

impl PostgresStorage {
    /// Opens the ledger in `schema` of the database at `url`, creating the schema (and
    /// migrating it) if needed.
    pub fn open(url: &str, schema: &str) -> Result<Self, LedgerError> {
        PostgresStorage::connect(url, schema, Create::IfMissing)
    }

    /// Opens the ledger in `schema`, refusing to create one: a mistyped schema must not
    /// become a new, empty ledger. An older schema is migrated.
    pub fn open_existing(url: &str, schema: &str) -> Result<Self, LedgerError> {
        PostgresStorage::connect(url, schema, Create::Never)
    }

    fn connect(url: &str, schema: &str, create: Create) -> Result<Self, LedgerError> {
        check_schema_name(schema)?;
        let mut config: Config = url.parse().map_err(|source: ::postgres::Error| LedgerError::DatabaseUrl { source: Box::new(source) })?;
        let target = describe(&config);
        // Every statement of the ledger names its tables without a schema; acknowledged
        // means the WAL is flushed, whatever the server's default.
        let options = [config.get_options().unwrap_or_default(), &format!("-c search_path={schema} -c synchronous_commit=on")].join(" ");
        config.options(options.trim());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("keyledger");
        }
        let storage =
            PostgresStorage { pool: Pool::new(config, target), schema: schema.to_owned(), append_lock: lock_key("appends", schema) };
        storage.pool.with(|client| {
            migrations::migrate(client, schema, lock_key("migrations", schema), storage.pool.target(), create == Create::IfMissing)?;
            let fsync =
                client.query_one("SHOW fsync", &[]).and_then(|row| row.try_get::<_, String>(0)).map_err(database("reading fsync"))?;
            if fsync != "on" {
                tracing::warn!(
                    target = storage.pool.target(),
                    "the PostgreSQL server runs with fsync = {fsync}: a commit it acknowledges may not survive a power loss"
                );
            }
            Ok(())
        })?;
        Ok(storage)
    }

    /// The schema this ledger lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `user@host:port/database`, without the password.
    pub fn target(&self) -> &str {
        self.pool.target()
    }

    /// Takes the ledger's append lock for the rest of `tx`: one simple query, the key being
    /// a number written as one.
    fn lock_appends(&self, tx: &mut impl GenericClient) -> Result<(), LedgerError> {
        tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({})", self.append_lock)).map_err(database("taking the append lock"))
    }

    /// Opens a transaction on `client` and takes the append lock in it, in one round trip
    /// (two statements of one simple query). The transaction reads committed: each later
    /// statement takes its snapshot after the lock was granted, so it sees every commit made
    /// before. The caller ends the transaction with `COMMIT` or `ROLLBACK`, or drops the
    /// connection.
    fn begin_locked(&self, client: &mut Client) -> Result<(), LedgerError> {
        client.batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({})", self.append_lock)).map_err(database("beginning an append"))
    }

    fn store_checkpoints(tx: &mut impl GenericClient, checkpoints: &[(ProjectionId, u64)]) -> Result<(), LedgerError> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        let (names, positions) = checkpoint_params(checkpoints)?;
        tx.query_typed(
            "INSERT INTO checkpoints (projection, position) SELECT * FROM unnest($1, $2) \
             ON CONFLICT (projection) DO UPDATE SET position = excluded.position",
            &[(&names, Type::TEXT_ARRAY), (&positions, Type::INT8_ARRAY)],
        )
        .map_err(database("storing checkpoints"))?;
        Ok(())
    }

    /// Inserts `events` (one statement for all of them); `doing` names the work in an error.
    fn insert_events(tx: &mut impl GenericClient, events: &[StoredEvent], doing: &'static str) -> Result<(), LedgerError> {
        let positions = events.iter().map(|event| position_param(event.position)).collect::<Result<Vec<i64>, _>>()?;
        let hashes: Vec<&[u8]> = events.iter().map(|event| event.hash.as_bytes().as_slice()).collect();
        let canonical: Vec<&[u8]> = events.iter().map(|event| event.canonical.as_slice()).collect();
        tx.query_typed(
            "INSERT INTO events (position, hash, canonical) SELECT * FROM unnest($1, $2, $3)",
            &[(&positions, Type::INT8_ARRAY), (&hashes, Type::BYTEA_ARRAY), (&canonical, Type::BYTEA_ARRAY)],
        )
        .map_err(database(doing))?;
        Ok(())
    }

    fn insert_record(tx: &mut impl GenericClient, bytes: &[u8]) -> Result<(), LedgerError> {
        tx.query_typed("INSERT INTO journal (record, rows) SELECT coalesce(max(record), 0) + 1, $1 FROM journal", &[(&bytes, Type::BYTEA)])
            .map_err(database("journaling rows"))?;
        Ok(())
    }

    /// Appends `commit` in one transaction on `client`; a failure leaves the transaction
    /// open, for the caller to drop the connection (as [`Pool::with`] does).
    fn append_on(&self, client: &mut Client, commit: &Commit, record: Option<&[u8]>) -> Result<(), LedgerError> {
        self.begin_locked(client)?;
        self.write_commit(client, commit, record)?;
        client.batch_execute("COMMIT").map_err(database("committing an append"))
    }

    /// Writes `commit` inside a transaction that holds the append lock: [`WRITE_COMMIT`],
    /// one round trip, refused with [`LedgerError::NotNext`] (and nothing written) unless its
    /// first event is at head + 1.
    fn write_commit(&self, tx: &mut impl GenericClient, commit: &Commit, record: Option<&[u8]>) -> Result<(), LedgerError> {
        let positions = commit.events.iter().map(|event| position_param(event.position)).collect::<Result<Vec<i64>, _>>()?;
        let hashes: Vec<&[u8]> = commit.events.iter().map(|event| event.hash.as_bytes().as_slice()).collect();
        let canonical: Vec<&[u8]> = commit.events.iter().map(|event| event.canonical.as_slice()).collect();
        let (names, checkpoints) = checkpoint_params(&commit.checkpoints)?;
        let channel = format!("{}_appended", self.schema);
        let last = commit.events.last().map(|event| event.position.to_string());
        let row = tx
            .query_typed_one(
                WRITE_COMMIT,
                &[
                    (&positions, Type::INT8_ARRAY),
                    (&hashes, Type::BYTEA_ARRAY),
                    (&canonical, Type::BYTEA_ARRAY),
                    (&record, Type::BYTEA),
                    (&names, Type::TEXT_ARRAY),
                    (&checkpoints, Type::INT8_ARRAY),
                    (&channel, Type::TEXT),
                    (&last, Type::TEXT),
                ],
            )
            .map_err(database("appending"))?;
        let head: i64 = row.try_get(0).map_err(database("appending"))?;
        let follows: bool = row.try_get(1).map_err(database("appending"))?;
        match commit.events.first() {
            Some(first) if !follows => Err(LedgerError::NotNext { position: first.position, head: u64::try_from(head).unwrap_or(0) }),
            _ => Ok(()),
        }
    }

    /// The commit's checks before any round trip, and its journal record.
    fn prepare(commit: &Commit) -> Result<Option<Vec<u8>>, LedgerError> {
        // The commit's own events must follow each other; the database checks the first.
        if let Some(gap) = commit.events.windows(2).find(|pair| pair[1].position != pair[0].position + 1) {
            return Err(LedgerError::NotNext { position: gap[1].position, head: gap[0].position });
        }
        if commit.rows.is_empty() {
            Ok(None)
        } else {
            Ok(Some(journal::encode(&commit.rows)?))
        }
    }
}

impl Storage for PostgresStorage {
    fn append(&self, commit: Commit) -> Result<(), LedgerError> {
        if commit.events.is_empty() && commit.rows.is_empty() && commit.checkpoints.is_empty() {
            return Ok(());
        }
        let record = PostgresStorage::prepare(&commit)?;
        self.pool.with(|client| self.append_on(client, &commit, record.as_deref()))
    }

    /// COMMIT already returned after the WAL flush (`synchronous_commit = on`): nothing is
    /// left to make durable, and a batch whose COMMIT returned is answered even if the
    /// database goes away right after (the next append finds out).
    fn sync(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    /// Closes the idle connections: after a failed append they may be broken without
    /// knowing it yet (a cut connection is only noticed when used).
    fn reopen(&self) -> Result<(), LedgerError> {
        self.pool.close_idle();
        Ok(())
    }

    /// A transaction that takes the append lock and reads every event past `after`; the lock
    /// is held (and the transaction open) until the session appends or is dropped, so the
    /// events handed back are all there is until then.
    fn begin_append(&self, after: u64) -> Result<(Vec<StoredEvent>, Box<dyn super::AppendSession + '_>), LedgerError> {
        let mut client = self.pool.get()?;
        self.begin_locked(&mut client)?;
        let rows = client
            .query_typed(
                "SELECT position, hash, canonical FROM events WHERE position > $1 ORDER BY position",
                &[(&position_param(after)?, Type::INT8)],
            )
            .map_err(database("reading the events of other nodes"))?;
        let foreign = rows.iter().map(decode_event).collect::<Result<Vec<_>, _>>()?;
        Ok((foreign, Box::new(Session { storage: self, client: Some(client) })))
    }

    fn shared(&self) -> Option<&dyn super::SharedLog> {
        Some(self)
    }

    fn events_from(&self, position: u64) -> Box<dyn Iterator<Item = Result<StoredEvent, LedgerError>> + '_> {
        // A number, written into the query as one (cursors take no parameters).
        let from = i64::try_from(position).unwrap_or(i64::MAX);
        let select = format!("SELECT position, hash, canonical FROM events WHERE position >= {from} ORDER BY position");
        Box::new(Scan::open(&self.pool, &select, EVENTS_PER_FETCH, decode_event))
    }

    fn last_event(&self) -> Result<Option<StoredEvent>, LedgerError> {
        self.pool.with(|client| {
            let row = client
                .query_opt("SELECT position, hash, canonical FROM events ORDER BY position DESC LIMIT 1", &[])
                .map_err(database("reading the last event"))?;
            row.as_ref().map(decode_event).transpose()
        })
    }

    fn journal(&self) -> Box<dyn Iterator<Item = Result<journal::Record, LedgerError>> + '_> {
        Box::new(Scan::open(&self.pool, "SELECT record, rows FROM journal ORDER BY record", RECORDS_PER_FETCH, decode_record))
    }

    fn checkpoint(&self, projection: ProjectionId) -> Result<u64, LedgerError> {
        self.pool.with(|client| {
            let row = client
                .query_opt("SELECT position FROM checkpoints WHERE projection = $1", &[&projection.name()])
                .map_err(database("reading a checkpoint"))?;
            checkpoint_of(row.as_ref())
        })
    }

    /// One transaction, under the append lock: the old records deleted, the new ones
    /// written (numbered on from the old, so record numbers keep rising), the checkpoints
    /// stored. Until it commits, every reader sees the old journal; after, only the new.
    fn replace_journal(
        &self,
        rows: &mut dyn Iterator<Item = RowChange>,
        checkpoints: Vec<(ProjectionId, u64)>,
    ) -> Result<usize, LedgerError> {
        self.pool.with(|client| {
            let mut tx = client.transaction().map_err(database("beginning a journal replacement"))?;
            self.lock_appends(&mut tx)?;
            let first: i64 = tx
                .query_one("SELECT coalesce(max(record), 0) + 1 FROM journal", &[])
                .and_then(|row| row.try_get(0))
                .map_err(database("reading the journal"))?;
            tx.execute("DELETE FROM journal WHERE record < $1", &[&first]).map_err(database("deleting the old journal"))?;
            let mut written = 0;
            loop {
                let chunk: Vec<RowChange> = (&mut *rows).take(ROWS_PER_RECORD).collect();
                if chunk.is_empty() {
                    break;
                }
                written += chunk.len();
                PostgresStorage::insert_record(&mut tx, &journal::encode(&chunk)?)?;
            }
            PostgresStorage::store_checkpoints(&mut tx, &checkpoints)?;
            tx.commit().map_err(database("committing a journal replacement"))?;
            Ok(written)
        })
    }
}

/// An append holding the ledger's append lock in an open transaction on its own connection.
struct Session<'a> {
    storage: &'a PostgresStorage,
    /// `None` once the transaction is over.
    client: Option<Client>,
}

impl super::AppendSession for Session<'_> {
    fn append(mut self: Box<Self>, commit: Commit) -> Result<(), LedgerError> {
        let Some(mut client) = self.client.take() else {
            return Ok(());
        };
        let record = PostgresStorage::prepare(&commit)?;
        self.storage.write_commit(&mut client, &commit, record.as_deref())?;
        client.batch_execute("COMMIT").map_err(database("committing an append"))?;
        // A connection whose append failed is dropped above with its transaction: never reused.
        self.storage.pool.put(client);
        Ok(())
    }
}

impl Drop for Session<'_> {
    /// A session left without an append rolls back, which lets the lock go.
    fn drop(&mut self) {
        if let Some(mut client) = self.client.take() {
            if client.batch_execute("ROLLBACK").is_ok() {
                self.storage.pool.put(client);
            }
        }
    }
}

impl super::SharedLog for PostgresStorage {
    fn head(&self) -> Result<u64, LedgerError> {
        self.pool.with(|client| {
            let head: i64 = client
                .query_typed_one("SELECT coalesce(max(position), 0) FROM events", &[])
                .and_then(|row| row.try_get(0))
                .map_err(database("reading the head"))?;
            Ok(u64::try_from(head).unwrap_or(0))
        })
    }

    /// `LISTEN` on a connection of its own (never pooled: it keeps listening).
    fn listen(&self) -> Result<Box<dyn super::AppendListener>, LedgerError> {
        let mut client = self.pool.get()?;
        client.batch_execute(&format!("LISTEN {}_appended", self.schema)).map_err(database("listening for appends"))?;
        Ok(Box::new(Listener { client }))
    }
}

/// A connection that `LISTEN`s on `<schema>_appended`.
struct Listener {
    client: Client,
}

impl super::AppendListener for Listener {
    fn wait(&mut self, timeout: Duration) -> Result<bool, LedgerError> {
        use ::postgres::fallible_iterator::FallibleIterator;
        let announced = self.client.notifications().timeout_iter(timeout).next().map_err(database("waiting for appends"))?.is_some();
        if !announced {
            // `None` is also what a closed connection gives.
            if self.client.is_closed() {
                return Err(LedgerError::Storage {
                    context: "PostgreSQL, waiting for appends".into(),
                    source: "the listening connection closed".into(),
                });
            }
            return Ok(false);
        }
        // The others already here are the same news.
        let mut pending = self.client.notifications();
        let mut rest = pending.iter();
        while rest.next().map_err(database("waiting for appends"))?.is_some() {}
        Ok(true)
    }
}

impl LastUseStore for PostgresStorage {
    fn last_uses(&self) -> Result<Vec<(Uuid, DateTime<Utc>)>, LedgerError> {
        self.pool.with(|client| {
            let rows = client.query("SELECT key_id, at FROM last_used", &[]).map_err(database("reading last uses"))?;
            rows.iter()
                .map(|row| {
                    Ok((row.try_get(0).map_err(database("reading last uses"))?, row.try_get(1).map_err(database("reading last uses"))?))
                })
                .collect()
        })
    }

    /// An upsert that keeps the later time: nodes that saw the same key used record in any
    /// order, and a late note never moves a last use back.
    fn record_last_uses(&self, uses: &[(Uuid, DateTime<Utc>)]) -> Result<(), LedgerError> {
        if uses.is_empty() {
            return Ok(());
        }
        // One statement may not update a row twice: the latest use per key.
        let mut latest: BTreeMap<Uuid, DateTime<Utc>> = BTreeMap::new();
        for (id, at) in uses {
            let kept = latest.entry(*id).or_insert(*at);
            *kept = (*kept).max(*at);
        }
        let ids: Vec<Uuid> = latest.keys().copied().collect();
        let times: Vec<DateTime<Utc>> = latest.values().copied().collect();
        self.pool.with(|client| {
            client
                .query_typed(
                    "INSERT INTO last_used (key_id, at) SELECT * FROM unnest($1, $2) \
                     ON CONFLICT (key_id) DO UPDATE SET at = GREATEST(last_used.at, excluded.at)",
                    &[(&ids, Type::UUID_ARRAY), (&times, Type::TIMESTAMPTZ_ARRAY)],
                )
                .map_err(database("recording last uses"))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
