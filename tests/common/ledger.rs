//! A stopped ledger read or changed behind the service's back: its files as bytes, its log
//! through the library (from either store), its sled store damaged as a disk or an intruder
//! would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyledger::ledger::chain::Replay;
use keyledger::ledger::{ChainHead, PostgresStorage, SledStorage, Storage};
use keyledger_projections::Event;

use super::store::{postgres_url, schema_of};

/// Every byte of every file under `dir`, with its path.
pub fn read_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read_dir") {
                pending.push(entry.expect("dir entry").path());
            }
        } else if meta.is_file() {
            out.push((path.clone(), std::fs::read(&path).expect("read file")));
        }
    }
    out
}

/// Opens a stopped ledger's sled store directly, to inspect or damage it as a disk or an
/// intruder would. A store this process just closed keeps sled's file lock until sled's own
/// threads let go of it, a moment later; keyledger's `SledStorage::open` waits the same way.
pub fn open_sled(data: &Path) -> sled::Db {
    let mut attempts = 0;
    loop {
        match sled::open(data.join("sled")) {
            Ok(db) => return db,
            Err(e) if e.to_string().contains("could not acquire lock") && attempts < 200 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("open sled: {e}"),
        }
    }
}

/// The key of the page of stored events that starts at `position`: `p` + big-endian
/// position; a page is repeated `[u32 length][32-byte hash][canonical envelope]`, the length
/// covering hash and envelope (see `keyledger::ledger::sled_store`).
fn page_key(position: u64) -> [u8; 9] {
    let mut key = [b'p'; 9];
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

/// Where event `position` is stored: its page's key, the page, and where the event's record
/// starts in it.
fn stored_record(tree: &sled::Tree, position: u64) -> (sled::IVec, Vec<u8>, usize) {
    let (key, page) =
        tree.range(page_key(0)..=page_key(position)).next_back().expect("a page at or before the position").expect("read the page");
    let first = u64::from_be_bytes(key[1..].try_into().expect("a page key"));
    let mut at = 0;
    for _ in first..position {
        at += 4 + record_len(&page, at);
    }
    assert!(at < page.len(), "event {position} is not in the page starting at {first}");
    (key, page.to_vec(), at)
}

/// The length field of the record at `at`.
fn record_len(page: &[u8], at: usize) -> usize {
    u32::from_be_bytes(page[at..at + 4].try_into().expect("a length")) as usize
}

/// Edits the canonical envelope of event `position` in a stopped ledger's store in place,
/// leaving its stored hash as it was, as a disk or an intruder would.
pub fn damage_event(data: &Path, position: u64, edit: impl FnOnce(&mut [u8])) {
    let db = open_sled(data);
    let tree = db.open_tree("ledger").expect("ledger tree");
    let (key, mut page, at) = stored_record(&tree, position);
    let end = at + 4 + record_len(&page, at);
    edit(&mut page[at + 4 + 32..end]);
    tree.insert(key, page).expect("write the page");
    db.flush().expect("flush");
}

/// Cuts a stopped ledger's log after event `keep`: the page holding the next event is cut
/// before it (or removed, if it starts there) and every later page is removed.
pub fn truncate_log(data: &Path, keep: u64) {
    let db = open_sled(data);
    let tree = db.open_tree("ledger").expect("ledger tree");
    let (key, mut page, at) = stored_record(&tree, keep + 1);
    if at == 0 {
        tree.remove(&key).expect("remove the page");
    } else {
        page.truncate(at);
        tree.insert(&key, page).expect("cut the page");
    }
    for later in tree.range(page_key(keep + 1)..=page_key(u64::MAX)).keys() {
        tree.remove(later.expect("a page key")).expect("remove a later page");
    }
    db.flush().expect("flush");
}

/// One `ApiKeyCreated` as the log holds it.
#[derive(Clone, Debug)]
pub struct LoggedKey {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub user_id: Option<u64>,
}

/// The log of a data directory no process holds (on PostgreSQL, of its schema): its last
/// position and every key created, in order. The whole hash chain is checked on the way.
///
/// This uses the library directly, because no HTTP route or CLI command lists keys or counts
/// events yet; keep it the only place that does. It runs on a thread of its own: the
/// PostgreSQL client blocks, which it may not inside a test's async runtime.
pub fn read_log(dir: &Path) -> (u64, Vec<LoggedKey>) {
    std::thread::scope(|scope| scope.spawn(|| read_log_here(dir)).join().expect("reading the log failed"))
}

/// Opens the stopped ledger of data directory `dir` in this run's store (sled in `dir`, or
/// its schema on PostgreSQL), creating an empty one if `create`. Not inside an async runtime:
/// the PostgreSQL client blocks.
pub fn open_stopped(dir: &Path, create: bool) -> Box<dyn Storage> {
    let opened: Result<Box<dyn Storage>, _> = match (postgres_url(), create) {
        (None, true) => SledStorage::open(dir).map(|s| Box::new(s) as Box<dyn Storage>),
        (None, false) => SledStorage::open_existing(dir).map(|s| Box::new(s) as Box<dyn Storage>),
        (Some(url), true) => PostgresStorage::open(url, &schema_of(dir, Path::new("/"))).map(|s| Box::new(s) as Box<dyn Storage>),
        (Some(url), false) => PostgresStorage::open_existing(url, &schema_of(dir, Path::new("/"))).map(|s| Box::new(s) as Box<dyn Storage>),
    };
    opened.unwrap_or_else(|e| panic!("cannot open the stopped ledger in {}: {e}", dir.display()))
}

fn read_log_here(dir: &Path) -> (u64, Vec<LoggedKey>) {
    let storage = open_stopped(dir, false);
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
