//! API.md "Create": personal keys, through real HTTP against the real binary.

mod common;

use common::fixtures::PLATFORM_TEAM;
use common::http::{create, create_ok, in_days, show};
use common::jsonapi::{assert_forbidden, assert_invalid_at, assert_key_doc, assert_timestamp};
use common::server::World;
use serde_json::{json, Value};

/// The attributes a show must repeat unchanged from the create (token and last use aside).
const STABLE: [&str; 8] = ["name", "kind", "created_at", "updated_at", "description", "role_id", "on_call_role_id", "expires_at"];

#[tokio::test]
async fn a_personal_key_is_created_with_every_attribute_and_its_token_authenticates_a_show_of_itself() {
    let world = World::start();
    let s = &world.server;
    let expires_at = in_days(30);
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let created = create_ok(
        s,
        &world.token("alice"),
        json!({"name": "laptop", "kind": "personal", "expires_at": expires_at, "description": "my laptop"}),
    )
    .await;
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    let attrs = created.attrs();
    assert_eq!(attrs["name"], "laptop");
    assert_eq!(attrs["kind"], "personal");
    assert_eq!(attrs["description"], "my laptop");
    assert_eq!(attrs["expires_at"], Value::String(expires_at.clone()), "a whole-second UTC expiry comes back as sent");
    assert_eq!(attrs["role_id"], Value::Null, "a personal key has no role of its own");
    assert_eq!(attrs["on_call_role_id"], Value::Null);
    assert_eq!(attrs["last_used_at"], Value::Null, "a new key was never used");
    assert_eq!(attrs["grace_period_ends_at"], Value::Null);
    let created_at = assert_timestamp("created_at", &attrs["created_at"]);
    assert!(before <= created_at && created_at <= after, "created_at {created_at} is not now");
    let token = created.token();
    let id = created.id();

    let shown = show(s, &token, &id).await;
    assert_eq!(shown.status, 200, "the new token must authenticate: {}", shown.text);
    assert_key_doc(&shown, false);
    assert_eq!(shown.id(), id);
    for name in STABLE {
        assert_eq!(shown.attrs()[name], attrs[name], "{name} differs between create and show");
    }
    assert!(!shown.text.contains(&token), "show must never carry the token");

    // The creator's other token sees it too: it is their own personal key.
    let by_owner_login = show(s, &world.token("alice"), &id).await;
    assert_eq!(by_owner_login.status, 200, "{}", by_owner_login.text);
    assert!(!by_owner_login.text.contains(&token));
}

#[tokio::test]
async fn every_role_holding_create_may_create_personal_keys_and_the_others_get_403() {
    let world = World::start();
    let s = &world.server;
    for who in ["alice", "bob", "carol", "dave", "hank", "ivy"] {
        let created = create_ok(s, &world.token(who), json!({"name": "mine", "kind": "personal", "expires_at": in_days(10)})).await;
        assert_eq!(created.attrs()["kind"], "personal", "{who}");
        let shown = show(s, &created.token(), &created.id()).await;
        assert_eq!(shown.status, 200, "{who}'s new token must authenticate: {}", shown.text);
    }
    // observer (read only), no_access (nothing), and a custom role with only `read`.
    for who in ["erin", "frank", "grace"] {
        let refused = create(s, &world.token(who), json!({"name": "mine", "kind": "personal", "expires_at": in_days(10)})).await;
        assert_forbidden(&refused);
        assert!(!refused.text.contains("rootly_"), "a refusal carries no token: {}", refused.text);
    }
}

#[tokio::test]
async fn forbidden_is_decided_before_validation() {
    let world = World::start();
    let s = &world.server;
    // An observer learns nothing about the request's problems: 403, not 422.
    let refused = create(s, &world.token("erin"), json!({"name": " ", "kind": "personal", "expires_at": "yesterday", "bogus": 1})).await;
    assert_forbidden(&refused);
}

#[tokio::test]
async fn a_service_account_token_cannot_create_a_personal_key() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let team =
        create_ok(s, &alice, json!({"name": "team bot", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(10)})).await;
    let org_user = create_ok(s, &alice, json!({"name": "org bot", "kind": "organization", "expires_at": in_days(10)})).await;
    let org_admin =
        create_ok(s, &alice, json!({"name": "org admin bot", "kind": "organization", "role_id": "admin", "expires_at": in_days(10)})).await;
    let owner_role =
        create_ok(s, &alice, json!({"name": "org owner bot", "kind": "organization", "role_id": "owner", "expires_at": in_days(10)})).await;
    for (label, key) in
        [("team", &team), ("organization/user", &org_user), ("organization/admin", &org_admin), ("organization/owner", &owner_role)]
    {
        let token = key.token();
        let refused = create(s, &token, json!({"name": "personal", "kind": "personal", "expires_at": in_days(10)})).await;
        assert_forbidden(&refused);
        assert!(!refused.text.contains(&token), "{label}: the refusal must not echo the token");
        // The token itself is fine: it authenticates a show of its own key.
        assert_eq!(show(s, &token, &key.id()).await.status, 200, "{label}");
    }
}

#[tokio::test]
async fn personal_keys_refuse_team_and_organization_attributes() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let cases = [("role_id", json!("admin")), ("on_call_role_id", json!("responder")), ("group_id", json!(PLATFORM_TEAM))];
    for (attribute, value) in cases {
        let mut attributes = json!({"name": format!("with {attribute}"), "kind": "personal", "expires_at": in_days(10)});
        attributes[attribute] = value;
        let refused = create(s, &alice, attributes).await;
        assert_invalid_at(&refused, &format!("/data/attributes/{attribute}"));
    }
    // Nothing was created by those: the names are still free.
    for attribute in ["role_id", "on_call_role_id", "group_id"] {
        create_ok(s, &alice, json!({"name": format!("with {attribute}"), "kind": "personal", "expires_at": in_days(10)})).await;
    }
}
