//! The export-line reader of `import` (`chain::from_line`) and what import does with a line
//! it read: `chain::open` against the head before it.
//!
//! Invariants: a line that reads is given back byte for byte by `to_line`; a line that opens
//! opens the same with the hash check skipped (`open_linked`), and the event it holds, sealed
//! again after the same head, opens to the same event and exports to a line that reads back.
#![no_main]

use keyledger::ledger::chain::{self, ChainHead};
use libfuzzer_sys::fuzz_target;

/// The head the line's envelope says it follows, when it says so legibly.
fn claimed_head(canonical: &[u8], position: u64) -> Option<ChainHead> {
    let envelope: serde_json::Value = serde_json::from_slice(canonical).ok()?;
    let hash = blake3::Hash::from_hex(envelope.get("prev_hash")?.as_str()?).ok()?;
    Some(ChainHead { position: position.checked_sub(1)?, hash })
}

fuzz_target!(|line: &[u8]| {
    let Ok(stored) = chain::from_line(line, 1) else { return };
    assert_eq!(chain::to_line(&stored), line, "to_line does not give the line back");

    let Some(prev) = claimed_head(&stored.canonical, stored.position) else { return };
    let opened = chain::open(&stored, prev);
    let linked = chain::open_linked(&stored, prev);
    if let Ok(event) = &opened {
        assert_eq!(linked.as_ref().ok(), Some(event), "open and open_linked disagree");
    }
    let Ok(event) = linked else { return };
    let resealed = chain::seal(&event, prev);
    let reopened = chain::open(&resealed, prev).expect("a resealed event opens");
    assert_eq!(reopened, event, "sealing again changed the event");
    let reread = chain::from_line(&chain::to_line(&resealed), 1).expect("a resealed line reads");
    assert_eq!(reread, resealed);
});
