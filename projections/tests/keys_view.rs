//! Keys view: given keys created, then each key as the API shows it.

mod support;

use chrono::Duration;
use keyledger_projections::event::ApiKeyCreated;
use keyledger_projections::keys_view::{KeysView, Slice};
use keyledger_projections::projection::positioned;
use keyledger_projections::{Actor, ApiKeyKind, Event, Projection};
use support::*;

#[test]
fn created_key_shows_every_recorded_field() {
    let event = ApiKeyCreated {
        description: Some("deploys from CI".to_owned()),
        role_id: Some(id(0x1)),
        on_call_role_id: Some(id(0x4)),
        expires_at: day(2026, 6, 1),
        ..organization_key(org_a(), id(0x103), id(0x201), "Terraform")
    };
    let view: KeysView = fold([created(event.clone())]);

    let key = view.get(id(0x103)).expect("the key is shown");
    assert_eq!(key.id, id(0x103));
    assert_eq!(key.organization_id, org_a());
    assert_eq!(key.kind, ApiKeyKind::Organization);
    assert_eq!(key.name, "Terraform");
    assert_eq!(key.description.as_deref(), Some("deploys from CI"));
    assert_eq!(key.user_id, Some(1));
    assert_eq!(key.group_id, None);
    assert_eq!(key.role_id, Some(id(0x1)));
    assert_eq!(key.on_call_role_id, Some(id(0x4)));
    assert_eq!(key.service_account_id, Some(id(0x201)));
    assert_eq!(key.token_digest, event.token_digest);
    assert_eq!(key.expires_at, day(2026, 6, 1));
    assert_eq!(key.grace_period_ends_at, None, "no rotation yet");
}

#[test]
fn created_key_keeps_the_position_and_stream_version_of_its_creation() {
    let mut view = KeysView::default();
    let mut event = recorded(9, created(personal_key(org_a(), id(0x100), 7, "Laptop")));
    event.stream_version = 1;

    view.apply(&event, &mut Vec::new());

    let key = view.get(id(0x100)).unwrap();
    assert_eq!((key.position, key.stream_version), (9, 1));
}

#[test]
fn keys_of_a_history_keep_their_own_positions_and_stream_versions() {
    let view: KeysView = fold(a_busy_history());

    let positions: Vec<(u64, u64)> = (0x100..=0x105).map(|n| view.get(id(n)).map(|k| (k.position, k.stream_version)).unwrap()).collect();
    assert_eq!(positions, vec![(21, 3), (22, 1), (23, 1), (25, 3), (27, 1), (28, 2)], "rotations and grace ends count");
}

#[test]
fn team_key_shows_its_group() {
    let view: KeysView = fold([created(team_key(org_a(), id(0x102), id(0x5), id(0x200), "Deploy"))]);

    let key = view.get(id(0x102)).unwrap();
    assert_eq!((key.kind, key.group_id), (ApiKeyKind::Team, Some(id(0x5))));
}

#[test]
fn created_and_updated_at_are_when_the_creation_was_recorded() {
    let mut view = KeysView::default();
    let mut touched = Vec::new();
    let event = recorded(5, created(personal_key(org_a(), id(0x100), 7, "Laptop")));

    view.apply(&event, &mut touched);

    let key = view.get(id(0x100)).unwrap();
    assert_eq!(key.created_at, event.recorded_at);
    assert_eq!(key.updated_at, event.recorded_at);
    assert_eq!(key.created_at, log_start() + Duration::seconds(4));
}

#[test]
fn created_by_is_the_actor_of_the_creation() {
    let creator = Actor::User { organization_id: org_a(), user_id: 7, api_key_id: id(0x99) };
    let mut view = KeysView::default();
    let mut touched = Vec::new();

    view.apply(&recorded_by(1, creator.clone(), created(personal_key(org_a(), id(0x100), 7, "Laptop"))), &mut touched);

    assert_eq!(view.get(id(0x100)).unwrap().created_by, creator);
}

#[test]
fn an_unknown_key_is_not_shown() {
    let view: KeysView = fold([created(personal_key(org_a(), id(0x100), 7, "Laptop"))]);

    assert!(view.get(id(0x101)).is_none());
    assert_eq!(view.len(), 1);
    assert!(!view.is_empty());
    assert!(KeysView::default().is_empty());
}

#[test]
fn every_created_key_is_kept() {
    let view: KeysView = fold(a_busy_history());

    assert_eq!(view.len(), 6);
    for n in 0x100..=0x105 {
        assert!(view.get(id(n)).is_some(), "key {n:#x}");
    }
    assert_eq!(view.get(id(0x104)).unwrap().organization_id, org_b());
}

#[test]
fn api_key_created_touches_exactly_its_key_row() {
    let mut view = KeysView::default();

    let touched = touched_by(&mut view, 12, created(personal_key(org_a(), id(0x100), 7, "Laptop")));

    assert_eq!(touched, vec![positioned(12, &id(0x100).to_string())]);
    assert_eq!(touched, vec![format!("00000000000000000012/{}", id(0x100))]);
    assert_eq!(view.row_keys(), touched);
}

#[test]
fn other_events_touch_nothing() {
    let mut view = KeysView::default();

    let touched = touched_per_event(
        &mut view,
        [
            organization_created(org_a(), "acme"),
            team_created(org_a(), id(0x5), "platform"),
            account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5))),
        ],
    );

    assert!(touched.iter().all(Vec::is_empty), "{touched:?}");
    assert!(view.is_empty());
}

#[test]
fn row_keys_sort_by_creation_position_not_by_key_id() {
    let view: KeysView = fold([
        created(personal_key(org_a(), id(0x102), 1, "c")),
        created(personal_key(org_a(), id(0x100), 1, "a")),
        created(personal_key(org_a(), id(0x101), 1, "b")),
    ]);

    assert_eq!(
        view.row_keys(),
        vec![positioned(1, &id(0x102).to_string()), positioned(2, &id(0x100).to_string()), positioned(3, &id(0x101).to_string()),]
    );
}

#[test]
fn row_keys_of_a_history_sort_by_position_across_digit_counts() {
    // Positions 9, 10, 99, 100: numeric order must equal the rows' string order.
    let mut view = KeysView::default();
    for (position, n) in [(9, 0x104), (10, 0x103), (99, 0x102), (100, 0x101)] {
        touched_by(&mut view, position, created(personal_key(org_a(), id(n), 1, &format!("k{n}"))));
    }

    assert_eq!(
        view.row_keys(),
        vec![
            positioned(9, &id(0x104).to_string()),
            positioned(10, &id(0x103).to_string()),
            positioned(99, &id(0x102).to_string()),
            positioned(100, &id(0x101).to_string()),
        ]
    );
}

#[test]
fn encode_row_of_an_unknown_or_malformed_key_is_none() {
    let view: KeysView = fold([created(personal_key(org_a(), id(0x100), 7, "Laptop"))]);

    assert!(view.encode_row(&positioned(1, &id(0x100).to_string())).is_some());
    assert!(view.encode_row(&positioned(1, &id(0x101).to_string())).is_none());
    assert!(view.encode_row(&positioned(1, "not-a-uuid")).is_none());
    assert!(view.encode_row(&id(0x100).to_string()).is_none(), "an unpositioned (old-format) key");
    assert!(view.encode_row("not-a-uuid").is_none());
}

#[test]
fn encode_row_of_another_position_is_none() {
    let view: KeysView = fold([created(personal_key(org_a(), id(0x100), 7, "Laptop"))]);

    assert!(view.encode_row(&positioned(2, &id(0x100).to_string())).is_none());
}

#[test]
fn unload_row_removes_the_key() {
    let mut view: KeysView =
        fold([created(personal_key(org_a(), id(0x100), 7, "Laptop")), created(personal_key(org_a(), id(0x101), 7, "Desktop"))]);

    view.unload_row(&positioned(1, &id(0x100).to_string()));

    assert!(view.get(id(0x100)).is_none());
    assert!(view.get(id(0x101)).is_some(), "other keys stay");
    assert_eq!(view.row_keys(), vec![positioned(2, &id(0x101).to_string())]);
}

#[test]
fn unload_row_of_an_unknown_or_malformed_key_changes_nothing() {
    let mut view: KeysView = fold([created(personal_key(org_a(), id(0x100), 7, "Laptop"))]);
    let before = view.clone();

    view.unload_row(&positioned(1, &id(0x101).to_string()));
    view.unload_row(&positioned(1, "not-a-uuid"));
    view.unload_row(&id(0x100).to_string());
    view.unload_row("garbage");

    assert_eq!(view, before);
}

#[test]
fn unload_row_of_a_stale_position_leaves_the_key() {
    let mut view: KeysView = fold([created(personal_key(org_a(), id(0x100), 7, "Laptop"))]);
    let before = view.clone();

    view.unload_row(&positioned(2, &id(0x100).to_string()));

    assert_eq!(view, before);
}

#[test]
fn rows_load_back_into_an_equal_keys_view() {
    let view: KeysView = fold(a_busy_history());

    assert_eq!(round_trip_all_rows(&view), view);
}

#[test]
fn a_row_keeps_sub_second_timestamps_and_the_actor() {
    let creator = Actor::ServiceAccount { organization_id: org_a(), service_account_id: id(0x201), api_key_id: id(0x103) };
    let mut event = recorded_by(1, creator, created(personal_key(org_a(), id(0x100), 7, "Laptop")));
    event.recorded_at += Duration::microseconds(123_456);
    let mut view = KeysView::default();
    view.apply(&event, &mut Vec::new());

    assert_eq!(round_trip_all_rows(&view), view);
}

#[test]
fn a_row_keeps_the_position_and_stream_version() {
    let mut view = KeysView::default();
    let mut event = recorded(41, created(personal_key(org_a(), id(0x100), 7, "Laptop")));
    event.stream_version = 3;
    view.apply(&event, &mut Vec::new());

    let copy = round_trip_all_rows(&view);

    let key = copy.get(id(0x100)).unwrap();
    assert_eq!((key.position, key.stream_version), (41, 3));
    assert_eq!(copy.row_keys(), vec![positioned(41, &id(0x100).to_string())]);
}

#[test]
fn touched_rows_alone_rebuild_an_equal_keys_view() {
    let (original, rebuilt) = round_trip_touched::<KeysView>(a_busy_history());

    assert_eq!(rebuilt, original);
}

#[test]
fn garbage_row_is_an_error_naming_the_keys_view() {
    let mut view = KeysView::default();

    let key = positioned(1, &id(0x100).to_string());

    let err = view.load_row(&key, b"\xff not json").unwrap_err();

    assert_eq!(err.projection, "keys");
    assert_eq!(err.key, key);
    assert!(err.to_string().contains("keys"), "{err}");
    assert!(view.is_empty());
}

#[test]
fn a_rotated_key_accepts_its_previous_token_only_until_the_grace_period_ends() {
    let key = personal_key(org_a(), id(0x100), 1, "laptop");
    let old = format!("token-{}", id(0x100));
    let view: KeysView = fold([created(key), rotated(org_a(), id(0x100), &old, "new", Some(day(2025, 6, 1)), None)]);
    let key = view.get(id(0x100)).unwrap_or_else(|| panic!("the key is gone"));

    assert!(key.accepts(&digest_hash("new"), day(2025, 5, 1)));
    assert!(key.accepts(&digest_hash(&old), day(2025, 5, 31)));
    assert!(!key.accepts(&digest_hash(&old), day(2025, 6, 1)), "the grace period's end is the first instant it fails");
    assert!(!key.accepts(&digest_hash("other"), day(2025, 5, 1)));
    assert_eq!(key.grace_period_ends_at, Some(day(2025, 6, 1)));
    assert_eq!(key.expires_at, day(2027, 1, 1));
    assert!(key.rotated_at.is_some() && key.updated_at == key.rotated_at.unwrap_or_default());
}

#[test]
fn a_rotation_without_grace_accepts_only_the_new_token() {
    let old = format!("token-{}", id(0x100));
    let view: KeysView =
        fold([created(personal_key(org_a(), id(0x100), 1, "laptop")), rotated(org_a(), id(0x100), &old, "new", None, None)]);
    let key = view.get(id(0x100)).unwrap_or_else(|| panic!("the key is gone"));

    assert!(!key.accepts(&digest_hash(&old), day(2000, 1, 1)));
    assert!(key.accepts(&digest_hash("new"), day(2000, 1, 1)));
    assert_eq!(key.grace_period_ends_at, None);
}

#[test]
fn the_end_of_a_grace_period_forgets_the_token_and_the_moment() {
    let old = format!("token-{}", id(0x100));
    let view: KeysView = fold([
        created(personal_key(org_a(), id(0x100), 1, "laptop")),
        rotated(org_a(), id(0x100), &old, "new", Some(day(2025, 6, 1)), None),
        grace_period_ended(org_a(), id(0x100), &old, day(2025, 6, 1)),
    ]);
    let key = view.get(id(0x100)).unwrap_or_else(|| panic!("the key is gone"));

    assert_eq!(key.previous_token_digest, None);
    assert_eq!(key.grace_period_ends_at, None, "non-null only while a previous token still works");
}

// ---------------------------------------------------------------------------------------------
// Slices: each organization's keys in creation order, whole and by kind, user and team

fn names_in(view: &KeysView, org: uuid::Uuid, slice: Slice) -> Vec<String> {
    view.oldest_first(org, slice, 0).map(|k| k.name.clone()).collect()
}

fn a_mixed_organization() -> Vec<Event> {
    vec![
        created(personal_key(org_a(), id(0x100), 7, "p7")),
        created(team_key(org_a(), id(0x101), id(0x50), id(0x201), "t50")),
        created(personal_key(org_b(), id(0x102), 7, "other tenant")),
        created(organization_key(org_a(), id(0x103), id(0x203), "o")),
        created(personal_key(org_a(), id(0x104), 8, "p8")),
        created(personal_key(org_a(), id(0x105), 7, "p7 again")),
    ]
}

#[test]
fn slices_hold_an_organizations_keys_oldest_first_and_count_them() {
    let view: KeysView = fold(a_mixed_organization());

    assert_eq!(names_in(&view, org_a(), Slice::All), ["p7", "t50", "o", "p8", "p7 again"], "never another tenant's");
    assert_eq!(names_in(&view, org_a(), Slice::Kind(ApiKeyKind::Personal)), ["p7", "p8", "p7 again"]);
    assert_eq!(names_in(&view, org_a(), Slice::User(ApiKeyKind::Personal, 7)), ["p7", "p7 again"]);
    assert_eq!(names_in(&view, org_a(), Slice::User(ApiKeyKind::Team, 1)), ["t50"], "a team key's creator");
    assert_eq!(names_in(&view, org_a(), Slice::Team(ApiKeyKind::Team, id(0x50))), ["t50"]);
    assert_eq!(view.count(org_a(), Slice::All), 5);
    assert_eq!(view.count(org_a(), Slice::Kind(ApiKeyKind::Team)), 1);
    assert_eq!(view.count(org_a(), Slice::Team(ApiKeyKind::Team, id(0x51))), 0);
    assert_eq!(view.count(org_b(), Slice::User(ApiKeyKind::Personal, 7)), 1);
}

#[test]
fn a_walk_skips_from_either_end() {
    let view: KeysView = fold(a_mixed_organization());

    let newest: Vec<String> = view.newest_first(org_a(), Slice::All, 1).map(|k| k.name.clone()).collect();
    assert_eq!(newest, ["p8", "o", "t50", "p7"]);
    let oldest: Vec<String> = view.oldest_first(org_a(), Slice::All, 3).map(|k| k.name.clone()).collect();
    assert_eq!(oldest, ["p8", "p7 again"]);
    assert_eq!(view.oldest_first(org_a(), Slice::All, 9).count() + view.newest_first(org_a(), Slice::All, 5).count(), 0);
}

#[test]
fn creation_order_is_created_at_then_position_even_when_the_clock_stepped_back() {
    let mut view = KeysView::default();
    let mut touched = Vec::new();
    for (position, name, seconds) in [(1, "first", 10), (2, "clock stepped back", 5), (3, "same instant, later", 10)] {
        let mut event = recorded(position, created(personal_key(org_a(), id(0x100 + u128::from(position)), 7, name)));
        event.recorded_at = log_start() + Duration::seconds(seconds);
        view.apply(&event, &mut touched);
    }

    assert_eq!(names_in(&view, org_a(), Slice::All), ["clock stepped back", "first", "same instant, later"]);
}

#[test]
fn a_revoked_key_leaves_every_slice_and_changes_move_none() {
    let revoked = personal_key(org_a(), id(0x104), 8, "p8");
    let mut events = a_mixed_organization();
    events.push(rotated(org_a(), id(0x100), "token-a", "token-b", None, None));
    events.push(Event::ApiKeyRevoked(revocation_of(revoked)));
    let view: KeysView = fold(events);

    assert_eq!(names_in(&view, org_a(), Slice::All), ["p7", "t50", "o", "p7 again"]);
    assert_eq!(view.count(org_a(), Slice::User(ApiKeyKind::Personal, 8)), 0);
    assert_eq!(view.count(org_a(), Slice::Kind(ApiKeyKind::Personal)), 2);
}

#[test]
fn rows_loaded_in_any_order_and_again_give_the_same_slices() {
    let original: KeysView = fold(a_mixed_organization());
    let mut rows: Vec<String> = original.row_keys();
    rows.reverse();
    let mut loaded = KeysView::default();
    for key in rows.iter().chain(&rows) {
        let value = original.encode_row(key).unwrap_or_default();
        loaded.load_row(key, &value).unwrap_or_else(|e| panic!("{e}"));
    }

    assert_eq!(loaded, original);
    assert_eq!(names_in(&loaded, org_a(), Slice::All), names_in(&original, org_a(), Slice::All));
    assert_eq!(loaded.count(org_a(), Slice::User(ApiKeyKind::Personal, 7)), 2, "a row loaded twice is one key");
}

#[test]
fn a_copy_of_the_view_changes_apart_from_the_original() {
    let old = format!("token-{}", id(0x100));
    let original: KeysView = fold([created(personal_key(org_a(), id(0x100), 1, "laptop"))]);
    let mut copy = original.clone();

    copy.apply(&recorded(2, rotated(org_a(), id(0x100), &old, "new", None, None)), &mut Vec::new());

    let before = original.get(id(0x100)).unwrap_or_else(|| panic!("the key is gone"));
    assert!(before.accepts(&digest_hash(&old), day(2025, 1, 1)), "the original still has the old token");
    assert_eq!(before.rotated_at, None);
    assert!(copy.get(id(0x100)).is_some_and(|k| k.accepts(&digest_hash("new"), day(2025, 1, 1))));
    assert_ne!(copy, original);
}
