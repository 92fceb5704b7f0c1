//! The page codec: how a commit's events are cut into event pages and read back, and how
//! the legacy one-entry-per-event range reads.

use crate::ledger::{journal, LedgerError, StoredEvent};

use super::walk::Walk;
use super::{sled_error, u64_value};

/// The position in an event key (`e` or `p` + big-endian position).
pub(super) fn key_position(key: &[u8]) -> u64 {
    u64_value(key.get(1..).unwrap_or_default())
}

/// An event stored under the legacy `e` key range: hash ‖ canonical envelope.
pub(super) fn decode_legacy_event(key: &[u8], value: &[u8]) -> Result<StoredEvent, LedgerError> {
    let position = key_position(key);
    if value.len() < HASH_BYTES {
        return Err(LedgerError::Corrupt { position, reason: "stored record is shorter than its hash".into() });
    }
    let (hash, canonical) = value.split_at(HASH_BYTES);
    Ok(PageRecord { hash, canonical }.to_stored(position))
}

pub(super) const HASH_BYTES: usize = 32;
/// A page record's length field.
pub(super) const LENGTH_BYTES: usize = 4;

fn hash_of(bytes: &[u8]) -> blake3::Hash {
    let mut hash = [0u8; HASH_BYTES];
    hash.copy_from_slice(bytes);
    blake3::Hash::from_bytes(hash)
}

/// Cuts a commit's events, in order, into pages: consecutive positions, at most
/// [`journal::PIECE_BYTES`] each unless a single event is larger. A jump in positions (which
/// a correct writer never makes) starts a new page, so that it stays visible to a reader.
pub(super) fn pages(events: &[StoredEvent]) -> Result<Vec<(u64, Vec<u8>)>, LedgerError> {
    let mut pages = Vec::new();
    // The page being filled: its first position and its records.
    let mut page: (u64, Vec<u8>) = (0, Vec::new());
    let mut next_position = 0;
    for event in events {
        let record_len = HASH_BYTES + event.canonical.len();
        let length = u32::try_from(record_len)
            .map_err(|_| LedgerError::TooLarge { what: format!("event {}", event.position), bytes: record_len })?;
        let full = page.1.len() + LENGTH_BYTES + record_len > journal::PIECE_BYTES;
        if !page.1.is_empty() && (full || event.position != next_position) {
            pages.push(std::mem::take(&mut page));
        }
        if page.1.is_empty() {
            page.0 = event.position;
        }
        page.1.extend_from_slice(&length.to_be_bytes());
        page.1.extend_from_slice(event.hash.as_bytes());
        page.1.extend_from_slice(&event.canonical);
        next_position = event.position + 1;
    }
    if !page.1.is_empty() {
        pages.push(page);
    }
    Ok(pages)
}

/// One record of a page (or a legacy entry), borrowed from it.
struct PageRecord<'a> {
    hash: &'a [u8],
    canonical: &'a [u8],
}

impl PageRecord<'_> {
    fn to_stored(&self, position: u64) -> StoredEvent {
        StoredEvent { position, hash: hash_of(self.hash), canonical: self.canonical.to_vec() }
    }
}

/// Reads the record at `at` in `page`, which is the event at `position`; returns it and where
/// the next record starts.
fn read_record(page: &[u8], at: usize, position: u64) -> Result<(PageRecord<'_>, usize), LedgerError> {
    let corrupt = |reason: &str| LedgerError::Corrupt { position, reason: format!("its event page does not frame: {reason}") };
    let body = at + LENGTH_BYTES;
    let length = page.get(at..body).ok_or_else(|| corrupt("the page ends inside a record's length"))?;
    let mut buf = [0u8; LENGTH_BYTES];
    buf.copy_from_slice(length);
    let length = u32::from_be_bytes(buf) as usize;
    if length < HASH_BYTES {
        return Err(corrupt("a record is shorter than its hash"));
    }
    let end = body.checked_add(length).filter(|end| *end <= page.len()).ok_or_else(|| corrupt("a record runs past the end of the page"))?;
    let (hash, canonical) = page[body..end].split_at(HASH_BYTES);
    Ok((PageRecord { hash, canonical }, end))
}

/// The last event of a page stored under `key`.
pub(super) fn last_of_page(key: &[u8], page: &[u8]) -> Result<StoredEvent, LedgerError> {
    let mut position = key_position(key);
    let mut at = 0;
    loop {
        let (record, next) = read_record(page, at, position)?;
        if next == page.len() {
            return Ok(record.to_stored(position));
        }
        at = next;
        position += 1;
    }
}

/// The events of the pages from a given one on, from a given position on.
pub(super) struct PagedEvents {
    pub(super) pages: Walk,
    /// The page being read and where its next record starts.
    pub(super) page: sled::IVec,
    pub(super) at: usize,
    /// Position of the next record.
    pub(super) position: u64,
    /// Records before this position are skipped.
    pub(super) from: u64,
    /// Set after an error: nothing after a page that does not frame can be trusted.
    pub(super) failed: bool,
}

impl Iterator for PagedEvents {
    type Item = Result<StoredEvent, LedgerError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            if self.at < self.page.len() {
                let position = self.position;
                match read_record(&self.page, self.at, position) {
                    Ok((record, next)) => {
                        self.at = next;
                        self.position += 1;
                        if position >= self.from {
                            return Some(Ok(record.to_stored(position)));
                        }
                    }
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
                continue;
            }
            match self.pages.next()? {
                Ok((key, page)) => {
                    self.position = key_position(&key);
                    if page.is_empty() {
                        self.failed = true;
                        return Some(Err(LedgerError::Corrupt { position: self.position, reason: "its event page is empty".into() }));
                    }
                    self.page = page;
                    self.at = 0;
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(sled_error(e)));
                }
            }
        }
        None
    }
}
