//! Tests of the PostgreSQL backend. Those that need a server run only when
//! `KEYLEDGER_TEST_DATABASE_URL` names one (e.g. postgres://postgres@127.0.0.1:5432/test),
//! each in schemas of its own that it drops afterwards.

use std::sync::Once;

use super::*;
use crate::ledger::chain::sample;
use crate::ledger::conformance;

const URL_VAR: &str = "KEYLEDGER_TEST_DATABASE_URL";

/// The test database's URL, or `None` (said once per test binary) when none is given.
pub(super) fn database_url() -> Option<String> {
    static SKIPPED: Once = Once::new();
    let url = std::env::var(URL_VAR).ok().filter(|url| !url.is_empty());
    if url.is_none() {
        SKIPPED
            .call_once(|| eprintln!("PostgreSQL tests skipped: set {URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/test) to run them"));
    }
    url
}

/// Schemas made for one test, dropped when it ends (also when it fails).
pub(super) struct Schemas {
    url: String,
    names: Vec<String>,
}

impl Schemas {
    pub(super) fn new(url: &str) -> Self {
        Schemas { url: url.to_owned(), names: Vec::new() }
    }

    pub(super) fn unique(&mut self) -> String {
        let name = format!("kl_test_{}", Uuid::new_v4().simple());
        self.names.push(name.clone());
        name
    }

    pub(super) fn open(&mut self) -> PostgresStorage {
        let schema = self.unique();
        PostgresStorage::open(&self.url, &schema).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        let Ok(mut client) = Client::connect(&self.url, ::postgres::NoTls) else {
            return;
        };
        for name in &self.names {
            if let Err(e) = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")) {
                eprintln!("could not drop the test schema {name}: {e}");
            }
        }
    }
}

/// Runs `sql` in the ledger's schema, behind the store's back.
fn tamper(storage: &PostgresStorage, sql: &str) {
    storage.pool.with(|client| client.batch_execute(sql).map_err(database("tampering"))).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn postgres_passes_the_storage_conformance_suite() {
    let Some(url) = database_url() else { return };
    let mut schemas = Schemas::new(&url);
    conformance::run(
        || schemas.open(),
        |storage| {
            // PostgreSQL cannot hold a torn write: the damage a torn write would leave is
            // made by hand, the last event's last bytes cut off in place.
            tamper(
                storage,
                "UPDATE events SET canonical = substring(canonical FROM 1 FOR octet_length(canonical) - 10) \
                 WHERE position = (SELECT max(position) FROM events)",
            );
        },
    );
}

#[test]
fn an_append_not_right_after_the_head_writes_nothing() {
    let Some(url) = database_url() else { return };
    let mut schemas = Schemas::new(&url);
    let storage = schemas.open();
    let events = sample::log(6);
    storage.commit(Commit { events: events[..3].to_vec(), ..Commit::default() }).unwrap_or_else(|e| panic!("{e}"));
    let rows = vec![RowChange { projection: ProjectionId::KeysView, key: "k".into(), value: Some(b"v".to_vec()) }];
    for (events, position) in [(&events[4..], 5), (&events[1..3], 2), (&events[..1], 1)] {
        let commit = Commit { events: events.to_vec(), rows: rows.clone(), checkpoints: vec![(ProjectionId::KeysView, 9)] };
        match storage.append(commit) {
            Err(LedgerError::NotNext { position: refused, head: 3 }) => assert_eq!(refused, position),
            other => {
                panic!("a commit starting at {position} over head 3 was not refused: {other:?}")
            }
        }
    }
    let gapped = Commit { events: vec![events[3].clone(), events[5].clone()], ..Commit::default() };
    assert!(matches!(storage.append(gapped), Err(LedgerError::NotNext { position: 6, head: 4 })));
    let stored: Vec<StoredEvent> = storage.events_from(1).collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored, events[..3], "nothing of a refused commit is written");
    assert_eq!(storage.journal().count(), 0, "nor its rows");
    assert_eq!(storage.checkpoint(ProjectionId::KeysView).ok(), Some(0), "nor its checkpoints");
    storage.commit(Commit { events: events[3..].to_vec(), ..Commit::default() }).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(storage.last_event().ok().flatten().as_ref(), events.last());
}

#[test]
fn writers_on_several_connections_interleave_without_gaps() {
    let Some(url) = database_url() else { return };
    let mut schemas = Schemas::new(&url);
    let schema = schemas.unique();
    let first = PostgresStorage::open(&url, &schema).unwrap_or_else(|e| panic!("{e}"));
    let events = sample::log(40);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let node = PostgresStorage::open_existing(&url, &schema).unwrap_or_else(|e| panic!("{e}"));
                // Each "node" appends the next event it does not have, as a writer that folds
                // the log before deciding would; a refused append means the other was first.
                loop {
                    let head = node.last_event().unwrap_or_else(|e| panic!("{e}")).map_or(0, |event| event.position);
                    let Some(next) = events.get(usize::try_from(head).unwrap_or(usize::MAX)) else {
                        break;
                    };
                    match node.commit(Commit { events: vec![next.clone()], ..Commit::default() }) {
                        Ok(()) | Err(LedgerError::NotNext { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let stored: Vec<StoredEvent> = first.events_from(1).collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored, events);
}

#[test]
fn last_uses_keep_the_later_time() {
    let Some(url) = database_url() else { return };
    let mut schemas = Schemas::new(&url);
    let storage = schemas.open();
    let at = |seconds: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default();
    let key = Uuid::from_u128(7);
    storage.record_last_uses(&[(key, at(5)), (key, at(9)), (key, at(2))]).unwrap_or_else(|e| panic!("{e}"));
    storage.record_last_uses(&[(key, at(3))]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(storage.last_uses().ok(), Some(vec![(key, at(9))]), "a late note never moves a last use back");
}

#[test]
fn a_schema_is_created_only_when_asked_and_a_newer_one_is_refused() {
    let Some(url) = database_url() else { return };
    let mut schemas = Schemas::new(&url);
    let schema = schemas.unique();
    assert!(matches!(PostgresStorage::open_existing(&url, &schema), Err(LedgerError::NoSchema { .. })));
    let storage = PostgresStorage::open(&url, &schema).unwrap_or_else(|e| panic!("{e}"));
    drop(PostgresStorage::open_existing(&url, &schema).unwrap_or_else(|e| panic!("reopening: {e}")));
    tamper(
        &storage,
        "INSERT INTO schema_history (version, name, applied_on, checksum) VALUES (99, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
    );
    match PostgresStorage::open_existing(&url, &schema) {
        Err(e @ LedgerError::NewerSchema { found: 99, known: migrations::LATEST, .. }) => {
            assert!(e.to_string().contains("newer keyledger"), "{e}");
        }
        other => panic!("a newer schema was not refused: {:?}", other.err()),
    }
}

#[test]
fn an_unreachable_database_is_one_clear_error() {
    // Port 1 on the loopback refuses at once; no server is needed.
    match PostgresStorage::open("postgres://keyledger:secret@127.0.0.1:1/ledger", DEFAULT_SCHEMA) {
        Err(e @ LedgerError::Unreachable { .. }) => {
            let text = e.to_string();
            assert!(text.contains("keyledger@127.0.0.1:1/ledger"), "{text}");
            assert!(!text.contains("secret"), "the password never shows: {text}");
            assert!(!text.contains('\n'), "{text}");
        }
        other => panic!("expected an unreachable database, got {:?}", other.err()),
    }
    assert!(matches!(PostgresStorage::open("mysql://nope", DEFAULT_SCHEMA), Err(LedgerError::DatabaseUrl { .. })));
    for bad in ["", "Keyledger", "1ledger", "key-ledger", "pg_ledger", "a;drop"] {
        assert!(matches!(check_schema_name(bad), Err(LedgerError::SchemaName { .. })), "{bad:?}");
    }
}

#[test]
fn a_login_the_server_refuses_is_one_clear_error() {
    let Some(url) = database_url() else { return };
    let Ok(config) = url.parse::<Config>() else { panic!("{URL_VAR} does not parse") };
    // Under trust authentication any password passes; an unknown user never does.
    let server = describe(&config);
    let (_, server) = server.split_once('@').unwrap_or_else(|| panic!("{server}"));
    let url = format!("postgres://keyledger_no_such_user:wrong@{server}");
    match PostgresStorage::open(&url, DEFAULT_SCHEMA) {
        Err(e @ LedgerError::Unreachable { .. }) => {
            let chain = one_line(&e);
            assert!(chain.contains("keyledger_no_such_user"), "{chain}");
            assert!(!chain.contains("wrong") && !chain.contains('\n'), "{chain}");
        }
        other => panic!("expected a refused login, got {:?}", other.err()),
    }
}

/// The error and its causes on one line, as the binary prints them.
fn one_line(e: &LedgerError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
