//! Start-up: replay the projection journal into every projection and catch up those that
//! are behind.
//!
//! Normally every projection's checkpoint equals the log's head, because the writer journals
//! row changes and checkpoints in the same transaction as the events. A projection is behind when
//! its rows were dropped or it is new; it then replays the log from its checkpoint (checking
//! the chain as it goes) and its rows are stored before the service opens.

use std::collections::BTreeSet;

use keyledger_projections::state::{Touched, PROJECTIONS};
use keyledger_projections::State;

use crate::ledger::chain::Replay;
use crate::ledger::{ChainHead, Commit, LedgerError, RowChange, Storage};

pub fn load_state(storage: &dyn Storage) -> Result<State, LedgerError> {
    let mut state = State::default();
    let mut checkpoints = Vec::with_capacity(PROJECTIONS.len());
    for record in storage.journal() {
        for change in record? {
            match change.value {
                Some(value) => state.load_row(&change.projection, &change.key, &value)?,
                None => state.unload_row(&change.projection, &change.key),
            }
        }
    }
    for projection in PROJECTIONS {
        checkpoints.push((projection, storage.checkpoint(projection)?));
    }
    let head = storage.last_event()?.map_or(0, |e| e.position);
    let oldest = checkpoints.iter().map(|(_, position)| *position).min().unwrap_or(0);
    if oldest < head {
        catch_up(storage, &mut state, &checkpoints, oldest)?;
    }
    state.position = head;
    Ok(state)
}

fn catch_up(
    storage: &dyn Storage,
    state: &mut State,
    checkpoints: &[(&'static str, u64)],
    from: u64,
) -> Result<(), LedgerError> {
    let start = match from {
        0 => ChainHead::genesis(),
        position => {
            let stored = storage
                .events_from(position)
                .next()
                .transpose()?
                .ok_or_else(|| LedgerError::Corrupt { position, reason: "a checkpoint names a missing event".into() })?;
            ChainHead { position, hash: stored.hash }
        }
    };
    tracing::info!(from, "projections are behind the log; catching up");
    let mut touched = Touched::new();
    let mut replay = Replay::new(storage.events_from(from + 1), start);
    for event in replay.by_ref() {
        let event = event?;
        for (projection, checkpoint) in checkpoints {
            if event.position > *checkpoint {
                state.apply_to(projection, &event, &mut touched);
            }
        }
    }
    let head = replay.head().position;
    let rows: BTreeSet<(&'static str, String)> = touched.into_iter().collect();
    let commit = Commit {
        events: Vec::new(),
        rows: rows
            .into_iter()
            .map(|(projection, key)| RowChange { projection: projection.to_owned(), value: state.encode_row(projection, &key), key })
            .collect(),
        checkpoints: checkpoints.iter().map(|(projection, _)| (*projection, head)).collect(),
    };
    storage.commit(commit)
}
