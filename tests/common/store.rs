//! Which store the suite's `keyledger` processes keep their ledgers in: sled in each `--data`
//! directory (the default), or PostgreSQL when `KEYLEDGER_TEST_STORE=postgres` and
//! `KEYLEDGER_TEST_DATABASE_URL` names a server. The tests are the same on both: a test
//! passes `--data DIR` as always, and on PostgreSQL every process the kit starts gets the
//! database and a schema derived from that directory, so that the commands of one test that
//! name one directory address one schema.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Selects the store: `postgres`, or `sled` (also when unset).
const STORE_VAR: &str = "KEYLEDGER_TEST_STORE";
/// The PostgreSQL server (and database) the suite uses when the store is `postgres`.
const URL_VAR: &str = "KEYLEDGER_TEST_DATABASE_URL";

/// The audit signing key's seed (hex) every process gets on PostgreSQL, which keeps no key
/// file: a fixed test value, so that every command of a ledger signs with one key.
const AUDIT_SEED: &str = "6b65796c65646765722074657374207375697465206175646974207365656421";

/// A file in a data directory that, on PostgreSQL, holds the seed of that ledger's own audit
/// key instead of [`AUDIT_SEED`]: for a ledger that must not share its key with the others,
/// as each sled ledger has a key file of its own (see [`give_own_audit_key`]). Copied with a
/// template, as sled's key file is.
const OWN_SEED_FILE: &str = "kltest-audit-seed";

/// Every schema the kit makes starts with this, then the test binary's pid: see
/// [`schema_of`]. Distinctive, because [`sweep_schemas`] drops what matches in a database
/// others may use.
const SCHEMA_PREFIX: &str = "kltest_";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    Sled,
    /// The database URL.
    Postgres(String),
}

/// The store of this run, read from the environment once per test binary, which prints it
/// (past the test harness's capture, so that a CI log shows which half ran). Fails every test
/// when PostgreSQL is requested without a server: a silent fallback to sled would pass for a
/// PostgreSQL run.
pub fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let requested = std::env::var(STORE_VAR).unwrap_or_default();
        let store = match requested.as_str() {
            "" | "sled" => Store::Sled,
            "postgres" => match std::env::var(URL_VAR) {
                Ok(url) if !url.is_empty() => Store::Postgres(url),
                _ => panic!("{STORE_VAR}=postgres but {URL_VAR} is unset: set it (e.g. postgres://postgres@127.0.0.1:5432/test) or unset {STORE_VAR}"),
            },
            other => panic!("{STORE_VAR}={other:?}: expected sled or postgres"),
        };
        if let Store::Postgres(url) = &store {
            sweep_schemas(url);
        }
        let name = match &store {
            Store::Sled => "sled",
            Store::Postgres(_) => "postgres",
        };
        let binary = std::env::args().next().unwrap_or_default();
        let binary = Path::new(&binary).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = writeln!(std::io::stderr(), "keyledger test store: {name} ({binary})");
        store
    })
}

/// The database URL when the suite runs on PostgreSQL.
pub fn postgres_url() -> Option<&'static str> {
    match store() {
        Store::Sled => None,
        Store::Postgres(url) => Some(url),
    }
}

pub fn on_postgres() -> bool {
    postgres_url().is_some()
}

/// For a test that is about sled by nature (its files, its lock, `kill -9` and what sled
/// finds after): true, after printing `reason`, when the suite runs on PostgreSQL, so that the
/// test returns at once. `if sled_only("…") { return; }`
pub fn sled_only(reason: &str) -> bool {
    skipped_on_postgres("sled only", reason)
}

fn skipped_on_postgres(why: &str, reason: &str) -> bool {
    if !on_postgres() {
        return false;
    }
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let _ = writeln!(std::io::stderr(), "skipped on PostgreSQL ({why}): {test}: {reason}");
    true
}

/// The schema of the ledger whose `--data` is `data` (absolute, or relative to `cwd`):
/// `kltest_<pid of this test binary>_<16 hex of the path's hash>`. The path's hash makes it the
/// same for every command given that directory; the pid lets a later run drop what a run
/// that was killed left (see [`sweep_schemas`]).
pub fn schema_of(data: &Path, cwd: &Path) -> String {
    let absolute = if data.is_absolute() { data.to_path_buf() } else { absolute(cwd).join(data) };
    let hash = blake3::hash(absolute.as_os_str().as_encoded_bytes());
    format!("{SCHEMA_PREFIX}{}_{}", std::process::id(), &hash.to_hex()[..16])
}

fn absolute(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().expect("the current dir").join(dir)
    }
}

/// Points `command` (a `keyledger` run with `args` and `envs` in `cwd`) at this run's store:
/// on PostgreSQL, the database, the schema of its data directory (its `--data`, else
/// `KEYLEDGER_DATA` in `envs`, else `./keyledger-data`, as the binary would choose) and the
/// test audit key. `envs` are applied after, so a test's own audit key wins. Nothing on sled.
pub fn point_at_store<S: AsRef<OsStr>>(command: &mut Command, args: &[S], envs: &[(&str, &str)], cwd: &Path) {
    let Some(url) = postgres_url() else { return };
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    let from_args = args.iter().enumerate().find_map(|(at, arg)| {
        let arg = arg.to_str()?;
        if arg == "--data" {
            args.get(at + 1).map(PathBuf::from)
        } else {
            arg.strip_prefix("--data=").map(PathBuf::from)
        }
    });
    let from_env = envs.iter().find(|(name, _)| *name == "KEYLEDGER_DATA").map(|(_, value)| PathBuf::from(value));
    let data = from_args.or(from_env).unwrap_or_else(|| PathBuf::from("./keyledger-data"));
    let data = if data.is_absolute() { data } else { absolute(cwd).join(data) };
    let seed = std::fs::read_to_string(data.join(OWN_SEED_FILE)).unwrap_or_else(|_| AUDIT_SEED.to_owned());
    command
        .env("KEYLEDGER_DATABASE_URL", url)
        .env("KEYLEDGER_DATABASE_SCHEMA", schema_of(&data, cwd))
        .env("KEYLEDGER_AUDIT_KEY", seed.trim());
}

/// On PostgreSQL, gives the ledger of data directory `data` (which exists) an audit key of its
/// own, derived from its path, instead of the suite's shared one; nothing on sled, where
/// `init` makes every ledger a key file of its own.
pub fn give_own_audit_key(data: &Path) {
    if on_postgres() {
        let seed = blake3::hash(absolute(data).as_os_str().as_encoded_bytes()).to_hex();
        std::fs::write(data.join(OWN_SEED_FILE), seed.as_str()).expect("write the ledger's audit seed");
    }
}

/// A blocking client, on a thread of its own: the `postgres` crate's blocking client cannot
/// run inside a test's async runtime.
fn with_client<T: Send>(url: &str, work: impl FnOnce(&mut postgres::Client) -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| panic!("connect to {URL_VAR}: {e}"));
                work(&mut client)
            })
            .join()
            .expect("a PostgreSQL client thread")
    })
}

/// Drops the schema of the data directory `data` (on PostgreSQL; nothing on sled).
pub fn drop_ledger(data: &Path) {
    if let Some(url) = postgres_url() {
        let (url, schema) = (url.to_owned(), schema_of(data, Path::new("/")));
        // Never panics: it runs when a DataDir drops, also while a failed test unwinds.
        let dropped = std::thread::spawn(move || {
            if let Ok(mut client) = postgres::Client::connect(&url, postgres::NoTls) {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        });
        let _ = dropped.join();
    }
}

/// Copies the stopped ledger of data directory `from` to `to`: on PostgreSQL, every table of
/// its schema (structure and rows) into the schema of `to`, in one transaction.
pub fn copy_ledger_schema(from: &Path, to: &Path) {
    let Some(url) = postgres_url() else { return };
    let (source, target) = (schema_of(from, Path::new("/")), schema_of(to, Path::new("/")));
    with_client(url, |client| {
        let mut tx = client.transaction().expect("begin");
        let tables: Vec<String> = tx
            .query("SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'", &[&source])
            .expect("list the template's tables")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(!tables.is_empty(), "the template schema {source} holds no tables");
        let mut copy = format!("CREATE SCHEMA {target};");
        for table in &tables {
            copy.push_str(&format!(
                "CREATE TABLE {target}.{table} (LIKE {source}.{table} INCLUDING ALL); INSERT INTO {target}.{table} SELECT * FROM {source}.{table};"
            ));
        }
        tx.batch_execute(&copy).expect("copy the template schema");
        tx.commit().expect("commit the copy");
    });
}

/// Drops the kit's schemas of test binaries that are no longer running: a killed run leaves
/// its schemas (and templates are never dropped: static values are not).
fn sweep_schemas(url: &str) {
    with_client(url, |client| {
        let rows =
            client.query("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", &[&SCHEMA_PREFIX]).expect("list schemas");
        for row in rows {
            let schema: String = row.get(0);
            let parts = schema.strip_prefix(SCHEMA_PREFIX).and_then(|rest| rest.split_once('_'));
            let Some((pid, hash)) = parts else { continue };
            let (Ok(pid), true) = (pid.parse::<u32>(), hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())) else { continue };
            if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    });
}

/// The test database of the tests about PostgreSQL itself (`tests/postgres_*.rs`: they run
/// in either half, each in schemas of its own), or `None` when `KEYLEDGER_TEST_DATABASE_URL`
/// is unset: then they return at once, and the first to do so says why.
pub fn test_database() -> Option<String> {
    static SKIPPED: std::sync::Once = std::sync::Once::new();
    let url = std::env::var(URL_VAR).ok().filter(|url| !url.is_empty());
    if url.is_none() {
        SKIPPED.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: set {URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests"
            );
        });
    }
    url
}

/// A schema of its own on the test database, dropped when the test ends (also when it fails).
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    /// `kl_<purpose>_<random>`: what made a schema left behind by a killed run is readable.
    pub fn new(url: &str, purpose: &str) -> Self {
        Schema { url: url.to_owned(), name: format!("kl_{purpose}_{}", uuid::Uuid::new_v4().simple()) }
    }

    /// The flags that put a command's ledger in this schema.
    pub fn args(&self) -> Vec<&str> {
        vec!["--database-url", &self.url, "--database-schema", &self.name]
    }

    /// `args` followed by this schema's flags.
    pub fn with<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(self.args());
        all
    }

    /// Whether the schema exists at all. On a thread of its own: the blocking client cannot
    /// run inside a test's runtime.
    pub fn exists(&self) -> bool {
        let (url, name) = (self.url.clone(), self.name.clone());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect to the test database");
            let row = client.query_one("SELECT count(*) FROM pg_namespace WHERE nspname = $1", &[&name]).expect("look for the schema");
            row.get::<_, i64>(0) == 1
        })
        .join()
        .expect("the schema lookup")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            if let Ok(mut client) = postgres::Client::connect(&url, postgres::NoTls) {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
            }
        });
        let _ = dropped.join();
    }
}
