//! Expiry schedule: given keys created, then which keys are due to expire, in time order.

mod support;

use chrono::{DateTime, Duration, Utc};
use keyledger_projections::event::ApiKeyCreated;
use keyledger_projections::expiry_schedule::ExpirySchedule;
use keyledger_projections::Projection;
use support::*;
use uuid::Uuid;

fn expiring(key: u128, at: DateTime<Utc>) -> keyledger_projections::Event {
    created(ApiKeyCreated { expires_at: at, ..personal_key(org_a(), id(key), 1, &format!("key {key}")) })
}

#[test]
fn an_empty_schedule_has_nothing_next_and_nothing_due() {
    let schedule = ExpirySchedule::default();

    assert_eq!(schedule.next(), None);
    assert_eq!(schedule.due_by(day(9999, 1, 1)).count(), 0);
}

#[test]
fn next_is_the_earliest_expiry_whatever_the_creation_order() {
    let schedule: ExpirySchedule = fold([
        expiring(0x100, day(2026, 1, 1)),
        expiring(0x101, day(2025, 3, 1)),
        expiring(0x102, day(2025, 6, 30)),
    ]);

    assert_eq!(schedule.next(), Some((day(2025, 3, 1), id(0x101))));
}

#[test]
fn due_by_lists_keys_expiring_at_or_before_now_earliest_first() {
    let schedule: ExpirySchedule = fold([
        expiring(0x100, day(2026, 1, 1)),
        expiring(0x101, day(2025, 6, 30)),
        expiring(0x102, day(2025, 3, 1)),
    ]);

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

    let touched = touched_by(&mut schedule, 1, expiring(0x100, at));

    assert_eq!(touched, vec![format!("{:020}/{}", at.timestamp_micros(), id(0x100))]);
    assert_eq!(schedule.row_keys(), touched);
}

#[test]
fn other_events_touch_nothing() {
    let mut schedule = ExpirySchedule::default();

    let touched = touched_per_event(
        &mut schedule,
        [
            organization_created(org_a(), "acme"),
            account_created(team_account(org_a(), id(0x200), id(0x102), id(0x5))),
        ],
    );

    assert!(touched.iter().all(Vec::is_empty), "{touched:?}");
    assert_eq!(schedule.next(), None);
}

#[test]
fn row_keys_sort_lexicographically_in_time_order() {
    // Times whose microsecond counts have different numbers of digits, created out of order.
    let times = [
        (0x100, day(2286, 11, 21)),
        (0x101, DateTime::from_timestamp(1, 0).unwrap()),
        (0x102, day(2025, 6, 30) + Duration::microseconds(1)),
        (0x103, day(9999, 12, 31)),
        (0x104, DateTime::from_timestamp(999, 999_999_000).unwrap()),
        (0x105, day(2001, 9, 9)),
        (0x106, day(2025, 6, 30)),
    ];
    let schedule: ExpirySchedule = fold(times.iter().map(|&(key, at)| expiring(key, at)));

    let keys = schedule.row_keys();
    let mut lexicographic = keys.clone();
    lexicographic.sort();
    assert_eq!(keys, lexicographic, "row_keys are in key order");

    let mut by_time = times.to_vec();
    by_time.sort_by_key(|&(key, at)| (at, id(key)));
    let expected: Vec<String> =
        by_time.iter().map(|&(key, at)| format!("{:020}/{}", at.timestamp_micros(), id(key))).collect();
    assert_eq!(keys, expected, "key order is time order");
}

#[test]
fn row_keys_of_the_same_moment_sort_by_key_id() {
    let schedule: ExpirySchedule = fold([
        expiring(0xff, day(2025, 6, 30)),
        expiring(0x1_0000_0000_0000_0000, day(2025, 6, 30)),
        expiring(0x1, day(2025, 6, 30)),
    ]);

    let keys = schedule.row_keys();
    let mut lexicographic = keys.clone();
    lexicographic.sort();
    assert_eq!(keys, lexicographic);
    let due: Vec<String> = schedule.due_by(day(2025, 6, 30)).map(|(_, key)| key.to_string()).collect();
    let ids_in_keys: Vec<String> = keys.iter().map(|k| k.split_once('/').unwrap().1.to_owned()).collect();
    assert_eq!(ids_in_keys, due, "stored order is due order");
}

#[test]
fn encode_row_exists_only_for_a_scheduled_entry() {
    let mut schedule = ExpirySchedule::default();
    let touched = touched_by(&mut schedule, 1, expiring(0x100, day(2025, 6, 30)));

    assert!(schedule.encode_row(&touched[0]).is_some());
    assert!(schedule.encode_row(&format!("{:020}/{}", day(2025, 7, 1).timestamp_micros(), id(0x100))).is_none());
    assert!(schedule.encode_row(&format!("{:020}/{}", day(2025, 6, 30).timestamp_micros(), id(0x101))).is_none());
    assert!(schedule.encode_row("garbage").is_none());
}

#[test]
fn rows_load_back_into_an_equal_schedule() {
    let schedule: ExpirySchedule = fold(a_busy_history());
    assert_eq!(schedule.row_keys().len(), 6);

    assert_eq!(round_trip_all_rows(&schedule), schedule);
}

#[test]
fn touched_rows_alone_rebuild_an_equal_schedule() {
    let (original, rebuilt) = round_trip_touched::<ExpirySchedule>(a_busy_history());

    assert_eq!(rebuilt, original);
    assert_eq!(rebuilt.next(), Some((day(2025, 3, 1), id(0x105))));
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

    for key in ["garbage", "12/not-a-uuid", &format!("soon/{}", id(0x100))] {
        let err = schedule.load_row(key, b"").unwrap_err();
        assert_eq!(err.projection, "expiry_schedule", "{key}");
        assert_eq!(err.key, key);
        assert!(err.to_string().contains("expiry_schedule"), "{err}");
    }
    assert_eq!(schedule, ExpirySchedule::default());
}
