//! Helpers shared by the HTTP contract tests (create, errors, authentication, show): on top
//! of `tests/support`, which starts the real binary.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Months, SecondsFormat, Utc};
use serde_json::Value;

use crate::support::*;

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

pub const JSON_API: &str = "application/vnd.api+json";

/// A server over the Acme + Globex fixtures with a personal token for every user.
pub struct World {
    pub data: DataDir,
    pub tokens: HashMap<String, String>,
    pub server: Server,
}

impl World {
    pub fn start() -> World {
        World::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> World {
        let data = DataDir::new();
        let tokens = data.acme_and_globex();
        let server = Server::start_with(&data, extra);
        World { data, tokens, server }
    }

    /// The personal token of a fixture user, by first name ("alice", "hank", ...).
    pub fn token(&self, who: &str) -> String {
        let email = email_of(who);
        self.tokens.get(&email).unwrap_or_else(|| panic!("no token for {email}")).clone()
    }

    /// Stops the server (SIGTERM, clean exit), keeping the data and the tokens.
    pub fn stop(self) -> (DataDir, HashMap<String, String>) {
        let World { data, tokens, server } = self;
        server.stop();
        (data, tokens)
    }

    /// Starts a server again over data a stopped world left.
    pub fn resume(data: DataDir, tokens: HashMap<String, String>, extra: &[&str]) -> World {
        let server = Server::start_with(&data, extra);
        World { data, tokens, server }
    }
}

pub fn email_of(who: &str) -> String {
    match who {
        "hank" | "ivy" => format!("{who}@globex.test"),
        _ => format!("{who}@acme.test"),
    }
}

/// A response, kept whole: status, content type, raw text and (when it parses) JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub fn attrs(&self) -> &Value {
        &self.json["data"]["attributes"]
    }

    pub fn id(&self) -> String {
        self.json["data"]["id"].as_str().unwrap_or_else(|| panic!("no data.id in {}", self.text)).to_owned()
    }

    pub fn token(&self) -> String {
        self.attrs()["token"].as_str().unwrap_or_else(|| panic!("no token in {}", self.text)).to_owned()
    }

    pub fn attr_str(&self, name: &str) -> Option<String> {
        self.attrs()[name].as_str().map(str::to_owned)
    }
}

/// Any request: `token` as a bearer token, `content_type` and `body` as given.
pub async fn send(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> Resp {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client().request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    into_resp(request.send().await.expect("request")).await
}

/// A request with a raw `Authorization` header value (or none).
pub async fn get_with_authorization(server: &Server, path: &str, authorization: Option<&str>) -> Resp {
    let mut request = client().get(server.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    into_resp(request.send().await.expect("GET")).await
}

pub async fn into_resp(response: reqwest::Response) -> Resp {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await.expect("response body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, content_type, headers, text, json }
}

/// POST /v1/api_keys with a create document of these attributes.
pub async fn post_key(server: &Server, token: &str, attributes: Value) -> Resp {
    post_raw(server, token, create_doc(attributes).to_string().into_bytes()).await
}

/// POST /v1/api_keys with an arbitrary body as application/vnd.api+json.
pub async fn post_raw(server: &Server, token: &str, body: Vec<u8>) -> Resp {
    send(server, "POST", "/v1/api_keys", Some(token), Some(JSON_API), Some(body)).await
}

pub async fn show(server: &Server, token: &str, id: &str) -> Resp {
    send(server, "GET", &format!("/v1/api_keys/{id}"), Some(token), None, None).await
}

/// Creates a key that must be created (201, well-formed, with a token).
pub async fn create_ok(server: &Server, token: &str, attributes: Value) -> Resp {
    let resp = post_key(server, token, attributes.clone()).await;
    assert_eq!(resp.status, 201, "create {attributes} should succeed: {}", resp.text);
    assert_key_doc(&resp, true);
    resp
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

/// Now + 5 calendar years, the latest allowed `expires_at`.
pub fn five_years_from_now() -> DateTime<Utc> {
    Utc::now().checked_add_months(Months::new(60)).expect("5 years from now")
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Every byte of every file under `dir`, with its path.
pub fn read_tree(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read_dir") {
                pending.push(entry.expect("dir entry").path());
            }
        } else if meta.is_file() {
            out.push((path.clone(), std::fs::read(&path).expect("read file")));
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

/// A raw HTTP/1.1 exchange over a plain socket, for what reqwest cannot send (chunked
/// bodies of a chosen shape). Returns the status and the whole response text.
pub fn raw_http(base: &str, request: &[u8]) -> (u16, String) {
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    // The server may answer and close before reading everything; a failed write is fine
    // as long as a response arrives.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Writes a directory file (one organization) to a temporary file and applies it with
/// `keyledger directory apply` (the server must be stopped).
pub fn apply_directory(data: &DataDir, file: &Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("directory.json");
    std::fs::write(&path, serde_json::to_vec_pretty(file).unwrap()).expect("write directory file");
    cli_ok(&["directory", "apply", "--data", data.arg(), path.to_str().unwrap()]);
}

/// The Acme fixture as JSON, to modify.
pub fn acme_directory() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("directory.example.json")).unwrap()).unwrap()
}
