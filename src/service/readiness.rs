//! Readiness: whether this node should be sent requests now (`GET /readyz`). It is ready when
//! its writer runs and accepts changes, its store answers, and it is caught up with the log:
//! always with sled (the node writes the only log it reads); over PostgreSQL, when its
//! follower has read the others' commits within [`FOLLOWER_STALE`].
//!
//! What is not ready is named in fixed words: the endpoint needs no token, so the causes
//! (store errors with paths, addresses or worse) go to the log, never into the answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::writer::Durability;
use crate::telemetry;

/// How long the store may take to answer a probe before the node counts as not ready. A
/// load balancer probes every few seconds and gives up on a slow answer itself.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One condition of readiness: `ok`, or what is wrong, in words safe to show anyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "&'static str")]
pub enum Check {
    Ok,
    NotReady(&'static str),
}

impl From<Check> for &'static str {
    fn from(check: Check) -> Self {
        match check {
            Check::Ok => "ok",
            Check::NotReady(why) => why,
        }
    }
}

/// Each condition of readiness, as `GET /readyz` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// The writer thread runs and accepts changes.
    pub writer: Check,
    /// The store answers.
    pub store: Check,
    /// The node has folded what other nodes committed, as of a recent look.
    pub follower: Check,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        [self.writer, self.store, self.follower].iter().all(|check| *check == Check::Ok)
    }
}

/// How long a follower may go without reading the log before its node counts as not ready:
/// three of its polls, so that one slow look does not take a node out of rotation.
pub const FOLLOWER_STALE: Duration = Duration::from_secs(3 * super::follower::POLL.as_secs());

pub const FOLLOWER_BEHIND: &str = "cannot read other nodes' commits; answers may be stale (see the log)";

/// The follower's condition, from how long ago it last read the log (`None`: nothing to
/// follow, the store has no other writers).
pub fn follower_check(since_last_look: Option<Duration>) -> Check {
    match since_last_look {
        Some(since) if since > FOLLOWER_STALE => Check::NotReady(FOLLOWER_BEHIND),
        _ => Check::Ok,
    }
}

pub const WRITER_STOPPED: &str = "stopped";
pub const WRITER_REFUSING: &str = "recovering from a failed append or sync: reopening the store (see the log)";
pub const STORE_FAILED: &str = "unreachable (see the log)";
pub const STORE_SLOW: &str = "no answer in time";
pub const STORE_STUCK: &str = "an earlier probe has not returned";

/// The writer's condition: stopped (its queue closed) or refusing writes are both not ready.
pub fn writer_check(running: bool, durability: &Durability) -> Check {
    if !running {
        Check::NotReady(WRITER_STOPPED)
    } else if durability.refusing_writes().is_some() {
        Check::NotReady(WRITER_REFUSING)
    } else {
        Check::Ok
    }
}

/// Probes the store on a blocking thread, at most one probe at a time and for at most
/// [`STORE_PROBE_TIMEOUT`]: a store that hangs must not make each probe leave another
/// thread behind, nor make `/readyz` itself hang.
#[derive(Clone)]
pub struct StoreProbe {
    durability: Durability,
    in_flight: Arc<AtomicBool>,
}

impl StoreProbe {
    pub fn new(durability: Durability) -> Self {
        StoreProbe { durability, in_flight: Arc::new(AtomicBool::new(false)) }
    }

    /// The writer's condition (see [`writer_check`]).
    pub fn writer(&self, running: bool) -> Check {
        writer_check(running, &self.durability)
    }

    /// The store's condition.
    pub async fn store(&self) -> Check {
        if self.in_flight.swap(true, Ordering::AcqRel) {
            return Check::NotReady(STORE_STUCK);
        }
        let durability = self.durability.clone();
        let in_flight = Arc::clone(&self.in_flight);
        // A plain thread, not tokio's blocking pool: a store with a blocking client of its own
        // runtime (PostgreSQL's) refuses calls from any thread of another runtime.
        let (answer, probe) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new().name("keyledger-readiness".into()).spawn(move || {
            let result = durability.probe_store();
            in_flight.store(false, Ordering::Release);
            let _ = answer.send(result);
        });
        if let Err(e) = spawned {
            self.in_flight.store(false, Ordering::Release);
            tracing::error!(error = %e, "readiness: cannot start the store probe");
            return Check::NotReady(STORE_FAILED);
        }
        match tokio::time::timeout(STORE_PROBE_TIMEOUT, probe).await {
            Ok(Ok(Ok(()))) => Check::Ok,
            Ok(Ok(Err(e))) => {
                metrics::counter!(telemetry::STORE_ERRORS, "operation" => "probe").increment(1);
                tracing::warn!(error = %e, "readiness: the store did not answer a probe");
                Check::NotReady(STORE_FAILED)
            }
            Ok(Err(_)) => {
                // The probe panicked before it could clear the flag.
                self.in_flight.store(false, Ordering::Release);
                metrics::counter!(telemetry::STORE_ERRORS, "operation" => "probe").increment(1);
                tracing::error!("readiness: the store probe panicked");
                Check::NotReady(STORE_FAILED)
            }
            Err(_) => {
                tracing::warn!(timeout = ?STORE_PROBE_TIMEOUT, "readiness: the store did not answer a probe in time");
                Check::NotReady(STORE_SLOW)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use keyledger_projections::State;

    use super::super::operator;
    use super::super::rules::directory::DirectoryFile;
    use super::super::token::TokenFormat;
    use super::super::writer::{CommandError, Writer};
    use super::*;
    use crate::ledger::memory::{Fault, FaultyDisk, Probe};

    /// A writer over `store` that has tried to initialize a ledger, and what that answered.
    fn writer_over(store: FaultyDisk) -> (Writer, Result<(), String>) {
        let mut writer = Writer::new(Arc::new(store), State::default()).unwrap();
        let tokens = TokenFormat::new("rootly").unwrap();
        let initialized = operator::initialize(&mut writer, &[DirectoryFile::single_owner("Acme", "owner@acme.test")], &tokens)
            .map(drop)
            .map_err(|e| e.to_string());
        (writer, initialized)
    }

    fn store(fault: Fault, probe: Probe) -> FaultyDisk {
        let store = FaultyDisk::default();
        store.fail(fault);
        store.answer_probes(probe);
        store
    }

    #[test]
    fn a_follower_that_has_not_read_the_log_for_three_polls_is_not_ready() {
        assert_eq!(follower_check(None), Check::Ok, "sled: nothing to follow");
        assert_eq!(follower_check(Some(Duration::from_millis(900))), Check::Ok);
        assert_eq!(follower_check(Some(FOLLOWER_STALE + Duration::from_millis(1))), Check::NotReady(FOLLOWER_BEHIND));
        let behind = Readiness { writer: Check::Ok, store: Check::Ok, follower: Check::NotReady(FOLLOWER_BEHIND) };
        assert!(!behind.is_ready());
    }

    #[test]
    fn a_writer_that_records_is_ready_and_a_stopped_one_is_not() {
        let (writer, initialized) = writer_over(store(Fault::None, Probe::Answers));
        initialized.unwrap();
        assert_eq!(writer_check(true, &writer.durability()), Check::Ok);
        assert_eq!(writer_check(false, &writer.durability()), Check::NotReady(WRITER_STOPPED));
    }

    #[test]
    fn a_writer_failed_by_a_sync_is_not_ready_and_says_so_without_the_cause() {
        let (mut writer, initialized) = writer_over(store(Fault::Syncs, Probe::Answers));
        assert!(initialized.is_err(), "the sync failed, so did the initialization");
        assert!(writer.durability().refusing_writes().is_some());
        let check = writer_check(true, &writer.durability());
        assert_eq!(check, Check::NotReady(WRITER_REFUSING));
        let shown = serde_json::to_string(&Readiness { writer: check, store: Check::Ok, follower: Check::Ok }).unwrap();
        assert!(!shown.contains("injected"), "the cause goes to the log, not to /readyz: {shown}");
        // And it really refuses: the next command is answered "unavailable".
        let next = writer.execute(vec![(super::super::writer::Command::EndGracePeriods, "x".into())]);
        assert!(matches!(next[0], Err(CommandError::Unavailable(_))), "{:?}", next[0]);
    }

    #[tokio::test]
    async fn a_store_that_fails_or_does_not_answer_is_not_ready() {
        let (writer, initialized) = writer_over(store(Fault::None, Probe::Answers));
        initialized.unwrap();
        assert_eq!(StoreProbe::new(writer.durability()).store().await, Check::Ok);

        let (writer, _) = writer_over(store(Fault::None, Probe::Fails));
        assert_eq!(StoreProbe::new(writer.durability()).store().await, Check::NotReady(STORE_FAILED));

        let (release, hung) = mpsc::channel();
        let (writer, _) = writer_over(store(Fault::None, Probe::Hangs(hung)));
        let probe = StoreProbe::new(writer.durability());
        assert_eq!(probe.store().await, Check::NotReady(STORE_SLOW));
        assert_eq!(probe.store().await, Check::NotReady(STORE_STUCK), "one hung probe at a time, not a thread per request");
        // The store answers again (every probe from now on): the hung probe returns, and
        // the next one goes through.
        drop(release);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match probe.store().await {
                Check::Ok => break,
                other => assert!(std::time::Instant::now() < deadline, "still {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
