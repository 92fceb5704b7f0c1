//! Token index: given keys created, then which key a token digest belongs to.

mod support;

use keyledger_projections::event::ApiKeyCreated;
use keyledger_projections::projection::{positioned, split_positioned};
use keyledger_projections::token_index::TokenIndex;
use keyledger_projections::{Event, Projection};
use support::*;

fn key_with_token(key: u128, token: &str) -> ApiKeyCreated {
    ApiKeyCreated { token_digest: digest_of(token), ..personal_key(org_a(), id(key), 1, &format!("key {key}")) }
}

#[test]
fn created_keys_digest_leads_to_the_key() {
    let index: TokenIndex = fold([created(key_with_token(0x100, "rootly_secret"))]);

    assert_eq!(index.key_for(&digest_hash("rootly_secret")), Some(id(0x100)));
}

#[test]
fn an_unknown_digest_leads_nowhere() {
    let index: TokenIndex = fold([created(key_with_token(0x100, "rootly_secret"))]);

    assert_eq!(index.key_for(&digest_hash("rootly_other")), None);
    assert_eq!(TokenIndex::default().key_for(&digest_hash("rootly_secret")), None);
}

#[test]
fn each_key_is_found_by_its_own_digest() {
    let index: TokenIndex = fold([
        created(key_with_token(0x100, "rootly_one")),
        created(key_with_token(0x101, "rootly_two")),
        created(ApiKeyCreated { token_digest: digest_of("rootly_three"), ..organization_key(org_b(), id(0x102), id(0x200), "Terraform") }),
    ]);

    assert_eq!(index.key_for(&digest_hash("rootly_one")), Some(id(0x100)));
    assert_eq!(index.key_for(&digest_hash("rootly_two")), Some(id(0x101)));
    assert_eq!(index.key_for(&digest_hash("rootly_three")), Some(id(0x102)));
}

#[test]
fn api_key_created_touches_exactly_its_digest_row() {
    let mut index = TokenIndex::default();

    let touched = touched_by(&mut index, 3, created(key_with_token(0x100, "rootly_secret")));

    assert_eq!(touched, vec![positioned(3, &digest_of("rootly_secret"))]);
    assert_eq!(touched, vec![format!("00000000000000000003/{}", digest_of("rootly_secret"))]);
    assert_eq!(index.row_keys(), touched, "the touched key is the key the row is listed under");
}

#[test]
fn the_row_key_holds_the_lowercase_hex_of_an_uppercase_recorded_digest() {
    let mut index = TokenIndex::default();
    let event = ApiKeyCreated { token_digest: digest_of("rootly_secret").to_uppercase(), ..key_with_token(0x100, "rootly_secret") };

    let touched = touched_by(&mut index, 1, created(event));

    assert_eq!(touched, vec![positioned(1, &digest_of("rootly_secret"))]);
    assert_eq!(index.key_for(&digest_hash("rootly_secret")), Some(id(0x100)));
}

#[test]
fn other_events_touch_nothing() {
    let mut index = TokenIndex::default();

    let touched = touched_per_event(
        &mut index,
        [
            organization_created(org_a(), "acme"),
            user_joined(org_a(), 1, "ada@acme.test", id(0x1), None),
            account_created(organization_account(org_a(), id(0x200), id(0x100), id(0x1), None)),
        ],
    );

    assert!(touched.iter().all(Vec::is_empty), "{touched:?}");
    assert_eq!(index, TokenIndex::default());
}

#[test]
fn row_keys_are_positioned_lowercase_hex_digests_sorted_by_position() {
    let index: TokenIndex = fold(a_busy_history());

    let keys = index.row_keys();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 7, "six keys, one of them with a previous token in its grace period");
    let split: Vec<(u64, &str)> = keys.iter().map(|k| split_positioned(k).expect("positioned")).collect();
    assert_eq!(split.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![22, 23, 27, 30, 31, 32, 34], "rotated tokens sit at their rotation");
    assert!(split.iter().all(|(_, hex)| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())));
}

#[test]
fn row_keys_sort_by_position_not_by_digest() {
    let mut tokens: Vec<String> = (0..12).map(|n| format!("rootly_{n}")).collect();
    // Create the keys in descending digest order, so that digest order and position order differ.
    tokens.sort_by_key(|t| std::cmp::Reverse(digest_of(t)));
    let index: TokenIndex = fold(tokens.iter().enumerate().map(|(n, t)| created(key_with_token(0x100 + n as u128, t))));

    let expected: Vec<String> = tokens.iter().enumerate().map(|(n, t)| positioned(n as u64 + 1, &digest_of(t))).collect();
    assert_eq!(index.row_keys(), expected, "positions 1..=12 in order, across the 9 → 10 digit change");
}

#[test]
fn encode_row_is_the_key_id_and_none_for_an_unknown_digest() {
    let index: TokenIndex = fold([created(key_with_token(0x100, "rootly_secret"))]);

    assert_eq!(index.encode_row(&positioned(1, &digest_of("rootly_secret"))), Some(id(0x100).to_string().into_bytes()));
    assert_eq!(index.encode_row(&positioned(1, &digest_of("rootly_other"))), None);
    assert_eq!(index.encode_row(&positioned(1, "not hex")), None);
    assert_eq!(index.encode_row("not hex"), None);
}

#[test]
fn encode_row_is_none_for_another_position_or_an_unpositioned_digest() {
    let index: TokenIndex = fold([created(key_with_token(0x100, "rootly_secret"))]);

    assert_eq!(index.encode_row(&positioned(2, &digest_of("rootly_secret"))), None);
    assert_eq!(index.encode_row(&digest_of("rootly_secret")), None, "the old, unpositioned key");
}

#[test]
fn unload_row_removes_the_digest() {
    let mut index: TokenIndex = fold([created(key_with_token(0x100, "rootly_one")), created(key_with_token(0x101, "rootly_two"))]);

    index.unload_row(&positioned(1, &digest_of("rootly_one")));

    assert_eq!(index.key_for(&digest_hash("rootly_one")), None);
    assert_eq!(index.key_for(&digest_hash("rootly_two")), Some(id(0x101)), "other digests stay");
    assert_eq!(index.row_keys(), vec![positioned(2, &digest_of("rootly_two"))]);
}

#[test]
fn unload_row_of_a_stale_position_leaves_the_newer_entry() {
    // One digest introduced twice (the service never does this): the later position holds it.
    let mut index: TokenIndex = fold([created(key_with_token(0x100, "rootly_same")), created(key_with_token(0x101, "rootly_same"))]);
    assert_eq!(index.row_keys(), vec![positioned(2, &digest_of("rootly_same"))]);
    assert_eq!(index.encode_row(&positioned(1, &digest_of("rootly_same"))), None, "the earlier row is gone");
    let before = index.clone();

    index.unload_row(&positioned(1, &digest_of("rootly_same")));
    index.unload_row(&positioned(3, &digest_of("rootly_same")));

    assert_eq!(index, before);
    assert_eq!(index.key_for(&digest_hash("rootly_same")), Some(id(0x101)));
}

#[test]
fn unload_row_of_an_unknown_digest_or_a_malformed_key_changes_nothing() {
    let mut index: TokenIndex = fold([created(key_with_token(0x100, "rootly_secret"))]);
    let before = index.clone();

    index.unload_row(&positioned(1, &digest_of("rootly_other")));
    index.unload_row(&digest_of("rootly_secret"));
    index.unload_row(&positioned(1, "not hex"));
    index.unload_row("garbage");

    assert_eq!(index, before);
}

#[test]
fn rows_load_back_into_an_equal_token_index() {
    let index: TokenIndex = fold(a_busy_history());

    assert_eq!(round_trip_all_rows(&index), index);
}

#[test]
fn touched_rows_alone_rebuild_an_equal_token_index() {
    let (original, rebuilt) = round_trip_touched::<TokenIndex>(a_busy_history());

    assert_eq!(rebuilt, original);
    assert_eq!(rebuilt.key_for(&digest_hash("token-100-b")), Some(id(0x100)), "in its grace period");
    assert_eq!(rebuilt.key_for(&digest_hash(&format!("token-{}", id(0x100)))), None, "retired by the second rotation");
}

#[test]
fn garbage_value_is_an_error_naming_the_token_index() {
    let mut index = TokenIndex::default();
    let key = positioned(1, &digest_of("rootly_secret"));

    let err = index.load_row(&key, b"\xff\xfe not a uuid").unwrap_err();

    assert_eq!(err.projection, "token_index");
    assert_eq!(err.key, key);
    assert!(err.to_string().contains("token_index"), "{err}");
    assert_eq!(index, TokenIndex::default());
}

#[test]
fn garbage_key_is_an_error_naming_the_token_index() {
    let mut index = TokenIndex::default();

    for key in ["not a digest".to_owned(), positioned(1, "not a digest"), digest_of("rootly_secret")] {
        let err = index.load_row(&key, id(0x100).to_string().as_bytes()).unwrap_err();

        assert_eq!(err.projection, "token_index", "{key}");
        assert_eq!(err.key, key);
    }
    assert_eq!(index, TokenIndex::default());
}

fn token_of(key: u128) -> String {
    format!("token-{}", id(key))
}

fn a_key(key: u128) -> Event {
    created(personal_key(org_a(), id(key), 1, "laptop"))
}

#[test]
fn a_rotation_with_grace_keeps_both_tokens_of_the_key() {
    let index: TokenIndex = fold([a_key(0x100), rotated(org_a(), id(0x100), &token_of(0x100), "new", Some(day(2026, 1, 1)), None)]);

    assert_eq!(index.key_for(&digest_hash("new")), Some(id(0x100)));
    assert_eq!(index.key_for(&digest_hash(&token_of(0x100))), Some(id(0x100)));
}

#[test]
fn a_rotation_without_grace_forgets_the_previous_token_at_once() {
    let index: TokenIndex = fold([a_key(0x100), rotated(org_a(), id(0x100), &token_of(0x100), "new", None, None)]);

    assert_eq!(index.key_for(&digest_hash("new")), Some(id(0x100)));
    assert_eq!(index.key_for(&digest_hash(&token_of(0x100))), None);
}

#[test]
fn a_second_rotation_retires_the_oldest_token_and_keeps_the_previous_one() {
    let index: TokenIndex = fold([
        a_key(0x100),
        rotated(org_a(), id(0x100), &token_of(0x100), "second", Some(day(2026, 1, 1)), None),
        rotated(org_a(), id(0x100), "second", "third", Some(day(2026, 1, 2)), Some(&token_of(0x100))),
    ]);

    assert_eq!(index.key_for(&digest_hash(&token_of(0x100))), None);
    assert_eq!(index.key_for(&digest_hash("second")), Some(id(0x100)));
    assert_eq!(index.key_for(&digest_hash("third")), Some(id(0x100)));
}

#[test]
fn the_end_of_a_grace_period_forgets_the_previous_token() {
    let index: TokenIndex = fold([
        a_key(0x100),
        rotated(org_a(), id(0x100), &token_of(0x100), "new", Some(day(2026, 1, 1)), None),
        grace_period_ended(org_a(), id(0x100), &token_of(0x100), day(2026, 1, 1)),
    ]);

    assert_eq!(index.key_for(&digest_hash(&token_of(0x100))), None);
    assert_eq!(index.key_for(&digest_hash("new")), Some(id(0x100)));
}

#[test]
fn revoking_a_key_in_its_grace_period_forgets_both_tokens() {
    let mut revoked = revocation_of(personal_key(org_a(), id(0x100), 1, "laptop"));
    revoked.token_digest = digest_of("new");
    let index: TokenIndex = fold([
        a_key(0x100),
        rotated(org_a(), id(0x100), &token_of(0x100), "new", Some(day(2026, 1, 1)), None),
        Event::ApiKeyRevoked(revoked),
    ]);

    assert_eq!(index, TokenIndex::default());
}

#[test]
fn which_token_is_the_previous_one_survives_the_row_round_trip() {
    let (original, rebuilt) =
        round_trip_touched::<TokenIndex>([a_key(0x100), rotated(org_a(), id(0x100), &token_of(0x100), "new", Some(day(2026, 1, 1)), None)]);
    assert_eq!(rebuilt, original);
    let mut revoked = revocation_of(personal_key(org_a(), id(0x100), 1, "laptop"));
    revoked.token_digest = digest_of("new");
    let mut rebuilt = rebuilt;
    rebuilt.apply(&recorded(9, Event::ApiKeyRevoked(revoked)), &mut Vec::new());
    assert_eq!(rebuilt, TokenIndex::default(), "a reloaded index still knows the previous token to forget");
}
