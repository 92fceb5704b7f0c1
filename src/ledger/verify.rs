//! Verifying the whole log: what `keyledger audit verify` proves.
//!
//! Positions are contiguous from 1, every `hash` is `blake3(previous hash ‖ canonical bytes)`,
//! every envelope names the right position and `prev_hash`, and every event decodes (old
//! payload versions upcast) — the same checks as [`chain::open`], over every event.
//!
//! Speed matters (DESIGN.md asks for 1 M events/s on two cores), so it differs from a plain
//! [`Replay`] in two ways, neither of which changes the verdict:
//!
//! - The log is cut into chunks of positions that worker threads take in ascending order.
//!   Each link only needs the *stored* hash of the event before it, so chunks are independent;
//!   a chunk starts by reading the event before its first one. The first broken link is the
//!   failure with the lowest position: a chunk is skipped only when it starts after a failure
//!   already found, so every chunk before that failure has been checked.
//! - Decoding is the expensive part. Like [`chain::open`], it reads the envelope in one pass
//!   ([`envelope::read`]) and leaves anything that is not a current-schema envelope of the
//!   right position and `prev_hash` to [`chain::decode_with_upcast`], which upcasts or names
//!   what is wrong; unlike it, it keeps no owned copy of the event, since only the proof that
//!   it decodes is needed.
//!
//! [`Replay`]: super::chain::Replay

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::chain::{self, ChainHead};
use super::envelope;
use super::{LedgerError, Storage, StoredEvent};

/// Positions per unit of work. Large enough that reading the event before a chunk is noise,
/// small enough that two workers stay busy until the end.
const CHUNK: u64 = 16_384;

/// How often (in events) a worker reports progress and looks for an earlier failure.
const REPORT_EVERY: u64 = 4_096;

/// What an intact log looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of events, which is also the head's position (positions start at 1).
    pub events: u64,
    /// The last event and its hash (position 0 and zeros for an empty log).
    pub head: ChainHead,
    /// The hash of event 1, which names the ledger (see `checkpoint::origin`).
    pub first_hash: Option<blake3::Hash>,
}

/// The stream an event belongs to, as far as its stored bytes still tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream(pub Option<String>);

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(stream) => write!(f, "stream {stream}"),
            None => f.write_str("stream could not be read"),
        }
    }
}

/// The first broken link of the log.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("position {expected} is missing: {}", match found {
        Some(found) => format!("the next stored event is at position {found}"),
        None => "the log ends before it".to_owned(),
    })]
    Missing { expected: u64, found: Option<u64> },
    #[error("event {position} ({stream}, as stored) was altered: its stored hash is {stored} but blake3(previous hash ‖ stored bytes) is {computed}")]
    Hash { position: u64, stream: Stream, stored: blake3::Hash, computed: blake3::Hash },
    #[error("event {position} ({stream}) is broken: {reason}")]
    Event { position: u64, stream: Stream, reason: String },
    #[error("the log cannot be read at position {position}: {source}")]
    Read { position: u64, source: LedgerError },
}

impl VerifyError {
    /// The position of the broken link.
    pub fn position(&self) -> u64 {
        match self {
            VerifyError::Missing { expected, .. } => *expected,
            VerifyError::Hash { position, .. } | VerifyError::Event { position, .. } | VerifyError::Read { position, .. } => *position,
        }
    }
}

/// Verifies the whole log. `progress` is called with the number of events checked since its
/// last call (from worker threads), for a progress bar over [`Summary::events`] — the caller
/// learns the total from [`Storage::last_event`].
pub fn verify(storage: &dyn Storage, progress: &(dyn Fn(u64) + Sync)) -> Result<Summary, VerifyError> {
    let last = storage.last_event().map_err(|source| VerifyError::Read { position: 1, source })?;
    let Some(last) = last else {
        return Ok(Summary { events: 0, head: ChainHead::genesis(), first_hash: None });
    };
    let total = last.position;
    let chunks = total.div_ceil(CHUNK);
    let workers = std::thread::available_parallelism().map_or(1, usize::from).min(8).min(usize::try_from(chunks).unwrap_or(1));

    let next_chunk = AtomicU64::new(0);
    let first_failure = AtomicU64::new(u64::MAX);
    let failures = Mutex::new(Vec::new());
    let work = || loop {
        let chunk = next_chunk.fetch_add(1, Ordering::Relaxed);
        if chunk >= chunks {
            return;
        }
        let start = chunk * CHUNK + 1;
        if start > first_failure.load(Ordering::Relaxed) {
            return;
        }
        let end = total.min(start.saturating_add(CHUNK - 1));
        if let Err(failure) = check_chunk(storage, start, end, &first_failure, progress) {
            first_failure.fetch_min(failure.position(), Ordering::Relaxed);
            failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(failure);
        }
    };
    if workers <= 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            for _ in 1..workers {
                scope.spawn(work);
            }
            work();
        });
    }
    let failures = failures.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(first) = failures.into_iter().min_by_key(VerifyError::position) {
        return Err(first);
    }
    // Every link checked: the stored hashes are the chain's.
    let first_hash = match storage.events_from(1).next() {
        Some(Ok(first)) => first.hash,
        Some(Err(source)) => return Err(VerifyError::Read { position: 1, source }),
        None => return Err(VerifyError::Missing { expected: 1, found: None }),
    };
    Ok(Summary { events: total, head: ChainHead { position: total, hash: last.hash }, first_hash: Some(first_hash) })
}

/// Checks positions `start..=end`, reading the event before `start` for its stored hash.
/// Gives up early (successfully) once a failure before its position is known elsewhere.
fn check_chunk(
    storage: &dyn Storage,
    start: u64,
    end: u64,
    first_failure: &AtomicU64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), VerifyError> {
    let read_error = |position: u64, source: LedgerError| match source {
        LedgerError::Corrupt { reason, .. } => VerifyError::Event { position, stream: Stream(None), reason },
        source => VerifyError::Read { position, source },
    };
    // Position 0 is never written; reading from it also catches a stray event there.
    let mut stored = storage.events_from(start - 1);
    let mut prev = if start == 1 {
        ChainHead::genesis()
    } else {
        match stored.next() {
            Some(Ok(before)) if before.position == start - 1 => ChainHead { position: before.position, hash: before.hash },
            // The chunk before this one reports the gap, at a lower position.
            Some(Ok(before)) => return Err(VerifyError::Missing { expected: start - 1, found: Some(before.position) }),
            Some(Err(source)) => return Err(read_error(start - 1, source)),
            None => return Err(VerifyError::Missing { expected: start - 1, found: None }),
        }
    };
    let mut unreported = 0;
    for expected in start..=end {
        let event = match stored.next() {
            Some(Ok(event)) => event,
            Some(Err(source)) => return Err(read_error(expected, source)),
            None => return Err(VerifyError::Missing { expected, found: None }),
        };
        if event.position != expected {
            return Err(VerifyError::Missing { expected, found: Some(event.position) });
        }
        check_event(&event, prev)?;
        prev = ChainHead { position: event.position, hash: event.hash };
        unreported += 1;
        if unreported == REPORT_EVERY {
            progress(unreported);
            unreported = 0;
            if first_failure.load(Ordering::Relaxed) < expected {
                return Ok(());
            }
        }
    }
    progress(unreported);
    Ok(())
}

/// Checks one event against the stored hash of the one before it.
fn check_event(event: &StoredEvent, prev: ChainHead) -> Result<(), VerifyError> {
    let computed = chain::link(&prev.hash, &event.canonical);
    if computed != event.hash {
        return Err(VerifyError::Hash {
            position: event.position,
            stream: Stream(stream_of(&event.canonical)),
            stored: event.hash,
            computed,
        });
    }
    // What `chain::open_linked` does, without an owned copy of the event: only the proof
    // that it decodes is needed.
    if envelope::read(&event.canonical).is_some_and(|read| read.is_current_at(event.position, &prev.hash)) {
        return Ok(());
    }
    // The reference path decides: an older schema version upcasts here, and anything
    // really broken gets its reason.
    chain::decode_with_upcast(event, prev).map(drop).map_err(|e| VerifyError::Event {
        position: event.position,
        stream: Stream(stream_of(&event.canonical)),
        reason: match e {
            LedgerError::Corrupt { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

/// The stream named in stored bytes that may be damaged, if they still name one: the
/// envelope's `"stream"` is its second field, so a scan finds it where a JSON parser would
/// give up on the damage elsewhere.
fn stream_of(canonical: &[u8]) -> Option<String> {
    const FIELD: &[u8] = br#""stream":""#;
    let start = canonical.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let rest = &canonical[start..];
    let end = rest.iter().take(200).position(|&b| b == b'"')?;
    let stream = std::str::from_utf8(&rest[..end]).ok()?;
    (!stream.is_empty() && !stream.chars().any(char::is_control)).then(|| stream.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::{from_line, seal};
    use crate::ledger::{Commit, SledStorage};
    use chrono::Utc;
    use keyledger_projections::event::{ApiKeyCreated, TeamDeleted};
    use keyledger_projections::{Actor, ApiKeyKind, Event, RecordedEvent};
    use uuid::Uuid;

    fn key_created(position: u64) -> RecordedEvent {
        let organization_id = Uuid::new_v4();
        let api_key_id = Uuid::new_v4();
        RecordedEvent {
            position,
            stream: format!("api_key-{api_key_id}"),
            stream_version: 1,
            recorded_at: Utc::now(),
            actor: Actor::User { organization_id, user_id: 7, api_key_id: Uuid::new_v4() },
            request_id: format!("req \"quoted\" é {position}"),
            client_request_id: None,
            event: Event::ApiKeyCreated(ApiKeyCreated {
                api_key_id,
                organization_id,
                kind: ApiKeyKind::Team,
                name: format!("deploy bot {position}"),
                description: Some("CI deploys\n\"prod\"".into()),
                user_id: Some(7),
                group_id: Some(Uuid::new_v4()),
                role_id: None,
                on_call_role_id: None,
                service_account_id: Some(Uuid::new_v4()),
                token_digest: blake3::hash(&position.to_le_bytes()).to_hex().to_string(),
                expires_at: Utc::now(),
            }),
        }
    }

    fn team_deleted(position: u64) -> RecordedEvent {
        RecordedEvent {
            event: Event::TeamDeleted(TeamDeleted { organization_id: Uuid::new_v4(), team_id: Uuid::new_v4() }),
            actor: Actor::Operator,
            ..key_created(position)
        }
    }

    fn chain_of(events: impl IntoIterator<Item = RecordedEvent>) -> Vec<StoredEvent> {
        let mut head = ChainHead::genesis();
        events
            .into_iter()
            .map(|event| {
                let stored = seal(&event, head).unwrap();
                head = ChainHead { position: stored.position, hash: stored.hash };
                stored
            })
            .collect()
    }

    fn store(events: Vec<StoredEvent>) -> (tempfile::TempDir, SledStorage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = SledStorage::open(dir.path()).expect("open");
        for chunk in events.chunks(5_000) {
            storage.append(Commit { events: chunk.to_vec(), ..Commit::default() }).expect("append");
        }
        (dir, storage)
    }

    fn no_progress(_: u64) {}

    fn golden() -> Vec<StoredEvent> {
        let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden-log.jsonl")).expect("golden log");
        text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).zip(1..).map(|(line, n)| from_line(line, n).expect("line")).collect()
    }

    /// The one-pass reader must agree with the reference decoding (`Event::decode`) on
    /// everything it accepts: the golden log (every event type an older keyledger wrote) and
    /// generated events with escapes in them.
    #[test]
    fn the_one_pass_reader_reads_what_the_reference_decoding_reads() {
        let generated = chain_of((1..=6).map(|p| if p % 2 == 0 { key_created(p) } else { team_deleted(p) }));
        for events in [golden(), generated] {
            let mut prev = ChainHead::genesis();
            for stored in &events {
                let reference = chain::decode_with_upcast(stored, prev).expect("valid event");
                let read = envelope::read(&stored.canonical).expect("the one-pass reader reads it");
                assert!(read.is_current_at(stored.position, &prev.hash));
                assert_eq!(read.prev_hash, prev.hash.to_hex().as_str());
                assert_eq!(read.into_recorded(), reference);
                assert_eq!(chain::open(stored, prev).expect("valid event"), reference);
                prev = ChainHead { position: stored.position, hash: stored.hash };
            }
        }
    }

    #[test]
    fn an_intact_log_verifies_with_its_head() {
        let events = chain_of((1..=40_000).map(key_created));
        let head = events.last().map(|e| e.hash);
        let first = events.first().map(|e| e.hash);
        let (_dir, storage) = store(events);
        let reported = AtomicU64::new(0);
        let summary = verify(&storage, &|n| {
            reported.fetch_add(n, Ordering::Relaxed);
        })
        .expect("intact");
        assert_eq!(summary.events, 40_000);
        assert_eq!(summary.head.position, 40_000);
        assert_eq!(Some(summary.head.hash), head);
        assert_eq!(summary.first_hash, first);
        assert_eq!(reported.load(Ordering::Relaxed), 40_000, "progress covers every event");
    }

    #[test]
    fn an_empty_log_verifies() {
        let (_dir, storage) = store(Vec::new());
        let summary = verify(&storage, &no_progress).expect("empty is intact");
        assert_eq!(summary, Summary { events: 0, head: ChainHead::genesis(), first_hash: None });
    }

    #[test]
    fn the_first_broken_link_is_reported_even_when_later_chunks_break_too() {
        let mut events = chain_of((1..=3 * CHUNK).map(team_deleted));
        // Damage late first, then early: the early one must win whichever worker finds what.
        for position in [3 * CHUNK - 5, 2 * CHUNK + 1, CHUNK + 7] {
            let bytes = &mut events[position as usize - 1].canonical;
            let i = bytes.len() / 2;
            bytes[i] ^= 0x20;
        }
        let (_dir, storage) = store(events);
        match verify(&storage, &no_progress) {
            Err(VerifyError::Hash { position, stream, stored, computed }) => {
                assert_eq!(position, CHUNK + 7);
                assert!(stream.0.is_some_and(|s| s.starts_with("api_key-")), "the stream is named");
                assert_ne!(stored, computed);
            }
            other => panic!("expected a hash mismatch at {}, got {other:?}", CHUNK + 7),
        }
    }

    #[test]
    fn a_gap_in_positions_is_reported() {
        let mut events = chain_of((1..=100).map(team_deleted));
        events.remove(41);
        let (_dir, storage) = store(events);
        match verify(&storage, &no_progress) {
            Err(e @ VerifyError::Missing { expected: 42, found: Some(43) }) => {
                assert!(e.to_string().contains("position 42 is missing"), "{e}");
            }
            other => panic!("expected position 42 missing, got {other:?}"),
        }
    }

    #[test]
    fn a_rechained_rewrite_is_caught_by_the_next_prev_hash() {
        let mut events = chain_of((1..=10).map(team_deleted));
        // Rewrite event 5 and give event 6 a hash over the new one, but leave 6's prev_hash.
        let mut forged = team_deleted(5);
        forged.request_id = "forged".into();
        events[4] = seal(&forged, ChainHead { position: 4, hash: events[3].hash }).unwrap();
        events[5].hash = chain::link(&events[4].hash, &events[5].canonical);
        for i in 6..10 {
            events[i].hash = chain::link(&events[i - 1].hash, &events[i].canonical);
        }
        let (_dir, storage) = store(events);
        match verify(&storage, &no_progress) {
            Err(e @ VerifyError::Event { position: 6, .. }) => assert!(e.to_string().contains("prev_hash"), "{e}"),
            other => panic!("expected event 6's prev_hash to differ, got {other:?}"),
        }
    }

    #[test]
    fn an_event_that_does_not_decode_is_reported_with_its_stream() {
        // A payload that is not the shape its type says, sealed into a valid chain.
        let good = chain_of((1..=3).map(team_deleted));
        let mut canonical = good[1].canonical.clone();
        let text = String::from_utf8(canonical.clone()).expect("utf-8");
        let broken = text.replacen(r#""team_id":"#, r#""team_idx":"#, 1);
        assert_ne!(text, broken);
        canonical = broken.into_bytes();
        let mut events = good;
        events[1].canonical = canonical;
        events[1].hash = chain::link(&events[0].hash, &events[1].canonical);
        events[2] = seal(&team_deleted(3), ChainHead { position: 2, hash: events[1].hash }).unwrap();
        let (_dir, storage) = store(events);
        match verify(&storage, &no_progress) {
            Err(e @ VerifyError::Event { position: 2, stream: Stream(Some(_)), .. }) => {
                assert!(e.to_string().contains("team_id"), "the reason names what is wrong: {e}");
            }
            other => panic!("expected event 2 not to decode, got {other:?}"),
        }
    }

    #[test]
    fn the_stream_of_unreadable_bytes_is_not_invented() {
        assert_eq!(stream_of(br#"{"position":1,"stream":"team-x","type":"#), Some("team-x".into()));
        assert_eq!(stream_of(b"\xff\xfe garbage"), None);
        assert_eq!(Stream(None).to_string(), "stream could not be read");
    }
}
