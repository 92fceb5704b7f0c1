//! The directory-file reader (`operator::parse_directory`, what `init`, `directory apply`
//! and `serve`'s SIGHUP run) and the consistency checks and planning that run before
//! anything is recorded (`rules::directory::plan_all`), against an empty ledger and against
//! one that already holds `fixtures/directory.example.json`.
//!
//! Invariant: planning is idempotent — once a plan's events are folded in, planning the same
//! file again plans nothing.
#![no_main]

use std::sync::OnceLock;

use chrono::DateTime;
use keyledger::service::operator::parse_directory;
use keyledger::service::rules::directory::{plan_all, DirectoryFile};
use keyledger_projections::{Actor, Event, RecordedEvent, State};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// Folds `events` into `state` as the writer records them: the next position, the stream's
/// next version.
fn fold(state: &mut State, events: Vec<Event>) {
    for event in events {
        let recorded = RecordedEvent {
            position: state.position + 1,
            stream: event.stream(),
            stream_version: state.stream_version(&event) + 1,
            recorded_at: DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time"),
            actor: Actor::Operator,
            request_id: "fuzz".into(),
            event,
        };
        state.fold([&recorded]);
    }
}

/// Fresh ids from `first` on; the example's and the fuzzed file's come from ranges apart, as
/// random ones would.
fn ids(first: u128) -> impl FnMut() -> Uuid {
    let mut next = first;
    move || {
        next += 1;
        Uuid::from_u128(next)
    }
}

fn example() -> &'static State {
    static EXAMPLE: OnceLock<State> = OnceLock::new();
    EXAMPLE.get_or_init(|| {
        let files = parse_directory(include_str!("../../fixtures/directory.example.json")).expect("the example parses");
        let mut state = State::default();
        let events = plan_all(&files, &state, &mut ids(1 << 64)).expect("the example is consistent");
        fold(&mut state, events);
        state
    })
}

fn plan_twice(files: &[DirectoryFile], mut state: State) {
    let mut new_id = ids(0);
    let Ok(events) = plan_all(files, &state, &mut new_id) else { return };
    fold(&mut state, events);
    match plan_all(files, &state, &mut new_id) {
        Ok(again) => assert!(again.is_empty(), "a second plan of the same file records {again:?}"),
        Err(e) => panic!("a file planned once is inconsistent the second time: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(files) = parse_directory(text) else { return };
    plan_twice(&files, State::default());
    plan_twice(&files, example().clone());
});
