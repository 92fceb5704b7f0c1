//! Durability and recovery of the real binary: clean restarts, `kill -9` under load, and
//! SIGTERM with creates in flight. Acknowledged means durable; an unanswered create is either
//! wholly in the ledger or wholly absent.

mod kit;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use kit::*;
use serde_json::{json, Value};
use support::{cli_ok, durable_attributes, in_days, DataDir, Server, PLATFORM_TEAM, SECURITY_TEAM};

const CLIENTS: usize = 16;
const ACKS_BEFORE_KILL: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_clean_restart_every_key_shows_the_same_every_token_works_and_every_name_is_taken() {
    let data = DataDir::new();
    let cli_tokens = data.acme_and_globex();
    let server = Server::start(&data);
    assert!(server.owner_token.is_none(), "an initialized ledger prints no banner");
    let api = Api::new(&server);

    // (creator, attributes): every kind, two organizations.
    let plan: Vec<(&str, Value)> = vec![
        ("alice@acme.test", json!({"name": "alice laptop", "kind": "personal", "description": "her laptop"})),
        ("alice@acme.test", json!({"name": "org deploy", "kind": "organization"})),
        ("carol@acme.test", json!({"name": "platform ci", "kind": "team", "group_id": PLATFORM_TEAM})),
        ("bob@acme.test", json!({"name": "security scanner", "kind": "team", "group_id": SECURITY_TEAM})),
        ("dave@acme.test", json!({"name": "Dave's Script", "kind": "personal"})),
        ("hank@globex.test", json!({"name": "alice laptop", "kind": "personal"})),
        ("hank@globex.test", json!({"name": "globex deploy", "kind": "organization"})),
    ];
    let mut created = Vec::new();
    for (creator, mut attrs) in plan {
        attrs["expires_at"] = json!(in_days(60));
        let (status, body) = api.create(&cli_tokens[creator], attrs.clone()).await;
        assert_eq!(status, 201, "{creator} creating {attrs}: {body}");
        let key = Acked::from_created(attrs["name"].as_str().unwrap(), &body);
        let (status, shown) = api.show(&key.token, &key.id).await;
        assert_eq!(status, 200, "{shown}");
        created.push((creator, attrs, key, durable_attributes(&shown)));
    }

    terminate(server, Duration::from_secs(30)).await;
    let server = Server::start(&data);
    assert!(server.owner_token.is_none(), "a restart must not initialize the ledger again");
    let api = Api::new(&server);

    for (creator, attrs, key, before) in &created {
        let (status, shown) = api.show(&key.token, &key.id).await;
        assert_eq!(status, 200, "{} after restart, with its own token: {shown}", key.name);
        assert_eq!(durable_attributes(&shown), *before, "{} changed across the restart", key.name);
        let (status, shown) = api.show(&cli_tokens[*creator], &key.id).await;
        assert_eq!(status, 200, "{} after restart, shown to {creator}: {shown}", key.name);
        let (status, body) = api.create(&cli_tokens[*creator], attrs.clone()).await;
        assert_taken(status, &body, &format!("{creator} re-creating {}", key.name));
    }
    for (email, token) in &cli_tokens {
        assert!(api.authenticates(token).await, "the CLI-issued token of {email} no longer authenticates");
    }
    // Still writable.
    let (status, body) = api.create(&cli_tokens["alice@acme.test"], personal("after restart")).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_concurrent_load_loses_no_acknowledged_create_and_leaves_no_half_create_three_times() {
    let data = DataDir::new();
    let mut server = Server::start(&data);
    let owner = server.owner_token.clone().expect("banner token");
    let mut acked: Vec<Acked> = Vec::new();
    // Unanswered names and what a create of the same name got after the restart:
    // Some(id) for a 201 (the first was absent), None for "taken" (the first is there).
    let mut unanswered: Vec<(String, Option<String>)> = Vec::new();

    for cycle in 0..3 {
        let api = Api::new(&server);
        let load = Load::start(&api, &owner, &format!("crash{cycle}"), CLIENTS);
        load.wait_for_acks(ACKS_BEFORE_KILL, Duration::from_secs(30)).await;
        server.kill9();
        let outcome = load.finish().await;
        assert!(outcome.refused.is_empty(), "cycle {cycle}: creates refused before the kill: {:?}", outcome.refused);
        assert!(outcome.acked.len() >= ACKS_BEFORE_KILL);
        acked.extend(outcome.acked);

        server = Server::start(&data);
        assert!(server.owner_token.is_none(), "cycle {cycle}: the restart after kill -9 initialized the ledger again");
        let api = Api::new(&server);
        assert!(api.authenticates(&owner).await, "cycle {cycle}: the banner token died with the server");
        assert_acked_keys_intact(&api, &owner, &acked, &format!("after kill -9 #{cycle}")).await;
        for name in outcome.unanswered {
            let (status, body) = api.create(&owner, personal(&name)).await;
            match status {
                201 => unanswered.push((name.clone(), Some(Acked::from_created(&name, &body).id))),
                _ => {
                    assert_taken(status, &body, &format!("cycle {cycle}: re-creating unanswered {name}"));
                    unanswered.push((name, None));
                }
            }
        }
        let (status, body) = api.create(&owner, personal(&format!("written after restart {cycle}"))).await;
        assert_eq!(status, 201, "cycle {cycle}: the restarted server takes creates: {body}");
    }
    assert!(!unanswered.is_empty(), "no create was in flight at any of the three kills; the test proved nothing about them");

    // The log itself: every acknowledged name once, with the acknowledged id; every unanswered
    // name exactly once — the original create if the name was taken after the restart, the
    // re-create if not (a committed key whose name was free would show up here twice).
    terminate(server, Duration::from_secs(30)).await;
    let (_, logged) = read_log(data.path());
    // And every stored projection is what the log says, after three crashes.
    let check = cli_ok(&["rebuild", "--check", "--data", data.arg()]);
    assert!(check.contains("match the log"), "{check}");
    let by_name = ids_by_name(&logged);
    for key in &acked {
        assert_eq!(by_name.get(&key.name), Some(&vec![key.id.clone()]), "acknowledged {} in the log", key.name);
    }
    let mut taken_ids = HashMap::new();
    for (name, recreated) in &unanswered {
        let ids = by_name.get(name).cloned().unwrap_or_default();
        assert_eq!(ids.len(), 1, "unanswered {name} should be in the log exactly once, found {ids:?}");
        match recreated {
            Some(id) => assert_eq!(&ids[0], id, "{name}: the log holds a key other than the re-created one"),
            None => {
                taken_ids.insert(name.clone(), ids[0].clone());
            }
        }
    }
    // A name that was taken belongs to a key that shows.
    let server = Server::start(&data);
    let api = Api::new(&server);
    for (name, id) in &taken_ids {
        let (status, body) = api.show(&owner, id).await;
        assert_eq!(status, 200, "unanswered {name} holds its name but its key {id} does not show: {body}");
        assert_eq!(body["data"]["attributes"]["name"], name.as_str());
    }
    eprintln!(
        "kill -9 × 3: {} acknowledged, {} unanswered ({} were committed)",
        acked.len(),
        unanswered.len(),
        taken_ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_kill_9_the_server_restarts_by_itself_and_the_banner_token_still_works() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let owner = server.owner_token.clone().expect("banner token");
    let api = Api::new(&server);
    let (status, body) = api.create(&owner, personal("before the crash")).await;
    assert_eq!(status, 201, "{body}");
    let key = Acked::from_created("before the crash", &body);
    server.kill9();

    // Killed right after the create; then killed again idle, straight after coming back.
    let server = Server::start(&data);
    assert!(server.owner_token.is_none(), "the restart after kill -9 initialized the ledger again");
    server.kill9();
    let server = Server::start(&data);
    assert!(server.owner_token.is_none(), "the restart after kill -9 initialized the ledger again");
    let api = Api::new(&server);
    assert!(api.authenticates(&owner).await, "the owner token from the first banner no longer works");
    assert_acked_keys_intact(&api, &owner, std::slice::from_ref(&key), "after kill -9").await;
    let (status, body) = api.create(&owner, personal("after the crash")).await;
    assert_eq!(status, 201, "{body}");
    let after = Acked::from_created("after the crash", &body);
    terminate(server, Duration::from_secs(30)).await;

    let server = Server::start(&data);
    let api = Api::new(&server);
    assert_acked_keys_intact(&api, &owner, &[key, after], "after kill -9 and a clean restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_creates_in_flight_keeps_every_acknowledged_create() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let owner = server.owner_token.clone().expect("banner token");
    let api = Api::new(&server);

    let load = Load::start(&api, &owner, "term", CLIENTS);
    load.wait_for_acks(ACKS_BEFORE_KILL, Duration::from_secs(30)).await;
    // The clients keep sending while the server shuts down.
    terminate(server, Duration::from_secs(30)).await;
    let outcome = load.finish().await;
    assert!(outcome.refused.is_empty(), "creates refused during shutdown: {:?}", outcome.refused);

    // The stopped ledger holds every acknowledged create, and each unanswered one at most once.
    let (_, logged) = read_log(data.path());
    let by_name = ids_by_name(&logged);
    for key in &outcome.acked {
        assert_eq!(by_name.get(&key.name), Some(&vec![key.id.clone()]), "acknowledged {} in the log", key.name);
    }
    for name in &outcome.unanswered {
        assert!(by_name.get(name).is_none_or(|ids| ids.len() == 1), "{name} recorded twice: {:?}", by_name[name]);
    }

    let server = Server::start(&data);
    assert!(server.owner_token.is_none());
    let api = Api::new(&server);
    assert_acked_keys_intact(&api, &owner, &outcome.acked, "after SIGTERM under load").await;
    for name in &outcome.unanswered {
        let (status, body) = api.create(&owner, personal(name)).await;
        match by_name.get(name) {
            Some(ids) => {
                assert_taken(status, &body, &format!("unanswered {name}, committed as {}", ids[0]));
                let (status, body) = api.show(&owner, &ids[0]).await;
                assert_eq!(status, 200, "unanswered {name} was committed but does not show: {body}");
            }
            None => assert_eq!(status, 201, "unanswered {name} is not in the log but its name is taken: {body}"),
        }
    }
}

/// A supervisor may stop the server as soon as it says it listens. The SIGTERM handler must be
/// in place by then: otherwise the default action kills the process (exit status "signal 15")
/// instead of the graceful shutdown that finishes requests and joins the writer. The signal is
/// sent from a shell that is already running (its `kill` is a builtin), so that it arrives
/// within microseconds of the listening line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_right_after_the_listening_line_still_shuts_down_cleanly() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let data = DataDir::new();
    let owner = {
        let server = Server::start(&data);
        let owner = server.owner_token.clone().expect("banner token");
        // Serving a request first: the handler is surely installed for this (setup) stop.
        assert!(Api::new(&server).authenticates(&owner).await);
        terminate(server, Duration::from_secs(30)).await;
        owner
    };
    for attempt in 0..20 {
        let mut killer = Command::new("sh")
            .args(["-c", "read pid && kill -TERM \"$pid\""])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut serve = Command::new(support::BIN)
            .args(["serve", "--data", data.arg(), "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keyledger serve");
        let pid = serve.id();
        let mut stderr = BufReader::new(serve.stderr.take().expect("stderr"));
        let mut line = String::new();
        loop {
            line.clear();
            let read = stderr.read_line(&mut line).expect("read stderr");
            assert!(read > 0, "attempt {attempt}: keyledger serve ended before listening");
            if line.starts_with("keyledger listening on ") {
                break;
            }
        }
        let mut stdin = killer.stdin.take().expect("stdin");
        writeln!(stdin, "{pid}").expect("tell sh the pid");
        drop(stdin);
        assert!(killer.wait().expect("wait for sh").success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = serve.try_wait().expect("try_wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = serve.kill();
                panic!("attempt {attempt}: keyledger serve did not exit within 30 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!(status.success(), "attempt {attempt}: SIGTERM right after \"{}\" ended keyledger serve with {status}, not a clean exit", line.trim());
    }
    let server = Server::start(&data);
    assert!(Api::new(&server).authenticates(&owner).await, "the ledger survives the stops");
}
