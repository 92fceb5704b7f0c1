//! The service: commands in, events out. One writer thread with group commit, token
//! authentication, and the read side the HTTP layer answers from.
//!
//! [`rules`] holds the pure decisions; [`writer`] records them; [`recovery`] loads the
//! projections at start; [`operator`] is what the offline CLI commands do; [`last_use`]
//! keeps `last_used_at` outside the log.

pub mod clock;
pub mod directory;
pub mod follower;
pub mod last_use;
pub mod listing;
pub mod operator;
pub mod paging;
pub mod readiness;
pub mod rebuild;
pub mod recovery;
pub mod rules;
pub mod token;
pub mod writer;

use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use keyledger_projections::keys_view::ApiKey;
use keyledger_projections::{RecordedEvent, State};
use tokio::sync::{mpsc, oneshot, Notify};
use uuid::Uuid;

use self::clock::Clock;
pub use self::follower::Consistency;
use self::last_use::LastUses;
use self::readiness::{Readiness, StoreProbe};
use self::rules::caller::{self, Caller, Credential};
use self::rules::create_api_key::{CreateApiKey, NewApiKey, Requester, DEFAULT_MAX_KEYS_PER_SCOPE};
use self::rules::directory::DirectoryFile;
use self::rules::revoke_api_key::RevokeApiKey;
use self::rules::rotate_api_key::{RotateApiKey, Rotation};
use self::rules::update_api_key::{KeyChanges, UpdateApiKey};
use self::rules::visibility::can_see;
use self::token::{IssuedToken, TokenError, TokenFormat};
pub use self::writer::Provenance;
use self::writer::{Answer, Command, CommandError, Durability, Staged, Writer};
use crate::ledger::{LastUseStore, LedgerError};

/// The most commands one group commit takes. Larger batches amortise the sync further but
/// make the first caller of a batch wait for the last one's decision.
pub const MAX_BATCH: usize = 512;

/// How often a failing writer tries to reopen the store; also what a refused caller is told
/// to wait (`Retry-After`).
pub const RECOVERY_RETRY: Duration = Duration::from_secs(1);

/// How often a failing writer looks for commands to refuse between attempts.
const RECOVERY_TICK: Duration = Duration::from_millis(20);

struct Job {
    command: Command,
    provenance: Provenance,
    reply: oneshot::Sender<Answer>,
}

/// What an operator may tune about the rules the service applies.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// The most live keys one scope (a user's personal keys, a team's, an organization's)
    /// may hold.
    pub max_keys_per_scope: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { max_keys_per_scope: DEFAULT_MAX_KEYS_PER_SCOPE }
    }
}

/// A created or rotated key and its new token, which exists only here and in the response
/// built from it.
#[derive(Debug)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub token: IssuedToken,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The running service: shared by every request handler.
pub struct Service {
    state: Arc<RwLock<State>>,
    publications: Arc<Notify>,
    jobs: mpsc::Sender<Job>,
    tokens: TokenFormat,
    last_uses: LastUses,
    policy: Policy,
    clock: Arc<dyn Clock>,
    store_probe: StoreProbe,
    /// Wakes the follower (`None`: the store has no other writers to follow).
    follower: Option<std::sync::mpsc::Sender<follower::Wake>>,
    /// When the follower last read the log (`None`: no follower).
    follower_look: Option<follower::LastLook>,
    consistency: Consistency,
}

impl Drop for Service {
    /// The follower stops with the last handle on the service (the writer with its queue).
    fn drop(&mut self) {
        if let Some(follower) = &self.follower {
            let _ = follower.send(follower::Wake::Stop);
        }
    }
}

type Replies = Vec<oneshot::Sender<Answer>>;

/// The writer and syncer threads, and the recorder of last uses; they stop once every
/// [`Service`] handle is gone and their queues are drained (and the last uses stored).
pub struct WriterThread {
    writer: JoinHandle<()>,
    syncer: JoinHandle<()>,
    last_uses: JoinHandle<()>,
    follower: Option<JoinHandle<()>>,
}

impl WriterThread {
    pub fn join(self) {
        let follower = self.follower.map(|thread| ("follower", thread));
        for (name, thread) in [("writer", self.writer), ("syncer", self.syncer), ("last-use", self.last_uses)].into_iter().chain(follower) {
            if thread.join().is_err() {
                tracing::error!("the {name} thread panicked");
            }
        }
    }
}

/// Decides and appends batches while the syncer makes the previous ones durable: a batch
/// forms from whatever queued up during the last decision, and while the disk syncs, the
/// next one is already being decided. While the writer is failing, it tries to recover
/// every [`RECOVERY_RETRY`] and answers what comes meanwhile as unavailable.
fn run_writer(mut writer: Writer, mut jobs: mpsc::Receiver<Job>, staged: std::sync::mpsc::Sender<(Staged, Replies)>) {
    let mut next_recovery = Instant::now();
    loop {
        let first = if writer.failure().is_some() {
            if Instant::now() >= next_recovery {
                match writer.recover() {
                    Ok(()) => continue,
                    Err(e) => {
                        metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "reopen").increment(1);
                        tracing::warn!(error = %e, "cannot reopen the store yet; trying again");
                        next_recovery = Instant::now() + RECOVERY_RETRY;
                    }
                }
            }
            match jobs.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(RECOVERY_TICK);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match jobs.blocking_recv() {
                Some(job) => job,
                None => break,
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|job| ((job.command, job.provenance), job.reply)).unzip();
        if staged.send((writer.stage(commands), replies)).is_err() {
            break;
        }
    }
}

/// Syncs whatever the writer appended since the last sync, once, then answers it all.
fn run_syncer(durability: Durability, staged: std::sync::mpsc::Receiver<(Staged, Replies)>) {
    while let Ok(first) = staged.recv() {
        let (batches, replies): (Vec<_>, Vec<_>) = std::iter::once(first).chain(staged.try_iter()).unzip();
        for (replies, answers) in replies.into_iter().zip(durability.complete(batches)) {
            for (reply, answer) in replies.into_iter().zip(answers) {
                // A caller that went away (client disconnected) needs no answer; its command stands.
                let _ = reply.send(answer);
            }
        }
    }
}

impl Service {
    /// Starts the writer thread over `writer` and the recorder of last uses over
    /// `last_use_store`, and returns the handle requests use.
    pub fn start(
        mut writer: Writer,
        tokens: TokenFormat,
        last_use_store: Arc<dyn LastUseStore>,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Result<(Service, WriterThread), ServiceError> {
        writer.set_clock(Arc::clone(&clock));
        let (last_uses, last_use_recorder) = LastUses::start(last_use_store)?;
        let state = writer.published();
        let publications = writer.publications();
        let durability = writer.durability();
        let store_probe = StoreProbe::new(durability.clone());
        let (follower, follower_thread, follower_look) = match follower::start(durability.clone())? {
            Some(started) => (Some(started.wakes), Some(started.thread), Some(started.last_look)),
            None => (None, None, None),
        };
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        let (to_syncer, from_writer) = std::sync::mpsc::channel();
        let syncer = std::thread::Builder::new().name("keyledger-sync".into()).spawn(move || run_syncer(durability, from_writer))?;
        let writer = std::thread::Builder::new().name("keyledger-writer".into()).spawn(move || run_writer(writer, queue, to_syncer))?;
        let service = Service {
            state,
            publications,
            jobs,
            tokens,
            last_uses,
            policy,
            clock,
            store_probe,
            follower,
            follower_look,
            consistency: Consistency::default(),
        };
        Ok((service, WriterThread { writer, syncer, last_uses: last_use_recorder, follower: follower_thread }))
    }

    /// How fresh the state must be that requests are authenticated against (eventual unless set).
    pub fn set_consistency(&mut self, consistency: Consistency) {
        self.consistency = consistency;
    }

    /// In strict mode on a shared log, returns once everything committed (by any node)
    /// before the call is published here; otherwise at once. Fails when the store cannot
    /// tell: a strict node does not answer from a state it cannot confirm.
    pub async fn catch_up_if_strict(&self) -> Result<(), ServiceError> {
        let (Consistency::Strict, Some(follower)) = (self.consistency, &self.follower) else {
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        let gone = || CommandError::Unavailable("the follower has stopped".into());
        follower.send(follower::Wake::Fresh(reply)).map_err(|_| gone())?;
        answer
            .await
            .map_err(|_| gone())?
            .map_err(|reason| CommandError::Unavailable(format!("cannot read what other nodes committed: {reason}")).into())
    }

    /// Whether this node should be sent requests (see [`readiness`]).
    pub async fn readiness(&self) -> Readiness {
        Readiness {
            writer: self.store_probe.writer(!self.jobs.is_closed()),
            store: self.store_probe.store().await,
            follower: readiness::follower_check(self.follower_look.as_ref().map(follower::LastLook::elapsed)),
        }
    }

    /// Reads the published (durable) state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The caller a presented token stands for, or `None` (401) when its shape or checksum
    /// is wrong, it is unknown, expired, replaced by a rotation (after its grace period), or
    /// its owner no longer exists. A superseded secret authenticates (to read); the writer
    /// refuses it any change.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let token_digest = self.tokens.digest_of(presented)?;
        let now = self.clock.now();
        self.read(|state| {
            let api_key_id = state.tokens.key_for(&token_digest)?;
            caller::authenticate(state, Credential { api_key_id, token_digest }, now)
        })
    }

    /// Notes that the key `api_key_id` authenticated a request just now (see [`last_use`]:
    /// never waits, at most one store write a minute per key).
    pub fn note_use(&self, api_key_id: Uuid) {
        self.last_uses.note(api_key_id, self.clock.now().trunc_subsecs(6));
    }

    /// When a key last authenticated a request, if ever.
    pub fn last_used_at(&self, api_key_id: Uuid) -> Option<DateTime<Utc>> {
        self.last_uses.get(api_key_id)
    }

    async fn execute(&self, command: Command, provenance: Provenance) -> Result<Vec<RecordedEvent>, CommandError> {
        let (reply, answer) = oneshot::channel();
        let gone = || CommandError::Unavailable("the writer has stopped".into());
        self.jobs.send(Job { command, provenance, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub async fn create_api_key(&self, caller: &Caller, attributes: NewApiKey, provenance: Provenance) -> Result<CreatedKey, ServiceError> {
        let token = self.tokens.mint()?;
        let api_key_id = Uuid::new_v4();
        let command = Command::CreateApiKey(CreateApiKey {
            requester: Requester::Key(caller.credential()),
            api_key_id,
            service_account_id: Uuid::new_v4(),
            token_digest: token.digest(),
            attributes,
            max_keys_per_scope: self.policy.max_keys_per_scope,
        });
        self.execute(command, provenance).await?;
        Ok(CreatedKey { key: self.written_key(api_key_id, "created")?, token })
    }

    /// Key `id` as readers see it once a command that wrote it has been answered (the
    /// published state has it by then; its absence is a broken invariant, not a user error).
    fn written_key(&self, id: Uuid, written: &str) -> Result<ApiKey, CommandError> {
        self.read(|state| state.keys.get(id).cloned())
            .ok_or_else(|| CommandError::Unavailable(format!("the {written} key is missing from the keys view")))
    }

    /// Updates a key's name, description or expiry and returns it as it now is.
    pub async fn update_api_key(
        &self,
        caller: &Caller,
        id: Uuid,
        changes: KeyChanges,
        provenance: Provenance,
    ) -> Result<ApiKey, ServiceError> {
        let command = Command::UpdateApiKey(UpdateApiKey { caller: caller.credential(), api_key_id: id, changes });
        self.execute(command, provenance).await?;
        self.show_api_key(caller, id, ApiKey::clone).ok_or_else(|| CommandError::Rejected(rules::Rejection::NotFound).into())
    }

    /// Revokes a key and returns it as it was just before. Its token is refused from the
    /// moment this returns (the published state drops it before the caller is answered).
    pub async fn revoke_api_key(&self, caller: &Caller, id: Uuid, provenance: Provenance) -> Result<ApiKey, ServiceError> {
        // A key the caller cannot see in the durable state is not found, without asking the
        // writer; the writer still decides (and may refuse) for the keys it can.
        let before = self.show_api_key(caller, id, ApiKey::clone).ok_or(CommandError::Rejected(rules::Rejection::NotFound))?;
        let command = Command::RevokeApiKey(RevokeApiKey { caller: caller.credential(), api_key_id: id });
        self.execute(command, provenance).await?;
        Ok(before)
    }

    /// Gives the caller's own key a new secret and returns the key with it. The previous
    /// token works until the key's `grace_period_ends_at` (if any), then never again.
    pub async fn rotate_api_key(
        &self,
        caller: &Caller,
        id: Uuid,
        rotation: Rotation,
        provenance: Provenance,
    ) -> Result<CreatedKey, ServiceError> {
        let token = self.tokens.mint()?;
        let command =
            Command::RotateApiKey(RotateApiKey { caller: caller.credential(), api_key_id: id, token_digest: token.digest(), rotation });
        self.execute(command, provenance).await?;
        Ok(CreatedKey { key: self.written_key(id, "rotated")?, token })
    }

    /// Records the end of each grace period when it comes, whether or not anyone presents
    /// the previous token, until the writer stops. Runs for the life of the server.
    pub async fn run_expiry_schedule(&self) {
        /// How long to wait before trying again after the writer refused.
        const RETRY: chrono::Duration = chrono::Duration::minutes(1);
        loop {
            // Registered before the state is read, so no publication in between is missed.
            let published = self.publications.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let next = self.read(|state| state.expiry_schedule.next_grace_period_end());
            let now = self.clock.now();
            let until = match next {
                None => None,
                Some(at) if at > now => Some(at),
                Some(_) => match self.execute(Command::EndGracePeriods, Provenance::from("expiry-schedule")).await {
                    Ok(events) if !events.is_empty() => {
                        for event in &events {
                            tracing::info!(stream = %event.stream, "grace period ended: the key's previous secret no longer authenticates");
                        }
                        continue;
                    }
                    // Due, yet nothing to end: wait for the state to change rather than spin.
                    Ok(_) => Some(now + RETRY),
                    Err(CommandError::Unavailable(reason)) if self.jobs.is_closed() => {
                        tracing::info!(reason, "expiry schedule stopped");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot record the end of a grace period; retrying in a minute");
                        Some(now + RETRY)
                    }
                },
            };
            match until {
                Some(at) => {
                    tokio::select! {
                        _ = self.clock.sleep_until(at) => {},
                        _ = &mut published => {},
                    }
                }
                None => published.await,
            }
        }
    }

    /// Applies a directory file (every organization in it, as one plan) through the writer,
    /// in turn with requests, so a change takes effect for the very next request; returns
    /// how many events it recorded (0: the ledger already matched the file). An inconsistent
    /// file records nothing.
    pub async fn apply_directory(&self, files: Vec<DirectoryFile>, provenance: Provenance) -> Result<usize, ServiceError> {
        Ok(self.execute(Command::ApplyDirectory(files), provenance).await?.len())
    }

    /// A page of the keys the caller may see.
    pub fn list_api_keys<R>(
        &self,
        caller: &Caller,
        query: &listing::ListQuery,
        render: impl FnOnce(&paging::Page<listing::Listed>) -> R,
    ) -> R {
        let now = self.clock.now();
        // Only the gathering holds the state's lock; the walk through the candidates, the
        // sort and the rendering do not.
        let gathered = self.read(|state| listing::gather(state, caller, query));
        render(&listing::page(gathered, query, now, &|id| self.last_uses.get(id)))
    }

    /// `render`s a key the caller may see, as of now; `None` for anything else. The key is
    /// rendered after the state's lock is let go (it is shared, not copied).
    pub fn show_api_key<R>(&self, caller: &Caller, id: Uuid, render: impl FnOnce(&ApiKey) -> R) -> Option<R> {
        let key = self.read(|state| {
            let key = state.keys.shared(id)?;
            let org = state.directory.organization(caller.organization_id)?;
            can_see(caller, org, key).then(|| Arc::clone(key))
        })?;
        Some(render(&key))
    }
}
