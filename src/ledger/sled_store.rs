//! The embedded backend: sled 0.34.7.
//!
//! One tree, `ledger`, in three key ranges: `e` + position (big-endian u64) → 32-byte hash ‖
//! canonical envelope; `j` + (commit sequence, piece) (big-endian) → a piece of a commit's
//! projection row changes (see [`super::journal`]); `c` + projection name → checkpoint
//! position (big-endian). One tree lets a commit be one atomic `apply_batch`, about half the
//! cost of a transaction over several trees.
//!
//! [`Storage::append`] applies the batch; [`Storage::sync`] makes everything applied so far
//! durable: sled's `flush`, then an `fdatasync` of sled's data file (sled's flush ends in
//! `sync_file_range`, which does not survive a power loss). Pages too large for sled's log go
//! to files under `blobs/`, which sled never syncs; any new one is synced too.
//!
//! A second tree, `last_used`, holds each key's last use ([`LastUseStore`]): key id (16
//! bytes) → microseconds since the Unix epoch (big-endian i64). Nothing that works on the
//! log (rebuild, export, import, verify) reads or writes it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{journal, Commit, LastUseStore, LedgerError, RowChange, Storage, StoredEvent};

/// The sled-backed [`Storage`]. Holds the data directory's lock for as long as it lives.
pub struct SledStorage {
    db: sled::Db,
    ledger: sled::Tree,
    last_used: sled::Tree,
    /// Sequence number of the next journal record.
    next_record: AtomicU64,
    data_file: File,
    data_path: PathBuf,
    blobs_dir: PathBuf,
    synced_blobs: Mutex<HashSet<std::ffi::OsString>>,
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
    let position = u64_value(key.get(1..).unwrap_or_default());
    if value.len() < 32 {
        return Err(LedgerError::Corrupt { position, reason: "stored record is shorter than its hash".into() });
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&value[..32]);
    Ok(StoredEvent { position, hash: blake3::Hash::from_bytes(hash), canonical: value[32..].to_vec() })
}

const LAST_USED_TREE: &str = "last_used";

const EVENT: u8 = b'e';
const JOURNAL: u8 = b'j';
const CHECKPOINT: u8 = b'c';
const META: u8 = b'm';

/// The first journal record that counts: records below it belong to a replaced journal.
const JOURNAL_FLOOR: &str = "journal_floor";
/// Set while a replacement journal is being written from this record on; records at or
/// above it do not count until the replacement is switched in.
const JOURNAL_PENDING: &str = "journal_pending";
/// Rows per record (and keys per deletion batch) when replacing the journal: sled holds
/// every intermediate version of a batch in memory, so batches must stay small.
const ROWS_PER_RECORD: usize = 20_000;

fn meta_key(name: &str) -> Vec<u8> {
    [&[META], name.as_bytes()].concat()
}

fn event_key(position: u64) -> [u8; 9] {
    let mut key = [EVENT; 9];
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

fn journal_key(record: u64, piece: u32) -> [u8; 13] {
    let mut key = [JOURNAL; 13];
    key[1..9].copy_from_slice(&record.to_be_bytes());
    key[9..].copy_from_slice(&piece.to_be_bytes());
    key
}

fn checkpoint_key(projection: &str) -> Vec<u8> {
    [&[CHECKPOINT], projection.as_bytes()].concat()
}

/// The commit sequence number in a journal key.
fn journal_record(key: &[u8]) -> u64 {
    u64_value(key.get(1..9).unwrap_or_default())
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
        let config = sled::Config::new()
            .path(dir.join("sled"))
            // Commits are flushed explicitly; the background flusher would only add I/O.
            .flush_every_ms(None)
            .cache_capacity(256 * 1024 * 1024);
        // Holding keyledger.lock, no other process has the store. If sled still finds its
        // own lock taken, it is a handle of this process that sled's threads release a moment
        // after the previous `Db` was dropped: wait for it, briefly.
        let mut attempts = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(source)) if source.to_string().contains("could not acquire lock") && attempts < 200 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(sled::Error::Io(source)) => return Err(LedgerError::Open { dir: dir.to_owned(), source }),
                Err(other) => return Err(storage_error(other)),
            }
        };
        let ledger = db.open_tree("ledger").map_err(storage_error)?;
        let last_used = db.open_tree(LAST_USED_TREE).map_err(storage_error)?;
        let data_path = dir.join("sled").join("db");
        let open_err = |source| LedgerError::Open { dir: dir.to_owned(), source };
        let data_file = File::open(&data_path).map_err(open_err)?;
        // A freshly created data file is durable only once its directory entries are.
        for created in [dir.join("sled"), dir.to_owned()] {
            File::open(created).and_then(|d| d.sync_all()).map_err(open_err)?;
        }
        let storage = SledStorage {
            ledger,
            last_used,
            db,
            data_file,
            data_path,
            blobs_dir: dir.join("sled").join("blobs"),
            synced_blobs: Mutex::new(HashSet::new()),
            next_record: AtomicU64::new(1),
            _lock: lock,
        };
        storage.finish_interrupted_replacement()?;
        let next_record = match storage.ledger.scan_prefix([JOURNAL]).next_back().transpose().map_err(storage_error)? {
            Some((key, _)) => journal_record(&key) + 1,
            None => 1,
        };
        storage.next_record.store(next_record, Ordering::Relaxed);
        Ok(storage)
    }

    fn meta(&self, name: &str) -> Result<Option<u64>, LedgerError> {
        Ok(self.ledger.get(meta_key(name)).map_err(storage_error)?.map(|v| u64_value(&v)))
    }

    /// Deletes journal records in `[from, to)`, in bounded batches.
    fn remove_records(&self, from: u64, to: u64) -> Result<(), LedgerError> {
        loop {
            let mut batch = sled::Batch::default();
            let mut count = 0;
            for key in self.ledger.range(journal_key(from, 0)..journal_key(to, 0)).keys().take(ROWS_PER_RECORD) {
                batch.remove(key.map_err(storage_error)?);
                count += 1;
            }
            if count == 0 {
                return Ok(());
            }
            self.ledger.apply_batch(batch).map_err(storage_error)?;
        }
    }

    /// A replacement that a crash interrupted before its switch is discarded; records of a
    /// replaced journal whose deletion was interrupted are deleted.
    fn finish_interrupted_replacement(&self) -> Result<(), LedgerError> {
        let pending = self.meta(JOURNAL_PENDING)?;
        let floor = self.meta(JOURNAL_FLOOR)?.unwrap_or(0);
        if pending.is_none() && self.ledger.range(journal_key(0, 0)..journal_key(floor, 0)).next().is_none() {
            return Ok(());
        }
        if let Some(pending) = pending {
            tracing::warn!(from_record = pending, "discarding a journal replacement that was interrupted");
            self.remove_records(pending, u64::MAX)?;
            self.ledger.remove(meta_key(JOURNAL_PENDING)).map_err(storage_error)?;
        }
        self.remove_records(0, floor)?;
        self.sync()
    }

    /// Syncs blob files sled wrote since the last call (normally there are none).
    fn sync_new_blobs(&self) -> Result<(), LedgerError> {
        let sync_err = |source| LedgerError::Sync { file: self.blobs_dir.clone(), source };
        let Ok(entries) = std::fs::read_dir(&self.blobs_dir) else { return Ok(()) };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut any = false;
        for entry in entries {
            let entry = entry.map_err(sync_err)?;
            if !synced.contains(&entry.file_name()) {
                File::open(entry.path()).and_then(|f| f.sync_data()).map_err(sync_err)?;
                synced.insert(entry.file_name());
                any = true;
            }
        }
        if any {
            File::open(&self.blobs_dir).and_then(|d| d.sync_all()).map_err(sync_err)?;
        }
        Ok(())
    }
}

impl Storage for SledStorage {
    fn append(&self, commit: Commit) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        for event in &commit.events {
            let mut value = Vec::with_capacity(32 + event.canonical.len());
            value.extend_from_slice(event.hash.as_bytes());
            value.extend_from_slice(&event.canonical);
            batch.insert(&event_key(event.position), value);
        }
        if !commit.rows.is_empty() {
            let record = self.next_record.fetch_add(1, Ordering::Relaxed);
            for (piece, bytes) in (0u32..).zip(journal::encode(&commit.rows).chunks(journal::PIECE_BYTES)) {
                batch.insert(&journal_key(record, piece), bytes);
            }
        }
        for (projection, position) in &commit.checkpoints {
            batch.insert(checkpoint_key(projection), &position.to_be_bytes());
        }
        self.ledger.apply_batch(batch).map_err(storage_error)
    }

    fn sync(&self) -> Result<(), LedgerError> {
        self.db.flush().map_err(storage_error)?;
        self.data_file
            .sync_data()
            .map_err(|source| LedgerError::Sync { file: self.data_path.clone(), source })?;
        self.sync_new_blobs()
    }

    fn events_from(&self, position: u64) -> Box<dyn Iterator<Item = Result<StoredEvent, LedgerError>> + '_> {
        Box::new(self.ledger.range(event_key(position)..=event_key(u64::MAX)).map(|item| {
            let (key, value) = item.map_err(storage_error)?;
            decode_event(&key, &value)
        }))
    }

    fn last_event(&self) -> Result<Option<StoredEvent>, LedgerError> {
        match self.ledger.scan_prefix([EVENT]).next_back().transpose().map_err(storage_error)? {
            Some((key, value)) => decode_event(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn journal(&self) -> Box<dyn Iterator<Item = Result<journal::Record, LedgerError>> + '_> {
        let bounds = self.meta(JOURNAL_FLOOR).and_then(|floor| Ok((floor.unwrap_or(0), self.meta(JOURNAL_PENDING)?.unwrap_or(u64::MAX))));
        let (floor, end) = match bounds {
            Ok(bounds) => bounds,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let mut pieces = self.ledger.range(journal_key(floor, 0)..journal_key(end, 0)).peekable();
        let record_of = journal_record;
        Box::new(std::iter::from_fn(move || {
            let (key, first) = match pieces.next()? {
                Ok(entry) => entry,
                Err(e) => return Some(Err(storage_error(e))),
            };
            let record = record_of(&key);
            let mut bytes = first.to_vec();
            while let Some(Ok((next, _))) = pieces.peek() {
                if record_of(next) != record {
                    break;
                }
                if let Some(Ok((_, piece))) = pieces.next() {
                    bytes.extend_from_slice(&piece);
                }
            }
            Some(Ok(journal::Record { number: record, bytes }))
        }))
    }

    fn checkpoint(&self, projection: &str) -> Result<u64, LedgerError> {
        Ok(self.ledger.get(checkpoint_key(projection)).map_err(storage_error)?.map_or(0, |v| u64_value(&v)))
    }

    /// A journal generation switch, in bounded batches (one `apply_batch` of the whole
    /// journal made sled hold every intermediate tree version: over 20 GiB for 1 M keys).
    /// The new records are written above every old one behind a `journal_pending` marker,
    /// then one small batch drops the marker, moves `journal_floor` to the new records and
    /// stores the checkpoints. A crash before the switch leaves the old journal in force (and
    /// [`SledStorage::open`] discards the partial new one); a crash after it leaves the new
    /// one in force with old records below the floor, deleted at the next open.
    fn replace_journal(&self, rows: &mut dyn Iterator<Item = RowChange>, checkpoints: Vec<(&'static str, u64)>) -> Result<usize, LedgerError> {
        let old_floor = self.meta(JOURNAL_FLOOR)?.unwrap_or(0);
        let first = self.next_record.fetch_add(1, Ordering::Relaxed);
        // The marker goes first: sled recovers a prefix of what was applied, so any record of
        // the replacement that survives a crash comes with it, and open() discards them.
        self.ledger.insert(meta_key(JOURNAL_PENDING), &first.to_be_bytes()).map_err(storage_error)?;
        let mut written = 0;
        let mut record = first;
        loop {
            let chunk: Vec<RowChange> = (&mut *rows).take(ROWS_PER_RECORD).collect();
            if chunk.is_empty() {
                break;
            }
            if written > 0 {
                record = self.next_record.fetch_add(1, Ordering::Relaxed);
            }
            written += chunk.len();
            let mut batch = sled::Batch::default();
            for (piece, bytes) in (0u32..).zip(journal::encode(&chunk).chunks(journal::PIECE_BYTES)) {
                batch.insert(&journal_key(record, piece), bytes);
            }
            self.ledger.apply_batch(batch).map_err(storage_error)?;
        }
        // The switch: one small batch.
        let mut switch = sled::Batch::default();
        switch.remove(meta_key(JOURNAL_PENDING));
        switch.insert(meta_key(JOURNAL_FLOOR), &first.to_be_bytes());
        for (projection, position) in &checkpoints {
            switch.insert(checkpoint_key(projection), &position.to_be_bytes());
        }
        self.ledger.apply_batch(switch).map_err(storage_error)?;
        self.sync()?;
        self.remove_records(old_floor, first)?;
        self.sync()?;
        Ok(written)
    }

}

impl LastUseStore for SledStorage {
    /// An entry that does not decode is skipped with a warning: a lost hint must not keep the
    /// service from starting.
    fn last_uses(&self) -> Result<Vec<(Uuid, DateTime<Utc>)>, LedgerError> {
        let mut uses = Vec::new();
        for entry in self.last_used.iter() {
            let (key, value) = entry.map_err(storage_error)?;
            let id = Uuid::from_slice(&key).ok();
            let at = <[u8; 8]>::try_from(value.as_ref()).ok().and_then(|micros| DateTime::from_timestamp_micros(i64::from_be_bytes(micros)));
            match id.zip(at) {
                Some(last_use) => uses.push(last_use),
                None => tracing::warn!(key = ?key.as_ref(), "skipping an undecodable last use"),
            }
        }
        Ok(uses)
    }

    fn record_last_uses(&self, uses: &[(Uuid, DateTime<Utc>)]) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        for (id, at) in uses {
            batch.insert(id.as_bytes(), &at.timestamp_micros().to_be_bytes());
        }
        self.last_used.apply_batch(batch).map_err(storage_error)?;
        self.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, value: &str) -> RowChange {
        RowChange { projection: "keys".into(), key: key.into(), value: Some(value.as_bytes().to_vec()) }
    }

    fn journal_rows(storage: &SledStorage) -> Vec<RowChange> {
        storage.journal().flat_map(|r| r.and_then(|record| record.changes()).unwrap_or_else(|e| panic!("{e}"))).collect()
    }

    #[test]
    fn a_replaced_journal_is_the_only_one_read_and_the_old_records_are_gone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let storage = SledStorage::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3 {
            let commit = Commit { events: Vec::new(), rows: vec![row(&format!("old{i}"), "x")], checkpoints: Vec::new() };
            storage.commit(commit).unwrap_or_else(|e| panic!("{e}"));
        }
        let fresh: Vec<RowChange> = (0..ROWS_PER_RECORD + 5).map(|i| row(&format!("new{i}"), "y")).collect();
        let written = storage.replace_journal(&mut fresh.clone().into_iter(), vec![("keys", 9)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(written, fresh.len());
        assert_eq!(journal_rows(&storage), fresh, "only the new generation, in order, across several records");
        assert_eq!(storage.checkpoint("keys").ok(), Some(9));
        assert_eq!(storage.ledger.range(journal_key(0, 0)..journal_key(storage.meta(JOURNAL_FLOOR).ok().flatten().unwrap_or(0), 0)).count(), 0);
    }

    #[test]
    fn a_replacement_interrupted_before_its_switch_is_discarded_at_open() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let storage = SledStorage::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            let commit = Commit { events: Vec::new(), rows: vec![row("old", "x")], checkpoints: Vec::new() };
            storage.commit(commit).unwrap_or_else(|e| panic!("{e}"));
            // What a crash leaves after the marker and one record of the replacement.
            let first = storage.next_record.fetch_add(1, Ordering::Relaxed);
            storage.ledger.insert(meta_key(JOURNAL_PENDING), &first.to_be_bytes()).unwrap_or_else(|e| panic!("{e}"));
            storage.ledger.insert(journal_key(first, 0), journal::encode(&[row("half", "y")])).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(journal_rows(&storage), vec![row("old", "x")], "a pending generation is never read");
            storage.sync().unwrap_or_else(|e| panic!("{e}"));
        }
        let reopened = SledStorage::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(journal_rows(&reopened), vec![row("old", "x")]);
        assert_eq!(reopened.meta(JOURNAL_PENDING).ok().flatten(), None, "the marker is cleared");
        assert_eq!(reopened.ledger.scan_prefix([JOURNAL]).count(), 1, "the partial record is deleted");
    }
}
