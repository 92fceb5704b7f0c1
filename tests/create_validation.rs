//! API.md "Create": validation of name, expires_at, description, the document's shape, and
//! that every problem of a request is reported together.

mod common;

use chrono::{Duration, FixedOffset, SubsecRound, Utc};
use common::fixtures::{GLOBEX_TEAM, PLATFORM_TEAM, SECURITY_TEAM};
use common::http::{create, create_ok, five_years_from_now, in_days, post_raw, rfc3339, show, Resp};
use common::jsonapi::{assert_error_doc, assert_invalid, assert_invalid_at, assert_timestamp, pointers, problems, titles};
use common::server::World;
use serde_json::{json, Value};

fn personal(name: Value) -> Value {
    json!({"name": name, "kind": "personal", "expires_at": in_days(30)})
}

fn with_expiry(name: &str, expires_at: Value) -> Value {
    json!({"name": name, "kind": "personal", "expires_at": expires_at})
}

#[tokio::test]
async fn a_blank_name_is_422() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    for name in [json!(""), json!("   "), json!("\t \n"), Value::Null] {
        let refused = create(s, &alice, personal(name.clone())).await;
        assert_invalid(&refused, "Name can't be blank", "/data/attributes/name");
    }
    let missing = create(s, &alice, json!({"kind": "personal", "expires_at": in_days(30)})).await;
    assert_invalid(&missing, "Name can't be blank", "/data/attributes/name");
}

#[tokio::test]
async fn a_value_of_the_wrong_json_type_is_one_problem_reported_once() {
    // API.md "Errors": one entry per problem. A number where a string belongs is one problem
    // ("... must be a string"); the attribute was given, so it is not also "blank".
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let base = json!({"name": "k", "kind": "personal", "expires_at": in_days(30)});
    let mut failures = Vec::new();
    for (attribute, value) in [
        ("name", json!(42)),
        ("name", json!(["a"])),
        ("kind", json!(1)),
        ("expires_at", json!(1893456000)),
        ("expires_at", json!({"at": "2030-01-01T00:00:00Z"})),
        ("description", json!(true)),
    ] {
        let mut attributes = base.clone();
        attributes[attribute] = value.clone();
        let refused = create(s, &alice, attributes).await;
        assert_error_doc(&refused, 422);
        if pointers(&refused.json) != vec![format!("/data/attributes/{attribute}")] {
            failures.push(format!("{attribute} = {value}: expected exactly one problem, got {}", refused.text));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_name_is_trimmed_and_at_most_255_characters() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let max = "n".repeat(255);
    let created = create_ok(s, &alice, personal(json!(format!("   {max}  \t")))).await;
    assert_eq!(created.attrs()["name"], Value::String(max.clone()), "surrounding whitespace is trimmed");

    let too_long = create(s, &alice, personal(json!(format!("  {}  ", "m".repeat(256))))).await;
    assert_invalid(&too_long, "Name is too long (maximum is 255 characters)", "/data/attributes/name");

    // Characters, not bytes: 255 two-byte characters are fine, 256 are not.
    let accented = "é".repeat(255);
    let created = create_ok(s, &alice, personal(json!(accented))).await;
    assert_eq!(created.attrs()["name"], Value::String(accented));
    let too_long = create(s, &alice, personal(json!("é".repeat(256)))).await;
    assert_invalid(&too_long, "Name is too long (maximum is 255 characters)", "/data/attributes/name");

    let created = create_ok(s, &alice, personal(json!("  spaced out  "))).await;
    assert_eq!(created.attrs()["name"], "spaced out");
}

#[tokio::test]
async fn names_are_unique_per_kind_and_scope_ignoring_case_and_surrounding_space() {
    let world = World::start();
    let s = &world.server;
    let (alice, bob, carol, dave, hank) =
        (world.token("alice"), world.token("bob"), world.token("carol"), world.token("dave"), world.token("hank"));
    let taken = |resp: &Resp| assert_invalid(resp, "Name has already been taken", "/data/attributes/name");

    // Personal: scope is the user.
    create_ok(s, &alice, personal(json!("Deploy Bot"))).await;
    for variant in ["Deploy Bot", "deploy bot", "DEPLOY BOT", "  deploy bot  ", "\tDeploy Bot\n"] {
        taken(&create(s, &alice, personal(json!(variant))).await);
    }
    create_ok(s, &dave, personal(json!("deploy bot"))).await; // another user
    create_ok(s, &hank, personal(json!("Deploy Bot"))).await; // another organization
    create_ok(s, &alice, personal(json!("Deploy Bots"))).await; // another name

    // Team: scope is the team, whoever creates.
    let team = |name: &str, group: &str| json!({"name": name, "kind": "team", "group_id": group, "expires_at": in_days(30)});
    create_ok(s, &carol, team("Deploy Bot", PLATFORM_TEAM)).await; // another kind than alice's personal one
    taken(&create(s, &alice, team(" DEPLOY BOT ", PLATFORM_TEAM)).await);
    taken(&create(s, &carol, team("deploy bot", "platform")).await);
    create_ok(s, &bob, team("deploy bot", SECURITY_TEAM)).await; // another team
    create_ok(s, &hank, team("Deploy Bot", GLOBEX_TEAM)).await; // another organization

    // Organization: scope is the organization, whoever creates.
    let org = |name: &str| json!({"name": name, "kind": "organization", "expires_at": in_days(30)});
    create_ok(s, &alice, org("Deploy Bot")).await;
    taken(&create(s, &bob, org("deploy BOT ")).await);
    taken(&create(s, &alice, org("Deploy Bot")).await);
    create_ok(s, &hank, org("deploy bot")).await; // another organization
    taken(&create(s, &hank, org("DEPLOY BOT")).await);
}

#[tokio::test]
async fn concurrent_creates_of_one_name_yield_exactly_one_key() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let attempts = (0..16).map(|i| {
        let name = if i % 2 == 0 { "Race" } else { " race " };
        create(s, &alice, personal(json!(name)))
    });
    let answers = futures_join_all(attempts).await;
    let created = answers.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "exactly one of the racing creates may win: {:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    for refused in answers.iter().filter(|r| r.status != 201) {
        assert_invalid(refused, "Name has already been taken", "/data/attributes/name");
    }
}

/// Runs the futures concurrently on this task (no extra dependency needed).
async fn futures_join_all<F: std::future::Future<Output = Resp>>(futures: impl Iterator<Item = F>) -> Vec<Resp> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut results: Vec<Option<Resp>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, handle) in results.iter_mut().zip(handles.iter_mut()) {
            if let Some(future) = handle {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(resp) => {
                        *slot = Some(resp);
                        *handle = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn expires_at_is_required_and_must_be_a_date_time() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let missing = create(s, &alice, json!({"name": "k", "kind": "personal"})).await;
    assert_invalid(&missing, "Expires at can't be blank", "/data/attributes/expires_at");
    let null = create(s, &alice, with_expiry("k", Value::Null)).await;
    assert_invalid(&null, "Expires at can't be blank", "/data/attributes/expires_at");
    for bad in [
        "",
        "tomorrow",
        "2030-01-01",
        "2030-13-01T00:00:00Z",
        "2030-02-30T00:00:00Z",
        "2030-01-01T25:00:00Z",
        "2030-01-01 00:00:00",
        "1893456000",
    ] {
        let refused = create(s, &alice, with_expiry("k", json!(bad))).await;
        assert_invalid(&refused, "Expires at is not a valid date-time", "/data/attributes/expires_at");
    }
}

#[tokio::test]
async fn expires_at_must_be_in_the_future_and_within_five_calendar_years() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let past = |resp: &Resp| assert_invalid(resp, "Expires at must be in the future", "/data/attributes/expires_at");
    let far = |resp: &Resp| assert_invalid(resp, "Expires at must be within 5 years", "/data/attributes/expires_at");

    past(&create(s, &alice, with_expiry("k", json!("2020-01-01T00:00:00Z"))).await);
    past(&create(s, &alice, with_expiry("k", json!(rfc3339(Utc::now() - Duration::seconds(2))))).await);
    past(&create(s, &alice, with_expiry("k", json!(rfc3339(Utc::now() - Duration::days(1))))).await);

    let almost = five_years_from_now() - Duration::minutes(1);
    let created = create_ok(s, &alice, with_expiry("five years", json!(rfc3339(almost)))).await;
    assert_eq!(created.attrs()["expires_at"], Value::String(rfc3339(almost)));

    far(&create(s, &alice, with_expiry("k", json!(rfc3339(five_years_from_now() + Duration::days(1))))).await);
    far(&create(s, &alice, with_expiry("k", json!(rfc3339(five_years_from_now() + Duration::minutes(5))))).await);
    far(&create(s, &alice, with_expiry("k", json!("9999-12-31T23:59:59Z"))).await);

    // A minute from now is in the future.
    create_ok(s, &alice, with_expiry("soon", json!(rfc3339(Utc::now() + Duration::minutes(1))))).await;
}

#[tokio::test]
async fn expires_at_accepts_offsets_and_fractions_and_answers_in_utc() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let at = (Utc::now() + Duration::days(30)).trunc_subsecs(0);
    let plus_two = FixedOffset::east_opt(2 * 3600).unwrap();
    let minus_five = FixedOffset::west_opt(5 * 3600 + 30 * 60).unwrap();

    let offset = at.with_timezone(&plus_two).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    assert!(offset.ends_with("+02:00"), "{offset}");
    let created = create_ok(s, &alice, with_expiry("offset", json!(offset))).await;
    assert_eq!(created.attrs()["expires_at"], Value::String(rfc3339(at)), "answered as the same instant in UTC with Z");

    let offset = at.with_timezone(&minus_five).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let created = create_ok(s, &alice, with_expiry("negative offset", json!(offset))).await;
    assert_eq!(created.attrs()["expires_at"], Value::String(rfc3339(at)));

    // Fractions: kept up to microseconds, never more than 6 digits.
    let micros = at + Duration::microseconds(123_456);
    let text = micros.with_timezone(&plus_two).to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let created = create_ok(s, &alice, with_expiry("micros", json!(text))).await;
    let answered = assert_timestamp("expires_at", &created.attrs()["expires_at"]);
    assert_eq!(answered, micros, "{text} must keep its microseconds");

    let nanos = at.with_timezone(&plus_two).to_rfc3339_opts(chrono::SecondsFormat::Secs, false).replace("+02:00", ".123456789+02:00");
    let created = create_ok(s, &alice, with_expiry("nanos", json!(nanos))).await;
    let answered = assert_timestamp("expires_at", &created.attrs()["expires_at"]);
    let offset_from_at = answered - at;
    assert!(
        offset_from_at >= Duration::microseconds(123_456) && offset_from_at <= Duration::microseconds(123_457),
        "{nanos} answered as {answered}"
    );

    let shown = show(s, &alice, &created.id()).await;
    assert_eq!(shown.attrs()["expires_at"], created.attrs()["expires_at"]);

    // Lower-case separators are RFC 3339 too; a `Z` at the end is the common case.
    let lower = rfc3339(at + Duration::seconds(1)).replace('T', "t").replace('Z', "z");
    let created = create_ok(s, &alice, with_expiry("lower case", json!(lower))).await;
    assert_eq!(created.attrs()["expires_at"], Value::String(rfc3339(at + Duration::seconds(1))));
}

#[tokio::test]
async fn description_is_optional_nullable_and_at_most_1000_characters() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let with_description = |name: &str, d: Value| json!({"name": name, "kind": "personal", "expires_at": in_days(30), "description": d});

    let created = create_ok(s, &alice, with_description("null", Value::Null)).await;
    assert_eq!(created.attrs()["description"], Value::Null);
    let created = create_ok(s, &alice, personal(json!("absent"))).await;
    assert_eq!(created.attrs()["description"], Value::Null);
    let max = "d".repeat(1000);
    let created = create_ok(s, &alice, with_description("max", json!(max))).await;
    assert_eq!(created.attrs()["description"], Value::String(max));
    let created = create_ok(s, &alice, with_description("max wide", json!("ü".repeat(1000)))).await;
    assert_eq!(created.attrs()["description"], Value::String("ü".repeat(1000)));
    let created = create_ok(s, &alice, with_description("empty", json!(""))).await;
    assert!(created.attrs()["description"].is_null() || created.attrs()["description"] == "");

    let refused = create(s, &alice, with_description("long", json!("d".repeat(1001)))).await;
    assert_invalid(&refused, "Description is too long (maximum is 1000 characters)", "/data/attributes/description");
    let refused = create(s, &alice, with_description("long wide", json!("ü".repeat(1001)))).await;
    assert_invalid(&refused, "Description is too long (maximum is 1000 characters)", "/data/attributes/description");
}

#[tokio::test]
async fn kind_must_be_one_of_the_three() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    for kind in [json!("superuser"), json!("Personal"), json!(""), Value::Null] {
        let refused = create(s, &alice, json!({"name": "k", "kind": kind, "expires_at": in_days(30)})).await;
        assert_invalid_at(&refused, "/data/attributes/kind");
    }
    let refused = create(s, &alice, json!({"name": "k", "expires_at": in_days(30)})).await;
    assert_invalid_at(&refused, "/data/attributes/kind");
}

#[tokio::test]
async fn unknown_attributes_are_422_each_pointing_at_itself() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    for attribute in ["foo", "token", "user_id", "created_at", "last_used_at", "Name"] {
        let mut attributes = personal(json!("k"));
        attributes[attribute] = json!("x");
        let refused = create(s, &alice, attributes).await;
        assert_invalid_at(&refused, &format!("/data/attributes/{attribute}"));
    }
    // JSON pointer escaping (RFC 6901): `/` is `~1`, `~` is `~0`.
    let mut attributes = personal(json!("k"));
    attributes["a/b~c"] = json!(1);
    let refused = create(s, &alice, attributes).await;
    assert_invalid_at(&refused, "/data/attributes/a~1b~0c");
    // Two unknown attributes: two problems.
    let mut attributes = personal(json!("k"));
    attributes["foo"] = json!(1);
    attributes["bar"] = json!(2);
    let refused = create(s, &alice, attributes).await;
    assert_error_doc(&refused, 422);
    let mut found = pointers(&refused.json);
    found.sort();
    assert_eq!(found, vec!["/data/attributes/bar", "/data/attributes/foo"]);
    // None of those created the key.
    create_ok(s, &alice, personal(json!("k"))).await;
}

#[tokio::test]
async fn a_wrong_type_or_missing_data_is_422() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let attributes = personal(json!("k"));
    for doc in [
        json!({"data": {"type": "keys", "attributes": attributes}}),
        json!({"data": {"type": "API_KEYS", "attributes": attributes}}),
        json!({"data": {"attributes": attributes}}),
        json!({"data": {"type": null, "attributes": attributes}}),
    ] {
        let refused = post_raw(s, &alice, doc.to_string().into_bytes()).await;
        assert_invalid_at(&refused, "/data/type");
    }
    for doc in [
        json!({}),
        json!({"data": null}),
        json!({"data": []}),
        json!({"data": "x"}),
        json!([]),
        json!("api_keys"),
        json!({"attributes": attributes}),
    ] {
        let refused = post_raw(s, &alice, doc.to_string().into_bytes()).await;
        assert_error_doc(&refused, 422);
        // The missing required attributes may be reported alongside; `/data` must be.
        assert!(pointers(&refused.json).contains(&"/data".to_owned()), "{doc}: {}", refused.text);
        assert!(titles(&refused.json).contains(&"Data can't be blank".to_owned()), "{doc}: {}", refused.text);
    }
    // No attributes at all: 422 too (at least the required ones are missing).
    let refused = post_raw(s, &alice, json!({"data": {"type": "api_keys"}}).to_string().into_bytes()).await;
    assert_error_doc(&refused, 422);
    create_ok(s, &alice, attributes).await;
}

#[tokio::test]
async fn every_problem_of_a_request_is_reported_together() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");

    let refused = create(s, &alice, json!({"name": "  ", "kind": "personal", "expires_at": "not a date", "foo": "bar"})).await;
    assert_error_doc(&refused, 422);
    let mut found = problems(&refused);
    found.sort();
    assert_eq!(
        found,
        vec![
            ("Expires at is not a valid date-time".to_owned(), "/data/attributes/expires_at".to_owned()),
            ("Name can't be blank".to_owned(), "/data/attributes/name".to_owned()),
            ("Unknown attribute foo".to_owned(), "/data/attributes/foo".to_owned()),
        ],
        "{}",
        refused.text
    );

    // Six at once, across the document.
    let doc = json!({"data": {"type": "keys", "attributes": {
        "name": "x".repeat(300),
        "kind": "personal",
        "expires_at": "2001-01-01T00:00:00Z",
        "description": "d".repeat(1001),
        "role_id": "admin",
        "group_id": PLATFORM_TEAM,
    }}});
    let refused = post_raw(s, &alice, doc.to_string().into_bytes()).await;
    assert_error_doc(&refused, 422);
    let mut found = pointers(&refused.json);
    found.sort();
    assert_eq!(
        found,
        vec![
            "/data/attributes/description",
            "/data/attributes/expires_at",
            "/data/attributes/group_id",
            "/data/attributes/name",
            "/data/attributes/role_id",
            "/data/type",
        ],
        "{}",
        refused.text
    );

    // A taken name is reported alongside the other problems.
    create_ok(s, &alice, personal(json!("taken"))).await;
    let refused = create(s, &alice, json!({"name": "TAKEN", "kind": "personal", "expires_at": "2001-01-01T00:00:00Z"})).await;
    assert_error_doc(&refused, 422);
    let mut found = problems(&refused);
    found.sort();
    assert_eq!(
        found,
        vec![
            ("Expires at must be in the future".to_owned(), "/data/attributes/expires_at".to_owned()),
            ("Name has already been taken".to_owned(), "/data/attributes/name".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_refused_create_claims_nothing() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let refused = create(s, &alice, with_expiry("claimed?", json!("2001-01-01T00:00:00Z"))).await;
    assert_error_doc(&refused, 422);
    create_ok(s, &alice, personal(json!("claimed?"))).await;
}
