//! `last_used_at` through the real binary: set by a key's own use, moved at most once a
//! minute, kept outside the log across restarts and rebuilds, filtered and sorted on.

mod common;

use chrono::{DateTime, SubsecRound, Utc};
use common::http::{create, get, in_days, Resp};
use common::server::{cli_ok, ledger_with_a_key_of_each_kind, DataDir, Server, World};
use serde_json::{json, Value};

/// The `last_used_at` of a shown key, parsed; `None` for null.
fn last_used(body: &Value) -> Option<DateTime<Utc>> {
    let value = &body["data"]["attributes"]["last_used_at"];
    let text = value.as_str()?;
    assert!(text.ends_with('Z'), "not UTC with Z: {text}");
    let fraction = text.split_once('.').map_or(0, |(_, f)| f.trim_end_matches('Z').len());
    assert!(fraction <= 6, "more than microseconds: {text}");
    Some(DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}")).with_timezone(&Utc))
}

/// The number of events in a stopped ledger, as `export` writes them.
fn events_in(data: &DataDir) -> usize {
    cli_ok(&["export", "--data", data.arg()]).lines().count()
}

/// The names of a list, in order.
fn names(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .map(|keys| keys.iter().filter_map(|k| k["attributes"]["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Creates a personal key for the owner of `token`; returns its id and token.
async fn create_personal(server: &Server, token: &str, name: &str) -> (String, String) {
    let Resp { status, json: body, .. } = create(server, token, json!({"name": name, "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["attributes"]["last_used_at"], Value::Null, "a new key was never used: {body}");
    let id = body["data"]["id"].as_str().expect("data.id").to_owned();
    (id, body["data"]["attributes"]["token"].as_str().expect("a token").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_sets_last_used_at_and_a_second_use_within_the_minute_leaves_it() {
    let World { data: _data, tokens, server } = World::start();
    let alice = &tokens["alice@acme.test"];
    let (id, token) = create_personal(&server, alice, "ci bot").await;
    let path = format!("/v1/api_keys/{id}");
    let Resp { status, json: body, .. } = get(&server, alice, &path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(last_used(&body), None, "another key's use is not this key's: {body}");

    let before = Utc::now().trunc_subsecs(6);
    let Resp { status, json: body, .. } = get(&server, &token, "/v1/api_keys").await;
    let after = Utc::now();
    assert_eq!(status, 200, "{body}");
    let Resp { json: body, .. } = get(&server, alice, &path).await;
    let first = last_used(&body).unwrap_or_else(|| panic!("a used key shows no last use: {body}"));
    assert!(before <= first && first <= after, "{first} is not the moment of the use ({before} to {after})");

    let Resp { status, json: own, .. } = get(&server, &token, &path).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(last_used(&own), Some(first), "a second use within the minute moved last_used_at: {own}");
    let Resp { json: body, .. } = get(&server, alice, &path).await;
    assert_eq!(last_used(&body), Some(first), "{body}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_uses_survive_a_graceful_restart_and_record_no_event() {
    // Each key was shown to its own token, its first use, before a graceful stop.
    let (data, tokens, created) = ledger_with_a_key_of_each_kind();
    let events = events_in(&data);
    let server = Server::start(&data);
    let alice = &tokens["alice@acme.test"];
    for key in &created {
        let stored = last_used(&key.shown).unwrap_or_else(|| panic!("the use that showed the key is not on it: {}", key.shown));
        let Resp { json: body, .. } = get(&server, alice, &format!("/v1/api_keys/{}", key.id)).await;
        assert_eq!(last_used(&body), Some(stored), "the last use did not survive the restart: {body}");
    }
    // Bob's first use, in this run: stored, and no event.
    let bob_used = Utc::now().trunc_subsecs(6);
    let Resp { status, json: body, .. } = get(&server, &tokens["bob@acme.test"], "/v1/api_keys").await;
    assert_eq!(status, 200, "{body}");
    server.stop();
    assert_eq!(events_in(&data), events, "using keys recorded events");

    let server = Server::start(&data);
    let query = format!(
        "/v1/api_keys?filter[name]=test%20login&filter[last_used_at][gte]={}&filter[user_id]=2",
        bob_used.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    let Resp { status, json: body, .. } = get(&server, alice, &query).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["total_count"], 1, "bob's login (user 2) lost its last use across the restart: {body}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_keeps_last_uses() {
    let (data, tokens, created) = ledger_with_a_key_of_each_kind();
    cli_ok(&["rebuild", "--data", data.arg()]);
    let server = Server::start(&data);
    for key in &created {
        let Resp { json: body, .. } = get(&server, &tokens["alice@acme.test"], &format!("/v1/api_keys/{}", key.id)).await;
        assert!(last_used(&body).is_some(), "the rebuild dropped a last use: {body}");
        assert_eq!(last_used(&body), last_used(&key.shown), "{body}");
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_and_sorts_by_last_use() {
    let World { data: _data, tokens, server } = World::start();
    let alice = &tokens["alice@acme.test"];
    let (_, old) = create_personal(&server, alice, "lu old").await;
    let (_, new) = create_personal(&server, alice, "lu new").await;
    create_personal(&server, alice, "lu never").await;
    assert_eq!(get(&server, &old, "/v1/api_keys?page[size]=1").await.status, 200);
    let between = Utc::now().trunc_subsecs(6).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert_eq!(get(&server, &new, "/v1/api_keys?page[size]=1").await.status, 200);

    for (query, expected) in [
        (format!("filter[last_used_at][gt]={between}"), vec!["lu new"]),
        (format!("filter[last_used_at][lt]={between}"), vec!["lu old"]),
        ("filter[last_used_at][gte]=2000-01-01T00:00:00Z".to_owned(), vec!["lu old", "lu new"]),
        ("sort=last_used_at".to_owned(), vec!["lu old", "lu new", "lu never"]),
        ("sort=-last_used_at".to_owned(), vec!["lu never", "lu new", "lu old"]),
    ] {
        let Resp { status, json: body, .. } = get(&server, alice, &format!("/v1/api_keys?filter[search]=lu%20&{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(names(&body), expected, "{query}: {body}");
    }
    server.stop();
}
