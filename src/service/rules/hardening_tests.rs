//! Given state → when an attacker's command → then the whole decision: the holes a leaked
//! secret, a demoted user or a runaway script would use (SECURITY.md), each closed.

use chrono::Duration;
use keyledger_projections::event::ApiKeyUpdated;
use keyledger_projections::{Actor, ApiKeyKind, Event};
use uuid::Uuid;

use super::caller::Credential;
use super::create_api_key::{self, CreateApiKey, NewApiKey};
use super::directory::{plan, DirectoryFile};
use super::given::{acme_user, attributes, created, now, organization, Given, PLATFORM};
use super::revoke_api_key::{self, RevokeApiKey};
use super::rotate_api_key::{self, RotateApiKey, Rotation};
use super::update_api_key::{self, KeyChanges, UpdateApiKey};
use super::{Decision, Rejection};

const SECURITY: &str = "0b7d7c5e-8f43-4f4e-b1a9-2f5f0c9d8a22";

fn carol() -> Uuid {
    Given::login("carol@acme.test")
}

fn rotate(given: &Given, caller: Credential, key: Uuid, minutes: i64, next: &[u8]) -> Result<Decision, Rejection> {
    let rotation = Rotation { grace_period_minutes: Some(minutes), ..Rotation::default() };
    rotate_api_key::decide(&RotateApiKey { caller, api_key_id: key, token_digest: blake3::hash(next), rotation }, &given.state, now())
}

fn create(given: &mut Given, email: &str, attributes: NewApiKey) -> Result<CreateApiKey, Rejection> {
    let cmd = given.create_by(email, attributes);
    let decision = create_api_key::decide(&cmd, &given.state, now())?;
    given.accept(decision);
    Ok(cmd)
}

fn titles(result: Result<Decision, Rejection>) -> Vec<String> {
    match result {
        Err(Rejection::Invalid(problems)) => problems.into_iter().map(|p| p.title).collect(),
        other => panic!("expected a 422, got {other:?}"),
    }
}

fn forbidden(result: Result<Decision, Rejection>) -> bool {
    matches!(result, Err(Rejection::Forbidden(_)))
}

/// The owner rotates a leaked key with a grace period; whoever holds the old secret then
/// tries every change. Each is refused, and the owner's new secret keeps working.
#[test]
fn a_superseded_secret_can_change_nothing() {
    let mut given = Given::acme_and_globex();
    let old = given.credential(carol());
    given.accept(rotate(&given, old, carol(), 60, b"owner's new secret").unwrap_or_else(|e| panic!("{e:?}")));
    let new = Credential { api_key_id: carol(), token_digest: blake3::hash(b"owner's new secret") };

    assert_eq!(rotate(&given, old, carol(), 0, b"thief's secret"), Err(Rejection::SupersededSecret), "the takeover");
    let update =
        UpdateApiKey { caller: old, api_key_id: carol(), changes: KeyChanges { name: Some("mine".into()), ..KeyChanges::default() } };
    given.when(&update).then_expect_rejection(Rejection::SupersededSecret);
    let revoke = RevokeApiKey { caller: old, api_key_id: carol() };
    given.when(&revoke).then_expect_rejection(Rejection::SupersededSecret);
    let mint =
        CreateApiKey { requester: create_api_key::Requester::Key(old), ..given.create_by("carol@acme.test", attributes("personal", "x")) };
    given.when(&mint).then_expect_rejection(Rejection::SupersededSecret);

    assert!(rotate(&given, new, carol(), 0, b"owner's third secret").is_ok(), "the current secret still rotates");
}

#[test]
fn a_retired_secret_is_not_a_caller_at_all() {
    let mut given = Given::acme_and_globex();
    let original = given.credential(carol());
    given.accept(rotate(&given, original, carol(), 60, b"second").unwrap_or_else(|e| panic!("{e:?}")));
    let second = Credential { api_key_id: carol(), token_digest: blake3::hash(b"second") };
    given.accept(rotate(&given, second, carol(), 60, b"third").unwrap_or_else(|e| panic!("{e:?}")));
    assert_eq!(rotate(&given, original, carol(), 0, b"x"), Err(Rejection::Unauthenticated));
}

/// Makes erin (observer) and frank (no access) admins of the security team.
fn observers_administer_security(given: &mut Given) {
    let mut file: DirectoryFile =
        serde_json::from_str(include_str!("../../../fixtures/directory.example.json")).unwrap_or_else(|e| panic!("fixture: {e}"));
    for team in file.teams.iter_mut().filter(|t| t.id.to_string() == SECURITY) {
        team.user_ids.extend([5, 6]);
        team.admin_ids.extend([5, 6]);
    }
    let events = plan(&file, &given.state, &mut Uuid::new_v4).unwrap_or_else(|e| panic!("{e}"));
    assert!(!events.is_empty());
    given.record(Actor::Operator, events);
}

#[test]
fn team_admins_without_the_api_keys_permission_manage_nothing() {
    let mut given = Given::acme_and_globex();
    observers_administer_security(&mut given);
    let security = |name: &str| NewApiKey { group_id: Some(SECURITY.into()), ..attributes("team", name) };
    let existing = create(&mut given, "bob@acme.test", security("pager")).unwrap_or_else(|e| panic!("{e:?}"));

    for email in ["erin@acme.test", "frank@acme.test"] {
        let cmd = given.create_by(email, security("mine"));
        assert!(forbidden(create_api_key::decide(&cmd, &given.state, now())), "{email} created a team key");
        let caller = given.credential(Given::login(email));
        let rename = KeyChanges { name: Some("renamed".into()), ..KeyChanges::default() };
        let update = UpdateApiKey { caller, api_key_id: existing.api_key_id, changes: rename };
        assert_eq!(update_api_key::decide(&update, &given.state, now()), Err(Rejection::NotFound), "{email}");
        let revoke = RevokeApiKey { caller, api_key_id: existing.api_key_id };
        assert_eq!(revoke_api_key::decide(&revoke, &given.state, now()), Err(Rejection::NotFound), "{email}");
    }
    let team_key = given.credential(existing.api_key_id);
    let revoke = RevokeApiKey { caller: team_key, api_key_id: existing.api_key_id };
    assert!(revoke_api_key::decide(&revoke, &given.state, now()).is_ok(), "the team's own service account still may");
    assert!(create(&mut given, "carol@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "ci") }).is_ok());
}

#[test]
fn nobody_grants_a_role_above_their_own() {
    let mut given = Given::acme_and_globex();
    let as_owner = |name: &str| NewApiKey { role_id: Some("owner".into()), ..attributes("organization", name) };
    assert!(forbidden(create(&mut given, "bob@acme.test", as_owner("root")).map(|_| Decision { actor: Actor::Operator, events: vec![] })));

    let admin_bot = create(&mut given, "bob@acme.test", NewApiKey { role_id: Some("admin".into()), ..attributes("organization", "bot") })
        .unwrap_or_else(|e| panic!("{e:?}"));
    let by_bot = CreateApiKey {
        requester: create_api_key::Requester::Key(given.credential(admin_bot.api_key_id)),
        ..given.create_by("bob@acme.test", as_owner("root via bot"))
    };
    assert!(forbidden(create_api_key::decide(&by_bot, &given.state, now())), "an admin service account");

    assert!(create(&mut given, "alice@acme.test", as_owner("root")).is_ok(), "an owner grants owner");
}

#[test]
fn a_key_cannot_lengthen_its_own_life() {
    let given = Given::acme_and_globex();
    let frank = given.credential(Given::login("frank@acme.test"));
    let expires = given.state.keys.get(frank.api_key_id).map(|k| k.expires_at).unwrap_or_default();
    let update = |at: chrono::DateTime<chrono::Utc>| UpdateApiKey {
        caller: frank,
        api_key_id: frank.api_key_id,
        changes: KeyChanges { expires_at: Some(at.to_rfc3339()), ..KeyChanges::default() },
    };
    assert!(forbidden(update_api_key::decide(&update(now() + Duration::days(365 * 5)), &given.state, now())));
    assert!(forbidden(update_api_key::decide(&update(expires + Duration::seconds(1)), &given.state, now())));
    // Shortening is allowed.
    let shortened = ApiKeyUpdated {
        api_key_id: frank.api_key_id,
        organization_id: organization(&given, "Acme"),
        kind: ApiKeyKind::Personal,
        user_id: Some(6),
        group_id: None,
        previous_name: "login".into(),
        name: "login".into(),
        description: None,
        expires_at: expires - Duration::days(1),
    };
    given
        .when(&update(expires - Duration::days(1)))
        .then_expect(acme_user(&given, 6, frank.api_key_id), vec![Event::ApiKeyUpdated(shortened)]);

    let by_owner = UpdateApiKey { caller: given.credential(Given::login("alice@acme.test")), ..update(expires + Duration::days(30)) };
    assert!(update_api_key::decide(&by_owner, &given.state, now()).is_ok(), "an owner may extend another key");
}

#[test]
fn an_expired_key_can_only_be_revoked() {
    let mut given = Given::acme_and_globex();
    let key = create(&mut given, "carol@acme.test", attributes("personal", "short")).unwrap_or_else(|e| panic!("{e:?}")).api_key_id;
    let later = now() + Duration::days(31);
    let alice_later = {
        // Alice's login key expires with the others; give her a fresh one for the later moment.
        let cmd = create(
            &mut given,
            "alice@acme.test",
            NewApiKey { expires_at: Some((now() + Duration::days(365)).to_rfc3339()), ..attributes("personal", "long") },
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        Credential { api_key_id: cmd.api_key_id, token_digest: cmd.token_digest }
    };
    let revive = UpdateApiKey {
        caller: alice_later,
        api_key_id: key,
        changes: KeyChanges { expires_at: Some((later + Duration::days(30)).to_rfc3339()), ..KeyChanges::default() },
    };
    assert_eq!(titles(update_api_key::decide(&revive, &given.state, later)), ["Key has expired"]);
    let revoke = RevokeApiKey { caller: alice_later, api_key_id: key };
    assert!(revoke_api_key::decide(&revoke, &given.state, later).is_ok());
}

#[test]
fn names_that_look_alike_are_one_name_and_hidden_characters_are_refused() {
    let mut given = Given::acme_and_globex();
    create(&mut given, "carol@acme.test", attributes("personal", "deploy")).unwrap_or_else(|e| panic!("{e:?}"));
    create(&mut given, "carol@acme.test", attributes("personal", "Straße")).unwrap_or_else(|e| panic!("{e:?}"));
    let decide = |given: &mut Given, name: &str| {
        let cmd = given.create_by("carol@acme.test", attributes("personal", name));
        create_api_key::decide(&cmd, &given.state, now())
    };
    for taken in ["DEPLOY", "ＤＥＰＬＯＹ", " deploy\u{3000}", "STRASSE", "strasse"] {
        assert_eq!(titles(decide(&mut given, taken)), ["Name has already been taken"], "{taken:?}");
    }
    for (name, title) in [
        ("deploy\u{200b}", "Name contains a format character"),
        ("\u{200b}\u{200b}", "Name contains a format character"),
        ("invoice\u{202e}fdp.exe", "Name contains a format character"),
        ("\u{feff}deploy", "Name contains a format character"),
        ("dep\u{7}loy", "Name contains a control character"),
        ("deploy\u{378}", "Name contains an unassigned code point"),
        ("\u{301}\u{301}", "Name can't be blank"),
        ("\u{3000}\u{a0}", "Name can't be blank"),
    ] {
        assert_eq!(titles(decide(&mut given, name)), [title], "{name:?}");
    }
    assert!(decide(&mut given, "déploiement").is_ok(), "accented letters are letters");
}

#[test]
fn a_scope_holds_at_most_its_limit_of_live_keys() {
    let mut given = Given::acme_and_globex();
    let limited = |given: &mut Given, name: &str, days: i64| CreateApiKey {
        max_keys_per_scope: 2,
        ..given.create_by(
            "dave@acme.test",
            NewApiKey { expires_at: Some((now() + Duration::days(days)).to_rfc3339()), ..attributes("personal", name) },
        )
    };
    // dave's login key is the first of his scope; "soon" expires before the moment asked.
    let soon = limited(&mut given, "soon", 1);
    given.accept(create_api_key::decide(&soon, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}")));
    let third = limited(&mut given, "third", 30);
    assert_eq!(titles(create_api_key::decide(&third, &given.state, now())), ["Too many keys"]);
    assert!(create_api_key::decide(&third, &given.state, now() + Duration::days(2)).is_ok(), "an expired key leaves room");

    let revoke = RevokeApiKey { caller: given.credential(Given::login("dave@acme.test")), api_key_id: soon.api_key_id };
    given.accept(revoke_api_key::decide(&revoke, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}")));
    assert!(create_api_key::decide(&third, &given.state, now()).is_ok(), "a revoked key leaves room");
    let carol = CreateApiKey { max_keys_per_scope: 2, ..given.create_by("carol@acme.test", attributes("personal", "other scope")) };
    let created = created(&given, &carol, "other scope", 3);
    given.when(&carol).then_expect(acme_user(&given, 3, Given::login("carol@acme.test")), vec![Event::ApiKeyCreated(created)]);
}
