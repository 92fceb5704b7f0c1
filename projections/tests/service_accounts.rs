//! Service accounts: given accounts created, then the identity each team or organization key acts as.

mod support;

use chrono::Duration;
use keyledger_projections::projection::positioned;
use keyledger_projections::service_accounts::ServiceAccounts;
use keyledger_projections::{ApiKeyKind, Projection};
use support::*;

#[test]
fn team_account_is_shown_with_its_key_and_team() {
    let accounts: ServiceAccounts = fold([account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5)))]);

    let account = accounts.get(id(0x200)).expect("the account exists");
    assert_eq!(account.id, id(0x200));
    assert_eq!(account.organization_id, org_a());
    assert_eq!(account.api_key_id, id(0x102));
    assert_eq!(account.kind, ApiKeyKind::Team);
    assert_eq!(account.group_id, Some(id(0x5)));
    assert_eq!((account.role_id, account.on_call_role_id), (None, None));
}

#[test]
fn organization_account_is_shown_with_its_roles() {
    let accounts: ServiceAccounts = fold([account_created(organization_account(org_a(), id(0x201), id(0x103), id(0x1), Some(id(0x4))))]);

    let account = accounts.get(id(0x201)).unwrap();
    assert_eq!(account.kind, ApiKeyKind::Organization);
    assert_eq!(account.api_key_id, id(0x103));
    assert_eq!(account.group_id, None);
    assert_eq!(account.role_id, Some(id(0x1)));
    assert_eq!(account.on_call_role_id, Some(id(0x4)));
}

#[test]
fn created_at_is_when_the_account_was_recorded() {
    let mut accounts = ServiceAccounts::default();
    let event = recorded(3, account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5))));

    accounts.apply(&event, &mut Vec::new());

    assert_eq!(accounts.get(id(0x200)).unwrap().created_at, log_start() + Duration::seconds(2));
}

#[test]
fn account_keeps_the_position_and_stream_version_of_its_creation() {
    let mut accounts = ServiceAccounts::default();
    let mut event = recorded(8, account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5))));
    event.stream_version = 1;

    accounts.apply(&event, &mut Vec::new());

    let account = accounts.get(id(0x200)).unwrap();
    assert_eq!((account.position, account.stream_version), (8, 1));
}

#[test]
fn an_unknown_account_is_not_found() {
    let accounts: ServiceAccounts = fold([account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5)))]);

    assert!(accounts.get(id(0x201)).is_none());
    assert!(accounts.get(id(0x102)).is_none(), "a key id is not an account id");
}

#[test]
fn a_key_alone_creates_no_account() {
    let accounts: ServiceAccounts = fold([created(team_key(org_a(), id(0x102), id(0x5), id(0x200), "Deploy"))]);

    assert!(accounts.get(id(0x200)).is_none());
    assert!(accounts.row_keys().is_empty());
}

#[test]
fn service_account_created_touches_exactly_its_row() {
    let mut accounts = ServiceAccounts::default();

    let touched = touched_by(&mut accounts, 4, account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5))));

    assert_eq!(touched, vec![positioned(4, &id(0x200).to_string())]);
    assert_eq!(touched, vec![format!("00000000000000000004/{}", id(0x200))]);
    assert_eq!(accounts.row_keys(), touched);
}

#[test]
fn other_events_touch_nothing() {
    let mut accounts = ServiceAccounts::default();

    let touched = touched_per_event(
        &mut accounts,
        [
            organization_created(org_a(), "acme"),
            team_created(org_a(), id(0x5), "platform"),
            created(team_key(org_a(), id(0x102), id(0x5), id(0x200), "Deploy")),
        ],
    );

    assert!(touched.iter().all(Vec::is_empty), "{touched:?}");
    assert_eq!(accounts, ServiceAccounts::default());
}

#[test]
fn row_keys_are_the_account_ids_at_their_creation_positions() {
    let accounts: ServiceAccounts = fold(a_busy_history());

    assert_eq!(
        accounts.row_keys(),
        vec![positioned(24, &id(0x200).to_string()), positioned(26, &id(0x201).to_string()), positioned(29, &id(0x202).to_string()),]
    );
}

#[test]
fn row_keys_sort_by_creation_position_not_by_account_id() {
    let accounts: ServiceAccounts = fold([
        account_created(team_account(org_a(), id(0x202), id(0x102), id(0x5))),
        account_created(team_account(org_a(), id(0x200), id(0x100), id(0x5))),
        account_created(team_account(org_a(), id(0x201), id(0x101), id(0x5))),
    ]);

    assert_eq!(
        accounts.row_keys(),
        vec![positioned(1, &id(0x202).to_string()), positioned(2, &id(0x200).to_string()), positioned(3, &id(0x201).to_string()),]
    );
}

#[test]
fn encode_row_of_an_unknown_or_malformed_key_is_none() {
    let accounts: ServiceAccounts = fold([account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5)))]);

    assert!(accounts.encode_row(&positioned(1, &id(0x200).to_string())).is_some());
    assert!(accounts.encode_row(&positioned(1, &id(0x201).to_string())).is_none());
    assert!(accounts.encode_row(&positioned(1, "not-a-uuid")).is_none());
    assert!(accounts.encode_row(&id(0x200).to_string()).is_none(), "an unpositioned (old-format) key");
    assert!(accounts.encode_row("not-a-uuid").is_none());
}

#[test]
fn encode_row_of_another_position_is_none() {
    let accounts: ServiceAccounts = fold([account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5)))]);

    assert!(accounts.encode_row(&positioned(2, &id(0x200).to_string())).is_none());
}

#[test]
fn unload_row_removes_the_account() {
    let mut accounts: ServiceAccounts = fold([
        account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5))),
        account_created(organization_account(org_a(), id(0x201), id(0x103), id(0x1), None)),
    ]);

    accounts.unload_row(&positioned(1, &id(0x200).to_string()));

    assert!(accounts.get(id(0x200)).is_none());
    assert!(accounts.get(id(0x201)).is_some(), "other accounts stay");
    assert_eq!(accounts.row_keys(), vec![positioned(2, &id(0x201).to_string())]);
}

#[test]
fn unload_row_of_an_unknown_or_malformed_key_changes_nothing() {
    let mut accounts: ServiceAccounts = fold([account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5)))]);
    let before = accounts.clone();

    accounts.unload_row(&positioned(1, &id(0x201).to_string()));
    accounts.unload_row(&positioned(1, "not-a-uuid"));
    accounts.unload_row(&id(0x200).to_string());
    accounts.unload_row("garbage");

    assert_eq!(accounts, before);
}

#[test]
fn unload_row_of_a_stale_position_leaves_the_account() {
    let mut accounts: ServiceAccounts = fold([account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5)))]);
    let before = accounts.clone();

    accounts.unload_row(&positioned(2, &id(0x200).to_string()));

    assert_eq!(accounts, before);
}

#[test]
fn rows_load_back_into_equal_service_accounts() {
    let accounts: ServiceAccounts = fold(a_busy_history());

    assert_eq!(round_trip_all_rows(&accounts), accounts);
}

#[test]
fn a_row_keeps_the_position_and_stream_version() {
    let mut accounts = ServiceAccounts::default();
    let mut event = recorded(17, account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5))));
    event.stream_version = 2;
    accounts.apply(&event, &mut Vec::new());

    let copy = round_trip_all_rows(&accounts);

    let account = copy.get(id(0x200)).unwrap();
    assert_eq!((account.position, account.stream_version), (17, 2));
    assert_eq!(copy, accounts);
}

#[test]
fn touched_rows_alone_rebuild_equal_service_accounts() {
    let (original, rebuilt) = round_trip_touched::<ServiceAccounts>(a_busy_history());

    assert_eq!(rebuilt, original);
}

#[test]
fn garbage_row_is_an_error_naming_the_service_accounts() {
    let mut accounts = ServiceAccounts::default();

    let key = positioned(1, &id(0x200).to_string());

    let err = accounts.load_row(&key, b"\xff not json").unwrap_err();

    assert_eq!(err.projection, "service_accounts");
    assert_eq!(err.key, key);
    assert!(err.to_string().contains("service_accounts"), "{err}");
    assert_eq!(accounts, ServiceAccounts::default());
}
