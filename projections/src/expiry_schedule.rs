//! The expiry schedule: keys ordered by the moment they stop authenticating.
//!
//! Stored rows are keyed `<position>/<microseconds since epoch, 20 digits>/<key id>`: by the
//! position that scheduled them, so that new rows append; the in-memory schedule is ordered
//! by time.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use crate::event::Event;
use crate::projection::{positioned, split_positioned, Projection, RowError};
use crate::RecordedEvent;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpirySchedule {
    due: BTreeSet<(DateTime<Utc>, Uuid)>,
    /// Each scheduled key's entry and the position that scheduled it.
    scheduled: HashMap<Uuid, (DateTime<Utc>, u64)>,
}

fn row_key(position: u64, at: DateTime<Utc>, key_id: Uuid) -> String {
    positioned(position, &format!("{:020}/{key_id}", at.timestamp_micros().max(0)))
}

fn parse_row_key(key: &str) -> Option<(u64, DateTime<Utc>, Uuid)> {
    let (position, rest) = split_positioned(key)?;
    let (micros, id) = rest.split_once('/')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((position, at, Uuid::parse_str(id).ok()?))
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

    fn schedule(&mut self, key_id: Uuid, at: DateTime<Utc>, position: u64) {
        if let Some((previous, _)) = self.scheduled.insert(key_id, (at, position)) {
            self.due.remove(&(previous, key_id));
        }
        self.due.insert((at, key_id));
    }
}

impl Projection for ExpirySchedule {
    const NAME: &'static str = "expiry_schedule";

    fn apply(&mut self, recorded: &RecordedEvent, touched: &mut Vec<String>) {
        if let Event::ApiKeyUpdated(e) = &recorded.event {
            let at = e.expires_at.trunc_subsecs(6);
            if let Some((previous, position)) = self.scheduled.get(&e.api_key_id).copied() {
                if previous != at {
                    touched.push(row_key(position, previous, e.api_key_id));
                    self.schedule(e.api_key_id, at, recorded.position);
                    touched.push(row_key(recorded.position, at, e.api_key_id));
                }
            }
        }
        if let Event::ApiKeyRevoked(e) = &recorded.event {
            if let Some((at, position)) = self.scheduled.remove(&e.api_key_id) {
                self.due.remove(&(at, e.api_key_id));
                touched.push(row_key(position, at, e.api_key_id));
            }
        }
        if let Event::ApiKeyCreated(e) = &recorded.event {
            // Row keys hold microseconds; keep no more in memory, or a row could not be found again.
            let at = e.expires_at.trunc_subsecs(6);
            self.schedule(e.api_key_id, at, recorded.position);
            touched.push(row_key(recorded.position, at, e.api_key_id));
        }
    }

    fn encode_row(&self, key: &str) -> Option<Vec<u8>> {
        let (position, at, key_id) = parse_row_key(key)?;
        (self.scheduled.get(&key_id) == Some(&(at, position))).then(Vec::new)
    }

    fn load_row(&mut self, key: &str, _value: &[u8]) -> Result<(), RowError> {
        let (position, at, key_id) =
            parse_row_key(key).ok_or_else(|| RowError::new(Self::NAME, key, "not <position>/<micros>/<key id>"))?;
        self.schedule(key_id, at, position);
        Ok(())
    }

    fn unload_row(&mut self, key: &str) {
        if let Some((position, at, key_id)) = parse_row_key(key) {
            if self.scheduled.get(&key_id) == Some(&(at, position)) {
                self.scheduled.remove(&key_id);
                self.due.remove(&(at, key_id));
            }
        }
    }

    fn row_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.scheduled.iter().map(|(id, (at, position))| row_key(*position, *at, *id)).collect();
        keys.sort();
        keys
    }
}
