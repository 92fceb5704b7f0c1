//! The expiry schedule: keys ordered by the moment they stop authenticating, and rotated
//! keys' previous tokens by the moment their grace period ends.
//!
//! Stored rows are keyed `<position>/<microseconds since epoch, 20 digits>/<key id>`, with
//! `/grace` appended for a grace period: by the position that scheduled them, so that new
//! rows append; the in-memory schedule is ordered by time.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use crate::event::Event;
use crate::projection::{positioned, split_positioned, Projection, RowError, TouchedRows};
use crate::RecordedEvent;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpirySchedule {
    expiries: Timetable,
    grace_periods: Timetable,
}

/// Moments by key, ordered by time; each entry remembers the position that scheduled it.
#[derive(Clone, Debug, Default)]
struct Timetable {
    scheduled: HashMap<Uuid, (DateTime<Utc>, u64)>,
    /// `scheduled` in time order, built from it by the first question about order and kept
    /// in step from then on. A start loads, and a rebuild folds, a million entries before
    /// anyone asks (and the service only ever asks about grace periods): kept sorted one
    /// insert at a time, they cost a start about half a second of CPU in random B-tree
    /// inserts.
    due: OnceLock<BTreeSet<(DateTime<Utc>, Uuid)>>,
}

/// `due` is derived from `scheduled`, built or not.
impl PartialEq for Timetable {
    fn eq(&self, other: &Self) -> bool {
        self.scheduled == other.scheduled
    }
}

impl Timetable {
    fn due(&self) -> &BTreeSet<(DateTime<Utc>, Uuid)> {
        self.due.get_or_init(|| self.scheduled.iter().map(|(key_id, (at, _))| (*at, *key_id)).collect())
    }

    fn due_by(&self, now: DateTime<Utc>) -> impl Iterator<Item = (DateTime<Utc>, Uuid)> + '_ {
        self.due().iter().copied().take_while(move |(at, _)| *at <= now)
    }

    /// Schedules `key_id` at `at` (replacing what it had), noting the rows that changed.
    fn schedule(&mut self, key_id: Uuid, at: DateTime<Utc>, position: u64, grace: bool, touched: &mut impl TouchedRows) {
        // Row keys hold microseconds; keep no more in memory, or a row could not be found again.
        let at = at.trunc_subsecs(6);
        if self.scheduled.get(&key_id).is_some_and(|(previous, _)| *previous == at) {
            return;
        }
        self.cancel(key_id, grace, touched);
        self.insert(key_id, at, position);
        touched.touch(|| row_key(position, at, key_id, grace));
    }

    fn insert(&mut self, key_id: Uuid, at: DateTime<Utc>, position: u64) {
        let previous = self.scheduled.insert(key_id, (at, position));
        if let Some(due) = self.due.get_mut() {
            if let Some((previous, _)) = previous {
                due.remove(&(previous, key_id));
            }
            due.insert((at, key_id));
        }
    }

    /// Takes `key_id` off the timetable, giving back when and by which position it was
    /// scheduled.
    fn remove(&mut self, key_id: Uuid) -> Option<(DateTime<Utc>, u64)> {
        let (at, position) = self.scheduled.remove(&key_id)?;
        if let Some(due) = self.due.get_mut() {
            due.remove(&(at, key_id));
        }
        Some((at, position))
    }

    fn cancel(&mut self, key_id: Uuid, grace: bool, touched: &mut impl TouchedRows) {
        if let Some((at, position)) = self.remove(key_id) {
            touched.touch(|| row_key(position, at, key_id, grace));
        }
    }

    fn row_keys(&self, grace: bool) -> impl Iterator<Item = String> + '_ {
        self.scheduled.iter().map(move |(id, (at, position))| row_key(*position, *at, *id, grace))
    }
}

const GRACE: &str = "/grace";

fn row_key(position: u64, at: DateTime<Utc>, key_id: Uuid, grace: bool) -> String {
    let suffix = if grace { GRACE } else { "" };
    positioned(position, &format!("{:020}/{key_id}{suffix}", at.timestamp_micros().max(0)))
}

/// (position, moment, key, whether it is a grace period).
fn parse_row_key(key: &str) -> Option<(u64, DateTime<Utc>, Uuid, bool)> {
    let (position, rest) = split_positioned(key)?;
    let (rest, grace) = rest.strip_suffix(GRACE).map_or((rest, false), |rest| (rest, true));
    let (micros, id) = rest.split_once('/')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((position, at, Uuid::parse_str(id).ok()?, grace))
}

impl ExpirySchedule {
    /// Keys whose expiry is at or before `now`, earliest first.
    pub fn due_by(&self, now: DateTime<Utc>) -> impl Iterator<Item = (DateTime<Utc>, Uuid)> + '_ {
        self.expiries.due_by(now)
    }

    /// The next moment something expires.
    pub fn next(&self) -> Option<(DateTime<Utc>, Uuid)> {
        self.expiries.due().first().copied()
    }

    /// Keys whose previous token's grace period has ended by `now`, earliest first.
    pub fn grace_periods_ended_by(&self, now: DateTime<Utc>) -> impl Iterator<Item = (DateTime<Utc>, Uuid)> + '_ {
        self.grace_periods.due_by(now)
    }

    /// The next moment a grace period ends.
    pub fn next_grace_period_end(&self) -> Option<DateTime<Utc>> {
        self.grace_periods.due().first().map(|(at, _)| *at)
    }

    fn timetable(&mut self, grace: bool) -> &mut Timetable {
        if grace {
            &mut self.grace_periods
        } else {
            &mut self.expiries
        }
    }
}

impl Projection for ExpirySchedule {
    const NAME: &'static str = "expiry_schedule";

    fn apply(&mut self, recorded: &RecordedEvent, touched: &mut impl TouchedRows) {
        let position = recorded.position;
        match &recorded.event {
            Event::ApiKeyCreated(e) => self.expiries.schedule(e.api_key_id, e.expires_at, position, false, touched),
            Event::ApiKeyUpdated(e) if self.expiries.scheduled.contains_key(&e.api_key_id) => {
                self.expiries.schedule(e.api_key_id, e.expires_at, position, false, touched);
            }
            Event::ApiKeyRotated(e) if self.expiries.scheduled.contains_key(&e.api_key_id) => {
                self.expiries.schedule(e.api_key_id, e.expires_at, position, false, touched);
                match e.grace_period_ends_at {
                    Some(ends) => self.grace_periods.schedule(e.api_key_id, ends, position, true, touched),
                    None => self.grace_periods.cancel(e.api_key_id, true, touched),
                }
            }
            Event::ApiKeyGracePeriodEnded(e) => self.grace_periods.cancel(e.api_key_id, true, touched),
            Event::ApiKeyRevoked(e) => {
                self.expiries.cancel(e.api_key_id, false, touched);
                self.grace_periods.cancel(e.api_key_id, true, touched);
            }
            _ => {}
        }
    }

    fn encode_row(&self, key: &str) -> Option<Vec<u8>> {
        let (position, at, key_id, grace) = parse_row_key(key)?;
        let timetable = if grace { &self.grace_periods } else { &self.expiries };
        (timetable.scheduled.get(&key_id) == Some(&(at, position))).then(Vec::new)
    }

    fn load_row(&mut self, key: &str, _value: &[u8]) -> Result<(), RowError> {
        let (position, at, key_id, grace) =
            parse_row_key(key).ok_or_else(|| RowError::new(Self::NAME, key, "not <position>/<micros>/<key id>[/grace]"))?;
        self.timetable(grace).insert(key_id, at, position);
        Ok(())
    }

    fn unload_row(&mut self, key: &str) {
        if let Some((position, at, key_id, grace)) = parse_row_key(key) {
            let timetable = self.timetable(grace);
            if timetable.scheduled.get(&key_id) == Some(&(at, position)) {
                timetable.remove(key_id);
            }
        }
    }

    fn row_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.expiries.row_keys(false).chain(self.grace_periods.row_keys(true)).collect();
        keys.sort();
        keys
    }
}
