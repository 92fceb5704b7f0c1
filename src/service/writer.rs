//! The single writer: decides commands in order, appends each batch as one commit, and
//! answers only once the commit is durable.
//!
//! The writer keeps its own copy of the state and folds each decided event into it at
//! once, so that the next command of the same batch sees it (two creates of one name in
//! one batch: the second is refused). Readers see a second copy, the published state,
//! which only receives events after they are durable: nothing is visible, and no caller
//! is answered, before its commit has been synced.
//!
//! Deciding and syncing are two stages: [`Writer::stage`] decides a batch and appends it;
//! [`Durability::complete`] syncs everything appended so far, publishes it and produces the
//! answers. The service runs them on two threads, so the next batch is decided while the
//! previous one is being synced; offline commands run both in turn ([`Writer::execute`]).
//!
//! A failed append or sync fails the writer: whether the store holds the batch is then
//! unknown, and every batch appended after it is in doubt too. Until it recovers, every
//! command is answered [`CommandError::Unavailable`] (nothing recorded, try again), and
//! `/readyz` says not ready. [`Writer::recover`] then does what a restart would, without
//! one: the store lets go of what it held in memory and opens again from what is durable
//! ([`Storage::reopen`]); the writer's state becomes the published one (durable events
//! only) plus whatever the log holds past it (a batch whose sync failed but reached the
//! disk after all is folded and published, though its callers were told it failed); and
//! batches staged before the failure are answered as failed, never synced again.

use std::collections::BTreeSet;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use keyledger_projections::state::{Touched, PROJECTIONS};
use keyledger_projections::{ProjectionId, RecordedEvent, State};
use tokio::sync::Notify;
use uuid::Uuid;

use super::clock::{Clock, SystemClock};
use super::rules::directory::{self, DirectoryError, DirectoryFile};
use super::rules::{create_api_key, grace_period, revoke_api_key, rotate_api_key, update_api_key, Decision, Rejection};
use crate::ledger::{chain, ChainHead, Commit, LedgerError, RowChange, Storage, StoredEvent};
use crate::telemetry;

/// Something the writer can be asked to do.
#[derive(Clone, Debug)]
pub enum Command {
    CreateApiKey(create_api_key::CreateApiKey),
    RevokeApiKey(revoke_api_key::RevokeApiKey),
    UpdateApiKey(update_api_key::UpdateApiKey),
    RotateApiKey(rotate_api_key::RotateApiKey),
    /// Record the end of every grace period that has run out.
    EndGracePeriods,
    /// A whole directory file (one organization or several), recorded as one plan.
    ApplyDirectory(Vec<DirectoryFile>),
    /// A decision that panics, standing for a bug in a rule.
    #[cfg(test)]
    Panic,
}

/// Which request a command came from, as its events record it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The id this server gave the request (or the CLI its run).
    pub request_id: String,
    /// The client's own `X-Request-Id`, if it sent one.
    pub client_request_id: Option<String>,
}

impl From<String> for Provenance {
    fn from(request_id: String) -> Self {
        Provenance { request_id, client_request_id: None }
    }
}

impl From<&str> for Provenance {
    fn from(request_id: &str) -> Self {
        Provenance::from(request_id.to_owned())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// Nothing of the command was recorded (or, after a failed sync, it is not known to be):
    /// the store is failing or recovering; the same command may be tried again shortly.
    #[error("the ledger cannot record changes: {0}")]
    Unavailable(String),
    /// Deciding the command panicked (a bug): nothing of it was recorded, and the writer
    /// went on with the next command.
    #[error("deciding the command failed unexpectedly")]
    Panicked,
}

/// What a command got: the events it recorded, or why not.
pub type Answer = Result<Vec<RecordedEvent>, CommandError>;

pub struct Writer {
    storage: Arc<dyn Storage>,
    state: State,
    head: ChainHead,
    durability: Durability,
    /// The moment each command is decided at.
    clock: Arc<dyn Clock>,
}

/// A batch appended to the store but not yet known to be durable.
pub struct Staged {
    /// The [`Health::epoch`] it was staged in: a batch staged before the store was reopened
    /// is never synced.
    epoch: u64,
    /// Events other nodes committed before the batch, which the writer folded first.
    foreign: Vec<RecordedEvent>,
    events: Vec<RecordedEvent>,
    outcomes: Vec<Result<Range<usize>, CommandError>>,
}

/// Why a batch staged before the store was reopened is refused.
const STAGED_BEFORE_REOPEN: &str = "the store was reopened after a failure before this batch was synced; try again";

impl Staged {
    /// A batch of `count` commands, none of them recorded, for `reason`.
    fn refused(epoch: u64, reason: &str, count: usize) -> Self {
        Staged {
            epoch,
            foreign: Vec::new(),
            events: Vec::new(),
            outcomes: (0..count).map(|_| Err(CommandError::Unavailable(reason.to_owned()))).collect(),
        }
    }
}

/// The syncing stage: makes appended batches durable, publishes them, answers them.
#[derive(Clone)]
pub struct Durability {
    storage: Arc<dyn Storage>,
    published: Arc<RwLock<State>>,
    /// Woken each time events are published, for whoever waits on the state to change
    /// (the expiry schedule).
    publications: Arc<Notify>,
    health: Arc<Mutex<Health>>,
}

/// Whether the writer may record, and which opening of the store it records into.
#[derive(Debug, Default)]
struct Health {
    /// Counts the store's reopenings: a batch staged in an earlier epoch is in doubt.
    epoch: u64,
    /// Why the writer refuses changes until it recovers (after a failed append or sync).
    failure: Option<String>,
}

impl Durability {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current epoch, and why the writer is failing if it is.
    fn standing(&self) -> (u64, Option<String>) {
        let health = self.health();
        (health.epoch, health.failure.clone())
    }

    /// Why the writer refuses every change until it has recovered (after a failed append or
    /// sync), if it does: a node in that state must not be sent requests (`GET /readyz`).
    pub fn refusing_writes(&self) -> Option<String> {
        self.health().failure.clone()
    }

    /// Asks the store for one small thing (a checkpoint): an answer means it is reachable.
    /// sled is in this process and answers unless its disk fails; a store over the network
    /// may not answer at all, so callers bound the wait.
    pub fn probe_store(&self) -> Result<(), LedgerError> {
        self.storage.checkpoint(PROJECTIONS[0]).map(drop)
    }

    /// Fails the writer until it recovers; returns the reason commands are given.
    fn fail(&self, e: &LedgerError, operation: &'static str) -> String {
        metrics::counter!(telemetry::STORE_ERRORS, "operation" => operation).increment(1);
        let reason = format!("{e}; recovering from what is durable, try again shortly");
        tracing::error!(error = %e, operation, "the ledger could not record a batch; refusing changes until the store is reopened");
        self.health().failure.get_or_insert(reason).clone()
    }

    /// Folds durable `events` into the published state, strictly by position: the one place
    /// it advances, whether from this node's batches or (on a shared log) from what the
    /// follower read. An event already folded is passed over (the follower may have read this
    /// node's own commit first); at a gap the rest waits for the follower, which reads from
    /// the store everything past the published position: nothing is folded twice or skipped.
    /// Returns how many it folded; whoever calls wakes [`Writer::publications`].
    pub fn publish<'a>(&self, events: impl IntoIterator<Item = &'a RecordedEvent>) -> usize {
        let mut published = self.published.write().unwrap_or_else(PoisonError::into_inner);
        let mut folded = 0;
        for event in events {
            if event.position <= published.position {
                continue;
            }
            if event.position != published.position + 1 {
                tracing::warn!(
                    position = event.position,
                    published = published.position,
                    "an event to publish does not follow the published state; leaving it to the follower"
                );
                break;
            }
            published.fold([event]);
            folded += 1;
        }
        folded
    }

    /// Wakes whoever waits on the published state to change.
    pub(super) fn notify_publications(&self) {
        self.publications.notify_waiters();
    }

    /// The position of the last published event.
    pub fn published_position(&self) -> u64 {
        self.published.read().unwrap_or_else(PoisonError::into_inner).position
    }

    /// The store this stage syncs.
    pub(super) fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Syncs once for all of `staged` (in the order they were staged), then publishes their
    /// events and returns each batch's answers.
    /// A batch staged while the writer was failing, or before the store was reopened, is
    /// not synced: its appends went to a store that failed, and it is answered as failed.
    pub fn complete(&self, staged: Vec<Staged>) -> Vec<Vec<Answer>> {
        let (epoch, failed) = self.standing();
        let failure = if failed.is_some() {
            failed
        } else if staged.iter().all(|batch| batch.events.is_empty() || batch.epoch != epoch) {
            None
        } else {
            let started = Instant::now();
            let synced = self.storage.sync();
            metrics::histogram!(telemetry::SYNC_DURATION).record(started.elapsed().as_secs_f64());
            synced.err().map(|e| self.fail(&e, "sync"))
        };
        if failure.is_none() {
            self.publish(staged.iter().filter(|batch| batch.epoch == epoch).flat_map(|batch| batch.foreign.iter().chain(&batch.events)));
            self.publications.notify_waiters();
        }
        staged
            .into_iter()
            .map(|batch| {
                let failure = failure.clone().or_else(|| (batch.epoch != epoch).then(|| STAGED_BEFORE_REOPEN.to_owned()));
                batch
                    .outcomes
                    .into_iter()
                    .map(|outcome| match (outcome, &failure) {
                        (Ok(_), Some(reason)) => Err(CommandError::Unavailable(reason.clone())),
                        (Ok(range), None) => Ok(batch.events[range].to_vec()),
                        (Err(e), _) => Err(e),
                    })
                    .collect()
            })
            .collect()
    }
}

fn decide(command: &Command, state: &State, now: DateTime<Utc>) -> Result<Decision, CommandError> {
    match command {
        Command::CreateApiKey(cmd) => Ok(create_api_key::decide(cmd, state, now)?),
        Command::RevokeApiKey(cmd) => Ok(revoke_api_key::decide(cmd, state, now)?),
        Command::UpdateApiKey(cmd) => Ok(update_api_key::decide(cmd, state, now)?),
        Command::RotateApiKey(cmd) => Ok(rotate_api_key::decide(cmd, state, now)?),
        Command::EndGracePeriods => Ok(grace_period::end_grace_periods(state, now)),
        Command::ApplyDirectory(files) => {
            let events = directory::plan_all(files, state, &mut Uuid::new_v4)?;
            Ok(Decision { actor: keyledger_projections::Actor::Operator, events })
        }
        #[cfg(test)]
        Command::Panic => panic!("a rule failed"),
    }
}

/// [`decide`], with a panic turned into [`CommandError::Panicked`]: a decision only reads
/// the state, so a rule that panics leaves nothing half-done, and one bad command must not
/// stop every later write until a restart.
fn decide_guarded(command: &Command, state: &State, now: DateTime<Utc>) -> Result<Decision, CommandError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| decide(command, state, now))).unwrap_or_else(|_| {
        tracing::error!("deciding a command panicked; nothing of it was recorded");
        Err(CommandError::Panicked)
    })
}

/// The projections [`published_copy`] copies on a second thread: with a million keys
/// copying takes seconds, most of it the keys view and the name index (a string per key).
const COPIED_BESIDE: [ProjectionId; 2] = [ProjectionId::KeysView, ProjectionId::NameIndex];

/// `state`'s `projections`, in an otherwise empty state.
fn copy_of(state: &State, projections: impl IntoIterator<Item = ProjectionId>) -> State {
    let mut copy = State { position: state.position, ..State::default() };
    for projection in projections {
        copy.copy_from(state, projection);
    }
    copy
}

/// A copy of `state` for readers: [`COPIED_BESIDE`] on a second thread, the rest on this one.
fn published_copy(state: &State) -> State {
    std::thread::scope(|scope| {
        let beside = scope.spawn(|| copy_of(state, COPIED_BESIDE));
        let mut copy = copy_of(state, PROJECTIONS.into_iter().filter(|projection| !COPIED_BESIDE.contains(projection)));
        // A panicking clone is an allocation failure; copying on this thread says so again.
        let mut beside = beside.join().unwrap_or_else(|_| copy_of(state, COPIED_BESIDE));
        for projection in COPIED_BESIDE {
            copy.take_from(&mut beside, projection);
        }
        copy
    })
}

impl Writer {
    /// A writer over `storage`, whose projections are in `state` (see [`super::recovery`]).
    pub fn new(storage: Arc<dyn Storage>, state: State) -> Result<Self, LedgerError> {
        let head = if storage.shared().is_some() {
            // Other nodes may have appended since the state was loaded: the writer starts
            // where the state is and catches up at its first batch.
            crate::ledger::head_at(&*storage, state.position)?
        } else {
            match storage.last_event()? {
                Some(last) => ChainHead { position: last.position, hash: last.hash },
                None => ChainHead::genesis(),
            }
        };
        if head.position != state.position {
            return Err(LedgerError::Corrupt {
                position: head.position,
                reason: format!("projections are at position {} but the log ends at {}", state.position, head.position),
            });
        }
        let durability = Durability {
            storage: Arc::clone(&storage),
            published: Arc::new(RwLock::new(published_copy(&state))),
            publications: Arc::new(Notify::new()),
            health: Arc::new(Mutex::new(Health::default())),
        };
        Ok(Writer { storage, state, head, durability, clock: Arc::new(SystemClock) })
    }

    /// The state readers answer from: only ever durable events.
    pub fn published(&self) -> Arc<RwLock<State>> {
        Arc::clone(&self.durability.published)
    }

    /// Notified each time newly durable events are published.
    pub fn publications(&self) -> Arc<Notify> {
        Arc::clone(&self.durability.publications)
    }

    /// The syncing stage, for a second thread.
    pub fn durability(&self) -> Durability {
        self.durability.clone()
    }

    /// Decides from now on at the time `clock` tells (the system's unless set).
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    pub fn head(&self) -> ChainHead {
        self.head
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Decides and records a batch of (command, request id); one answer per command, in
    /// order. Returns only when every recorded event is durable.
    pub fn execute(&mut self, batch: Vec<(Command, Provenance)>) -> Vec<Answer> {
        let staged = self.stage(batch);
        self.durability.complete(vec![staged]).pop().unwrap_or_default()
    }

    /// Decides a batch and appends it, without waiting for it to be durable.
    pub fn stage(&mut self, batch: Vec<(Command, Provenance)>) -> Staged {
        let (epoch, failure) = self.durability.standing();
        if let Some(reason) = failure {
            return Staged::refused(epoch, &reason, batch.len());
        }
        let count = batch.len();
        metrics::histogram!(telemetry::BATCH_SIZE).record(count as f64);
        match self.record(batch, epoch) {
            Ok(staged) => staged,
            Err(e) => Staged::refused(epoch, &self.durability.fail(&e, "append"), count),
        }
    }

    /// Why the writer refuses changes until [`Writer::recover`] succeeds, if it does.
    pub fn failure(&self) -> Option<String> {
        self.durability.refusing_writes()
    }

    /// Resumes after a failed append or sync, as a restart would: the store opens again
    /// from what is durable; the writer's state becomes the published one (only durable
    /// events, never the failed batch's) with whatever the log holds past it folded in and
    /// published; then the writer accepts changes again, in a new epoch, so that no batch
    /// staged before is synced. On an error nothing changed and it may be tried again.
    pub fn recover(&mut self) -> Result<(), LedgerError> {
        self.storage.reopen()?;
        let mut state = published_copy(&self.durability.published.read().unwrap_or_else(PoisonError::into_inner));
        let mut head = crate::ledger::head_at(&*self.storage, state.position)?;
        let mut durable = Vec::new();
        for stored in self.storage.events_from(state.position + 1) {
            let stored = stored?;
            durable.push(chain::open(&stored, head)?);
            head = ChainHead { position: stored.position, hash: stored.hash };
        }
        state.fold(&durable);
        self.durability.publish(&durable);
        self.durability.notify_publications();
        self.state = state;
        self.head = head;
        let mut health = self.durability.health();
        health.epoch += 1;
        health.failure = None;
        metrics::counter!(telemetry::STORE_RECOVERIES).increment(1);
        tracing::info!(
            position = head.position,
            recovered = durable.len(),
            "the store was reopened from what is durable; accepting changes again"
        );
        Ok(())
    }

    fn record(&mut self, batch: Vec<(Command, Provenance)>, epoch: u64) -> Result<Staged, LedgerError> {
        let count = batch.len();
        // Another node's events are folded under the same lock as this batch's append: no
        // one commits in between, so this batch is decided against the whole log.
        let storage = Arc::clone(&self.storage);
        let (foreign, session) = match storage.begin_append(self.head.position) {
            Ok(begun) => begun,
            Err(e) => {
                // Nothing was written and nothing folded: this batch is refused, the next
                // one tries again (no restart needed, unlike a failed append).
                metrics::counter!(telemetry::STORE_ERRORS, "operation" => "append").increment(1);
                tracing::warn!(error = %e, "cannot begin an append; the batch is refused");
                return Ok(Staged::refused(epoch, &format!("{e}; nothing was recorded, try again"), count));
            }
        };
        let foreign = self.catch_up(&foreign)?;
        let mut head = self.head;
        let mut recorded: Vec<RecordedEvent> = Vec::new();
        let mut commit = Commit::default();
        let mut touched = Touched::new();
        let mut outcomes = Vec::with_capacity(count);

        for (command, provenance) in batch {
            let now = self.clock.now().trunc_subsecs(6);
            let decision = match decide_guarded(&command, &self.state, now) {
                Ok(decision) => decision,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            let first = recorded.len();
            for event in decision.events {
                // The state already holds this batch's earlier events, so versions run on.
                let stream_version = self.state.stream_version(&event) + 1;
                let event = RecordedEvent {
                    position: head.position + 1,
                    stream: event.stream(),
                    stream_version,
                    recorded_at: now,
                    actor: decision.actor.clone(),
                    request_id: provenance.request_id.clone(),
                    client_request_id: provenance.client_request_id.clone(),
                    event,
                };
                let stored = chain::seal(&event, head)?;
                head = ChainHead { position: event.position, hash: stored.hash };
                self.state.apply(&event, &mut touched);
                commit.events.push(stored);
                recorded.push(event);
            }
            outcomes.push(Ok(first..recorded.len()));
        }

        if !recorded.is_empty() {
            let rows: BTreeSet<(ProjectionId, String)> = touched.into_iter().collect();
            commit.rows = rows
                .into_iter()
                .map(|(projection, key)| RowChange { projection, value: self.state.encode_row(projection, &key), key })
                .collect();
            commit.checkpoints = PROJECTIONS.iter().map(|p| (*p, head.position)).collect();
            let started = Instant::now();
            let appended = session.append(commit);
            metrics::histogram!(telemetry::APPEND_DURATION).record(started.elapsed().as_secs_f64());
            appended?;
            metrics::counter!(telemetry::EVENTS_APPENDED).increment(recorded.len() as u64);
            self.head = head;
        }
        Ok(Staged { epoch, foreign, events: recorded, outcomes })
    }

    /// Folds events other nodes committed after this writer's head into its state, checking
    /// that they continue its chain, and returns them decoded.
    fn catch_up(&mut self, foreign: &[StoredEvent]) -> Result<Vec<RecordedEvent>, LedgerError> {
        let mut events = Vec::with_capacity(foreign.len());
        for stored in foreign {
            let event = chain::open(stored, self.head)?;
            self.state.fold([&event]);
            self.head = ChainHead { position: stored.position, hash: stored.hash };
            events.push(event);
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::operator;
    use super::super::recovery::load_state;
    use super::super::rules::create_api_key::{CreateApiKey, NewApiKey, Requester, DEFAULT_MAX_KEYS_PER_SCOPE};
    use super::super::rules::directory::DirectoryFile;
    use super::super::token::TokenFormat;
    use super::*;
    use crate::ledger::memory::{Fault, FaultyDisk, MemoryStorage};

    fn create(name: &str) -> Command {
        Command::CreateApiKey(CreateApiKey {
            requester: Requester::Operator { organization: "Acme".into(), email: "owner@acme.test".into() },
            api_key_id: Uuid::new_v4(),
            service_account_id: Uuid::new_v4(),
            token_digest: blake3::hash(name.as_bytes()),
            attributes: NewApiKey {
                name: Some(name.into()),
                kind: Some("personal".into()),
                expires_at: Some((Utc::now() + chrono::Duration::days(1)).to_rfc3339()),
                ..NewApiKey::default()
            },
            max_keys_per_scope: DEFAULT_MAX_KEYS_PER_SCOPE,
        })
    }

    /// What the syncer and the follower both hand to `publish` (this node's batches, other
    /// nodes' events read from the store, overlapping or arriving ahead) is folded once each,
    /// in position order: the published state ends as a single writer's would.
    #[test]
    fn publishing_folds_each_event_once_in_order_and_stops_at_a_gap() {
        let source: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let mut writer = Writer::new(Arc::clone(&source), load_state(&*source).unwrap()).unwrap();
        let tokens = TokenFormat::new("rootly").unwrap();
        operator::initialize(&mut writer, &[DirectoryFile::single_owner("Acme", "owner@acme.test")], &tokens).unwrap();
        writer.execute(vec![(create("first"), "a".into()), (create("second"), "b".into())]);
        let events: Vec<RecordedEvent> = chain::Replay::new(source.events_from(1), ChainHead::genesis()).map(Result::unwrap).collect();
        assert!(events.len() > 4);

        let empty: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let follower = Writer::new(Arc::clone(&empty), State::default()).unwrap();
        let durability = follower.durability();
        assert_eq!(durability.publish(&events[2..]), 0, "a gap: nothing folded");
        assert_eq!(durability.publish(&events[..3]), 3);
        assert_eq!(durability.publish(&events[1..]), events.len() - 3, "the first two passed over");
        assert_eq!(durability.publish(&events), 0, "everything passed over");
        assert_eq!(*follower.published().read().unwrap(), *writer.published().read().unwrap());
    }

    #[test]
    fn a_decision_that_panics_answers_its_command_and_the_writer_goes_on() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let mut writer = Writer::new(Arc::clone(&storage), load_state(&*storage).unwrap()).unwrap();
        let tokens = TokenFormat::new("rootly").unwrap();
        operator::initialize(&mut writer, &[DirectoryFile::single_owner("Acme", "owner@acme.test")], &tokens).unwrap();
        let before = writer.head().position;

        let answers = writer.execute(vec![(create("first"), "a".into()), (Command::Panic, "b".into()), (create("second"), "c".into())]);
        assert!(matches!(answers[1], Err(CommandError::Panicked)), "{:?}", answers[1]);
        let recorded: Vec<String> = answers.iter().flatten().flatten().map(|e| e.request_id.clone()).collect();
        assert_eq!(recorded, ["a", "c"], "the commands around it were recorded, nothing of the panicking one");
        assert_eq!(writer.head().position, before + 2);

        let next = writer.execute(vec![(create("third"), "d".into())]);
        assert!(next[0].is_ok(), "the writer takes the next command: {:?}", next[0]);
        assert!(writer.published().read().unwrap().keys.iter().any(|k| k.name == "third"), "and publishes it");
    }

    fn writer_on_disk() -> (Arc<FaultyDisk>, Writer) {
        let disk = Arc::new(FaultyDisk::default());
        let mut writer = Writer::new(Arc::clone(&disk) as Arc<dyn Storage>, State::default()).unwrap();
        let tokens = TokenFormat::new("rootly").unwrap();
        operator::initialize(&mut writer, &[DirectoryFile::single_owner("Acme", "owner@acme.test")], &tokens).unwrap();
        (disk, writer)
    }

    /// The names of the keys readers see, sorted, but the owner's key `initialize` made.
    fn published_names(writer: &Writer) -> Vec<String> {
        let mut names: Vec<String> = writer.published().read().unwrap().keys.iter().map(|k| k.name.clone()).collect();
        names.retain(|name| name != "Initial owner key");
        names.sort();
        names
    }

    /// The log as durable, checked link by link from genesis: the state it folds to.
    fn durable_state(disk: &FaultyDisk) -> State {
        let mut state = State::default();
        for event in chain::Replay::new(disk.events_from(1), ChainHead::genesis()) {
            state.fold([&event.unwrap()]);
        }
        state
    }

    #[test]
    fn after_a_failed_sync_the_writer_refuses_until_the_store_reopens_then_resumes_from_what_is_durable() {
        let (disk, mut writer) = writer_on_disk();
        assert!(writer.execute(vec![(create("kept"), "a".into())])[0].is_ok());

        disk.fail(Fault::Everything);
        let failed = writer.execute(vec![(create("lost"), "b".into())]);
        assert!(matches!(failed[0], Err(CommandError::Unavailable(_))), "{:?}", failed[0]);
        assert!(writer.failure().is_some(), "the writer says it is failing");
        let refused = writer.execute(vec![(create("refused"), "c".into())]);
        assert!(matches!(refused[0], Err(CommandError::Unavailable(_))), "nothing is recorded while failing: {:?}", refused[0]);
        assert!(writer.recover().is_err(), "the store does not reopen while the disk fails");
        assert!(writer.failure().is_some());
        assert_eq!(published_names(&writer), ["kept"], "readers never saw the failed batch");

        disk.fail(Fault::None);
        writer.recover().unwrap();
        assert_eq!(writer.failure(), None);
        let again = writer.execute(vec![(create("lost"), "d".into())]);
        assert!(again[0].is_ok(), "the lost batch's name is free, the writer records again: {:?}", again[0]);
        assert_eq!(published_names(&writer), ["kept", "lost"]);
        assert_eq!(durable_state(&disk), *writer.published().read().unwrap(), "what readers see is exactly what is durable");
        assert_eq!(writer.state(), &durable_state(&disk), "and so is the writer's own state");
    }

    /// A sync that reports failure for data that reached the disk: the callers were told it
    /// failed, but after the reopen the writer and the readers hold what the log holds.
    #[test]
    fn a_batch_whose_failed_sync_reached_the_disk_is_folded_and_published_at_recovery() {
        let (disk, mut writer) = writer_on_disk();
        let staged = writer.stage(vec![(create("landed"), "a".into())]);
        disk.fail(Fault::SyncsAfterWriting);
        assert!(writer.durability().complete(vec![staged])[0][0].is_err());
        assert!(published_names(&writer).is_empty());
        disk.fail(Fault::None);
        writer.recover().unwrap();
        assert_eq!(published_names(&writer), ["landed"]);
        let taken = writer.execute(vec![(create("landed"), "b".into())]);
        assert!(matches!(taken[0], Err(CommandError::Rejected(_))), "the name is taken, as the log says: {:?}", taken[0]);
        assert_eq!(durable_state(&disk), *writer.published().read().unwrap());
    }

    /// Batches staged behind the one whose sync failed were appended to the failed store:
    /// they are never synced, not even once the store works again.
    #[test]
    fn batches_staged_before_a_recovery_are_answered_as_failed_and_never_published() {
        let (disk, mut writer) = writer_on_disk();
        let first = writer.stage(vec![(create("first"), "a".into())]);
        let second = writer.stage(vec![(create("second"), "b".into())]);
        disk.fail(Fault::Everything);
        let answers = writer.durability().complete(vec![first]);
        assert!(matches!(answers[0][0], Err(CommandError::Unavailable(_))));
        disk.fail(Fault::None);
        writer.recover().unwrap();
        let answers = writer.durability().complete(vec![second]);
        assert!(matches!(answers[0][0], Err(CommandError::Unavailable(_))), "staged before the reopen: {:?}", answers[0][0]);
        assert!(published_names(&writer).is_empty());
        assert!(writer.execute(vec![(create("second"), "c".into())])[0].is_ok());
        assert_eq!(published_names(&writer), ["second"]);
        assert_eq!(durable_state(&disk), *writer.published().read().unwrap());
    }
}
