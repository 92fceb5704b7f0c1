//! Expiry schedule: given keys created, then which keys are due to expire, in time order.

mod support;

use chrono::{DateTime, Duration, Utc};
use keyledger_projections::event::ApiKeyCreated;
use keyledger_projections::expiry_schedule::ExpirySchedule;
use keyledger_projections::projection::{positioned, split_positioned, Untracked};
use keyledger_projections::{Event, Projection};
use support::*;
use uuid::Uuid;

fn expiring(key: u128, at: DateTime<Utc>) -> keyledger_projections::Event {
    created(ApiKeyCreated { expires_at: at, ..personal_key(org_a(), id(key), 1, &format!("key {key}")) })
}

/// The row key of `key` scheduled at `at` by the event at `position`.
fn row(position: u64, at: DateTime<Utc>, key: u128) -> String {
    positioned(position, &format!("{:020}/{}", at.timestamp_micros(), id(key)))
}

#[test]
fn an_empty_schedule_has_nothing_next_and_nothing_due() {
    let schedule = ExpirySchedule::default();

    assert_eq!(schedule.next(), None);
    assert_eq!(schedule.due_by(day(9999, 1, 1)).count(), 0);
}

#[test]
fn next_is_the_earliest_expiry_whatever_the_creation_order() {
    let schedule: ExpirySchedule =
        fold([expiring(0x100, day(2026, 1, 1)), expiring(0x101, day(2025, 3, 1)), expiring(0x102, day(2025, 6, 30))]);

    assert_eq!(schedule.next(), Some((day(2025, 3, 1), id(0x101))));
}

#[test]
fn due_by_lists_keys_expiring_at_or_before_now_earliest_first() {
    let schedule: ExpirySchedule =
        fold([expiring(0x100, day(2026, 1, 1)), expiring(0x101, day(2025, 6, 30)), expiring(0x102, day(2025, 3, 1))]);

    let due: Vec<(DateTime<Utc>, Uuid)> = schedule.due_by(day(2025, 6, 30)).collect();

    assert_eq!(due, vec![(day(2025, 3, 1), id(0x102)), (day(2025, 6, 30), id(0x101))]);
}

#[test]
fn due_by_excludes_a_key_expiring_a_moment_later() {
    let schedule: ExpirySchedule = fold([expiring(0x100, day(2025, 6, 30))]);

    assert_eq!(schedule.due_by(day(2025, 6, 30) - Duration::microseconds(1)).count(), 0);
    assert_eq!(schedule.due_by(day(2025, 6, 30)).count(), 1, "expiry at exactly now is due");
}

#[test]
fn keys_expiring_at_the_same_moment_are_all_due() {
    let schedule: ExpirySchedule = fold([expiring(0x101, day(2025, 6, 30)), expiring(0x100, day(2025, 6, 30))]);

    let due: Vec<Uuid> = schedule.due_by(day(2025, 6, 30)).map(|(_, key)| key).collect();

    assert_eq!(due, vec![id(0x100), id(0x101)]);
}

#[test]
fn api_key_created_touches_exactly_its_time_and_key_row() {
    let mut schedule = ExpirySchedule::default();
    let at = day(2025, 6, 30) + Duration::microseconds(42);

    let touched = touched_by(&mut schedule, 5, expiring(0x100, at));

    assert_eq!(touched, vec![row(5, at, 0x100)]);
    assert_eq!(touched, vec![format!("00000000000000000005/{:020}/{}", at.timestamp_micros(), id(0x100))]);
    assert_eq!(schedule.row_keys(), touched);
}

#[test]
fn other_events_touch_nothing() {
    let mut schedule = ExpirySchedule::default();

    let touched = touched_per_event(
        &mut schedule,
        [organization_created(org_a(), "acme"), account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5)))],
    );

    assert!(touched.iter().all(Vec::is_empty), "{touched:?}");
    assert_eq!(schedule.next(), None);
}

#[test]
fn row_keys_sort_in_position_order_and_the_schedule_stays_in_time_order() {
    // Times whose microsecond counts have different numbers of digits, created out of time
    // order, at positions whose numbers have different numbers of digits.
    let times = [
        (1, 0x100, day(2286, 11, 21)),
        (9, 0x101, DateTime::from_timestamp(1, 0).unwrap()),
        (10, 0x102, day(2025, 6, 30) + Duration::microseconds(1)),
        (99, 0x103, day(9999, 12, 31)),
        (100, 0x104, DateTime::from_timestamp(999, 999_999_000).unwrap()),
        (1_000, 0x105, day(2001, 9, 9)),
        (10_000_000, 0x106, day(2025, 6, 30)),
    ];
    let mut schedule = ExpirySchedule::default();
    for &(position, key, at) in &times {
        touched_by(&mut schedule, position, expiring(key, at));
    }

    let keys = schedule.row_keys();
    let mut lexicographic = keys.clone();
    lexicographic.sort();
    assert_eq!(keys, lexicographic, "row_keys are in key order");
    let by_position: Vec<String> = times.iter().map(|&(position, key, at)| row(position, at, key)).collect();
    assert_eq!(keys, by_position, "key order is position order, not time order");

    let mut by_time: Vec<(DateTime<Utc>, Uuid)> = times.iter().map(|&(_, key, at)| (at, id(key))).collect();
    by_time.sort();
    assert_eq!(schedule.due_by(day(9999, 12, 31)).collect::<Vec<_>>(), by_time, "the schedule is in time order");
    assert_eq!(schedule.next(), Some(by_time[0]));
}

#[test]
fn a_row_key_is_the_position_then_the_twenty_digit_micros_and_the_key_id() {
    let mut schedule = ExpirySchedule::default();
    let at = DateTime::from_timestamp(1, 0).unwrap();

    let touched = touched_by(&mut schedule, 3, expiring(0x100, at));

    let (position, rest) = split_positioned(&touched[0]).unwrap();
    assert_eq!(position, 3);
    assert_eq!(rest, format!("00000000000001000000/{}", id(0x100)));
}

#[test]
fn same_moment_keys_are_due_in_key_id_order_while_their_rows_sort_by_position() {
    let schedule: ExpirySchedule =
        fold([expiring(0xff, day(2025, 6, 30)), expiring(0x1_0000_0000_0000_0000, day(2025, 6, 30)), expiring(0x1, day(2025, 6, 30))]);

    let keys = schedule.row_keys();
    let mut lexicographic = keys.clone();
    lexicographic.sort();
    assert_eq!(keys, lexicographic);
    assert_eq!(
        keys,
        vec![row(1, day(2025, 6, 30), 0xff), row(2, day(2025, 6, 30), 0x1_0000_0000_0000_0000), row(3, day(2025, 6, 30), 0x1),],
        "stored order is creation order"
    );
    let due: Vec<Uuid> = schedule.due_by(day(2025, 6, 30)).map(|(_, key)| key).collect();
    assert_eq!(due, vec![id(0x1), id(0xff), id(0x1_0000_0000_0000_0000)], "due order is (time, key id)");
}

#[test]
fn encode_row_exists_only_for_a_scheduled_entry() {
    let mut schedule = ExpirySchedule::default();
    let touched = touched_by(&mut schedule, 1, expiring(0x100, day(2025, 6, 30)));

    assert_eq!(touched, vec![row(1, day(2025, 6, 30), 0x100)]);
    assert!(schedule.encode_row(&touched[0]).is_some());
    assert!(schedule.encode_row(&row(1, day(2025, 7, 1), 0x100)).is_none(), "another time");
    assert!(schedule.encode_row(&row(1, day(2025, 6, 30), 0x101)).is_none(), "another key");
    assert!(schedule.encode_row(&row(2, day(2025, 6, 30), 0x100)).is_none(), "another position");
    assert!(
        schedule.encode_row(&format!("{:020}/{}", day(2025, 6, 30).timestamp_micros(), id(0x100))).is_none(),
        "the old, unpositioned key"
    );
    assert!(schedule.encode_row("garbage").is_none());
}

/// Key 0x100 scheduled at position 1, then rescheduled (created again, which the service
/// never does) at position 2 for a later time.
fn rescheduled() -> ExpirySchedule {
    fold([expiring(0x100, day(2025, 6, 30)), expiring(0x100, day(2025, 12, 31))])
}

#[test]
fn a_rescheduled_key_is_due_once_at_its_latest_time_with_one_row() {
    let schedule = rescheduled();

    assert_eq!(schedule.next(), Some((day(2025, 12, 31), id(0x100))));
    assert_eq!(schedule.due_by(day(2025, 12, 31)).count(), 1);
    assert_eq!(schedule.row_keys(), vec![row(2, day(2025, 12, 31), 0x100)]);
    assert!(schedule.encode_row(&row(1, day(2025, 6, 30), 0x100)).is_none(), "the earlier row is gone");
}

#[test]
fn unload_row_removes_the_entry_from_the_rows_and_the_schedule() {
    let mut schedule: ExpirySchedule = fold([expiring(0x100, day(2025, 3, 1)), expiring(0x101, day(2025, 6, 30))]);

    schedule.unload_row(&row(1, day(2025, 3, 1), 0x100));

    assert_eq!(schedule.next(), Some((day(2025, 6, 30), id(0x101))));
    assert_eq!(schedule.due_by(day(2026, 1, 1)).count(), 1);
    assert_eq!(schedule.row_keys(), vec![row(2, day(2025, 6, 30), 0x101)]);
}

#[test]
fn unload_row_of_a_stale_entry_leaves_the_newer_schedule() {
    let mut schedule = rescheduled();
    let before = schedule.clone();

    schedule.unload_row(&row(1, day(2025, 6, 30), 0x100));
    schedule.unload_row(&row(1, day(2025, 12, 31), 0x100));
    schedule.unload_row(&row(2, day(2025, 6, 30), 0x100));
    schedule.unload_row(&row(3, day(2025, 12, 31), 0x100));

    assert_eq!(schedule, before, "only position 2 at 2025-12-31 is the current row");
    assert_eq!(schedule.next(), Some((day(2025, 12, 31), id(0x100))));
}

#[test]
fn unload_row_of_an_unknown_or_malformed_key_changes_nothing() {
    let mut schedule: ExpirySchedule = fold([expiring(0x100, day(2025, 6, 30))]);
    let before = schedule.clone();

    schedule.unload_row(&row(1, day(2025, 6, 30), 0x101));
    schedule.unload_row(&format!("{:020}/{}", day(2025, 6, 30).timestamp_micros(), id(0x100)));
    schedule.unload_row("garbage");

    assert_eq!(schedule, before);
}

#[test]
fn rows_loaded_in_key_order_keep_the_latest_schedule() {
    let mut schedule = ExpirySchedule::default();

    schedule.load_row(&row(1, day(2025, 6, 30), 0x100), b"").unwrap();
    schedule.load_row(&row(2, day(2025, 12, 31), 0x100), b"").unwrap();

    assert_eq!(schedule, rescheduled());
}

#[test]
fn rows_load_back_into_an_equal_schedule() {
    let schedule: ExpirySchedule = fold(a_busy_history());
    assert_eq!(schedule.row_keys().len(), 7, "six expiries and one grace period");

    assert_eq!(round_trip_all_rows(&schedule), schedule);
}

#[test]
fn touched_rows_alone_rebuild_an_equal_schedule() {
    let (original, rebuilt) = round_trip_touched::<ExpirySchedule>(a_busy_history());

    assert_eq!(rebuilt, original);
    assert_eq!(rebuilt.next(), Some((day(2025, 6, 30), id(0x104))), "0x105's rotation moved its expiry to 2027");
    assert_eq!(rebuilt.next_grace_period_end(), Some(day(2025, 2, 1)));
}

#[test]
fn touched_row_of_a_sub_microsecond_expiry_is_encodable_and_reloads() {
    let at = day(2026, 1, 1) + Duration::nanoseconds(1_500);
    let (original, rebuilt) = round_trip_touched::<ExpirySchedule>([expiring(0x100, at)]);

    let key = original.row_keys().pop().unwrap();
    assert!(original.encode_row(&key).is_some(), "a touched row must be encodable");
    assert_eq!(rebuilt, original);
}

#[test]
fn garbage_row_key_is_an_error_naming_the_expiry_schedule() {
    let mut schedule = ExpirySchedule::default();

    let old_format = format!("{:020}/{}", day(2025, 6, 30).timestamp_micros(), id(0x100));
    let soon = positioned(1, &format!("soon/{}", id(0x100)));
    for key in ["garbage", "12/not-a-uuid", &format!("soon/{}", id(0x100)), &old_format, &soon, "1/2/not-a-uuid"] {
        let err = schedule.load_row(key, b"").unwrap_err();
        assert_eq!(err.projection, "expiry_schedule", "{key}");
        assert_eq!(err.key, key);
        assert!(err.to_string().contains("expiry_schedule"), "{err}");
    }
    assert_eq!(schedule, ExpirySchedule::default());
}

fn rotation_of_0x100(grace: Option<DateTime<Utc>>, retired: Option<&str>) -> Event {
    rotated(org_a(), id(0x100), "old", "new", grace, retired)
}

#[test]
fn a_rotation_schedules_its_grace_period_end_and_moves_the_expiry() {
    let schedule: ExpirySchedule =
        fold([created(personal_key(org_a(), id(0x100), 1, "laptop")), rotation_of_0x100(Some(day(2026, 6, 1)), None)]);

    assert_eq!(schedule.next_grace_period_end(), Some(day(2026, 6, 1)));
    assert_eq!(schedule.grace_periods_ended_by(day(2026, 5, 31)).count(), 0);
    assert_eq!(schedule.grace_periods_ended_by(day(2026, 6, 1)).collect::<Vec<_>>(), vec![(day(2026, 6, 1), id(0x100))]);
    assert_eq!(schedule.next(), Some((day(2027, 1, 1), id(0x100))), "the rotation's expires_at replaces the old one");
}

#[test]
fn a_rotation_without_grace_or_the_end_of_one_leaves_nothing_to_retire() {
    let without: ExpirySchedule = fold([
        created(personal_key(org_a(), id(0x100), 1, "laptop")),
        rotation_of_0x100(Some(day(2026, 6, 1)), None),
        rotation_of_0x100(None, Some("old")),
    ]);
    let ended: ExpirySchedule = fold([
        created(personal_key(org_a(), id(0x100), 1, "laptop")),
        rotation_of_0x100(Some(day(2026, 6, 1)), None),
        grace_period_ended(org_a(), id(0x100), "old", day(2026, 6, 1)),
    ]);

    for schedule in [without, ended] {
        assert_eq!(schedule.next_grace_period_end(), None);
        assert_eq!(schedule.next(), Some((day(2027, 1, 1), id(0x100))));
    }
}

#[test]
fn a_revocation_cancels_the_grace_period_too() {
    let key = personal_key(org_a(), id(0x100), 1, "laptop");
    let schedule: ExpirySchedule =
        fold([created(key.clone()), rotation_of_0x100(Some(day(2026, 6, 1)), None), Event::ApiKeyRevoked(revocation_of(key))]);

    assert_eq!(schedule, ExpirySchedule::default());
}

#[test]
fn grace_periods_survive_the_row_round_trip() {
    let (original, rebuilt) = round_trip_touched::<ExpirySchedule>([
        created(personal_key(org_a(), id(0x100), 1, "laptop")),
        rotation_of_0x100(Some(day(2026, 6, 1)), None),
        rotation_of_0x100(Some(day(2026, 7, 1)), Some("old")),
    ]);

    assert_eq!(rebuilt, original);
    assert_eq!(rebuilt.next_grace_period_end(), Some(day(2026, 7, 1)));
}

/// The time order is built by the first question about it and kept in step after that: a
/// schedule asked after every event answers as one that is first asked at the end.
#[test]
fn the_time_order_asked_after_every_event_matches_one_first_asked_at_the_end() {
    let key = personal_key(org_a(), id(0x100), 1, "laptop");
    let history = given([
        expiring(0x101, day(2026, 3, 1)),
        created(key.clone()),
        rotation_of_0x100(Some(day(2026, 6, 1)), None),
        expiring(0x102, day(2025, 1, 1)),
        rotation_of_0x100(None, Some("old")),
        Event::ApiKeyRevoked(revocation_of(key)),
    ]);
    let far = day(9999, 1, 1);
    let mut asked = ExpirySchedule::default();
    for (n, event) in history.iter().enumerate() {
        asked.apply(event, &mut Untracked);
        let mut first_asked_now = ExpirySchedule::default();
        for earlier in &history[..=n] {
            first_asked_now.apply(earlier, &mut Untracked);
        }
        let expiries = |s: &ExpirySchedule| s.due_by(far).collect::<Vec<_>>();
        let grace_ends = |s: &ExpirySchedule| s.grace_periods_ended_by(far).collect::<Vec<_>>();
        assert_eq!(expiries(&asked), expiries(&first_asked_now), "expiries after event {}", n + 1);
        assert_eq!(grace_ends(&asked), grace_ends(&first_asked_now), "grace periods after event {}", n + 1);
    }
    assert_eq!(asked.due_by(far).map(|(_, key)| key).collect::<Vec<_>>(), vec![id(0x102), id(0x101)]);
    assert_eq!(asked.next_grace_period_end(), None);
}
