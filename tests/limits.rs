//! What a client may cost the server (API.md, "Limits and response hygiene"): header and
//! request timeouts, the connection cap, rate limits per key and per address, and the
//! headers every `/v1` response carries.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::{client, create, create_doc, get, in_days, Resp};
use common::jsonapi::assert_bad_parameter;
use common::server::{DataDir, Server};
use serde_json::{json, Value};

/// A server over a fresh data dir, started with `flags`, and its owner's token.
fn serving(flags: &[&str]) -> (DataDir, Server, String) {
    let data = DataDir::new();
    let server = Server::start_with(&data, flags);
    let owner = server.owner_token().expect("the first start prints the owner's token");
    (data, server, owner)
}

fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://")).expect("connect")
}

/// Reads one HTTP/1.1 response (headers, then a `Content-Length` body) off `stream`.
fn read_response(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        bytes.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|line| line.strip_prefix("content-length:")).map_or(0, |n| n.trim().parse().expect("a content length"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    bytes.extend(body);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads until the server closes the connection; how long that took.
fn time_until_closed(stream: &mut TcpStream, started: Instant) -> Duration {
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection within 20 s: {e}"),
    }
    started.elapsed()
}

fn assert_hygienic(response: &reqwest::Response) {
    assert_eq!(response.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"), "{:?}", response.headers());
    assert_eq!(response.headers().get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{:?}", response.headers());
}

fn header(response: &reqwest::Response, name: &str) -> u64 {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a whole number"))
}

async fn me(server: &Server, token: &str) -> reqwest::Response {
    client().get(server.url("/v1/users/me")).bearer_auth(token).send().await.expect("GET /v1/users/me")
}

#[test]
fn a_client_that_does_not_finish_its_headers_is_cut_at_the_header_timeout() {
    let (_data, server, _owner) = serving(&["--header-timeout", "1"]);
    let mut stream = connect(&server);
    let started = Instant::now();
    stream.write_all(b"GET /v1/api_keys HTTP/1.1\r\nHost: localhost\r\nAuthor").expect("half a request");
    let elapsed = time_until_closed(&mut stream, started);
    assert!(elapsed >= Duration::from_millis(900), "cut after {elapsed:?}, before the header timeout");
    assert!(elapsed < Duration::from_secs(5), "cut only after {elapsed:?}");
}

#[test]
fn a_request_whose_body_does_not_arrive_is_answered_503_at_the_request_timeout() {
    let (_data, server, owner) = serving(&["--request-timeout", "1"]);
    let mut stream = connect(&server);
    let started = Instant::now();
    let head = format!(
        "POST /v1/api_keys HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {owner}\r\n\
         Content-Type: application/vnd.api+json\r\nContent-Length: 100\r\n\r\n{{\"data\":"
    );
    stream.write_all(head.as_bytes()).expect("headers and part of a body");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
    let response = read_response(&mut stream).expect("an answer within 20 s");
    let elapsed = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(elapsed >= Duration::from_millis(900), "answered after {elapsed:?}, before the request timeout");
    let lower = response.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/vnd.api+json"), "{response}");
    assert!(lower.contains("cache-control: no-store") && lower.contains("x-content-type-options: nosniff"), "{response}");
    let body: Value = serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).expect("a JSON body");
    assert_eq!(body["errors"][0]["status"], "503", "{body}");
}

#[test]
fn beyond_max_connections_a_connection_waits_until_one_closes() {
    let (_data, server, _owner) = serving(&["--max-connections", "2"]);
    let request = b"GET /v1/users/me HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut served: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect(&server);
            stream.write_all(request).expect("a request");
            let response = read_response(&mut stream).expect("served");
            assert!(response.starts_with("HTTP/1.1 401"), "{response}");
            stream
        })
        .collect();

    let mut third = connect(&server);
    third.write_all(request).expect("a request");
    third.set_read_timeout(Some(Duration::from_millis(1500))).expect("read timeout");
    let mut byte = [0u8; 1];
    match third.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("a third connection was served while two were open: {other:?}"),
    }

    served.remove(0);
    third.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let response = read_response(&mut third).expect("served once a connection closed");
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
}

#[tokio::test]
async fn a_key_beyond_its_rate_limit_gets_429_with_retry_after_and_its_standing() {
    let (_data, server, owner) = serving(&["--rate-limit", "3"]);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = me(&server, &owner).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-limit"), 3);
        remaining.push(header(&response, "ratelimit-remaining"));
    }
    assert_eq!(remaining, [2, 1, 0]);

    let response = me(&server, &owner).await;
    assert_eq!(response.status(), 429);
    assert_hygienic(&response);
    let retry_after = header(&response, "retry-after");
    assert!((1..=20).contains(&retry_after), "Retry-After {retry_after}: one request comes back every 20 s");
    assert_eq!(header(&response, "ratelimit-limit"), 3);
    assert_eq!(header(&response, "ratelimit-remaining"), 0);
    assert!((retry_after..=60).contains(&header(&response, "ratelimit-reset")));
    assert_eq!(response.headers()["content-type"], "application/vnd.api+json");
    let body: Value = response.json().await.expect("a JSON:API error");
    assert_eq!(body["errors"][0]["status"], "429", "{body}");
    assert!(!body.to_string().contains(&owner), "the token is never in an answer: {body}");
}

#[tokio::test]
async fn each_key_has_its_own_rate_limit() {
    let (_data, server, owner) = serving(&["--rate-limit", "3"]);
    let Resp { status, json: created, .. } =
        create(&server, &owner, json!({"name": "second", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{created}");
    let second = created["data"]["attributes"]["token"].as_str().expect("a token").to_owned();
    for _ in 0..2 {
        assert_eq!(me(&server, &owner).await.status(), 200);
    }
    assert_eq!(me(&server, &owner).await.status(), 429);
    let response = me(&server, &second).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "ratelimit-remaining"), 2);
}

#[tokio::test]
async fn an_ordinary_authenticated_answer_carries_the_keys_standing() {
    let (_data, server, owner) = serving(&[]);
    let response = me(&server, &owner).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "ratelimit-limit"), 3000);
    assert_eq!(header(&response, "ratelimit-remaining"), 2999);
    assert!((1..=60).contains(&header(&response, "ratelimit-reset")));
    assert_hygienic(&response);

    let Resp { status, .. } = get(&server, &owner, "/v1/api_keys").await;
    assert_eq!(status, 200);
    let response = client().get(server.url("/v1/api_keys/not-a-key")).bearer_auth(&owner).send().await.expect("GET");
    assert_eq!(response.status(), 404);
    // A request comes back every 20 ms at 3000 a minute: by now one or two may have.
    assert!((2997..3000).contains(&header(&response, "ratelimit-remaining")), "an error of the handler's carries the standing too");
}

#[tokio::test]
async fn beyond_the_auth_failure_limit_only_requests_without_a_valid_token_get_429() {
    let (_data, server, owner) = serving(&["--auth-failure-limit", "3"]);
    let forged = format!("rootly_{}", "0".repeat(64));
    for _ in 0..3 {
        let response = me(&server, &forged).await;
        assert_eq!(response.status(), 401);
        assert!(response.headers().get("ratelimit-limit").is_none(), "no standing without a key");
    }
    let response = me(&server, &forged).await;
    assert_eq!(response.status(), 429);
    assert_hygienic(&response);
    assert!((1..=20).contains(&header(&response, "retry-after")));
    let body: Value = response.json().await.expect("a JSON:API error");
    assert_eq!(body["errors"][0]["status"], "429", "{body}");

    let response = client().get(server.url("/v1/users/me")).send().await.expect("GET without a token");
    assert_eq!(response.status(), 429, "a request without a token is refused as well");

    let response = me(&server, &owner).await;
    assert_eq!(response.status(), 200, "a valid token is never refused for its address");
    assert_eq!(header(&response, "ratelimit-remaining"), 2999);
}

#[tokio::test]
async fn created_unauthorized_and_not_found_answers_are_not_stored_or_sniffed() {
    let (_data, server, owner) = serving(&[]);
    let response = client()
        .post(server.url("/v1/api_keys"))
        .bearer_auth(&owner)
        .header("content-type", "application/vnd.api+json")
        .body(create_doc(json!({"name": "laptop", "kind": "personal", "expires_at": in_days(30)})).to_string())
        .send()
        .await
        .expect("POST /v1/api_keys");
    assert_eq!(response.status(), 201);
    assert_hygienic(&response);

    let response = client().get(server.url("/v1/api_keys")).send().await.expect("GET without a token");
    assert_eq!(response.status(), 401);
    assert_hygienic(&response);

    let response = client().get(server.url("/v1/no_such_thing")).bearer_auth(&owner).send().await.expect("GET");
    assert_eq!(response.status(), 404);
    assert_hygienic(&response);
}

#[tokio::test]
async fn a_search_longer_than_255_characters_is_400_naming_it() {
    let (_data, server, owner) = serving(&[]);
    let Resp { status, json: body, .. } = get(&server, &owner, &format!("/v1/api_keys?filter[search]={}", "a".repeat(255))).await;
    assert_eq!(status, 200, "{body}");
    assert_bad_parameter(&server, &owner, "/v1/api_keys", &format!("filter[search]={}", "é".repeat(256))).await;
}
