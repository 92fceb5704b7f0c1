//! Name index: given keys created, then which (organization, kind, scope, name) is taken.

mod support;

use keyledger_projections::name_index::{name_key, scope_of, NameIndex, NameScope};
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
    let index: NameIndex = fold([
        created(personal_key(org_a(), id(0x100), 7, "Laptop")),
        created(personal_key(org_a(), id(0x101), 8, "laptop")),
    ]);

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
fn api_key_created_touches_exactly_its_name_key() {
    let mut index = NameIndex::default();

    let touched = touched_by(&mut index, 1, created(team_key(org_a(), id(0x102), id(0x5), id(0x200), " Deploy ")));

    assert_eq!(touched, vec![team(org_a(), id(0x5), "deploy")]);
    assert_eq!(index.row_keys(), touched);
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
fn row_keys_are_sorted() {
    let index: NameIndex = fold(a_busy_history());

    let keys = index.row_keys();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 6);
}

#[test]
fn encode_row_is_the_holders_id_and_none_for_a_free_name() {
    let index: NameIndex = fold([created(personal_key(org_a(), id(0x100), 7, "Laptop"))]);

    assert_eq!(index.encode_row(&personal(org_a(), 7, "laptop")), Some(id(0x100).to_string().into_bytes()));
    assert_eq!(index.encode_row(&personal(org_a(), 7, "desktop")), None);
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
    let key = personal(org_a(), 7, "laptop");

    let err = index.load_row(&key, b"\xff\xfe not a uuid").unwrap_err();

    assert_eq!(err.projection, "name_index");
    assert_eq!(err.key, key);
    assert!(err.to_string().contains("name_index"), "{err}");
    assert_eq!(index.holder(&key), None);
}
