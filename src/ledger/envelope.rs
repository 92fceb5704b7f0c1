//! Reading a stored envelope in one pass over its canonical bytes.
//!
//! [`chain::open`](super::chain::open) used to decode every envelope through a
//! `serde_json::Value` (the payload) and a second, tagged `Value` handed to `Event`'s serde
//! representation: several allocations per field, and most of the time of a replay. This
//! reader borrows the header's strings from the stored bytes and deserializes the payload
//! straight into the event type its envelope names, through the same serde representation
//! `Event::decode` uses, minus the intermediate values. It only reads the *current* schema:
//! the caller compares [`Envelope::schema_version`] with the decoded event's and leaves
//! anything else (an older version to upcast, a damaged envelope to explain) to
//! `Event::decode`, so this reader can only ever accept what that path accepts too.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use keyledger_projections::{timestamp, Actor, Event, RecordedEvent};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Reads canonical bytes as an envelope of the current schema; `None` when they are not one
/// (damaged, or an older shape the caller must upcast through `Event::decode`).
pub fn read(canonical: &[u8]) -> Option<Envelope<'_>> {
    // One UTF-8 check of the whole envelope is cheaper than one per string.
    let text = std::str::from_utf8(canonical).ok()?;
    serde_json::from_str::<Envelope>(text).ok()
}

/// An envelope as this reader sees it: the header borrowed from the stored bytes, the
/// payload decoded into its event. Every field of `chain`'s envelope but the optional
/// `client_request_id` is required and of the
/// same type here, so that what decodes here decodes there.
pub struct Envelope<'a> {
    pub position: u64,
    pub stream: Cow<'a, str>,
    pub stream_version: u64,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    pub actor: Actor,
    pub request_id: Cow<'a, str>,
    pub client_request_id: Option<Cow<'a, str>>,
    pub prev_hash: Cow<'a, str>,
    pub event: Event,
}

impl Envelope<'_> {
    /// Whether this is the current-schema envelope of the event at `position` after `prev`:
    /// it names that position and that hash, and its payload is of the schema version its
    /// event type has now (an older one must be upcast by `Event::decode`).
    pub fn is_current_at(&self, position: u64, prev: &blake3::Hash) -> bool {
        self.position == position
            && self.prev_hash.as_bytes() == prev.to_hex().as_bytes()
            && self.event.schema_version() == self.schema_version
    }

    /// The recorded event, owning its strings.
    pub fn into_recorded(self) -> RecordedEvent {
        RecordedEvent {
            position: self.position,
            stream: self.stream.into_owned(),
            stream_version: self.stream_version,
            recorded_at: self.recorded_at,
            actor: self.actor,
            request_id: self.request_id.into_owned(),
            client_request_id: self.client_request_id.map(Cow::into_owned),
            event: self.event,
        }
    }
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

/// `recorded_at`, read with the fast timestamp parser (see `keyledger_projections::timestamp`).
struct RecordedAt(DateTime<Utc>);

impl<'de> Deserialize<'de> for RecordedAt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        timestamp::deserialize(deserializer).map(RecordedAt)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut position = None;
        let mut stream: Option<Text<'de>> = None;
        let mut stream_version: Option<u64> = None;
        let mut event_type: Option<Text<'de>> = None;
        let mut schema_version = None;
        let mut recorded_at: Option<RecordedAt> = None;
        let mut actor: Option<Actor> = None;
        let mut request_id: Option<Text<'de>> = None;
        let mut client_request_id: Option<Text<'de>> = None;
        let mut event = None;
        let mut prev_hash: Option<Text<'de>> = None;
        fn once<'de, T: Deserialize<'de>, A: MapAccess<'de>>(slot: &mut Option<T>, map: &mut A, name: &str) -> Result<(), A::Error> {
            if slot.is_some() {
                return Err(de::Error::custom(format_args!("duplicate field `{name}`")));
            }
            *slot = Some(map.next_value()?);
            Ok(())
        }
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key.0 {
                "position" => once(&mut position, &mut map, "position")?,
                "stream" => once(&mut stream, &mut map, "stream")?,
                "stream_version" => once(&mut stream_version, &mut map, "stream_version")?,
                "type" => once(&mut event_type, &mut map, "type")?,
                "schema_version" => once(&mut schema_version, &mut map, "schema_version")?,
                "recorded_at" => once(&mut recorded_at, &mut map, "recorded_at")?,
                "actor" => once(&mut actor, &mut map, "actor")?,
                "request_id" => once(&mut request_id, &mut map, "request_id")?,
                "client_request_id" => once(&mut client_request_id, &mut map, "client_request_id")?,
                "prev_hash" => once(&mut prev_hash, &mut map, "prev_hash")?,
                "payload" => {
                    // Canonical envelopes name the type before the payload; anything else is
                    // left to `Event::decode`.
                    let Some(event_type) = &event_type else { return Err(de::Error::custom("payload before type")) };
                    if event.is_some() {
                        return Err(de::Error::duplicate_field("payload"));
                    }
                    event = Some(map.next_value_seed(PayloadSeed { event_type: &event_type.0 })?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = de::Error::missing_field;
        Ok(Envelope {
            position: position.ok_or_else(|| missing("position"))?,
            stream: stream.ok_or_else(|| missing("stream"))?.0,
            stream_version: stream_version.ok_or_else(|| missing("stream_version"))?,
            schema_version: schema_version.ok_or_else(|| missing("schema_version"))?,
            recorded_at: recorded_at.ok_or_else(|| missing("recorded_at"))?.0,
            actor: actor.ok_or_else(|| missing("actor"))?,
            request_id: request_id.ok_or_else(|| missing("request_id"))?.0,
            client_request_id: client_request_id.map(|text| text.0),
            prev_hash: prev_hash.ok_or_else(|| missing("prev_hash"))?.0,
            event: event.ok_or_else(|| missing("payload"))?,
        })
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// Deserializes a payload into the [`Event`] its envelope's type names, through `Event`'s own
/// (adjacently tagged) serde representation: the payload deserializer is handed over as the
/// `"payload"` entry of a two-entry map whose `"type"` is the envelope's.
struct PayloadSeed<'t> {
    event_type: &'t str,
}

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Event;

    fn deserialize<D: Deserializer<'de>>(self, payload: D) -> Result<Event, D::Error> {
        let tagged = Tagged { event_type: self.event_type, payload: Some(payload), entries_read: 0 };
        Event::deserialize(de::value::MapAccessDeserializer::new(tagged))
    }
}

/// `{"type": event_type, "payload": <payload>}` as a map, without buffering the payload.
struct Tagged<'t, D> {
    event_type: &'t str,
    payload: Option<D>,
    entries_read: u8,
}

impl<'de, D: Deserializer<'de>> MapAccess<'de> for Tagged<'_, D> {
    type Error = D::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, D::Error> {
        let key = match self.entries_read {
            0 => "type",
            1 => "payload",
            _ => return Ok(None),
        };
        seed.deserialize(IntoDeserializer::<D::Error>::into_deserializer(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, D::Error> {
        self.entries_read += 1;
        if self.entries_read == 1 {
            return seed.deserialize(IntoDeserializer::<D::Error>::into_deserializer(self.event_type));
        }
        match self.payload.take() {
            Some(payload) => seed.deserialize(payload),
            None => Err(de::Error::custom("the payload was already read")),
        }
    }
}
