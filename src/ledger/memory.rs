//! A [`Storage`] and [`LastUseStore`] held in memory: for unit tests of what sits above the
//! seam (recovery, rebuild, the writer), which need a store but not a disk, and as the
//! plainest backend the conformance suite ([`super::conformance`]) holds the others to.
//!
//! Everything is kept as the seam hands it over: events as [`StoredEvent`]s, each commit's
//! rows as one encoded [`journal::Record`] (so a record reads back exactly as from a store on
//! disk). Nothing outlives the value, so [`Storage::sync`] has nothing to do.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use keyledger_projections::ProjectionId;
use uuid::Uuid;

use super::{journal, Commit, LastUseStore, LedgerError, RowChange, Storage, StoredEvent};

#[derive(Default)]
pub(crate) struct MemoryStorage {
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    events: Vec<StoredEvent>,
    journal: Vec<journal::Record>,
    /// Sequence number of the last journal record written (0: none yet).
    last_record: u64,
    checkpoints: BTreeMap<ProjectionId, u64>,
    last_uses: BTreeMap<Uuid, DateTime<Utc>>,
}

impl Ledger {
    fn record(&mut self, rows: &[RowChange]) -> Result<journal::Record, LedgerError> {
        let bytes = journal::encode(rows)?;
        self.last_record += 1;
        Ok(journal::Record { number: self.last_record, bytes })
    }
}

impl MemoryStorage {
    pub(crate) fn new() -> Self {
        MemoryStorage::default()
    }

    /// A test that panicked while holding the lock leaves a store that is still whole: every
    /// change below is made only after everything that can fail.
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the stored last event in place, as damage on a disk would: how the conformance
    /// suite checks that readers find it.
    pub(crate) fn damage_last_event(&self, damage: impl FnOnce(&mut StoredEvent)) {
        if let Some(last) = self.ledger().events.last_mut() {
            damage(last);
        }
    }
}

impl Storage for MemoryStorage {
    fn append(&self, commit: Commit) -> Result<(), LedgerError> {
        let mut ledger = self.ledger();
        let record = if commit.rows.is_empty() { None } else { Some(ledger.record(&commit.rows)?) };
        ledger.events.extend(commit.events);
        ledger.journal.extend(record);
        ledger.checkpoints.extend(commit.checkpoints);
        Ok(())
    }

    fn sync(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    fn events_from(&self, position: u64) -> Box<dyn Iterator<Item = Result<StoredEvent, LedgerError>> + '_> {
        let events: Vec<StoredEvent> = self.ledger().events.iter().filter(|event| event.position >= position).cloned().collect();
        Box::new(events.into_iter().map(Ok))
    }

    fn last_event(&self) -> Result<Option<StoredEvent>, LedgerError> {
        Ok(self.ledger().events.last().cloned())
    }

    fn journal(&self) -> Box<dyn Iterator<Item = Result<journal::Record, LedgerError>> + '_> {
        Box::new(self.ledger().journal.clone().into_iter().map(Ok))
    }

    fn checkpoint(&self, projection: ProjectionId) -> Result<u64, LedgerError> {
        Ok(self.ledger().checkpoints.get(&projection).copied().unwrap_or(0))
    }

    /// The new journal is one record (none for no rows), switched in at once.
    fn replace_journal(
        &self,
        rows: &mut dyn Iterator<Item = RowChange>,
        checkpoints: Vec<(ProjectionId, u64)>,
    ) -> Result<usize, LedgerError> {
        let rows: Vec<RowChange> = rows.collect();
        let mut ledger = self.ledger();
        let journal = if rows.is_empty() { Vec::new() } else { vec![ledger.record(&rows)?] };
        ledger.journal = journal;
        ledger.checkpoints.extend(checkpoints);
        Ok(rows.len())
    }
}

impl LastUseStore for MemoryStorage {
    fn last_uses(&self) -> Result<Vec<(Uuid, DateTime<Utc>)>, LedgerError> {
        Ok(self.ledger().last_uses.iter().map(|(id, at)| (*id, *at)).collect())
    }

    fn record_last_uses(&self, uses: &[(Uuid, DateTime<Utc>)]) -> Result<(), LedgerError> {
        self.ledger().last_uses.extend(uses.iter().copied());
        Ok(())
    }
}

/// The memory store as a disk that fails on demand, for the unit tests of what must survive
/// storage faults (the writer's recovery, readiness), which a real sled store in a unit test
/// cannot be made to have: appends wait in `unsynced` until a sync makes them durable, a
/// reopen loses whatever was not synced, and reads see only what is durable.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct FaultyDisk {
    durable: MemoryStorage,
    unsynced: Mutex<Vec<Commit>>,
    fault: Mutex<Fault>,
    probe: Mutex<Probe>,
}

/// What a [`FaultyDisk`] fails.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Fault {
    #[default]
    None,
    /// Appends, syncs and reopens fail: a disk that is gone.
    Everything,
    /// Syncs fail, and what they were to make durable stays unsynced.
    Syncs,
    /// Syncs fail after writing: a disk that reports an error for data it did store.
    SyncsAfterWriting,
}

/// How a [`FaultyDisk`] answers a checkpoint read (what readiness probes with).
#[cfg(test)]
#[derive(Default)]
pub(crate) enum Probe {
    #[default]
    Answers,
    Fails,
    /// Blocks until the sender is dropped or sends: a store that stopped answering.
    Hangs(std::sync::mpsc::Receiver<()>),
}

#[cfg(test)]
impl FaultyDisk {
    pub(crate) fn fail(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    pub(crate) fn answer_probes(&self, probe: Probe) {
        *self.probe.lock().unwrap_or_else(PoisonError::into_inner) = probe;
    }

    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refuse(&self, what: &str, when: &[Fault]) -> Result<(), LedgerError> {
        if when.contains(&self.fault()) {
            return Err(LedgerError::Storage { context: what.into(), source: "injected by the test".into() });
        }
        Ok(())
    }

    fn write_unsynced(&self) -> Result<(), LedgerError> {
        for commit in std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(PoisonError::into_inner)) {
            self.durable.append(commit)?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl Storage for FaultyDisk {
    fn append(&self, commit: Commit) -> Result<(), LedgerError> {
        self.refuse("append", &[Fault::Everything])?;
        self.unsynced.lock().unwrap_or_else(PoisonError::into_inner).push(commit);
        Ok(())
    }
    fn sync(&self) -> Result<(), LedgerError> {
        if self.fault() == Fault::SyncsAfterWriting {
            self.write_unsynced()?;
        }
        self.refuse("sync", &[Fault::Everything, Fault::Syncs, Fault::SyncsAfterWriting])?;
        self.write_unsynced()
    }
    fn reopen(&self) -> Result<(), LedgerError> {
        self.refuse("reopen", &[Fault::Everything])?;
        self.unsynced.lock().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(())
    }
    fn events_from(&self, position: u64) -> Box<dyn Iterator<Item = Result<StoredEvent, LedgerError>> + '_> {
        self.durable.events_from(position)
    }
    fn last_event(&self) -> Result<Option<StoredEvent>, LedgerError> {
        self.durable.last_event()
    }
    fn journal(&self) -> Box<dyn Iterator<Item = Result<journal::Record, LedgerError>> + '_> {
        self.durable.journal()
    }
    fn checkpoint(&self, projection: ProjectionId) -> Result<u64, LedgerError> {
        match &*self.probe.lock().unwrap_or_else(PoisonError::into_inner) {
            Probe::Answers => {}
            Probe::Fails => {
                return Err(LedgerError::Storage { context: "read a checkpoint".into(), source: "injected by the test".into() })
            }
            Probe::Hangs(release) => {
                let _ = release.recv();
            }
        }
        self.durable.checkpoint(projection)
    }
    fn replace_journal(
        &self,
        rows: &mut dyn Iterator<Item = RowChange>,
        checkpoints: Vec<(ProjectionId, u64)>,
    ) -> Result<usize, LedgerError> {
        self.durable.replace_journal(rows, checkpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::conformance;

    #[test]
    fn the_memory_store_passes_the_storage_conformance_suite() {
        conformance::run(MemoryStorage::new, |storage| {
            // A torn write: the event's last bytes never arrived.
            storage.damage_last_event(|event| event.canonical.truncate(event.canonical.len() - 10));
        });
    }
}
