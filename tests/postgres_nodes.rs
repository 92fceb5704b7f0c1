//! Several nodes on one PostgreSQL ledger: two real `keyledger serve` processes on one fresh
//! schema. A key created on one authenticates on the other, a revoke on one is refused on the
//! other (at once in strict mode, within a bound in eventual mode), a race for one name
//! across both nodes has exactly one winner, and (in process, on a clock the test moves) a
//! grace period's end is recorded once with both nodes' schedules running.
//!
//! Runs only when `KEYLEDGER_TEST_DATABASE_URL` names a server (e.g.
//! postgres://postgres@127.0.0.1:5432/test); each test's schema is dropped afterwards.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::*;
use common::jsonapi::*;
use common::server::*;
use common::store::{test_database, Schema};
use serde_json::{json, Value};

/// How long another node may take to see a commit in eventual mode before the test fails:
/// far above the measured bound (milliseconds; see bench/src/bin/follower_lag.rs), so a
/// loaded CI machine does not fail it, while a follower that never follows does.
const FOLLOW_DEADLINE: Duration = Duration::from_secs(10);

/// `keyledger init` once, for every node: the owner's token.
fn init(schema: &Schema) -> String {
    let mut args = vec!["init"];
    args.extend(schema.args());
    args.extend(["--org", "Acme", "--owner", "owner@acme.test"]);
    cli_ok(&args)
}

/// A node: `serve` on the schema, on 127.0.0.1:0, with `--consistency`.
struct Node {
    server: Server,
    /// Never written to: a node on PostgreSQL keeps nothing in --data.
    _data: DataDir,
}

impl Node {
    fn start(schema: &Schema, consistency: &str) -> Node {
        let data = DataDir::new();
        let mut args = schema.args();
        args.extend(["--consistency", consistency]);
        let server = Server::start_with(&data, &args);
        assert!(server.owner_token().is_none(), "the schema was initialized by `init`");
        Node { server, _data: data }
    }
}

async fn create_key(node: &Node, token: &str, name: &str) -> (String, String) {
    let Resp { status, json: body, .. } =
        create(&node.server, token, json!({"name": name, "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().expect("id").to_owned();
    let key_token = body["data"]["attributes"]["token"].as_str().expect("token").to_owned();
    (id, key_token)
}

async fn revoke(node: &Node, token: &str, id: &str) -> u16 {
    let response = client().delete(node.server.url(&format!("/v1/api_keys/{id}"))).bearer_auth(token).send().await.expect("DELETE");
    response.status().as_u16()
}

async fn status_of(node: &Node, token: &str, id: &str) -> u16 {
    get(&node.server, token, &format!("/v1/api_keys/{id}")).await.status
}

/// Polls `GET /v1/api_keys/{id}` on `node` until it answers `want`; fails after
/// [`FOLLOW_DEADLINE`].
async fn until_status(node: &Node, token: &str, id: &str, want: u16) {
    let deadline = Instant::now() + FOLLOW_DEADLINE;
    loop {
        let status = status_of(node, token, id).await;
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {status} instead of {want} after {FOLLOW_DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn eventual_nodes_follow_each_other_and_one_name_is_taken_once_across_both() {
    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "nodes");
    let owner = init(&schema);
    let a = Node::start(&schema, "eventual");
    let b = Node::start(&schema, "eventual");

    let (id, token) = create_key(&a, &owner, "made on a").await;
    assert_eq!(status_of(&a, &token, &id).await, 200);
    until_status(&b, &token, &id, 200).await;

    assert_eq!(revoke(&a, &owner, &id).await, 200);
    assert_eq!(status_of(&a, &token, &id).await, 401, "refused at once where it was revoked");
    until_status(&b, &token, &id, 401).await;

    // The other way round: made on b, known on a, and b's writer (which has not written
    // since a's commits) decides against them.
    let (id_b, token_b) = create_key(&b, &owner, "made on b").await;
    until_status(&a, &token_b, &id_b, 200).await;

    // 48 creates of one name at once, half on each node: exactly one is recorded.
    let requests = (0..48).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        let owner = owner.clone();
        async move { create(&node.server, &owner, json!({"name": "contested", "kind": "personal", "expires_at": in_days(30)})).await }
    });
    let answers = futures_join_all(requests).await;
    let created: Vec<&Value> = answers.iter().filter(|answer| answer.status == 201).map(|answer| &answer.json).collect();
    assert_eq!(created.len(), 1, "exactly one winner: {answers:?}");
    for answer in answers.iter().filter(|answer| answer.status != 201) {
        assert_eq!(answer.status, 422, "{}", answer.json);
        assert_eq!(titles(&answer.json), ["Name has already been taken"], "{}", answer.json);
    }
    a.server.stop();
    b.server.stop();
}

/// A node that starts while another records keys loads a state of one moment (the other
/// node's commits wait for its load) and follows on from there: every key made on a before,
/// during and after b's start is known on b.
#[tokio::test]
async fn a_node_started_while_another_writes_knows_every_key() {
    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "nodes");
    let owner = init(&schema);
    let a = Node::start(&schema, "eventual");
    let writing = std::sync::atomic::AtomicBool::new(true);
    let writes = async {
        let mut made = Vec::new();
        // At least a few, at most far below the scope's limit of 1000 (a slow start).
        while (writing.load(std::sync::atomic::Ordering::Acquire) || made.len() < 5) && made.len() < 300 {
            made.push(create_key(&a, &owner, &format!("during {}", made.len())).await);
        }
        made
    };
    let start_b = async {
        tokio::task::yield_now().await;
        let b = tokio::task::spawn_blocking({
            let schema_args: Vec<String> = schema.args().iter().map(|arg| arg.to_string()).collect();
            move || {
                let data = DataDir::new();
                let mut args: Vec<&str> = schema_args.iter().map(String::as_str).collect();
                args.extend(["--consistency", "eventual"]);
                Node { server: Server::start_with(&data, &args), _data: data }
            }
        })
        .await
        .expect("start b");
        writing.store(false, std::sync::atomic::Ordering::Release);
        b
    };
    let (made, b) = tokio::join!(writes, start_b);
    for (id, token) in &made {
        until_status(&b, token, id, 200).await;
    }
    a.server.stop();
    b.server.stop();
}

#[tokio::test]
async fn a_strict_node_refuses_a_key_revoked_on_another_node_at_the_very_next_request() {
    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "nodes");
    let owner = init(&schema);
    let a = Node::start(&schema, "eventual");
    let b = Node::start(&schema, "strict");

    for round in 0..10 {
        let (id, token) = create_key(&a, &owner, &format!("strict {round}")).await;
        assert_eq!(status_of(&b, &token, &id).await, 200, "created on a: known on strict b at once");
        assert_eq!(revoke(&a, &owner, &id).await, 200);
        assert_eq!(status_of(&b, &token, &id).await, 401, "revoked on a: refused on strict b at once");
    }
    a.server.stop();
    b.server.stop();
}

/// Polls `done` until it holds; fails naming `what` after [`FOLLOW_DEADLINE`].
async fn until(what: &str, done: &dyn Fn() -> bool) {
    let deadline = Instant::now() + FOLLOW_DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `join_all` without another dependency: every future polled on its own task.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future,
{
    // Tasks need 'static futures; these borrow the nodes, so they are driven together here.
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(|output| output.expect("every future finished")).collect()
}

/// Two nodes in this process (two stores on one schema, two services, two expiry schedules)
/// on one clock the test moves: a grace period's end comes due on both at once, and is
/// recorded once.
#[test]
fn a_grace_periods_end_is_recorded_once_with_both_nodes_scheduling_it() {
    use chrono::{SubsecRound, Utc};
    use keyledger::ledger::chain::Replay;
    use keyledger::ledger::{ChainHead, LastUseStore, PostgresStorage, Storage};
    use keyledger::service::clock::{Clock, ManualClock};
    use keyledger::service::operator;
    use keyledger::service::recovery::load_state;
    use keyledger::service::rules::directory::DirectoryFile;
    use keyledger::service::rules::rotate_api_key::Rotation;
    use keyledger::service::token::TokenFormat;
    use keyledger::service::writer::Writer;
    use keyledger::service::{Policy, Service};
    use keyledger_projections::Event;

    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "nodes");
    let clock = Arc::new(ManualClock::new(Utc::now().trunc_subsecs(6)));
    let tokens = TokenFormat::new("rootly").unwrap();
    // Opened here, outside the runtime: the store blocks.
    let node = |create: bool| {
        let store = Arc::new(
            if create { PostgresStorage::open(&url, &schema.name) } else { PostgresStorage::open_existing(&url, &schema.name) }.unwrap(),
        );
        let storage: Arc<dyn Storage> = Arc::clone(&store) as Arc<dyn Storage>;
        let writer = Writer::new(Arc::clone(&storage), load_state(&*storage).unwrap()).unwrap();
        (store, storage, writer)
    };
    let (store_a, storage, mut writer_a) = node(true);
    let owner = operator::initialize(&mut writer_a, &[DirectoryFile::single_owner("Acme", "owner@acme.test")], &tokens).unwrap();
    let (store_b, _, writer_b) = node(false);
    let start = |writer, store: Arc<PostgresStorage>| {
        let (service, thread) =
            Service::start(writer, tokens.clone(), store as Arc<dyn LastUseStore>, Policy::default(), Arc::clone(&clock) as Arc<dyn Clock>)
                .unwrap();
        (Arc::new(service), thread)
    };
    let (a, thread_a) = start(writer_a, store_a);
    let (b, thread_b) = start(writer_b, store_b);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let caller = a.authenticate(owner.reveal()).expect("the owner's token on a");
        let rotation = Rotation { grace_period_minutes: Some(1), ..Rotation::default() };
        let rotated = a.rotate_api_key(&caller, caller.api_key_id, rotation, "rotate".into()).await.unwrap();
        assert!(rotated.key.grace_period_ends_at.is_some());
        let schedules: Vec<_> = [&a, &b]
            .into_iter()
            .map(|node| {
                let node = Arc::clone(node);
                tokio::spawn(async move { node.run_expiry_schedule().await })
            })
            .collect();
        let in_grace = |node: &Service| node.read(|s| s.keys.get(caller.api_key_id).map(|k| k.grace_period_ends_at.is_some()));
        until("b never saw the rotation", &|| in_grace(&b) == Some(true)).await;

        clock.advance(chrono::Duration::seconds(61));
        until("a never recorded the end", &|| in_grace(&a) == Some(false)).await;
        until("b never recorded the end", &|| in_grace(&b) == Some(false)).await;
        assert!(
            a.authenticate(owner.reveal()).is_none() && b.authenticate(owner.reveal()).is_none(),
            "the previous secret is refused on both"
        );

        for schedule in schedules {
            schedule.abort();
            assert!(schedule.await.is_err_and(|e| e.is_cancelled()));
        }
    });
    // Both writers drain their queues (any end decided late is recorded by now), then stop.
    drop((a, b));
    thread_a.join();
    thread_b.join();
    let events = std::thread::spawn(move || {
        Replay::new(storage.events_from(1), ChainHead::genesis()).map(|event| event.unwrap()).collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    let ended = events.iter().filter(|event| matches!(event.event, Event::ApiKeyGracePeriodEnded(_))).count();
    assert_eq!(ended, 1, "the end recorded once across both nodes");
    drop(runtime);
}
