//! `GET /v1/api_keys/{id}` and visibility: 200 for what the caller may see, the same 404
//! for everything else (never leaking existence, never across organizations), and no token.

mod common;

use common::fixtures::{GLOBEX_TEAM, PLATFORM_TEAM, SECURITY_TEAM};
use common::http::{create_ok, in_days, personal, send, show, Resp};
use common::jsonapi::{assert_key_doc, assert_not_found, assert_unauthorized};
use common::server::{Server, World};
use serde_json::json;

struct Keys {
    alice_personal: Resp,
    carol_personal: Resp,
    dave_personal: Resp,
    platform_by_carol: Resp,
    platform_by_alice: Resp,
    security_by_alice: Resp,
    org_by_bob: Resp,
    org_admin_role: Resp,
    org_user_role: Resp,
    hank_personal: Resp,
    globex_team: Resp,
}

async fn create_keys(world: &World) -> Keys {
    let s = &world.server;
    let team = |name: &str, g: &str| json!({"name": name, "kind": "team", "group_id": g, "expires_at": in_days(30)});
    let org = |name: &str, role: &str| json!({"name": name, "kind": "organization", "role_id": role, "expires_at": in_days(30)});
    Keys {
        alice_personal: create_ok(s, &world.token("alice"), personal("alice")).await,
        carol_personal: create_ok(s, &world.token("carol"), personal("carol")).await,
        dave_personal: create_ok(s, &world.token("dave"), personal("dave")).await,
        platform_by_carol: create_ok(s, &world.token("carol"), team("platform by carol", PLATFORM_TEAM)).await,
        platform_by_alice: create_ok(s, &world.token("alice"), team("platform by alice", PLATFORM_TEAM)).await,
        security_by_alice: create_ok(s, &world.token("alice"), team("security by alice", SECURITY_TEAM)).await,
        org_by_bob: create_ok(s, &world.token("bob"), org("org by bob", "admin")).await,
        org_admin_role: create_ok(s, &world.token("alice"), org("org admin", "admin")).await,
        org_user_role: create_ok(s, &world.token("alice"), org("org user", "user")).await,
        hank_personal: create_ok(s, &world.token("hank"), personal("hank")).await,
        globex_team: create_ok(s, &world.token("ivy"), team("globex team", GLOBEX_TEAM)).await,
    }
}

impl Keys {
    fn all(&self) -> Vec<(&'static str, &Resp)> {
        vec![
            ("alice_personal", &self.alice_personal),
            ("carol_personal", &self.carol_personal),
            ("dave_personal", &self.dave_personal),
            ("platform_by_carol", &self.platform_by_carol),
            ("platform_by_alice", &self.platform_by_alice),
            ("security_by_alice", &self.security_by_alice),
            ("org_by_bob", &self.org_by_bob),
            ("org_admin_role", &self.org_admin_role),
            ("org_user_role", &self.org_user_role),
            ("hank_personal", &self.hank_personal),
            ("globex_team", &self.globex_team),
        ]
    }

    fn acme(&self) -> Vec<(&'static str, &Resp)> {
        self.all().into_iter().filter(|(n, _)| !matches!(*n, "hank_personal" | "globex_team")).collect()
    }

    fn tokens(&self) -> Vec<String> {
        self.all().iter().map(|(_, r)| r.token()).collect()
    }
}

/// Shows `key` with `token` and checks the outcome: a token-free key document equal to
/// the created one, or the one 404 document.
async fn expect_visible(server: &Server, token: &str, label: &str, key: &Resp, visible: bool, secrets: &[String]) {
    let resp = show(server, token, &key.id()).await;
    for secret in secrets {
        assert!(!resp.text.contains(secret.as_str()), "{label}: a show response carries a token: {}", resp.text);
    }
    if visible {
        assert_eq!(resp.status, 200, "{label} should be visible: {}", resp.text);
        assert_key_doc(&resp, false);
        assert_eq!(resp.id(), key.id());
        for name in ["name", "kind", "created_at", "description", "role_id", "on_call_role_id", "expires_at"] {
            assert_eq!(resp.attrs()[name], key.attrs()[name], "{label}: {name}");
        }
    } else {
        assert_not_found(&resp);
    }
}

#[tokio::test]
async fn who_sees_which_key() {
    let world = World::start();
    let s = &world.server;
    let keys = create_keys(&world).await;
    let secrets = keys.tokens();
    let platform_bot = keys.platform_by_carol.token();
    let security_bot = keys.security_by_alice.token();
    let admin_bot = keys.org_admin_role.token();
    let user_bot = keys.org_user_role.token();

    // (caller, token, names of the keys it sees); every other key of `keys.all()` is 404.
    let expectations: Vec<(&str, String, Vec<&str>)> = vec![
        // Owners and admins: every key of their organization.
        ("alice", world.token("alice"), keys.acme().iter().map(|(n, _)| *n).collect()),
        ("bob", world.token("bob"), keys.acme().iter().map(|(n, _)| *n).collect()),
        // An organization service account with the admin role: the same.
        ("admin bot", admin_bot.clone(), keys.acme().iter().map(|(n, _)| *n).collect()),
        // carol: her personal key and the keys of platform, which she administers.
        ("carol", world.token("carol"), vec!["carol_personal", "platform_by_carol", "platform_by_alice"]),
        // dave: a plain member of platform sees only his own.
        ("dave", world.token("dave"), vec!["dave_personal"]),
        // erin: observer, member of security without administering it; no keys of her own here.
        ("erin", world.token("erin"), vec![]),
        ("frank", world.token("frank"), vec![]),
        ("grace", world.token("grace"), vec![]),
        // A team service account: its team's keys, nothing else.
        ("platform bot", platform_bot.clone(), vec!["platform_by_carol", "platform_by_alice"]),
        ("security bot", security_bot.clone(), vec!["security_by_alice"]),
        // An organization service account with the user role: only itself.
        ("user bot", user_bot.clone(), vec!["org_user_role"]),
        // Globex sees nothing of Acme, even its owner.
        ("hank", world.token("hank"), vec!["hank_personal", "globex_team"]),
        ("ivy", world.token("ivy"), vec!["globex_team"]),
    ];
    for (caller, token, visible) in &expectations {
        for (name, key) in keys.all() {
            let label = format!("{caller} reading {name}");
            expect_visible(s, token, &label, key, visible.contains(&name), &secrets).await;
        }
    }
    // Every key is visible to its own token.
    for (name, key) in keys.all() {
        expect_visible(s, &key.token(), &format!("{name} reading itself"), key, true, &secrets).await;
    }
}

#[tokio::test]
async fn invisible_malformed_and_missing_ids_get_one_and_the_same_404() {
    let world = World::start();
    let s = &world.server;
    let carol_key = create_ok(s, &world.token("carol"), json!({"name": "c", "kind": "personal", "expires_at": in_days(30)})).await;
    let alice_key = create_ok(s, &world.token("alice"), json!({"name": "a", "kind": "personal", "expires_at": in_days(30)})).await;
    let dave = world.token("dave");
    let hank = world.token("hank");

    let reference = show(s, &dave, &uuid::Uuid::new_v4().to_string()).await;
    assert_not_found(&reference);
    let mut cases: Vec<(String, Resp)> = vec![
        ("dave reading carol's personal key".into(), show(s, &dave, &carol_key.id()).await),
        ("hank (Globex owner) reading alice's key".into(), show(s, &hank, &alice_key.id()).await),
        ("hank reading carol's key".into(), show(s, &hank, &carol_key.id()).await),
        ("alice reading the nil uuid".into(), show(s, &world.token("alice"), "00000000-0000-0000-0000-000000000000").await),
        ("alice reading a random uuid".into(), show(s, &world.token("alice"), &uuid::Uuid::new_v4().to_string()).await),
    ];
    for malformed in ["not-a-uuid", "123", "x", "00000000-0000-0000-0000-00000000000g", "%20", "..", "api_keys"] {
        cases.push((format!("malformed id {malformed:?}"), show(s, &world.token("alice"), malformed).await));
    }
    cases.push(("an id with a trailing char".to_owned(), show(s, &world.token("alice"), &format!("{}0", alice_key.id())).await));
    for (label, resp) in &cases {
        assert_not_found(resp);
        assert_eq!(resp.json, reference.json, "{label}: a 404 must not differ from a missing key's");
        assert!(!resp.text.contains(&carol_key.id()) || label.contains("carol"), "{label}");
    }
    // Cross-organization requests do not even confirm ids: the body never names the key.
    let cross = show(s, &hank, &alice_key.id()).await;
    assert!(!cross.text.contains(&alice_key.id()), "{}", cross.text);

    // Unauthenticated reads of a real key are 401, not 404 or 200.
    let resp = send(s, "GET", &format!("/v1/api_keys/{}", alice_key.id()), None, None, None).await;
    assert_unauthorized(&resp);
}

#[tokio::test]
async fn a_show_never_carries_a_token_even_for_the_key_itself() {
    let world = World::start();
    let s = &world.server;
    let created = create_ok(s, &world.token("alice"), json!({"name": "a", "kind": "organization", "expires_at": in_days(30)})).await;
    let token = created.token();
    for reader in [token.clone(), world.token("alice"), world.token("bob")] {
        let resp = show(s, &reader, &created.id()).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        assert_key_doc(&resp, false);
        assert!(!resp.text.contains(&token), "{}", resp.text);
        assert!(!resp.text.contains(&token["rootly_".len()..]), "not even the secret part: {}", resp.text);
        assert!(resp.attrs().get("token").is_none());
    }
}
