//! The schema's versions, applied by refinery in one transaction, in order.
//!
//! Every connection's `search_path` is the ledger's schema alone, so the migrations name
//! their tables without it, and refinery keeps its history (`schema_history`) in the same
//! schema: two ledgers in two schemas of one database never see each other's tables.
//!
//! A migration, once released, is never edited (refinery refuses a schema whose applied
//! migrations differ from this build's): a change is a new version at the end of the list.

use ::postgres::Client;
use refinery::{Migration, Runner};

use super::pool::database;
use crate::ledger::LedgerError;

/// refinery's history table, in the ledger's schema.
const HISTORY: &str = "schema_history";

/// Version 1: the log, the projection journal, the checkpoints and the last uses.
const V1: &str = "
-- One row per event: the same canonical envelope bytes and hash as sled stores, so that an
-- export is the same bytes from either store. Positions are contiguous from 1 and written
-- as head + 1 under the append lock: never from a sequence, whose values commit out of
-- order (a reader of 'everything after my position' would skip an event for good).
CREATE TABLE events (
    position  BIGINT PRIMARY KEY CHECK (position > 0),
    hash      BYTEA  NOT NULL CHECK (octet_length(hash) = 32),
    canonical BYTEA  NOT NULL
);

-- The projection journal: one framed record of row changes per commit that changed rows
-- (ledger::journal's encoding), numbered in commit order under the append lock.
CREATE TABLE journal (
    record BIGINT PRIMARY KEY,
    rows   BYTEA  NOT NULL
);

-- The position each projection's stored rows reflect.
CREATE TABLE checkpoints (
    projection TEXT   PRIMARY KEY,
    position   BIGINT NOT NULL
);

-- Each key's last use: a hint kept beside the log, never in it.
CREATE TABLE last_used (
    key_id UUID        PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL
);
";

/// Every migration of this build, oldest first.
fn migrations() -> Result<Vec<Migration>, LedgerError> {
    let named = [("V1__log_journal_checkpoints_last_used", V1)];
    named.into_iter().map(|(name, sql)| Migration::unapplied(name, sql).map_err(migration_error)).collect()
}

/// The newest schema version this build knows.
pub(super) const LATEST: u32 = 1;

fn migration_error(source: refinery::Error) -> LedgerError {
    LedgerError::Storage { context: "PostgreSQL, migrating the schema".into(), source: Box::new(source) }
}

/// Creates `schema` if it is missing and `create` allows it, refuses one written by a newer
/// keyledger, and applies this build's pending migrations. Runs under a session advisory lock
/// of its own, so nodes starting together migrate one after the other.
pub(super) fn migrate(client: &mut Client, schema: &str, lock: i64, target: &str, create: bool) -> Result<(), LedgerError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&lock]).map_err(database("taking the migration lock"))?;
    let migrated = migrate_locked(client, schema, target, create);
    // Ending the session would release the lock too (a failed connection is closed).
    if migrated.is_ok() {
        client.execute("SELECT pg_advisory_unlock($1)", &[&lock]).map_err(database("releasing the migration lock"))?;
    }
    migrated
}

fn migrate_locked(client: &mut Client, schema: &str, target: &str, create: bool) -> Result<(), LedgerError> {
    let history = format!("{schema}.{HISTORY}");
    let found = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&history])
        .and_then(|row| row.try_get::<_, bool>(0))
        .map_err(database("looking for the schema"))?;
    if !found {
        if !create {
            return Err(LedgerError::NoSchema { schema: schema.to_owned(), target: target.to_owned() });
        }
        // The name was checked to be a plain identifier (see `super::check_schema_name`).
        client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).map_err(database("creating the schema"))?;
    }
    let migrations = migrations()?;
    let mut runner = Runner::new(&migrations).set_grouped(true).set_abort_divergent(true).set_abort_missing(true);
    runner.set_migration_table_name(HISTORY);
    if found {
        let newest: Option<i32> = client
            .query_one(&format!("SELECT max(version) FROM {HISTORY}"), &[])
            .and_then(|row| row.try_get(0))
            .map_err(database("reading the schema's version"))?;
        let newest = newest.map_or(0, |version| u32::try_from(version).unwrap_or(0));
        if newest > LATEST {
            return Err(LedgerError::NewerSchema { schema: schema.to_owned(), found: newest, known: LATEST });
        }
    }
    let report = runner.run(client).map_err(migration_error)?;
    for applied in report.applied_migrations() {
        tracing::info!(schema, version = applied.version(), name = applied.name(), "schema migrated");
    }
    Ok(())
}
