//! Rebuild: fresh projections folded from the log, compared with the stored ones, and
//! swapped in.
//!
//! Every view the service answers from is derived from the log, so it can be checked and
//! repaired at any time: [`build`] folds the whole log into fresh projections (checking every
//! link of the chain on the way) next to the live ones, [`compare`] lists where they differ row
//! by row, and [`swap_in`] puts the fresh rows in place in one atomic step: only the rows
//! that differ when there are few, otherwise (or when asked to compact) a whole new journal.
//!
//! Nothing here writes until [`swap_in`]: `rebuild --check` must change nothing, which is why
//! the live projections are loaded here rather than through [`super::recovery::load_state`]
//! (whose catch-up stores rows).

use std::cmp::Ordering;
use std::fmt;

use keyledger_projections::state::PROJECTIONS;
use keyledger_projections::{ProjectionId, RecordedEvent, State};

use crate::ledger::chain::Replay;
use crate::ledger::transfer::Projector;
use crate::ledger::{head_at, ChainHead, Commit, LedgerError, RowChange, Storage};
use crate::service::recovery::load_journal;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("there is no projection named {name:?}; the projections are: {}", PROJECTIONS.map(ProjectionId::name).join(", "))]
    UnknownProjection { name: String },
}

/// The projection called `name`.
pub fn projection_named(name: &str) -> Result<ProjectionId, RebuildError> {
    ProjectionId::from_name(name).ok_or_else(|| RebuildError::UnknownProjection { name: name.to_owned() })
}

/// The projections folded afresh from the log, and the live ones beside them.
pub struct Rebuilt {
    /// Every projection folded from the whole log.
    pub fresh: State,
    /// The projections as the service would load them at start: the journal replayed, and
    /// any projection whose checkpoint is behind caught up from the log (in memory only).
    pub live: State,
    /// Each projection's stored checkpoint, as found.
    pub checkpoints: Vec<(ProjectionId, u64)>,
}

impl Rebuilt {
    /// The log's last position.
    pub fn head(&self) -> u64 {
        self.fresh.position
    }
}

/// Events per message from the decoding thread to the folding ones: large enough that the
/// channels cost nothing per event, small enough to keep every thread busy.
const FOLD_BATCH: usize = 1024;

/// The projections folded on a thread of their own while the rest fold on the caller's:
/// each projection is a fold of its own (nothing in one reads another), and these two cost
/// about as much as the other four together.
const FOLDED_BESIDE: [ProjectionId; 2] = [ProjectionId::KeysView, ProjectionId::TokenIndex];

/// Loads the live projections and folds the whole log into fresh ones, checking every link
/// of the chain on the way (a broken link stops it, naming the position). `progress` is told
/// how many events are folded so far.
///
/// Everything that can runs at once, because the machine has more than one core and each
/// part costs about the same: loading the journal into the live copy ([`load_journal`],
/// itself two threads), reading and checking the log, and folding the checked events into
/// the fresh copy (two threads, see [`FOLDED_BESIDE`]). A projection whose checkpoint is
/// behind the log is then caught up in memory, as `load_state` would at start (normally
/// none is).
pub fn build(storage: &dyn Storage, progress: &mut dyn FnMut(u64)) -> Result<Rebuilt, LedgerError> {
    let checkpoints = PROJECTIONS.iter().map(|p| Ok((*p, storage.checkpoint(*p)?))).collect::<Result<Vec<_>, LedgerError>>()?;
    let (live, fresh) = std::thread::scope(|scope| {
        let live = scope.spawn(|| load_journal(storage));
        let fresh = fold_log(scope, storage, progress);
        (joined(live), fresh)
    });
    let (mut live, fresh) = (live?, fresh?);
    let head = fresh.position;
    catch_up(storage, &mut live, &checkpoints, head)?;
    live.position = head;
    Ok(Rebuilt { fresh, live, checkpoints })
}

fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T, LedgerError>>) -> Result<T, LedgerError> {
    handle.join().unwrap_or_else(|_| Err(LedgerError::ThreadPanicked { thread: "of the rebuild" }))
}

type Batch = std::sync::Arc<Vec<RecordedEvent>>;

/// Every event folded into a fresh state: one thread reads and checks the chain and hands
/// each batch to two folding threads, this one and one for [`FOLDED_BESIDE`].
fn fold_log<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    storage: &'scope dyn Storage,
    progress: &mut dyn FnMut(u64),
) -> Result<State, LedgerError> {
    let (to_here, checked) = std::sync::mpsc::sync_channel::<Result<Batch, LedgerError>>(8);
    let (to_beside, beside_batches) = std::sync::mpsc::sync_channel::<Batch>(8);
    let reader = scope.spawn(move || {
        let mut batch = Vec::with_capacity(FOLD_BATCH);
        for event in Replay::new(storage.events_from(1), ChainHead::genesis()) {
            match event {
                Ok(event) => batch.push(event),
                Err(e) => {
                    // This side reports the error; the other one just stops. If they are
                    // gone already, so are we.
                    let _ = to_here.send(Err(e));
                    return Ok(());
                }
            }
            if batch.len() == FOLD_BATCH {
                let full: Batch = std::sync::Arc::new(std::mem::replace(&mut batch, Vec::with_capacity(FOLD_BATCH)));
                if to_beside.send(std::sync::Arc::clone(&full)).is_err() || to_here.send(Ok(full)).is_err() {
                    return Ok(());
                }
            }
        }
        // The folding sides may be gone already, stopped by an error of their own.
        let last: Batch = std::sync::Arc::new(batch);
        if to_beside.send(std::sync::Arc::clone(&last)).is_ok() {
            let _ = to_here.send(Ok(last));
        }
        Ok(())
    });
    let beside = scope.spawn(move || {
        let mut state = State::default();
        for batch in beside_batches {
            for event in batch.iter() {
                for projection in FOLDED_BESIDE {
                    state.fold_to(projection, event);
                }
            }
        }
        Ok(state)
    });
    let here: Vec<ProjectionId> = PROJECTIONS.into_iter().filter(|p| !FOLDED_BESIDE.contains(p)).collect();
    let mut fresh = State::default();
    let mut folded = 0u64;
    let mut failure = None;
    for batch in checked {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        for event in batch.iter() {
            for projection in &here {
                fresh.fold_to(*projection, event);
            }
        }
        folded = batch.last().map_or(folded, |event| event.position);
        progress(folded);
    }
    joined(reader)?;
    let mut beside = joined(beside)?;
    if let Some(e) = failure {
        return Err(e);
    }
    for projection in FOLDED_BESIDE {
        fresh.take_from(&mut beside, projection);
    }
    fresh.position = folded;
    Ok(fresh)
}

/// Folds into `live` the events its projections have not stored yet (checkpoint behind
/// `head`), from the oldest such checkpoint on, checking the chain from there.
fn catch_up(storage: &dyn Storage, live: &mut State, checkpoints: &[(ProjectionId, u64)], head: u64) -> Result<(), LedgerError> {
    let Some(from) = checkpoints.iter().map(|(_, c)| *c).filter(|c| *c < head).min() else { return Ok(()) };
    let start = head_at(storage, from)?;
    for event in Replay::new(storage.events_from(from + 1), start) {
        let event = event?;
        for (projection, checkpoint) in checkpoints {
            if event.position > *checkpoint {
                live.fold_to(*projection, &event);
            }
        }
    }
    Ok(())
}

/// How a live row differs from the fresh one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discrepancy {
    /// The log says the row exists; the live projection lacks it.
    MissingInLive,
    /// The live projection has a row the log does not produce.
    ExtraInLive,
    /// Both have the row, with different contents.
    Differs,
}

impl fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that a width given by the caller lines up reports.
        f.pad(match self {
            Discrepancy::MissingInLive => "missing in live",
            Discrepancy::ExtraInLive => "extra in live",
            Discrepancy::Differs => "differs",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub projection: ProjectionId,
    pub key: String,
    pub discrepancy: Discrepancy,
}

/// The outcome of [`compare`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The first differences found (at most the limit given to [`compare`]), in projection
    /// order, then row key order.
    pub shown: Vec<Difference>,
    /// Every compared projection with its number of differing rows (zero included).
    pub counts: Vec<(ProjectionId, usize)>,
}

impl Report {
    pub fn total(&self) -> usize {
        self.counts.iter().map(|(_, n)| n).sum()
    }

    pub fn is_clean(&self) -> bool {
        self.total() == 0
    }
}

/// Compares `live` with `fresh`, row by row, for each of `projections`: every row key either
/// has, and whether its encoding differs. Lists at most `limit` differences, counts all.
///
/// Each projection is compared on a thread of its own: comparing the keys view alone takes
/// as long as all the others.
pub fn compare(fresh: &State, live: &State, projections: &[ProjectionId], limit: usize) -> Report {
    let compared: Vec<(usize, Vec<Difference>)> = std::thread::scope(|scope| {
        let threads: Vec<_> =
            projections.iter().map(|&projection| scope.spawn(move || compare_one(fresh, live, projection, limit))).collect();
        // A panic here is a bug: it goes on to the caller as it would have without threads.
        threads.into_iter().map(|thread| thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut report = Report::default();
    for (&projection, (count, shown)) in projections.iter().zip(compared) {
        report.counts.push((projection, count));
        let room = limit.saturating_sub(report.shown.len());
        report.shown.extend(shown.into_iter().take(room));
    }
    report
}

/// One projection's number of differing rows, and the first `limit` of them.
fn compare_one(fresh: &State, live: &State, projection: ProjectionId, limit: usize) -> (usize, Vec<Difference>) {
    let (mut count, mut shown) = (0, Vec::new());
    if fresh.same_as(live, projection) {
        return (count, shown);
    }
    differences(fresh, live, projection, &mut |key, discrepancy| {
        count += 1;
        if shown.len() < limit {
            shown.push(Difference { projection, key: key.to_owned(), discrepancy });
        }
    });
    (count, shown)
}

/// Calls `found` for every row of `projection` where `live` differs from `fresh`, in row key
/// order. Walks every row: [`compare_one`] asks [`State::same_as`] first, and [`repairs`]
/// only comes here for a projection that [`compare`] found different.
fn differences(fresh: &State, live: &State, projection: ProjectionId, found: &mut dyn FnMut(&str, Discrepancy)) {
    let fresh_keys = fresh.row_keys(projection);
    let live_keys = live.row_keys(projection);
    let (mut f, mut l) = (fresh_keys.iter().peekable(), live_keys.iter().peekable());
    loop {
        let order = match (f.peek(), l.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(b),
        };
        match order {
            Ordering::Less => {
                if let Some(key) = f.next() {
                    found(key, Discrepancy::MissingInLive);
                }
            }
            Ordering::Greater => {
                if let Some(key) = l.next() {
                    found(key, Discrepancy::ExtraInLive);
                }
            }
            Ordering::Equal => {
                if let (Some(key), Some(_)) = (f.next(), l.next()) {
                    if fresh.encode_row(projection, key) != live.encode_row(projection, key) {
                        found(key, Discrepancy::Differs);
                    }
                }
            }
        }
    }
}

/// Every row of `projection` in `state`, as journal rows, in row key order.
fn rows_of(state: &State, projection: ProjectionId) -> impl Iterator<Item = RowChange> + '_ {
    state.row_keys(projection).into_iter().filter_map(move |key| {
        let value = state.encode_row(projection, &key)?;
        Some(RowChange { projection, key, value: Some(value) })
    })
}

/// How [`swap_in`] put the fresh rows in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swap {
    /// Only the rows that differed were written, as one journal record (none: nothing was
    /// written at all).
    Repaired { rows: usize },
    /// Every row was written as a new journal generation, which also compacts the journal.
    Replaced { rows: usize },
}

/// Most rows repaired in place: a repair is one journal record, written in one batch, and
/// sled holds every intermediate version of a batch in memory. Beyond it, the whole journal
/// is replaced in bounded pieces instead.
const MOST_ROWS_REPAIRED: usize = 20_000;

/// Swaps the fresh rows of the projections `report` compared in, atomically and durably; a
/// crash halfway leaves the stored projections as they were. `report` is [`compare`]'s
/// verdict on `rebuilt`: it says how many rows differ, so nothing is compared twice.
///
/// When every stored checkpoint is at the log's head and at most [`MOST_ROWS_REPAIRED`] rows
/// differ, only those rows are written, in one commit: a healthy store is not rewritten
/// (writing a million keys' rows costs sled tens of seconds). Otherwise, or with `compact`,
/// the journal is replaced by a new generation ([`Storage::replace_journal`]) holding every
/// row of the fresh compared projections and the live rows of every other projection, with
/// all checkpoints at the head (the live copies were caught up to it by [`build`]). A
/// projection whose checkpoint is behind always takes the replacement: its stored rows lack
/// what the catch-up folded in memory, which no comparison with the live copy would show.
///
/// Nothing outside the journal and the checkpoints is touched: the events stay as they are.
pub fn swap_in(storage: &dyn Storage, rebuilt: &Rebuilt, report: &Report, compact: bool) -> Result<Swap, LedgerError> {
    let caught_up = rebuilt.checkpoints.iter().all(|(_, checkpoint)| *checkpoint == rebuilt.head());
    if !compact && caught_up {
        if let Some(rows) = repairs(rebuilt, report, MOST_ROWS_REPAIRED) {
            let count = rows.len();
            if count > 0 {
                storage.commit(Commit { events: Vec::new(), rows, checkpoints: Vec::new() })?;
            }
            return Ok(Swap::Repaired { rows: count });
        }
    }
    let compared = |projection: ProjectionId| report.counts.iter().any(|(p, _)| *p == projection);
    let mut rows = PROJECTIONS.into_iter().flat_map(|projection| {
        let source = if compared(projection) { &rebuilt.fresh } else { &rebuilt.live };
        rows_of(source, projection)
    });
    let checkpoints = PROJECTIONS.iter().map(|p| (*p, rebuilt.head())).collect();
    Ok(Swap::Replaced { rows: storage.replace_journal(&mut rows, checkpoints)? })
}

/// The row changes that turn the live projections into the fresh ones, or `None` when
/// `report` counts more than `most`. Only projections with differences are walked.
fn repairs(rebuilt: &Rebuilt, report: &Report, most: usize) -> Option<Vec<RowChange>> {
    if report.total() > most {
        return None;
    }
    let mut rows = Vec::with_capacity(report.total());
    for &(projection, count) in &report.counts {
        if count > 0 {
            differences(&rebuilt.fresh, &rebuilt.live, projection, &mut |key, _| {
                rows.push(RowChange { projection, key: key.to_owned(), value: rebuilt.fresh.encode_row(projection, key) });
            });
        }
    }
    Some(rows)
}

/// Every projection folded afresh, event by event, as an import reads them: the import
/// journals its rows (see [`crate::ledger::transfer::import`]).
#[derive(Default)]
pub struct Fold {
    state: State,
}

impl Fold {
    pub fn state(&self) -> &State {
        &self.state
    }
}

impl Projector for Fold {
    fn apply(&mut self, event: &RecordedEvent) {
        self.state.fold([event]);
    }

    fn rows(&self, row: &mut dyn FnMut(RowChange) -> Result<(), LedgerError>) -> Result<(), LedgerError> {
        for projection in PROJECTIONS {
            for change in rows_of(&self.state, projection) {
                row(change)?;
            }
        }
        Ok(())
    }

    fn checkpoints(&self, head: u64) -> Vec<(ProjectionId, u64)> {
        PROJECTIONS.iter().map(|p| (*p, head)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::memory::MemoryStorage;
    use crate::ledger::SledStorage;
    use crate::service::operator;
    use crate::service::recovery::load_state;
    use crate::service::rules::directory::DirectoryFile;
    use crate::service::token::TokenFormat;
    use crate::service::writer::Writer;

    /// A store with an initialized organization (keys, tokens, directory rows, …).
    fn initialized() -> Arc<dyn Storage> {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let mut writer = Writer::new(Arc::clone(&storage), load_state(&*storage).unwrap()).unwrap();
        let file = DirectoryFile::single_owner("Initech", "peter@initech.test");
        operator::initialize(&mut writer, &[file], &TokenFormat::new("rootly").unwrap()).unwrap();
        storage
    }

    fn damage(storage: &dyn Storage, projection: ProjectionId, key: &str, value: Option<Vec<u8>>) {
        let rows = vec![RowChange { projection, key: key.into(), value }];
        storage.commit(Commit { rows, ..Commit::default() }).unwrap();
    }

    /// An initialized store with three damaged rows: an altered keys row, a missing token
    /// row and an extra one. Returns the state before the damage and the three row keys.
    fn damaged() -> (Arc<dyn Storage>, State, [String; 3]) {
        let storage = initialized();
        let state = load_state(&*storage).unwrap();
        let key_row = state.row_keys(ProjectionId::KeysView).remove(0);
        let token_row = state.row_keys(ProjectionId::TokenIndex).remove(0);
        let mut altered = String::from_utf8(state.encode_row(ProjectionId::KeysView, &key_row).unwrap()).unwrap();
        altered = altered.replace("Initial owner key", "Renamed by hand");
        damage(&*storage, ProjectionId::KeysView, &key_row, Some(altered.into_bytes()));
        damage(&*storage, ProjectionId::TokenIndex, &token_row, None);
        let extra = format!("{:020}/{}", 99, "0".repeat(64));
        damage(&*storage, ProjectionId::TokenIndex, &extra, Some(uuid::Uuid::nil().to_string().into_bytes()));
        (storage, state, [key_row, token_row, extra])
    }

    #[test]
    fn a_healthy_store_compares_clean() {
        let storage = initialized();
        let rebuilt = build(&*storage, &mut |_| {}).unwrap();
        assert_eq!(rebuilt.fresh, rebuilt.live);
        let report = compare(&rebuilt.fresh, &rebuilt.live, &PROJECTIONS, 10);
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.counts.len(), PROJECTIONS.len());
    }

    #[test]
    fn missing_extra_and_altered_rows_are_each_reported() {
        let (storage, _, [key_row, token_row, extra]) = damaged();

        let rebuilt = build(&*storage, &mut |_| {}).unwrap();
        let report = compare(&rebuilt.fresh, &rebuilt.live, &PROJECTIONS, 10);
        let found: Vec<_> = report.shown.iter().map(|d| (d.projection, d.key.as_str(), d.discrepancy)).collect();
        assert_eq!(
            found,
            vec![
                (ProjectionId::TokenIndex, token_row.as_str(), Discrepancy::MissingInLive),
                (ProjectionId::TokenIndex, extra.as_str(), Discrepancy::ExtraInLive),
                (ProjectionId::KeysView, key_row.as_str(), Discrepancy::Differs),
            ]
        );
        assert_eq!(report.total(), 3);

        let limited = compare(&rebuilt.fresh, &rebuilt.live, &PROJECTIONS, 1);
        assert_eq!((limited.shown.len(), limited.total()), (1, 3), "the limit bounds the list, not the count");
        assert_eq!(limited.shown[0], report.shown[0], "the list keeps the first differences in order");
        let only_keys = compare(&rebuilt.fresh, &rebuilt.live, &[ProjectionId::KeysView], 10);
        assert_eq!(only_keys.total(), 1);
    }

    #[test]
    fn compacting_replaces_the_journal_and_can_spare_other_projections() {
        let storage = initialized();
        let state = load_state(&*storage).unwrap();
        let key_row = state.row_keys(ProjectionId::KeysView).remove(0);
        let token_row = state.row_keys(ProjectionId::TokenIndex).remove(0);
        damage(&*storage, ProjectionId::KeysView, &key_row, None);
        damage(&*storage, ProjectionId::TokenIndex, &token_row, None);

        let rebuilt = build(&*storage, &mut |_| {}).unwrap();
        let swap = swap_in(&*storage, &rebuilt, &compare(&rebuilt.fresh, &rebuilt.live, &[ProjectionId::KeysView], 0), true).unwrap();
        assert!(matches!(swap, Swap::Replaced { rows } if rows > 0), "{swap:?}");
        assert_eq!(storage.journal().count(), 1, "the journal is one record now");
        let after = build(&*storage, &mut |_| {}).unwrap();
        let report = compare(&after.fresh, &after.live, &PROJECTIONS, 10);
        assert_eq!(report.counts.iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>(), vec![&(ProjectionId::TokenIndex, 1)]);

        swap_in(&*storage, &after, &report, true).unwrap();
        let repaired = load_state(&*storage).unwrap();
        assert_eq!(repaired, state, "what the service loads equals the original state");
    }

    #[test]
    fn a_few_damaged_rows_are_repaired_by_one_commit_and_a_healthy_store_is_not_written() {
        let (storage, state, _) = damaged();
        let records = storage.journal().count();

        let rebuilt = build(&*storage, &mut |_| {}).unwrap();
        let report = compare(&rebuilt.fresh, &rebuilt.live, &PROJECTIONS, 0);
        assert_eq!(swap_in(&*storage, &rebuilt, &report, false).unwrap(), Swap::Repaired { rows: 3 });
        assert_eq!(storage.journal().count(), records + 1, "one record of repairs appended");
        assert_eq!(load_state(&*storage).unwrap(), state, "what the service loads equals the original state");

        let healthy = build(&*storage, &mut |_| {}).unwrap();
        let report = compare(&healthy.fresh, &healthy.live, &PROJECTIONS, 0);
        assert_eq!(swap_in(&*storage, &healthy, &report, false).unwrap(), Swap::Repaired { rows: 0 });
        assert_eq!(storage.journal().count(), records + 1, "a healthy store is left as it is");
    }

    #[test]
    fn more_differences_than_a_repair_holds_or_a_projection_behind_take_a_new_journal() {
        let storage = initialized();
        let state = load_state(&*storage).unwrap();
        for key in state.row_keys(ProjectionId::KeysView) {
            damage(&*storage, ProjectionId::KeysView, &key, None);
        }
        let rebuilt = build(&*storage, &mut |_| {}).unwrap();
        let report = compare(&rebuilt.fresh, &rebuilt.live, &PROJECTIONS, 0);
        let differing = report.total();
        assert_eq!(repairs(&rebuilt, &report, differing).map(|rows| rows.len()), Some(differing));
        assert!(repairs(&rebuilt, &report, differing - 1).is_none(), "one difference too many for a repair");

        // Checkpoints behind the head: the stored rows lack what the catch-up folded in memory.
        storage.commit(Commit { checkpoints: PROJECTIONS.iter().map(|p| (*p, 1)).collect(), ..Commit::default() }).unwrap();
        let behind = build(&*storage, &mut |_| {}).unwrap();
        let report = compare(&behind.fresh, &behind.live, &PROJECTIONS, 0);
        assert!(matches!(swap_in(&*storage, &behind, &report, false).unwrap(), Swap::Replaced { .. }));
        assert_eq!(storage.journal().count(), 1);
        assert_eq!(load_state(&*storage).unwrap(), state);
        assert!(PROJECTIONS.iter().all(|p| storage.checkpoint(*p).unwrap() == state.position));
    }

    #[test]
    fn a_projection_behind_the_log_is_compared_as_the_service_would_load_it() {
        let storage = initialized();
        let expected = load_state(&*storage).unwrap();
        // Every row gone and every checkpoint at zero: as if all projections were new.
        storage.replace_journal(&mut std::iter::empty(), PROJECTIONS.iter().map(|p| (*p, 0)).collect()).unwrap();
        let rebuilt = build(&*storage, &mut |_| {}).unwrap();
        assert!(compare(&rebuilt.fresh, &rebuilt.live, &PROJECTIONS, 10).is_clean());
        assert_eq!(rebuilt.live, expected);
        assert!(rebuilt.checkpoints.iter().all(|(_, c)| *c == 0), "build wrote nothing");
        assert_eq!(storage.checkpoint(ProjectionId::KeysView).unwrap(), 0, "build wrote nothing");
    }

    #[test]
    fn an_import_journals_what_it_folded_and_loads_back_to_the_same_state() {
        let storage = initialized();
        let expected = load_state(&*storage).unwrap();
        let mut export = Vec::new();
        crate::ledger::transfer::export(&*storage, &mut export, "memory", &mut |_| {}).unwrap();
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("imported");
        let mut fold = Fold::default();
        crate::ledger::transfer::import(&mut export.as_slice(), &target, &mut |_| {}, &mut fold).unwrap();
        assert_eq!(fold.state(), &expected);
        let imported = SledStorage::open_existing(&target).unwrap();
        assert!(PROJECTIONS.iter().all(|p| imported.checkpoint(*p).unwrap() == expected.position));
        assert_eq!(load_state(&imported).unwrap(), expected, "the journaled rows load back to the folded state");
        let rebuilt = build(&imported, &mut |_| {}).unwrap();
        assert!(compare(&rebuilt.fresh, &rebuilt.live, &PROJECTIONS, 10).is_clean());
    }

    #[test]
    fn unknown_projection_names_list_the_valid_ones() {
        assert_eq!(projection_named("keys").ok(), Some(ProjectionId::KeysView));
        let message = projection_named("key").err().map(|e| e.to_string()).unwrap_or_default();
        for projection in PROJECTIONS {
            assert!(message.contains(projection.name()), "{message}");
        }
    }
}
