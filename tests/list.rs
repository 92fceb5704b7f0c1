//! `GET /v1/api_keys`: visibility, filters, sort, pagination links and meta, 400s naming the
//! parameter — through the real binary.

mod common;

use std::collections::HashSet;

use common::fixtures::PLATFORM_TEAM;
use common::http::{create, get, in_days, send, Resp};
use common::jsonapi::assert_bad_parameter;
use common::server::World;
use serde_json::{json, Value};

#[tokio::test]
async fn pagination_links_walk_every_visible_key_exactly_once() {
    let World { data: _data, tokens, server } = World::start();
    let carol = &tokens["carol@acme.test"];
    for i in 0..7 {
        let Resp { status, .. } =
            create(&server, carol, json!({"name": format!("key {i}"), "kind": "personal", "expires_at": in_days(30)})).await;
        assert_eq!(status, 201);
    }
    let Resp { status, json: first, .. } = get(&server, carol, "/v1/api_keys?page[size]=3&sort=-name").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["meta"]["total_count"], 8, "7 keys and carol's login: {first}");
    assert_eq!(first["meta"]["total_pages"], 3);
    assert_eq!(first["links"]["prev"], Value::Null);

    let mut seen = Vec::new();
    let mut next = Some("/v1/api_keys?page[size]=3&sort=-name".to_owned());
    while let Some(path) = next {
        let Resp { status, json: page, .. } = get(&server, carol, &path).await;
        assert_eq!(status, 200, "{page}");
        for key in page["data"].as_array().expect("data") {
            assert!(key["attributes"].get("token").is_none(), "tokens are never listed");
            seen.push(key["id"].as_str().expect("id").to_owned());
        }
        next = page["links"]["next"].as_str().map(str::to_owned);
        assert!(seen.len() <= 8, "the links loop");
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 8, "no key twice");
}

#[tokio::test]
async fn filters_narrow_and_other_users_keys_stay_invisible() {
    let World { data: _data, tokens, server } = World::start();
    let carol = &tokens["carol@acme.test"];
    create(&server, carol, json!({"name": "Deploy Bot", "kind": "personal", "expires_at": in_days(30)})).await;
    create(&server, carol, json!({"name": "ci", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(30)})).await;
    create(&server, &tokens["hank@globex.test"], json!({"name": "deploy", "kind": "personal", "expires_at": in_days(30)})).await;

    let names = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .map(|d| d.iter().map(|k| k["attributes"]["name"].as_str().unwrap_or("").to_owned()).collect())
            .unwrap_or_default()
    };
    let Resp { json: body, .. } = get(&server, &tokens["alice@acme.test"], "/v1/api_keys?filter[search]=DEPLOY").await;
    assert_eq!(names(&body), ["Deploy Bot"], "case-insensitive, and never Globex's");
    let Resp { json: body, .. } =
        get(&server, &tokens["alice@acme.test"], &format!("/v1/api_keys?filter[kind]=team&filter[group_ids]={PLATFORM_TEAM}")).await;
    assert_eq!(names(&body), ["ci"]);
    let Resp { json: body, .. } = get(&server, &tokens["dave@acme.test"], "/v1/api_keys").await;
    assert_eq!(names(&body), ["test login"], "dave sees only his own");
    let Resp { json: body, .. } = get(&server, &tokens["alice@acme.test"], "/v1/api_keys?filter[expired]=true").await;
    assert_eq!(body["meta"]["total_count"], 0);
}

#[tokio::test]
async fn malformed_or_unknown_parameters_are_400_naming_them() {
    let World { data: _data, tokens, server } = World::start();
    let alice = &tokens["alice@acme.test"];
    for parameter in
        ["page[size]=101", "page[number]=0", "sort=colour", "filter[kind]=global", "filter[colour]=red", "filter[created_at][gt]=yesterday"]
    {
        assert_bad_parameter(&server, alice, "/v1/api_keys", parameter).await;
    }
    assert_eq!(send(&server, "GET", "/v1/api_keys", None, None, None).await.status, 401);
}
