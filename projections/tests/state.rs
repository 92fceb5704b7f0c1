//! State: every projection together, and rebuilding it from the rows that events touched.

mod support;

use std::collections::{BTreeSet, HashMap};

use keyledger_projections::event::ApiKeyCreated;
use keyledger_projections::projection::positioned;
use keyledger_projections::state::{Touched, PROJECTIONS};
use keyledger_projections::{Event, Permission, Projection, ProjectionId, RecordedEvent, State};
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
        if let Some(value) = original.encode_row(*projection, key) {
            rebuilt.load_row(*projection, key, &value).unwrap_or_else(|e| panic!("{projection} row {key:?} does not load back: {e}"));
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
    assert_eq!(state.expiry_schedule.next(), Some((day(2025, 6, 30), id(0x104))));
    assert_eq!(state.expiry_schedule.next_grace_period_end(), Some(day(2025, 2, 1)));
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

    let projections: Vec<&str> = touched.iter().map(|(p, _)| p.name()).collect();
    assert_eq!(projections, vec!["name_index", "token_index", "keys", "expiry_schedule"]);
    assert!(touched.iter().all(|(_, row)| row.starts_with("00000000000000000001/")), "{touched:?}");
    assert!(touched.contains(&(ProjectionId::TokenIndex, positioned(1, &key.token_digest))));
    assert!(touched.contains(&(ProjectionId::KeysView, positioned(1, &id(0x100).to_string()))));
}

#[test]
fn service_account_created_touches_only_its_row() {
    let mut state = State::default();
    let mut touched = Touched::new();

    state.apply(&recorded(1, account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5)))), &mut touched);

    assert_eq!(touched, vec![(ProjectionId::ServiceAccounts, positioned(1, &id(0x200).to_string()))]);
}

#[test]
fn directory_event_touches_only_the_organization_row() {
    let mut state = State::default();
    let mut touched = Touched::new();

    state.apply(&recorded(1, organization_created(org_a(), "acme")), &mut touched);
    state.apply(&recorded(2, team_created(org_a(), id(0x5), "platform")), &mut touched);

    assert_eq!(touched, vec![(ProjectionId::Directory, org_a().to_string()), (ProjectionId::Directory, org_a().to_string())]);
}

#[test]
fn apply_appends_to_touched_without_clearing_it() {
    let mut state = State::default();
    let mut touched: Touched = vec![(ProjectionId::KeysView, "earlier".to_owned())];

    state.apply(&recorded(1, organization_created(org_a(), "acme")), &mut touched);

    assert_eq!(touched[0], (ProjectionId::KeysView, "earlier".to_owned()));
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
    let touched: BTreeSet<(ProjectionId, String)> = touched.into_iter().collect();

    for projection in PROJECTIONS {
        for key in state.row_keys(projection) {
            assert!(touched.contains(&(projection, key.clone())), "{projection} row {key:?} never reported");
        }
    }
}

#[test]
fn every_touched_row_is_listed_exactly_when_it_still_encodes() {
    let (state, touched) = applied(&given(a_busy_history()));

    for (projection, key) in &touched {
        let listed = state.row_keys(*projection).contains(key);
        let encodes = state.encode_row(*projection, key).is_some();
        assert_eq!(listed, encodes, "{projection} row {key:?}: listed {listed}, encodes {encodes}");
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

    state.apply_to(ProjectionId::KeysView, &event, &mut touched);

    assert!(state.keys.get(id(0x100)).is_some());
    assert_eq!(state.tokens, Default::default());
    assert_eq!(state.name_index, Default::default());
    assert_eq!(state.expiry_schedule, Default::default());
    assert_eq!(touched, vec![(ProjectionId::KeysView, positioned(1, &id(0x100).to_string()))]);
}

#[test]
fn catching_up_each_projection_alone_equals_apply_whether_rows_are_tracked_or_not() {
    let events = given(a_busy_history());
    let (expected, _) = applied(&events);

    let mut tracked = State::default();
    let mut untracked = State::default();
    let mut touched = Touched::new();
    for projection in PROJECTIONS {
        for e in &events {
            tracked.apply_to(projection, e, &mut touched);
            untracked.fold_to(projection, e);
        }
    }
    tracked.position = expected.position;
    untracked.position = expected.position;

    assert_eq!(tracked, expected);
    assert_eq!(untracked, expected);
}

#[test]
fn an_unknown_projection_name_names_no_projection() {
    assert_eq!(ProjectionId::from_name("nonsense"), None);
    assert_eq!(ProjectionId::from_name(""), None);
    for projection in PROJECTIONS {
        assert_eq!(ProjectionId::from_name(projection.name()), Some(projection));
        assert_eq!(projection.to_string(), projection.name());
    }
}

#[test]
fn projection_names_are_the_row_prefixes_of_each_projection() {
    use keyledger_projections::{
        directory::Directory, expiry_schedule::ExpirySchedule, keys_view::KeysView, name_index::NameIndex,
        service_accounts::ServiceAccounts, token_index::TokenIndex,
    };
    let names = PROJECTIONS.map(ProjectionId::name);
    assert_eq!(names, [Directory::NAME, NameIndex::NAME, TokenIndex::NAME, KeysView::NAME, ServiceAccounts::NAME, ExpirySchedule::NAME]);
    assert_eq!(names, ["directory", "name_index", "token_index", "keys", "service_accounts", "expiry_schedule"]);
}

#[test]
fn row_keys_are_those_of_each_projection() {
    let (state, _) = applied(&given(a_busy_history()));

    assert_eq!(state.row_keys(ProjectionId::Directory), state.directory.row_keys());
    assert_eq!(state.row_keys(ProjectionId::NameIndex), state.name_index.row_keys());
    assert_eq!(state.row_keys(ProjectionId::TokenIndex), state.tokens.row_keys());
    assert_eq!(state.row_keys(ProjectionId::KeysView), state.keys.row_keys());
    assert_eq!(state.row_keys(ProjectionId::ServiceAccounts), state.service_accounts.row_keys());
    assert_eq!(state.row_keys(ProjectionId::ExpirySchedule), state.expiry_schedule.row_keys());
}

#[test]
fn garbage_row_is_an_error_naming_its_projection() {
    for projection in PROJECTIONS {
        let mut state = State::default();

        let err = state.load_row(projection, "garbage", b"\xff not a row").unwrap_err();

        assert_eq!(err.projection, projection.name());
        assert_eq!(err.key, "garbage");
        assert!(err.to_string().contains(projection.name()), "{err}");
        assert_eq!(state, State::default(), "{projection}: nothing half-loaded");
    }
}

// ---------------------------------------------------------------------------------------------
// unload_row

#[test]
fn unloading_every_row_of_every_projection_leaves_an_empty_state() {
    let (mut state, _) = applied(&given(a_busy_history()));

    for projection in PROJECTIONS {
        for key in state.row_keys(projection) {
            state.unload_row(projection, &key);
        }
    }

    state.position = 0;
    assert_eq!(state, State::default());
}

#[test]
fn unload_row_reaches_only_the_named_projection() {
    let (original, _) = applied(&given(a_busy_history()));

    for projection in PROJECTIONS {
        let mut state = original.clone();
        let key = state.row_keys(projection).remove(0);

        state.unload_row(projection, &key);

        assert!(!state.row_keys(projection).contains(&key), "{projection} row {key:?} still listed");
        assert_eq!(state.encode_row(projection, &key), None, "{projection} row {key:?} still encodes");
        for other in PROJECTIONS.iter().filter(|p| **p != projection) {
            assert_eq!(state.row_keys(*other), original.row_keys(*other), "unloading {projection} touched {other}");
        }
    }
}

#[test]
fn unload_row_of_an_unknown_row_changes_nothing() {
    let (original, _) = applied(&given(a_busy_history()));
    let mut state = original.clone();

    for projection in PROJECTIONS {
        state.unload_row(projection, "garbage");
        state.unload_row(projection, &positioned(1, &id(0x999).to_string()));
    }

    assert_eq!(state, original);
}

// ---------------------------------------------------------------------------------------------
// Journal replay: what the writer stores and recovery reads back

/// One journal record per batch of `batch` events, as the writer makes it: the events are
/// applied, the rows they touched are deduplicated and sorted, and each is encoded against the
/// state after the batch (`None`: the row is gone).
type Journal = Vec<Vec<(ProjectionId, String, Option<Vec<u8>>)>>;

fn journal(events: &[RecordedEvent], batch: usize) -> (State, Journal) {
    let mut state = State::default();
    let mut journal = Journal::new();
    for chunk in events.chunks(batch) {
        let mut touched = Touched::new();
        for e in chunk {
            state.apply(e, &mut touched);
        }
        let rows: BTreeSet<(ProjectionId, String)> = touched.into_iter().collect();
        journal.push(
            rows.into_iter()
                .map(|(projection, key)| {
                    let value = state.encode_row(projection, &key);
                    (projection, key, value)
                })
                .collect(),
        );
    }
    (state, journal)
}

/// A fresh state from the journal alone: `load_row` for every value, `unload_row` for every `None`.
fn replayed(journal: &Journal) -> State {
    let mut state = State::default();
    for record in journal {
        for (projection, key, value) in record {
            match value {
                Some(value) => {
                    state.load_row(*projection, key, value).unwrap_or_else(|e| panic!("{projection} row {key:?} does not load back: {e}"))
                }
                None => state.unload_row(*projection, key),
            }
        }
    }
    state
}

/// The busy history, then names, tokens and expiries taken again by later events (which the
/// service refuses, but which the projections keep apart by position): the journal then holds
/// rows that are gone by the end of their batch.
fn a_history_with_reclaims() -> Vec<Event> {
    let mut events = a_busy_history();
    events.extend([
        // "Laptop" of user 1 in organization A, first held by key 0x100.
        created(ApiKeyCreated { token_digest: digest_of("fresh-1"), ..personal_key(org_a(), id(0x110), 1, "LAPTOP") }),
        // The token of key 0x101.
        created(ApiKeyCreated {
            token_digest: digest_of(&format!("token-{}", id(0x101))),
            ..personal_key(org_a(), id(0x111), 1, "fresh 2")
        }),
        // Key 0x104 created again: a new row everywhere, an earlier expiry.
        created(ApiKeyCreated { expires_at: day(2025, 2, 1), ..personal_key(org_b(), id(0x104), 1, "Laptop") }),
        // And the same name twice in a row, so that both claims can fall into one batch.
        created(ApiKeyCreated { token_digest: digest_of("fresh-3"), ..personal_key(org_b(), id(0x112), 1, "twice") }),
        created(ApiKeyCreated { token_digest: digest_of("fresh-4"), ..personal_key(org_b(), id(0x113), 1, "Twice") }),
        user_changed(org_a(), 1, "ada@acme.test", id(0x2), None),
    ]);
    events
}

fn assert_journal_replays_to_the_original(events: &[RecordedEvent]) {
    for batch in [1, 2, 3, 7, events.len()] {
        let (original, journal) = journal(events, batch);

        let mut rebuilt = replayed(&journal);

        assert_eq!(rebuilt.position, 0, "the position is not a row");
        rebuilt.position = original.position;
        assert_eq!(rebuilt, original, "batches of {batch}");
        for projection in PROJECTIONS {
            assert_eq!(rebuilt.row_keys(projection), original.row_keys(projection), "{projection}, batches of {batch}");
        }
    }
}

#[test]
fn a_journal_of_touched_rows_replays_into_an_equal_state() {
    assert_journal_replays_to_the_original(&given(a_busy_history()));
}

#[test]
fn a_journal_with_rows_gone_by_the_end_of_their_batch_replays_into_an_equal_state() {
    let events = given(a_history_with_reclaims());
    let (_, whole) = journal(&events, events.len());
    let gone: Vec<&(ProjectionId, String, Option<Vec<u8>>)> = whole[0].iter().filter(|(_, _, v)| v.is_none()).collect();
    assert!(
        gone.iter().any(|(p, _, _)| *p == ProjectionId::NameIndex) && gone.iter().any(|(p, _, _)| *p == ProjectionId::TokenIndex),
        "the history must exercise unload_row: {gone:?}"
    );
    assert!(gone.iter().any(|(p, _, _)| *p == ProjectionId::ExpirySchedule), "{gone:?}");

    assert_journal_replays_to_the_original(&events);
}

#[test]
fn a_journal_replayed_in_the_order_events_touched_rows_equals_the_original() {
    // Without the writer's sorting: each touched row in apply order, encoded at the end.
    let events = given(a_history_with_reclaims());
    let (original, touched) = applied(&events);
    let journal: Journal = vec![touched
        .into_iter()
        .map(|(projection, key)| {
            let value = original.encode_row(projection, &key);
            (projection, key, value)
        })
        .collect()];

    let mut rebuilt = replayed(&journal);

    rebuilt.position = original.position;
    assert_eq!(rebuilt, original);
}

#[test]
fn a_replayed_state_numbers_streams_on_where_the_original_left_off() {
    let events = given(a_history_with_reclaims());
    let (original, journal) = journal(&events, 4);

    let rebuilt = replayed(&journal);

    for e in &events {
        assert_eq!(rebuilt.stream_version(&e.event), original.stream_version(&e.event), "{}", e.stream);
    }
}

// ---------------------------------------------------------------------------------------------
// Stream versions

/// Records each event as the writer does, numbering its stream on from `State::stream_version`,
/// and checks that number against an independent count of the events of each stream.
fn record_as_the_writer(events: impl IntoIterator<Item = Event>) -> (State, HashMap<String, u64>) {
    let mut state = State::default();
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (i, event) in events.into_iter().enumerate() {
        let count = counts.entry(event.stream()).or_insert(0);
        assert_eq!(state.stream_version(&event), *count, "before event #{} on {}", i + 1, event.stream());
        *count += 1;
        let mut e = recorded(i as u64 + 1, event);
        e.stream_version = *count;
        state.apply(&e, &mut Touched::new());
        assert_eq!(state.stream_version(&e.event), *count, "after event #{} on {}", i + 1, e.stream);
    }
    (state, counts)
}

#[test]
fn a_new_stream_is_at_version_zero() {
    let state = State::default();

    assert_eq!(state.stream_version(&organization_created(org_a(), "acme")), 0);
    assert_eq!(state.stream_version(&created(personal_key(org_a(), id(0x100), 1, "Laptop"))), 0);
    assert_eq!(state.stream_version(&account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5)))), 0);
    assert_eq!(state.stream_version(&role_defined(org_a(), id(0x1), "admin", &[])), 0);

    let (state, _) = applied(&given(a_busy_history()));
    assert_eq!(state.stream_version(&created(personal_key(org_a(), id(0x1ff), 1, "New"))), 0, "an unknown key");
    assert_eq!(state.stream_version(&account_created(team_account(org_a(), id(0x2ff), id(0x1ff), id(0x5)))), 0);
    assert_eq!(state.stream_version(&team_created(org_a(), id(0x9), "new")), 0, "an unknown team");
    assert_eq!(state.stream_version(&user_joined(org_a(), 99, "new@acme.test", id(0x1), None)), 0);
    assert_eq!(state.stream_version(&organization_created(id(0xc0), "initech")), 0, "an unknown organization");
}

#[test]
fn stream_versions_count_the_events_of_each_stream_of_a_busy_history() {
    let (_, counts) = record_as_the_writer(a_busy_history());

    assert_eq!(counts[&format!("organization-{}", org_b())], 2, "created, settings changed");
    assert_eq!(counts[&format!("role-{}", id(0x2))], 2, "the user role, defined twice");
    assert_eq!(counts[&format!("user-{}-2", org_a())], 2, "joined, changed");
    assert_eq!(counts[&format!("team-{}", id(0x5))], 2, "created, membership changed");
}

#[test]
fn stream_versions_count_on_for_directory_streams() {
    let (a, b) = (org_a(), org_b());
    let (role, on_call, team) = (id(0x1), id(0x4), id(0x5));
    let (state, _) = record_as_the_writer([
        organization_created(a, "acme"),
        organization_created(b, "globex"),
        grace_period_set(a, false),
        grace_period_set(a, true),
        role_defined(a, role, "admin", &[Permission::Read]),
        role_defined(a, role, "admin", &[Permission::Read, Permission::Create]),
        role_defined(a, role, "boss", &[]),
        on_call_role_defined(a, on_call, "responder"),
        user_joined(a, 1, "ada@acme.test", role, None),
        user_joined(b, 1, "dee@globex.test", id(0x3), None),
        user_changed(a, 1, "ada@acme.test", role, Some(on_call)),
        team_created(a, team, "platform"),
        membership_changed(a, team, &[1], &[1]),
        membership_changed(a, team, &[], &[]),
        user_removed(a, 1),
        team_deleted(a, team),
    ]);

    assert_eq!(state.stream_version(&grace_period_set(a, false)), 3);
    assert_eq!(state.stream_version(&grace_period_set(b, false)), 1);
    assert_eq!(state.stream_version(&role_defined(a, role, "admin", &[])), 3);
    assert_eq!(state.stream_version(&on_call_role_defined(a, on_call, "responder")), 1);
    assert_eq!(state.stream_version(&user_joined(a, 1, "ada@acme.test", role, None)), 3, "kept after removal");
    assert_eq!(state.stream_version(&user_changed(b, 1, "dee@globex.test", id(0x3), None)), 1, "per organization");
    assert_eq!(state.stream_version(&team_created(a, team, "platform")), 4, "kept after deletion");
}

#[test]
fn stream_versions_of_keys_and_service_accounts_are_their_own() {
    let (a, team) = (org_a(), id(0x5));
    let (state, _) = record_as_the_writer([
        organization_created(a, "acme"),
        team_created(a, team, "platform"),
        created(team_key(a, id(0x102), team, id(0x200), "Deploy")),
        account_created(team_account(a, id(0x200), id(0x102), team)),
        created(personal_key(a, id(0x100), 1, "Laptop")),
    ]);

    assert_eq!(state.stream_version(&created(personal_key(a, id(0x100), 1, "Laptop"))), 1);
    assert_eq!(state.stream_version(&created(team_key(a, id(0x102), team, id(0x200), "Deploy"))), 1);
    assert_eq!(state.stream_version(&account_created(team_account(a, id(0x200), id(0x102), team))), 1);
    assert_eq!(state.stream_version(&grace_period_set(a, true)), 1, "keys do not count on the organization");
    assert!(
        !state
            .directory
            .organization(a)
            .unwrap()
            .stream_versions
            .keys()
            .any(|s| s.starts_with("api_key-") || s.starts_with("service_account-")),
        "the directory keeps no key or account streams"
    );
}

#[test]
fn stream_versions_survive_rebuilding_from_touched_rows() {
    let (original, touched) = applied(&given(a_busy_history()));
    let rebuilt = rebuilt_from_rows(&original, &touched);

    for event in a_busy_history() {
        assert_eq!(rebuilt.stream_version(&event), original.stream_version(&event), "{}", event.stream());
        assert!(original.stream_version(&event) >= 1, "{}", event.stream());
    }
}
