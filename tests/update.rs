//! `PUT /v1/api_keys/{id}`: name, description and expiry under the create rules; everything
//! else is refused with a way forward — through the real binary.

mod common;

use common::http::{create, get, in_days, update, Resp};
use common::jsonapi::pointers;
use common::server::World;
use serde_json::json;

#[tokio::test]
async fn an_update_changes_name_description_and_expiry_and_moves_updated_at() {
    let World { data: _data, tokens, server } = World::start();
    let carol = &tokens["carol@acme.test"];
    let Resp { json: body, .. } = create(&server, carol, json!({"name": "old", "kind": "personal", "expires_at": in_days(30)})).await;
    let id = body["data"]["id"].as_str().expect("id").to_owned();
    let created_at = body["data"]["attributes"]["updated_at"].clone();

    let Resp { status, json: updated, .. } =
        update(&server, carol, &id, json!({"name": " new ", "description": "rotated monthly", "expires_at": "2027-06-01T12:00:00+02:00"}))
            .await;
    assert_eq!(status, 200, "{updated}");
    let attributes = &updated["data"]["attributes"];
    assert_eq!(attributes["name"], "new");
    assert_eq!(attributes["description"], "rotated monthly");
    assert_eq!(attributes["expires_at"], "2027-06-01T10:00:00Z");
    assert_ne!(attributes["updated_at"], created_at);
    assert!(attributes.get("token").is_none());
    assert_eq!(get(&server, carol, &format!("/v1/api_keys/{id}")).await.json["data"]["attributes"]["name"], "new");

    let Resp { status, .. } = create(&server, carol, json!({"name": "OLD", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "the old name is free");
    let Resp { status, .. } = create(&server, carol, json!({"name": "NEW", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 422, "the new name is taken");
}

#[tokio::test]
async fn immutable_attributes_and_bad_values_are_422_together() {
    let World { data: _data, tokens, server } = World::start();
    let carol = &tokens["carol@acme.test"];
    let Resp { json: body, .. } = create(&server, carol, json!({"name": "k", "kind": "personal", "expires_at": in_days(30)})).await;
    let id = body["data"]["id"].as_str().expect("id").to_owned();
    let Resp { status, json: body, .. } =
        update(&server, carol, &id, json!({"kind": "team", "role_id": "admin", "name": "", "expires_at": "2001-01-01T00:00:00Z"})).await;
    assert_eq!(status, 422, "{body}");
    let mut found = pointers(&body);
    found.sort();
    assert_eq!(found, ["/data/attributes/expires_at", "/data/attributes/kind", "/data/attributes/name", "/data/attributes/role_id"]);
    assert!(body.to_string().contains("rotate the key"), "{body}");
}

#[tokio::test]
async fn strangers_get_not_found() {
    let World { data: _data, tokens, server } = World::start();
    let Resp { json: body, .. } =
        create(&server, &tokens["carol@acme.test"], json!({"name": "k", "kind": "personal", "expires_at": in_days(30)})).await;
    let id = body["data"]["id"].as_str().expect("id").to_owned();
    for email in ["dave@acme.test", "hank@globex.test"] {
        assert_eq!(update(&server, &tokens[email], &id, json!({"name": "mine"})).await.status, 404, "{email}");
    }
}
