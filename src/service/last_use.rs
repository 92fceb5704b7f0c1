//! `last_used_at`: each key's last use, in memory for requests, written to a
//! [`LastUseStore`] by a thread of its own.
//!
//! A request only reads a map, and at most once a minute per key ([`rules::last_use`])
//! updates it and hands a note to the recorder with `try_send`: it never waits for the disk,
//! for the queue or for a lock held across I/O. The recorder stores the notes it got in one
//! batch [`FLUSH_EVERY`] after the first of them, and what is left when the service stops.
//! A crash loses the notes of the last interval, and a full queue drops notes (counted and
//! logged): the stored time is then older than the true last use, by about a minute for a key
//! in steady use. That is the price of keeping the request path free of writes; a last use is
//! a hint, not a fact the ledger records.
//!
//! [`rules::last_use`]: super::rules::last_use

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::rules::last_use::is_due;
use super::ServiceError;
use crate::ledger::{LastUseStore, LedgerError};

/// How long a note waits in memory before the recorder stores it (with every other note that
/// arrived meanwhile): one store write and sync a second at most.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Notes the recorder may have queued; beyond this a note is dropped, never waited for.
pub const QUEUE: usize = 16 * 1024;

type Note = (Uuid, DateTime<Utc>);

/// The last uses requests read and note.
pub struct LastUses {
    /// Lock order: taken inside the state's read lock, never around it.
    times: RwLock<HashMap<Uuid, DateTime<Utc>>>,
    notes: SyncSender<Note>,
    dropped: Arc<AtomicU64>,
}

impl LastUses {
    /// Loads the stored last uses and starts the recorder, which stops once the returned
    /// `LastUses` is dropped and what it noted is stored.
    pub fn start(store: Arc<dyn LastUseStore>) -> Result<(LastUses, JoinHandle<()>), ServiceError> {
        let times: HashMap<Uuid, DateTime<Utc>> = store.last_uses()?.into_iter().collect();
        let (notes, queue) = mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&dropped);
        let recorder = std::thread::Builder::new().name("keyledger-last-use".into()).spawn(move || record(&*store, &queue, &counted))?;
        Ok((LastUses { times: RwLock::new(times), notes, dropped }, recorder))
    }

    /// When `id` was last used, if ever.
    pub fn get(&self, id: Uuid) -> Option<DateTime<Utc>> {
        self.times.read().unwrap_or_else(PoisonError::into_inner).get(&id).copied()
    }

    /// Runs `f` with a lookup of last uses, under one read lock.
    pub fn with<R>(&self, f: impl FnOnce(&dyn Fn(Uuid) -> Option<DateTime<Utc>>) -> R) -> R {
        let times = self.times.read().unwrap_or_else(PoisonError::into_inner);
        f(&|id| times.get(&id).copied())
    }

    /// Notes that `id` was used at `now`. Most calls end at the read check; a due one takes
    /// the write lock only to check again and update the map (two requests of one key at the
    /// same moment note it once).
    pub fn note(&self, id: Uuid, now: DateTime<Utc>) {
        if !is_due(self.get(id), now) {
            return;
        }
        let mut times = self.times.write().unwrap_or_else(PoisonError::into_inner);
        if !is_due(times.get(&id).copied(), now) {
            return;
        }
        times.insert(id, now);
        if self.notes.try_send((id, now)).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                "the last-use queue is full: dropping notes (shown, not stored) until it drains; the total is logged at shutdown"
            );
        }
    }
}

/// The recorder: batches notes, stores them [`FLUSH_EVERY`] after the first, and stores the
/// rest once every sender is gone.
fn record(store: &dyn LastUseStore, notes: &Receiver<Note>, dropped: &AtomicU64) {
    let mut pending: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    let mut due = Instant::now();
    let mut failing = false;
    loop {
        let received = if pending.is_empty() {
            notes.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            notes.recv_timeout(due.saturating_duration_since(Instant::now()))
        };
        match received {
            Ok((id, at)) => {
                if pending.is_empty() {
                    due = Instant::now() + FLUSH_EVERY;
                }
                pending.insert(id, at);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if !pending.is_empty() && Instant::now() >= due {
            match store_pending(store, &mut pending) {
                Ok(()) if failing => {
                    tracing::info!("storing last uses again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) => {
                    // Once per outage: the store's own recovery says the rest.
                    if !failing {
                        tracing::error!(error = %e, keys = pending.len(), "cannot store last uses; trying again every second");
                        failing = true;
                    }
                    due = Instant::now() + FLUSH_EVERY;
                }
            }
        }
    }
    if let Err(e) = store_pending(store, &mut pending) {
        tracing::error!(error = %e, keys = pending.len(), "cannot store last uses at shutdown; they are lost");
    }
    let dropped = dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        tracing::warn!(dropped, "last-use notes were dropped because the queue was full");
    }
}

/// Stores every pending note; they stay pending if that fails.
fn store_pending(store: &dyn LastUseStore, pending: &mut HashMap<Uuid, DateTime<Utc>>) -> Result<(), LedgerError> {
    if pending.is_empty() {
        return Ok(());
    }
    let uses: Vec<Note> = pending.iter().map(|(id, at)| (*id, *at)).collect();
    store
        .record_last_uses(&uses)
        .inspect_err(|_| metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "record_last_uses").increment(1))?;
    pending.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A store in memory that reports every write on a channel.
    struct Recorded {
        stored: Mutex<HashMap<Uuid, DateTime<Utc>>>,
        writes: Mutex<mpsc::Sender<usize>>,
    }

    impl LastUseStore for Recorded {
        fn last_uses(&self) -> Result<Vec<Note>, LedgerError> {
            Ok(self.stored.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(id, at)| (*id, *at)).collect())
        }

        fn record_last_uses(&self, uses: &[Note]) -> Result<(), LedgerError> {
            self.stored.lock().unwrap_or_else(PoisonError::into_inner).extend(uses.iter().copied());
            let _ = self.writes.lock().unwrap_or_else(PoisonError::into_inner).send(uses.len());
            Ok(())
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    #[test]
    fn notes_are_stored_while_running_at_most_once_a_minute_per_key_and_loaded_again() {
        let (writes, written) = mpsc::channel();
        let store = Arc::new(Recorded { stored: Mutex::default(), writes: Mutex::new(writes) });
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (uses, recorder) = LastUses::start(store.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(uses.get(a), None);
        uses.note(a, at(0));
        uses.note(a, at(59));
        uses.note(b, at(30));
        assert_eq!((uses.get(a), uses.get(b)), (Some(at(0)), Some(at(30))), "the second use of a within the minute is not noted");
        let mut stored = 0;
        while stored < 2 {
            stored += written.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|e| panic!("nothing stored while running: {e}"));
        }
        uses.note(a, at(60));
        drop(uses);
        if recorder.join().is_err() {
            panic!("the recorder panicked");
        }
        let (reloaded, recorder) = LastUses::start(store).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((reloaded.get(a), reloaded.get(b)), (Some(at(60)), Some(at(30))), "the use a minute later is stored at shutdown");
        drop(reloaded);
        if recorder.join().is_err() {
            panic!("the recorder panicked");
        }
    }
}
