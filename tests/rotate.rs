//! `POST /v1/api_keys/{id}/rotate` and expiry, through the real binary: a new secret under
//! the same id, the previous token only for its grace period, and never after.

mod common;

use chrono::{DateTime, Utc};
use common::fixtures::fixture;
use common::http::{client, create, get, in_days, revoke, rotate, update, Resp};
use common::jsonapi::{pointers, titles};
use common::server::{cli_ok, DataDir, Server, World};
use serde_json::{json, Value};

/// Acme and Globex served, and a personal key of carol's.
struct CarolsKey {
    data: DataDir,
    tokens: std::collections::HashMap<String, String>,
    server: Server,
    /// Carol's login token.
    carol: String,
    id: String,
    token: String,
}

async fn carols_key() -> CarolsKey {
    let World { data, tokens, server } = World::start();
    let carol = tokens["carol@acme.test"].clone();
    let Resp { status, json: body, .. } =
        create(&server, &carol, json!({"name": "deploy", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().expect("id").to_owned();
    let token = token_of(&body);
    CarolsKey { data, tokens, server, carol, id, token }
}

fn token_of(body: &Value) -> String {
    body["data"]["attributes"]["token"].as_str().unwrap_or_else(|| panic!("no token in {body}")).to_owned()
}

fn time_of(body: &Value, attribute: &str) -> Option<DateTime<Utc>> {
    body["data"]["attributes"][attribute].as_str().map(|t| t.parse().unwrap_or_else(|e| panic!("{attribute} {t:?}: {e}")))
}

async fn status_with(server: &Server, token: &str, id: &str) -> u16 {
    get(server, token, &format!("/v1/api_keys/{id}")).await.status
}

#[tokio::test]
async fn rotation_gives_a_new_secret_under_the_same_id_with_a_thirty_minute_grace_and_ninety_days() {
    let CarolsKey { data: _data, server, carol, id, token: old, .. } = carols_key().await;
    let Resp { json: before, .. } = get(&server, &carol, &format!("/v1/api_keys/{id}")).await;

    let asked_at = Utc::now();
    let Resp { status, json: body, .. } = rotate(&server, &old, &id, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(body["data"]["type"], "api_keys");
    let new = token_of(&body);
    assert_ne!(new, old);
    assert!(new.starts_with("rootly_") && new.len() == "rootly_".len() + 64, "{new}");
    let grace_ends = time_of(&body, "grace_period_ends_at").expect("a grace period");
    let minutes = (grace_ends - asked_at).num_seconds() as f64 / 60.0;
    assert!((29.9..=30.1).contains(&minutes), "grace of {minutes} minutes");
    let lifetime = (time_of(&body, "expires_at").expect("expires_at") - asked_at).num_hours();
    assert!((90 * 24 - 1..=90 * 24).contains(&lifetime), "expires in {lifetime} h");
    assert!(time_of(&body, "updated_at") > time_of(&before, "updated_at"), "updated_at moves");
    assert_eq!(body["data"]["attributes"]["name"], "deploy");

    assert_eq!(status_with(&server, &new, &id).await, 200);
    assert_eq!(status_with(&server, &old, &id).await, 200, "the previous token works during its grace period");
    let Resp { json: shown, .. } = get(&server, &new, &format!("/v1/api_keys/{id}")).await;
    assert!(shown["data"]["attributes"].get("token").is_none(), "the token only in the rotate response");
    assert_eq!(time_of(&shown, "grace_period_ends_at"), Some(grace_ends));
}

#[tokio::test]
async fn two_rotations_in_a_row_end_the_oldest_token_at_once() {
    let CarolsKey { data, server, id, token: first, .. } = carols_key().await;

    let Resp { status, json: body, .. } = rotate(&server, &first, &id, None).await;
    assert_eq!(status, 200, "{body}");
    let second = token_of(&body);
    let Resp { status, json: body, .. } = rotate(&server, &second, &id, Some(json!({"grace_period_minutes": 60}))).await;
    assert_eq!(status, 200, "{body}");
    let third = token_of(&body);

    assert_eq!(status_with(&server, &first, &id).await, 401, "only the newest previous token gets a grace period");
    assert_eq!(status_with(&server, &second, &id).await, 200);
    assert_eq!(status_with(&server, &third, &id).await, 200);

    server.stop();
    let server = Server::start(&data);
    assert_eq!(status_with(&server, &first, &id).await, 401, "after a restart too");
    assert_eq!(status_with(&server, &second, &id).await, 200, "the grace period survives a restart");
    assert_eq!(status_with(&server, &third, &id).await, 200);
}

#[tokio::test]
async fn grace_zero_or_the_organization_setting_off_stops_the_old_token_at_once() {
    let CarolsKey { data, server, carol, id, token: old, .. } = carols_key().await;
    let Resp { status, json: body, .. } = rotate(&server, &old, &id, Some(json!({"grace_period_minutes": 0}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["grace_period_ends_at"], Value::Null);
    assert_eq!(status_with(&server, &old, &id).await, 401);
    assert_eq!(status_with(&server, &token_of(&body), &id).await, 200);
    server.stop();

    let mut acme: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("directory.example.json")).expect("fixture")).expect("json");
    acme["grace_period"] = json!(false);
    let file = data.path().join("acme-without-grace.json");
    std::fs::write(&file, acme.to_string()).expect("write directory file");
    cli_ok(&["directory", "apply", "--data", data.arg(), file.to_str().expect("utf-8")]);
    let server = Server::start(&data);
    let Resp { status, json: body, .. } =
        create(&server, &carol, json!({"name": "other", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
    let (id, old) = (body["data"]["id"].as_str().expect("id").to_owned(), token_of(&body));
    let Resp { status, json: body, .. } = rotate(&server, &old, &id, Some(json!({"grace_period_minutes": 120}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["grace_period_ends_at"], Value::Null, "the organization has grace periods off");
    assert_eq!(status_with(&server, &old, &id).await, 401);
}

#[tokio::test]
async fn only_the_key_itself_may_rotate_it() {
    let CarolsKey { data: _data, tokens, server, carol, id, token } = carols_key().await;

    let Resp { status, json: body, .. } = rotate(&server, &carol, &id, None).await;
    assert_eq!(status, 403, "not even its owner: {body}");
    assert_eq!(body["errors"][0]["status"], "403");
    assert_eq!(rotate(&server, &tokens["alice@acme.test"], &id, None).await.status, 403, "not even an owner of the organization");
    assert_eq!(rotate(&server, &tokens["dave@acme.test"], &id, None).await.status, 404, "a key dave cannot see does not exist for him");
    assert_eq!(rotate(&server, &tokens["hank@globex.test"], &id, None).await.status, 404, "nor across organizations");
    assert_eq!(rotate(&server, &token, "00000000-0000-0000-0000-000000000000", None).await.status, 404);
    assert_eq!(rotate(&server, "rootly_not-a-token", &id, None).await.status, 401);
    assert_eq!(status_with(&server, &token, &id).await, 200, "the refused rotations changed nothing");
}

#[tokio::test]
async fn bad_rotation_attributes_are_422_naming_each() {
    let CarolsKey { data: _data, server, id, token, .. } = carols_key().await;

    let Resp { status, json: body, .. } =
        rotate(&server, &token, &id, Some(json!({"grace_period_minutes": 1441, "expires_at": "yesterday", "name": "x"}))).await;
    assert_eq!(status, 422, "{body}");
    let mut found = pointers(&body);
    found.sort();
    assert_eq!(found, ["/data/attributes/expires_at", "/data/attributes/grace_period_minutes", "/data/attributes/name"]);
    for minutes in [json!(-1), json!(2.5), json!("soon")] {
        let Resp { status, json: body, .. } = rotate(&server, &token, &id, Some(json!({"grace_period_minutes": minutes}))).await;
        assert_eq!((status, pointers(&body)), (422, vec!["/data/attributes/grace_period_minutes".to_owned()]), "{minutes}: {body}");
    }
    let expires_at = in_days(10);
    let Resp { status, json: body, .. } =
        rotate(&server, &token, &id, Some(json!({"expires_at": expires_at, "grace_period_minutes": 1440}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(time_of(&body, "expires_at"), expires_at.parse().ok());
}

#[tokio::test]
async fn a_key_whose_expiry_passes_gets_401_but_stays_listed_as_expired() {
    let World { data: _data, tokens, server } = World::start();
    let carol = &tokens["carol@acme.test"];
    let expires_at = Utc::now() + chrono::Duration::seconds(2);
    let Resp { status, json: body, .. } = create(
        &server,
        carol,
        json!({"name": "short-lived", "kind": "personal", "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (id, token) = (body["data"]["id"].as_str().expect("id").to_owned(), token_of(&body));
    assert_eq!(status_with(&server, &token, &id).await, 200);

    // Waiting for the clock, not for the server: the key's own expiry is the event under test.
    let remaining = (expires_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(remaining + std::time::Duration::from_millis(50)).await;

    let Resp { status, json: body, .. } = get(&server, &token, &format!("/v1/api_keys/{id}")).await;
    assert_eq!((status, titles(&body)), (401, vec!["Invalid token".to_owned()]));
    let Resp { json: expired, .. } = get(&server, carol, "/v1/api_keys?filter[expired]=true").await;
    let ids: Vec<&str> = expired["data"].as_array().into_iter().flatten().filter_map(|k| k["id"].as_str()).collect();
    assert_eq!(ids, [id.as_str()]);
    let Resp { json: active, .. } = get(&server, carol, "/v1/api_keys?filter[expired]=false").await;
    assert!(active["data"].as_array().into_iter().flatten().all(|k| k["id"] != id.as_str()));
}

/// Issue 11's takeover: after the owner rotates a leaked key with a grace period, the old
/// secret tries to rotate again with no grace. It is refused (403, the API.md title), the
/// ledger records nothing, and the owner's new token keeps working.
#[tokio::test]
async fn a_superseded_secret_cannot_take_the_key_over() {
    let CarolsKey { data, server, id, token: leaked, .. } = carols_key().await;
    let Resp { status, json: body, .. } = rotate(&server, &leaked, &id, Some(json!({"grace_period_minutes": 60}))).await;
    assert_eq!(status, 200, "{body}");
    let owners = token_of(&body);

    let Resp { status, json: body, .. } = rotate(&server, &leaked, &id, Some(json!({"grace_period_minutes": 0}))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(titles(&body), ["This token was replaced by a rotation; use the key's current token"]);
    assert_eq!(update(&server, &leaked, &id, json!({"name": "mine now"})).await.status, 403);
    assert_eq!(revoke(&server, &leaked, &id).await.status, 403);
    let Resp { status, .. } = create(&server, &leaked, json!({"name": "minted", "kind": "personal", "expires_at": in_days(1)})).await;
    assert_eq!(status, 403, "a superseded secret mints nothing");

    assert_eq!(status_with(&server, &owners, &id).await, 200, "the owner's token still works");
    assert_eq!(status_with(&server, &leaked, &id).await, 200, "the old one still reads, for its grace period");
    server.stop();
    let export = cli_ok(&["export", "--data", data.arg()]);
    assert_eq!(export.matches("ApiKeyRotated").count(), 1, "only the owner's rotation is in the ledger");
    assert!(!export.contains("mine now") && !export.contains("minted"));
}

/// The server names every request itself; a client's `X-Request-Id` is kept beside its own
/// in the event, never in its place.
#[tokio::test]
async fn events_carry_the_servers_request_id_and_the_clients_beside_it() {
    let CarolsKey { data, server, id, token, .. } = carols_key().await;
    let response = client()
        .post(server.url(&format!("/v1/api_keys/{id}/rotate")))
        .bearer_auth(&token)
        .header("x-request-id", "spoofed-audit-entry")
        .send()
        .await
        .expect("POST rotate");
    assert_eq!(response.status().as_u16(), 200);
    let ours = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("X-Request-Id").to_owned();
    assert_ne!(ours, "spoofed-audit-entry");
    server.stop();
    let export = cli_ok(&["export", "--data", data.arg()]);
    let line = export.lines().find(|l| l.contains("ApiKeyRotated")).expect("the rotation");
    let envelope: Value = serde_json::from_str(line).expect("an envelope");
    assert_eq!(envelope["request_id"], ours.as_str());
    assert_eq!(envelope["client_request_id"], "spoofed-audit-entry");
}
