//! Faults of a PostgreSQL ledger with real `keyledger serve` processes: the database cut off
//! from a node and given back, and a node killed with `kill -9` while eight clients write.
//!
//! The cuts go through a TCP proxy in the test harness (`common::proxy`) between one node and
//! the database; every other process connects directly. While cut off, a node answers writes
//! 503 with `Retry-After`, goes on answering reads from memory and says it is not ready; once
//! the proxy forwards again it reconnects and catches up by itself, without a restart. Nothing
//! it acknowledged is lost, through cuts or a `kill -9`, and the log stays intact.
//!
//! Runs only when `KEYLEDGER_TEST_DATABASE_URL` names a server (e.g.
//! postgres://postgres@127.0.0.1:5432/test); each test's schema is dropped afterwards.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use common::http::*;
use common::jsonapi::{assert_error_doc, assert_taken};
use common::load::{assert_acked_keys_intact, Acked, Load, Unavailable};
use common::proxy::{Cut, Proxy, APPEND_COMMIT};
use common::server::{cli, cli_ok, stderr_of, stdout_of, DataDir, Server};
use common::store::{test_database, Schema};
use serde_json::Value;

/// How long a node may take, once the database is back, to be ready and record again, and a
/// node to see what another committed: far above what either takes (about a second: the
/// follower's poll and the listener's reconnect), so that a loaded machine does not fail it,
/// while a node that never recovers fails in reasonable time.
const RECOVERY: Duration = Duration::from_secs(30);

/// Enough live personal keys for any load here (a scope holds 1000 by default).
const MANY_KEYS: &str = "100000";

/// `keyledger init` on the schema, directly: the owner's token.
fn init(schema: &Schema) -> String {
    cli_ok(&schema.with(&["init", "--org", "Acme", "--owner", "owner@acme.test"]))
}

/// A `serve` process on `schema`, reaching the database at `url` (directly, or through a
/// proxy), on 127.0.0.1:0. It logs warnings, and what the service and the store say when
/// they recover.
struct Node {
    /// `None` once stopped or killed.
    server: Option<Server>,
    /// Never written to: a node on PostgreSQL keeps nothing in --data.
    _data: DataDir,
}

impl Node {
    fn start(url: &str, schema: &Schema) -> Node {
        let data = DataDir::new();
        let args = ["--database-url", url, "--database-schema", &schema.name, "--max-keys-per-scope", MANY_KEYS];
        let server = Server::start_logging(&data, &args, "warn,keyledger::service=info,keyledger::ledger=info");
        assert!(server.owner_token().is_none(), "the schema was initialized by `init`");
        Node { server: Some(server), _data: data }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("a running node")
    }

    /// `kill -9`.
    fn kill9(mut self) {
        self.server.take().expect("a running node").kill9();
    }

    /// Stops the node cleanly and prints what it logged, under `name`: how its follower,
    /// listener and writer fared is read there.
    fn stop(mut self, name: &str) {
        print_log(name, &self.server.take().expect("a running node").stop());
    }
}

impl Drop for Node {
    /// A node of a failing test is killed (as `Server` does); what it logged says why.
    fn drop(&mut self) {
        if let Some(server) = self.server.as_ref().filter(|_| std::thread::panicking()) {
            print_log(&format!("node {} of the failed test", server.base), &server.stderr_so_far());
        }
    }
}

/// Prints what a node logged, but for the line per failed request (the answers say it), and
/// at most [`LOG_LINES`] lines.
fn print_log(name: &str, log: &[String]) {
    let lines: Vec<&str> = log.iter().map(String::as_str).filter(|line| !line.contains("tower_http")).collect();
    let more = lines.len().saturating_sub(LOG_LINES);
    let shown = lines[..lines.len() - more].join("\n");
    eprintln!("--- {name} logged ---\n{shown}\n--- {more} more lines; end of {name} ---");
}

const LOG_LINES: usize = 100;

/// Creates a personal key that must be created; its id and token.
async fn create_key(node: &Node, token: &str, name: &str) -> (String, String) {
    let resp = create_ok(node.server(), token, personal(name)).await;
    (resp.id(), resp.token())
}

async fn readyz(node: &Node) -> Resp {
    send(node.server(), "GET", "/readyz", None, None, None).await
}

/// Polls `attempt` until it gives `Some`; fails naming `what` (and the last attempt's
/// answer, from `last`) after [`RECOVERY`].
async fn until<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + RECOVERY;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(last) => assert!(Instant::now() < deadline, "{what}: not within {RECOVERY:?}; last: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `node`'s `/readyz` answers `status`.
async fn until_readyz(node: &Node, status: u16, what: &str) {
    until(what, || async {
        let resp = readyz(node).await;
        if resp.status == status {
            Ok(())
        } else {
            Err(format!("{} {}", resp.status, resp.text))
        }
    })
    .await;
}

/// Waits until `node` shows key `id` to its own `token`.
async fn until_known(node: &Node, token: &str, id: &str, what: &str) {
    until(what, || async {
        let resp = show(node.server(), token, id).await;
        if resp.status == 200 {
            Ok(())
        } else {
            Err(format!("{} {}", resp.status, resp.text))
        }
    })
    .await
}

/// A 503 for a write the node cannot record now: a JSON:API error document, and a
/// `Retry-After` of whole seconds.
fn assert_unavailable(resp: &Resp, what: &str) {
    assert_error_doc(resp, 503);
    let retry_after = resp.headers.get("retry-after").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    assert_retry_after(retry_after.as_deref(), &format!("{what}: {}", resp.text));
}

fn assert_retry_after(retry_after: Option<&str>, what: &str) {
    let value = retry_after.unwrap_or_else(|| panic!("{what}: a 503 without Retry-After"));
    assert!(value.parse::<u64>().is_ok(), "{what}: Retry-After {value:?} is not a whole number of seconds");
}

/// The keys the schema's log holds, by name (`keyledger export`, directly).
fn logged_keys(schema: &Schema) -> HashMap<String, Vec<String>> {
    let out = cli(&schema.with(&["export"]));
    assert!(out.status.success(), "export: {}", stderr_of(&out));
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    for line in stdout_of(&out).lines().filter(|line| !line.is_empty()) {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("an export line that is not JSON ({e}): {line}"));
        if event["type"] == "ApiKeyCreated" {
            let name = event["payload"]["name"].as_str().expect("a created key's name").to_owned();
            let id = event["payload"]["api_key_id"].as_str().expect("a created key's id").to_owned();
            by_name.entry(name).or_default().push(id);
        }
    }
    by_name
}

/// `keyledger audit verify` on the schema, directly: the log is intact.
fn assert_log_intact(schema: &Schema) {
    let verified = cli_ok(&schema.with(&["audit", "verify"]));
    assert!(verified.contains("log intact"), "{verified}");
}

/// Every acknowledged create is in the log exactly once, under its id; every create that was
/// not (answered 503, or not at all) is there at most once.
fn assert_logged(schema: &Schema, acked: &[Acked], unsure: &[String]) -> HashMap<String, Vec<String>> {
    let by_name = logged_keys(schema);
    for key in acked {
        assert_eq!(by_name.get(&key.name), Some(&vec![key.id.clone()]), "acknowledged {} ({}) in the log once", key.name, key.id);
    }
    for name in unsure {
        assert!(by_name.get(name).is_none_or(|ids| ids.len() == 1), "{name} recorded more than once: {:?}", by_name[name]);
    }
    by_name
}

/// A node's writer agrees with the log about creates whose outcome its client never learned:
/// the name of one the log holds is taken, any other is free (and now created).
async fn assert_writer_agrees_with_log(node: &Node, owner: &str, unsure: &[String], by_name: &HashMap<String, Vec<String>>, what: &str) {
    for name in unsure {
        let resp = create(node.server(), owner, personal(name)).await;
        match by_name.get(name) {
            Some(ids) => assert_taken(resp.status, &resp.json, &format!("{what}: {name} is in the log as {}", ids[0])),
            None => assert_eq!(resp.status, 201, "{what}: {name} is not in the log, yet: {}", resp.text),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_refuses_writes_with_retry_after_reads_from_memory_and_recovers_by_itself() {
    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "faults");
    let owner = init(&schema);
    let (proxy, through) = Proxy::for_database(&url);
    let cut_off = Node::start(&through, &schema);
    let direct = Node::start(&url, &schema);

    let mut made = Vec::new();
    for n in 0..3 {
        made.push(create_key(&cut_off, &owner, &format!("before the cut {n}")).await);
    }
    assert_eq!(readyz(&cut_off).await.status, 200, "ready before the cut");

    proxy.cut();
    let cut_at = Instant::now();
    let refused = create(cut_off.server(), &owner, personal("during the cut")).await;
    assert_unavailable(&refused, "a create while the database is cut off");
    for (id, token) in &made {
        let resp = show(cut_off.server(), token, id).await;
        assert_eq!(resp.status, 200, "a read while the database is cut off answers from memory: {}", resp.text);
    }
    let not_ready = readyz(&cut_off).await;
    assert_eq!(not_ready.status, 503, "not ready while the database is cut off: {}", not_ready.text);
    // Meanwhile the other node records; the cut-off one learns of it once back.
    let elsewhere = create_key(&direct, &owner, "made elsewhere during the cut").await;
    eprintln!("cut for {:?}: create 503, reads 200, /readyz 503", cut_at.elapsed());

    proxy.restore();
    let restored_at = Instant::now();
    until_readyz(&cut_off, 200, "ready again after the restore").await;
    let ready_after = restored_at.elapsed();
    // It catches up by itself (its follower), before it records anything of its own.
    until_known(&cut_off, &elsewhere.1, &elsewhere.0, "the key made elsewhere during the cut, on the node that was cut off").await;
    let caught_up_after = restored_at.elapsed();
    let mut attempt = 0;
    let after = until("a create recorded again after the restore", || {
        attempt += 1;
        let name = format!("after the cut {attempt}");
        let (server, owner) = (cut_off.server(), &owner);
        async move {
            let resp = create(server, owner, personal(&name)).await;
            if resp.status == 201 {
                Ok((resp.id(), resp.token()))
            } else {
                Err(format!("{} {}", resp.status, resp.text))
            }
        }
    })
    .await;
    let writes_after = restored_at.elapsed();
    made.push(after);
    eprintln!("after the restore: ready in {ready_after:?}, caught up in {caught_up_after:?}, recording in {writes_after:?}");

    // Every key the cut-off node acknowledged is known to the node that never was.
    for (id, token) in &made {
        until_known(&direct, token, id, "a key the cut-off node acknowledged, on the other node").await;
    }
    let by_name = logged_keys(&schema);
    assert!(by_name.get("during the cut").is_none_or(|ids| ids.len() == 1), "{by_name:?}");
    assert_log_intact(&schema);
    cut_off.stop("the node behind the proxy");
    direct.stop("the direct node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_writers_through_repeated_cuts_lose_no_acknowledged_key_and_the_log_stays_intact() {
    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "faults");
    let owner = init(&schema);
    let (proxy, through) = Proxy::for_database(&url);
    let node = Node::start(&through, &schema);

    let started = Instant::now();
    let load = Load::start_through_outages(node.server(), &owner, "cuts", 8);
    // A cut wherever the writes are, then cuts an append's COMMIT never reaches, and one it
    // reaches but whose answer never comes back: the node cannot know that it committed.
    for (round, at) in [None, Some(Cut::Before), Some(Cut::After)].into_iter().enumerate() {
        // Writes flow (again), then the cut lands in the middle of them and is felt.
        load.wait_for_acks(load.acks() + 20, RECOVERY).await;
        let unavailable = load.unavailable();
        match at {
            None => proxy.cut(),
            Some(when) => {
                proxy.cut_at(&APPEND_COMMIT, when);
                until("an append's COMMIT to cut at", || async {
                    if proxy.is_cut() {
                        Ok(())
                    } else {
                        Err("not yet".into())
                    }
                })
                .await;
            }
        }
        load.wait_for_unavailable(unavailable + 4, RECOVERY).await;
        proxy.restore();
        eprintln!("cut {round} ({at:?}): {} acknowledged, {} answered 503 so far", load.acks(), load.unavailable());
    }
    load.wait_for_acks(load.acks() + 20, RECOVERY).await;
    let outcome = load.finish().await;
    eprintln!(
        "through 3 cuts in {:?}: {} acknowledged, {} answered 503",
        started.elapsed(),
        outcome.acked.len(),
        outcome.unavailable.len()
    );
    assert!(outcome.refused.is_empty(), "creates refused otherwise than 503: {:?}", outcome.refused);
    assert!(outcome.unanswered.is_empty(), "creates left unanswered: {:?}", outcome.unanswered);
    for Unavailable { name, retry_after, body } in &outcome.unavailable {
        assert_eq!(body["errors"][0]["status"], "503", "{name}: {body}");
        assert_retry_after(retry_after.as_deref(), &format!("{name}: {body}"));
    }

    let unsure: Vec<String> = outcome.unavailable.iter().map(|u| u.name.clone()).collect();
    let by_name = assert_logged(&schema, &outcome.acked, &unsure);
    let committed = unsure.iter().filter(|name| by_name.contains_key(*name)).count();
    eprintln!("{committed} of the creates answered 503 were committed nonetheless (a cut after their COMMIT)");
    assert_log_intact(&schema);
    assert_writer_agrees_with_log(&node, &owner, &unsure, &by_name, "the node that was cut off").await;
    let direct = Node::start(&url, &schema);
    assert_acked_keys_intact(direct.server(), &owner, &outcome.acked, "on a node connected directly").await;
    assert_eq!(readyz(&node).await.status, 200);
    create_key(&node, &owner, "after the load").await;
    node.stop("the node behind the proxy");
    direct.stop("the direct node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_node_under_eight_writers_keeps_every_acknowledged_key_on_the_other() {
    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "faults");
    let owner = init(&schema);
    let a = Node::start(&url, &schema);
    let b = Node::start(&url, &schema);

    let started = Instant::now();
    let load = Load::start(a.server(), &owner, "kill", 8);
    load.wait_for_acks(150, Duration::from_secs(60)).await;
    a.kill9();
    let outcome = load.finish().await;
    eprintln!("kill -9 after {:?}: {} acknowledged, {} unanswered", started.elapsed(), outcome.acked.len(), outcome.unanswered.len());
    assert!(outcome.refused.is_empty(), "creates refused before the kill: {:?}", outcome.refused);

    let by_name = assert_logged(&schema, &outcome.acked, &outcome.unanswered);
    let committed = outcome.unanswered.iter().filter(|name| by_name.contains_key(*name)).count();
    eprintln!("{committed} of the unanswered creates were committed (whole) before the kill");
    assert_log_intact(&schema);
    // b follows what a committed (eventual: within a notification), then knows it whole.
    for key in &outcome.acked {
        until_known(&b, &key.token, &key.id, "a key the killed node acknowledged, on the other node").await;
    }
    assert_acked_keys_intact(b.server(), &owner, &outcome.acked, "on b after a was killed").await;
    assert_writer_agrees_with_log(&b, &owner, &outcome.unanswered, &by_name, "b, about a's unanswered creates").await;
    create_key(&b, &owner, "on b after the kill").await;

    let a = Node::start(&url, &schema);
    for key in &outcome.acked {
        let resp = show(a.server(), &key.token, &key.id).await;
        assert_eq!(resp.status, 200, "{} on a restarted: {}", key.name, resp.text);
    }
    create_key(&a, &owner, "on a after its restart").await;
    assert_log_intact(&schema);
    a.stop("a, restarted");
    b.stop("b");
}

/// The harness itself: through the proxy a client queries; a cut ends its session and
/// refuses new ones; after the restore a new session queries again.
#[test]
fn the_proxy_forwards_cuts_and_restores() {
    let Some(url) = test_database() else { return };
    let (proxy, through) = Proxy::for_database(&url);
    let query = |client: &mut postgres::Client| client.query_one("SELECT 1::INT", &[]).map(|row| row.get::<_, i32>(0));
    let mut client = postgres::Client::connect(&through, postgres::NoTls).expect("connect through the proxy");
    assert_eq!(query(&mut client).expect("a query through the proxy"), 1);
    assert_eq!(proxy.live(), 1);
    proxy.cut();
    assert!(query(&mut client).is_err(), "a cut ends a live session");
    assert!(postgres::Client::connect(&through, postgres::NoTls).is_err(), "a cut refuses new sessions");
    assert_eq!(proxy.live(), 0);
    proxy.restore();
    let mut again = postgres::Client::connect(&through, postgres::NoTls).expect("connect after the restore");
    assert_eq!(query(&mut again).expect("a query after the restore"), 1);

    // A cut before an append's COMMIT: nothing committed; after it: committed, unanswered.
    let schema = Schema::new(&url, "proxy");
    let mut direct = postgres::Client::connect(&url, postgres::NoTls).expect("connect directly");
    direct.batch_execute(&format!("CREATE SCHEMA {0}; CREATE TABLE {0}.events (n INT)", schema.name)).expect("a table");
    for (n, when) in [(1, Cut::Before), (2, Cut::After)] {
        let mut client = postgres::Client::connect(&through, postgres::NoTls).expect("connect through the proxy");
        client.batch_execute(&format!("SET search_path TO {}", schema.name)).expect("search path");
        proxy.cut_at(&APPEND_COMMIT, when);
        client.batch_execute("BEGIN").expect("begin");
        client.batch_execute("COMMIT").expect("a COMMIT after no insert of events passes");
        client.batch_execute("BEGIN").expect("begin");
        client.execute("INSERT INTO events (n) VALUES ($1)", &[&n]).expect("insert");
        assert!(client.batch_execute("COMMIT").is_err(), "{when:?}: the COMMIT is not answered");
        assert!(proxy.is_cut());
        proxy.restore();
        let mut count = || -> i64 {
            direct.query_one(&format!("SELECT count(*) FROM {}.events WHERE n = $1", schema.name), &[&n]).expect("count").get(0)
        };
        if when == Cut::Before {
            assert_eq!(count(), 0, "a COMMIT that never reached the server commits nothing");
        } else {
            // The server may still be reading it.
            let deadline = Instant::now() + RECOVERY;
            while count() == 0 {
                assert!(Instant::now() < deadline, "a COMMIT that reached the server commits");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The serving lock (a session of its own, see `ledger::postgres::locks`) dies with the
/// connection a cut ends; a node that serves again once the database is back must hold it
/// again, or a command that needs the ledger alone (a repairing `rebuild`, an `import`) runs
/// beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_holds_the_ledger_again_once_back() {
    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "faults");
    init(&schema);
    let (proxy, through) = Proxy::for_database(&url);
    let node = Node::start(&through, &schema);
    let refused = |out: &std::process::Output| !out.status.success() && stderr_of(out).contains("is refused while nodes serve this ledger");
    assert!(refused(&cli(&schema.with(&["rebuild"]))), "refused while the node serves");

    proxy.cut();
    until_readyz(&node, 503, "not ready while cut off").await;
    proxy.restore();
    until_readyz(&node, 200, "ready again after the restore").await;
    let pid = format!(":{} from ", node.server().pid());
    until("a repairing rebuild refused again, naming the node", || {
        let out = cli(&schema.with(&["rebuild"]));
        let named = refused(&out) && stderr_of(&out).contains(&pid);
        async move {
            if named {
                Ok(())
            } else {
                Err(format!("rebuild exit {:?}: {}{}", out.status.code(), stdout_of(&out), stderr_of(&out)))
            }
        }
    })
    .await;
    node.stop("the node behind the proxy");
}
