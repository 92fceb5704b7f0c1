//! `GET /openapi.json`: an OpenAPI 3.1 document generated from the code, naming every route
//! the server answers, and describing the responses as they really are.

mod common;

use std::collections::BTreeSet;

use common::http::{create, create_doc, get, in_days, send, Resp};
use common::jsonapi::JSON_API;
use common::server::{DataDir, Server, World};
use serde_json::{json, Value};

/// Every (path, method) of the API: API.md's table and the read-only directory.
const ROUTES: [(&str, &str); 10] = [
    ("/v1/api_keys", "get"),
    ("/v1/api_keys", "post"),
    ("/v1/api_keys/{id}", "delete"),
    ("/v1/api_keys/{id}", "get"),
    ("/v1/api_keys/{id}", "put"),
    ("/v1/api_keys/{id}/rotate", "post"),
    ("/v1/on_call_roles", "get"),
    ("/v1/roles", "get"),
    ("/v1/teams", "get"),
    ("/v1/users/me", "get"),
];

async fn openapi(server: &Server) -> Value {
    let resp = send(server, "GET", "/openapi.json", None, None, None).await;
    assert_eq!(resp.status, 200, "the document needs no token");
    serde_json::from_str(&resp.text).expect("the document is JSON")
}

fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| item.as_object().into_iter().flatten().map(move |(method, _)| (path.clone(), method.clone())))
        .collect()
}

#[tokio::test]
async fn every_route_is_in_the_openapi_31_document_and_nothing_else() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let document = openapi(&server).await;

    assert_eq!(document["openapi"], "3.1.0");
    let expected: BTreeSet<(String, String)> = ROUTES.iter().map(|(path, method)| (path.to_string(), method.to_string())).collect();
    assert_eq!(documented(&document), expected);
    assert!(document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer", "bearer auth is declared");
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference} is not local"));
        assert!(document.pointer(pointer).is_some(), "{reference} points nowhere in the document");
    }
}

/// Every `$ref` in the document.
fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                refs.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// Requests every documented operation, valid and authorized, against the real server: each
/// must be served (a 2xx that the document lists), so the document names no route the server
/// lacks, and the server has none the document lacks (the fallback would answer 404).
#[tokio::test]
async fn every_documented_operation_is_served_with_a_documented_status() {
    let World { data: _data, tokens, server } = World::start();
    let alice = &tokens["alice@acme.test"];
    let document = openapi(&server).await;
    let Resp { status, json: created, .. } =
        create(&server, alice, json!({"name": "documented", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().expect("id").to_owned();
    let key_token = created["data"]["attributes"]["token"].as_str().expect("token").to_owned();

    // In an order that leaves each route something to act on: revoke last.
    let calls: [(&str, &str, &str, Option<Value>); 10] = [
        ("/v1/api_keys", "get", alice, None),
        ("/v1/api_keys", "post", alice, Some(create_doc(json!({"name": "another", "kind": "personal", "expires_at": in_days(30)})))),
        ("/v1/api_keys/{id}", "get", alice, None),
        ("/v1/api_keys/{id}", "put", alice, Some(create_doc(json!({"description": "documented key"})))),
        ("/v1/api_keys/{id}/rotate", "post", &key_token, None),
        ("/v1/on_call_roles", "get", alice, None),
        ("/v1/roles", "get", alice, None),
        ("/v1/teams", "get", alice, None),
        ("/v1/users/me", "get", alice, None),
        ("/v1/api_keys/{id}", "delete", alice, None),
    ];
    let mut called = BTreeSet::new();
    for (path, method, token, body) in calls {
        let content_type = body.as_ref().map(|_| JSON_API);
        let resp = send(
            &server,
            &method.to_uppercase(),
            &path.replace("{id}", &id),
            Some(token),
            content_type,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await;
        let Resp { status, json: body, .. } = resp;
        assert!((200..300).contains(&status), "{method} {path}: {status} {body}");
        let responses = &document["paths"][path][method]["responses"];
        assert!(responses.get(status.to_string()).is_some(), "{method} {path}: {status} is not documented");
        called.insert((path.to_owned(), method.to_owned()));
    }
    assert_eq!(called, documented(&document), "every documented operation was called");
}

/// A strict client requires every attribute the schema calls required: the responses have them.
#[tokio::test]
async fn responses_carry_every_required_attribute_of_their_schema() {
    let World { data: _data, tokens, server } = World::start();
    let carol = &tokens["carol@acme.test"];
    let document = openapi(&server).await;
    let schemas = &document["components"]["schemas"];
    let required = |schema: &str| -> Vec<String> {
        schemas[schema]["required"].as_array().expect("required").iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    };

    let Resp { json: created, .. } = create(&server, carol, json!({"name": "strict", "kind": "personal", "expires_at": in_days(30)})).await;
    let id = created["data"]["id"].as_str().expect("id");
    let Resp { json: shown, .. } = get(&server, carol, &format!("/v1/api_keys/{id}")).await;
    let Resp { json: listed, .. } = get(&server, carol, "/v1/api_keys").await;
    for (name, attributes) in [("show", &shown["data"]["attributes"]), ("list", &listed["data"][0]["attributes"])] {
        for attribute in required("ApiKeyAttributes") {
            assert!(attributes.get(&attribute).is_some(), "{name}: {attribute} is required but missing: {attributes}");
        }
    }
    for part in required("Meta") {
        assert!(listed["meta"].get(&part).is_some(), "meta.{part} missing");
    }
    for part in required("Links") {
        assert!(listed["links"].get(&part).is_some(), "links.{part} missing");
    }
    let Resp { json: me, .. } = get(&server, carol, "/v1/users/me").await;
    for attribute in required("UserAttributes") {
        assert!(me["data"]["attributes"].get(&attribute).is_some(), "users/me: {attribute} missing");
    }
    assert!(required("ApiKeyAttributes").contains(&"last_used_at".to_owned()), "nullable attributes are required too");
    assert!(!required("ApiKeyAttributes").contains(&"token".to_owned()), "token appears only in create and rotate");
}

/// API.md's Limits: any `/v1` call may be rate limited (429, a JSON:API error with
/// `Retry-After`), and its other responses but the 401 name the `RateLimit-*` headers.
#[tokio::test]
async fn every_operation_documents_rate_limiting() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let document = openapi(&server).await;
    let too_many = &document["components"]["responses"]["TooManyRequests"];
    assert!(too_many["headers"]["Retry-After"].is_object(), "{too_many}");
    assert!(too_many["content"]["application/vnd.api+json"]["schema"]["$ref"] == "#/components/schemas/ErrorDocument");
    for (path, method) in ROUTES {
        let responses = document["paths"][path][method]["responses"].as_object().expect("responses");
        assert_eq!(responses["429"]["$ref"], "#/components/responses/TooManyRequests", "{method} {path}");
        for (status, response) in responses {
            let response = match response["$ref"].as_str() {
                Some(reference) => document.pointer(reference.trim_start_matches('#')).expect("the reference resolves"),
                None => response,
            };
            let named = ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"].map(|h| response["headers"].get(h).is_some());
            let expected = status != "401";
            assert_eq!(named, [expected; 3], "{method} {path} {status}");
        }
    }
}
