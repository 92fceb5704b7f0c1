//! The embedded backend: sled 0.34.7.
//!
//! Trees: `events` (position, big-endian → 32-byte hash ‖ canonical envelope),
//! `projections` (`<projection>/<row key>` → row), `checkpoints` (projection → position,
//! big-endian) and `streams` (stream → version, big-endian). A commit is one sled
//! transaction over all four, then `flush` and an `fdatasync` of sled's data file: sled's
//! own flush ends in `sync_file_range`, which does not survive a power loss.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{Commit, LedgerError, Row, Storage, StoredEvent};

/// The sled-backed [`Storage`]. Holds the data directory's lock for as long as it lives.
pub struct SledStorage {
    db: sled::Db,
    events: sled::Tree,
    projections: sled::Tree,
    checkpoints: sled::Tree,
    streams: sled::Tree,
    data_file: File,
    data_path: PathBuf,
    _lock: File,
}

const LOCK_FILE: &str = "keyledger.lock";

/// Takes the directory's lock and records who holds it, so that a second process can say
/// which one is in the way instead of failing obscurely inside sled.
fn lock(dir: &Path) -> Result<File, LedgerError> {
    let open_err = |source| LedgerError::Open { dir: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(open_err)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(open_err)?;
    if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let holder = if holder.is_empty() { String::new() } else { format!(" ({holder})") };
        return Err(LedgerError::Locked { dir: dir.to_owned(), holder });
    }
    let me = format!("pid {}: {}", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
    file.set_len(0).map_err(open_err)?;
    file.seek(SeekFrom::Start(0)).map_err(open_err)?;
    file.write_all(me.as_bytes()).map_err(open_err)?;
    Ok(file)
}

fn storage_error(e: sled::Error) -> LedgerError {
    LedgerError::Storage(e.to_string())
}

fn u64_value(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(buf)
}

fn decode_event(key: &[u8], value: &[u8]) -> Result<StoredEvent, LedgerError> {
    let position = u64_value(key);
    if value.len() < 32 {
        return Err(LedgerError::Corrupt { position, reason: "stored record is shorter than its hash".into() });
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&value[..32]);
    Ok(StoredEvent { position, hash: blake3::Hash::from_bytes(hash), canonical: value[32..].to_vec() })
}

fn row_key(projection: &str, key: &str) -> Vec<u8> {
    format!("{projection}/{key}").into_bytes()
}

impl SledStorage {
    /// Opens the store in `dir`, refusing to create one: a mistyped path must not become a
    /// new, empty ledger.
    pub fn open_existing(dir: &Path) -> Result<Self, LedgerError> {
        if !dir.join("sled").join("db").is_file() {
            return Err(LedgerError::Missing { dir: dir.to_owned() });
        }
        SledStorage::open(dir)
    }

    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        let lock = lock(dir)?;
        let db = sled::Config::new()
            .path(dir.join("sled"))
            // Commits are flushed explicitly; the background flusher would only add I/O.
            .flush_every_ms(None)
            .cache_capacity(256 * 1024 * 1024)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(source) => LedgerError::Open { dir: dir.to_owned(), source },
                other => storage_error(other),
            })?;
        let tree = |name: &str| db.open_tree(name).map_err(storage_error);
        let data_path = dir.join("sled").join("db");
        let open_err = |source| LedgerError::Open { dir: dir.to_owned(), source };
        let data_file = File::open(&data_path).map_err(open_err)?;
        // A freshly created data file is durable only once its directory entries are.
        for created in [dir.join("sled"), dir.to_owned()] {
            File::open(created).and_then(|d| d.sync_all()).map_err(open_err)?;
        }
        Ok(SledStorage {
            events: tree("events")?,
            projections: tree("projections")?,
            checkpoints: tree("checkpoints")?,
            streams: tree("streams")?,
            db,
            data_file,
            data_path,
            _lock: lock,
        })
    }
}

impl Storage for SledStorage {
    fn commit(&self, commit: Commit) -> Result<(), LedgerError> {
        let result: Result<(), TransactionError<()>> = (&self.events, &self.projections, &self.checkpoints, &self.streams)
            .transaction(|(events, projections, checkpoints, streams)| {
                for event in &commit.events {
                    let mut value = Vec::with_capacity(32 + event.canonical.len());
                    value.extend_from_slice(event.hash.as_bytes());
                    value.extend_from_slice(&event.canonical);
                    events.insert(&event.position.to_be_bytes(), value)?;
                }
                for (projection, key, value) in &commit.rows {
                    match value {
                        Some(value) => projections.insert(row_key(projection, key), value.as_slice())?,
                        None => projections.remove(row_key(projection, key))?,
                    };
                }
                for (projection, position) in &commit.checkpoints {
                    checkpoints.insert(projection.as_bytes(), &position.to_be_bytes())?;
                }
                for (stream, version) in &commit.streams {
                    streams.insert(stream.as_bytes(), &version.to_be_bytes())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        result.map_err(|e| LedgerError::Storage(format!("{e:?}")))?;
        self.db.flush().map_err(storage_error)?;
        self.data_file
            .sync_data()
            .map_err(|source| LedgerError::Sync { file: self.data_path.clone(), source })
    }

    fn events_from(&self, position: u64) -> Box<dyn Iterator<Item = Result<StoredEvent, LedgerError>> + '_> {
        Box::new(self.events.range(position.to_be_bytes()..).map(|item| {
            let (key, value) = item.map_err(storage_error)?;
            decode_event(&key, &value)
        }))
    }

    fn last_event(&self) -> Result<Option<StoredEvent>, LedgerError> {
        match self.events.last().map_err(storage_error)? {
            Some((key, value)) => decode_event(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn rows(&self, projection: &str) -> Box<dyn Iterator<Item = Result<Row, LedgerError>> + '_> {
        let prefix = row_key(projection, "");
        let skip = prefix.len();
        Box::new(self.projections.scan_prefix(prefix).map(move |item| {
            let (key, value) = item.map_err(storage_error)?;
            let key = String::from_utf8_lossy(&key[skip..]).into_owned();
            Ok((key, value.to_vec()))
        }))
    }

    fn checkpoint(&self, projection: &str) -> Result<u64, LedgerError> {
        Ok(self.checkpoints.get(projection.as_bytes()).map_err(storage_error)?.map_or(0, |v| u64_value(&v)))
    }

    fn stream_version(&self, stream: &str) -> Result<u64, LedgerError> {
        Ok(self.streams.get(stream.as_bytes()).map_err(storage_error)?.map_or(0, |v| u64_value(&v)))
    }
}
