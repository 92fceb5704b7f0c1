//! What a JSON:API document from the server must look like: key documents, error documents,
//! tokens.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::http::{get, Endpoint, Resp};

pub const JSON_API: &str = "application/vnd.api+json";

/// The attributes API.md "The resource" lists; every key document must carry all of them.
pub const KEY_ATTRIBUTES: [&str; 10] = [
    "name",
    "kind",
    "created_at",
    "updated_at",
    "description",
    "role_id",
    "on_call_role_id",
    "expires_at",
    "last_used_at",
    "grace_period_ends_at",
];

pub const TAKEN: &str = "Name has already been taken";

/// The titles of a JSON:API error document.
pub fn titles(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["title"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The `source.pointer`s of a JSON:API error document.
pub fn pointers(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["source"]["pointer"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// A 422 whose only problem is the taken name (`status` and `body` of an answer, so that
/// answers collected from racing tasks can be checked too).
pub fn assert_taken(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 422, "{what}: expected 422 {TAKEN:?}, got {status}: {body}");
    assert_eq!(titles(body), vec![TAKEN.to_owned()], "{what}: {body}");
    assert_eq!(pointers(body), vec!["/data/attributes/name".to_owned()], "{what}: {body}");
}

/// `GET path?query` must be a 400 whose error names the query's parameter in `source.parameter`.
pub async fn assert_bad_parameter(at: &(impl Endpoint + ?Sized), token: &str, path: &str, query: &str) {
    let resp = get(at, token, &format!("{path}?{query}")).await;
    let parameter = query.split('=').next().unwrap_or_default();
    assert_eq!(resp.status, 400, "{path}?{query}: {}", resp.text);
    assert_eq!(resp.json["errors"][0]["source"]["parameter"], parameter, "{path}?{query}: {}", resp.text);
}

/// The attributes of a shown key, minus `last_used_at`, which is kept outside the log (and
/// so is not exported, and moves with every first use in a minute).
pub fn durable_attributes(body: &Value) -> Value {
    let mut attributes = body["data"]["attributes"].clone();
    if let Some(map) = attributes.as_object_mut() {
        map.remove("last_used_at");
    }
    attributes
}

/// The essence of a content type, lower-cased, parameters dropped.
pub fn essence(content_type: &Option<String>) -> String {
    content_type.as_deref().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// A JSON:API error document: content type, only `errors`, every entry with the response's
/// status as a string and a non-empty title.
pub fn assert_error_doc(resp: &Resp, status: u16) {
    assert_eq!(resp.status, status, "expected {status}: {}", resp.text);
    assert_eq!(essence(&resp.content_type), JSON_API, "error content type for {}: {:?}", resp.text, resp.content_type);
    let doc = resp.json.as_object().unwrap_or_else(|| panic!("error body is not a JSON object: {:?}", resp.text));
    assert!(doc.get("data").is_none(), "an error document carries no data: {}", resp.text);
    let errors = doc.get("errors").and_then(Value::as_array).unwrap_or_else(|| panic!("no errors array: {}", resp.text));
    assert!(!errors.is_empty(), "errors must not be empty: {}", resp.text);
    for error in errors {
        assert_eq!(error["status"], Value::String(status.to_string()), "status must be the string {status:?}: {}", resp.text);
        let title = error["title"].as_str().unwrap_or_else(|| panic!("every error has a title: {}", resp.text));
        assert!(!title.trim().is_empty(), "empty title: {}", resp.text);
    }
}

/// Exactly one error, with this status and title.
pub fn assert_single_error(resp: &Resp, status: u16, title: &str) {
    assert_error_doc(resp, status);
    assert_eq!(titles(&resp.json), vec![title.to_owned()], "{}", resp.text);
}

/// 422 with exactly one problem: this title at this pointer.
pub fn assert_invalid(resp: &Resp, title: &str, pointer: &str) {
    assert_error_doc(resp, 422);
    assert_eq!(problems(resp), vec![(title.to_owned(), pointer.to_owned())], "{}", resp.text);
}

/// 422 with exactly one problem at this pointer (whatever its title).
pub fn assert_invalid_at(resp: &Resp, pointer: &str) {
    assert_error_doc(resp, 422);
    assert_eq!(pointers(&resp.json), vec![pointer.to_owned()], "{}", resp.text);
    assert_eq!(resp.json["errors"].as_array().map(Vec::len), Some(1), "{}", resp.text);
}

/// (title, pointer) of every error, in order.
pub fn problems(resp: &Resp) -> Vec<(String, String)> {
    resp.json["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (e["title"].as_str().unwrap_or_default().to_owned(), e["source"]["pointer"].as_str().unwrap_or_default().to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn assert_forbidden(resp: &Resp) {
    assert_error_doc(resp, 403);
}

pub fn assert_unauthorized(resp: &Resp) {
    assert_single_error(resp, 401, "Invalid token");
}

pub fn assert_not_found(resp: &Resp) {
    assert_single_error(resp, 404, "Not found or unauthorized");
}

/// `<prefix>_<64 lowercase hex>` whose last 8 hex are the CRC-32 of everything before.
pub fn is_token(text: &str, prefix: &str) -> bool {
    let Some(secret) = text.strip_prefix(prefix).and_then(|s| s.strip_prefix('_')) else { return false };
    secret.len() == 64 && secret.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// CRC-32 (IEEE 802.3, the zlib/PNG one), written out so the tests check the token format
/// independently of the crate the service uses.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A token of the right shape with a correct checksum that no key has.
pub fn forged_token(prefix: &str) -> String {
    let mut random = [0u8; 28];
    getrandom::fill(&mut random).expect("random");
    let mut text = format!("{prefix}_");
    for b in random {
        text.push_str(&format!("{b:02x}"));
    }
    let crc = crc32(text.as_bytes());
    text.push_str(&format!("{crc:08x}"));
    text
}

/// Whether the last 8 hex of a token are the CRC-32 of everything before them.
pub fn checksum_ok(token: &str) -> bool {
    let (body, crc) = token.split_at(token.len() - 8);
    format!("{:08x}", crc32(body.as_bytes())) == crc
}

/// An RFC 3339 UTC timestamp with `Z` and at most microsecond precision.
pub fn assert_timestamp(name: &str, value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap_or_else(|| panic!("{name} must be a string, got {value}"));
    assert!(text.ends_with('Z'), "{name} must be UTC with Z: {text}");
    if let Some((_, fraction)) = text.split_once('.') {
        let digits = fraction.trim_end_matches('Z');
        assert!(digits.len() <= 6 && digits.bytes().all(|b| b.is_ascii_digit()), "{name}: at most microseconds: {text}");
    }
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{name} is not RFC 3339 ({e}): {text}")).with_timezone(&Utc)
}

/// A key document: `data.id` a UUID, `type` api_keys, every listed attribute present,
/// timestamps in UTC `Z`, and `token` present (and well-formed) exactly when expected.
pub fn assert_key_doc(resp: &Resp, with_token: bool) {
    assert_key_doc_prefixed(resp, with_token, "rootly");
}

pub fn assert_key_doc_prefixed(resp: &Resp, with_token: bool, prefix: &str) {
    assert_eq!(essence(&resp.content_type), JSON_API, "content type: {:?}", resp.content_type);
    let data = &resp.json["data"];
    let id = data["id"].as_str().unwrap_or_else(|| panic!("data.id must be a string: {}", resp.text));
    assert!(uuid::Uuid::parse_str(id).is_ok(), "data.id must be a UUID: {id}");
    assert_eq!(data["type"], "api_keys", "{}", resp.text);
    let attrs = data["attributes"].as_object().unwrap_or_else(|| panic!("attributes must be an object: {}", resp.text));
    for name in KEY_ATTRIBUTES {
        assert!(attrs.contains_key(name), "attribute {name} is missing: {}", resp.text);
    }
    assert!(attrs["name"].is_string(), "{}", resp.text);
    assert!(matches!(attrs["kind"].as_str(), Some("personal" | "team" | "organization")), "kind: {}", resp.text);
    let created = assert_timestamp("created_at", &attrs["created_at"]);
    let updated = assert_timestamp("updated_at", &attrs["updated_at"]);
    let expires = assert_timestamp("expires_at", &attrs["expires_at"]);
    assert!(updated >= created, "updated_at before created_at: {}", resp.text);
    assert!(expires > created, "expires_at not after created_at: {}", resp.text);
    for name in ["last_used_at", "grace_period_ends_at"] {
        if !attrs[name].is_null() {
            assert_timestamp(name, &attrs[name]);
        }
    }
    for name in ["description", "role_id", "on_call_role_id"] {
        assert!(attrs[name].is_null() || attrs[name].is_string(), "{name} must be a string or null: {}", resp.text);
    }
    match (with_token, attrs.get("token")) {
        (true, Some(Value::String(token))) => {
            assert!(is_token(token, prefix), "token must match ^{prefix}_[0-9a-f]{{64}}$: {token}");
            assert!(checksum_ok(token), "token must end in the CRC-32 of what precedes it: {token}");
        }
        (true, other) => panic!("the token is missing from a response that must carry it: {other:?} in {}", resp.text),
        (false, None) => {}
        (false, Some(_)) => panic!("a token in a response that must not carry one: {}", resp.text),
    }
}
