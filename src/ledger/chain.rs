//! Envelopes and the hash chain.
//!
//! An envelope's canonical bytes are its JSON encoding without `hash`; serde writes struct
//! fields in declaration order and `serde_json::Value` objects with sorted keys, so the same
//! envelope always has the same bytes. `hash = blake3(prev_hash ‖ canonical bytes)`, with
//! 32 zero bytes before the first event: rewriting any event changes every later hash.

use chrono::{DateTime, Utc};
use keyledger_projections::event::DecodeError;
use keyledger_projections::{Actor, Event, RecordedEvent};
use serde::{Deserialize, Serialize};

use super::{envelope, LedgerError};

/// The position and hash of the last event in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub position: u64,
    pub hash: blake3::Hash,
}

impl ChainHead {
    /// The head of an empty log: position 0, all-zero hash.
    pub fn genesis() -> Self {
        ChainHead { position: 0, hash: blake3::Hash::from_bytes([0; 32]) }
    }
}

/// An event as stored: its canonical bytes and the hash that chains it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub position: u64,
    pub hash: blake3::Hash,
    pub canonical: Vec<u8>,
}

/// The wire and disk shape of an event. Field order is part of the format.
#[derive(Serialize, Deserialize)]
struct Envelope {
    position: u64,
    stream: String,
    stream_version: u64,
    #[serde(rename = "type")]
    event_type: String,
    schema_version: u32,
    #[serde(deserialize_with = "keyledger_projections::timestamp::deserialize")]
    recorded_at: DateTime<Utc>,
    actor: Actor,
    request_id: String,
    /// Absent from events recorded before clients' request ids were kept, and from events
    /// whose request carried none: their canonical bytes stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_request_id: Option<String>,
    payload: serde_json::Value,
    prev_hash: String,
}

/// Seals an event onto the chain after `prev`.
pub fn seal(event: &RecordedEvent, prev: ChainHead) -> Result<StoredEvent, LedgerError> {
    debug_assert_eq!(event.position, prev.position + 1, "positions must be contiguous");
    let envelope = Envelope {
        position: event.position,
        stream: event.stream.clone(),
        stream_version: event.stream_version,
        event_type: event.event.type_name().to_owned(),
        schema_version: event.event.schema_version(),
        recorded_at: event.recorded_at,
        actor: event.actor.clone(),
        request_id: event.request_id.clone(),
        client_request_id: event.client_request_id.clone(),
        payload: event.event.payload(),
        prev_hash: prev.hash.to_hex().to_string(),
    };
    // An envelope is plain data with string keys, so this does not fail; if it ever did,
    // hashing anything else in its place would put a false event on the chain.
    let canonical = serde_json::to_vec(&envelope).map_err(|source| LedgerError::Encode { position: event.position, source })?;
    Ok(StoredEvent { position: event.position, hash: link(&prev.hash, &canonical), canonical })
}

/// `blake3(prev_hash ‖ canonical)`.
pub fn link(prev: &blake3::Hash, canonical: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev.as_bytes());
    hasher.update(canonical);
    hasher.finalize()
}

/// Checks that `stored` follows `prev` and decodes it.
pub fn open(stored: &StoredEvent, prev: ChainHead) -> Result<RecordedEvent, LedgerError> {
    let corrupt = |reason: String| LedgerError::Corrupt { position: stored.position, reason };
    if stored.position != prev.position + 1 {
        return Err(corrupt(format!("expected position {}, found {}", prev.position + 1, stored.position)));
    }
    let computed = link(&prev.hash, &stored.canonical);
    if computed != stored.hash {
        return Err(corrupt(format!("stored hash {} but blake3(prev_hash ‖ event) is {computed}", stored.hash)));
    }
    open_linked(stored, prev)
}

/// Decodes `stored`, whose hash is known to be `blake3(prev.hash ‖ canonical)`, and checks
/// that its envelope names its position and `prev`'s hash.
///
/// Envelopes of the current schema are read in one pass ([`envelope::read`]); anything else
/// (an older payload version to upcast, or damage to explain) goes through
/// [`decode_with_upcast`], which gives the verdict and the reason.
pub fn open_linked(stored: &StoredEvent, prev: ChainHead) -> Result<RecordedEvent, LedgerError> {
    if let Some(read) = envelope::read(&stored.canonical).filter(|read| read.is_current_at(stored.position, &prev.hash)) {
        return Ok(read.into_recorded());
    }
    decode_with_upcast(stored, prev)
}

/// The reference decoding: the payload as a `serde_json::Value` through `Event::decode`,
/// which upcasts old payload versions and names what is wrong.
pub fn decode_with_upcast(stored: &StoredEvent, prev: ChainHead) -> Result<RecordedEvent, LedgerError> {
    let corrupt = |reason: String| LedgerError::Corrupt { position: stored.position, reason };
    let envelope: Envelope = serde_json::from_slice(&stored.canonical).map_err(|e| corrupt(format!("envelope does not decode: {e}")))?;
    if envelope.position != stored.position {
        return Err(corrupt(format!("envelope says position {}", envelope.position)));
    }
    if envelope.prev_hash != prev.hash.to_hex().as_str() {
        return Err(corrupt(format!("prev_hash {} but the previous event's hash is {}", envelope.prev_hash, prev.hash)));
    }
    let event =
        Event::decode(&envelope.event_type, envelope.schema_version, envelope.payload).map_err(|e: DecodeError| corrupt(e.to_string()))?;
    Ok(RecordedEvent {
        position: envelope.position,
        stream: envelope.stream,
        stream_version: envelope.stream_version,
        recorded_at: envelope.recorded_at,
        actor: envelope.actor,
        request_id: envelope.request_id,
        client_request_id: envelope.client_request_id,
        event,
    })
}

const HASH_SUFFIX_LEN: usize = r#","hash":""#.len() + 64 + r#""}"#.len();

/// One line of an export: the canonical envelope with `"hash"` added as its last field.
pub fn to_line(stored: &StoredEvent) -> Vec<u8> {
    let mut line = stored.canonical.clone();
    line.pop();
    line.extend_from_slice(br#","hash":""#);
    line.extend_from_slice(stored.hash.to_hex().as_bytes());
    line.extend_from_slice(br#""}"#);
    line
}

/// Reads a line written by [`to_line`] back into the stored form, byte for byte; the chain
/// itself is checked by [`open`].
pub fn from_line(line: &[u8], line_number: u64) -> Result<StoredEvent, LedgerError> {
    let corrupt = |reason: &str| LedgerError::Corrupt { position: line_number, reason: format!("line {line_number}: {reason}") };
    if line.len() <= HASH_SUFFIX_LEN || !line.ends_with(br#""}"#) {
        return Err(corrupt("not an exported envelope"));
    }
    let (body, suffix) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    let hex = suffix
        .strip_prefix(br#","hash":""#.as_slice())
        .and_then(|rest| rest.strip_suffix(br#""}"#.as_slice()))
        .ok_or_else(|| corrupt("the last field is not \"hash\""))?;
    // Lowercase only, as `to_line` writes it: a line read back must export to the same bytes.
    if hex.iter().any(u8::is_ascii_uppercase) {
        return Err(corrupt("hash is not 64 lowercase hex digits"));
    }
    let hash = blake3::Hash::from_hex(hex).map_err(|_| corrupt("hash is not 64 lowercase hex digits"))?;
    let mut canonical = body.to_vec();
    canonical.push(b'}');
    #[derive(Deserialize)]
    struct Position {
        position: u64,
    }
    let position = serde_json::from_slice::<Position>(&canonical).map_err(|e| corrupt(&e.to_string()))?.position;
    Ok(StoredEvent { position, hash, canonical })
}

/// Replays stored events in order, checking every link from `head` on.
pub struct Replay<I> {
    stored: I,
    head: ChainHead,
}

impl<I> Replay<I> {
    pub fn new(stored: I, head: ChainHead) -> Self {
        Replay { stored, head }
    }

    /// The last event checked so far.
    pub fn head(&self) -> ChainHead {
        self.head
    }
}

impl<I: Iterator<Item = Result<StoredEvent, LedgerError>>> Iterator for Replay<I> {
    type Item = Result<RecordedEvent, LedgerError>;

    fn next(&mut self) -> Option<Self::Item> {
        let stored = match self.stored.next()? {
            Ok(stored) => stored,
            Err(e) => return Some(Err(e)),
        };
        let opened = open(&stored, self.head);
        if opened.is_ok() {
            self.head = ChainHead { position: stored.position, hash: stored.hash };
        }
        Some(opened)
    }
}

/// Test fixtures: a small, valid chain of events of one stream.
#[cfg(test)]
pub(crate) mod sample {
    use super::*;
    use keyledger_projections::event::TeamDeleted;
    use uuid::Uuid;

    pub(crate) fn event(position: u64) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: "team-x".into(),
            stream_version: position,
            recorded_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            actor: Actor::Operator,
            request_id: format!("req-{position}"),
            client_request_id: None,
            event: Event::TeamDeleted(TeamDeleted { organization_id: Uuid::nil(), team_id: Uuid::nil() }),
        }
    }

    /// Events 1..=n, sealed onto a chain from genesis.
    pub(crate) fn log(n: u64) -> Vec<StoredEvent> {
        let mut head = ChainHead::genesis();
        (1..=n)
            .map(|p| {
                let stored = seal(&event(p), head).unwrap();
                head = ChainHead { position: p, hash: stored.hash };
                stored
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::sample::{event, log as chain};
    use super::*;

    #[test]
    fn sealed_events_open_back_to_the_same_event() {
        let stored = chain(3);
        let replayed: Vec<_> = Replay::new(stored.into_iter().map(Ok), ChainHead::genesis()).collect();
        assert_eq!(replayed.len(), 3);
        assert_eq!(replayed[2].as_ref().ok(), Some(&event(3)));
    }

    #[test]
    fn sealing_is_deterministic() {
        assert_eq!(chain(2), chain(2));
    }

    #[test]
    fn export_lines_round_trip_byte_for_byte() {
        for stored in chain(3) {
            let line = to_line(&stored);
            assert!(serde_json::from_slice::<serde_json::Value>(&line).is_ok(), "a line is JSON");
            assert_eq!(from_line(&line, stored.position).ok(), Some(stored));
        }
        assert!(from_line(b"{}", 1).is_err());
    }

    /// Found by the `export_line` fuzz target: a hash in uppercase hex was read, so the
    /// export of that import was not the file imported.
    #[test]
    fn a_line_whose_hash_is_not_lowercase_is_refused() {
        let line = to_line(&chain(1)[0]);
        let hash_at = line.len() - 2 - 64;
        let upper: Vec<u8> = line.iter().enumerate().map(|(i, b)| if i >= hash_at { b.to_ascii_uppercase() } else { *b }).collect();
        assert_ne!(upper, line, "the hash has letters to change");
        assert!(matches!(from_line(&upper, 1), Err(LedgerError::Corrupt { reason, .. }) if reason.contains("lowercase")));
    }

    #[test]
    fn a_flipped_byte_is_found_at_its_position() {
        let mut stored = chain(3);
        let i = stored[1].canonical.len() / 2;
        stored[1].canonical[i] ^= 0x01;
        let results: Vec<_> = Replay::new(stored.into_iter().map(Ok), ChainHead::genesis()).collect();
        assert!(results[0].is_ok());
        match &results[1] {
            Err(LedgerError::Corrupt { position, .. }) => assert_eq!(*position, 2),
            other => panic!("expected corruption at 2, got {other:?}"),
        }
    }

    #[test]
    fn a_rechained_rewrite_is_caught_by_the_next_prev_hash() {
        let mut stored = chain(3);
        // Rewrite event 2 and recompute its own hash, but not event 3's prev_hash.
        let mut forged = event(2);
        forged.request_id = "forged".into();
        stored[1] = seal(&forged, ChainHead { position: 1, hash: stored[0].hash }).unwrap();
        let results: Vec<_> = Replay::new(stored.into_iter().map(Ok), ChainHead::genesis()).collect();
        assert!(results[1].is_ok());
        assert!(matches!(results[2], Err(LedgerError::Corrupt { position: 3, .. })));
    }
}
