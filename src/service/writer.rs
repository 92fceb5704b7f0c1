//! The single writer: decides commands in order, appends them as one batch, syncs once.
//!
//! The writer keeps its own copy of the state and folds each decided event into it at
//! once, so that the next command of the same batch sees it (two creates of one name in
//! one batch: the second is refused). Readers see a second copy, the published state,
//! which only receives events after they are durable: nothing is visible, and no caller
//! is answered, before its commit has been synced. A failed commit poisons the writer:
//! whether the disk holds the batch is then unknown, and only a restart, which recovers
//! from what is on disk, can tell.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, SubsecRound, Utc};
use keyledger_projections::state::{Touched, PROJECTIONS};
use keyledger_projections::{RecordedEvent, State};
use uuid::Uuid;

use super::rules::directory::{self, DirectoryError, DirectoryFile};
use super::rules::{create_api_key, Decision, Rejection};
use crate::ledger::{chain, ChainHead, Commit, LedgerError, Storage};

/// Something the writer can be asked to do.
#[derive(Clone, Debug)]
pub enum Command {
    CreateApiKey(create_api_key::CreateApiKey),
    ApplyDirectory(DirectoryFile),
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
    published: Arc<RwLock<State>>,
    head: ChainHead,
    poisoned: Option<String>,
}

fn decide(command: &Command, state: &State, now: DateTime<Utc>) -> Result<Decision, CommandError> {
    match command {
        Command::CreateApiKey(cmd) => Ok(create_api_key::decide(cmd, state, now)?),
        Command::ApplyDirectory(file) => {
            let events = directory::plan(file, state, &mut Uuid::new_v4)?;
            Ok(Decision { actor: keyledger_projections::Actor::Operator, events })
        }
    }
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
        let published = Arc::new(RwLock::new(state.clone()));
        Ok(Writer { storage, state, published, head, poisoned: None })
    }

    /// The state readers answer from: only ever durable events.
    pub fn published(&self) -> Arc<RwLock<State>> {
        Arc::clone(&self.published)
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
        if let Some(reason) = &self.poisoned {
            return batch.iter().map(|_| Err(CommandError::Unavailable(reason.clone()))).collect();
        }
        match self.record(batch) {
            Ok(answers) => answers,
            Err((count, e)) => {
                let reason = format!("{e}; restart keyledger to recover from what is on disk");
                tracing::error!(error = %e, "commit failed; refusing further changes until restart");
                self.poisoned = Some(reason.clone());
                (0..count).map(|_| Err(CommandError::Unavailable(reason.clone()))).collect()
            }
        }
    }

    /// Records a batch; on a storage failure, says how many commands it held.
    fn record(&mut self, batch: Vec<(Command, String)>) -> Result<Vec<Answer>, (usize, LedgerError)> {
        let count = batch.len();
        let mut head = self.head;
        let mut recorded: Vec<RecordedEvent> = Vec::new();
        let mut commit = Commit::default();
        let mut touched = Touched::new();
        let mut stream_versions: HashMap<String, u64> = HashMap::new();
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
                let stream = event.stream();
                let version = match stream_versions.get(&stream) {
                    Some(v) => *v,
                    None => self.storage.stream_version(&stream).map_err(|e| (count, e))?,
                } + 1;
                stream_versions.insert(stream.clone(), version);
                let event = RecordedEvent {
                    position: head.position + 1,
                    stream,
                    stream_version: version,
                    recorded_at: now,
                    actor: decision.actor.clone(),
                    request_id: request_id.clone(),
                    event,
                };
                let stored = chain::seal(&event, head);
                head = ChainHead { position: event.position, hash: stored.hash };
                self.state.apply(&event, &mut touched);
                commit.events.push(stored);
                recorded.push(event);
            }
            outcomes.push(Ok(first..recorded.len()));
        }

        if !recorded.is_empty() {
            let rows: BTreeSet<(&'static str, String)> = touched.into_iter().collect();
            commit.rows = rows
                .into_iter()
                .map(|(projection, key)| {
                    let value = self.state.encode_row(projection, &key);
                    (projection, key, value)
                })
                .collect();
            commit.checkpoints = PROJECTIONS.iter().map(|p| (*p, head.position)).collect();
            commit.streams = stream_versions.into_iter().collect();
            self.storage.commit(commit).map_err(|e| (count, e))?;
            self.head = head;
            self.published.write().unwrap_or_else(PoisonError::into_inner).fold(&recorded);
        }
        Ok(outcomes.into_iter().map(|o| o.map(|range| recorded[range].to_vec())).collect())
    }
}
