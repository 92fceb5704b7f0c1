//! API.md "Errors": the status codes outside validation, and the shape of every error
//! document, through real HTTP against the real binary.

mod common;

use common::http::{create_doc, in_days, post_raw, raw_http, send};
use common::jsonapi::{assert_error_doc, assert_invalid_at, assert_key_doc, assert_not_found, assert_unauthorized, forged_token, JSON_API};
use common::server::World;
use serde_json::json;

fn valid_body(name: &str) -> Vec<u8> {
    create_doc(json!({"name": name, "kind": "personal", "expires_at": in_days(30)})).to_string().into_bytes()
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let bodies: [&[u8]; 7] =
        [b"not json", b"{", b"", b"{\"data\": }", b"\xff\xfe\x00garbage", b"{\"data\": {\"type\": \"api_keys\"}} trailing", b"NaN"];
    for body in bodies {
        let resp = send(s, "POST", "/v1/api_keys", Some(&alice), Some(JSON_API), Some(body.to_vec())).await;
        assert_error_doc(&resp, 400);
        assert!(!resp.text.contains(&alice), "an error never echoes the token");
    }
    // Same with plain application/json.
    let resp = send(s, "POST", "/v1/api_keys", Some(&alice), Some("application/json"), Some(b"{oops".to_vec())).await;
    assert_error_doc(&resp, 400);
}

#[tokio::test]
async fn bodies_declared_as_anything_but_json_are_415() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    for content_type in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "text/json",
        "application/vnd.api+jsonx",
        "application/octet-stream",
    ] {
        // A perfectly good JSON document, but declared as something else.
        let resp = send(s, "POST", "/v1/api_keys", Some(&alice), Some(content_type), Some(valid_body(content_type))).await;
        assert_error_doc(&resp, 415);
    }
    // None of those were created: their names are still free.
    let resp = send(s, "POST", "/v1/api_keys", Some(&alice), Some(JSON_API), Some(valid_body("text/plain"))).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
}

#[tokio::test]
async fn both_json_media_types_are_accepted_with_or_without_parameters() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    for (i, content_type) in [
        "application/vnd.api+json",
        "application/json",
        "application/vnd.api+json; charset=utf-8",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
        "APPLICATION/VND.API+JSON",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("accepted {i}");
        let resp = send(s, "POST", "/v1/api_keys", Some(&alice), Some(content_type), Some(valid_body(&name))).await;
        assert_eq!(resp.status, 201, "{content_type}: {}", resp.text);
        assert_key_doc(&resp, true);
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_and_one_at_the_limit_is_read() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let limit = 64 * 1024;

    let at_limit = padded_document(limit);
    assert_eq!(at_limit.len(), limit);
    let resp = post_raw(s, &alice, at_limit).await;
    // Read and validated (the padding is an unknown attribute), not refused for its size.
    assert_invalid_at(&resp, "/data/attributes/padding");

    let over = padded_document(limit + 1);
    let resp = post_raw(s, &alice, over).await;
    assert_error_doc(&resp, 413);
    let resp = post_raw(s, &alice, padded_document(4 * limit)).await;
    assert_error_doc(&resp, 413);

    // Without a Content-Length (chunked), the limit holds as well.
    let body = padded_document(limit + 100);
    let mut request = format!(
        "POST /v1/api_keys HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/vnd.api+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(4096) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw_http(&s.base, &request);
    assert_eq!(status, 413, "{text}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response with a body");
    assert!(head.to_ascii_lowercase().contains("content-type: application/vnd.api+json"), "{head}");
    assert!(body.contains("\"errors\"") && body.contains("\"413\""), "{body}");
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let world = World::start_with(&["--body-limit", "1024"]);
    let s = &world.server;
    let alice = world.token("alice");
    let resp = post_raw(s, &alice, padded_document(1025)).await;
    assert_error_doc(&resp, 413);
    let resp = post_raw(s, &alice, padded_document(1024)).await;
    assert_invalid_at(&resp, "/data/attributes/padding");
}

/// A create document of exactly `size` bytes (an unknown `padding` attribute fills it).
fn padded_document(size: usize) -> Vec<u8> {
    let empty = create_doc(json!({"name": "big", "kind": "personal", "expires_at": in_days(30), "padding": ""})).to_string();
    assert!(size >= empty.len());
    let padded =
        create_doc(json!({"name": "big", "kind": "personal", "expires_at": in_days(30), "padding": "p".repeat(size - empty.len())}))
            .to_string();
    assert_eq!(padded.len(), size);
    padded.into_bytes()
}

#[tokio::test]
async fn unknown_routes_are_404_with_a_token_and_401_without() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    for path in ["/", "/v1", "/v1/nope", "/v1/api_keys/", "/v2/api_keys", "/v1/api_keys/x/y/z", "/.env"] {
        let resp = send(s, "GET", path, Some(&alice), None, None).await;
        assert_not_found(&resp);
        let resp = send(s, "GET", path, None, None, None).await;
        assert_unauthorized(&resp);
        let resp = send(s, "POST", path, None, Some(JSON_API), Some(b"{}".to_vec())).await;
        assert_unauthorized(&resp);
    }
}

#[tokio::test]
async fn authentication_is_checked_before_the_body_is_read() {
    let world = World::start();
    let s = &world.server;
    let forged = forged_token("rootly");
    let cases: [(Option<&str>, &[u8]); 4] =
        [(Some(JSON_API), b"not json"), (Some("text/plain"), b"hello"), (Some(JSON_API), b"{\"data\": {\"type\": \"nope\"}}"), (None, b"")];
    for (content_type, body) in cases {
        let resp = send(s, "POST", "/v1/api_keys", None, content_type, Some(body.to_vec())).await;
        assert_unauthorized(&resp);
        let resp = send(s, "POST", "/v1/api_keys", Some(&forged), content_type, Some(body.to_vec())).await;
        assert_unauthorized(&resp);
    }
}

#[tokio::test]
async fn every_error_is_a_json_api_error_document_with_string_statuses() {
    let world = World::start();
    let s = &world.server;
    let carol = world.token("carol");
    let post = |token: Option<String>, content_type: &'static str, body: Vec<u8>| {
        let token = token.clone();
        async move { send(s, "POST", "/v1/api_keys", token.as_deref(), Some(content_type), Some(body)).await }
    };
    let cases = vec![
        (400, post(Some(carol.clone()), JSON_API, b"{".to_vec()).await),
        (401, post(None, JSON_API, valid_body("a")).await),
        (401, post(Some(forged_token("rootly")), JSON_API, valid_body("a")).await),
        (
            403,
            post(
                Some(carol.clone()),
                JSON_API,
                create_doc(json!({"name": "o", "kind": "organization", "expires_at": in_days(1)})).to_string().into_bytes(),
            )
            .await,
        ),
        (404, send(s, "GET", &format!("/v1/api_keys/{}", uuid::Uuid::new_v4()), Some(&carol), None, None).await),
        (413, post(Some(carol.clone()), JSON_API, padded_document(70_000)).await),
        (415, post(Some(carol.clone()), "text/plain", valid_body("a")).await),
        (422, post(Some(carol.clone()), JSON_API, create_doc(json!({"name": ""})).to_string().into_bytes()).await),
    ];
    for (status, resp) in &cases {
        assert_error_doc(resp, *status);
        for error in resp.json["errors"].as_array().unwrap() {
            assert!(error["status"].is_string(), "status must be a JSON string: {}", resp.text);
            if let Some(detail) = error.get("detail") {
                assert!(detail.is_string(), "detail is a string when present: {}", resp.text);
            }
            assert!(!resp.text.contains(&carol), "an error never echoes the token: {}", resp.text);
        }
    }
    // A method this API does not offer on a path it knows: still a JSON:API error.
    let resp = send(s, "PATCH", "/v1/api_keys", Some(&carol), Some(JSON_API), Some(b"{}".to_vec())).await;
    assert!((400..500).contains(&resp.status), "{}", resp.text);
    assert_error_doc(&resp, resp.status);
}
