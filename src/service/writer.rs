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
//! A failed append or sync poisons the writer: whether the disk holds the batch is then
//! unknown, and only a restart, which recovers from what is on disk, can tell.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::Notify;
use keyledger_projections::state::{Touched, PROJECTIONS};
use keyledger_projections::{ProjectionId, RecordedEvent, State};
use uuid::Uuid;

use super::rules::directory::{self, DirectoryError, DirectoryFile};
use super::rules::{create_api_key, grace_period, revoke_api_key, rotate_api_key, update_api_key, Decision, Rejection};
use crate::ledger::{chain, ChainHead, Commit, LedgerError, RowChange, Storage};

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
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// Nothing of the command was recorded; the ledger needs a restart to go on.
    #[error("the ledger cannot record changes: {0}")]
    Unavailable(String),
}

/// What a command got: the events it recorded, or why not.
pub type Answer = Result<Vec<RecordedEvent>, CommandError>;

pub struct Writer {
    storage: Arc<dyn Storage>,
    state: State,
    head: ChainHead,
    durability: Durability,
}

/// A batch appended to the store but not yet known to be durable.
pub struct Staged {
    events: Vec<RecordedEvent>,
    outcomes: Vec<Result<Range<usize>, CommandError>>,
}

/// The syncing stage: makes appended batches durable, publishes them, answers them.
#[derive(Clone)]
pub struct Durability {
    storage: Arc<dyn Storage>,
    published: Arc<RwLock<State>>,
    /// Woken each time events are published, for whoever waits on the state to change
    /// (the expiry schedule).
    publications: Arc<Notify>,
    poisoned: Arc<Mutex<Option<String>>>,
}

impl Durability {
    fn poisoned(&self) -> Option<String> {
        self.poisoned.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn poison(&self, e: &LedgerError) -> String {
        let reason = format!("{e}; restart keyledger to recover from what is on disk");
        tracing::error!(error = %e, "the ledger could not record a batch; refusing further changes until restart");
        *self.poisoned.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason.clone());
        reason
    }

    /// Syncs once for all of `staged` (in the order they were staged), then publishes their
    /// events and returns each batch's answers.
    pub fn complete(&self, staged: Vec<Staged>) -> Vec<Vec<Answer>> {
        let failure = if staged.iter().all(|s| s.events.is_empty()) {
            None
        } else {
            self.storage.sync().err().map(|e| self.poison(&e))
        };
        if failure.is_none() {
            let mut published = self.published.write().unwrap_or_else(PoisonError::into_inner);
            for batch in &staged {
                published.fold(&batch.events);
            }
            drop(published);
            self.publications.notify_waiters();
        }
        staged
            .into_iter()
            .map(|batch| {
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
    }
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
        let head = match storage.last_event()? {
            Some(last) => ChainHead { position: last.position, hash: last.hash },
            None => ChainHead::genesis(),
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
            poisoned: Arc::new(Mutex::new(None)),
        };
        Ok(Writer { storage, state, head, durability })
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

    pub fn head(&self) -> ChainHead {
        self.head
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Decides and records a batch of (command, request id); one answer per command, in
    /// order. Returns only when every recorded event is durable.
    pub fn execute(&mut self, batch: Vec<(Command, String)>) -> Vec<Answer> {
        let staged = self.stage(batch);
        self.durability.complete(vec![staged]).pop().unwrap_or_default()
    }

    /// Decides a batch and appends it, without waiting for it to be durable.
    pub fn stage(&mut self, batch: Vec<(Command, String)>) -> Staged {
        let unavailable = |reason: &str, count: usize| Staged {
            events: Vec::new(),
            outcomes: (0..count).map(|_| Err(CommandError::Unavailable(reason.to_owned()))).collect(),
        };
        if let Some(reason) = self.durability.poisoned() {
            return unavailable(&reason, batch.len());
        }
        let count = batch.len();
        match self.record(batch) {
            Ok(staged) => staged,
            Err(e) => unavailable(&self.durability.poison(&e), count),
        }
    }

    fn record(&mut self, batch: Vec<(Command, String)>) -> Result<Staged, LedgerError> {
        let count = batch.len();
        let mut head = self.head;
        let mut recorded: Vec<RecordedEvent> = Vec::new();
        let mut commit = Commit::default();
        let mut touched = Touched::new();
        let mut outcomes = Vec::with_capacity(count);

        for (command, request_id) in batch {
            let now = Utc::now().trunc_subsecs(6);
            let decision = match decide(&command, &self.state, now) {
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
                    request_id: request_id.clone(),
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
                .map(|(projection, key)| RowChange {
                    projection,
                    value: self.state.encode_row(projection, &key),
                    key,
                })
                .collect();
            commit.checkpoints = PROJECTIONS.iter().map(|p| (*p, head.position)).collect();
            self.storage.append(commit)?;
            self.head = head;
        }
        Ok(Staged { events: recorded, outcomes })
    }
}
