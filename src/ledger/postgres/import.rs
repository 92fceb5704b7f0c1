//! `import` into a schema: the whole file in one transaction.
//!
//! sled's import builds the ledger in a staging directory and renames it into place, because
//! a directory has no transactions. PostgreSQL has them, and one transaction gives the same
//! promise with nothing to clean up: until COMMIT no other session sees a single row, a line
//! that breaks the chain (or a lost connection, or a crash) rolls everything back, and COMMIT
//! publishes the events, the journal and the checkpoints at once. A staging schema renamed
//! into place would have needed the target schema to be absent (not merely empty), and would
//! leave a schema behind after a crash for someone to find and drop.
//!
//! The transaction holds the append lock throughout, and checks under it that the schema
//! holds no ledger: an import never mixes with events already there.

use super::pool::database;
use super::PostgresStorage;
use crate::ledger::transfer::TransferError;
use crate::ledger::{journal, Commit, LedgerError};

impl PostgresStorage {
    /// Runs `fill` inside one transaction that refuses a schema already holding a ledger;
    /// `fill` is handed where to append its commits (in order: events from position 1, then
    /// rows, then checkpoints) and the transaction commits only if it succeeds.
    pub fn import_whole<T>(
        &self,
        fill: impl FnOnce(&mut dyn FnMut(Commit) -> Result<(), LedgerError>) -> Result<T, TransferError>,
    ) -> Result<T, TransferError> {
        let mut client = self.pool.get()?;
        let mut tx = client.transaction().map_err(database("beginning an import"))?;
        self.lock_appends(&mut tx)?;
        let row = tx
            .query_one("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM journal) + (SELECT count(*) FROM checkpoints)", &[])
            .map_err(database("looking for a ledger in the schema"))?;
        let events: i64 = row.try_get(0).map_err(database("looking for a ledger in the schema"))?;
        let other: i64 = row.try_get(1).map_err(database("looking for a ledger in the schema"))?;
        if events > 0 || other > 0 {
            return Err(TransferError::SchemaNotEmpty {
                schema: self.schema().to_owned(),
                target: self.target().to_owned(),
                events: u64::try_from(events).unwrap_or(0),
            });
        }
        let filled = fill(&mut |commit| {
            if !commit.events.is_empty() {
                PostgresStorage::insert_events(&mut tx, &commit.events, "importing events")?;
            }
            if !commit.rows.is_empty() {
                PostgresStorage::insert_record(&mut tx, &journal::encode(&commit.rows)?)?;
            }
            PostgresStorage::store_checkpoints(&mut tx, &commit.checkpoints)
        })?;
        tx.commit().map_err(database("committing the import"))?;
        self.pool.put(client);
        Ok(filled)
    }

    /// Drops the schema if it holds no event: what an import that created the schema and
    /// then failed leaves, so that a refused file leaves no trace, not even an empty ledger.
    /// Returns whether it was dropped.
    pub fn drop_if_empty(&self) -> Result<bool, LedgerError> {
        self.pool.with(|client| {
            let mut tx = client.transaction().map_err(database("beginning to drop an empty schema"))?;
            self.lock_appends(&mut tx)?;
            let empty: bool = tx
                .query_one("SELECT NOT EXISTS (SELECT 1 FROM events)", &[])
                .and_then(|row| row.try_get(0))
                .map_err(database("looking for events"))?;
            if !empty {
                return Ok(false);
            }
            // The name was checked to be a plain identifier (see `super::check_schema_name`).
            tx.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema())).map_err(database("dropping an empty schema"))?;
            tx.commit().map_err(database("dropping an empty schema"))?;
            Ok(true)
        })
    }
}
