//! What an operator's tooling asks of a running server (DESIGN.md, "Operability"):
//! `GET /healthz`, `GET /readyz` and `GET /metrics` without a token, and logs a collector can
//! read (`--log-format json`) that never hold a token.
//!
//! Readiness going false (a writer refusing writes after a failed sync, a store that fails or
//! does not answer) needs a failing disk, which a test cannot give a real sled store; it is
//! unit-tested over a store double in `src/service/readiness.rs`.

mod common;

use std::process::Command;

use common::http::*;
use common::server::*;
use common::store::on_postgres;
use serde_json::{json, Value};

/// A server over a fresh data dir, started with `flags`, and its owner's token.
fn serving(flags: &[&str]) -> (DataDir, Server, String) {
    let data = DataDir::new();
    let server = Server::start_with(&data, flags);
    let owner = server.owner_token().expect("the first start prints the owner's token");
    (data, server, owner)
}

/// GET `path` without a token: status, content type and body.
async fn probe(server: &Server, path: &str) -> (u16, String, String) {
    let response = client().get(server.url(path)).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, content_type, response.text().await.expect("a body"))
}

/// One sample of the Prometheus text format: its name, its labels and its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Parses the sample lines of a scrape (label values here never hold `,` `"` or `}`).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or_else(|| panic!("not a label: {line}"));
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            Sample { name: name.to_owned(), labels, value }
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples.iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v))).collect();
    assert_eq!(found.len(), 1, "one sample {name} with {labels:?}, found {found:?}");
    found[0].value
}

async fn scrape(server: &Server) -> (String, Vec<Sample>) {
    let (status, content_type, text) = probe(server, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let parsed = samples(&text);
    (text, parsed)
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_without_a_token_and_reveal_nothing() {
    let (_data, server, owner) = serving(&[]);

    let (status, content_type, body) = probe(&server, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/json");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("JSON"), json!({"status": "alive"}));

    let (status, content_type, body) = probe(&server, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        json!({"status": "ready", "checks": {"writer": "ok", "store": "ok", "follower": "ok"}})
    );
    assert!(!body.contains(&owner), "{body}");

    // Outside /v1: a token is not needed, and one that is wrong changes nothing.
    let response = client().get(server.url("/readyz")).bearer_auth("rootly_not_a_token").send().await.expect("GET /readyz");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_events_and_failures_and_never_name_a_token_or_a_key() {
    // One failure an address may make a minute: the second is refused with a 429.
    let (_data, server, owner) = serving(&["--auth-failure-limit", "1"]);

    // The operator's routes, often and without a token: never an authentication failure.
    for path in ["/healthz", "/readyz", "/metrics", "/healthz"] {
        assert_eq!(probe(&server, path).await.0, 200, "{path}");
    }
    let Resp { status, json: created, .. } =
        create(&server, &owner, json!({"name": "ci", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().expect("data.id").to_owned();
    let token = created["data"]["attributes"]["token"].as_str().expect("a token").to_owned();
    let Resp { status, json: shown, .. } = get(&server, &token, &format!("/v1/api_keys/{id}")).await;
    assert_eq!(status, 200, "{shown}");
    // The token with its checksum's last digit changed.
    let last = if token.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &token[..token.len() - 1]);
    assert_eq!(get(&server, &wrong, "/v1/api_keys").await.status, 401);
    assert_eq!(get(&server, &wrong, "/v1/api_keys").await.status, 429, "beyond the address's one failure a minute");

    let (text, samples) = scrape(&server).await;
    let requests = "keyledger_requests_total";
    assert_eq!(value(&samples, requests, &[("route", "/v1/api_keys"), ("method", "POST"), ("status", "201")]), 1.0, "{text}");
    assert_eq!(value(&samples, requests, &[("route", "/v1/api_keys/{id}"), ("method", "GET"), ("status", "200")]), 1.0, "{text}");
    assert_eq!(value(&samples, requests, &[("route", "/v1/api_keys"), ("method", "GET"), ("status", "401")]), 1.0, "{text}");
    assert_eq!(value(&samples, requests, &[("route", "/v1/api_keys"), ("method", "GET"), ("status", "429")]), 1.0, "{text}");
    assert_eq!(value(&samples, requests, &[("route", "/healthz"), ("status", "200")]), 2.0, "{text}");
    assert_eq!(value(&samples, requests, &[("route", "/readyz"), ("status", "200")]), 1.0, "{text}");
    assert!(value(&samples, "keyledger_events_appended_total", &[]) >= 2.0, "the initialization's events and the create's: {text}");
    let failures = "keyledger_authentication_failures_total";
    assert_eq!(value(&samples, failures, &[("reason", "rejected")]), 2.0, "the wrong token, twice: {text}");
    assert_eq!(value(&samples, failures, &[("reason", "missing")]), 0.0, "the operator's routes are not failures: {text}");
    assert_eq!(value(&samples, "keyledger_rate_limited_total", &[("limit", "client_address")]), 1.0, "{text}");
    assert_eq!(value(&samples, "keyledger_rate_limited_total", &[("limit", "key")]), 0.0, "{text}");
    for operation in ["append", "sync", "probe", "record_last_uses"] {
        assert_eq!(value(&samples, "keyledger_store_errors_total", &[("operation", operation)]), 0.0, "{text}");
    }
    if on_postgres() {
        // A real follower: its last look may have caught this node's own commit before the
        // node published it, so the gauges are whatever that look measured.
        for gauge in ["keyledger_follower_lag_events", "keyledger_follower_lag_seconds"] {
            assert!(value(&samples, gauge, &[]) >= 0.0, "{gauge}: {text}");
        }
    } else {
        assert_eq!(value(&samples, "keyledger_follower_lag_events", &[]), 0.0, "no follower with sled: {text}");
        assert_eq!(value(&samples, "keyledger_follower_lag_seconds", &[]), 0.0, "{text}");
    }

    // Histograms with buckets, not summaries.
    for histogram in [
        "keyledger_request_duration_seconds",
        "keyledger_batch_size",
        "keyledger_append_duration_seconds",
        "keyledger_sync_duration_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {histogram} histogram")), "{histogram}: {text}");
        assert!(samples.iter().any(|s| s.name == format!("{histogram}_bucket") && s.label("le") == Some("+Inf")), "{text}");
    }
    for writer_histogram in ["keyledger_batch_size", "keyledger_append_duration_seconds", "keyledger_sync_duration_seconds"] {
        assert!(value(&samples, &format!("{writer_histogram}_count"), &[]) >= 2.0, "the initialization and the create: {text}");
    }
    let timed = value(&samples, "keyledger_request_duration_seconds_count", &[("route", "/v1/api_keys"), ("method", "POST")]);
    assert_eq!(timed, 1.0, "{text}");
    assert!(!text.contains("quantile="), "{text}");

    // Every series is a keyledger_ one, and no label holds a token, a key id or a raw path.
    for sample in &samples {
        assert!(sample.name.starts_with("keyledger_"), "{sample:?}");
    }
    for secret in [owner.as_str(), token.as_str(), wrong.as_str(), id.as_str(), "rootly_"] {
        assert!(!text.contains(secret), "{secret} in the metrics: {text}");
    }
}

#[test]
fn log_format_json_writes_every_line_after_start_as_json_and_never_a_token() {
    let data = DataDir::new();
    let owner = cli_ok(&["init", "--data", data.arg(), "--org", "Acme", "--owner", "owner@acme.test"]);
    // debug: every request is logged too.
    let server = Server::start_logging(&data, &["--log-format", "json"], "debug");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let token = runtime.block_on(async {
        let Resp { status, json: created, .. } =
            create(&server, &owner, json!({"name": "logged", "kind": "personal", "expires_at": in_days(1)})).await;
        assert_eq!(status, 201, "{created}");
        let token = created["data"]["attributes"]["token"].as_str().expect("a token").to_owned();
        assert_eq!(get(&server, &token, "/v1/users/me").await.status, 200);
        assert_eq!(get(&server, "rootly_wrong", "/v1/users/me").await.status, 401);
        assert_eq!(probe(&server, "/readyz").await.0, 200);
        token
    });

    // Every line after the plain listening line (the last of the startup output), until the
    // shutdown's, which SIGTERM brings.
    let startup = server.startup.len();
    let lines: Vec<String> = server.stop().into_iter().skip(startup).collect();
    assert!(lines.iter().any(|l| l.contains("shutting down")), "{lines:#?}");
    assert!(lines.len() >= 3, "the listening line, the requests, the shutdown: {lines:#?}");
    for line in &lines {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed["timestamp"].is_string() && parsed["level"].is_string(), "{line}");
        for secret in [owner.as_str(), token.as_str(), "rootly_wrong", "Bearer"] {
            assert!(!line.contains(secret), "{secret} logged: {line}");
        }
    }
    assert!(lines.iter().any(|l| l.contains("\"listening\"")), "{lines:#?}");
}

#[test]
fn log_format_text_on_a_pipe_has_no_colour_codes() {
    let data = DataDir::new();
    let server = Server::start_logging(&data, &[], "info");
    let line = server.wait_for_stderr("listening");
    assert!(!line.contains('\u{1b}'), "an escape code on a pipe: {line:?}");
    assert!(serde_json::from_str::<Value>(&line).is_err(), "text by default: {line}");
}

#[test]
fn the_log_format_is_also_read_from_keyledger_log_format() {
    let data = DataDir::new();
    let out = Command::new(BIN)
        .args(["serve", "--data", data.arg(), "--listen", "127.0.0.1:0"])
        .env("KEYLEDGER_LOG_FORMAT", "xml")
        .output()
        .expect("run keyledger serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("xml") && stderr.contains("--log-format"), "{stderr}");
    assert!(!data.path().join("sled").exists(), "a refused flag opened the ledger");
}

/// A log collector keeps stderr: with JSON logs, a first start does not print the owner's
/// token, it refuses and says to run `keyledger init` (which prints it on stdout) first.
#[test]
fn log_format_json_never_initializes_an_empty_ledger_with_a_token_on_stderr() {
    let data = DataDir::new();
    let out = cli(&["serve", "--data", data.arg(), "--listen", "127.0.0.1:0", "--log-format", "json"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keyledger init"), "{stderr}");
    assert!(!stderr.contains("rootly_") && out.stdout.is_empty(), "a token was printed: {stderr}");
}
