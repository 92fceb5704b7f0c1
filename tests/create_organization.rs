//! API.md "Create": organization keys, through real HTTP against the real binary.

mod common;

use common::fixtures::{PLATFORM_TEAM, SECURITY_TEAM};
use common::http::{create, create_ok, in_days, show, Resp};
use common::jsonapi::{assert_error_doc, assert_forbidden, assert_invalid, assert_invalid_at, assert_key_doc, pointers};
use common::server::World;
use serde_json::{json, Value};

fn org_key(name: &str) -> Value {
    json!({"name": name, "kind": "organization", "expires_at": in_days(30)})
}

fn org_key_with(name: &str, extra: Value) -> Value {
    let mut attributes = org_key(name);
    for (k, v) in extra.as_object().unwrap() {
        attributes[k] = v.clone();
    }
    attributes
}

fn uuid_attr(resp: &Resp, name: &str) -> String {
    let value = resp.attr_str(name).unwrap_or_else(|| panic!("{name} must be set: {}", resp.text));
    assert!(uuid::Uuid::parse_str(&value).is_ok(), "{name} must be a role id (UUID): {value}");
    value
}

#[tokio::test]
async fn an_organization_key_defaults_to_the_user_role_and_no_on_call_role() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let default = create_ok(s, &alice, org_key("default role")).await;
    assert_eq!(default.attrs()["kind"], "organization");
    let default_role = uuid_attr(&default, "role_id");
    assert_eq!(default.attrs()["on_call_role_id"], Value::Null);
    let explicit = create_ok(s, &alice, org_key_with("explicit user role", json!({"role_id": "user"}))).await;
    assert_eq!(uuid_attr(&explicit, "role_id"), default_role, "the default is the organization's `user` role");
    let null = create_ok(s, &alice, org_key_with("null role", json!({"role_id": null, "on_call_role_id": null}))).await;
    assert_eq!(uuid_attr(&null, "role_id"), default_role, "a null role_id is an absent one");
    assert_eq!(null.attrs()["on_call_role_id"], Value::Null);
    let admin = create_ok(s, &alice, org_key_with("admin role", json!({"role_id": "admin"}))).await;
    assert_ne!(uuid_attr(&admin, "role_id"), default_role, "`user` and `admin` are different roles");

    let shown = show(s, &default.token(), &default.id()).await;
    assert_eq!(shown.status, 200, "the organization key's token must authenticate: {}", shown.text);
    assert_key_doc(&shown, false);
    assert_eq!(shown.attrs()["role_id"], Value::String(default_role));
    assert_eq!(shown.attrs()["on_call_role_id"], Value::Null);
}

#[tokio::test]
async fn roles_and_on_call_roles_are_named_by_id_or_slug() {
    let world = World::start();
    let s = &world.server;
    let bob = world.token("bob");
    let by_slug = create_ok(s, &bob, org_key_with("by slug", json!({"role_id": "auditor", "on_call_role_id": "incident_commander"}))).await;
    let auditor = uuid_attr(&by_slug, "role_id");
    let commander = uuid_attr(&by_slug, "on_call_role_id");
    let by_id = create_ok(s, &bob, org_key_with("by id", json!({"role_id": auditor, "on_call_role_id": commander}))).await;
    assert_eq!(uuid_attr(&by_id, "role_id"), auditor);
    assert_eq!(uuid_attr(&by_id, "on_call_role_id"), commander);

    // Only an owner may grant every role, owner included (API.md: no escalation).
    let alice = world.token("alice");
    let mut seen = std::collections::HashSet::new();
    for role in ["owner", "admin", "user", "observer", "no_access", "auditor"] {
        let created = create_ok(s, &alice, org_key_with(&format!("role {role}"), json!({"role_id": role}))).await;
        assert!(seen.insert(uuid_attr(&created, "role_id")), "role {role} must have its own id");
    }
    let mut seen = std::collections::HashSet::new();
    for on_call in ["admin", "responder", "observer", "no_access", "incident_commander"] {
        let created = create_ok(s, &bob, org_key_with(&format!("on-call {on_call}"), json!({"on_call_role_id": on_call}))).await;
        assert!(seen.insert(uuid_attr(&created, "on_call_role_id")), "on-call role {on_call} must have its own id");
    }
}

#[tokio::test]
async fn roles_that_are_not_of_the_organization_are_422() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let hank = world.token("hank");
    let globex_admin = uuid_attr(&create_ok(s, &hank, org_key_with("globex admin", json!({"role_id": "admin"}))).await, "role_id");
    let globex_responder =
        uuid_attr(&create_ok(s, &hank, org_key_with("globex responder", json!({"on_call_role_id": "responder"}))).await, "on_call_role_id");
    let acme_admin = uuid_attr(&create_ok(s, &alice, org_key_with("acme admin", json!({"role_id": "admin"}))).await, "role_id");
    assert_ne!(globex_admin, acme_admin, "roles are per organization");

    for role in ["superhero".to_owned(), uuid::Uuid::new_v4().to_string(), globex_admin.clone(), String::new()] {
        let refused = create(s, &alice, org_key_with("bad role", json!({"role_id": role}))).await;
        assert_invalid(&refused, "Role must exist", "/data/attributes/role_id");
    }
    // Acme's role in Globex, the other way round.
    let refused = create(s, &hank, org_key_with("bad role", json!({"role_id": acme_admin}))).await;
    assert_invalid(&refused, "Role must exist", "/data/attributes/role_id");
    // Another organization's role looks exactly like no role at all.
    let cross = create(s, &alice, org_key_with("bad role", json!({"role_id": globex_admin}))).await;
    let nowhere = create(s, &alice, org_key_with("bad role", json!({"role_id": uuid::Uuid::new_v4().to_string()}))).await;
    assert_eq!(cross.json, nowhere.json);

    // `auditor` is an Acme role; Globex has none of that name.
    let refused = create(s, &hank, org_key_with("bad role", json!({"role_id": "auditor"}))).await;
    assert_invalid(&refused, "Role must exist", "/data/attributes/role_id");

    for on_call in ["nobody".to_owned(), uuid::Uuid::new_v4().to_string(), globex_responder] {
        let refused = create(s, &alice, org_key_with("bad on-call role", json!({"on_call_role_id": on_call}))).await;
        assert_invalid_at(&refused, "/data/attributes/on_call_role_id");
    }
    // Both wrong: both reported.
    let both = create(s, &alice, org_key_with("bad both", json!({"role_id": "nope", "on_call_role_id": "nope"}))).await;
    assert_error_doc(&both, 422);
    let mut found = pointers(&both.json);
    found.sort();
    assert_eq!(found, vec!["/data/attributes/on_call_role_id", "/data/attributes/role_id"], "{}", both.text);
    // None of those created anything: the names are free.
    create_ok(s, &alice, org_key("bad role")).await;
    create_ok(s, &alice, org_key("bad on-call role")).await;
}

#[tokio::test]
async fn only_owners_and_admins_may_create_organization_keys() {
    let world = World::start();
    let s = &world.server;
    for who in ["alice", "bob", "hank"] {
        let created = create_ok(s, &world.token(who), org_key(&format!("{who}'s org key"))).await;
        assert_eq!(created.attrs()["kind"], "organization");
    }
    // carol administers a team but is a `user` of the organization.
    for who in ["carol", "dave", "erin", "frank", "grace", "ivy"] {
        let refused = create(s, &world.token(who), org_key(&format!("{who}'s org key"))).await;
        assert_forbidden(&refused);
    }
}

#[tokio::test]
async fn a_non_admin_learns_nothing_about_taken_organization_key_names() {
    let world = World::start();
    let s = &world.server;
    create_ok(s, &world.token("alice"), org_key("taken")).await;
    let refused = create(s, &world.token("carol"), org_key("taken")).await;
    assert_forbidden(&refused);
    assert!(!refused.text.contains("taken"), "the refusal must not reveal the name is taken: {}", refused.text);
    // And a bad role is not reported to someone who may not create the key at all.
    let refused = create(s, &world.token("carol"), org_key_with("x", json!({"role_id": "nope"}))).await;
    assert_forbidden(&refused);
}

#[tokio::test]
async fn organization_service_accounts_act_with_their_role() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let as_admin = create_ok(s, &alice, org_key_with("admin bot", json!({"role_id": "admin"}))).await.token();
    let as_owner = create_ok(s, &alice, org_key_with("owner bot", json!({"role_id": "owner"}))).await.token();
    let as_user = create_ok(s, &alice, org_key("user bot")).await.token();

    // With an admin (or owner) role: organization keys and team keys of any team.
    for (label, bot) in [("admin", &as_admin), ("owner", &as_owner)] {
        let child = create_ok(s, bot, org_key(&format!("made by the {label} bot"))).await;
        assert_eq!(show(s, &child.token(), &child.id()).await.status, 200);
        create_ok(
            s,
            bot,
            json!({"name": format!("{label} bot's team key"), "kind": "team", "group_id": SECURITY_TEAM, "expires_at": in_days(30)}),
        )
        .await;
        // A service account has no person to own a personal key.
        assert_forbidden(&create(s, bot, json!({"name": "me", "kind": "personal", "expires_at": in_days(30)})).await);
    }
    // With the default `user` role: no organization keys, no team keys (it administers no team).
    assert_forbidden(&create(s, &as_user, org_key("made by the user bot")).await);
    assert_forbidden(
        &create(s, &as_user, json!({"name": "t", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(30)})).await,
    );
    // Cross-organization role ids stay unknown to a service account too.
    let hank_role = create_ok(s, &world.token("hank"), org_key_with("g", json!({"role_id": "admin"}))).await;
    let refused = create(s, &as_admin, org_key_with("cross", json!({"role_id": hank_role.attr_str("role_id").unwrap()}))).await;
    assert_invalid(&refused, "Role must exist", "/data/attributes/role_id");
}

#[tokio::test]
async fn organization_keys_refuse_group_id() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    for group in [PLATFORM_TEAM, "platform"] {
        let refused = create(s, &alice, org_key_with("with group", json!({"group_id": group}))).await;
        assert_invalid_at(&refused, "/data/attributes/group_id");
    }
    create_ok(s, &alice, org_key("with group")).await;
}
