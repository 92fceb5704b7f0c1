//! The follower: how a node over a shared log (PostgreSQL) learns of what other nodes
//! committed, and folds it into the state its readers answer from.
//!
//! Two threads. The listener waits on the store's announcements of appends (`LISTEN`), and
//! after each (and after every reconnect, when announcements may have been missed) wakes the
//! follower. The follower, woken or every [`POLL`] without being woken, reads the head; if it
//! is past the published position it reads the events after that position, checks that
//! they continue the chain, and publishes them through [`Durability::publish`], the one
//! place the published state advances, strictly by position (the syncer publishes this
//! node's own batches through it too, so an event is never folded twice nor skipped).
//!
//! The writer's own state is not touched here: the writer folds what other nodes committed
//! under the append lock, right before it decides its next batch (see
//! [`crate::ledger::Storage::begin_append`]). Readers may thus be behind by up to a
//! notification's delivery (or a poll, when notifications are lost); a strict node asks the
//! follower to catch up before it authenticates a request ([`Consistency::Strict`]).
//!
//! The lag gauges are as of the follower's last look, at most [`POLL`] ago: the events it
//! found unfolded and the age of the oldest of them; while the store cannot be read, the
//! seconds since the last successful look (an upper bound of how stale the node may be).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use keyledger_projections::RecordedEvent;
use tokio::sync::oneshot;

use super::writer::Durability;
use crate::ledger::{chain, ChainHead, LedgerError, Storage};
use crate::telemetry;

/// How often the follower reads the head without being told of an append: the bound on
/// staleness when notifications are lost.
pub const POLL: Duration = Duration::from_secs(1);

/// How long the listener waits before listening again after losing its connection.
const RECONNECT: Duration = Duration::from_secs(1);

/// Events published per fold while catching up, so that a node far behind neither holds
/// its whole backlog in memory nor keeps readers waiting on one long fold.
const EVENTS_PER_FOLD: usize = 1000;

/// How fresh the state a node authenticates against must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// From memory, as the follower last caught up: at most a notification's delivery
    /// behind (or [`POLL`] when notifications are lost).
    #[default]
    Eventual,
    /// Before each authentication, the head is read and anything not yet folded is folded:
    /// a revoke on any node is refused on every node from the next request on. Costs a
    /// query per request, and the database down means 503 instead of stale answers. On a
    /// store without other writers (sled) there is nothing to read: the same as eventual.
    Strict,
}

/// Why the follower is woken.
pub(super) enum Wake {
    /// Something may have been appended (an announcement, or a reconnect after which some
    /// may have been missed).
    Appended,
    /// A request waits for everything committed so far to be published.
    Fresh(oneshot::Sender<Result<(), String>>),
    /// The service is gone.
    Stop,
}

/// The running follower: wake it through `wakes`; join `thread` after sending [`Wake::Stop`].
pub(super) struct Follower {
    pub wakes: Sender<Wake>,
    pub thread: JoinHandle<()>,
    pub last_look: LastLook,
}

/// When the follower last read the log successfully, for readiness.
#[derive(Clone)]
pub(super) struct LastLook(Arc<std::sync::Mutex<Instant>>);

impl LastLook {
    fn new() -> Self {
        LastLook(Arc::new(std::sync::Mutex::new(Instant::now())))
    }

    fn mark(&self) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// How long ago the follower last read the log.
    pub(super) fn elapsed(&self) -> Duration {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed()
    }
}

/// Starts the follower and its listener, if the store is shared (`None` for sled).
pub(super) fn start(durability: Durability) -> std::io::Result<Option<Follower>> {
    if durability.storage().shared().is_none() {
        return Ok(None);
    }
    let (wakes, woken) = mpsc::channel();
    let stopped = Arc::new(AtomicBool::new(false));
    let storage = Arc::clone(durability.storage());
    let (to_follower, listener_stopped) = (wakes.clone(), Arc::clone(&stopped));
    // Not joined: it notices the follower is gone within a wait and ends by itself.
    std::thread::Builder::new().name("keyledger-listen".into()).spawn(move || listen(&*storage, &to_follower, &listener_stopped))?;
    let last_look = LastLook::new();
    let read_at = last_look.clone();
    let thread = std::thread::Builder::new().name("keyledger-follow".into()).spawn(move || {
        follow(&durability, &woken, &read_at);
        stopped.store(true, Ordering::Release);
    })?;
    Ok(Some(Follower { wakes, thread, last_look }))
}

/// Wakes the follower on each announced append, and after each (re)connect.
fn listen(storage: &dyn Storage, follower: &Sender<Wake>, stopped: &AtomicBool) {
    let Some(shared) = storage.shared() else {
        return;
    };
    let mut listener = None;
    let mut failing = false;
    while !stopped.load(Ordering::Acquire) {
        let Some(listening) = listener.as_mut() else {
            match shared.listen() {
                Ok(listening) => {
                    if failing {
                        tracing::info!("listening for other nodes' appends again");
                        failing = false;
                    }
                    listener = Some(listening);
                    // Whatever was announced while not listening is read now.
                    if follower.send(Wake::Appended).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot listen for other nodes' appends; the follower polls every second meanwhile");
                        failing = true;
                    }
                    std::thread::sleep(RECONNECT);
                }
            }
            continue;
        };
        match listening.wait(POLL) {
            Ok(true) => {
                if follower.send(Wake::Appended).is_err() {
                    return;
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "lost the connection that listens for other nodes' appends; reconnecting");
                failing = true;
                listener = None;
            }
        }
    }
}

/// Catches up on each wake and every [`POLL`], until told to stop.
fn follow(durability: &Durability, woken: &Receiver<Wake>, read_at: &LastLook) {
    let mut failing = false;
    loop {
        let first = match woken.recv_timeout(POLL) {
            Ok(wake) => Some(wake),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Every wake queued by now is served by one look: each was sent before the head is read.
        let mut waiting = Vec::new();
        let mut stopping = false;
        for wake in first.into_iter().chain(woken.try_iter()) {
            match wake {
                Wake::Appended => {}
                Wake::Fresh(reply) => waiting.push(reply),
                Wake::Stop => stopping = true,
            }
        }
        if stopping {
            return;
        }
        let looked = catch_up(durability);
        match &looked {
            Ok(()) => {
                read_at.mark();
                if failing {
                    tracing::info!("following other nodes' appends again");
                    failing = false;
                }
            }
            Err(e) => {
                metrics::gauge!(telemetry::FOLLOWER_LAG_SECONDS).set(read_at.elapsed().as_secs_f64());
                if !failing {
                    tracing::warn!(error = %e, "cannot read other nodes' appends; readers answer from what was folded until the store is back");
                    failing = true;
                }
            }
        }
        for reply in waiting {
            // A request that went away needs no answer.
            let _ = reply.send(looked.as_ref().map(drop).map_err(ToString::to_string));
        }
    }
}

/// Reads the head and publishes every event past the published position.
fn catch_up(durability: &Durability) -> Result<(), LedgerError> {
    let storage = durability.storage();
    let Some(shared) = storage.shared() else {
        return Ok(());
    };
    let head = shared.head()?;
    let from = durability.published_position();
    if head <= from {
        metrics::gauge!(telemetry::FOLLOWER_LAG_EVENTS).set(0.0);
        metrics::gauge!(telemetry::FOLLOWER_LAG_SECONDS).set(0.0);
        return Ok(());
    }
    metrics::gauge!(telemetry::FOLLOWER_LAG_EVENTS).set((head - from) as f64);
    // From the last published event itself: its hash is where the chain check starts.
    let mut previous = ChainHead::genesis();
    let mut events: Vec<RecordedEvent> = Vec::new();
    let mut oldest_seen = false;
    for stored in storage.events_from(from.max(1)) {
        let stored = stored?;
        if from > 0 && stored.position == from {
            previous = ChainHead { position: from, hash: stored.hash };
            continue;
        }
        let event = chain::open(&stored, previous)?;
        previous = ChainHead { position: stored.position, hash: stored.hash };
        if !oldest_seen {
            let age = (Utc::now() - event.recorded_at).to_std().unwrap_or_default();
            metrics::gauge!(telemetry::FOLLOWER_LAG_SECONDS).set(age.as_secs_f64());
            oldest_seen = true;
        }
        events.push(event);
        if events.len() == EVENTS_PER_FOLD {
            publish(durability, &mut events);
        }
    }
    publish(durability, &mut events);
    Ok(())
}

fn publish(durability: &Durability, events: &mut Vec<RecordedEvent>) {
    if durability.publish(events.iter()) > 0 {
        durability.notify_publications();
    }
    events.clear();
}
