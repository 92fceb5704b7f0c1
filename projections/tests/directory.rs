//! Directory: given directory events, then organizations, roles, users and teams.

mod support;

use keyledger_projections::directory::Directory;
use keyledger_projections::{Permission, Projection};
use support::*;

const ALL: [Permission; 4] = [Permission::Create, Permission::Read, Permission::Update, Permission::Delete];

fn org(directory: &Directory) -> &keyledger_projections::directory::Organization {
    directory.organization(org_a()).expect("organization A exists")
}

#[test]
fn organization_created_is_found_by_id_and_by_its_exact_name() {
    let directory: Directory = fold([organization_created(org_a(), "acme")]);

    let by_id = directory.organization(org_a()).expect("by id");
    assert_eq!(by_id.id, org_a());
    assert_eq!(by_id.name, "acme");
    assert!(by_id.grace_period);
    assert_eq!(directory.organization_by_name("acme").map(|o| o.id), Some(org_a()));
    assert!(directory.organization_by_name("ACME").is_none(), "organization names match exactly");
    assert!(directory.organization(org_b()).is_none());
}

#[test]
fn organization_created_starts_empty() {
    let directory: Directory = fold([organization_created(org_a(), "acme")]);

    let org = org(&directory);
    assert!(org.roles.is_empty() && org.on_call_roles.is_empty() && org.users.is_empty() && org.teams.is_empty());
}

#[test]
fn organization_settings_changed_sets_the_grace_period() {
    let off: Directory = fold([organization_created(org_a(), "acme"), grace_period_set(org_a(), false)]);
    assert!(!org(&off).grace_period);

    let on: Directory = fold([organization_created_without_grace(org_a(), "acme"), grace_period_set(org_a(), true)]);
    assert!(org(&on).grace_period);
}

#[test]
fn role_defined_is_found_by_id_by_slug_and_gives_its_slug() {
    let role = id(0x1);
    let directory: Directory = fold([organization_created(org_a(), "acme"), role_defined(org_a(), role, "observer", &[Permission::Read])]);

    let org = org(&directory);
    let by_id = org.role(&role.to_string()).expect("by id");
    assert_eq!(by_id.id, role);
    assert_eq!(by_id.slug, "observer");
    assert_eq!(by_id.name, "observer role");
    assert_eq!(by_id.api_keys_permissions, vec![Permission::Read]);
    assert_eq!(org.role("observer").map(|r| r.id), Some(role));
    assert_eq!(org.role_slug(role), Some("observer"));
    assert!(org.role("admin").is_none());
    assert!(org.role(&id(0x99).to_string()).is_none());
    assert_eq!(org.role_slug(id(0x99)), None);
}

#[test]
fn role_defined_twice_redefines_the_role() {
    let role = id(0x1);
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        role_defined(org_a(), role, "writer", &ALL),
        role_defined(org_a(), role, "reader", &[Permission::Read]),
    ]);

    let org = org(&directory);
    assert_eq!(org.roles.len(), 1, "same id: one role, redefined");
    let redefined = org.role(&role.to_string()).unwrap();
    assert_eq!(redefined.slug, "reader");
    assert_eq!(redefined.api_keys_permissions, vec![Permission::Read]);
    assert!(org.role("writer").is_none(), "the old slug is gone");
    assert_eq!(org.role("reader").map(|r| r.id), Some(role));
    assert_eq!(org.role_slug(role), Some("reader"));
}

#[test]
fn on_call_role_defined_is_found_by_id_and_by_slug() {
    let on_call = id(0x4);
    let directory: Directory = fold([organization_created(org_a(), "acme"), on_call_role_defined(org_a(), on_call, "responder")]);

    let org = org(&directory);
    let by_id = org.on_call_role(&on_call.to_string()).expect("by id");
    assert_eq!((by_id.id, by_id.slug.as_str()), (on_call, "responder"));
    assert_eq!(org.on_call_role("responder").map(|r| r.id), Some(on_call));
    assert!(org.on_call_role("commander").is_none());
    assert!(org.role("responder").is_none(), "on-call roles are not roles");
}

#[test]
fn user_joined_is_found_by_email_case_insensitively() {
    let (role, on_call) = (id(0x1), id(0x4));
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        role_defined(org_a(), role, "admin", &ALL),
        user_joined(org_a(), 7, "Ada@Acme.test", role, Some(on_call)),
    ]);

    let user = org(&directory).user_by_email("ada@ACME.TEST").expect("case-insensitive email");
    assert_eq!(user.id, 7);
    assert_eq!(user.email, "Ada@Acme.test");
    assert_eq!(user.role_id, role);
    assert_eq!(user.on_call_role_id, Some(on_call));
    assert_eq!(org(&directory).role_slug(user.role_id), Some("admin"));
    assert!(org(&directory).user_by_email("bob@acme.test").is_none());
}

#[test]
fn user_changed_replaces_email_and_roles() {
    let (user_role, admin_role, on_call) = (id(0x1), id(0x2), id(0x4));
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        user_joined(org_a(), 7, "ada@acme.test", user_role, Some(on_call)),
        user_changed(org_a(), 7, "ada.lovelace@acme.test", admin_role, None),
    ]);

    let org = org(&directory);
    assert!(org.user_by_email("ada@acme.test").is_none(), "the old email no longer matches");
    let user = org.user_by_email("ada.lovelace@acme.test").expect("the new email matches");
    assert_eq!((user.id, user.role_id, user.on_call_role_id), (7, admin_role, None));
    assert_eq!(org.users.len(), 1);
}

#[test]
fn user_removed_drops_the_user() {
    let role = id(0x1);
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        user_joined(org_a(), 7, "ada@acme.test", role, None),
        user_joined(org_a(), 8, "bob@acme.test", role, None),
        user_removed(org_a(), 7),
    ]);

    let org = org(&directory);
    assert!(org.user_by_email("ada@acme.test").is_none());
    assert!(org.user_by_email("bob@acme.test").is_some(), "other users stay");
}

#[test]
fn user_removed_also_leaves_every_team_as_member_and_admin() {
    let (role, platform, ops) = (id(0x1), id(0x5), id(0x6));
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        user_joined(org_a(), 7, "ada@acme.test", role, None),
        user_joined(org_a(), 8, "bob@acme.test", role, None),
        team_created(org_a(), platform, "platform"),
        team_created(org_a(), ops, "ops"),
        membership_changed(org_a(), platform, &[7, 8], &[7]),
        membership_changed(org_a(), ops, &[7, 8], &[7, 8]),
        user_removed(org_a(), 7),
    ]);

    let org = org(&directory);
    let platform = org.team("platform").unwrap();
    assert_eq!(platform.user_ids.iter().copied().collect::<Vec<_>>(), vec![8]);
    assert!(platform.admin_ids.is_empty());
    let ops = org.team("ops").unwrap();
    assert_eq!(ops.user_ids.iter().copied().collect::<Vec<_>>(), vec![8]);
    assert_eq!(ops.admin_ids.iter().copied().collect::<Vec<_>>(), vec![8]);
}

#[test]
fn team_created_is_found_by_id_and_by_slug_without_members() {
    let team = id(0x5);
    let directory: Directory = fold([organization_created(org_a(), "acme"), team_created(org_a(), team, "platform")]);

    let org = org(&directory);
    let by_id = org.team(&team.to_string()).expect("by id");
    assert_eq!((by_id.id, by_id.slug.as_str(), by_id.name.as_str()), (team, "platform", "platform team"));
    assert!(by_id.user_ids.is_empty() && by_id.admin_ids.is_empty());
    assert_eq!(org.team("platform").map(|t| t.id), Some(team));
    assert!(org.team("ops").is_none());
}

#[test]
fn team_membership_changed_replaces_the_whole_membership() {
    let team = id(0x5);
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        team_created(org_a(), team, "platform"),
        membership_changed(org_a(), team, &[1, 2, 3], &[1, 2]),
        membership_changed(org_a(), team, &[3, 4], &[4]),
    ]);

    let team = org(&directory).team("platform").unwrap();
    assert_eq!(team.user_ids.iter().copied().collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(team.admin_ids.iter().copied().collect::<Vec<_>>(), vec![4]);
}

#[test]
fn team_membership_changed_for_an_unknown_team_creates_nothing() {
    let directory: Directory = fold([organization_created(org_a(), "acme"), membership_changed(org_a(), id(0x5), &[1], &[1])]);

    assert!(org(&directory).teams.is_empty());
}

#[test]
fn team_deleted_removes_only_that_team() {
    let (platform, ops) = (id(0x5), id(0x6));
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        team_created(org_a(), platform, "platform"),
        team_created(org_a(), ops, "ops"),
        membership_changed(org_a(), platform, &[1], &[1]),
        team_deleted(org_a(), platform),
    ]);

    let org = org(&directory);
    assert!(org.team("platform").is_none());
    assert!(org.team(&platform.to_string()).is_none());
    assert_eq!(org.team("ops").map(|t| t.id), Some(ops));
}

#[test]
fn events_for_an_unknown_organization_are_ignored() {
    let unknown = org_b();
    let role = id(0x1);
    let given_events = [
        grace_period_set(unknown, false),
        role_defined(unknown, role, "admin", &ALL),
        on_call_role_defined(unknown, id(0x4), "responder"),
        user_joined(unknown, 1, "ada@acme.test", role, None),
        user_changed(unknown, 1, "ada@acme.test", role, None),
        user_removed(unknown, 1),
        team_created(unknown, id(0x5), "platform"),
        membership_changed(unknown, id(0x5), &[1], &[1]),
        team_deleted(unknown, id(0x5)),
    ];
    let mut directory: Directory = fold([organization_created(org_a(), "acme")]);
    let before = directory.clone();

    let touched = touched_per_event(&mut directory, given_events);

    assert_eq!(directory, before, "nothing changed");
    assert!(directory.organization(unknown).is_none(), "no organization springs into being");
    assert!(touched.iter().all(Vec::is_empty), "no row touched: {touched:?}");
}

#[test]
fn events_of_one_organization_do_not_reach_another() {
    let role = id(0x1);
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        organization_created(org_b(), "globex"),
        role_defined(org_b(), role, "admin", &ALL),
        user_joined(org_b(), 1, "dee@globex.test", role, None),
        team_created(org_b(), id(0x5), "platform"),
    ]);

    let a = org(&directory);
    assert!(a.role("admin").is_none() && a.user_by_email("dee@globex.test").is_none() && a.team("platform").is_none());
    let b = directory.organization(org_b()).unwrap();
    assert!(b.role("admin").is_some() && b.user_by_email("dee@globex.test").is_some() && b.team("platform").is_some());
}

#[test]
fn every_directory_event_touches_its_organizations_row() {
    let (role, team) = (id(0x1), id(0x5));
    let mut directory = Directory::default();

    let touched = touched_per_event(
        &mut directory,
        [
            organization_created(org_a(), "acme"),
            grace_period_set(org_a(), false),
            role_defined(org_a(), role, "admin", &ALL),
            on_call_role_defined(org_a(), id(0x4), "responder"),
            user_joined(org_a(), 1, "ada@acme.test", role, None),
            user_changed(org_a(), 1, "ada@acme.test", role, None),
            team_created(org_a(), team, "platform"),
            membership_changed(org_a(), team, &[1], &[1]),
            user_removed(org_a(), 1),
            team_deleted(org_a(), team),
        ],
    );

    for (i, keys) in touched.iter().enumerate() {
        assert_eq!(keys, &vec![org_a().to_string()], "event #{}", i + 1);
    }
}

#[test]
fn key_and_service_account_events_leave_the_directory_alone() {
    let mut directory: Directory = fold([organization_created(org_a(), "acme")]);
    let before = directory.clone();

    let touched = touched_per_event(
        &mut directory,
        [
            created(organization_key(org_a(), id(0x100), id(0x200), "Terraform")),
            account_created(organization_account(org_a(), id(0x200), id(0x100), id(0x1), None)),
        ],
    );

    assert_eq!(directory, before);
    assert!(touched.iter().all(Vec::is_empty), "{touched:?}");
}

#[test]
fn row_keys_are_the_sorted_organization_ids() {
    let directory: Directory = fold([organization_created(org_b(), "globex"), organization_created(org_a(), "acme")]);

    assert_eq!(directory.row_keys(), vec![org_a().to_string(), org_b().to_string()]);
}

#[test]
fn encode_row_of_an_unknown_or_malformed_key_is_none() {
    let directory: Directory = fold([organization_created(org_a(), "acme")]);

    assert!(directory.encode_row(&org_b().to_string()).is_none());
    assert!(directory.encode_row("not-a-uuid").is_none());
}

#[test]
fn rows_load_back_into_an_equal_directory() {
    let directory: Directory = fold(a_busy_history());
    assert_eq!(directory.row_keys().len(), 2);

    assert_eq!(round_trip_all_rows(&directory), directory);
}

#[test]
fn touched_rows_alone_rebuild_an_equal_directory() {
    let (original, rebuilt) = round_trip_touched::<Directory>(a_busy_history());

    assert_eq!(rebuilt, original);
}

#[test]
fn garbage_row_is_an_error_naming_the_directory() {
    let mut directory = Directory::default();

    let err = directory.load_row(&org_a().to_string(), b"\xff not json").unwrap_err();

    assert_eq!(err.projection, "directory");
    assert_eq!(err.key, org_a().to_string());
    assert!(err.to_string().contains("directory"), "{err}");
    assert_eq!(directory, Directory::default(), "nothing half-loaded");
}

// ---------------------------------------------------------------------------------------------
// Stream versions

#[test]
fn stream_versions_record_each_directory_streams_last_version() {
    let (role, team) = (id(0x1), id(0x5));
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        role_defined(org_a(), role, "admin", &ALL),
        role_defined(org_a(), role, "admin", &[Permission::Read]),
        user_joined(org_a(), 7, "ada@acme.test", role, None),
        team_created(org_a(), team, "platform"),
        membership_changed(org_a(), team, &[7], &[7]),
        team_deleted(org_a(), team),
        grace_period_set(org_a(), false),
    ]);

    let expected: Vec<(String, u64)> = vec![
        (format!("organization-{}", org_a()), 2),
        (format!("role-{role}"), 2),
        (format!("team-{team}"), 3),
        (format!("user-{}-7", org_a()), 1),
    ];
    let got: Vec<(String, u64)> = org(&directory).stream_versions.clone().into_iter().collect();
    assert_eq!(got, expected);
    for (stream, version) in &expected {
        assert_eq!(directory.stream_version(org_a(), stream), *version, "{stream}");
    }
}

#[test]
fn stream_version_of_an_unknown_stream_or_organization_is_zero() {
    let directory: Directory = fold([organization_created(org_a(), "acme")]);

    assert_eq!(directory.stream_version(org_a(), &format!("organization-{}", org_a())), 1);
    assert_eq!(directory.stream_version(org_a(), &format!("team-{}", id(0x5))), 0);
    assert_eq!(directory.stream_version(org_b(), &format!("organization-{}", org_b())), 0);
    assert_eq!(directory.stream_version(org_b(), &format!("organization-{}", org_a())), 0, "asked of another organization");
}

#[test]
fn stream_versions_of_one_organization_are_not_anothers() {
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        organization_created(org_b(), "globex"),
        user_joined(org_b(), 1, "dee@globex.test", id(0x3), None),
    ]);

    let user_b = format!("user-{}-1", org_b());
    assert_eq!(directory.stream_version(org_b(), &user_b), 1);
    assert_eq!(directory.stream_version(org_a(), &user_b), 0);
    assert_eq!(org(&directory).stream_versions.len(), 1, "only organization A's own stream");
}

#[test]
fn key_and_account_events_record_no_stream_version_in_the_directory() {
    let directory: Directory = fold([
        organization_created(org_a(), "acme"),
        created(organization_key(org_a(), id(0x100), id(0x200), "Terraform")),
        account_created(organization_account(org_a(), id(0x200), id(0x100), id(0x1), None)),
    ]);

    assert_eq!(org(&directory).stream_versions.len(), 1);
    assert_eq!(directory.stream_version(org_a(), &format!("api_key-{}", id(0x100))), 0);
}

#[test]
fn stream_versions_survive_the_encode_and_load_round_trip() {
    let directory: Directory = fold(a_busy_history());
    let versions = org(&directory).stream_versions.clone();
    assert!(versions.len() > 5, "{versions:?}");

    let mut copy = Directory::default();
    let value = directory.encode_row(&org_a().to_string()).unwrap();
    copy.load_row(&org_a().to_string(), &value).unwrap();

    assert_eq!(org(&copy).stream_versions, versions);
    for (stream, version) in &versions {
        assert_eq!(copy.stream_version(org_a(), stream), *version, "{stream}");
    }
    assert_eq!(round_trip_all_rows(&directory), directory);
}

#[test]
fn a_row_written_before_stream_versions_loads_with_none() {
    let directory: Directory = fold([organization_created(org_a(), "acme"), team_created(org_a(), id(0x5), "platform")]);
    let mut value: serde_json::Value = serde_json::from_slice(&directory.encode_row(&org_a().to_string()).unwrap()).unwrap();
    value.as_object_mut().unwrap().remove("stream_versions").expect("the row holds stream_versions");

    let mut copy = Directory::default();
    copy.load_row(&org_a().to_string(), &serde_json::to_vec(&value).unwrap()).unwrap();

    let loaded = org(&copy);
    assert!(loaded.stream_versions.is_empty());
    assert!(loaded.team("platform").is_some(), "the rest of the row still loads");
    assert_eq!(copy.stream_version(org_a(), &format!("team-{}", id(0x5))), 0);
}

// ---------------------------------------------------------------------------------------------
// unload_row

#[test]
fn unload_row_removes_the_organization() {
    let mut directory: Directory = fold([organization_created(org_a(), "acme"), organization_created(org_b(), "globex")]);

    directory.unload_row(&org_a().to_string());

    assert!(directory.organization(org_a()).is_none());
    assert!(directory.organization_by_name("acme").is_none());
    assert!(directory.organization(org_b()).is_some(), "other organizations stay");
    assert_eq!(directory.row_keys(), vec![org_b().to_string()]);
    assert_eq!(directory.stream_version(org_a(), &format!("organization-{}", org_a())), 0);
}

#[test]
fn unload_row_of_an_unknown_or_malformed_key_changes_nothing() {
    let mut directory: Directory = fold([organization_created(org_a(), "acme")]);
    let before = directory.clone();

    directory.unload_row(&org_b().to_string());
    directory.unload_row("not-a-uuid");
    directory.unload_row(&format!("00000000000000000001/{}", org_a()));

    assert_eq!(directory, before);
}
