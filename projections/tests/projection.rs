//! Positioned row keys: `<position, 20 digits>/<id>`, so that string order is position order.

use keyledger_projections::projection::{positioned, split_positioned};

#[test]
fn positioned_pads_the_position_to_twenty_digits() {
    assert_eq!(positioned(7, "abc"), "00000000000000000007/abc");
    assert_eq!(positioned(0, "x"), "00000000000000000000/x");
    assert_eq!(positioned(u64::MAX, "x"), "18446744073709551615/x", "the largest position still fits");
}

#[test]
fn positioned_keys_sort_by_position_whatever_the_ids() {
    let positions = [1, 9, 10, 11, 99, 100, 1_000_000, u64::MAX / 2, u64::MAX];
    let ids = ["zzz", "yy", "x", "m/n", "a", "0", "", "zz/zz", "b"];
    let keys: Vec<String> = positions.iter().zip(ids).map(|(p, id)| positioned(*p, id)).collect();

    let mut sorted = keys.clone();
    sorted.sort();

    assert_eq!(sorted, keys);
}

#[test]
fn split_positioned_gives_back_the_position_and_the_whole_id() {
    assert_eq!(split_positioned(&positioned(42, "abc")), Some((42, "abc")));
    assert_eq!(split_positioned(&positioned(u64::MAX, "abc")), Some((u64::MAX, "abc")));
    assert_eq!(split_positioned(&positioned(3, "org/personal/7/laptop")), Some((3, "org/personal/7/laptop")));
    assert_eq!(split_positioned(&positioned(3, "")), Some((3, "")));
}

#[test]
fn split_positioned_refuses_keys_without_a_numeric_position() {
    assert_eq!(split_positioned("garbage"), None, "no separator");
    assert_eq!(split_positioned("soon/abc"), None);
    assert_eq!(split_positioned("/abc"), None, "an empty position");
    assert_eq!(split_positioned("-1/abc"), None);
    assert_eq!(split_positioned("18446744073709551616/abc"), None, "beyond u64");
    assert_eq!(split_positioned("00000000-0000-0000-0000-0000000000a0/team/x"), None, "an unpositioned name key");
}
