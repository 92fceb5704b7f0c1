//! The embedded backend: sled 0.34.7.
//!
//! One tree, `ledger`, in key ranges (all numbers big-endian):
//!
//! - `p` + position (u64) → an **event page**: the records of consecutive events, the first
//!   of which is at that position, each `[u32 length][32-byte hash][canonical envelope]`
//!   (the length covers hash and envelope); the i-th record is the event at position + i.
//!   A page holds one record per event; the key only names its first position. sled
//!   costs about a microsecond per entry read, as much as hashing an event, so events are
//!   stored a page at a time: a commit's events are cut, in order, into pages of at most
//!   [`journal::PIECE_BYTES`] (an event larger than that gets a page of its own), and a
//!   commit never rewrites or extends an earlier page.
//! - `e` + position (u64) → 32-byte hash ‖ canonical envelope: one entry per event, as
//!   builds before pages stored them. Such stores stay readable: their events come first,
//!   and events appended to them later go to pages after them.
//! - `j` + (commit sequence, piece) → a piece of a commit's projection row changes (see
//!   [`crate::ledger::journal`]).
//! - `c` + projection name → checkpoint position.
//! - `m` + name → journal generation markers.
//!
//! One tree lets a commit be one atomic `apply_batch`, about half the cost of a transaction
//! over several trees.
//!
//! [`Storage::append`] applies the batch; [`Storage::sync`] makes everything applied so far
//! durable: sled's `flush`, then an `fdatasync` of sled's data file (sled's flush ends in
//! `sync_file_range`, which does not survive a power loss). sled nodes too large for its log
//! go to files under `blobs/`, which sled never syncs; any new one is synced too.
//!
//! A second tree, `last_used`, holds each key's last use ([`LastUseStore`]): key id (16
//! bytes) → microseconds since the Unix epoch (big-endian i64). Nothing that works on the
//! log (rebuild, export, import, verify) reads or writes it.
//!
//! The parts: [`lock`] (`keyledger.lock`, and waiting out sled's own lock), [`pages`] (the
//! event page codec), [`walk`] (scans that let sled's cache evict behind them); here, the
//! key layout and the [`Storage`] and [`LastUseStore`] impls.

mod lock;
mod pages;
mod walk;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use keyledger_projections::ProjectionId;
use uuid::Uuid;

use super::{journal, Commit, LastUseStore, LedgerError, RowChange, Storage, StoredEvent};
use pages::{decode_legacy_event, key_position, last_of_page, PagedEvents};
use walk::{Walk, LOG_ENTRIES_PER_ITERATOR, PIECES_PER_ITERATOR};

/// The sled-backed [`Storage`]. Holds the data directory's lock for as long as it lives.
///
/// The sled database inside can be dropped and opened again from what is on disk
/// ([`Storage::reopen`]): after a failed write or sync, what sled holds in memory may not
/// be what the disk holds, and only a fresh open tells what is durable (as PostgreSQL
/// restarts from its WAL after a failed fsync).
pub struct SledStorage {
    dir: PathBuf,
    /// `None` between dropping a failed database and opening it again.
    opened: RwLock<Option<Arc<Opened>>>,
    /// `keyledger.lock`, held open (and locked) for as long as the store lives.
    lock: Mutex<File>,
}

/// One opening of the sled database.
struct Opened {
    db: sled::Db,
    ledger: sled::Tree,
    last_used: sled::Tree,
    /// Sequence number of the next journal record.
    next_record: AtomicU64,
    data_file: File,
    data_path: PathBuf,
    blobs_dir: PathBuf,
    synced_blobs: Mutex<HashSet<std::ffi::OsString>>,
}

fn sled_error(source: sled::Error) -> LedgerError {
    LedgerError::Storage { context: "sled".into(), source: Box::new(source) }
}

fn u64_value(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(buf)
}

const LAST_USED_TREE: &str = "last_used";

const PAGE: u8 = b'p';
const LEGACY_EVENT: u8 = b'e';
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

fn position_key(range: u8, position: u64) -> [u8; 9] {
    let mut key = [range; 9];
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

fn journal_key(record: u64, piece: u32) -> [u8; 13] {
    let mut key = [JOURNAL; 13];
    key[1..9].copy_from_slice(&record.to_be_bytes());
    key[9..].copy_from_slice(&piece.to_be_bytes());
    key
}

fn checkpoint_key(projection: ProjectionId) -> Vec<u8> {
    [&[CHECKPOINT], projection.name().as_bytes()].concat()
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
        let lock = lock::lock(dir)?;
        let opened = Opened::open(dir)?;
        Ok(SledStorage { dir: dir.to_owned(), opened: RwLock::new(Some(Arc::new(opened))), lock: Mutex::new(lock) })
    }

    /// The database as now opened.
    fn opened(&self) -> Result<Arc<Opened>, LedgerError> {
        self.opened.read().unwrap_or_else(PoisonError::into_inner).clone().ok_or_else(|| LedgerError::Storage {
            context: "sled".into(),
            source: "the database was dropped after a failure and is not open again yet".into(),
        })
    }
}

impl Opened {
    /// Opens (or creates) sled's database in `dir`, whose `keyledger.lock` the caller holds.
    fn open(dir: &Path) -> Result<Self, LedgerError> {
        let data_path = dir.join("sled").join("db");
        let config = sled::Config::new()
            .path(dir.join("sled"))
            // Commits are flushed explicitly; the background flusher would only add I/O.
            .flush_every_ms(None)
            // A bound that holds now that scans start a new iterator every few entries (see
            // `Walk`); a running service's hot set (the last pages of the log and journal,
            // the checkpoints) is far smaller.
            .cache_capacity(64 * 1024 * 1024);
        // Holding keyledger.lock, no other process has the store. If sled's own lock on its
        // data file is still taken, it is a handle of this process: one that sled's threads
        // release a moment after the previous `Db` was dropped, or a copy that a child
        // another thread is starting holds until its exec. Wait for it, briefly: before
        // opening, and again if sled failed on it — told by the error's kind (sled's lock
        // is a non-blocking flock), since the child may have let go by the time we look.
        let mut attempts = 0;
        let db = loop {
            if lock::sled_lock_held(&data_path) && lock::waited_for_release(&mut attempts) {
                continue;
            }
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if (e.kind() == std::io::ErrorKind::WouldBlock || lock::sled_lock_held(&data_path))
                        && lock::waited_for_release(&mut attempts) => {}
                Err(sled::Error::Io(source)) => return Err(LedgerError::Open { dir: dir.to_owned(), source }),
                Err(other) => return Err(sled_error(other)),
            }
        };
        let ledger = db.open_tree("ledger").map_err(sled_error)?;
        let last_used = db.open_tree(LAST_USED_TREE).map_err(sled_error)?;
        let open_err = |source| LedgerError::Open { dir: dir.to_owned(), source };
        let data_file = File::open(&data_path).map_err(open_err)?;
        // A freshly created data file is durable only once its directory entries are.
        for created in [dir.join("sled"), dir.to_owned()] {
            File::open(created).and_then(|d| d.sync_all()).map_err(open_err)?;
        }
        let storage = Opened {
            ledger,
            last_used,
            db,
            data_file,
            data_path,
            blobs_dir: dir.join("sled").join("blobs"),
            synced_blobs: Mutex::new(HashSet::new()),
            next_record: AtomicU64::new(1),
        };
        storage.finish_interrupted_replacement()?;
        let next_record = match storage.ledger.scan_prefix([JOURNAL]).next_back().transpose().map_err(sled_error)? {
            Some((key, _)) => journal_record(&key) + 1,
            None => 1,
        };
        storage.next_record.store(next_record, Ordering::Relaxed);
        Ok(storage)
    }

    fn meta(&self, name: &str) -> Result<Option<u64>, LedgerError> {
        Ok(self.ledger.get(meta_key(name)).map_err(sled_error)?.map(|v| u64_value(&v)))
    }

    /// Deletes journal records in `[from, to)`, in bounded batches.
    fn remove_records(&self, from: u64, to: u64) -> Result<(), LedgerError> {
        loop {
            let mut batch = sled::Batch::default();
            let mut count = 0;
            for key in self.ledger.range(journal_key(from, 0)..journal_key(to, 0)).keys().take(ROWS_PER_RECORD) {
                batch.remove(key.map_err(sled_error)?);
                count += 1;
            }
            if count == 0 {
                return Ok(());
            }
            self.ledger.apply_batch(batch).map_err(sled_error)?;
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
            self.ledger.remove(meta_key(JOURNAL_PENDING)).map_err(sled_error)?;
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

impl Opened {
    fn append(&self, commit: Commit) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        for (first, page) in pages::pages(&commit.events)? {
            batch.insert(&position_key(PAGE, first), page);
        }
        if !commit.rows.is_empty() {
            let record = self.next_record.fetch_add(1, Ordering::Relaxed);
            for (piece, bytes) in (0u32..).zip(journal::encode(&commit.rows)?.chunks(journal::PIECE_BYTES)) {
                batch.insert(&journal_key(record, piece), bytes);
            }
        }
        for (projection, position) in &commit.checkpoints {
            batch.insert(checkpoint_key(*projection), &position.to_be_bytes());
        }
        self.ledger.apply_batch(batch).map_err(sled_error)
    }

    fn sync(&self) -> Result<(), LedgerError> {
        self.db.flush().map_err(sled_error)?;
        self.data_file.sync_data().map_err(|source| LedgerError::Sync { file: self.data_path.clone(), source })?;
        self.sync_new_blobs()
    }

    /// The legacy `e` range first, then the pages from the one holding `position`.
    fn events_from(&self, position: u64) -> Box<dyn Iterator<Item = Result<StoredEvent, LedgerError>>> {
        // Every event key is its range's byte and eight more, so the next byte ends the range.
        let legacy =
            Walk::new(&self.ledger, &position_key(LEGACY_EVENT, position), &[LEGACY_EVENT + 1], LOG_ENTRIES_PER_ITERATOR).map(|item| {
                let (key, value) = item.map_err(sled_error)?;
                decode_legacy_event(&key, &value)
            });
        let holding = match self.ledger.range(position_key(PAGE, 0)..=position_key(PAGE, position)).keys().next_back().transpose() {
            Ok(holding) => holding.map_or(position, |key| key_position(&key)),
            Err(e) => return Box::new(std::iter::once(Err(sled_error(e)))),
        };
        let pages = PagedEvents {
            pages: Walk::new(&self.ledger, &position_key(PAGE, holding), &[PAGE + 1], LOG_ENTRIES_PER_ITERATOR),
            page: sled::IVec::default(),
            at: 0,
            position: holding,
            from: position,
            failed: false,
        };
        Box::new(legacy.chain(pages))
    }

    fn last_event(&self) -> Result<Option<StoredEvent>, LedgerError> {
        if let Some((key, page)) = self.ledger.scan_prefix([PAGE]).next_back().transpose().map_err(sled_error)? {
            return last_of_page(&key, &page).map(Some);
        }
        match self.ledger.scan_prefix([LEGACY_EVENT]).next_back().transpose().map_err(sled_error)? {
            Some((key, value)) => decode_legacy_event(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn journal(&self) -> Box<dyn Iterator<Item = Result<journal::Record, LedgerError>>> {
        let bounds = self.meta(JOURNAL_FLOOR).and_then(|floor| Ok((floor.unwrap_or(0), self.meta(JOURNAL_PENDING)?.unwrap_or(u64::MAX))));
        let (floor, end) = match bounds {
            Ok(bounds) => bounds,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let mut pieces = Walk::new(&self.ledger, &journal_key(floor, 0), &journal_key(end, 0), PIECES_PER_ITERATOR).peekable();
        Box::new(std::iter::from_fn(move || {
            let (key, first) = match pieces.next()? {
                Ok(entry) => entry,
                Err(e) => return Some(Err(sled_error(e))),
            };
            let record = journal_record(&key);
            // The pieces first, then one allocation of the record's size: growing a buffer
            // piece by piece copies a multi-megabyte record several times.
            let mut parts = vec![first];
            while let Some(Ok((next, _))) = pieces.peek() {
                if journal_record(next) != record {
                    break;
                }
                if let Some(Ok((_, piece))) = pieces.next() {
                    parts.push(piece);
                }
            }
            Some(Ok(journal::Record { number: record, bytes: parts.concat() }))
        }))
    }

    fn checkpoint(&self, projection: ProjectionId) -> Result<u64, LedgerError> {
        Ok(self.ledger.get(checkpoint_key(projection)).map_err(sled_error)?.map_or(0, |v| u64_value(&v)))
    }

    /// A journal generation switch, in bounded batches (one `apply_batch` of the whole
    /// journal made sled hold every intermediate tree version: over 20 GiB for 1 M keys).
    /// The new records are written above every old one behind a `journal_pending` marker,
    /// then one small batch drops the marker, moves `journal_floor` to the new records and
    /// stores the checkpoints. A crash before the switch leaves the old journal in force (and
    /// [`SledStorage::open`] discards the partial new one); a crash after it leaves the new
    /// one in force with old records below the floor, deleted at the next open.
    fn replace_journal(
        &self,
        rows: &mut dyn Iterator<Item = RowChange>,
        checkpoints: Vec<(ProjectionId, u64)>,
    ) -> Result<usize, LedgerError> {
        let old_floor = self.meta(JOURNAL_FLOOR)?.unwrap_or(0);
        let first = self.next_record.fetch_add(1, Ordering::Relaxed);
        // The marker goes first: sled recovers a prefix of what was applied, so any record of
        // the replacement that survives a crash comes with it, and open() discards them.
        self.ledger.insert(meta_key(JOURNAL_PENDING), &first.to_be_bytes()).map_err(sled_error)?;
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
            for (piece, bytes) in (0u32..).zip(journal::encode(&chunk)?.chunks(journal::PIECE_BYTES)) {
                batch.insert(&journal_key(record, piece), bytes);
            }
            self.ledger.apply_batch(batch).map_err(sled_error)?;
        }
        // The switch: one small batch.
        let mut switch = sled::Batch::default();
        switch.remove(meta_key(JOURNAL_PENDING));
        switch.insert(meta_key(JOURNAL_FLOOR), &first.to_be_bytes());
        for (projection, position) in &checkpoints {
            switch.insert(checkpoint_key(*projection), &position.to_be_bytes());
        }
        self.ledger.apply_batch(switch).map_err(sled_error)?;
        self.sync()?;
        self.remove_records(old_floor, first)?;
        self.sync()?;
        Ok(written)
    }
}

impl Opened {
    /// An entry that does not decode is skipped with a warning: a lost hint must not keep the
    /// service from starting.
    fn last_uses(&self) -> Result<Vec<(Uuid, DateTime<Utc>)>, LedgerError> {
        let mut uses = Vec::new();
        for entry in self.last_used.iter() {
            let (key, value) = entry.map_err(sled_error)?;
            let id = Uuid::from_slice(&key).ok();
            let at =
                <[u8; 8]>::try_from(value.as_ref()).ok().and_then(|micros| DateTime::from_timestamp_micros(i64::from_be_bytes(micros)));
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
        self.last_used.apply_batch(batch).map_err(sled_error)?;
        self.sync()
    }
}

impl Storage for SledStorage {
    fn append(&self, commit: Commit) -> Result<(), LedgerError> {
        self.opened()?.append(commit)
    }

    fn sync(&self) -> Result<(), LedgerError> {
        self.opened()?.sync()
    }

    fn events_from(&self, position: u64) -> Box<dyn Iterator<Item = Result<StoredEvent, LedgerError>> + '_> {
        match self.opened() {
            Ok(opened) => opened.events_from(position),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn last_event(&self) -> Result<Option<StoredEvent>, LedgerError> {
        self.opened()?.last_event()
    }

    fn journal(&self) -> Box<dyn Iterator<Item = Result<journal::Record, LedgerError>> + '_> {
        match self.opened() {
            Ok(opened) => opened.journal(),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn checkpoint(&self, projection: ProjectionId) -> Result<u64, LedgerError> {
        self.opened()?.checkpoint(projection)
    }

    fn replace_journal(
        &self,
        rows: &mut dyn Iterator<Item = RowChange>,
        checkpoints: Vec<(ProjectionId, u64)>,
    ) -> Result<usize, LedgerError> {
        self.opened()?.replace_journal(rows, checkpoints)
    }

    /// Drops the database, and with it whatever it held only in memory, then opens it again
    /// from the disk. Until that succeeds every call fails; a failed open is tried again at
    /// the next call. Iterators still reading the dropped database keep it (and sled's lock
    /// on its file) alive: the open waits for them briefly, then fails, to be tried again.
    ///
    /// Nothing is dropped before the disk takes a write and a sync again (see
    /// [`lock::disk_works`]): sled 0.34.7 syncs its log file when its database is dropped and
    /// panics if that fails. Should the disk fail again in between, the panic is caught here,
    /// the database is let go all the same and the open tried.
    fn reopen(&self) -> Result<(), LedgerError> {
        let mut lock = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        lock::disk_works(&mut lock).map_err(|source| LedgerError::Sync { file: self.dir.join(lock::LOCK_FILE), source })?;
        let mut opened = self.opened.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(failed) = opened.take() {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(failed))).is_err() {
                tracing::error!("sled panicked while letting go of the failed database; opening it again anyway");
            }
        }
        *opened = Some(Arc::new(Opened::open(&self.dir)?));
        Ok(())
    }
}

impl LastUseStore for SledStorage {
    fn last_uses(&self) -> Result<Vec<(Uuid, DateTime<Utc>)>, LedgerError> {
        self.opened()?.last_uses()
    }

    fn record_last_uses(&self, uses: &[(Uuid, DateTime<Utc>)]) -> Result<(), LedgerError> {
        self.opened()?.record_last_uses(uses)
    }
}

#[cfg(test)]
mod tests {
    use super::pages::{HASH_BYTES, LENGTH_BYTES};
    use super::*;

    impl SledStorage {
        fn opened_now(&self) -> Arc<Opened> {
            self.opened().unwrap_or_else(|e| panic!("{e}"))
        }

        fn ledger(&self) -> sled::Tree {
            self.opened_now().ledger.clone()
        }
    }
    use crate::ledger::chain::sample;
    use crate::ledger::verify::{self, VerifyError};

    fn open(dir: &tempfile::TempDir) -> SledStorage {
        SledStorage::open(dir.path()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// An event of `size` canonical bytes; storage neither reads nor checks the envelope.
    fn sized(position: u64, size: usize) -> StoredEvent {
        let canonical: Vec<u8> = (0..size).map(|i| b'a' + ((position as usize + i) % 26) as u8).collect();
        StoredEvent { position, hash: blake3::hash(&canonical), canonical }
    }

    fn append(storage: &SledStorage, events: &[StoredEvent]) {
        storage.append(Commit { events: events.to_vec(), ..Commit::default() }).unwrap_or_else(|e| panic!("{e}"));
    }

    fn read_from(storage: &SledStorage, position: u64) -> Vec<StoredEvent> {
        storage.events_from(position).collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{e}"))
    }

    fn page_entries(storage: &SledStorage) -> Vec<(u64, sled::IVec)> {
        storage
            .ledger()
            .scan_prefix([PAGE])
            .map(|entry| entry.map(|(k, v)| (key_position(&k), v)).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    #[test]
    fn events_are_stored_in_pages_and_read_back_from_any_position() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let storage = open(&dir);
        assert_eq!(storage.last_event().ok(), Some(None));
        let events: Vec<StoredEvent> =
            (1..=30).map(|p| sized(p, 300)).chain([sized(31, 3 * journal::PIECE_BYTES)]).chain((32..=40).map(|p| sized(p, 1000))).collect();
        for commit in [&events[..30], &events[30..31], &events[31..35], &events[35..]] {
            append(&storage, commit);
        }
        for position in 0..=42 {
            let skip = usize::try_from(position.max(1) - 1).unwrap_or(usize::MAX).min(events.len());
            assert_eq!(read_from(&storage, position), events[skip..], "from position {position}");
        }
        assert_eq!(storage.last_event().ok().flatten().as_ref(), events.last());

        let pages = page_entries(&storage);
        let firsts: Vec<u64> = pages.iter().map(|(first, _)| *first).collect();
        for commit_start in [1, 31, 32, 36] {
            assert!(firsts.contains(&commit_start), "every commit starts a page of its own: {firsts:?}");
        }
        for (first, page) in &pages {
            assert!(page.len() <= journal::PIECE_BYTES || *first == 31, "page {first} is {} bytes", page.len());
        }
        assert!(pages.len() < events.len() / 2, "several events per page: {} pages", pages.len());
    }

    #[test]
    fn a_store_of_an_earlier_build_is_read_legacy_events_first_then_pages() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let storage = open(&dir);
        let events: Vec<StoredEvent> = (1..=12).map(|p| sized(p, 200)).collect();
        for event in &events[..5] {
            let value = [event.hash.as_bytes().as_slice(), &event.canonical].concat();
            storage.ledger().insert(position_key(LEGACY_EVENT, event.position), value).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(storage.last_event().ok().flatten().as_ref(), events.get(4), "a legacy store's last event");
        append(&storage, &events[5..]);
        assert_eq!(read_from(&storage, 1), events);
        assert_eq!(read_from(&storage, 3), events[2..]);
        assert_eq!(read_from(&storage, 8), events[7..]);
        assert_eq!(storage.last_event().ok().flatten().as_ref(), events.last());
    }

    #[test]
    fn a_page_that_does_not_frame_names_the_first_position_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let storage = open(&dir);
        let events: Vec<StoredEvent> = (1..=8).map(|p| sized(p, 100)).collect();
        append(&storage, &events);
        let [(first, page)] = page_entries(&storage).try_into().unwrap_or_else(|p: Vec<_>| panic!("one page expected, got {}", p.len()));
        let record = LENGTH_BYTES + HASH_BYTES + 100;
        let write = |bytes: &[u8]| storage.ledger().insert(position_key(PAGE, first), bytes).unwrap_or_else(|e| panic!("{e}"));
        let first_unreadable = |position: u64| {
            let read: Vec<_> = storage.events_from(position).collect();
            let (last, intact) = read.split_last().unwrap_or_else(|| panic!("nothing read"));
            assert!(intact.iter().all(Result::is_ok), "only the last item is an error");
            match last {
                Err(LedgerError::Corrupt { position, .. }) => *position,
                other => panic!("expected corruption, got {other:?}"),
            }
        };
        for cut in 1..page.len() {
            write(&page[..cut]);
            if cut % record == 0 {
                // A page cut between records frames: it is a shorter page, and what follows
                // it is a jump in positions.
                assert_eq!(read_from(&storage, 1), events[..cut / record], "cut at {cut}");
                continue;
            }
            let broken = 1 + (cut / record) as u64;
            assert_eq!(first_unreadable(1), broken, "cut at {cut}");
            assert_eq!(first_unreadable(8), broken.min(8), "reading from the page's last event, cut at {cut}");
            assert!(matches!(storage.last_event(), Err(LedgerError::Corrupt { position, .. }) if position == broken), "cut at {cut}");
        }
        // Event 3's length runs past the end of the page, then is shorter than its hash.
        for length in [u32::MAX, 31] {
            let mut bad = page.to_vec();
            bad[2 * record..2 * record + LENGTH_BYTES].copy_from_slice(&length.to_be_bytes());
            write(&bad);
            assert_eq!(first_unreadable(1), 3, "length {length}");
        }
        write(&[]);
        assert_eq!(first_unreadable(1), 1, "an empty page");
    }

    #[test]
    fn a_missing_page_is_a_jump_in_positions_that_verify_reports() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let storage = open(&dir);
        let events = sample::log(30);
        for commit in events.chunks(10) {
            append(&storage, commit);
        }
        assert!(verify::verify(&storage, &|_| {}).is_ok());
        storage.ledger().remove(position_key(PAGE, 11)).unwrap_or_else(|e| panic!("{e}"));
        let positions: Vec<u64> = read_from(&storage, 5).iter().map(|e| e.position).collect();
        assert_eq!(positions, [5, 6, 7, 8, 9, 10].into_iter().chain(21..=30).collect::<Vec<_>>());
        match verify::verify(&storage, &|_| {}) {
            Err(VerifyError::Missing { expected: 11, found: Some(21) }) => {}
            other => panic!("expected position 11 missing, got {other:?}"),
        }
    }

    fn row(key: &str, value: &str) -> RowChange {
        RowChange { projection: ProjectionId::KeysView, key: key.into(), value: Some(value.as_bytes().to_vec()) }
    }

    fn journal_rows(storage: &SledStorage) -> Vec<RowChange> {
        storage.journal().flat_map(|r| r.and_then(|record| record.changes()).unwrap_or_else(|e| panic!("{e}"))).collect()
    }

    #[test]
    fn journal_records_of_many_pieces_are_read_whole_in_order_across_a_gap_in_their_numbers() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let storage = open(&dir);
        let big = "v".repeat(3 * journal::PIECE_BYTES);
        let commits: Vec<Vec<RowChange>> = vec![
            vec![row("a", &big), row("b", "x")],
            vec![row("c", "x")],
            vec![row("gone", "x")],
            vec![row("d", &big)],
            vec![row("e", "x")],
        ];
        for rows in &commits {
            storage.commit(Commit { events: Vec::new(), rows: rows.clone(), checkpoints: Vec::new() }).unwrap_or_else(|e| panic!("{e}"));
        }
        let numbers: Vec<u64> = storage.journal().map(|r| r.map(|record| record.number).unwrap_or_else(|e| panic!("{e}"))).collect();
        assert_eq!(numbers.len(), commits.len(), "one record per commit: {numbers:?}");
        let pieces = |record: u64| storage.ledger().scan_prefix(&journal_key(record, 0)[..9]).count();
        assert!(pieces(numbers[0]) > 1 && pieces(numbers[3]) > 1, "the big records span several pieces");
        for piece in storage.ledger().scan_prefix(&journal_key(numbers[2], 0)[..9]).keys() {
            storage.ledger().remove(piece.unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
        }
        let expected: Vec<RowChange> = [&commits[0], &commits[1], &commits[3], &commits[4]].into_iter().flatten().cloned().collect();
        assert_eq!(journal_rows(&storage), expected, "every record whole, the missing one skipped");
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
        let written =
            storage.replace_journal(&mut fresh.clone().into_iter(), vec![(ProjectionId::KeysView, 9)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(written, fresh.len());
        assert_eq!(journal_rows(&storage), fresh, "only the new generation, in order, across several records");
        assert_eq!(storage.checkpoint(ProjectionId::KeysView).ok(), Some(9));
        assert_eq!(
            storage
                .ledger()
                .range(journal_key(0, 0)..journal_key(storage.opened_now().meta(JOURNAL_FLOOR).ok().flatten().unwrap_or(0), 0))
                .count(),
            0
        );
    }

    #[test]
    fn a_replacement_interrupted_before_its_switch_is_discarded_at_open() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let storage = SledStorage::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            let commit = Commit { events: Vec::new(), rows: vec![row("old", "x")], checkpoints: Vec::new() };
            storage.commit(commit).unwrap_or_else(|e| panic!("{e}"));
            // What a crash leaves after the marker and one record of the replacement.
            let first = storage.opened_now().next_record.fetch_add(1, Ordering::Relaxed);
            storage.ledger().insert(meta_key(JOURNAL_PENDING), &first.to_be_bytes()).unwrap_or_else(|e| panic!("{e}"));
            storage.ledger().insert(journal_key(first, 0), journal::encode(&[row("half", "y")]).unwrap()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(journal_rows(&storage), vec![row("old", "x")], "a pending generation is never read");
            storage.sync().unwrap_or_else(|e| panic!("{e}"));
        }
        let reopened = SledStorage::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(journal_rows(&reopened), vec![row("old", "x")]);
        assert_eq!(reopened.opened_now().meta(JOURNAL_PENDING).ok().flatten(), None, "the marker is cleared");
        assert_eq!(reopened.ledger().scan_prefix([JOURNAL]).count(), 1, "the partial record is deleted");
    }

    #[test]
    fn sled_passes_the_storage_conformance_suite() {
        let mut dirs = Vec::new();
        crate::ledger::conformance::run(
            || {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
                let storage = open(&dir);
                dirs.push(dir);
                storage
            },
            |storage| {
                // A torn write: the last page lost its last bytes.
                let (first, page) = page_entries(storage).pop().unwrap_or_else(|| panic!("no page"));
                storage.ledger().insert(position_key(PAGE, first), &page[..page.len() - 10]).unwrap_or_else(|e| panic!("{e}"));
            },
        );
    }

    /// Another thread starting processes gives each child, between its fork and its exec, a
    /// copy of every descriptor this process has open, keyledger.lock's included: the lock
    /// outlives the store that was just dropped by that moment.
    #[test]
    fn a_store_this_process_let_go_opens_again_while_another_thread_starts_processes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        drop(SledStorage::open(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let _ = std::process::Command::new("true").status();
                }
            });
            let opened = (0..300).map(|_| SledStorage::open(dir.path()).map(drop)).find(Result::is_err);
            done.store(true, Ordering::Relaxed);
            if let Some(Err(e)) = opened {
                panic!("{e}");
            }
        });
    }

    /// What a writer does after a failed sync: the database is dropped and opened again from
    /// the disk, holding every synced event, and takes appends again; a read still running
    /// on the dropped database keeps it open, so the reopen fails until it ends.
    #[test]
    fn a_reopened_store_holds_what_was_synced_and_takes_appends_again() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let storage = open(&dir);
        let events: Vec<StoredEvent> = (1..=3).map(|p| sized(p, 100)).collect();
        append(&storage, &events[..2]);
        storage.sync().unwrap_or_else(|e| panic!("{e}"));

        let reading = storage.events_from(1);
        assert!(storage.reopen().is_err(), "a reader still holds the old database");
        assert!(storage.last_event().is_err(), "nothing is open until a reopen succeeds");
        drop(reading);
        storage.reopen().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_from(&storage, 1), events[..2]);
        append(&storage, &events[2..]);
        storage.sync().unwrap_or_else(|e| panic!("{e}"));
        drop(storage);
        assert_eq!(read_from(&open(&dir), 1), events);
    }
}
