//! Helpers for tests/concurrency.rs, tests/crash_recovery.rs and tests/cli.rs, on top of
//! tests/support: a client that reports transport errors instead of panicking (a server killed
//! under load answers nothing), a load generator that records what was acknowledged, bounded
//! waits for processes, and an offline look at the log of a stopped server's data directory.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use keyledger::ledger::chain::Replay;
use keyledger::ledger::{ChainHead, SledStorage, Storage};
use keyledger_projections::Event;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::support::{create_doc, in_days, Server, BIN};

pub const TAKEN: &str = "Name has already been taken";
pub const NIL_ID: &str = "00000000-0000-0000-0000-000000000000";

/// An HTTP client for one server, with a request timeout.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(server: &Server) -> Api {
        Api::at(&server.base)
    }

    pub fn at(base: &str) -> Api {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("reqwest client");
        Api { client, base: base.to_owned() }
    }

    /// POST /v1/api_keys. `Err` when no complete answer arrived (status and whole body).
    pub async fn try_create(&self, token: &str, attributes: Value) -> Result<(u16, Value), reqwest::Error> {
        let response = self
            .client
            .post(format!("{}/v1/api_keys", self.base))
            .bearer_auth(token)
            .header("content-type", "application/vnd.api+json")
            .body(create_doc(attributes).to_string())
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await?;
        Ok((status, body))
    }

    pub async fn create(&self, token: &str, attributes: Value) -> (u16, Value) {
        self.try_create(token, attributes).await.expect("POST /v1/api_keys got no answer")
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{}", self.base, path)).bearer_auth(token).send().await.expect("GET got no answer");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn show(&self, token: &str, id: &str) -> (u16, Value) {
        self.get(token, &format!("/v1/api_keys/{id}")).await
    }

    /// Whether the server takes `token`: an authenticated caller asking for a key that does
    /// not exist gets 404, anyone else 401.
    pub async fn authenticates(&self, token: &str) -> bool {
        let (status, body) = self.show(token, NIL_ID).await;
        match status {
            404 => true,
            401 => false,
            other => panic!("GET /v1/api_keys/{NIL_ID} answered {other}: {body}"),
        }
    }
}

pub fn personal(name: &str) -> Value {
    json!({"name": name, "kind": "personal", "expires_at": in_days(30)})
}

/// The titles of an error document.
pub fn titles(body: &Value) -> Vec<String> {
    crate::support::titles(body)
}

/// Asserts a 422 whose only problem is the taken name.
pub fn assert_taken(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 422, "{what}: expected 422 {TAKEN:?}, got {status}: {body}");
    assert_eq!(titles(body), vec![TAKEN.to_owned()], "{what}: {body}");
    assert_eq!(crate::support::pointers(body), vec!["/data/attributes/name".to_owned()], "{what}: {body}");
}

/// A create the server acknowledged with 201.
#[derive(Clone, Debug)]
pub struct Acked {
    pub name: String,
    pub id: String,
    pub token: String,
}

impl Acked {
    /// From a 201 document; panics when it lacks the id or the token.
    pub fn from_created(name: &str, body: &Value) -> Acked {
        let id = body["data"]["id"].as_str().unwrap_or_else(|| panic!("201 without data.id: {body}")).to_owned();
        let token = body["data"]["attributes"]["token"].as_str().unwrap_or_else(|| panic!("201 without a token: {body}")).to_owned();
        Acked { name: name.to_owned(), id, token }
    }
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    pub acked: Vec<Acked>,
    /// Names whose create got no complete answer: the server went away under it.
    pub unanswered: Vec<String>,
    /// Complete answers other than 201: (name, status, body). None are expected.
    pub refused: Vec<(String, u16, Value)>,
}

/// `clients` tasks, each creating personal keys named `<prefix>-<client>-<n>` one after
/// another, until told to stop or until a request gets no answer.
pub struct Load {
    acks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<LoadOutcome>,
}

impl Load {
    pub fn start(api: &Api, token: &str, prefix: &str, clients: usize) -> Load {
        let acks = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for client in 0..clients {
            let (api, token, prefix) = (api.clone(), token.to_owned(), prefix.to_owned());
            let (acks, stop) = (Arc::clone(&acks), Arc::clone(&stop));
            tasks.spawn(async move {
                let mut outcome = LoadOutcome::default();
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("{prefix}-{client}-{n}");
                    match api.try_create(&token, personal(&name)).await {
                        Ok((201, body)) => {
                            outcome.acked.push(Acked::from_created(&name, &body));
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((status, body)) => {
                            outcome.refused.push((name, status, body));
                            break;
                        }
                        Err(_) => {
                            outcome.unanswered.push(name);
                            break;
                        }
                    }
                }
                outcome
            });
        }
        Load { acks, stop, tasks }
    }

    pub fn acks(&self) -> usize {
        self.acks.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` creates were acknowledged; panics after `within`.
    pub async fn wait_for_acks(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acks() < n {
            assert!(Instant::now() < deadline, "only {} of {n} creates acknowledged within {within:?}", self.acks());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Tells the clients to stop and collects what they saw.
    pub async fn finish(mut self) -> LoadOutcome {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = LoadOutcome::default();
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = joined.expect("load client panicked");
            all.acked.extend(outcome.acked);
            all.unanswered.extend(outcome.unanswered);
            all.refused.extend(outcome.refused);
        }
        all
    }
}

/// Checks every acknowledged key against a (restarted) server, 16 at a time: shown by id to
/// `viewer` with the same name, its own token authenticates (it may always see itself), and
/// its name is still taken.
pub async fn assert_acked_keys_intact(api: &Api, viewer: &str, acked: &[Acked], context: &str) {
    let mut tasks = JoinSet::new();
    for chunk in acked.chunks(acked.len().div_ceil(16).max(1)) {
        let (api, viewer, chunk, context) = (api.clone(), viewer.to_owned(), chunk.to_vec(), context.to_owned());
        tasks.spawn(async move {
            for key in chunk {
                let (status, body) = api.show(&viewer, &key.id).await;
                assert_eq!(status, 200, "{context}: acknowledged key {} ({}) is gone: {body}", key.name, key.id);
                assert_eq!(body["data"]["attributes"]["name"], key.name.as_str(), "{context}: {body}");
                let (status, body) = api.show(&key.token, &key.id).await;
                assert_eq!(status, 200, "{context}: the token of acknowledged key {} no longer works: {body}", key.name);
                let (status, body) = api.create(&viewer, personal(&key.name)).await;
                assert_taken(status, &body, &format!("{context}: re-creating acknowledged name {}", key.name));
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("check task panicked");
    }
}

/// Whether process `pid` has exited (gone, or a zombie waiting to be reaped).
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => matches!(stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()), Some('Z' | 'X')),
    }
}

/// SIGTERM, wait (at most `within`) for the process to exit while other tasks keep running,
/// then reap it and assert that it exited cleanly.
pub async fn terminate(server: Server, within: Duration) {
    let pid = server.pid();
    let sent = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("run kill");
    assert!(sent.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + within;
    while !exited(pid) {
        assert!(Instant::now() < deadline, "keyledger serve (pid {pid}) did not exit within {within:?} of SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Reaps the zombie (the second SIGTERM reaches no one) and asserts a zero exit status.
    server.stop();
}

/// One `ApiKeyCreated` as the log holds it.
#[derive(Clone, Debug)]
pub struct LoggedKey {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub user_id: Option<u64>,
}

/// The log of a data directory no process holds: its last position and every key created,
/// in order. The whole hash chain is checked on the way.
///
/// This uses the library directly, because no HTTP route or CLI command lists keys or counts
/// events yet; keep it the only place that does.
pub fn read_log(dir: &Path) -> (u64, Vec<LoggedKey>) {
    let storage = SledStorage::open(dir).unwrap_or_else(|e| panic!("cannot open the stopped ledger in {}: {e}", dir.display()));
    let mut head = 0;
    let mut keys = Vec::new();
    for event in Replay::new(storage.events_from(1), ChainHead::genesis()) {
        let event = event.unwrap_or_else(|e| panic!("the log in {} does not check out: {e}", dir.display()));
        head = event.position;
        if let Event::ApiKeyCreated(created) = &event.event {
            keys.push(LoggedKey {
                id: created.api_key_id.to_string(),
                name: created.name.clone(),
                kind: created.kind.as_str(),
                user_id: created.user_id,
            });
        }
    }
    let last = storage.last_event().expect("last event").map_or(0, |e| e.position);
    assert_eq!(head, last, "replay stopped at {head} but the log ends at {last}");
    (head, keys)
}

/// The ids the log holds under each name.
pub fn ids_by_name(keys: &[LoggedKey]) -> HashMap<String, Vec<String>> {
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    for key in keys {
        by_name.entry(key.name.clone()).or_default().push(key.id.clone());
    }
    by_name
}

/// A `keyledger` command with a clean environment (no inherited `KEYLEDGER_*` or `RUST_LOG`)
/// plus `envs`, run in `cwd`, killed and failed if it takes longer than `within`.
pub fn run_keyledger<I, S>(args: I, envs: &[(&str, &str)], cwd: &Path, within: Duration) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(BIN);
    command.args(args).current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYLEDGER_") {
            command.env_remove(&name);
        }
    }
    command.env_remove("RUST_LOG");
    command.envs(envs.iter().copied());
    let started = Instant::now();
    let child = command.spawn().expect("spawn keyledger");
    let pid = child.id();
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match outcome.recv_timeout(within) {
        Ok(output) => output.expect("wait for keyledger"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("keyledger (pid {pid}) did not finish within {within:?} (started {:?} ago)", started.elapsed());
        }
    }
}

pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `keyledger serve` with its own arguments and environment (clean, as [`run_keyledger`]);
/// keeps every stderr line up to `keyledger listening on`.
pub struct Serve {
    child: Child,
    pub base: String,
    /// stderr up to and including the listening line (the banner, when there is one).
    pub startup: Vec<String>,
}

impl Serve {
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Serve {
        let mut command = Command::new(BIN);
        command.arg("serve").args(args).current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("KEYLEDGER_") {
                command.env_remove(&name);
            }
        }
        command.env("RUST_LOG", "warn").envs(envs.iter().copied());
        let mut child = command.spawn().expect("spawn keyledger serve");
        let stderr = child.stderr.take().expect("stderr");
        let (lines, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut startup = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let address = line.strip_prefix("keyledger listening on ").map(|a| a.trim().to_owned());
                    startup.push(line);
                    if let Some(address) = address {
                        break address;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("keyledger serve did not start listening ({status:?}); stderr:\n{}", startup.join("\n"));
                }
            }
        };
        Serve { child, base, startup }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first word of the startup output that looks like a token with `prefix`.
    pub fn banner_token(&self, prefix: &str) -> Option<String> {
        let start = format!("{prefix}_");
        self.startup.iter().flat_map(|l| l.split_whitespace()).find(|w| w.starts_with(&start)).map(str::to_owned)
    }

    /// SIGTERM and wait (≤ 30 s) for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id();
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "keyledger serve exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "keyledger serve (pid {pid}) did not exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `<prefix>_` followed by exactly 64 lowercase hex digits.
pub fn is_token(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}
