//! Where the ledger lives, chosen in one place for every command that opens it: sled in
//! `--data` (the default, as always), or PostgreSQL with `--database-url` (a preview).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use keyledger::ledger::postgres::{self, LedgerLock, DEFAULT_SCHEMA};
use keyledger::ledger::{LastUseStore, LedgerError, PostgresStorage, SledStorage, Storage};

#[derive(Args, Clone)]
pub struct StoreArgs {
    /// The data directory (the event log and the projections) when no --database-url is given.
    #[arg(long, env = "KEYLEDGER_DATA", default_value = "./keyledger-data")]
    pub data: PathBuf,
    /// Keep the ledger in PostgreSQL instead of --data (preview), e.g.
    /// postgres://keyledger@db:5432/keyledger. Prefer the variable to the flag when the URL
    /// holds a password: a flag shows in process lists.
    #[arg(long, env = "KEYLEDGER_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// The schema of that database that holds the ledger (created and migrated by keyledger).
    #[arg(long, env = "KEYLEDGER_DATABASE_SCHEMA", default_value = DEFAULT_SCHEMA, value_name = "NAME")]
    pub database_schema: String,
}

/// A schema opened for `import`, which needs it alone.
pub struct PostgresAlone {
    pub storage: PostgresStorage,
    /// Whether this command created the schema (to drop it again if the import fails).
    pub created: bool,
    /// Dropped last: held until the import is committed or rolled back.
    _lock: LedgerLock,
}

/// Whether opening may create a new ledger.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Open {
    CreateIfMissing,
    Existing,
}

/// An open ledger: its log and, from the same store, its last uses.
pub struct Ledger {
    pub storage: Arc<dyn Storage>,
    pub last_uses: Arc<dyn LastUseStore>,
    /// Where it is, for messages: a data directory, or a schema of a database.
    pub place: String,
}

impl StoreArgs {
    pub fn on_postgres(&self) -> bool {
        self.database_url.is_some()
    }

    /// Opens the ledger (refusing to create one unless `mode` allows it).
    pub fn open(&self, mode: Open) -> anyhow::Result<Ledger> {
        let place = self.place();
        Ok(match &self.database_url {
            Some(url) => {
                let storage = Arc::new(open_postgres(url, &self.database_schema, mode)?);
                Ledger { storage: Arc::clone(&storage) as Arc<dyn Storage>, last_uses: storage, place }
            }
            None => {
                let storage = Arc::new(match mode {
                    Open::CreateIfMissing => SledStorage::open(&self.data)?,
                    Open::Existing => SledStorage::open_existing(&self.data)?,
                });
                Ledger { storage: Arc::clone(&storage) as Arc<dyn Storage>, last_uses: storage, place }
            }
        })
    }

    /// Opens the ledger for `command`, which changes it outside any serving node's writer and
    /// so must have it to itself: on PostgreSQL, refused while a node serves the ledger
    /// (`why` says what would go wrong), and the returned lock keeps nodes from starting until
    /// it is dropped. On sled the data directory's own lock does this (no lock is returned).
    pub fn open_alone(&self, mode: Open, command: &str, why: &str) -> anyhow::Result<(Ledger, Option<LedgerLock>)> {
        let Some(url) = &self.database_url else {
            return Ok((self.open(mode)?, None));
        };
        let storage = Arc::new(open_postgres(url, &self.database_schema, mode)?);
        let lock = hold_alone(&storage, command, why)?;
        let ledger = Ledger { storage: Arc::clone(&storage) as Arc<dyn Storage>, last_uses: storage, place: self.place() };
        Ok((ledger, Some(lock)))
    }

    /// On PostgreSQL, the schema (created and migrated if missing) held alone for `command`;
    /// `None` on sled.
    pub fn open_postgres_alone(&self, command: &str, why: &str) -> anyhow::Result<Option<PostgresAlone>> {
        let Some(url) = &self.database_url else {
            return Ok(None);
        };
        let (storage, created) = match PostgresStorage::open_existing(url, &self.database_schema) {
            Ok(storage) => (storage, false),
            Err(LedgerError::NoSchema { .. }) => (PostgresStorage::open(url, &self.database_schema)?, true),
            Err(e) => return Err(e.into()),
        };
        let lock = hold_alone(&storage, command, why)?;
        Ok(Some(PostgresAlone { storage, created, _lock: lock }))
    }

    /// Opens the ledger for `serve`: on PostgreSQL, held shared with the other nodes until
    /// the returned lock is dropped, so that no command that needs the ledger alone runs
    /// meanwhile (one running now is waited for, and `waiting` is told who it is).
    pub fn open_serving(&self, waiting: &mut dyn FnMut(&str)) -> anyhow::Result<(Ledger, Option<LedgerLock>)> {
        self.open_beside_nodes(Open::CreateIfMissing, "serve", waiting)
    }

    /// Opens the ledger for `role`, which records through a writer of its own, as a node
    /// does: on PostgreSQL held shared with the nodes (see [`StoreArgs::open_serving`]); on
    /// sled the data directory's own lock keeps everyone else out.
    pub fn open_beside_nodes(&self, mode: Open, role: &str, waiting: &mut dyn FnMut(&str)) -> anyhow::Result<(Ledger, Option<LedgerLock>)> {
        let Some(url) = &self.database_url else {
            return Ok((self.open(mode)?, None));
        };
        let storage = Arc::new(open_postgres(url, &self.database_schema, mode)?);
        let lock = storage.hold_serving(role, waiting)?;
        let ledger = Ledger { storage: Arc::clone(&storage) as Arc<dyn Storage>, last_uses: storage, place: self.place() };
        Ok((ledger, Some(lock)))
    }

    /// Opens an existing ledger for a command that only reads it, while nodes may serve it:
    /// on PostgreSQL every read sees one snapshot, taken now (see `postgres::snapshot`).
    pub fn open_reading(&self) -> anyhow::Result<Arc<dyn Storage>> {
        match &self.database_url {
            Some(url) => Ok(Arc::new(open_postgres(url, &self.database_schema, Open::Existing)?.snapshot()?)),
            None => self.open_log(),
        }
    }

    /// Opens an existing ledger's log as it is (on PostgreSQL, not a snapshot: see
    /// [`StoreArgs::open_reading`]).
    pub fn open_log(&self) -> anyhow::Result<Arc<dyn Storage>> {
        Ok(self.open(Open::Existing)?.storage)
    }

    /// Where the ledger is, never with a password.
    pub fn place(&self) -> String {
        match &self.database_url {
            Some(url) => {
                let server = postgres::server(url).unwrap_or_else(|| "PostgreSQL".to_owned());
                format!("schema {} at {server}", self.database_schema)
            }
            None => self.data.display().to_string(),
        }
    }
}

fn open_postgres(url: &str, schema: &str, mode: Open) -> anyhow::Result<PostgresStorage> {
    Ok(match mode {
        Open::CreateIfMissing => PostgresStorage::open(url, schema)?,
        Open::Existing => PostgresStorage::open_existing(url, schema)?,
    })
}

/// Holds the ledger alone for `command`; refused, saying `why`, while nodes serve it.
fn hold_alone(storage: &PostgresStorage, command: &str, why: &str) -> anyhow::Result<LedgerLock> {
    match storage.hold_alone(command) {
        Ok(lock) => Ok(lock),
        Err(e @ LedgerError::Serving { .. }) => {
            Err(anyhow::Error::new(e).context(format!("`keyledger {command}` is refused while nodes serve this ledger: {why}")))
        }
        Err(e) => Err(e.into()),
    }
}
