//! Who may use a ledger in PostgreSQL at the same time: the nodes that serve it, or one
//! command that changes it alone, never both.
//!
//! sled needs no such rule: its data directory admits one process (see the sled store's
//! `lock`). A schema admits any number of connections, so the rule is a session-level
//! advisory lock on a key derived from the schema (`super::lock_key("serving", …)`), held
//! on a connection of its own for as long as the holder runs:
//!
//! - `serve` holds it **shared** ([`PostgresStorage::hold_serving`]): several nodes serve one
//!   ledger together. So do `directory apply` and `keys issue`, whose writer, like a node's,
//!   folds what the others committed under the append lock before it decides.
//! - A command that changes the ledger outside every writer (`import`, a repairing `rebuild`)
//!   or that is only for a ledger nobody serves yet (`init`) **tries** it exclusively
//!   ([`PostgresStorage::hold_alone`]) and is refused, naming the holders, while any node
//!   serves.
//! - Reads take nothing: they read one snapshot (see `super::snapshot`).
//!
//! The lock dies with its session, so a node that crashes or loses its connection releases it
//! without anyone cleaning up. A serving node that lives on after losing that connection (the
//! database restarted, the network cut) takes its shared lock again as soon as it can: a
//! keeper thread checks the session every [`KEEP`] and reconnects. Holders are named from `pg_stat_activity` by the
//! `application_name` each sets on its lock connection (`keyledger serve <host>:<pid>`).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use ::postgres::{Client, Config, NoTls};

use super::pool::{close, database};
use super::{lock_key, PostgresStorage};
use crate::ledger::LedgerError;

/// What the lock's key is derived from, besides the schema.
const SERVING: &str = "serving";

/// How often a serving node's keeper checks its lock's session, and waits between attempts
/// to take the lock again.
const KEEP: Duration = Duration::from_secs(1);

/// A held lock on the ledger: released when dropped (its connection closes).
pub struct LedgerLock {
    /// Kept only to be closed on drop; the lock lives as long as this session.
    session: Option<Client>,
    /// A serving lock's keeper: stopped (its sender dropped) and joined on drop.
    keeper: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Drop for LedgerLock {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            close(session);
        }
        if let Some((stop, keeper)) = self.keeper.take() {
            drop(stop);
            if keeper.join().is_err() {
                tracing::error!("the serving lock's keeper panicked");
            }
        }
    }
}

/// A new lock session (not from the pool, whose connections come and go).
fn connect(config: &Config, target: &str) -> Result<Client, LedgerError> {
    config.connect(NoTls).map_err(|source| LedgerError::Unreachable { target: target.to_owned(), source: Box::new(source) })
}

/// Tries the serving lock `key` on `session`, shared or alone, without waiting: whether it
/// was taken.
fn try_lock(session: &mut Client, shared: bool, key: i64) -> Result<bool, LedgerError> {
    let (sql, context) = if shared {
        ("SELECT pg_try_advisory_lock_shared($1)", "taking the serving lock")
    } else {
        ("SELECT pg_try_advisory_lock($1)", "taking the ledger alone")
    };
    session.query_one(sql, &[&key]).and_then(|row| row.try_get(0)).map_err(database(context))
}

/// Takes the shared serving lock `key` on a new session; `None` while someone holds it alone.
fn try_shared(config: &Config, target: &str, key: i64) -> Result<Option<Client>, LedgerError> {
    let mut session = connect(config, target)?;
    Ok(try_lock(&mut session, true, key)?.then_some(session))
}

/// Holds `session`'s shared lock until `stop` is dropped, taking it again on a new session
/// whenever the old one is lost. Runs on a plain thread (the blocking client's calls).
fn keep_serving(mut session: Option<Client>, config: &Config, target: &str, key: i64, stop: &mpsc::Receiver<()>) {
    let mut lost = false;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(KEEP) {
        if session.as_mut().is_some_and(|held| held.is_valid(KEEP).is_ok()) {
            continue;
        }
        session = None;
        if !lost {
            tracing::warn!("lost the connection that holds this node's serving lock; taking the lock again");
            lost = true;
        }
        match try_shared(config, target, key) {
            Ok(Some(taken)) => {
                tracing::info!("holding the serving lock again");
                session = Some(taken);
                lost = false;
            }
            Ok(None) => tracing::error!(
                "a command holds the ledger alone while this node serves (it started while the node's lock was lost); \
                 the node serves on and takes its lock again when the command is done"
            ),
            Err(e) => tracing::debug!(error = %e, "cannot take the serving lock again yet"),
        }
    }
}

/// `<host>:<pid>` of this process, for `application_name`: enough for an operator to find
/// the process that holds a ledger.
fn this_process() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}:{}", std::process::id())
}

impl PostgresStorage {
    /// How a lock session for `role` connects: not from the pool, whose connections come
    /// and go, and named `keyledger <role> <host>:<pid>`.
    fn lock_config(&self, role: &str) -> Config {
        let mut config = self.pool.config().clone();
        config.application_name(&format!("keyledger {role} {}", this_process()));
        config
    }

    /// A new session for `role` (see [`PostgresStorage::lock_config`]).
    fn lock_session(&self, role: &str) -> Result<Client, LedgerError> {
        connect(&self.lock_config(role), self.target())
    }

    /// Holds the ledger for `role` (`serve`, or a command that records through a writer as
    /// a node does), shared with the nodes, for as long as the returned lock lives. Waits
    /// while a command holds it alone (a repair or an import must finish before a node loads
    /// the ledger), saying so through `waiting` once. A keeper thread takes the lock again if
    /// its session is lost.
    pub fn hold_serving(&self, role: &str, waiting: &mut dyn FnMut(&str)) -> Result<LedgerLock, LedgerError> {
        let (config, target) = (self.lock_config(role), self.target().to_owned());
        let mut session = connect(&config, &target)?;
        let key = lock_key(SERVING, self.schema());
        if !try_lock(&mut session, true, key)? {
            waiting(&holders(&mut session, key, self.schema())?);
            session.execute("SELECT pg_advisory_lock_shared($1)", &[&key]).map_err(database("waiting for the serving lock"))?;
        }
        let (stop, stopped) = mpsc::channel();
        let keeper = std::thread::Builder::new()
            .name("keyledger-serving-lock".into())
            .spawn(move || keep_serving(Some(session), &config, &target, key, &stopped))
            .map_err(|source| LedgerError::Storage { context: "starting the serving lock's keeper".into(), source: Box::new(source) })?;
        Ok(LedgerLock { session: None, keeper: Some((stop, keeper)) })
    }

    /// Holds the ledger alone, for a command (`role`) that changes it outside any node's
    /// writer; refused with [`LedgerError::Serving`] while a node serves it (or another
    /// command holds it alone). Never waits: an operator should learn at once that nodes run.
    pub fn hold_alone(&self, role: &str) -> Result<LedgerLock, LedgerError> {
        let mut session = self.lock_session(role)?;
        let key = lock_key(SERVING, self.schema());
        if !try_lock(&mut session, false, key)? {
            return Err(LedgerError::Serving {
                schema: self.schema().to_owned(),
                target: self.target().to_owned(),
                holders: holders(&mut session, key, self.schema())?,
            });
        }
        Ok(LedgerLock { session: Some(session), keeper: None })
    }
}

/// Who holds the lock `key` in this database, as `pg_stat_activity` names them: e.g.
/// `keyledger serve web-1:4242 from 10.0.0.5`. A bigint advisory key shows in `pg_locks` as
/// its high half in `classid` and its low half in `objid`.
fn holders(session: &mut Client, key: i64, schema: &str) -> Result<String, LedgerError> {
    let rows = session
        .query(
            "SELECT coalesce(nullif(a.application_name, ''), 'pid ' || a.pid), coalesce(host(a.client_addr), 'a local socket') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 \
             ORDER BY a.backend_start",
            &[&key],
        )
        .map_err(database("naming the holders of the serving lock"))?;
    let named: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let name: String = row.try_get(0).ok()?;
            let from: String = row.try_get(1).ok()?;
            Some(format!("{name} from {from}"))
        })
        .collect();
    Ok(if named.is_empty() {
        // Released between the attempt and the question, or not visible to this role.
        format!("a holder of the lock on schema {schema} that this role cannot see")
    } else {
        named.join(", ")
    })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::super::tests::{database_url, Schemas};
    use super::*;

    /// A fresh schema's ledger (dropped with the `Schemas`), or `None` without
    /// `KEYLEDGER_TEST_DATABASE_URL`.
    fn ledger() -> Option<(PostgresStorage, Schemas)> {
        let mut schemas = Schemas::new(&database_url()?);
        let storage = schemas.open();
        Some((storage, schemas))
    }

    #[test]
    fn nodes_share_the_ledger_and_a_command_alone_is_refused_naming_them() {
        let Some((storage, _dropped)) = ledger() else {
            return;
        };
        let first = storage.hold_serving("serve", &mut |_| panic!("nobody holds it alone")).unwrap();
        let second = storage.hold_serving("serve", &mut |_| panic!("nodes share it")).unwrap();
        match storage.hold_alone("rebuild") {
            Err(LedgerError::Serving { holders, .. }) => {
                let me = format!("keyledger serve {}", this_process());
                assert_eq!(holders.matches(&me).count(), 2, "both nodes are named: {holders}");
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
        drop((first, second));
        let alone = storage.hold_alone("rebuild").unwrap();
        assert!(
            matches!(storage.hold_alone("import"), Err(LedgerError::Serving { ref holders, .. }) if holders.contains("keyledger rebuild"))
        );
        drop(alone);
    }

    #[test]
    fn a_starting_node_waits_for_a_command_alone_to_finish() {
        let Some((storage, _dropped)) = ledger() else {
            return;
        };
        let storage = std::sync::Arc::new(storage);
        let alone = storage.hold_alone("import").unwrap();
        let (told, waiting) = mpsc::channel();
        let (served, serving) = mpsc::channel();
        let node = {
            let storage = std::sync::Arc::clone(&storage);
            std::thread::spawn(move || {
                let lock = storage.hold_serving("serve", &mut |holders| {
                    let _ = told.send(holders.to_owned());
                });
                let _ = served.send(lock.is_ok());
                lock
            })
        };
        let holders = waiting.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(holders.contains("keyledger import"), "{holders}");
        assert!(serving.recv_timeout(Duration::from_millis(300)).is_err(), "the node waits while the import holds the ledger");
        drop(alone);
        assert!(serving.recv_timeout(Duration::from_secs(10)).unwrap(), "and serves once it is done");
        drop(node.join().unwrap());
    }

    /// The database drops the node's lock session (as a restart or a cut would): the keeper
    /// takes the lock again, and a command alone is refused again.
    #[test]
    fn a_serving_node_takes_its_lock_again_after_losing_its_session() {
        let Some((storage, _dropped)) = ledger() else {
            return;
        };
        let _serving = storage.hold_serving("serve", &mut |_| panic!("nobody holds it alone")).unwrap();
        let name = format!("keyledger serve {}", this_process());
        let mut admin = storage.lock_session("test").unwrap();
        let key = lock_key(SERVING, storage.schema());
        let terminated: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
                 WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1",
                &[&key],
            )
            .and_then(|row| row.try_get(0))
            .unwrap();
        assert_eq!(terminated, 1, "the node's one lock session");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match storage.hold_alone("import") {
                Err(LedgerError::Serving { holders, .. }) if holders.contains(&name) => break,
                other => {
                    drop(other);
                    assert!(std::time::Instant::now() < deadline, "the keeper did not take the lock again");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}
