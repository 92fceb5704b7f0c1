//! What every persisted projection provides.
//!
//! A projection keeps its state in memory as a fold over events and is persisted as rows
//! (a key and an encoded value per entity). `apply` reports which rows an event touched, so
//! that the writer can journal exactly those row changes in the same transaction as the
//! event, and a restart replays row changes instead of re-deciding the whole log.

use crate::RecordedEvent;

/// A stored row could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("row {key:?} of projection {projection} is unreadable: {reason}")]
pub struct RowError {
    pub projection: &'static str,
    pub key: String,
    pub reason: String,
}

impl RowError {
    pub fn new(projection: &'static str, key: &str, reason: impl ToString) -> Self {
        RowError { projection, key: key.to_owned(), reason: reason.to_string() }
    }
}

pub trait Projection {
    /// Stable name: the prefix of its rows and the name of its checkpoint.
    const NAME: &'static str;

    /// Folds one event in and reports the keys of the rows it changed to `touched`.
    fn apply(&mut self, event: &RecordedEvent, touched: &mut impl TouchedRows);

    /// The current encoding of row `key`, or `None` when the row no longer exists.
    fn encode_row(&self, key: &str) -> Option<Vec<u8>>;

    /// Restores one row written by [`Projection::encode_row`].
    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError>;

    /// Forgets a row that a later change removed (`encode_row` gave `None` for it).
    fn unload_row(&mut self, key: &str);

    /// Every row, in key order: what `rebuild --check` compares.
    fn row_keys(&self) -> Vec<String>;
}

/// Where [`Projection::apply`] reports the rows an event changed.
///
/// A key is built only if it is kept: the writer journals the rows it is told about, but a
/// rebuild's fresh copy or the readers' copy of the state has no use for them, and building
/// (then dropping) a formatted key per row and event cost a rebuild a tenth of its CPU.
pub trait TouchedRows {
    fn touch(&mut self, key: impl FnOnce() -> String);
}

impl TouchedRows for Vec<String> {
    fn touch(&mut self, key: impl FnOnce() -> String) {
        self.push(key());
    }
}

/// Rows changed where nobody keeps track of them.
pub struct Untracked;

impl TouchedRows for Untracked {
    fn touch(&mut self, _key: impl FnOnce() -> String) {}
}

/// A row key that sorts by the log position that created the row: `<position, 20 digits>/<id>`.
///
/// Rows are stored in key order, so keying high-volume rows by position turns every new
/// row into an append at the end of its range instead of an insert at a random place in
/// the tree, which is several times cheaper for the store and keeps writes sequential.
pub fn positioned(position: u64, id: &str) -> String {
    format!("{position:020}/{id}")
}

/// Splits a [`positioned`] row key into its position and id.
pub fn split_positioned(key: &str) -> Option<(u64, &str)> {
    let (position, id) = key.split_once('/')?;
    Some((position.parse().ok()?, id))
}

/// Encodes a row value; projections hold only plain data, which always serializes.
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(value).ok()
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(projection: &'static str, key: &str, value: &[u8]) -> Result<T, RowError> {
    serde_json::from_slice(value).map_err(|e| RowError::new(projection, key, e))
}
