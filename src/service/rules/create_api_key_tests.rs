//! Given state → when a create command → then events or a rejection.

use chrono::Duration;
use keyledger_projections::event::ServiceAccountCreated;
use keyledger_projections::{Actor, ApiKeyKind, Event};

use super::super::given::{acme_user, attributes, created, now, Given, PLATFORM};
use super::super::Rejection;
use super::*;

fn titles(rejection: Rejection) -> Vec<String> {
    match rejection {
        Rejection::Invalid(problems) => problems.into_iter().map(|p| p.title).collect(),
        other => panic!("expected a 422, got {other:?}"),
    }
}

/// The service account of a team or organization key.
fn service_account(key: &ApiKeyCreated) -> ServiceAccountCreated {
    ServiceAccountCreated {
        service_account_id: key.service_account_id.unwrap_or_else(|| panic!("{key:?} has no service account")),
        organization_id: key.organization_id,
        api_key_id: key.api_key_id,
        kind: key.kind,
        group_id: key.group_id,
        role_id: key.role_id,
        on_call_role_id: key.on_call_role_id,
    }
}

fn team(kind_name: &str) -> NewApiKey {
    NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", kind_name) }
}

#[test]
fn a_user_creates_a_personal_key_for_themselves() {
    let mut given = Given::acme_and_globex();
    let cmd = given.create_by("carol@acme.test", attributes("personal", "  deploy bot  "));
    // Names are stored trimmed; a personal key has no service account.
    let key = created(&given, &cmd, "deploy bot", 3);
    let carol = acme_user(&given, 3, Given::login("carol@acme.test"));
    given.when(&cmd).then_expect(carol, vec![Event::ApiKeyCreated(key)]);
}

#[test]
fn a_team_key_comes_with_a_service_account_of_that_team() {
    let mut given = Given::acme_and_globex();
    let cmd = given.create_by("carol@acme.test", team("ci"));
    let key = ApiKeyCreated {
        kind: ApiKeyKind::Team,
        group_id: Some(PLATFORM.parse().unwrap()),
        service_account_id: Some(cmd.service_account_id),
        ..created(&given, &cmd, "ci", 3)
    };
    let account = service_account(&key);
    assert_eq!(account.kind, ApiKeyKind::Team);
    let carol = acme_user(&given, 3, Given::login("carol@acme.test"));
    given.when(&cmd).then_expect(carol, vec![Event::ApiKeyCreated(key), Event::ServiceAccountCreated(account)]);
}

#[test]
fn team_keys_may_be_created_by_owners_admins_and_team_admins_only() {
    let mut given = Given::acme_and_globex();
    for email in ["alice@acme.test", "bob@acme.test", "carol@acme.test"] {
        let cmd = given.create_by(email, team(email));
        assert!(decide(&cmd, &given.state, now()).is_ok(), "{email} may create platform team keys");
    }
    let member = given.create_by("dave@acme.test", team("dave"));
    assert!(matches!(decide(&member, &given.state, now()), Err(Rejection::Forbidden(_))));
}

#[test]
fn a_team_of_another_organization_does_not_exist() {
    let mut given = Given::acme_and_globex();
    let cmd = given.create_by(
        "alice@acme.test",
        NewApiKey { group_id: Some("9a3e4b2c-1d5f-4a6b-8c7d-0e1f2a3b4c55".into()), ..attributes("team", "x") },
    );
    assert_eq!(titles(decide(&cmd, &given.state, now()).unwrap_err()), ["Group must exist"]);
    let missing = given.create_by("alice@acme.test", attributes("team", "x"));
    assert_eq!(titles(decide(&missing, &given.state, now()).unwrap_err()), ["Group must exist"]);
}

#[test]
fn organization_keys_need_an_owner_or_admin() {
    let mut given = Given::acme_and_globex();
    for email in ["carol@acme.test", "erin@acme.test", "grace@acme.test"] {
        let cmd = given.create_by(email, attributes("organization", "org"));
        assert!(matches!(decide(&cmd, &given.state, now()), Err(Rejection::Forbidden(_))), "{email}");
    }
    let cmd = given.create_by("bob@acme.test", attributes("organization", "org"));
    assert!(decide(&cmd, &given.state, now()).is_ok());
}

#[test]
fn organization_keys_default_to_the_user_role_and_accept_slugs() {
    let mut given = Given::acme_and_globex();
    let org = given.state.directory.organization_by_name("Acme").cloned().unwrap();
    let plain = given.create_by("alice@acme.test", attributes("organization", "plain"));
    let chosen = given.create_by(
        "alice@acme.test",
        NewApiKey { role_id: Some("auditor".into()), on_call_role_id: Some("responder".into()), ..attributes("organization", "chosen") },
    );
    let alice = acme_user(&given, 1, Given::login("alice@acme.test"));
    let organization_key = |cmd: &CreateApiKey, name: &str| ApiKeyCreated {
        kind: ApiKeyKind::Organization,
        service_account_id: Some(cmd.service_account_id),
        ..created(&given, cmd, name, 1)
    };

    let key = ApiKeyCreated { role_id: org.role("user").map(|r| r.id), on_call_role_id: None, ..organization_key(&plain, "plain") };
    let account = service_account(&key);
    given.when(&plain).then_expect(alice.clone(), vec![Event::ApiKeyCreated(key), Event::ServiceAccountCreated(account)]);

    let key = ApiKeyCreated {
        role_id: org.role("auditor").map(|r| r.id),
        on_call_role_id: org.on_call_role("responder").map(|r| r.id),
        ..organization_key(&chosen, "chosen")
    };
    assert!(key.role_id.is_some() && key.on_call_role_id.is_some(), "the fixture has both roles");
    let account = service_account(&key);
    given.when(&chosen).then_expect(alice, vec![Event::ApiKeyCreated(key), Event::ServiceAccountCreated(account)]);
}

#[test]
fn unknown_roles_are_422() {
    let mut given = Given::acme_and_globex();
    let cmd = given.create_by(
        "alice@acme.test",
        NewApiKey { role_id: Some("wizard".into()), on_call_role_id: Some("nope".into()), ..attributes("organization", "o") },
    );
    assert_eq!(titles(decide(&cmd, &given.state, now()).unwrap_err()), ["Role must exist", "On-call role must exist"]);
}

#[test]
fn fields_of_other_kinds_are_refused() {
    let mut given = Given::acme_and_globex();
    let cmd = given.create_by(
        "alice@acme.test",
        NewApiKey { role_id: Some("admin".into()), group_id: Some(PLATFORM.into()), ..attributes("personal", "p") },
    );
    assert_eq!(
        titles(decide(&cmd, &given.state, now()).unwrap_err()),
        ["Group is only allowed for team keys", "Role is only allowed for organization keys"]
    );
}

#[test]
fn service_accounts_cannot_create_personal_keys() {
    let mut given = Given::acme_and_globex();
    let admin_bot = NewApiKey { role_id: Some("admin".into()), ..attributes("organization", "admin bot") };
    let cmd = given.create_by("alice@acme.test", admin_bot);
    let decision = decide(&cmd, &given.state, now()).unwrap();
    given.accept(decision);
    let bot = Requester::Key(given.credential(cmd.api_key_id));

    let personal = CreateApiKey { requester: bot.clone(), ..given.create_by("alice@acme.test", attributes("personal", "p")) };
    assert!(matches!(decide(&personal, &given.state, now()), Err(Rejection::Forbidden(_))));
    let org_key = CreateApiKey { requester: bot, ..given.create_by("alice@acme.test", attributes("organization", "o")) };
    assert!(decide(&org_key, &given.state, now()).is_ok(), "an admin-role service account may create organization keys");
}

#[test]
fn observers_and_no_access_users_cannot_create_keys() {
    let mut given = Given::acme_and_globex();
    for email in ["erin@acme.test", "frank@acme.test"] {
        let cmd = given.create_by(email, attributes("personal", "mine"));
        assert!(matches!(decide(&cmd, &given.state, now()), Err(Rejection::Forbidden(_))), "{email}");
    }
}

#[test]
fn names_are_unique_per_kind_and_scope_ignoring_case_and_spaces() {
    let mut given = Given::acme_and_globex();
    let first = given.create_by("carol@acme.test", attributes("personal", "Deploy"));
    let decision = decide(&first, &given.state, now()).unwrap();
    given.accept(decision);

    let again = given.create_by("carol@acme.test", attributes("personal", "  deploy "));
    assert_eq!(titles(decide(&again, &given.state, now()).unwrap_err()), ["Name has already been taken"]);

    let other_user = given.create_by("dave@acme.test", attributes("personal", "deploy"));
    assert!(decide(&other_user, &given.state, now()).is_ok(), "scope is the user");
    let other_kind = given.create_by("carol@acme.test", team("deploy"));
    assert!(decide(&other_kind, &given.state, now()).is_ok(), "scope includes the kind");
    let other_org = given.create_by("ivy@globex.test", attributes("personal", "deploy"));
    assert!(decide(&other_org, &given.state, now()).is_ok());
}

#[test]
fn blank_and_overlong_names_are_refused() {
    let mut given = Given::acme_and_globex();
    for (name, title) in [
        (None, "Name can't be blank"),
        (Some("   ".to_owned()), "Name can't be blank"),
        (Some("n".repeat(256)), "Name is too long (maximum is 255 characters)"),
    ] {
        let cmd = given.create_by("carol@acme.test", NewApiKey { name, ..attributes("personal", "") });
        assert_eq!(titles(decide(&cmd, &given.state, now()).unwrap_err()), [title]);
    }
    let longest = given.create_by("carol@acme.test", attributes("personal", &format!("  {}  ", "é".repeat(255))));
    assert!(decide(&longest, &given.state, now()).is_ok(), "255 characters (not bytes) after trimming");
}

#[test]
fn expiry_must_be_future_and_within_five_calendar_years() {
    let mut given = Given::acme_and_globex();
    let limit = now().checked_add_months(Months::new(60)).unwrap();
    for (expires_at, title) in [
        (None, Some("Expires at can't be blank")),
        (Some("next tuesday".to_owned()), Some("Expires at is not a valid date-time")),
        (Some(now().to_rfc3339()), Some("Expires at must be in the future")),
        (Some((now() - Duration::days(1)).to_rfc3339()), Some("Expires at must be in the future")),
        (Some((limit + Duration::seconds(1)).to_rfc3339()), Some("Expires at must be within 5 years")),
        (Some(limit.to_rfc3339()), None),
        (Some("2027-01-01T10:00:00.123456789+02:00".to_owned()), None),
    ] {
        let cmd = given.create_by("carol@acme.test", NewApiKey { expires_at: expires_at.clone(), ..attributes("personal", "k") });
        match (decide(&cmd, &given.state, now()), title) {
            (Err(rejection), Some(title)) => assert_eq!(titles(rejection), [title], "{expires_at:?}"),
            (Ok(_), None) => {}
            (other, _) => panic!("{expires_at:?}: unexpected {other:?}"),
        }
    }
}

#[test]
fn offsets_are_normalized_to_utc_microseconds() {
    let mut given = Given::acme_and_globex();
    let cmd = given.create_by(
        "carol@acme.test",
        NewApiKey { expires_at: Some("2027-01-01T10:00:00.123456789+02:00".into()), ..attributes("personal", "k") },
    );
    let expires_at = "2027-01-01T08:00:00.123456Z".parse().unwrap();
    let key = ApiKeyCreated { expires_at, ..created(&given, &cmd, "k", 3) };
    assert_eq!(key.expires_at.to_rfc3339(), "2027-01-01T08:00:00.123456+00:00");
    let carol = acme_user(&given, 3, Given::login("carol@acme.test"));
    given.when(&cmd).then_expect(carol, vec![Event::ApiKeyCreated(key)]);
}

#[test]
fn descriptions_are_limited_to_a_thousand_characters() {
    let mut given = Given::acme_and_globex();
    let cmd = given.create_by("carol@acme.test", NewApiKey { description: Some("d".repeat(1001)), ..attributes("personal", "k") });
    assert_eq!(titles(decide(&cmd, &given.state, now()).unwrap_err()), ["Description is too long (maximum is 1000 characters)"]);
    let ok = given.create_by("carol@acme.test", NewApiKey { description: Some("d".repeat(1000)), ..attributes("personal", "k") });
    assert!(decide(&ok, &given.state, now()).is_ok());
}

#[test]
fn every_problem_is_reported_together_with_shape_problems_first() {
    let mut given = Given::acme_and_globex();
    let shape = Problem::attribute("colour", "Unknown attribute colour", "");
    let cmd = given.create_by(
        "carol@acme.test",
        NewApiKey { name: Some(" ".into()), expires_at: Some("soon".into()), problems: vec![shape], ..attributes("personal", "") },
    );
    assert_eq!(
        titles(decide(&cmd, &given.state, now()).unwrap_err()),
        ["Unknown attribute colour", "Name can't be blank", "Expires at is not a valid date-time"]
    );
}

#[test]
fn unknown_or_missing_kinds_are_422() {
    let mut given = Given::acme_and_globex();
    let cmd = given.create_by("carol@acme.test", NewApiKey { kind: Some("global".into()), ..attributes("personal", "k") });
    assert_eq!(titles(decide(&cmd, &given.state, now()).unwrap_err()), ["Kind is not included in the list"]);
    let cmd = given.create_by("carol@acme.test", NewApiKey { kind: None, ..attributes("personal", "k") });
    assert_eq!(titles(decide(&cmd, &given.state, now()).unwrap_err()), ["Kind can't be blank"]);
}

#[test]
fn forbidden_callers_learn_nothing_about_taken_names() {
    let mut given = Given::acme_and_globex();
    let cmd = given.create_by("alice@acme.test", attributes("organization", "secret"));
    let decision = decide(&cmd, &given.state, now()).unwrap();
    given.accept(decision);
    let probe = given.create_by("carol@acme.test", attributes("organization", "secret"));
    assert!(matches!(decide(&probe, &given.state, now()), Err(Rejection::Forbidden(_))));
}

#[test]
fn expired_or_removed_callers_are_unauthenticated() {
    let mut given = Given::acme_and_globex();
    let cmd = given.create_by("carol@acme.test", attributes("personal", "k"));
    given.when_at(&cmd, now() + Duration::days(31)).then_expect_rejection(Rejection::Unauthenticated);
    let org = given.state.directory.organization_by_name("Acme").map(|o| o.id).unwrap();
    given.record(Actor::Operator, vec![Event::UserRemoved(keyledger_projections::event::UserRemoved { organization_id: org, user_id: 3 })]);
    given.when(&cmd).then_expect_rejection(Rejection::Unauthenticated);
}

#[test]
fn an_operator_mints_personal_keys_for_a_user() {
    let mut given = Given::acme_and_globex();
    let cmd = CreateApiKey {
        requester: Requester::Operator { organization: "Acme".into(), email: "erin@acme.test".into() },
        ..given.create_by("alice@acme.test", attributes("personal", "erin's key"))
    };
    // Erin (5) is an observer: the role's permissions do not limit an operator.
    let key = created(&given, &cmd, "erin's key", 5);
    given.when(&cmd).then_expect(Actor::Operator, vec![Event::ApiKeyCreated(key)]);
}

#[test]
fn an_operator_names_an_existing_organization_and_user() {
    let mut given = Given::acme_and_globex();
    for (organization, email) in [("Initech", "erin@acme.test"), ("Acme", "nobody@acme.test"), ("Globex", "erin@acme.test")] {
        let cmd = CreateApiKey {
            requester: Requester::Operator { organization: organization.into(), email: email.into() },
            ..given.create_by("alice@acme.test", attributes("personal", "k"))
        };
        assert_eq!(decide(&cmd, &given.state, now()), Err(Rejection::NotFound), "{organization} {email}");
    }
}

#[test]
fn an_attribute_of_the_wrong_type_is_not_also_blank() {
    let mut given = Given::acme_and_globex();
    let problems = ["name", "kind", "expires_at"].map(|a| Problem::attribute(a, format!("{a} must be a string"), ""));
    let cmd = given.create_by(
        "carol@acme.test",
        NewApiKey { name: None, kind: None, expires_at: None, problems: problems.to_vec(), ..NewApiKey::default() },
    );
    assert_eq!(
        titles(decide(&cmd, &given.state, now()).unwrap_err()),
        ["name must be a string", "kind must be a string", "expires_at must be a string"]
    );
}
