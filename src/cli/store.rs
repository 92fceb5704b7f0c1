//! Where the ledger lives, chosen in one place for every command that opens it: sled in
//! `--data` (the default, as always), or PostgreSQL with `--database-url` (a preview).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;
use keyledger::ledger::postgres::{self, DEFAULT_SCHEMA};
use keyledger::ledger::{LastUseStore, PostgresStorage, SledStorage, Storage};

#[derive(Args, Clone)]
pub struct StoreArgs {
    /// The data directory (the event log and the projections) when no --database-url is given.
    #[arg(long, env = "KEYLEDGER_DATA", default_value = "./keyledger-data")]
    pub data: PathBuf,
    /// Keep the ledger in PostgreSQL instead of --data (preview), e.g.
    /// postgres://keyledger@db:5432/keyledger. Prefer the variable to the flag when the URL
    /// holds a password: a flag shows in process lists.
    #[arg(
        long,
        env = "KEYLEDGER_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// The schema of that database that holds the ledger (created and migrated by keyledger).
    #[arg(long, env = "KEYLEDGER_DATABASE_SCHEMA", default_value = DEFAULT_SCHEMA, value_name = "NAME")]
    pub database_schema: String,
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
                let storage = Arc::new(match mode {
                    Open::CreateIfMissing => PostgresStorage::open(url, &self.database_schema)?,
                    Open::Existing => PostgresStorage::open_existing(url, &self.database_schema)?,
                });
                Ledger {
                    storage: Arc::clone(&storage) as Arc<dyn Storage>,
                    last_uses: storage,
                    place,
                }
            }
            None => {
                let storage = Arc::new(match mode {
                    Open::CreateIfMissing => SledStorage::open(&self.data)?,
                    Open::Existing => SledStorage::open_existing(&self.data)?,
                });
                Ledger {
                    storage: Arc::clone(&storage) as Arc<dyn Storage>,
                    last_uses: storage,
                    place,
                }
            }
        })
    }

    /// Opens an existing ledger's log, for the commands that only read it (or rewrite its
    /// projections).
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

    /// Refuses `what` on PostgreSQL, which does not support it yet.
    pub fn refuse_on_postgres(&self, what: &str, instead: &str) -> anyhow::Result<()> {
        if self.on_postgres() {
            bail!("{what} is not supported on PostgreSQL yet (--database-url); {instead}");
        }
        Ok(())
    }
}
