//! Concurrent load: clients creating keys until told to stop, and what they saw acknowledged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;

use super::http::{create, personal, show, try_create, Endpoint};
use super::jsonapi::assert_taken;

/// A create the server acknowledged with 201.
#[derive(Clone, Debug)]
pub struct Acked {
    pub name: String,
    pub id: String,
    pub token: String,
}

impl Acked {
    /// From a 201 document; panics when it lacks the id or the token.
    pub fn from_created(name: &str, body: &Value) -> Acked {
        let id = body["data"]["id"].as_str().unwrap_or_else(|| panic!("201 without data.id: {body}")).to_owned();
        let token = body["data"]["attributes"]["token"].as_str().unwrap_or_else(|| panic!("201 without a token: {body}")).to_owned();
        Acked { name: name.to_owned(), id, token }
    }
}

/// A create answered 503 (only [`Load::start_through_outages`] goes on after one): the
/// name, the `Retry-After` header as sent, and the body.
#[derive(Clone, Debug)]
pub struct Unavailable {
    pub name: String,
    pub retry_after: Option<String>,
    pub body: Value,
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    pub acked: Vec<Acked>,
    /// Names whose create got no complete answer: the server went away under it.
    pub unanswered: Vec<String>,
    /// Complete answers other than 201 (and, through outages, 503): (name, status, body).
    /// None are expected.
    pub refused: Vec<(String, u16, Value)>,
    /// Creates answered 503 by a load that goes on through outages; each may or may not have
    /// been recorded.
    pub unavailable: Vec<Unavailable>,
}

/// `clients` tasks, each creating personal keys named `<prefix>-<client>-<n>` one after
/// another, until told to stop or until a request gets no answer (or, but for a 503 through
/// outages, an answer other than 201).
pub struct Load {
    acks: Arc<AtomicUsize>,
    unavailable: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<LoadOutcome>,
}

/// How long a client through outages waits after a 503 without a usable `Retry-After`, and
/// the most it waits whatever the header says: clients back off, but a test's outage
/// windows are short.
const OUTAGE_PAUSE: Duration = Duration::from_millis(50);
const OUTAGE_PAUSE_MAX: Duration = Duration::from_secs(1);

impl Load {
    pub fn start(at: &(impl Endpoint + ?Sized), token: &str, prefix: &str, clients: usize) -> Load {
        Load::spawn(at, token, prefix, clients, false)
    }

    /// As [`Load::start`], but a client answered 503 notes it, waits as `Retry-After` says
    /// (at most a second) and goes on with its next name: writers through a database outage.
    pub fn start_through_outages(at: &(impl Endpoint + ?Sized), token: &str, prefix: &str, clients: usize) -> Load {
        Load::spawn(at, token, prefix, clients, true)
    }

    fn spawn(at: &(impl Endpoint + ?Sized), token: &str, prefix: &str, clients: usize, through_outages: bool) -> Load {
        let acks = Arc::new(AtomicUsize::new(0));
        let unavailable = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for client in 0..clients {
            let (base, token, prefix) = (at.base().to_owned(), token.to_owned(), prefix.to_owned());
            let (acks, unavailables, stop) = (Arc::clone(&acks), Arc::clone(&unavailable), Arc::clone(&stop));
            tasks.spawn(async move {
                let mut outcome = LoadOutcome::default();
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("{prefix}-{client}-{n}");
                    match try_create(&base, &token, personal(&name)).await {
                        Ok(resp) if resp.status == 201 => {
                            outcome.acked.push(Acked::from_created(&name, &resp.json));
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(resp) if resp.status == 503 && through_outages => {
                            let retry_after = resp.headers.get("retry-after").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                            let pause = retry_after
                                .as_deref()
                                .and_then(|v| v.parse::<u64>().ok())
                                .map_or(OUTAGE_PAUSE, |seconds| Duration::from_secs(seconds).min(OUTAGE_PAUSE_MAX));
                            outcome.unavailable.push(Unavailable { name, retry_after, body: resp.json });
                            unavailables.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(pause).await;
                        }
                        Ok(resp) => {
                            outcome.refused.push((name, resp.status, resp.json));
                            break;
                        }
                        Err(_) => {
                            outcome.unanswered.push(name);
                            break;
                        }
                    }
                }
                outcome
            });
        }
        Load { acks, unavailable, stop, tasks }
    }

    pub fn acks(&self) -> usize {
        self.acks.load(Ordering::SeqCst)
    }

    /// How many creates were answered 503 so far (through outages).
    pub fn unavailable(&self) -> usize {
        self.unavailable.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` creates were answered 503; panics after `within`.
    pub async fn wait_for_unavailable(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.unavailable() < n {
            assert!(Instant::now() < deadline, "only {} of {n} creates answered 503 within {within:?}", self.unavailable());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until at least `n` creates were acknowledged; panics after `within`.
    pub async fn wait_for_acks(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acks() < n {
            assert!(Instant::now() < deadline, "only {} of {n} creates acknowledged within {within:?}", self.acks());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Tells the clients to stop and collects what they saw.
    pub async fn finish(mut self) -> LoadOutcome {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = LoadOutcome::default();
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = joined.expect("load client panicked");
            all.acked.extend(outcome.acked);
            all.unanswered.extend(outcome.unanswered);
            all.refused.extend(outcome.refused);
            all.unavailable.extend(outcome.unavailable);
        }
        all
    }
}

/// Checks every acknowledged key against a (restarted) server, 16 at a time: shown by id to
/// `viewer` with the same name, its own token authenticates (it may always see itself), and
/// its name is still taken.
pub async fn assert_acked_keys_intact(at: &(impl Endpoint + ?Sized), viewer: &str, acked: &[Acked], context: &str) {
    let mut tasks = JoinSet::new();
    for chunk in acked.chunks(acked.len().div_ceil(16).max(1)) {
        let (base, viewer, chunk, context) = (at.base().to_owned(), viewer.to_owned(), chunk.to_vec(), context.to_owned());
        tasks.spawn(async move {
            for key in chunk {
                let shown = show(&base, &viewer, &key.id).await;
                assert_eq!(shown.status, 200, "{context}: acknowledged key {} ({}) is gone: {}", key.name, key.id, shown.text);
                assert_eq!(shown.json["data"]["attributes"]["name"], key.name.as_str(), "{context}: {}", shown.text);
                let itself = show(&base, &key.token, &key.id).await;
                assert_eq!(itself.status, 200, "{context}: the token of acknowledged key {} no longer works: {}", key.name, itself.text);
                let again = create(&base, &viewer, personal(&key.name)).await;
                assert_taken(again.status, &again.json, &format!("{context}: re-creating acknowledged name {}", key.name));
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("check task panicked");
    }
}
