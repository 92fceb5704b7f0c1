//! `DELETE /v1/api_keys/{id}`: immediate, final, the name freed, nothing visible across
//! organizations — through the real binary.

mod common;

use common::fixtures::PLATFORM_TEAM;
use common::http::{create, get, in_days, revoke, send, Resp};
use common::jsonapi::titles;
use common::server::{Server, World};
use serde_json::{json, Value};

fn created(body: &Value) -> (String, String) {
    let id = body["data"]["id"].as_str().expect("id").to_owned();
    let token = body["data"]["attributes"]["token"].as_str().expect("token").to_owned();
    (id, token)
}

#[tokio::test]
async fn a_revoked_token_fails_on_the_very_next_request_and_the_name_is_free() {
    let World { data: _data, tokens, server } = World::start();
    let carol = &tokens["carol@acme.test"];
    let Resp { status, json: body, .. } =
        create(&server, carol, json!({"name": "Deploy", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
    let (id, token) = created(&body);

    let Resp { status, json: revoked, .. } = revoke(&server, carol, &id).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["data"]["id"], id.as_str());
    assert_eq!(revoked["data"]["attributes"]["name"], "Deploy");
    assert!(revoked["data"]["attributes"].get("token").is_none(), "never the token");

    let Resp { status, json: body, .. } = get(&server, &token, &format!("/v1/api_keys/{id}")).await;
    assert_eq!((status, titles(&body)), (401, vec!["Invalid token".to_owned()]));
    assert_eq!(get(&server, carol, &format!("/v1/api_keys/{id}")).await.status, 404);
    assert_eq!(revoke(&server, carol, &id).await.status, 404, "revoking twice: the key is gone");

    let Resp { status, json: body, .. } =
        create(&server, carol, json!({"name": " deploy ", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "the name is free again: {body}");
}

#[tokio::test]
async fn a_revocation_survives_a_restart() {
    let World { data, tokens, server } = World::start();
    let carol = tokens["carol@acme.test"].clone();
    let Resp { json: body, .. } = create(&server, &carol, json!({"name": "k", "kind": "personal", "expires_at": in_days(30)})).await;
    let (id, token) = created(&body);
    assert_eq!(revoke(&server, &carol, &id).await.status, 200);
    server.stop();
    let server = Server::start(&data);
    assert_eq!(get(&server, &token, &format!("/v1/api_keys/{id}")).await.status, 401);
    assert_eq!(get(&server, &carol, &format!("/v1/api_keys/{id}")).await.status, 404);
}

#[tokio::test]
async fn a_team_keys_service_account_goes_with_it() {
    let World { data: _data, tokens, server } = World::start();
    let carol = &tokens["carol@acme.test"];
    let Resp { status, json: body, .. } =
        create(&server, carol, json!({"name": "ci", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
    let (id, token) = created(&body);
    assert_eq!(get(&server, &token, &format!("/v1/api_keys/{id}")).await.status, 200, "the team key acts as its account");
    assert_eq!(revoke(&server, &tokens["bob@acme.test"], &id).await.status, 200, "an admin may revoke a team key");
    assert_eq!(get(&server, &token, &format!("/v1/api_keys/{id}")).await.status, 401);
}

#[tokio::test]
async fn nobody_else_can_revoke_and_nobody_learns_the_key_exists() {
    let World { data: _data, tokens, server } = World::start();
    let carol = &tokens["carol@acme.test"];
    let Resp { json: body, .. } = create(&server, carol, json!({"name": "mine", "kind": "personal", "expires_at": in_days(30)})).await;
    let (id, token) = created(&body);
    for email in ["dave@acme.test", "erin@acme.test", "hank@globex.test"] {
        let Resp { status, json: body, .. } = revoke(&server, &tokens[email], &id).await;
        assert_eq!((status, titles(&body)), (404, vec!["Not found or unauthorized".to_owned()]), "{email}");
    }
    assert_eq!(revoke(&server, carol, "not-a-uuid").await.status, 404);
    assert_eq!(send(&server, "DELETE", &format!("/v1/api_keys/{id}"), None, None, None).await.status, 401);
    assert_eq!(get(&server, &token, &format!("/v1/api_keys/{id}")).await.status, 200, "still valid after the refused attempts");
    assert_eq!(revoke(&server, &token, &id).await.status, 200, "a key can always revoke itself");
}
