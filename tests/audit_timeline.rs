//! `keyledger audit log` and `keyledger audit state` against a real data directory: Acme and
//! Globex with a personal key for every user (by the operator), a team key and a personal key
//! carol creates over HTTP, and a short-lived key for dave.

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, SecondsFormat, SubsecRound, Utc};
use common::fixtures::PLATFORM_TEAM;
use common::http::{create, in_days, Resp};
use common::ledger::{damage_event, open_stopped};
use common::server::{cli, cli_ok, copy_of, DataDir, Server, Template};
use common::store::sled_only;
use serde_json::{json, Value};

/// A copy of the ledger [`world`] builds, and everything the test knows about it.
struct World {
    data: DataDir,
    known: &'static Known,
}

/// What the test knows about the ledger [`world`] builds.
struct Known {
    /// Every token minted in it that the test saw.
    tokens: Vec<String>,
    /// Created by carol over HTTP, as a team admin of Platform.
    team_key: String,
    /// Created by carol over HTTP, for herself.
    laptop_key: String,
    /// Issued by the operator for dave, expiring `short_expires`.
    short_key: String,
    short_expires: DateTime<Utc>,
}

impl std::ops::Deref for World {
    type Target = Known;

    fn deref(&self) -> &Known {
        self.known
    }
}

/// Acme and Globex, two keys carol creates over HTTP and a short-lived one the operator
/// issues for dave: built once (the audit commands only read it) and copied for each test.
fn world() -> World {
    static TEMPLATE: OnceLock<Template<Known>> = OnceLock::new();
    let (data, known) = copy_of(&TEMPLATE, "audit-timeline", build_world);
    World { data, known }
}

fn build_world(data: &DataDir) -> Known {
    let logins = data.acme_and_globex();
    let mut tokens: Vec<String> = logins.values().cloned().collect();
    let carol = logins["carol@acme.test"].clone();

    let server = Server::start(data);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut create_key = |attributes: Value| {
        let Resp { status, json: body, .. } = runtime.block_on(create(&server, &carol, attributes));
        assert_eq!(status, 201, "{body}");
        tokens.push(body["data"]["attributes"]["token"].as_str().expect("a token").to_owned());
        body["data"]["id"].as_str().expect("an id").to_owned()
    };
    let team_key = create_key(json!({"name": "ci deploy", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(30)}));
    let laptop_key = create_key(json!({"name": "laptop", "kind": "personal", "expires_at": in_days(30)}));
    server.stop();

    let short_expires = (Utc::now() + Duration::hours(1)).trunc_subsecs(0);
    let expires_at = short_expires.to_rfc3339_opts(SecondsFormat::Secs, true);
    let token = cli_ok(&[
        "keys",
        "issue",
        "--data",
        data.arg(),
        "--org",
        "Acme",
        "--user",
        "dave@acme.test",
        "--name",
        "short lived",
        "--expires-at",
        &expires_at,
    ]);
    tokens.push(token);
    let log = cli_ok(&["audit", "log", "--format", "jsonl", "--data", data.arg()]);
    let short_key = log
        .lines()
        .rev()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}")))
        .find(|e| e["type"] == "ApiKeyCreated" && e["payload"]["name"] == "short lived")
        .and_then(|e| e["payload"]["api_key_id"].as_str().map(str::to_owned))
        .expect("the short-lived key is in the log");
    Known { tokens, team_key, laptop_key, short_key, short_expires }
}

impl World {
    fn audit(&self, command: &str, args: &[&str]) -> Output {
        let mut all = vec!["audit", command, "--data", self.data.arg()];
        all.extend_from_slice(args);
        cli(&all)
    }

    /// Stdout of a successful `audit <command>`, checked for tokens on the way.
    fn audit_ok(&self, command: &str, args: &[&str]) -> String {
        let out = self.audit(command, args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "audit {command} {args:?} failed: {stderr}");
        self.assert_no_token(&stdout, &format!("stdout of audit {command} {args:?}"));
        self.assert_no_token(&stderr, &format!("stderr of audit {command} {args:?}"));
        stdout
    }

    /// No token the test knows, nor its secret part alone, nor anything shaped like one.
    fn assert_no_token(&self, text: &str, what: &str) {
        assert!(!text.contains("rootly_"), "{what} holds something shaped like a token");
        for token in &self.tokens {
            let secret = token.trim_start_matches("rootly_");
            assert_eq!(secret.len(), 64, "{token} is a token");
            assert!(!text.contains(&secret[..32]), "{what} holds (part of) the token {token}");
        }
    }

    /// `audit log --format jsonl [args]`, parsed.
    fn log(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["--format", "jsonl"];
        all.extend_from_slice(args);
        self.audit_ok("log", &all)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}")))
            .collect()
    }

    /// Every event, unfiltered.
    fn events(&self) -> Vec<Value> {
        self.log(&[])
    }

    /// `audit state --at <at> --format json`, parsed.
    fn state_at(&self, at: &str) -> Vec<Value> {
        let out = self.audit_ok("state", &["--at", at, "--format", "json"]);
        match serde_json::from_str(&out) {
            Ok(Value::Array(keys)) => keys,
            other => panic!("audit state --format json printed {out:?}: {other:?}"),
        }
    }
}

fn positions(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["position"].as_u64().expect("a position")).collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().expect("a type").to_owned()).collect()
}

fn recorded_at(event: &Value) -> DateTime<Utc> {
    let text = event["recorded_at"].as_str().expect("recorded_at");
    DateTime::parse_from_rfc3339(text).expect("recorded_at is RFC 3339").with_timezone(&Utc)
}

fn micros(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The `ApiKeyCreated` of a key.
fn creation<'a>(events: &'a [Value], key: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == "ApiKeyCreated" && e["payload"]["api_key_id"] == key)
        .unwrap_or_else(|| panic!("no ApiKeyCreated for {key}"))
}

#[test]
fn jsonl_lists_every_event_in_order_as_it_was_recorded() {
    let world = world();
    let events = world.events();
    let n = events.len() as u64;
    assert_eq!(positions(&events), (1..=n).collect::<Vec<_>>(), "every event, in order");
    let types = types(&events);
    // 9 logins, the initial owner key, carol's two and dave's short-lived one.
    assert_eq!(types.iter().filter(|t| *t == "ApiKeyCreated").count(), 13);
    assert_eq!(types.iter().filter(|t| *t == "ServiceAccountCreated").count(), 1);
    assert_eq!(types.iter().filter(|t| *t == "OrganizationCreated").count(), 2);
    assert_eq!(types[0], "OrganizationCreated");

    // Exactly the recorded envelopes, field for field, without the chain's prev_hash.
    let storage = open_stopped(world.data.path(), false);
    let mut stored_count = 0;
    for (stored, line) in storage.events_from(1).zip(&events) {
        let stored = stored.expect("a stored event");
        let mut recorded: Value = serde_json::from_slice(&stored.canonical).expect("a stored envelope");
        recorded.as_object_mut().expect("an object").remove("prev_hash");
        assert_eq!(line, &recorded, "position {}", stored.position);
        let fields: Vec<&String> = line.as_object().expect("an object").keys().collect();
        assert_eq!(fields.len(), 9, "{fields:?}");
        stored_count += 1;
    }
    assert_eq!(stored_count, n, "as many lines as stored events");
}

#[test]
fn a_key_shows_exactly_its_own_events() {
    let world = world();
    let team = world.log(&["--key", &world.team_key]);
    assert_eq!(types(&team), ["ApiKeyCreated", "ServiceAccountCreated"]);
    for event in &team {
        assert_eq!(event["payload"]["api_key_id"], world.team_key.as_str(), "{event}");
    }
    let personal = world.log(&["--key", &world.short_key]);
    assert_eq!(types(&personal), ["ApiKeyCreated"]);
    assert_eq!(personal[0]["payload"]["name"], "short lived");
    // The stream name, as the table shows it, works too.
    let by_stream = world.log(&["--key", &format!("api_key-{}", world.laptop_key)]);
    assert_eq!(types(&by_stream), ["ApiKeyCreated"]);
    assert_eq!(by_stream[0]["payload"]["api_key_id"], world.laptop_key.as_str());
    assert!(world.log(&["--key", "00000000-0000-4000-8000-000000000000"]).is_empty());
}

#[test]
fn types_filter_case_insensitively_and_any_of_several() {
    let world = world();
    let events = world.events();
    let expect = |wanted: &[&str]| -> Vec<u64> {
        events.iter().filter(|e| wanted.iter().any(|w| e["type"] == *w)).map(|e| e["position"].as_u64().unwrap_or(0)).collect()
    };
    let keys = world.log(&["--type", "apikeycreated", "--type", "ServiceAccountCreated"]);
    assert_eq!(positions(&keys), expect(&["ApiKeyCreated", "ServiceAccountCreated"]));
    assert_eq!(keys.len(), 14);
    let teams = world.log(&["--type", "TEAMCREATED,teammembershipchanged"]);
    assert_eq!(positions(&teams), expect(&["TeamCreated", "TeamMembershipChanged"]));
    assert_eq!(teams.len(), 6, "two Acme teams and one Globex team, each created and filled");

    let typo = world.audit("log", &["--type", "ApiKeyCreate"]);
    assert!(!typo.status.success(), "an unknown type must not look like an empty result");
    assert!(String::from_utf8_lossy(&typo.stderr).contains("ApiKeyCreated"), "the error lists the types");
}

#[test]
fn actors_are_told_apart() {
    let world = world();
    let events = world.events();
    let by_carol: Vec<u64> =
        events.iter().filter(|e| e["actor"]["user"]["user_id"] == 3).map(|e| e["position"].as_u64().unwrap_or(0)).collect();
    assert_eq!(by_carol.len(), 3, "a team key with its service account, and a personal key");

    let carol = world.log(&["--actor", "user:3"]);
    assert_eq!(positions(&carol), by_carol);
    assert_eq!(types(&carol), ["ApiKeyCreated", "ServiceAccountCreated", "ApiKeyCreated"]);

    let operator = world.log(&["--actor", "operator"]);
    assert_eq!(operator.len() + by_carol.len(), events.len());
    assert!(operator.iter().all(|e| e["actor"] == "operator"));

    // The key carol acted through is her login key, so asking by that key is asking about her.
    let through = carol[0]["actor"]["user"]["api_key_id"].as_str().expect("the key carol acted through").to_owned();
    assert_eq!(creation(&events, &through)["payload"]["name"], "test login");
    assert_eq!(positions(&world.log(&["--actor", &through])), by_carol);
    assert!(world.log(&["--actor", &world.team_key]).is_empty(), "no one acted through the team key");
    assert!(world.log(&["--actor", "user:1"]).is_empty(), "alice and hank did nothing over HTTP");

    let bad = world.audit("log", &["--actor", "carol@acme.test"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("user:<id>"), "the error shows the syntax");
}

#[test]
fn since_is_inclusive_and_until_exclusive() {
    let world = world();
    let events = world.events();
    let cut = recorded_at(creation(&events, &world.team_key));
    let at_or_after: Vec<u64> = events.iter().filter(|e| recorded_at(e) >= cut).map(|e| e["position"].as_u64().unwrap_or(0)).collect();
    let before: Vec<u64> = events.iter().filter(|e| recorded_at(e) < cut).map(|e| e["position"].as_u64().unwrap_or(0)).collect();
    assert!(!before.is_empty() && at_or_after.len() >= 4, "the cut is inside the log");

    let since = world.log(&["--since", &micros(cut)]);
    assert_eq!(positions(&since), at_or_after);
    assert_eq!(since[0]["payload"]["api_key_id"], world.team_key.as_str(), "the event at --since itself is included");
    let until = world.log(&["--until", &micros(cut)]);
    assert_eq!(positions(&until), before, "the event at --until itself is not");

    // A window of one microsecond holds exactly the events recorded at that instant.
    let window = world.log(&["--since", &micros(cut), "--until", &micros(cut + Duration::microseconds(1))]);
    assert_eq!(types(&window), ["ApiKeyCreated", "ServiceAccountCreated"]);
    // Any offset names the same instant.
    let shifted = cut.with_timezone(&chrono::FixedOffset::east_opt(5 * 3600).expect("an offset"));
    assert_eq!(positions(&world.log(&["--since", &shifted.to_rfc3339_opts(SecondsFormat::Micros, false)])), at_or_after);

    for bad in [&["--since", "last tuesday"][..], &["--until", "2030-01-01"]] {
        let out = world.audit("log", bad);
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"), "{bad:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn the_table_has_a_header_and_one_aligned_line_per_event() {
    let world = world();
    let events = world.events();
    let table = world.audit_ok("log", &[]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), events.len() + 1, "a header and one line per event:\n{table}");
    let header = lines[0];
    for column in ["POSITION", "TIME", "TYPE", "ACTOR", "STREAM", "SUMMARY"] {
        assert!(header.contains(column), "{header}");
    }
    let column = |name: &str| header.find(name).unwrap_or_else(|| panic!("no {name} in {header}"));
    let (time, kind, actor, stream) = (column("TIME"), column("TYPE"), column("ACTOR"), column("STREAM"));
    for (line, event) in lines[1..].iter().zip(&events) {
        assert_eq!(line.split_whitespace().next(), Some(event["position"].to_string().as_str()), "{line}");
        assert!(line[time..].starts_with(&recorded_at(event).to_rfc3339_opts(SecondsFormat::Secs, true)), "{line}");
        assert!(line[kind..].starts_with(event["type"].as_str().unwrap_or("?")), "TYPE is aligned: {line}");
        let who = if event["actor"] == "operator" { "operator " } else { "user:3 " };
        assert!(line[actor..].starts_with(who), "ACTOR is aligned: {line}");
        assert!(line[stream..].starts_with(event["stream"].as_str().unwrap_or("?")), "STREAM is aligned: {line}");
    }
    let team_line = lines.iter().find(|l| l.contains(&format!("api_key-{}", world.team_key))).expect("the team key's line");
    assert!(team_line.contains(r#"team key "ci deploy" for team Platform in Acme"#), "{team_line}");
    let short_line = lines.iter().find(|l| l.contains(&format!("api_key-{}", world.short_key))).expect("the short key's line");
    let expires = world.short_expires.to_rfc3339_opts(SecondsFormat::Secs, true);
    assert!(
        short_line.contains(&format!(r#"personal key "short lived" for user 4 <dave@acme.test> in Acme, expires {expires}"#)),
        "{short_line}"
    );

    // Filters apply to the table too.
    let filtered = world.audit_ok("log", &["--key", &world.team_key]);
    assert_eq!(filtered.lines().count(), 3, "{filtered}");
}

#[test]
fn no_output_holds_a_token() {
    let world = world();
    let now = micros(Utc::now());
    let later = micros(world.short_expires + Duration::days(1));
    // `audit_ok` checks every stdout and stderr for every token.
    for format in ["table", "jsonl"] {
        world.audit_ok("log", &["--format", format]);
    }
    for at in [&now, &later] {
        for format in ["table", "json"] {
            world.audit_ok("state", &["--at", at, "--format", format]);
        }
    }
    // The check itself works: it would catch a token.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        world.assert_no_token(&format!("x {} y", world.tokens[0]), "a planted token")
    }));
    assert!(caught.is_err(), "the token check must catch a token");
}

#[test]
fn state_at_a_moment_lists_the_keys_created_by_then_with_their_status() {
    let world = world();
    let events = world.events();
    let created = recorded_at(creation(&events, &world.team_key));
    let ids = |keys: &[Value]| -> BTreeSet<String> { keys.iter().filter_map(|k| k["id"].as_str().map(str::to_owned)).collect() };

    let before = world.state_at(&micros(created - Duration::microseconds(1)));
    assert!(!ids(&before).contains(&world.team_key), "not yet created");
    assert_eq!(before.len(), 10, "the initial owner key and the nine logins");

    let at_creation = world.state_at(&micros(created));
    let team = at_creation.iter().find(|k| k["id"] == world.team_key.as_str()).expect("created at that instant: listed");
    assert_eq!(team["status"], "active");
    assert_eq!(team["kind"], "team");
    assert_eq!(team["name"], "ci deploy");
    assert_eq!(team["organization"], "Acme");
    assert_eq!(team["team"], "Platform");
    assert_eq!(team["created_by"], "user:3");
    assert!(!ids(&at_creation).contains(&world.laptop_key), "created after that instant");

    let short = |at: DateTime<Utc>| -> Value {
        world.state_at(&micros(at)).into_iter().find(|k| k["id"] == world.short_key.as_str()).expect("the short-lived key")
    };
    assert_eq!(short(world.short_expires - Duration::seconds(1))["status"], "active");
    assert_eq!(short(world.short_expires)["status"], "expired", "expires_at is the first instant it no longer works");
    let much_later = short(world.short_expires + Duration::days(1));
    assert_eq!(much_later["status"], "expired");
    assert_eq!(much_later["owner_user_id"], 4);
    assert_eq!(much_later["owner_email"], "dave@acme.test");

    // Every key is there later on, sorted by organization name then creation.
    let all = world.state_at(&micros(world.short_expires + Duration::days(1)));
    assert_eq!(all.len(), 13);
    let order: Vec<(String, String)> = all
        .iter()
        .map(|k| (k["organization"].as_str().unwrap_or("").to_owned(), k["created_at"].as_str().unwrap_or("").to_owned()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| (&a.0, DateTime::parse_from_rfc3339(&a.1).ok()).cmp(&(&b.0, DateTime::parse_from_rfc3339(&b.1).ok())));
    assert_eq!(order, sorted);
    assert_eq!(all[0]["organization"], "Acme");
    assert_eq!(all[12]["organization"], "Globex");

    // The table says the same.
    let table = world.audit_ok("state", &["--at", &micros(world.short_expires)]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 14, "a header and one line per key:\n{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("STATUS"), "{}", lines[0]);
    let short_line = lines.iter().find(|l| l.starts_with(&world.short_key)).expect("the short-lived key's line");
    assert!(short_line.ends_with("expired") && short_line.contains("short lived"), "{short_line}");
    let team_line = lines.iter().find(|l| l.starts_with(&world.team_key)).expect("the team key's line");
    assert!(team_line.ends_with("active") && team_line.contains("team Platform"), "{team_line}");
}

#[test]
fn bad_arguments_and_a_missing_ledger_fail_with_a_message() {
    let world = world();
    for (command, args, says) in [
        ("state", &["--at", "yesterday"][..], "RFC 3339"),
        ("state", &["--at", "2030-01-01"], "RFC 3339"),
        ("state", &[], "--at"),
        ("state", &["--at", "2030-01-01T00:00:00Z", "--format", "jsonl"], "json"),
        ("log", &["--format", "csv"], "jsonl"),
        ("log", &["--key", "ci deploy"], "UUID"),
        ("log", &["--since", "2030-01-01T00:00:00Z", "--until", "2029-01-01T00:00:00Z"], "--until"),
    ] {
        let out = world.audit(command, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "audit {command} {args:?} succeeded");
        assert!(out.stdout.is_empty(), "audit {command} {args:?} printed on stdout");
        assert!(stderr.contains(says), "audit {command} {args:?} should say {says:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    let empty = DataDir::new();
    for args in [&["audit", "log", "--data", empty.arg()][..], &["audit", "state", "--data", empty.arg(), "--at", "2030-01-01T00:00:00Z"]] {
        let out = cli(args);
        assert!(!out.status.success(), "{args:?} on an empty directory succeeded");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no ledger"), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!empty.path().join("sled").exists(), "an audit must not create a ledger");
    }
}

#[test]
fn a_broken_chain_stops_both_commands_at_its_position() {
    if sled_only("damages an event in sled's pages") {
        return;
    }
    let world = world();
    let total = world.events().len();
    // A byte inside event 5 changes; its stored hash does not.
    damage_event(world.data.path(), 5, |canonical| {
        let at = canonical.windows(7).position(|w| w == b"\"slug\":").expect("event 5 is a role") + 8;
        canonical[at] ^= 0x01;
    });
    let out = world.audit("log", &["--format", "jsonl"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("position 5"), "{stderr}");
    let printed: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(positions(&printed), [1, 2, 3, 4], "only the events before the break, of {total}");

    let table = world.audit("log", &[]);
    assert_eq!(table.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&table.stderr).contains("position 5"));

    let state = world.audit("state", &["--at", "2100-01-01T00:00:00Z"]);
    let stderr = String::from_utf8_lossy(&state.stderr);
    assert_eq!(state.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("position 5"), "{stderr}");
    assert!(state.stdout.is_empty(), "no state from a broken log");
}
