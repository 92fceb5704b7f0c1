//! Name index: given keys created, then which (organization, kind, scope, name) is taken.

mod support;

use keyledger_projections::event::ApiKeyCreated;
use keyledger_projections::name_index::{name_key, scope_of, NameIndex, NameScope};
use keyledger_projections::projection::{positioned, split_positioned};
use keyledger_projections::{ApiKeyKind, Projection};
use support::*;

fn personal(org: uuid::Uuid, user: u64, name: &str) -> String {
    name_key(org, ApiKeyKind::Personal, NameScope::User(user), name)
}

fn team(org: uuid::Uuid, team: uuid::Uuid, name: &str) -> String {
    name_key(org, ApiKeyKind::Team, NameScope::Team(team), name)
}

fn organization(org: uuid::Uuid, name: &str) -> String {
    name_key(org, ApiKeyKind::Organization, NameScope::Organization, name)
}

#[test]
fn scope_of_a_personal_key_is_its_user() {
    assert_eq!(scope_of(ApiKeyKind::Personal, Some(7), None), NameScope::User(7));
}

#[test]
fn scope_of_a_team_key_is_its_team() {
    assert_eq!(scope_of(ApiKeyKind::Team, Some(7), Some(id(0x5))), NameScope::Team(id(0x5)));
}

#[test]
fn scope_of_an_organization_key_is_the_organization_even_with_a_creator() {
    assert_eq!(scope_of(ApiKeyKind::Organization, Some(7), None), NameScope::Organization);
    assert_eq!(scope_of(ApiKeyKind::Organization, Some(7), Some(id(0x5))), NameScope::Organization);
}

#[test]
fn name_key_ignores_case_and_surrounding_whitespace() {
    let canonical = personal(org_a(), 7, "deploy bot");

    assert_eq!(personal(org_a(), 7, "Deploy Bot"), canonical);
    assert_eq!(personal(org_a(), 7, "  DEPLOY BOT\t\n"), canonical);
    assert_ne!(personal(org_a(), 7, "deploy  bot"), canonical, "inner whitespace counts");
}

#[test]
fn name_key_is_organization_kind_scope_and_lowercased_name() {
    assert_eq!(personal(org_a(), 7, " Laptop "), format!("{}/personal/7/laptop", org_a()));
    assert_eq!(team(org_a(), id(0x5), "CI"), format!("{}/team/{}/ci", org_a(), id(0x5)));
    assert_eq!(organization(org_a(), "Terraform"), format!("{}/organization/{}/terraform", org_a(), org_a()));
}

#[test]
fn personal_key_name_is_held_by_its_key_in_its_users_scope() {
    let index: NameIndex = fold([created(personal_key(org_a(), id(0x100), 7, "Laptop"))]);

    assert_eq!(index.holder(&personal(org_a(), 7, "Laptop")), Some(id(0x100)));
}

#[test]
fn holder_is_found_whatever_the_case_and_padding_of_the_name() {
    let index: NameIndex = fold([created(personal_key(org_a(), id(0x100), 7, "  Deploy Bot "))]);

    assert_eq!(index.holder(&personal(org_a(), 7, "deploy bot")), Some(id(0x100)));
    assert_eq!(index.holder(&personal(org_a(), 7, "DEPLOY BOT")), Some(id(0x100)));
    assert_eq!(index.holder(&personal(org_a(), 7, "\tDeploy Bot")), Some(id(0x100)));
}

#[test]
fn non_ascii_names_are_compared_case_insensitively() {
    let index: NameIndex = fold([created(personal_key(org_a(), id(0x100), 7, "Ärger"))]);

    assert_eq!(index.holder(&personal(org_a(), 7, "ÄRGER")), Some(id(0x100)));
    assert_eq!(index.holder(&personal(org_a(), 7, "ärger")), Some(id(0x100)));
}

#[test]
fn team_key_name_is_held_in_its_teams_scope() {
    let index: NameIndex = fold([created(team_key(org_a(), id(0x102), id(0x5), id(0x200), "Deploy"))]);

    assert_eq!(index.holder(&team(org_a(), id(0x5), "deploy")), Some(id(0x102)));
    assert_eq!(index.holder(&personal(org_a(), 1, "deploy")), None, "not in its creator's scope");
}

#[test]
fn organization_key_name_is_held_in_the_organization_scope() {
    let index: NameIndex = fold([created(organization_key(org_a(), id(0x103), id(0x201), "Terraform"))]);

    assert_eq!(index.holder(&organization(org_a(), "terraform")), Some(id(0x103)));
    assert_eq!(index.holder(&personal(org_a(), 1, "terraform")), None, "not in its creator's scope");
}

#[test]
fn same_name_for_different_users_is_held_separately() {
    let index: NameIndex =
        fold([created(personal_key(org_a(), id(0x100), 7, "Laptop")), created(personal_key(org_a(), id(0x101), 8, "laptop"))]);

    assert_eq!(index.holder(&personal(org_a(), 7, "laptop")), Some(id(0x100)));
    assert_eq!(index.holder(&personal(org_a(), 8, "laptop")), Some(id(0x101)));
    assert_eq!(index.holder(&personal(org_a(), 9, "laptop")), None);
}

#[test]
fn same_name_for_different_teams_is_held_separately() {
    let index: NameIndex = fold([
        created(team_key(org_a(), id(0x102), id(0x5), id(0x200), "Deploy")),
        created(team_key(org_a(), id(0x103), id(0x6), id(0x201), "Deploy")),
    ]);

    assert_eq!(index.holder(&team(org_a(), id(0x5), "deploy")), Some(id(0x102)));
    assert_eq!(index.holder(&team(org_a(), id(0x6), "deploy")), Some(id(0x103)));
}

#[test]
fn same_name_for_different_kinds_is_held_separately() {
    let index: NameIndex = fold([
        created(personal_key(org_a(), id(0x100), 1, "CI")),
        created(team_key(org_a(), id(0x101), id(0x5), id(0x200), "CI")),
        created(organization_key(org_a(), id(0x102), id(0x201), "CI")),
    ]);

    assert_eq!(index.holder(&personal(org_a(), 1, "ci")), Some(id(0x100)));
    assert_eq!(index.holder(&team(org_a(), id(0x5), "ci")), Some(id(0x101)));
    assert_eq!(index.holder(&organization(org_a(), "ci")), Some(id(0x102)));
    assert_eq!(index.row_keys().len(), 3);
}

#[test]
fn same_name_in_different_organizations_is_held_separately() {
    let index: NameIndex = fold([
        created(organization_key(org_a(), id(0x100), id(0x200), "Terraform")),
        created(organization_key(org_b(), id(0x101), id(0x201), "Terraform")),
        created(personal_key(org_a(), id(0x102), 1, "Laptop")),
        created(personal_key(org_b(), id(0x103), 1, "Laptop")),
    ]);

    assert_eq!(index.holder(&organization(org_a(), "terraform")), Some(id(0x100)));
    assert_eq!(index.holder(&organization(org_b(), "terraform")), Some(id(0x101)));
    assert_eq!(index.holder(&personal(org_a(), 1, "laptop")), Some(id(0x102)));
    assert_eq!(index.holder(&personal(org_b(), 1, "laptop")), Some(id(0x103)), "user ids are per organization");
}

#[test]
fn api_key_created_touches_exactly_its_claim_positioned_name_key() {
    let mut index = NameIndex::default();

    let touched = touched_by(&mut index, 7, created(team_key(org_a(), id(0x102), id(0x5), id(0x200), " Deploy ")));

    assert_eq!(touched, vec![positioned(7, &team(org_a(), id(0x5), "deploy"))]);
    assert_eq!(touched, vec![format!("00000000000000000007/{}/team/{}/deploy", org_a(), id(0x5))]);
    assert_eq!(index.row_keys(), touched);
}

#[test]
fn a_positioned_row_key_splits_back_into_the_claim_position_and_the_whole_name_key() {
    let mut index = NameIndex::default();
    let name = personal(org_a(), 7, "laptop");

    let touched = touched_by(&mut index, 42, created(personal_key(org_a(), id(0x100), 7, "Laptop")));

    assert!(name.contains('/'), "the name key has slashes of its own: {name}");
    assert_eq!(split_positioned(&touched[0]), Some((42, name.as_str())));
}

#[test]
fn other_events_touch_nothing_and_take_no_name() {
    let mut index = NameIndex::default();

    let touched = touched_per_event(
        &mut index,
        [
            organization_created(org_a(), "acme"),
            team_created(org_a(), id(0x5), "platform"),
            account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5))),
        ],
    );

    assert!(touched.iter().all(Vec::is_empty), "{touched:?}");
    assert_eq!(index, NameIndex::default());
}

#[test]
fn row_keys_are_sorted_in_claim_position_order() {
    let index: NameIndex = fold(a_busy_history());

    let keys = index.row_keys();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 6);
    let positions: Vec<u64> = keys.iter().map(|k| split_positioned(k).unwrap().0).collect();
    assert_eq!(positions, vec![21, 22, 23, 25, 27, 28], "the positions of the six ApiKeyCreated");
}

#[test]
fn row_keys_sort_by_position_not_by_name() {
    // "zz" is claimed first, "aa" last: the rows append in claim order.
    let index: NameIndex = fold([
        created(personal_key(org_a(), id(0x100), 1, "zz")),
        created(personal_key(org_a(), id(0x101), 1, "mm")),
        created(personal_key(org_a(), id(0x102), 1, "aa")),
    ]);

    assert_eq!(
        index.row_keys(),
        vec![
            positioned(1, &personal(org_a(), 1, "zz")),
            positioned(2, &personal(org_a(), 1, "mm")),
            positioned(3, &personal(org_a(), 1, "aa")),
        ]
    );
}

#[test]
fn encode_row_is_the_holders_id_and_none_for_a_free_name() {
    let index: NameIndex = fold([created(personal_key(org_a(), id(0x100), 7, "Laptop"))]);

    assert_eq!(index.encode_row(&positioned(1, &personal(org_a(), 7, "laptop"))), Some(id(0x100).to_string().into_bytes()));
    assert_eq!(index.encode_row(&positioned(1, &personal(org_a(), 7, "desktop"))), None);
}

#[test]
fn encode_row_is_none_when_the_position_is_not_that_of_the_current_claim() {
    let index: NameIndex = fold([created(personal_key(org_a(), id(0x100), 7, "Laptop"))]);
    let name = personal(org_a(), 7, "laptop");

    assert_eq!(index.encode_row(&positioned(2, &name)), None, "a later position");
    assert_eq!(index.encode_row(&positioned(0, &name)), None, "an earlier position");
    assert_eq!(index.encode_row(&name), None, "an unpositioned (old-format) key");
    assert_eq!(index.encode_row("garbage"), None);
}

/// The same name claimed at position 1 by key 0x100, then at position 2 by key 0x101 (the
/// service refuses this; the projection must still keep the two rows apart).
fn reclaimed_name() -> NameIndex {
    fold([
        created(personal_key(org_a(), id(0x100), 7, "Laptop")),
        created(ApiKeyCreated { token_digest: digest_of("other"), ..personal_key(org_a(), id(0x101), 7, "LAPTOP") }),
    ])
}

#[test]
fn a_reclaimed_name_has_one_row_at_the_latest_claim_and_the_earlier_row_is_gone() {
    let index = reclaimed_name();
    let name = personal(org_a(), 7, "laptop");

    assert_eq!(index.holder(&name), Some(id(0x101)));
    assert_eq!(index.row_keys(), vec![positioned(2, &name)]);
    assert_eq!(index.encode_row(&positioned(1, &name)), None);
    assert_eq!(index.encode_row(&positioned(2, &name)), Some(id(0x101).to_string().into_bytes()));
}

#[test]
fn unload_row_removes_the_claim() {
    let mut index: NameIndex =
        fold([created(personal_key(org_a(), id(0x100), 7, "Laptop")), created(personal_key(org_a(), id(0x101), 8, "Laptop"))]);

    index.unload_row(&positioned(1, &personal(org_a(), 7, "laptop")));

    assert_eq!(index.holder(&personal(org_a(), 7, "laptop")), None);
    assert_eq!(index.holder(&personal(org_a(), 8, "laptop")), Some(id(0x101)), "other names stay");
    assert_eq!(index.row_keys(), vec![positioned(2, &personal(org_a(), 8, "laptop"))]);
}

#[test]
fn unload_row_of_a_stale_position_leaves_the_newer_claim() {
    let mut index = reclaimed_name();
    let before = index.clone();
    let name = personal(org_a(), 7, "laptop");

    index.unload_row(&positioned(1, &name));
    index.unload_row(&positioned(3, &name));

    assert_eq!(index, before, "neither an older nor a newer position is the current row");
    assert_eq!(index.holder(&name), Some(id(0x101)));
}

#[test]
fn unload_row_of_a_free_name_or_a_malformed_key_changes_nothing() {
    let mut index: NameIndex = fold([created(personal_key(org_a(), id(0x100), 7, "Laptop"))]);
    let before = index.clone();

    index.unload_row(&positioned(1, &personal(org_a(), 7, "desktop")));
    index.unload_row(&personal(org_a(), 7, "laptop"));
    index.unload_row("garbage");
    index.unload_row("");

    assert_eq!(index, before);
}

#[test]
fn rows_loaded_in_key_order_keep_the_latest_claim() {
    // Two stored rows for one name: loading them in key (= position) order ends on the newer.
    let name = personal(org_a(), 7, "laptop");
    let mut index = NameIndex::default();

    index.load_row(&positioned(1, &name), id(0x100).to_string().as_bytes()).unwrap();
    index.load_row(&positioned(2, &name), id(0x101).to_string().as_bytes()).unwrap();

    assert_eq!(index, reclaimed_name());
}

#[test]
fn rows_load_back_into_an_equal_name_index() {
    let index: NameIndex = fold(a_busy_history());

    assert_eq!(round_trip_all_rows(&index), index);
}

#[test]
fn touched_rows_alone_rebuild_an_equal_name_index() {
    let (original, rebuilt) = round_trip_touched::<NameIndex>(a_busy_history());

    assert_eq!(rebuilt, original);
}

#[test]
fn garbage_row_is_an_error_naming_the_name_index() {
    let mut index = NameIndex::default();
    let name = personal(org_a(), 7, "laptop");
    let key = positioned(1, &name);

    let err = index.load_row(&key, b"\xff\xfe not a uuid").unwrap_err();

    assert_eq!(err.projection, "name_index");
    assert_eq!(err.key, key);
    assert!(err.to_string().contains("name_index"), "{err}");
    assert_eq!(index.holder(&name), None);
}

#[test]
fn a_row_key_without_a_position_is_an_error_naming_the_name_index() {
    let mut index = NameIndex::default();

    let old_format = personal(org_a(), 7, "laptop");
    for key in ["garbage".to_owned(), format!("soon/{old_format}"), old_format.clone()] {
        let err = index.load_row(&key, id(0x100).to_string().as_bytes()).unwrap_err();

        assert_eq!(err.projection, "name_index", "{key}");
        assert_eq!(err.key, key);
    }
    assert_eq!(index, NameIndex::default());
}
