//! Requests to a running server, each answered with the whole [`Resp`]onse.

use std::io::{Read, Write};
use std::time::Duration;

use chrono::{DateTime, Months, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::jsonapi::{assert_key_doc, JSON_API};
use super::server::Server;

/// A key id no key has.
pub const NIL_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Where requests go: a [`Server`], or the base URL of one (kept across restarts, or of a
/// server that is gone).
pub trait Endpoint {
    fn base(&self) -> &str;
}

impl Endpoint for Server {
    fn base(&self) -> &str {
        &self.base
    }
}

impl Endpoint for String {
    fn base(&self) -> &str {
        self
    }
}

impl Endpoint for str {
    fn base(&self) -> &str {
        self
    }
}

/// An HTTP client with a request timeout, so that a server that stops answering fails the
/// test instead of hanging it. A new one per request: a client's pooled connections belong
/// to the runtime that opened them, and each test has its own runtime.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("reqwest client")
}

/// A response, kept whole: status, headers, content type, raw text and (when it parses) JSON.
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

/// Reads a whole response. `Err` when the body did not arrive whole.
pub async fn try_into_resp(response: reqwest::Response) -> Result<Resp, reqwest::Error> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await?;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Resp { status, content_type, headers, text, json })
}

pub async fn into_resp(response: reqwest::Response) -> Resp {
    try_into_resp(response).await.expect("response body")
}

/// Any request, with `authorization` as the raw `Authorization` header value (or none),
/// `content_type` and `body` as given. `Err` when no complete answer arrived (a server killed
/// under load answers nothing).
pub async fn try_send_with_authorization(
    at: &(impl Endpoint + ?Sized),
    method: &str,
    path: &str,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<Resp, reqwest::Error> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client().request(method, format!("{}{}", at.base(), path));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    try_into_resp(request.send().await?).await
}

/// Any request that must be answered: `token` as a bearer token, `content_type` and `body`
/// as given.
pub async fn send(
    at: &(impl Endpoint + ?Sized),
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> Resp {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let answer = try_send_with_authorization(at, method, path, authorization.as_deref(), content_type, body).await;
    answer.unwrap_or_else(|e| panic!("{method} {path} got no answer: {e}"))
}

/// A create document with the given attributes.
pub fn create_doc(attributes: Value) -> Value {
    json!({ "data": { "type": "api_keys", "attributes": attributes } })
}

/// POST /v1/api_keys with a create document of these attributes; `Err` when no complete
/// answer arrived.
pub async fn try_create(at: &(impl Endpoint + ?Sized), token: &str, attributes: Value) -> Result<Resp, reqwest::Error> {
    let body = create_doc(attributes).to_string().into_bytes();
    try_send_with_authorization(at, "POST", "/v1/api_keys", Some(&format!("Bearer {token}")), Some(JSON_API), Some(body)).await
}

/// POST /v1/api_keys with a create document of these attributes.
pub async fn create(at: &(impl Endpoint + ?Sized), token: &str, attributes: Value) -> Resp {
    post_raw(at, token, create_doc(attributes).to_string().into_bytes()).await
}

/// POST /v1/api_keys with an arbitrary body as application/vnd.api+json.
pub async fn post_raw(at: &(impl Endpoint + ?Sized), token: &str, body: Vec<u8>) -> Resp {
    send(at, "POST", "/v1/api_keys", Some(token), Some(JSON_API), Some(body)).await
}

/// Creates a key that must be created (201, well-formed, with a token).
pub async fn create_ok(at: &(impl Endpoint + ?Sized), token: &str, attributes: Value) -> Resp {
    let resp = create(at, token, attributes.clone()).await;
    assert_eq!(resp.status, 201, "create {attributes} should succeed: {}", resp.text);
    assert_key_doc(&resp, true);
    resp
}

/// GET a path with a token.
pub async fn get(at: &(impl Endpoint + ?Sized), token: &str, path: &str) -> Resp {
    send(at, "GET", path, Some(token), None, None).await
}

/// GET /v1/api_keys/{id}.
pub async fn show(at: &(impl Endpoint + ?Sized), token: &str, id: &str) -> Resp {
    get(at, token, &format!("/v1/api_keys/{id}")).await
}

/// PUT /v1/api_keys/{id} with these attributes.
pub async fn update(at: &(impl Endpoint + ?Sized), token: &str, id: &str, attributes: Value) -> Resp {
    let body = create_doc(attributes).to_string().into_bytes();
    send(at, "PUT", &format!("/v1/api_keys/{id}"), Some(token), Some(JSON_API), Some(body)).await
}

/// DELETE /v1/api_keys/{id}.
pub async fn revoke(at: &(impl Endpoint + ?Sized), token: &str, id: &str) -> Resp {
    send(at, "DELETE", &format!("/v1/api_keys/{id}"), Some(token), None, None).await
}

/// POST /v1/api_keys/{id}/rotate, with a document of these attributes or with no body.
pub async fn rotate(at: &(impl Endpoint + ?Sized), token: &str, id: &str, attributes: Option<Value>) -> Resp {
    let path = format!("/v1/api_keys/{id}/rotate");
    match attributes {
        Some(attributes) => {
            send(at, "POST", &path, Some(token), Some(JSON_API), Some(create_doc(attributes).to_string().into_bytes())).await
        }
        None => send(at, "POST", &path, Some(token), None, None).await,
    }
}

/// Whether the server takes `token`: an authenticated caller asking for a key that does
/// not exist gets 404, anyone else 401.
pub async fn authenticates(at: &(impl Endpoint + ?Sized), token: &str) -> bool {
    let resp = show(at, token, NIL_ID).await;
    match resp.status {
        404 => true,
        401 => false,
        other => panic!("GET /v1/api_keys/{NIL_ID} answered {other}: {}", resp.text),
    }
}

/// A GET with a raw `Authorization` header value (or none).
pub async fn get_with_authorization(at: &(impl Endpoint + ?Sized), path: &str, authorization: Option<&str>) -> Resp {
    try_send_with_authorization(at, "GET", path, authorization, None, None).await.expect("GET got no answer")
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

/// An `expires_at` `days` from now, RFC 3339 UTC.
pub fn in_days(days: i64) -> String {
    rfc3339(Utc::now() + chrono::Duration::days(days))
}

/// Now + 5 calendar years, the latest allowed `expires_at`.
pub fn five_years_from_now() -> DateTime<Utc> {
    Utc::now().checked_add_months(Months::new(60)).expect("5 years from now")
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The attributes of a personal key named `name`, expiring in 30 days.
pub fn personal(name: &str) -> Value {
    json!({"name": name, "kind": "personal", "expires_at": in_days(30)})
}
