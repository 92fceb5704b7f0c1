//! Durability and recovery of the real binary: clean restarts, `kill -9` under load, and
//! SIGTERM with creates in flight. Acknowledged means durable; an unanswered create is either
//! wholly in the ledger or wholly absent.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::fixtures::{PLATFORM_TEAM, SECURITY_TEAM};
use common::http::{authenticates, create, in_days, personal, show, Resp};
use common::jsonapi::{assert_taken, durable_attributes};
use common::ledger::{ids_by_name, read_log};
use common::load::{assert_acked_keys_intact, Acked, Load};
use common::server::{cli_ok, terminate, DataDir, Server};
use serde_json::{json, Value};

const CLIENTS: usize = 16;
const ACKS_BEFORE_KILL: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_clean_restart_every_key_shows_the_same_every_token_works_and_every_name_is_taken() {
    let data = DataDir::new();
    let cli_tokens = data.acme_and_globex();
    let server = Server::start(&data);
    assert!(server.owner_token().is_none(), "an initialized ledger prints no banner");
    let api = server.base.clone();

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
        let Resp { status, json: body, .. } = create(&api, &cli_tokens[creator], attrs.clone()).await;
        assert_eq!(status, 201, "{creator} creating {attrs}: {body}");
        let key = Acked::from_created(attrs["name"].as_str().unwrap(), &body);
        let Resp { status, json: shown, .. } = show(&api, &key.token, &key.id).await;
        assert_eq!(status, 200, "{shown}");
        created.push((creator, attrs, key, durable_attributes(&shown)));
    }

    terminate(server, Duration::from_secs(30)).await;
    let server = Server::start(&data);
    assert!(server.owner_token().is_none(), "a restart must not initialize the ledger again");
    let api = server.base.clone();

    for (creator, attrs, key, before) in &created {
        let Resp { status, json: shown, .. } = show(&api, &key.token, &key.id).await;
        assert_eq!(status, 200, "{} after restart, with its own token: {shown}", key.name);
        assert_eq!(durable_attributes(&shown), *before, "{} changed across the restart", key.name);
        let Resp { status, json: shown, .. } = show(&api, &cli_tokens[*creator], &key.id).await;
        assert_eq!(status, 200, "{} after restart, shown to {creator}: {shown}", key.name);
        let Resp { status, json: body, .. } = create(&api, &cli_tokens[*creator], attrs.clone()).await;
        assert_taken(status, &body, &format!("{creator} re-creating {}", key.name));
    }
    for (email, token) in &cli_tokens {
        assert!(authenticates(&api, token).await, "the CLI-issued token of {email} no longer authenticates");
    }
    // Still writable.
    let Resp { status, json: body, .. } = create(&api, &cli_tokens["alice@acme.test"], personal("after restart")).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_concurrent_load_loses_no_acknowledged_create_and_leaves_no_half_create_three_times() {
    let data = DataDir::new();
    let mut server = Server::start(&data);
    let owner = server.owner_token().expect("banner token");
    let mut acked: Vec<Acked> = Vec::new();
    // Unanswered names and what a create of the same name got after the restart:
    // Some(id) for a 201 (the first was absent), None for "taken" (the first is there).
    let mut unanswered: Vec<(String, Option<String>)> = Vec::new();

    for cycle in 0..3 {
        let api = server.base.clone();
        let load = Load::start(&api, &owner, &format!("crash{cycle}"), CLIENTS);
        load.wait_for_acks(ACKS_BEFORE_KILL, Duration::from_secs(30)).await;
        server.kill9();
        let outcome = load.finish().await;
        assert!(outcome.refused.is_empty(), "cycle {cycle}: creates refused before the kill: {:?}", outcome.refused);
        assert!(outcome.acked.len() >= ACKS_BEFORE_KILL);
        acked.extend(outcome.acked);

        server = Server::start(&data);
        assert!(server.owner_token().is_none(), "cycle {cycle}: the restart after kill -9 initialized the ledger again");
        let api = server.base.clone();
        assert!(authenticates(&api, &owner).await, "cycle {cycle}: the banner token died with the server");
        assert_acked_keys_intact(&api, &owner, &acked, &format!("after kill -9 #{cycle}")).await;
        for name in outcome.unanswered {
            let Resp { status, json: body, .. } = create(&api, &owner, personal(&name)).await;
            match status {
                201 => unanswered.push((name.clone(), Some(Acked::from_created(&name, &body).id))),
                _ => {
                    assert_taken(status, &body, &format!("cycle {cycle}: re-creating unanswered {name}"));
                    unanswered.push((name, None));
                }
            }
        }
        let Resp { status, json: body, .. } = create(&api, &owner, personal(&format!("written after restart {cycle}"))).await;
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
    let api = server.base.clone();
    for (name, id) in &taken_ids {
        let Resp { status, json: body, .. } = show(&api, &owner, id).await;
        assert_eq!(status, 200, "unanswered {name} holds its name but its key {id} does not show: {body}");
        assert_eq!(body["data"]["attributes"]["name"], name.as_str());
    }
    eprintln!("kill -9 × 3: {} acknowledged, {} unanswered ({} were committed)", acked.len(), unanswered.len(), taken_ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_kill_9_the_server_restarts_by_itself_and_the_banner_token_still_works() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let owner = server.owner_token().expect("banner token");
    let api = server.base.clone();
    let Resp { status, json: body, .. } = create(&api, &owner, personal("before the crash")).await;
    assert_eq!(status, 201, "{body}");
    let key = Acked::from_created("before the crash", &body);
    server.kill9();

    // Killed right after the create; then killed again idle, straight after coming back.
    let server = Server::start(&data);
    assert!(server.owner_token().is_none(), "the restart after kill -9 initialized the ledger again");
    server.kill9();
    let server = Server::start(&data);
    assert!(server.owner_token().is_none(), "the restart after kill -9 initialized the ledger again");
    let api = server.base.clone();
    assert!(authenticates(&api, &owner).await, "the owner token from the first banner no longer works");
    assert_acked_keys_intact(&api, &owner, std::slice::from_ref(&key), "after kill -9").await;
    let Resp { status, json: body, .. } = create(&api, &owner, personal("after the crash")).await;
    assert_eq!(status, 201, "{body}");
    let after = Acked::from_created("after the crash", &body);
    terminate(server, Duration::from_secs(30)).await;

    let server = Server::start(&data);
    let api = server.base.clone();
    assert_acked_keys_intact(&api, &owner, &[key, after], "after kill -9 and a clean restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_creates_in_flight_keeps_every_acknowledged_create() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let owner = server.owner_token().expect("banner token");
    let api = server.base.clone();

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
    assert!(server.owner_token().is_none());
    let api = server.base.clone();
    assert_acked_keys_intact(&api, &owner, &outcome.acked, "after SIGTERM under load").await;
    for name in &outcome.unanswered {
        let Resp { status, json: body, .. } = create(&api, &owner, personal(name)).await;
        match by_name.get(name) {
            Some(ids) => {
                assert_taken(status, &body, &format!("unanswered {name}, committed as {}", ids[0]));
                let Resp { status, json: body, .. } = show(&api, &owner, &ids[0]).await;
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
    use std::io::Write;
    use std::process::{Command, Stdio};

    let data = DataDir::new();
    let owner = {
        let server = Server::start(&data);
        let owner = server.owner_token().expect("banner token");
        // Serving a request first: the handler is surely installed for this (setup) stop.
        assert!(authenticates(&server.base, &owner).await);
        terminate(server, Duration::from_secs(30)).await;
        owner
    };
    for attempt in 0..20 {
        let mut killer =
            Command::new("sh").args(["-c", "read pid && kill -TERM \"$pid\""]).stdin(Stdio::piped()).spawn().expect("spawn sh");
        // Returns as soon as the server has written its listening line.
        let serve = Server::start(&data);
        let (pid, listening) = (serve.pid(), serve.startup.last().cloned().unwrap_or_default());
        let mut stdin = killer.stdin.take().expect("stdin");
        writeln!(stdin, "{pid}").expect("tell sh the pid");
        drop(stdin);
        assert!(killer.wait().expect("wait for sh").success());
        let (status, _) = serve.wait_for_exit(Duration::from_secs(30));
        assert!(
            status.success(),
            "attempt {attempt}: SIGTERM right after {listening:?} ended keyledger serve with {status}, not a clean exit"
        );
    }
    let server = Server::start(&data);
    assert!(authenticates(&server.base, &owner).await, "the ledger survives the stops");
}
