//! The storage conformance suite: what every backend behind [`Storage`] and [`LastUseStore`]
//! must do, whatever it keeps its bytes in. Each backend runs it from one `#[test]` of its own
//! (the memory store, sled; PostgreSQL next), handing in how to make a fresh, empty store and
//! how to damage the last event it holds as a torn write would.
//!
//! What a backend can notice of damage differs: sled frames its records and reports a torn one
//! itself, a store that keeps events whole can only hand the damaged bytes on. Either way the
//! reader that checks the chain ([`Replay`], as recovery, rebuild and verify read) must stop at
//! the damaged event, naming its position, and must not have accepted anything after it.

use chrono::{DateTime, Utc};
use keyledger_projections::state::PROJECTIONS;
use keyledger_projections::ProjectionId;
use uuid::Uuid;

use super::chain::{sample, Replay};
use super::{head_at, journal, ChainHead, Commit, LastUseStore, LedgerError, RowChange, Storage, StoredEvent};

/// Runs every check, each on a store of its own from `fresh`. `tear_last_event` damages the
/// last stored event of a store in place (it is called once the store holds a few).
pub(crate) fn run<S: Storage + LastUseStore>(mut fresh: impl FnMut() -> S, tear_last_event: impl Fn(&S)) {
    an_empty_store_holds_nothing(&fresh());
    events_read_back_in_order_from_any_position(&fresh());
    journal_records_come_back_whole_in_commit_order(&fresh());
    checkpoints_are_kept_per_projection(&fresh());
    last_uses_are_kept_one_per_key(&fresh());
    a_replaced_journal_is_the_only_one_read(&fresh());
    a_damaged_last_event_is_reported_at_its_position(&fresh(), tear_last_event);
}

fn events_from(storage: &impl Storage, position: u64) -> Vec<StoredEvent> {
    storage.events_from(position).collect::<Result<_, _>>().unwrap_or_else(|e| panic!("reading from {position}: {e}"))
}

fn journal_records(storage: &impl Storage) -> Vec<Vec<RowChange>> {
    storage.journal().map(|record| record.and_then(|record| record.changes()).unwrap_or_else(|e| panic!("{e}"))).collect()
}

fn commit(storage: &impl Storage, commit: Commit) {
    storage.commit(commit).unwrap_or_else(|e| panic!("{e}"));
}

fn row(projection: ProjectionId, key: &str, value: Option<&[u8]>) -> RowChange {
    RowChange { projection, key: key.to_owned(), value: value.map(<[u8]>::to_vec) }
}

fn an_empty_store_holds_nothing(storage: &(impl Storage + LastUseStore)) {
    assert_eq!(storage.last_event().ok(), Some(None));
    assert!(events_from(storage, 1).is_empty());
    assert!(journal_records(storage).is_empty());
    for projection in PROJECTIONS {
        assert_eq!(storage.checkpoint(projection).ok(), Some(0), "{projection}");
    }
    assert_eq!(storage.last_uses().ok(), Some(Vec::new()));
}

fn events_read_back_in_order_from_any_position(storage: &impl Storage) {
    let events = sample::log(12);
    storage.append(Commit { events: events[..5].to_vec(), ..Commit::default() }).unwrap_or_else(|e| panic!("{e}"));
    storage.append(Commit { events: events[5..6].to_vec(), ..Commit::default() }).unwrap_or_else(|e| panic!("{e}"));
    storage.sync().unwrap_or_else(|e| panic!("{e}"));
    commit(storage, Commit { events: events[6..].to_vec(), ..Commit::default() });

    for position in 0..=14 {
        let skip = usize::try_from(position.max(1) - 1).unwrap_or(usize::MAX).min(events.len());
        assert_eq!(events_from(storage, position), events[skip..], "from position {position}");
    }
    assert_eq!(storage.last_event().ok().flatten().as_ref(), events.last());
    assert_eq!(head_at(storage, 7).ok(), Some(ChainHead { position: 7, hash: events[6].hash }));
    let replayed: Result<Vec<_>, _> = Replay::new(storage.events_from(1), ChainHead::genesis()).collect();
    assert_eq!(replayed.map(|events| events.len()).ok(), Some(events.len()), "every link holds, byte for byte");
}

fn journal_records_come_back_whole_in_commit_order(storage: &impl Storage) {
    let big = vec![b'v'; 3 * journal::PIECE_BYTES];
    let records = [
        vec![row(ProjectionId::KeysView, "a", Some(&big)), row(ProjectionId::NameIndex, "n", None)],
        vec![row(ProjectionId::Directory, "d", Some(b""))],
        vec![row(ProjectionId::KeysView, "a", None), row(ProjectionId::TokenIndex, "t", Some(b"x"))],
    ];
    commit(storage, Commit { rows: records[0].clone(), ..Commit::default() });
    commit(storage, Commit { events: sample::log(1), rows: records[1].clone(), ..Commit::default() });
    commit(storage, Commit { checkpoints: vec![(ProjectionId::KeysView, 1)], ..Commit::default() });
    commit(storage, Commit { rows: records[2].clone(), ..Commit::default() });

    assert_eq!(journal_records(storage), records, "one record per commit with rows, in commit order");
    let numbers: Vec<u64> = storage.journal().map(|record| record.map(|record| record.number).unwrap_or_else(|e| panic!("{e}"))).collect();
    assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "record numbers rise: {numbers:?}");
}

fn checkpoints_are_kept_per_projection(storage: &impl Storage) {
    commit(storage, Commit { checkpoints: vec![(ProjectionId::KeysView, 3), (ProjectionId::Directory, 2)], ..Commit::default() });
    commit(storage, Commit { checkpoints: vec![(ProjectionId::KeysView, 7)], ..Commit::default() });
    assert_eq!(storage.checkpoint(ProjectionId::KeysView).ok(), Some(7), "a later checkpoint replaces the earlier");
    assert_eq!(storage.checkpoint(ProjectionId::Directory).ok(), Some(2), "others are left as they were");
    assert_eq!(storage.checkpoint(ProjectionId::NameIndex).ok(), Some(0), "never stored: 0");
}

fn last_uses_are_kept_one_per_key(storage: &impl LastUseStore) {
    let at = |seconds: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    storage.record_last_uses(&[(b, at(2)), (a, at(1))]).unwrap_or_else(|e| panic!("{e}"));
    storage.record_last_uses(&[(a, at(3))]).unwrap_or_else(|e| panic!("{e}"));
    let mut uses = storage.last_uses().unwrap_or_else(|e| panic!("{e}"));
    uses.sort();
    assert_eq!(uses, vec![(a, at(3)), (b, at(2))]);
}

fn a_replaced_journal_is_the_only_one_read(storage: &impl Storage) {
    let events = sample::log(3);
    commit(storage, Commit { events: events.clone(), rows: vec![row(ProjectionId::KeysView, "old", Some(b"x"))], ..Commit::default() });
    let fresh: Vec<RowChange> = (0..25).map(|i| row(ProjectionId::TokenIndex, &format!("new{i:02}"), Some(b"y"))).collect();
    let checkpoints = PROJECTIONS.iter().map(|projection| (*projection, 3)).collect();

    let written = storage.replace_journal(&mut fresh.clone().into_iter(), checkpoints).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(written, fresh.len());
    assert_eq!(journal_records(storage).concat(), fresh, "only the new rows, in order");
    assert!(PROJECTIONS.iter().all(|projection| storage.checkpoint(*projection).ok() == Some(3)));
    assert_eq!(events_from(storage, 1), events, "the events are untouched");

    let later = vec![row(ProjectionId::KeysView, "later", Some(b"z"))];
    commit(storage, Commit { rows: later.clone(), ..Commit::default() });
    assert_eq!(journal_records(storage).concat(), [fresh, later].concat(), "commits go on after the replacement");

    assert_eq!(storage.replace_journal(&mut std::iter::empty(), Vec::new()).ok(), Some(0));
    assert!(journal_records(storage).is_empty(), "an empty replacement leaves an empty journal");
}

fn a_damaged_last_event_is_reported_at_its_position<S: Storage>(storage: &S, tear_last_event: impl Fn(&S)) {
    let events = sample::log(5);
    commit(storage, Commit { events: events[..3].to_vec(), ..Commit::default() });
    commit(storage, Commit { events: events[3..].to_vec(), ..Commit::default() });
    tear_last_event(storage);

    let read: Vec<_> = Replay::new(storage.events_from(1), ChainHead::genesis()).collect();
    let (last, intact) = read.split_last().unwrap_or_else(|| panic!("nothing read"));
    assert_eq!(intact.len(), 4, "the events before the damage are read");
    assert!(intact.iter().all(Result::is_ok), "and they are whole");
    assert!(matches!(last, Err(LedgerError::Corrupt { position: 5, .. })), "the damage is named at its position: {last:?}");

    match storage.last_event() {
        Err(LedgerError::Corrupt { position, .. }) => assert_eq!(position, 5),
        Ok(Some(stored)) => assert!(stored.position == 5 && stored != events[4], "the damaged event is handed on, never a repaired one"),
        other => panic!("the last event is neither reported damaged nor handed on: {other:?}"),
    }
    assert_eq!(head_at(storage, 4).ok(), Some(ChainHead { position: 4, hash: events[3].hash }), "what precedes it still reads");
}
