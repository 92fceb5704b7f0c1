//! API.md: "The plaintext token appears in exactly two places: the 201 of create and the 200
//! of rotate. Never in any other response, log line, event, error message or file."
//! Checked here against the data directory (every file, as bytes) and the server's log.

mod ext;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ext::*;
use serde_json::json;
use support::*;

/// Kills the server if the test fails before stopping it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
    let data = DataDir::new();
    let cli_tokens = data.acme_and_globex();

    // The real binary at the most verbose log level, its whole stderr kept.
    let mut child = Command::new(BIN)
        .args(["serve", "--data", data.arg(), "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyledger serve");
    let stderr = child.stderr.take().unwrap();
    let mut child = KillOnDrop(Some(child));
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let base = loop {
        let line = lines_rx.recv_timeout(Duration::from_secs(60)).expect("the server starts listening within 60 s");
        log.push(line.clone());
        if let Some(address) = line.strip_prefix("keyledger listening on ") {
            break address.trim().to_owned();
        }
    };
    let base = base.clone();
    let http = client();
    let post = |token: String, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{base}/v1/api_keys");
        async move {
            into_resp(
                http.post(url).bearer_auth(token).header("content-type", JSON_API).body(create_doc(body).to_string()).send().await.unwrap(),
            )
            .await
        }
    };
    let get = |token: String, id: String| {
        let http = http.clone();
        let url = format!("{base}/v1/api_keys/{id}");
        async move { into_resp(http.get(url).bearer_auth(token).send().await.unwrap()).await }
    };

    let alice = cli_tokens["alice@acme.test"].clone();
    let carol = cli_tokens["carol@acme.test"].clone();
    let mut created = Vec::new();
    for (token, body) in [
        (alice.clone(), json!({"name": "p", "kind": "personal", "expires_at": in_days(3), "description": "secret holder"})),
        (alice.clone(), json!({"name": "o", "kind": "organization", "role_id": "admin", "expires_at": in_days(3)})),
        (carol.clone(), json!({"name": "t", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(3)})),
        (cli_tokens["hank@globex.test"].clone(), json!({"name": "g", "kind": "personal", "expires_at": in_days(3)})),
    ] {
        let resp = post(token, body).await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        created.push((resp.id(), resp.token()));
    }
    // Use every new token, and misuse them, so that every path that could log one runs.
    for (id, token) in &created {
        assert_eq!(get(token.clone(), id.clone()).await.status, 200);
        let _ = post(token.clone(), json!({"name": "p", "kind": "personal", "expires_at": in_days(3)})).await; // 403 or 201
        let _ = post(token.clone(), json!({"name": "", "kind": "organization", "expires_at": "x"})).await; // 403 or 422
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(get(tampered, id.clone()).await.status, 401);
        assert_eq!(get(token.clone(), uuid::Uuid::new_v4().to_string()).await.status, 404);
        let _ = http
            .post(format!("{base}/v1/api_keys"))
            .bearer_auth(token)
            .header("content-type", JSON_API)
            .body(format!("{{\"data\": \"{token}\""))
            .send()
            .await
            .unwrap();
    }
    for token in cli_tokens.values() {
        let _ = get(token.clone(), uuid::Uuid::new_v4().to_string()).await;
    }
    // Rotate every key twice: the second rotation retires the first token while the second
    // is in its grace period; every token so far must still never reach disk or the log.
    let mut rotated = Vec::new();
    for (id, token) in &created {
        let mut current = token.clone();
        for grace in [30, 0] {
            let resp = into_resp(
                http.post(format!("{base}/v1/api_keys/{id}/rotate"))
                    .bearer_auth(&current)
                    .header("content-type", JSON_API)
                    .body(json!({"data": {"type": "api_keys", "attributes": {"grace_period_minutes": grace}}}).to_string())
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(resp.status, 200, "{}", resp.text);
            current = resp.token();
            rotated.push(current.clone());
        }
        assert_eq!(get(current.clone(), id.clone()).await.status, 200);
        assert_eq!(get(token.clone(), id.clone()).await.status, 401, "retired by the second rotation");
    }

    // Stop cleanly so that everything buffered is flushed, then look at everything.
    let mut child = child.0.take().unwrap();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "keyledger serve exited with {status}");
    reader.join().unwrap();
    log.extend(lines_rx.try_iter());
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
