//! The service: commands in, events out. One writer thread with group commit, token
//! authentication, and the read side the HTTP layer answers from.
//!
//! [`rules`] holds the pure decisions; [`writer`] records them; [`recovery`] loads the
//! projections at start; [`operator`] is what the offline CLI commands do.

pub mod operator;
pub mod recovery;
pub mod rules;
pub mod token;
pub mod writer;

use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;

use chrono::{SubsecRound, Utc};
use keyledger_projections::keys_view::ApiKey;
use keyledger_projections::{RecordedEvent, State};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use self::rules::caller::{self, Caller};
use self::rules::create_api_key::{CreateApiKey, NewApiKey, Requester};
use self::rules::visibility::can_see;
use self::token::{IssuedToken, TokenError, TokenFormat};
use self::writer::{Command, CommandError, Writer};

/// The most commands one group commit takes. Larger batches amortise the sync further but
/// make the first caller of a batch wait for the last one's decision.
pub const MAX_BATCH: usize = 512;

struct Job {
    command: Command,
    request_id: String,
    reply: oneshot::Sender<Result<Vec<RecordedEvent>, CommandError>>,
}

/// A created key and its token, which exists only here and in the response built from it.
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
}

/// The running service: shared by every request handler.
pub struct Service {
    state: Arc<RwLock<State>>,
    jobs: mpsc::Sender<Job>,
    tokens: TokenFormat,
}

/// The writer thread; joins once every [`Service`] handle is gone and the queue is drained.
pub struct WriterThread(JoinHandle<()>);

impl WriterThread {
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("the writer thread panicked");
        }
    }
}

fn run_writer(mut writer: Writer, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|job| ((job.command, job.request_id), job.reply)).unzip();
        for (reply, answer) in replies.into_iter().zip(writer.execute(commands)) {
            // A caller that went away (client disconnected) needs no answer; its command stands.
            let _ = reply.send(answer);
        }
    }
}

impl Service {
    /// Starts the writer thread over `writer` and returns the handle requests use.
    pub fn start(writer: Writer, tokens: TokenFormat) -> std::io::Result<(Service, WriterThread)> {
        let state = writer.published();
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        let thread = std::thread::Builder::new()
            .name("keyledger-writer".into())
            .spawn(move || run_writer(writer, queue))?;
        Ok((Service { state, jobs, tokens }, WriterThread(thread)))
    }

    /// Reads the published (durable) state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The caller a presented token stands for, or `None` (401) when its shape or checksum
    /// is wrong, it is unknown, expired, or its owner no longer exists.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let digest = self.tokens.digest_of(presented)?;
        let now = Utc::now();
        self.read(|state| {
            let key_id = state.tokens.key_for(&digest)?;
            let key = state.keys.get(key_id)?;
            // blake3::Hash compares in constant time.
            let stored = blake3::Hash::from_hex(&key.token_digest).ok()?;
            if stored != digest {
                return None;
            }
            caller::resolve(state, key_id, now)
        })
    }

    async fn execute(&self, command: Command, request_id: String) -> Result<Vec<RecordedEvent>, CommandError> {
        let (reply, answer) = oneshot::channel();
        let gone = || CommandError::Unavailable("the writer has stopped".into());
        self.jobs.send(Job { command, request_id, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub async fn create_api_key(
        &self,
        caller: &Caller,
        attributes: NewApiKey,
        request_id: String,
    ) -> Result<CreatedKey, ServiceError> {
        let token = self.tokens.mint()?;
        let api_key_id = Uuid::new_v4();
        let command = Command::CreateApiKey(CreateApiKey {
            requester: Requester::Key(caller.api_key_id),
            api_key_id,
            service_account_id: Uuid::new_v4(),
            token_digest: token.digest(),
            attributes,
        });
        self.execute(command, request_id).await?;
        let key = self
            .read(|state| state.keys.get(api_key_id).cloned())
            .ok_or_else(|| CommandError::Unavailable("the created key is missing from the keys view".into()))?;
        Ok(CreatedKey { key, token })
    }

    /// A key the caller may see, as of now.
    pub fn show_api_key(&self, caller: &Caller, id: Uuid) -> Option<ApiKey> {
        self.read(|state| {
            let key = state.keys.get(id)?;
            let org = state.directory.organization(caller.organization_id)?;
            can_see(caller, org, key).then(|| key.clone())
        })
    }

    /// Current time as the ledger records it (UTC, microseconds).
    pub fn now() -> chrono::DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
