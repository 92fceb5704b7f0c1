//! Test harness: the real `keyledger` binary on 127.0.0.1:0 over a temporary data directory.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_keyledger");
pub const PLATFORM_TEAM: &str = "6f1c1a52-2d0e-4c39-9a57-6b1f3a0d2e11";
pub const SECURITY_TEAM: &str = "0b7d7c5e-8f43-4f4e-b1a9-2f5f0c9d8a22";
pub const GLOBEX_TEAM: &str = "9a3e4b2c-1d5f-4a6b-8c7d-0e1f2a3b4c55";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// Runs `keyledger <args>` to completion.
pub fn cli(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("RUST_LOG").output().expect("run keyledger")
}

/// Runs a CLI command that must succeed and returns its stdout, trimmed.
pub fn cli_ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(out.status.success(), "keyledger {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A data directory that outlives server restarts.
pub struct DataDir {
    dir: TempDir,
}

impl DataDir {
    pub fn new() -> Self {
        DataDir { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn arg(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    /// Initializes from the Acme and Globex fixtures and mints a personal token for every
    /// user, keyed by email.
    pub fn acme_and_globex(&self) -> HashMap<String, String> {
        let acme = fixture("directory.example.json");
        cli_ok(&["init", "--data", self.arg(), "--directory", acme.to_str().unwrap()]);
        let globex = fixture("directory.other-org.json");
        cli_ok(&["directory", "apply", "--data", self.arg(), globex.to_str().unwrap()]);
        let mut tokens = HashMap::new();
        for (org, email) in [
            ("Acme", "alice@acme.test"),
            ("Acme", "bob@acme.test"),
            ("Acme", "carol@acme.test"),
            ("Acme", "dave@acme.test"),
            ("Acme", "erin@acme.test"),
            ("Acme", "frank@acme.test"),
            ("Acme", "grace@acme.test"),
            ("Globex", "hank@globex.test"),
            ("Globex", "ivy@globex.test"),
        ] {
            let token = cli_ok(&[
                "keys", "issue", "--data", self.arg(), "--org", org, "--user", email, "--name", "test login", "--expires-in", "30d",
            ]);
            tokens.insert(email.to_owned(), token);
        }
        tokens
    }
}

/// Acme and Globex (see [`DataDir::acme_and_globex`]) served; the data directory, the
/// tokens by email and the server.
pub fn serving_acme_and_globex() -> (DataDir, HashMap<String, String>, Server) {
    let data = DataDir::new();
    let tokens = data.acme_and_globex();
    let server = Server::start(&data);
    (data, tokens, server)
}

/// A running `keyledger serve`.
pub struct Server {
    child: Child,
    pub base: String,
    /// The first owner's token, when this start initialized the data directory.
    pub owner_token: Option<String>,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    pub fn start(data: &DataDir) -> Server {
        Server::start_with(data, &[])
    }

    pub fn start_with(data: &DataDir, extra: &[&str]) -> Server {
        Server::start_logging(data, extra, "warn")
    }

    /// Starts with `RUST_LOG` set to `filter`, for tests that wait for a log line.
    pub fn start_logging(data: &DataDir, extra: &[&str], filter: &str) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--data", data.arg(), "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keyledger serve");
        let stderr = child.stderr.take().expect("stderr");
        let (lines, stderr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut owner_token = None;
        let base = loop {
            let line = match stderr_rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("keyledger serve did not start listening within 60 s");
                }
            };
            if let Some(token) = line.split_whitespace().find(|w| w.starts_with("rootly_")) {
                owner_token = Some(token.to_owned());
            }
            if let Some(address) = line.strip_prefix("keyledger listening on ") {
                break address.trim().to_owned();
            }
        };
        Server { child, base, owner_token, stderr: stderr_rx }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().expect("wait for keyledger");
        assert!(status.success(), "keyledger serve exited with {status}");
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the next stderr line containing `needle` (lines before it are passed over)
    /// and returns it; fails the test if none comes within 30 s.
    pub fn wait_for_stderr(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {needle:?} within 30 s"),
            }
        }
    }

    /// Everything written on stderr so far.
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// A create document with the given attributes.
pub fn create_doc(attributes: Value) -> Value {
    json!({ "data": { "type": "api_keys", "attributes": attributes } })
}

/// An `expires_at` `days` from now, RFC 3339 UTC.
pub fn in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// POST /v1/api_keys; returns the status and the parsed body.
pub async fn create(server: &Server, token: &str, attributes: Value) -> (u16, Value) {
    let response = client()
        .post(server.url("/v1/api_keys"))
        .bearer_auth(token)
        .header("content-type", "application/vnd.api+json")
        .body(create_doc(attributes).to_string())
        .send()
        .await
        .expect("POST /v1/api_keys");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// GET a path with a token; returns the status and the parsed body.
pub async fn get(server: &Server, token: &str, path: &str) -> (u16, Value) {
    let response = client().get(server.url(path)).bearer_auth(token).send().await.expect("GET");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// `GET path?query` must be a 400 whose error names the query's parameter in `source.parameter`.
pub async fn assert_bad_parameter(server: &Server, token: &str, path: &str, query: &str) {
    let (status, body) = get(server, token, &format!("{path}?{query}")).await;
    let parameter = query.split('=').next().unwrap_or_default();
    assert_eq!(status, 400, "{path}?{query}: {body}");
    assert_eq!(body["errors"][0]["source"]["parameter"], parameter, "{path}?{query}: {body}");
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

/// The titles of a JSON:API error document.
pub fn titles(body: &Value) -> Vec<String> {
    body["errors"].as_array().map(|errors| errors.iter().filter_map(|e| e["title"].as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// The `source.pointer`s of a JSON:API error document.
pub fn pointers(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["source"]["pointer"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Opens a stopped ledger's sled store directly, to inspect or damage it as a disk or an
/// intruder would. A store this process just closed keeps sled's file lock until sled's own
/// threads let go of it, a moment later; keyledger's `SledStorage::open` waits the same way.
pub fn open_sled(data: &Path) -> sled::Db {
    let mut attempts = 0;
    loop {
        match sled::open(data.join("sled")) {
            Ok(db) => return db,
            Err(e) if e.to_string().contains("could not acquire lock") && attempts < 200 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open sled: {e}"),
        }
    }
}

/// The key of the page of stored events that starts at `position`: `p` + big-endian
/// position; a page is repeated `[u32 length][32-byte hash][canonical envelope]`, the length
/// covering hash and envelope (see `keyledger::ledger::sled_store`).
fn page_key(position: u64) -> [u8; 9] {
    let mut key = [b'p'; 9];
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

/// Where event `position` is stored: its page's key, the page, and where the event's record
/// starts in it.
fn stored_record(tree: &sled::Tree, position: u64) -> (sled::IVec, Vec<u8>, usize) {
    let (key, page) = tree.range(page_key(0)..=page_key(position)).next_back().expect("a page at or before the position").expect("read the page");
    let first = u64::from_be_bytes(key[1..].try_into().expect("a page key"));
    let mut at = 0;
    for _ in first..position {
        at += 4 + record_len(&page, at);
    }
    assert!(at < page.len(), "event {position} is not in the page starting at {first}");
    (key, page.to_vec(), at)
}

/// The length field of the record at `at`.
fn record_len(page: &[u8], at: usize) -> usize {
    u32::from_be_bytes(page[at..at + 4].try_into().expect("a length")) as usize
}

/// Edits the canonical envelope of event `position` in a stopped ledger's store in place,
/// leaving its stored hash as it was, as a disk or an intruder would.
pub fn damage_event(data: &Path, position: u64, edit: impl FnOnce(&mut [u8])) {
    let db = open_sled(data);
    let tree = db.open_tree("ledger").expect("ledger tree");
    let (key, mut page, at) = stored_record(&tree, position);
    let end = at + 4 + record_len(&page, at);
    edit(&mut page[at + 4 + 32..end]);
    tree.insert(key, page).expect("write the page");
    db.flush().expect("flush");
}

/// Cuts a stopped ledger's log after event `keep`: the page holding the next event is cut
/// before it (or removed, if it starts there) and every later page is removed.
pub fn truncate_log(data: &Path, keep: u64) {
    let db = open_sled(data);
    let tree = db.open_tree("ledger").expect("ledger tree");
    let (key, mut page, at) = stored_record(&tree, keep + 1);
    if at == 0 {
        tree.remove(&key).expect("remove the page");
    } else {
        page.truncate(at);
        tree.insert(&key, page).expect("cut the page");
    }
    for later in tree.range(page_key(keep + 1)..=page_key(u64::MAX)).keys() {
        tree.remove(later.expect("a page key")).expect("remove a later page");
    }
    db.flush().expect("flush");
}

/// A key created over HTTP: its id, its token and how `GET` showed it to that token.
pub struct CreatedKey {
    pub id: String,
    pub token: String,
    pub shown: Value,
}

/// Acme and Globex with a personal token per user (keyed by email) and one key of each
/// kind created by alice over HTTP; the server is stopped again.
pub async fn ledger_with_a_key_of_each_kind() -> (DataDir, HashMap<String, String>, Vec<CreatedKey>) {
    let data = DataDir::new();
    let tokens = data.acme_and_globex();
    let server = Server::start(&data);
    let alice = &tokens["alice@acme.test"];
    let mut created = Vec::new();
    for attributes in [
        json!({"name": "laptop", "kind": "personal", "expires_at": in_days(30)}),
        json!({"name": "deploys", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(30)}),
        json!({"name": "billing sync", "kind": "organization", "expires_at": in_days(30)}),
    ] {
        let (status, body) = create(&server, alice, attributes).await;
        assert_eq!(status, 201, "{body}");
        let id = body["data"]["id"].as_str().expect("data.id").to_owned();
        let token = body["data"]["attributes"]["token"].as_str().expect("a token").to_owned();
        let (status, shown) = get(&server, &token, &format!("/v1/api_keys/{id}")).await;
        assert_eq!(status, 200, "{shown}");
        created.push(CreatedKey { id, token, shown });
    }
    server.stop();
    (data, tokens, created)
}
