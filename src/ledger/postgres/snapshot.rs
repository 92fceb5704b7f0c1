//! One snapshot for every read of a command, so that reading a ledger that nodes are
//! appending to gives the answer of one moment.
//!
//! A single scan is one snapshot already (see `super::pool::Scan`), which is all `export`
//! and `audit verify` need. `rebuild --check` reads the checkpoints, the journal and the log
//! separately: with nodes appending between those reads, the stored rows could be ahead of
//! the checkpoints they are compared from, and the check would report differences that are
//! not there. A [`PostgresSnapshot`] keeps one read-only REPEATABLE READ transaction open on a
//! session of its own, exports its snapshot (`pg_export_snapshot`), and runs every read in a
//! transaction that imports it (`SET TRANSACTION SNAPSHOT`): whatever commits meanwhile is
//! invisible to all of them alike.

use std::sync::{Mutex, PoisonError};

use ::postgres::{Client, IsolationLevel, NoTls, Row};
use keyledger_projections::ProjectionId;

use super::pool::{close, database, Scan};
use super::{checkpoint_of, decode_event, decode_record, PostgresStorage, EVENTS_PER_FETCH, RECORDS_PER_FETCH};
use crate::ledger::{journal, Commit, LedgerError, RowChange, Storage, StoredEvent};

/// The ledger as it stood when the snapshot was taken: a read-only [`Storage`].
pub struct PostgresSnapshot {
    storage: PostgresStorage,
    /// The session whose open transaction keeps the snapshot importable; closed on drop.
    holder: Mutex<Option<Client>>,
    id: String,
}

impl PostgresStorage {
    /// Takes a snapshot of the ledger now; every read of the returned storage sees it.
    pub fn snapshot(self) -> Result<PostgresSnapshot, LedgerError> {
        let mut holder = self
            .pool
            .config()
            .connect(NoTls)
            .map_err(|source| LedgerError::Unreachable { target: self.target().to_owned(), source: Box::new(source) })?;
        holder.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").map_err(database("taking a snapshot"))?;
        let id: String =
            holder.query_one("SELECT pg_export_snapshot()", &[]).and_then(|row| row.try_get(0)).map_err(database("taking a snapshot"))?;
        // Written into statements as it is (SET TRANSACTION takes no parameter): the server's
        // own identifier, made of hex digits and dashes; anything else is refused.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(LedgerError::Storage {
                context: "PostgreSQL, taking a snapshot".into(),
                source: format!("unexpected snapshot identifier {id:?}").into(),
            });
        }
        Ok(PostgresSnapshot { storage: self, holder: Mutex::new(Some(holder)), id })
    }
}

impl Drop for PostgresSnapshot {
    fn drop(&mut self) {
        let holder = self.holder.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(holder) = holder {
            close(holder);
        }
    }
}

impl PostgresSnapshot {
    /// Runs one query in a read-only transaction of the snapshot.
    fn query_opt<T>(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ::postgres::types::ToSql + Sync)],
        decode: impl FnOnce(Option<&Row>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        self.storage.pool.with(|client| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(database(context))?;
            tx.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{}'", self.id)).map_err(database(context))?;
            let row = tx.query_opt(sql, params).map_err(database(context))?;
            let decoded = decode(row.as_ref())?;
            tx.commit().map_err(database(context))?;
            Ok(decoded)
        })
    }

    fn read_only() -> LedgerError {
        LedgerError::Storage { context: "PostgreSQL snapshot".into(), source: "a snapshot is read only; nothing was written".into() }
    }
}

impl Storage for PostgresSnapshot {
    fn append(&self, _commit: Commit) -> Result<(), LedgerError> {
        Err(PostgresSnapshot::read_only())
    }

    fn sync(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    fn events_from(&self, position: u64) -> Box<dyn Iterator<Item = Result<StoredEvent, LedgerError>> + '_> {
        let from = i64::try_from(position).unwrap_or(i64::MAX);
        let select = format!("SELECT position, hash, canonical FROM events WHERE position >= {from} ORDER BY position");
        Box::new(Scan::open_at(&self.storage.pool, &select, EVENTS_PER_FETCH, decode_event, Some(&self.id)))
    }

    fn last_event(&self) -> Result<Option<StoredEvent>, LedgerError> {
        self.query_opt(
            "reading the last event",
            "SELECT position, hash, canonical FROM events ORDER BY position DESC LIMIT 1",
            &[],
            |row| row.map(decode_event).transpose(),
        )
    }

    fn journal(&self) -> Box<dyn Iterator<Item = Result<journal::Record, LedgerError>> + '_> {
        Box::new(Scan::open_at(
            &self.storage.pool,
            "SELECT record, rows FROM journal ORDER BY record",
            RECORDS_PER_FETCH,
            decode_record,
            Some(&self.id),
        ))
    }

    fn checkpoint(&self, projection: ProjectionId) -> Result<u64, LedgerError> {
        self.query_opt(
            "reading a checkpoint",
            "SELECT position FROM checkpoints WHERE projection = $1",
            &[&projection.name()],
            checkpoint_of,
        )
    }

    fn replace_journal(
        &self,
        _rows: &mut dyn Iterator<Item = RowChange>,
        _checkpoints: Vec<(ProjectionId, u64)>,
    ) -> Result<usize, LedgerError> {
        Err(PostgresSnapshot::read_only())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{database_url, Schemas};
    use super::*;
    use crate::ledger::chain::sample;

    fn row(key: &str) -> RowChange {
        RowChange { projection: ProjectionId::KeysView, key: key.to_owned(), value: Some(b"1".to_vec()) }
    }

    /// What `rebuild --check` relies on beside serving nodes: the log, the journal and the
    /// checkpoints read through one snapshot agree, whatever is committed after it.
    #[test]
    fn every_read_of_a_snapshot_sees_the_same_moment() {
        let Some(url) = database_url() else { return };
        let mut schemas = Schemas::new(&url);
        let schema = schemas.unique();
        let writer = PostgresStorage::open(&url, &schema).unwrap_or_else(|e| panic!("{e}"));
        let mut events = sample::log(5);
        let later = events.split_off(3);
        writer.commit(Commit { events, rows: vec![row("a")], checkpoints: vec![(ProjectionId::KeysView, 3)] }).unwrap();
        let snapshot = PostgresStorage::open_existing(&url, &schema).and_then(PostgresStorage::snapshot).unwrap_or_else(|e| panic!("{e}"));
        writer.commit(Commit { events: later, rows: vec![row("b")], checkpoints: vec![(ProjectionId::KeysView, 5)] }).unwrap();

        assert_eq!(snapshot.last_event().unwrap().map(|e| e.position), Some(3));
        assert_eq!(snapshot.events_from(1).count(), 3);
        assert_eq!(snapshot.checkpoint(ProjectionId::KeysView).unwrap(), 3);
        assert_eq!(snapshot.journal().count(), 1);
        assert!(snapshot.append(Commit::default()).is_err(), "a snapshot is read only");
        assert_eq!(writer.last_event().unwrap().map(|e| e.position), Some(5), "the store itself moved on");
    }
}
