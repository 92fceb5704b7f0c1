mod common;

use common::http::{create, get, in_days, Resp};
use common::server::{DataDir, Server};
use serde_json::json;

#[tokio::test]
async fn a_fresh_server_mints_an_owner_token_that_creates_a_key_whose_token_authenticates() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let owner = server.owner_token().expect("banner with the owner's token");
    let Resp { status, json: body, .. } =
        create(&server, &owner, json!({"name": "ci", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
    let token = body["data"]["attributes"]["token"].as_str().expect("token").to_owned();
    let id = body["data"]["id"].as_str().expect("id").to_owned();
    let Resp { status, json: shown, .. } = get(&server, &token, &format!("/v1/api_keys/{id}")).await;
    assert_eq!(status, 200, "{shown}");
    assert!(shown["data"]["attributes"].get("token").is_none(), "show must not return the token");
}
