//! The projection journal: the row changes of each commit, as one framed record.
//!
//! Storing every projection row as its own entry costs the store one tree insert per row;
//! with sled that is several microseconds each, and it dominated the cost of a create. The
//! journal instead stores a commit's row changes as one record (split into pieces small
//! enough that sled keeps them inline in its log, never in its separate blob files), in the
//! same transaction as the commit's events. Loading replays the journal in order.
//!
//! Record: repeated `[u8 name len][name][u32 key len][key][u8 0|1][u32 value len][value]`
//! (big-endian), the value present only after a 1.

use keyledger_projections::ProjectionId;

use super::{LedgerError, RowChange};

/// Largest journal piece (and event page, see [`super::sled_store`]): a sled leaf holds up to
/// 16 entries and sled moves pages over 128 KiB out to blob files, which it does not fsync;
/// 4 KiB values keep leaves far below.
pub const PIECE_BYTES: usize = 4096;

/// A length as its 4-byte frame field holds it. A length the field cannot hold is refused:
/// a capped one would frame a record that reads back as something else.
fn put_len(out: &mut Vec<u8>, len: usize, what: &str) -> Result<(), LedgerError> {
    let field = u32::try_from(len).map_err(|_| LedgerError::TooLarge { what: what.to_owned(), bytes: len })?;
    out.extend_from_slice(&field.to_be_bytes());
    Ok(())
}

/// Encodes row changes as one record.
pub fn encode(changes: &[RowChange]) -> Result<Vec<u8>, LedgerError> {
    let mut out = Vec::with_capacity(changes.iter().map(|c| c.key.len() + c.value.as_ref().map_or(0, Vec::len) + 16).sum());
    for change in changes {
        let name = change.projection.name();
        out.push(
            u8::try_from(name.len()).map_err(|_| LedgerError::TooLarge { what: format!("projection name {name:?}"), bytes: name.len() })?,
        );
        out.extend_from_slice(name.as_bytes());
        put_len(&mut out, change.key.len(), "a projection row key")?;
        out.extend_from_slice(change.key.as_bytes());
        match &change.value {
            Some(value) => {
                out.push(1);
                put_len(&mut out, value.len(), "a projection row")?;
                out.extend_from_slice(value);
            }
            None => out.push(0),
        }
    }
    Ok(out)
}

/// One journal record as stored: the row changes of one commit (or one part of a replaced
/// journal), still framed. Rows are read from it in place, so loading millions of rows at
/// start allocates nothing per row here.
#[derive(Clone, Debug)]
pub struct Record {
    /// The record's sequence number, which names it in errors.
    pub number: u64,
    pub bytes: Vec<u8>,
}

/// One row change, borrowed from its [`Record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    pub projection: ProjectionId,
    pub key: &'a str,
    /// The row's new encoding, or `None` when the row is gone.
    pub value: Option<&'a [u8]>,
}

impl Row<'_> {
    pub fn to_change(self) -> RowChange {
        RowChange { projection: self.projection, key: self.key.to_owned(), value: self.value.map(<[u8]>::to_vec) }
    }
}

impl Record {
    /// The row changes, in the order they were made.
    pub fn rows(&self) -> impl Iterator<Item = Result<Row<'_>, LedgerError>> {
        let mut reader = Reader { bytes: &self.bytes, at: 0, record: self.number };
        std::iter::from_fn(move || {
            if reader.at >= reader.bytes.len() {
                return None;
            }
            let row = reader.row();
            if row.is_err() {
                // Nothing after a framing error can be trusted.
                reader.at = reader.bytes.len();
            }
            Some(row)
        })
    }

    /// The row changes, owned.
    pub fn changes(&self) -> Result<Vec<RowChange>, LedgerError> {
        self.rows().map(|row| row.map(Row::to_change)).collect()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    record: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LedgerError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or_else(|| LedgerError::Corrupt {
            position: self.record,
            reason: format!("projection journal record {} ends in the middle of a row", self.record),
        })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn len(&mut self) -> Result<usize, LedgerError> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(buf) as usize)
    }

    fn text(&mut self, n: usize) -> Result<&'a str, LedgerError> {
        let record = self.record;
        std::str::from_utf8(self.take(n)?)
            .map_err(|_| LedgerError::Corrupt { position: record, reason: "a projection journal key is not UTF-8".into() })
    }

    fn row(&mut self) -> Result<Row<'a>, LedgerError> {
        let name_len = usize::from(self.take(1)?[0]);
        let name = self.text(name_len)?;
        let projection = ProjectionId::from_name(name).ok_or_else(|| LedgerError::Corrupt {
            position: self.record,
            reason: format!("projection journal record {} has a row of projection {name:?}, which this build does not have", self.record),
        })?;
        let key_len = self.len()?;
        let key = self.text(key_len)?;
        let value = match self.take(1)?[0] {
            0 => None,
            _ => {
                let value_len = self.len()?;
                Some(self.take(value_len)?)
            }
        };
        Ok(Row { projection, key, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_including_removals_and_empty_values() {
        let changes = vec![
            RowChange { projection: ProjectionId::KeysView, key: "00000000000000000001/a".into(), value: Some(b"{\"x\":1}".to_vec()) },
            RowChange { projection: ProjectionId::NameIndex, key: "n/é".into(), value: None },
            RowChange { projection: ProjectionId::ExpirySchedule, key: "k".into(), value: Some(Vec::new()) },
        ];
        assert_eq!(Record { number: 1, bytes: encode(&changes).unwrap() }.changes().unwrap(), changes);
    }

    #[test]
    fn a_row_of_a_projection_this_build_does_not_have_is_corrupt() {
        let mut bytes = encode(&[RowChange { projection: ProjectionId::KeysView, key: "k".into(), value: None }]).unwrap();
        bytes[1..5].copy_from_slice(b"kezs");
        let record = Record { number: 3, bytes };
        assert!(matches!(record.changes(), Err(LedgerError::Corrupt { position: 3, reason }) if reason.contains("\"kezs\"")));
    }

    #[test]
    fn a_truncated_record_is_corrupt_not_a_panic() {
        let bytes = encode(&[RowChange { projection: ProjectionId::KeysView, key: "k".into(), value: Some(vec![1; 10]) }]).unwrap();
        for cut in 1..bytes.len() {
            let record = Record { number: 7, bytes: bytes[..cut].to_vec() };
            assert!(record.changes().is_err(), "cut at {cut}");
            assert_eq!(record.rows().count(), 1, "no row is read after a broken one (cut at {cut})");
        }
    }
}
