//! API.md "Authentication": token shape, refusals, prefixes, expiry, and that a personal key
//! acts with its user's current standing, through real HTTP against the real binary.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::fixtures::{acme_directory, PLATFORM_TEAM, SECURITY_TEAM};
use common::http::{create, create_doc, create_ok, get_with_authorization, in_days, show, try_send_with_authorization};
use common::jsonapi::{
    assert_forbidden, assert_invalid, assert_key_doc_prefixed, assert_not_found, assert_unauthorized, checksum_ok, forged_token, is_token,
    JSON_API,
};
use common::server::{apply_directory, cli_ok, DataDir, Server, World};
use serde_json::{json, Value};

/// A path that answers 404 to any authenticated caller and 401 to everyone else: a probe
/// of whether a token authenticates that depends on nothing else.
fn probe_path() -> String {
    format!("/v1/api_keys/{}", uuid::Uuid::new_v4())
}

async fn authenticates(server: &Server, token: &str) -> bool {
    let resp = show(server, token, &uuid::Uuid::new_v4().to_string()).await;
    match resp.status {
        404 => true,
        401 => {
            assert_unauthorized(&resp);
            false
        }
        other => panic!("unexpected {other}: {}", resp.text),
    }
}

#[tokio::test]
async fn minted_tokens_have_the_documented_shape_and_checksum() {
    let world = World::start();
    let s = &world.server;
    let mut all: Vec<String> = world.tokens.values().cloned().collect();
    let alice = world.token("alice");
    for kind in [
        json!({"name": "p", "kind": "personal", "expires_at": in_days(1)}),
        json!({"name": "t", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(1)}),
        json!({"name": "o", "kind": "organization", "expires_at": in_days(1)}),
    ] {
        all.push(create_ok(s, &alice, kind).await.token());
    }
    for token in &all {
        assert!(is_token(token, "rootly"), "^rootly_[0-9a-f]{{64}}$: {token}");
        assert!(checksum_ok(token), "the last 8 hex are the CRC-32 of everything before: {token}");
    }
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "every token is fresh");
}

#[tokio::test]
async fn missing_malformed_forged_and_unknown_tokens_are_all_invalid_token() {
    // More refusals than a minute's failures allow one address: the limit is off here
    // (tests/limits.rs tests it), so that each refusal is the 401 under test.
    let world = World::start_with(&["--auth-failure-limit", "0"]);
    let s = &world.server;
    let valid = world.token("alice");
    let secret = valid.strip_prefix("rootly_").unwrap().to_owned();

    // One character changed in the random part: the shape is right, the CRC is not.
    let mut chars: Vec<char> = valid.chars().collect();
    chars[12] = if chars[12] == '0' { '1' } else { '0' };
    let bad_crc: String = chars.into_iter().collect();
    assert!(is_token(&bad_crc, "rootly") && !checksum_ok(&bad_crc));
    // The checksum itself changed.
    let mut chars: Vec<char> = valid.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == 'a' { 'b' } else { 'a' };
    let bad_checksum: String = chars.into_iter().collect();
    // Right shape, right checksum, no such key.
    let unknown = forged_token("rootly");
    assert!(is_token(&unknown, "rootly") && checksum_ok(&unknown));

    let headers: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(valid.clone()),                                   // no scheme
        Some(format!("Basic {valid}")),                        // wrong scheme
        Some(format!("Token {valid}")),                        // wrong scheme
        Some(format!("Token token={valid}")),                  // wrong scheme
        Some("Basic YWxpY2U6cGFzc3dvcmQ=".into()),             // user:password
        Some(format!("Bearer {}", &valid[..valid.len() - 1])), // too short
        Some(format!("Bearer {valid}0")),                      // too long
        Some(format!("Bearer {}", valid.to_uppercase())),      // upper case
        Some(format!("Bearer rootly_{}", secret.to_uppercase())),
        Some(format!("Bearer rootly-{secret}")),
        Some(format!("Bearer {secret}")),                                   // no prefix
        Some(format!("Bearer acme_{secret}")),                              // another prefix
        Some(format!("Bearer rootly_{}", &secret[..56])),                   // no checksum
        Some(format!("Bearer rootly_{}z{}", &secret[..10], &secret[11..])), // not hex
        Some(format!("Bearer {valid} {valid}")),
        Some(format!("Bearer {valid},{valid}")),
        Some(format!("Bearer {bad_crc}")),
        Some(format!("Bearer {bad_checksum}")),
        Some(format!("Bearer {unknown}")),
        Some(format!("Bearer {}", forged_token("acme"))),
    ];
    let path = probe_path();
    for header in &headers {
        let resp = get_with_authorization(s, &path, header.as_deref()).await;
        assert_unauthorized(&resp);
        let document = create_doc(json!({"name": "x", "kind": "personal", "expires_at": in_days(1)}));
        let post = try_send_with_authorization(
            s,
            "POST",
            "/v1/api_keys",
            header.as_deref(),
            Some(JSON_API),
            Some(document.to_string().into_bytes()),
        )
        .await
        .expect("POST got no answer");
        assert_unauthorized(&post);
        assert!(!post.text.contains(&secret), "the refusal must not echo the token: {}", post.text);
    }
    // A 401 says nothing about why: every refusal is the same document.
    let first = get_with_authorization(s, &path, None).await;
    for header in &headers {
        let resp = get_with_authorization(s, &path, header.as_deref()).await;
        assert_eq!(resp.json, first.json, "{header:?}");
    }
    // The genuine token, with the scheme in any case (RFC 9110: schemes are case-insensitive).
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = get_with_authorization(s, &path, Some(&format!("{scheme} {valid}"))).await;
        assert_not_found(&resp);
    }
    // None of the refused POSTs created a key: the genuine token can still use the name.
    create_ok(s, &valid, json!({"name": "x", "kind": "personal", "expires_at": in_days(1)})).await;
}

#[tokio::test]
async fn a_server_with_another_prefix_refuses_default_prefix_tokens() {
    let data = DataDir::new();
    let tokens = data.acme_and_globex();
    let acme_token = cli_ok(&[
        "keys",
        "issue",
        "--data",
        data.arg(),
        "--org",
        "Acme",
        "--user",
        "alice@acme.test",
        "--name",
        "acme login",
        "--expires-in",
        "1d",
        "--token-prefix",
        "acme",
    ]);
    assert!(is_token(&acme_token, "acme") && checksum_ok(&acme_token), "{acme_token}");
    let server = Server::start_with(&data, &["--token-prefix", "acme"]);

    for token in tokens.values() {
        assert!(!authenticates(&server, token).await, "a rootly_ token must be refused by an acme-prefixed server");
    }
    assert!(authenticates(&server, &acme_token).await, "its own prefix authenticates");
    assert!(!authenticates(&server, &forged_token("acme")).await);

    let created = create(&server, &acme_token, json!({"name": "p", "kind": "personal", "expires_at": in_days(1)})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_key_doc_prefixed(&created, true, "acme");
    let new_token = created.token();
    assert!(is_token(&new_token, "acme") && !new_token.starts_with("rootly"), "{new_token}");
    assert_eq!(show(&server, &new_token, &created.id()).await.status, 200);
    // The same secret with the default prefix is a different (and invalid) token.
    let renamed = new_token.replacen("acme_", "rootly_", 1);
    assert!(!authenticates(&server, &renamed).await);
}

#[tokio::test]
async fn an_expired_key_stops_authenticating_and_keeps_its_name() {
    let data = DataDir::new();
    let tokens = data.acme_and_globex();
    // Expiry a few seconds ahead: ten times what a start and stop of the server takes here
    // (timed first), at least 2 s and at most 8 s, so that the key is accepted before it
    // expires; the server is then polled (bounded) until it refuses.
    let timed = std::time::Instant::now();
    Server::start(&data).stop();
    let ahead = (timed.elapsed() * 10).clamp(Duration::from_secs(2), Duration::from_secs(8));
    let expires_at = (Utc::now() + ahead).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let expires: chrono::DateTime<Utc> = expires_at.parse().unwrap();
    let short = cli_ok(&[
        "keys",
        "issue",
        "--data",
        data.arg(),
        "--org",
        "Acme",
        "--user",
        "dave@acme.test",
        "--name",
        "Short Lived",
        "--expires-at",
        &expires_at,
    ]);
    let server = Server::start(&data);

    let mut accepted = 0;
    loop {
        let sent = Utc::now();
        let ok = authenticates(&server, &short).await;
        let received = Utc::now();
        if !ok {
            assert!(received >= expires, "refused at {received}, before its expiry {expires}");
            break;
        }
        assert!(sent < expires, "still accepted at {sent}, after its expiry {expires}");
        accepted += 1;
        assert!(Utc::now() < expires + chrono::Duration::seconds(30), "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted > 0, "the key was never accepted before its expiry {expires}");
    // Expired is final.
    for _ in 0..3 {
        assert!(!authenticates(&server, &short).await);
    }
    let resp = create(&server, &short, json!({"name": "x", "kind": "personal", "expires_at": in_days(1)})).await;
    assert_unauthorized(&resp);
    // An expired key does not free its name (a revoked one would).
    let dave = tokens["dave@acme.test"].clone();
    let resp = create(&server, &dave, json!({"name": "short lived", "kind": "personal", "expires_at": in_days(1)})).await;
    assert_invalid(&resp, "Name has already been taken", "/data/attributes/name");
}

/// The Acme directory without the given users (also taken out of every team).
fn acme_without(removed: &[u64]) -> Value {
    let mut file = acme_directory();
    file["users"].as_array_mut().unwrap().retain(|u| !removed.contains(&u["id"].as_u64().unwrap()));
    for team in file["teams"].as_array_mut().unwrap() {
        for list in ["user_ids", "admin_ids"] {
            team[list].as_array_mut().unwrap().retain(|id| !removed.contains(&id.as_u64().unwrap()));
        }
    }
    file
}

#[tokio::test]
async fn a_removed_users_tokens_stop_working_but_their_team_and_organization_keys_survive() {
    let world = World::start();
    let s = &world.server;
    let bob = world.token("bob");
    let dave = world.token("dave");
    let personal = create_ok(s, &bob, json!({"name": "bob p", "kind": "personal", "expires_at": in_days(5)})).await;
    let team = create_ok(s, &bob, json!({"name": "bob t", "kind": "team", "group_id": SECURITY_TEAM, "expires_at": in_days(5)})).await;
    let org = create_ok(s, &bob, json!({"name": "bob o", "kind": "organization", "role_id": "admin", "expires_at": in_days(5)})).await;
    assert!(authenticates(s, &dave).await);
    assert!(authenticates(s, &bob).await);

    let (data, tokens) = world.stop();
    apply_directory(&data, &acme_without(&[2, 4])); // bob and dave leave
    let world = World::resume(data, tokens, &[]);
    let s = &world.server;

    for (who, token) in [("bob", &bob), ("dave", &dave), ("bob's API-created personal key", &personal.token())] {
        assert!(!authenticates(s, token).await, "{who}: a removed user's keys stop working");
        let resp = create(s, token, json!({"name": "after", "kind": "personal", "expires_at": in_days(1)})).await;
        assert_unauthorized(&resp);
    }
    // Team and organization keys act as their service account and survive their creator.
    assert_eq!(show(s, &team.token(), &team.id()).await.status, 200);
    assert_eq!(show(s, &org.token(), &org.id()).await.status, 200);
    create_ok(s, &org.token(), json!({"name": "after bob", "kind": "organization", "expires_at": in_days(1)})).await;
    // The others are unaffected.
    assert!(authenticates(s, &world.token("carol")).await);
    assert!(authenticates(s, &world.token("alice")).await);
    assert!(authenticates(s, &world.token("hank")).await);
}

#[tokio::test]
async fn a_demoted_admin_loses_admin_rights_after_the_directory_changes() {
    let world = World::start();
    let s = &world.server;
    let bob = world.token("bob");
    let carol_key = create_ok(s, &world.token("carol"), json!({"name": "carol's", "kind": "personal", "expires_at": in_days(5)})).await;
    let before = create_ok(s, &bob, json!({"name": "before", "kind": "organization", "role_id": "admin", "expires_at": in_days(5)})).await;
    assert_eq!(show(s, &bob, &carol_key.id()).await.status, 200, "an admin sees every key of the organization");

    let (data, tokens) = world.stop();
    let mut file = acme_directory();
    for user in file["users"].as_array_mut().unwrap() {
        if user["email"] == "bob@acme.test" {
            user["role"] = json!("user");
        }
    }
    apply_directory(&data, &file);
    let world = World::resume(data, tokens, &[]);
    let s = &world.server;

    assert!(authenticates(s, &bob).await, "a demoted user's token still authenticates");
    let refused = create(s, &bob, json!({"name": "after", "kind": "organization", "expires_at": in_days(5)})).await;
    assert_forbidden(&refused);
    // Team keys only where bob administers the team.
    create_ok(s, &bob, json!({"name": "after", "kind": "team", "group_id": SECURITY_TEAM, "expires_at": in_days(5)})).await;
    assert_forbidden(&create(s, &bob, json!({"name": "after", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(5)})).await);
    // And no longer sees other people's keys.
    assert_not_found(&show(s, &bob, &carol_key.id()).await);
    // The organization key made while bob was admin keeps its own (admin) role.
    create_ok(s, &before.token(), json!({"name": "still admin", "kind": "organization", "expires_at": in_days(5)})).await;
}
