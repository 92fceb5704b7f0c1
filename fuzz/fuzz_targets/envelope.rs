//! The event-envelope decoders: the one-pass reader (`envelope::read`) and the reference
//! decoding with upcasts (`chain::decode_with_upcast`, `Event::decode`) that `chain::open`
//! falls back on.
//!
//! Invariants: whatever the one-pass reader accepts as current, the reference decoding
//! accepts too, as the same event (envelope.rs promises it "can only ever accept what that
//! path accepts"); an event `Event::decode` reads is read back the same from its own type,
//! version and payload.
#![no_main]

use keyledger::ledger::chain::{self, ChainHead, StoredEvent};
use keyledger::ledger::envelope;
use keyledger_projections::Event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|canonical: &[u8]| {
    if let Some(read) = envelope::read(canonical) {
        let Ok(hash) = blake3::Hash::from_hex(read.prev_hash.as_bytes()) else { return };
        let Some(position) = read.position.checked_sub(1) else { return };
        let prev = ChainHead { position, hash };
        if read.is_current_at(read.position, &prev.hash) {
            let stored = StoredEvent { position: read.position, hash: chain::link(&prev.hash, canonical), canonical: canonical.to_vec() };
            let reference = chain::decode_with_upcast(&stored, prev);
            let fast = read.into_recorded();
            match reference {
                Ok(event) => assert_eq!(event, fast, "the two decoders read different events"),
                Err(e) => panic!("the one-pass reader accepted what the reference refuses: {e}"),
            }
        }
    }

    let Ok(value) = serde_json::from_slice::<serde_json::Value>(canonical) else { return };
    let (Some(event_type), Some(version), Some(payload)) =
        (value.get("type").and_then(|t| t.as_str()), value.get("schema_version").and_then(|v| v.as_u64()), value.get("payload"))
    else {
        return;
    };
    let Ok(version) = u32::try_from(version) else { return };
    if let Ok(event) = Event::decode(event_type, version, payload.clone()) {
        let again = Event::decode(event.type_name(), event.schema_version(), event.payload());
        assert_eq!(again.ok().as_ref(), Some(&event), "an event does not decode from its own payload");
    }
});
