//! When a key's use is worth recording: `last_used_at` moves at most once a minute per key,
//! so a busy key costs one store write a minute, not one per request.

use chrono::{DateTime, TimeDelta, Utc};

/// The least time between two recorded uses of one key.
pub const INTERVAL: TimeDelta = TimeDelta::seconds(60);

/// Whether a use at `now` replaces the recorded `last` one: when there is none, or it is at
/// least [`INTERVAL`] old. A clock that stepped back never moves it backwards.
pub fn is_due(last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last.is_none_or(|last| now - last >= INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_use_is_recorded_when_none_is_or_the_last_is_a_minute_old() {
        let now = at("2026-11-29T12:00:00Z");
        assert!(is_due(None, now), "a never-used key");
        assert!(is_due(Some(at("2026-11-29T11:59:00Z")), now), "exactly a minute");
        assert!(is_due(Some(at("2026-11-28T12:00:00Z")), now), "a day");
        assert!(!is_due(Some(at("2026-11-29T11:59:00.000001Z")), now), "a microsecond short of a minute");
        assert!(!is_due(Some(now), now), "the same moment");
        assert!(!is_due(Some(at("2026-11-29T12:05:00Z")), now), "a clock that stepped back");
    }
}
