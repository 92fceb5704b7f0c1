//! `keyledger` processes: CLI runs, `keyledger serve`, the data directory they share, and
//! the Acme + Globex ledgers most tests start from.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use super::fixtures::{fixture, PLATFORM_TEAM, USERS};
use super::http::{create, get, in_days};
use super::store::{copy_ledger_schema, drop_ledger, give_own_audit_key, on_postgres, point_at_store, store};

pub const BIN: &str = env!("CARGO_BIN_EXE_keyledger");

/// How long a CLI run or a server's start or stop may take before the test fails: far more
/// than any takes on a loaded machine, so that a hang fails instead of stalling the suite.
const PATIENCE: Duration = Duration::from_secs(120);

/// `keyledger` with a clean environment: no inherited `KEYLEDGER_*` (a developer's own
/// settings must not leak into a test) and `RUST_LOG` unset.
fn keyledger() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYLEDGER_") {
            command.env_remove(&name);
        }
    }
    command.env_remove("RUST_LOG").stdin(Stdio::null());
    command
}

/// A `keyledger` command with a clean environment plus `envs` (and the store's, see
/// [`point_at_store`]), run in `cwd`, killed and failed if it takes longer than `within`.
pub fn run_keyledger<I, S>(args: I, envs: &[(&str, &str)], cwd: &Path, within: Duration) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let mut command = keyledger();
    point_at_store(&mut command, &args, envs, cwd);
    command.args(&args).current_dir(cwd).stdout(Stdio::piped()).stderr(Stdio::piped()).envs(envs.iter().copied());
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

/// Runs `keyledger <args>` to completion, in the test's working directory.
pub fn cli(args: &[&str]) -> Output {
    run_keyledger(args, &[], Path::new("."), PATIENCE)
}

/// Runs a CLI command that must succeed and returns its stdout, trimmed.
pub fn cli_ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(out.status.success(), "keyledger {args:?} failed: {}", stderr_of(&out));
    stdout_of(&out).trim().to_owned()
}

pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A data directory that outlives server restarts; on PostgreSQL, the schema that stands for
/// it (see [`point_at_store`]), dropped with it.
pub struct DataDir {
    dir: TempDir,
}

impl DataDir {
    pub fn new() -> Self {
        // The store is read (and printed, or every test failed) before the first ledger.
        store();
        DataDir { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn arg(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    /// Makes this (empty) directory a ledger of the Acme and Globex fixtures with a personal
    /// token for every user, and returns the tokens keyed by email.
    ///
    /// The ledger is built once (`init`, `directory apply`, a `keys issue` per user: eleven
    /// processes), by the first test binary of a run that needs it, and copied here; each test
    /// owns its copy. On PostgreSQL, once per test binary: the shared template's schema would
    /// be named for the directory it was built in, not the one it is renamed to.
    pub fn acme_and_globex(&self) -> HashMap<String, String> {
        static TEMPLATE: OnceLock<Template<HashMap<String, String>>> = OnceLock::new();
        let template = if on_postgres() {
            template(&TEMPLATE, "acme-and-globex", |data| build_acme_and_globex(data.arg()))
        } else {
            TEMPLATE.get_or_init(shared_acme_and_globex)
        };
        self.fill_from(&template.dir);
        template.facts.clone()
    }

    /// The same ledger as [`DataDir::acme_and_globex`], built here with its own history and
    /// audit key rather than copied: for a test that needs two ledgers that are not copies
    /// of one another.
    pub fn acme_and_globex_of_its_own(&self) -> HashMap<String, String> {
        give_own_audit_key(self.path());
        build_acme_and_globex(self.arg())
    }

    /// Copies a stopped ledger into this empty directory (on PostgreSQL, its schema too).
    fn fill_from(&self, template: &Path) {
        let entries = std::fs::read_dir(self.path()).expect("read the data dir").count();
        assert_eq!(entries, 0, "a fixture ledger is copied only into an empty data dir");
        copy_tree(template, self.path());
        copy_ledger_schema(template, self.path());
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        drop_ledger(self.path());
    }
}

/// A ledger built once per test binary and kept, stopped, for copies; and what its builder
/// returned about it (tokens, ids).
pub struct Template<T> {
    dir: PathBuf,
    facts: T,
}

/// A copy of the ledger `build` makes, which runs once per test binary (named `name`, on a
/// thread of its own, so that it may start its own async runtime), in a data dir of its own;
/// and what `build` returned. Each caller owns its copy: a copy taken while no process has
/// the ledger open is consistent, so `build` must leave it stopped.
pub fn copy_of<T: Send + Sync>(
    template: &'static OnceLock<Template<T>>,
    name: &str,
    build: impl FnOnce(&DataDir) -> T + Send,
) -> (DataDir, &'static T) {
    let template = self::template(template, name, build);
    let data = DataDir::new();
    data.fill_from(&template.dir);
    (data, &template.facts)
}

/// The template `build` makes, once per test binary (see [`copy_of`]).
fn template<T: Send + Sync>(
    template: &'static OnceLock<Template<T>>,
    name: &str,
    build: impl FnOnce(&DataDir) -> T + Send,
) -> &'static Template<T> {
    template.get_or_init(|| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let data = DataDir::new();
                    let facts = build(&data);
                    let dir = template_dir(name);
                    copy_tree(data.path(), &dir);
                    copy_ledger_schema(data.path(), &dir);
                    Template { dir, facts }
                })
                .join()
                .unwrap_or_else(|_| panic!("building the {name} ledger failed"))
        })
    })
}

/// Where templates are kept: cargo's per-target temporary directory.
fn templates_root() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("keyledger-test-templates");
    std::fs::create_dir_all(&root).expect("create the templates dir");
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| sweep(&root));
    root
}

/// Removes the templates of test binaries that are no longer running (static values are
/// never dropped, so nothing removes them at exit) and shared ones too old to be reused.
fn sweep(root: &Path) {
    for entry in std::fs::read_dir(root).expect("read the templates dir").map_while(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let gone = match name.split('-').next().map(str::parse::<u32>) {
            Some(Ok(pid)) => pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists(),
            _ => !fresh(&entry.path()),
        };
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A directory of this test binary's own (named for its pid) for the template `name`.
fn template_dir(name: &str) -> PathBuf {
    let dir = templates_root().join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a template dir");
    dir
}

/// How long the shared Acme + Globex ledger may be reused after it was built: long enough
/// for every test binary of one `cargo test`, short enough that its tokens (30 days) and
/// timestamps stay recent.
const SHARED_FOR: Duration = Duration::from_secs(600);

/// Whether `path` was written within [`SHARED_FOR`].
fn fresh(path: &Path) -> bool {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    modified.and_then(|at| at.elapsed().ok()).is_some_and(|age| age < SHARED_FOR)
}

/// The Acme + Globex ledger shared by the test binaries of one run: the first binary builds
/// it, the others copy it. It is named for what it is built from (the `keyledger` binary,
/// by size and modification time, and the fixture files), so a rebuilt binary or a changed
/// fixture gets a new one; the tokens are kept beside the ledger, never in it.
fn shared_acme_and_globex() -> Template<HashMap<String, String>> {
    let root = templates_root();
    let mut origin = blake3::Hasher::new();
    let bin = std::fs::metadata(BIN).expect("the keyledger binary");
    origin.update(&bin.len().to_le_bytes());
    origin.update(format!("{:?}", bin.modified().expect("its modification time")).as_bytes());
    for name in ["directory.example.json", "directory.other-org.json"] {
        origin.update(&std::fs::read(fixture(name)).expect("a fixture"));
    }
    let shared = root.join(format!("shared-acme-and-globex-{}", &origin.finalize().to_hex()[..16]));
    let tokens_of = |dir: &Path| -> Option<HashMap<String, String>> {
        let path = dir.join("tokens.json");
        fresh(&path).then(|| serde_json::from_slice(&std::fs::read(&path).ok()?).ok()).flatten()
    };
    if let Some(tokens) = tokens_of(&shared) {
        return Template { dir: shared.join("ledger"), facts: tokens };
    }
    let building = template_dir("building-acme-and-globex");
    let ledger = building.join("ledger");
    std::fs::create_dir(&ledger).expect("create the ledger dir");
    let tokens = build_acme_and_globex(ledger.to_str().expect("utf-8 temp path"));
    std::fs::write(building.join("tokens.json"), serde_json::to_vec(&tokens).expect("tokens as JSON")).expect("write the tokens");
    let _ = std::fs::remove_dir_all(&shared);
    if std::fs::rename(&building, &shared).is_err() {
        // Another binary put its own in place meanwhile; this one stays private.
        return Template { dir: ledger, facts: tokens };
    }
    Template { dir: shared.join("ledger"), facts: tokens }
}

/// Every file and directory under `from`, copied to `to` (which exists).
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read a template dir") {
        let entry = entry.expect("a template entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir(&target).expect("create a dir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// `init` from the Acme fixture, `directory apply` of Globex's, and a personal token (`keys
/// issue`) for every user, keyed by email.
fn build_acme_and_globex(data: &str) -> HashMap<String, String> {
    let acme = fixture("directory.example.json");
    cli_ok(&["init", "--data", data, "--directory", acme.to_str().unwrap()]);
    let globex = fixture("directory.other-org.json");
    cli_ok(&["directory", "apply", "--data", data, globex.to_str().unwrap()]);
    let mut tokens = HashMap::new();
    for (org, email) in USERS {
        let token =
            cli_ok(&["keys", "issue", "--data", data, "--org", org, "--user", email, "--name", "test login", "--expires-in", "30d"]);
        tokens.insert(email.to_owned(), token);
    }
    tokens
}

/// A running `keyledger serve` (clean environment, see [`run_keyledger`]), with its stderr.
pub struct Server {
    child: Child,
    pub base: String,
    /// stderr up to and including the `keyledger listening on` line (with the banner, when
    /// this start initialized the data directory).
    pub startup: Vec<String>,
    stderr: mpsc::Receiver<String>,
    /// The stderr lines [`Server::wait_for_stderr`] has taken so far.
    taken: Mutex<Vec<String>>,
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
        let mut args = vec!["--data", data.arg(), "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::spawn(&args, &[("RUST_LOG", filter)], Path::new("."))
    }

    /// `keyledger serve <args>` with `envs` (`RUST_LOG` is `warn` unless set there, and the
    /// store's, see [`point_at_store`]), in `cwd`.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Server {
        let mut command = keyledger();
        point_at_store(&mut command, args, envs, cwd);
        command.arg("serve").args(args).current_dir(cwd).stdout(Stdio::null()).stderr(Stdio::piped());
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
        let deadline = Instant::now() + PATIENCE;
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
        Server { child, base, startup, stderr: rx, taken: Mutex::new(Vec::new()) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first word of the startup output that looks like a token with `prefix`.
    pub fn banner_token(&self, prefix: &str) -> Option<String> {
        let start = format!("{prefix}_");
        self.startup.iter().flat_map(|l| l.split_whitespace()).find(|w| w.starts_with(&start)).map(str::to_owned)
    }

    /// The first owner's token, when this start initialized the data directory.
    pub fn owner_token(&self) -> Option<String> {
        self.banner_token("rootly")
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns everything the server wrote on stderr.
    pub fn stop(self) -> Vec<String> {
        self.signal("TERM");
        let (status, log) = self.wait_for_exit(PATIENCE);
        assert!(status.success(), "keyledger serve exited with {status}");
        log
    }

    /// Waits (at most `within`) for the process to exit, whatever made it; returns how it
    /// ended and everything it wrote on stderr.
    pub fn wait_for_exit(mut self, within: Duration) -> (ExitStatus, Vec<String>) {
        let pid = self.child.id();
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "keyledger serve (pid {pid}) did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(5));
        };
        // The process is gone, so the reader thread reaches the end of the pipe and hangs up.
        let mut log = std::mem::take(&mut self.startup);
        log.extend(self.taken.lock().unwrap().drain(..));
        log.extend(self.stderr.iter());
        (status, log)
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Everything the server has written on stderr so far (it goes on running).
    pub fn stderr_so_far(&self) -> Vec<String> {
        let mut taken = self.taken.lock().unwrap();
        taken.extend(self.stderr.try_iter());
        self.startup.iter().chain(taken.iter()).cloned().collect()
    }

    /// Waits for the next stderr line containing `needle` (lines before it are passed over)
    /// and returns it; fails the test if none comes within 30 s.
    pub fn wait_for_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.taken.lock().unwrap().push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no stderr line with {needle:?} within 30 s"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        let email = super::fixtures::email_of(who);
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

/// Writes a directory file (one organization) to a temporary file and applies it with
/// `keyledger directory apply` (the server must be stopped).
pub fn apply_directory(data: &DataDir, file: &Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("directory.json");
    std::fs::write(&path, serde_json::to_vec_pretty(file).unwrap()).expect("write directory file");
    cli_ok(&["directory", "apply", "--data", data.arg(), path.to_str().unwrap()]);
}

/// A key created over HTTP: its id, its token and how `GET` showed it to that token.
#[derive(Clone)]
pub struct CreatedKey {
    pub id: String,
    pub token: String,
    pub shown: Value,
}

/// Acme and Globex with a personal token per user (keyed by email) and one key of each
/// kind created by alice over HTTP; the server is stopped again. Built once per test binary
/// and copied, as [`DataDir::acme_and_globex`].
pub fn ledger_with_a_key_of_each_kind() -> (DataDir, HashMap<String, String>, Vec<CreatedKey>) {
    /// The tokens by email, and the keys created.
    type KeysOfEachKind = (HashMap<String, String>, Vec<CreatedKey>);
    static TEMPLATE: OnceLock<Template<KeysOfEachKind>> = OnceLock::new();
    let (data, (tokens, created)) = copy_of(&TEMPLATE, "a-key-of-each-kind", |data| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let tokens = data.acme_and_globex();
        let created = runtime.block_on(a_key_of_each_kind(data, &tokens["alice@acme.test"]));
        (tokens, created)
    });
    (data, tokens.clone(), created.clone())
}

/// Serves `data`, creates a key of each kind as `alice`, shows each to its own token, stops.
async fn a_key_of_each_kind(data: &DataDir, alice: &str) -> Vec<CreatedKey> {
    let server = Server::start(data);
    let mut created = Vec::new();
    for attributes in [
        json!({"name": "laptop", "kind": "personal", "expires_at": in_days(30)}),
        json!({"name": "deploys", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(30)}),
        json!({"name": "billing sync", "kind": "organization", "expires_at": in_days(30)}),
    ] {
        let resp = create(&server, alice, attributes).await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        let (id, token) = (resp.id(), resp.token());
        let shown = get(&server, &token, &format!("/v1/api_keys/{id}")).await;
        assert_eq!(shown.status, 200, "{}", shown.text);
        created.push(CreatedKey { id, token, shown: shown.json });
    }
    server.stop();
    created
}
