//! Start-up: replay the projection journal into every projection and catch up those that
//! are behind.
//!
//! Normally every projection's checkpoint equals the log's head, because the writer journals
//! row changes and checkpoints in the same transaction as the events. A projection is behind when
//! its rows were dropped or it is new; it then replays the log from its checkpoint (checking
//! the chain as it goes) and its rows are stored before the service opens.

use std::collections::BTreeSet;
use std::sync::{mpsc, Arc};

use keyledger_projections::state::{Touched, PROJECTIONS};
use keyledger_projections::{ProjectionId, State};

use crate::ledger::chain::Replay;
use crate::ledger::journal::Record;
use crate::ledger::{head_at, Commit, LedgerError, RowChange, Storage};

pub fn load_state(storage: &dyn Storage) -> Result<State, LedgerError> {
    // On a log other nodes append to, none appends while this one reads: the journal, the
    // checkpoints and the head must describe one moment (a commit between the journal and
    // the checkpoints would leave its rows out of a state that claims its position). The
    // lock is held for the load; the events appended after it are caught up by the follower
    // and the writer's first batch.
    let _held = match storage.shared() {
        Some(_) => {
            let head = storage.last_event()?.map_or(0, |e| e.position);
            Some(storage.begin_append(head)?.1)
        }
        None => None,
    };
    let mut state = load_journal(storage)?;
    let mut checkpoints = Vec::with_capacity(PROJECTIONS.len());
    for projection in PROJECTIONS {
        checkpoints.push((projection, storage.checkpoint(projection)?));
    }
    let head = storage.last_event()?.map_or(0, |e| e.position);
    let oldest = checkpoints.iter().map(|(_, position)| *position).min().unwrap_or(0);
    if oldest < head {
        let (touched, caught_up) = catch_up(storage, &mut state, &checkpoints, oldest)?;
        if storage.shared().is_none() {
            store_caught_up(storage, &state, touched, &checkpoints, caught_up)?;
        } else {
            // Storing would wait on the lock this load holds; the next start folds again.
            tracing::info!(head, "projections caught up in memory only (the log is shared)");
        }
    }
    state.position = head;
    Ok(state)
}

/// The stored rows of every projection, as the journal holds them (no catch-up).
///
/// The keys view's rows are the largest and the most expensive to decode, about as much work
/// as every other row together, so two threads load them side by side: one the keys view's
/// rows, the other everything else. A third reads the journal, once, and hands every record
/// to both; a record is freed when both are done with it. The reader may run up to
/// [`RECORDS_AHEAD`] records ahead of the slower loader: a compacted journal holds one
/// projection's rows after another in a few hundred records, and a loader that waited for
/// the other to catch up would leave a core idle for a whole projection, while a journal of
/// one small record per commit mixes every projection in each. (A reader per loader would
/// read the whole journal from disk twice: sled's cache evicts behind a reader.)
pub fn load_journal(storage: &dyn Storage) -> Result<State, LedgerError> {
    let (to_keys, keys_records) = mpsc::sync_channel(RECORDS_AHEAD);
    let (to_rest, rest_records) = mpsc::sync_channel(RECORDS_AHEAD);
    let (read, keys, rest) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            for record in storage.journal() {
                let record = Arc::new(record?);
                // A loader that is gone has failed and says why: reading on is pointless.
                if to_keys.send(Arc::clone(&record)).is_err() || to_rest.send(record).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let keys = scope.spawn(|| load_rows(keys_records, |projection| projection == ProjectionId::KeysView));
        let rest = load_rows(rest_records, |projection| projection != ProjectionId::KeysView);
        let keys = keys.join().unwrap_or_else(|_| Err(LedgerError::ThreadPanicked { thread: "loading the keys view" }));
        let read = reader.join().unwrap_or_else(|_| Err(LedgerError::ThreadPanicked { thread: "reading the journal" }));
        (read, keys, rest)
    });
    // A failed read ends both loaders early: its error is the one that explains.
    read?;
    let mut state = rest?;
    state.take_from(&mut keys?, ProjectionId::KeysView);
    Ok(state)
}

/// Journal records read ahead of the slower loader: more than a compacted journal of a
/// million keys holds (20 000 rows each), few enough that a journal of one record per
/// commit stays a few megabytes ahead.
const RECORDS_AHEAD: usize = 1024;

/// The rows of the projections `wanted` names, from `records` in journal order, into a
/// state of their own.
fn load_rows(records: mpsc::Receiver<Arc<Record>>, wanted: impl Fn(ProjectionId) -> bool) -> Result<State, LedgerError> {
    let mut state = State::default();
    for record in records {
        for row in record.rows() {
            let row = row?;
            if !wanted(row.projection) {
                continue;
            }
            match row.value {
                Some(value) => state.load_row(row.projection, row.key, value)?,
                None => state.unload_row(row.projection, row.key),
            }
        }
    }
    Ok(state)
}

/// Folds the events past each projection's checkpoint into it; returns the rows that
/// changed and the position caught up to.
fn catch_up(
    storage: &dyn Storage,
    state: &mut State,
    checkpoints: &[(ProjectionId, u64)],
    from: u64,
) -> Result<(Touched, u64), LedgerError> {
    let start = head_at(storage, from)?;
    tracing::info!(from, "projections are behind the log; catching up");
    let mut touched = Touched::new();
    let mut replay = Replay::new(storage.events_from(from + 1), start);
    for event in replay.by_ref() {
        let event = event?;
        for (projection, checkpoint) in checkpoints {
            if event.position > *checkpoint {
                state.apply_to(*projection, &event, &mut touched);
            }
        }
    }
    Ok((touched, replay.head().position))
}

/// Stores the rows a catch-up changed and advances every checkpoint to `head`.
fn store_caught_up(
    storage: &dyn Storage,
    state: &State,
    touched: Touched,
    checkpoints: &[(ProjectionId, u64)],
    head: u64,
) -> Result<(), LedgerError> {
    // Rows go out in bounded records (one huge batch makes sled hold every intermediate
    // version of it in memory), the checkpoints last: a crash in between leaves the old
    // checkpoints, and the next start replays the same events over rows that already hold
    // some of them, which folding tolerates (every fold sets, it never accumulates).
    let rows: Vec<(ProjectionId, String)> = touched.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
    for chunk in rows.chunks(CATCH_UP_ROWS_PER_COMMIT) {
        let rows = chunk
            .iter()
            .map(|(projection, key)| RowChange { projection: *projection, value: state.encode_row(*projection, key), key: key.clone() })
            .collect();
        storage.append(Commit { events: Vec::new(), rows, checkpoints: Vec::new() })?;
    }
    let checkpoints = checkpoints.iter().map(|(projection, _)| (*projection, head)).collect();
    storage.commit(Commit { events: Vec::new(), rows: Vec::new(), checkpoints })
}

/// Rows per journal record written by a catch-up.
const CATCH_UP_ROWS_PER_COMMIT: usize = 20_000;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::chain;
    use crate::ledger::memory::MemoryStorage;
    use crate::ledger::ChainHead;
    use crate::service::operator;
    use crate::service::rules::directory::DirectoryFile;
    use crate::service::token::TokenFormat;
    use crate::service::writer::Writer;

    /// A ledger whose events were stored without any projection rows or checkpoints (as if
    /// every projection were new) is caught up at start, and stays caught up.
    #[test]
    fn projections_behind_the_log_catch_up_from_their_checkpoint() {
        let source: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let mut writer = Writer::new(Arc::clone(&source), load_state(&*source).unwrap()).unwrap();
        let file = DirectoryFile::single_owner("Initech", "peter@initech.test");
        operator::initialize(&mut writer, &[file], &TokenFormat::new("rootly").unwrap()).unwrap();
        let expected = writer.state().clone();

        let bare = MemoryStorage::new();
        let events: Vec<_> = source.events_from(1).collect::<Result<_, _>>().unwrap();
        bare.commit(Commit { events, rows: Vec::new(), checkpoints: Vec::new() }).unwrap();
        assert_eq!(bare.checkpoint(ProjectionId::KeysView).unwrap(), 0);

        let caught_up = load_state(&bare).unwrap();
        assert_eq!(caught_up, expected);
        let head = expected.position;
        assert!(PROJECTIONS.iter().all(|p| bare.checkpoint(*p).unwrap() == head), "checkpoints advanced");
        assert_eq!(load_state(&bare).unwrap(), expected, "the caught-up rows were stored");
    }

    /// An unreadable row stops the load with its name, whichever loader reads it, and the
    /// other loader and the journal's reader stop too instead of waiting forever.
    #[test]
    fn an_unreadable_stored_row_stops_the_load_naming_it() {
        for projection in [ProjectionId::KeysView, ProjectionId::TokenIndex] {
            let storage = MemoryStorage::new();
            let rows = (0..3 * RECORDS_AHEAD)
                .map(|i| RowChange { projection: ProjectionId::Directory, key: format!("filler-{i}"), value: None })
                .chain([RowChange { projection, key: "00000000000000000001/broken".into(), value: Some(b"not a row".to_vec()) }]);
            for row in rows {
                storage.append(Commit { events: Vec::new(), rows: vec![row], checkpoints: Vec::new() }).unwrap();
            }
            let error = load_journal(&storage).unwrap_err().to_string();
            assert!(error.contains("broken") && error.contains(projection.name()), "{projection}: {error}");
        }
    }

    #[test]
    fn a_broken_chain_stops_the_catch_up() {
        let storage = MemoryStorage::new();
        let mut events = Vec::new();
        let mut head = ChainHead::genesis();
        let file = DirectoryFile::single_owner("Initech", "peter@initech.test");
        let planned = crate::service::rules::directory::plan(&file, &State::default(), &mut uuid::Uuid::new_v4).unwrap();
        for (i, event) in planned.into_iter().enumerate() {
            let recorded = keyledger_projections::RecordedEvent {
                position: i as u64 + 1,
                stream: event.stream(),
                stream_version: 1,
                recorded_at: chrono::Utc::now(),
                actor: keyledger_projections::Actor::Operator,
                request_id: "test".into(),
                client_request_id: None,
                event,
            };
            let stored = chain::seal(&recorded, head).unwrap();
            head = ChainHead { position: stored.position, hash: stored.hash };
            events.push(stored);
        }
        events[2].canonical[10] ^= 1;
        storage.commit(Commit { events, rows: Vec::new(), checkpoints: Vec::new() }).unwrap();
        assert!(matches!(load_state(&storage), Err(LedgerError::Corrupt { position: 3, .. })));
    }
}
