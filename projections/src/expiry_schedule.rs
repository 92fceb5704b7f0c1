//! The expiry schedule: keys ordered by the moment they stop authenticating.
//!
//! Row keys sort by time (`<microseconds since epoch, 20 digits>/<key id>`), so the stored
//! schedule can be read in due order as well.

use std::collections::BTreeSet;

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use crate::event::Event;
use crate::projection::{Projection, RowError};
use crate::RecordedEvent;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpirySchedule {
    due: BTreeSet<(DateTime<Utc>, Uuid)>,
}

fn row_key(at: DateTime<Utc>, key_id: Uuid) -> String {
    format!("{:020}/{key_id}", at.timestamp_micros().max(0))
}

impl ExpirySchedule {
    /// Keys whose expiry is at or before `now`, earliest first.
    pub fn due_by(&self, now: DateTime<Utc>) -> impl Iterator<Item = (DateTime<Utc>, Uuid)> + '_ {
        self.due.iter().copied().take_while(move |(at, _)| *at <= now)
    }

    /// The next moment something expires.
    pub fn next(&self) -> Option<(DateTime<Utc>, Uuid)> {
        self.due.first().copied()
    }
}

impl Projection for ExpirySchedule {
    const NAME: &'static str = "expiry_schedule";

    fn apply(&mut self, recorded: &RecordedEvent, touched: &mut Vec<String>) {
        if let Event::ApiKeyCreated(e) = &recorded.event {
            // Row keys hold microseconds; keep no more in memory, or a row could not be found again.
            let at = e.expires_at.trunc_subsecs(6);
            self.due.insert((at, e.api_key_id));
            touched.push(row_key(at, e.api_key_id));
        }
    }

    fn encode_row(&self, key: &str) -> Option<Vec<u8>> {
        let entry = parse_row_key(key)?;
        self.due.contains(&entry).then(Vec::new)
    }

    fn load_row(&mut self, key: &str, _value: &[u8]) -> Result<(), RowError> {
        let entry = parse_row_key(key).ok_or_else(|| RowError::new(Self::NAME, key, "not <micros>/<key id>"))?;
        self.due.insert(entry);
        Ok(())
    }

    fn row_keys(&self) -> Vec<String> {
        self.due.iter().map(|(at, id)| row_key(*at, *id)).collect()
    }
}

fn parse_row_key(key: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = key.split_once('/')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, Uuid::parse_str(id).ok()?))
}
