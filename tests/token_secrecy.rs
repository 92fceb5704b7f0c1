//! API.md: "The plaintext token appears in exactly two places: the 201 of create and the 200
//! of rotate. Never in any other response, log line, event, error message or file."
//! Checked here against the data directory (every file, as bytes) and the server's log.

mod common;

use common::fixtures::PLATFORM_TEAM;
use common::http::{create, in_days, post_raw, rotate, show};
use common::ledger::read_tree;
use common::server::{DataDir, Server};
use common::store::sled_only;
use serde_json::json;

/// Whether `needle` occurs anywhere in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

/// The forms a leaked token could take on disk or in a log.
fn needles(token: &str) -> Vec<(String, Vec<u8>)> {
    let secret = token.split_once('_').expect("prefixed token").1;
    vec![
        ("token".into(), token.as_bytes().to_vec()),
        ("64-hex secret".into(), secret.as_bytes().to_vec()),
        ("56-hex random part".into(), secret.as_bytes()[..56].to_vec()),
        ("upper-case hex".into(), secret.to_uppercase().into_bytes()),
        ("random part as raw bytes".into(), hex_decode(&secret[..56])),
    ]
}

#[tokio::test]
async fn no_plaintext_token_reaches_the_data_directory_or_the_log() {
    if sled_only("reads every file of the data dir for token bytes (on PostgreSQL the dir stays empty)") {
        return;
    }
    let data = DataDir::new();
    let cli_tokens = data.acme_and_globex();

    // The real binary at the most verbose log level, its whole stderr kept.
    let server = Server::start_logging(&data, &[], "trace");

    let alice = cli_tokens["alice@acme.test"].clone();
    let carol = cli_tokens["carol@acme.test"].clone();
    let mut created = Vec::new();
    for (token, body) in [
        (alice.clone(), json!({"name": "p", "kind": "personal", "expires_at": in_days(3), "description": "secret holder"})),
        (alice.clone(), json!({"name": "o", "kind": "organization", "role_id": "admin", "expires_at": in_days(3)})),
        (carol.clone(), json!({"name": "t", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(3)})),
        (cli_tokens["hank@globex.test"].clone(), json!({"name": "g", "kind": "personal", "expires_at": in_days(3)})),
    ] {
        let resp = create(&server, &token, body).await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        created.push((resp.id(), resp.token()));
    }
    // Use every new token, and misuse them, so that every path that could log one runs.
    for (id, token) in &created {
        assert_eq!(show(&server, token, id).await.status, 200);
        let _ = create(&server, token, json!({"name": "p", "kind": "personal", "expires_at": in_days(3)})).await; // 403 or 201
        let _ = create(&server, token, json!({"name": "", "kind": "organization", "expires_at": "x"})).await; // 403 or 422
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(show(&server, &tampered, id).await.status, 401);
        assert_eq!(show(&server, token, &uuid::Uuid::new_v4().to_string()).await.status, 404);
        let _ = post_raw(&server, token, format!("{{\"data\": \"{token}\"").into_bytes()).await;
    }
    for token in cli_tokens.values() {
        let _ = show(&server, token, &uuid::Uuid::new_v4().to_string()).await;
    }
    // Rotate every key twice: the second rotation retires the first token while the second
    // is in its grace period; every token so far must still never reach disk or the log.
    let mut rotated = Vec::new();
    for (id, token) in &created {
        let mut current = token.clone();
        for grace in [30, 0] {
            let resp = rotate(&server, &current, id, Some(json!({"grace_period_minutes": grace}))).await;
            assert_eq!(resp.status, 200, "{}", resp.text);
            current = resp.token();
            rotated.push(current.clone());
        }
        assert_eq!(show(&server, &current, id).await.status, 200);
        assert_eq!(show(&server, token, id).await.status, 401, "retired by the second rotation");
    }

    // Stop cleanly so that everything buffered is flushed, then look at everything.
    let log = server.stop();
    assert!(log.len() > 1, "the trace log should have something in it");
    let log = log.join("\n");

    let files = read_tree(data.path());
    assert!(!files.is_empty(), "the data directory holds files");
    let total: usize = files.iter().map(|(_, bytes)| bytes.len()).sum();
    assert!(total > 0);
    let all_tokens: Vec<&String> = created.iter().map(|(_, t)| t).chain(&rotated).chain(cli_tokens.values()).collect();
    for token in all_tokens {
        for (form, needle) in needles(token) {
            for (path, bytes) in &files {
                assert!(!contains(bytes, &needle), "the {form} of a token is stored in {}", path.display());
            }
            assert!(!contains(log.as_bytes(), &needle), "the {form} of a token is in the server log");
        }
    }
}
