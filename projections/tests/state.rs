//! State: every projection together, and rebuilding it from the rows that events touched.

mod support;

use std::collections::BTreeSet;

use keyledger_projections::state::{Touched, PROJECTIONS};
use keyledger_projections::{Projection, RecordedEvent, State};
use support::*;

fn applied(events: &[RecordedEvent]) -> (State, Touched) {
    let mut state = State::default();
    let mut touched = Touched::new();
    for e in events {
        state.apply(e, &mut touched);
    }
    (state, touched)
}

/// A fresh state built only by `load_row` from the encodings of the touched rows.
fn rebuilt_from_rows(original: &State, touched: &Touched) -> State {
    let mut rebuilt = State::default();
    for (projection, key) in touched {
        if let Some(value) = original.encode_row(projection, key) {
            rebuilt
                .load_row(projection, key, &value)
                .unwrap_or_else(|e| panic!("{projection} row {key:?} does not load back: {e}"));
        }
    }
    rebuilt
}

#[test]
fn position_is_that_of_the_last_event_applied() {
    let (state, _) = applied(&given(a_busy_history()));

    assert_eq!(state.position, a_busy_history().len() as u64);
    assert_eq!(State::default().position, 0);
}

#[test]
fn every_projection_sees_every_event() {
    let (state, _) = applied(&given(a_busy_history()));

    assert!(state.directory.organization(org_a()).unwrap().team("platform").is_some());
    assert_eq!(state.keys.len(), 6);
    assert_eq!(state.tokens.key_for(&digest_hash(&format!("token-{}", id(0x102)))), Some(id(0x102)));
    assert_eq!(state.service_accounts.get(id(0x201)).map(|a| a.api_key_id), Some(id(0x103)));
    assert_eq!(state.expiry_schedule.next(), Some((day(2025, 3, 1), id(0x105))));
    let name = keyledger_projections::name_index::name_key(
        org_a(),
        keyledger_projections::ApiKeyKind::Team,
        keyledger_projections::name_index::NameScope::Team(id(0x5)),
        "deploy bot",
    );
    assert_eq!(state.name_index.holder(&name), Some(id(0x102)));
}

#[test]
fn api_key_created_touches_name_token_keys_and_expiry_rows() {
    let key = personal_key(org_a(), id(0x100), 7, "Laptop");
    let mut state = State::default();
    let mut touched = Touched::new();

    state.apply(&recorded(1, created(key.clone())), &mut touched);

    let projections: Vec<&str> = touched.iter().map(|(p, _)| *p).collect();
    assert_eq!(projections, vec!["name_index", "token_index", "keys", "expiry_schedule"]);
    assert!(touched.contains(&("token_index", key.token_digest.clone())));
    assert!(touched.contains(&("keys", id(0x100).to_string())));
}

#[test]
fn service_account_created_touches_only_its_row() {
    let mut state = State::default();
    let mut touched = Touched::new();

    state.apply(&recorded(1, account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5)))), &mut touched);

    assert_eq!(touched, vec![("service_accounts", id(0x200).to_string())]);
}

#[test]
fn directory_event_touches_only_the_organization_row() {
    let mut state = State::default();
    let mut touched = Touched::new();

    state.apply(&recorded(1, organization_created(org_a(), "acme")), &mut touched);
    state.apply(&recorded(2, team_created(org_a(), id(0x5), "platform")), &mut touched);

    assert_eq!(touched, vec![("directory", org_a().to_string()), ("directory", org_a().to_string())]);
}

#[test]
fn apply_appends_to_touched_without_clearing_it() {
    let mut state = State::default();
    let mut touched: Touched = vec![("keys", "earlier".to_owned())];

    state.apply(&recorded(1, organization_created(org_a(), "acme")), &mut touched);

    assert_eq!(touched[0], ("keys", "earlier".to_owned()));
    assert_eq!(touched.len(), 2);
}

#[test]
fn touched_rows_alone_rebuild_an_equal_state() {
    let (original, touched) = applied(&given(a_busy_history()));

    let mut rebuilt = rebuilt_from_rows(&original, &touched);

    assert_eq!(rebuilt.position, 0, "the position is not a row");
    rebuilt.position = original.position;
    assert_eq!(rebuilt, original);
}

#[test]
fn touched_rows_cover_every_row_of_every_projection() {
    let (state, touched) = applied(&given(a_busy_history()));
    let touched: BTreeSet<(&str, String)> = touched.into_iter().collect();

    for projection in PROJECTIONS {
        for key in state.row_keys(projection) {
            assert!(touched.contains(&(projection, key.clone())), "{projection} row {key:?} never reported");
        }
    }
}

#[test]
fn every_touched_row_is_listed_and_encodable() {
    let (state, touched) = applied(&given(a_busy_history()));

    for (projection, key) in &touched {
        assert!(state.row_keys(projection).contains(key), "{projection} row {key:?} not listed");
        assert!(state.encode_row(projection, key).is_some(), "{projection} row {key:?} not encodable");
    }
}

#[test]
fn fold_equals_applying_one_event_at_a_time() {
    let events = given(a_busy_history());
    let (applied_state, _) = applied(&events);

    let mut folded = State::default();
    folded.fold(&events);

    assert_eq!(folded, applied_state);
}

#[test]
fn apply_to_folds_the_event_into_the_named_projection_only() {
    let event = recorded(1, created(personal_key(org_a(), id(0x100), 7, "Laptop")));
    let mut state = State::default();
    let mut touched = Touched::new();

    state.apply_to("keys", &event, &mut touched);

    assert!(state.keys.get(id(0x100)).is_some());
    assert_eq!(state.tokens, Default::default());
    assert_eq!(state.name_index, Default::default());
    assert_eq!(state.expiry_schedule, Default::default());
    assert_eq!(touched, vec![("keys", id(0x100).to_string())]);
}

#[test]
fn catching_up_each_projection_with_apply_to_equals_apply() {
    let events = given(a_busy_history());
    let (expected, _) = applied(&events);

    let mut state = State::default();
    let mut touched = Touched::new();
    for projection in PROJECTIONS {
        for e in &events {
            state.apply_to(projection, e, &mut touched);
        }
    }
    state.position = expected.position;

    assert_eq!(state, expected);
}

#[test]
fn apply_to_an_unknown_projection_changes_nothing() {
    let mut state = State::default();
    let mut touched = Touched::new();

    state.apply_to("nonsense", &recorded(1, organization_created(org_a(), "acme")), &mut touched);

    assert_eq!(state, State::default());
    assert!(touched.is_empty());
}

#[test]
fn projection_names_are_the_row_prefixes_of_each_projection() {
    use keyledger_projections::{
        directory::Directory, expiry_schedule::ExpirySchedule, keys_view::KeysView, name_index::NameIndex,
        service_accounts::ServiceAccounts, token_index::TokenIndex,
    };
    assert_eq!(
        PROJECTIONS,
        [Directory::NAME, NameIndex::NAME, TokenIndex::NAME, KeysView::NAME, ServiceAccounts::NAME, ExpirySchedule::NAME]
    );
    assert_eq!(PROJECTIONS, ["directory", "name_index", "token_index", "keys", "service_accounts", "expiry_schedule"]);
}

#[test]
fn row_keys_are_those_of_each_projection() {
    let (state, _) = applied(&given(a_busy_history()));

    assert_eq!(state.row_keys("directory"), state.directory.row_keys());
    assert_eq!(state.row_keys("name_index"), state.name_index.row_keys());
    assert_eq!(state.row_keys("token_index"), state.tokens.row_keys());
    assert_eq!(state.row_keys("keys"), state.keys.row_keys());
    assert_eq!(state.row_keys("service_accounts"), state.service_accounts.row_keys());
    assert_eq!(state.row_keys("expiry_schedule"), state.expiry_schedule.row_keys());
    assert!(state.row_keys("nonsense").is_empty());
    assert!(state.encode_row("nonsense", &org_a().to_string()).is_none());
}

#[test]
fn garbage_row_is_an_error_naming_its_projection() {
    for projection in PROJECTIONS {
        let mut state = State::default();

        let err = state.load_row(projection, "garbage", b"\xff not a row").unwrap_err();

        assert_eq!(err.projection, projection);
        assert_eq!(err.key, "garbage");
        assert!(err.to_string().contains(projection), "{err}");
        assert_eq!(state, State::default(), "{projection}: nothing half-loaded");
    }
}

#[test]
fn a_row_for_an_unknown_projection_is_an_error() {
    let mut state = State::default();

    let err = state.load_row("nonsense", "k", b"{}").unwrap_err();

    assert!(err.to_string().contains("nonsense"), "{err}");
    assert_eq!(state, State::default());
}
