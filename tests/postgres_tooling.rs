//! Commands beside serving nodes on PostgreSQL, with real processes: while `serve` runs on a
//! schema, the commands that read (`audit verify`, `audit log`, `export`, `rebuild --check`)
//! work, also while keys are being created; `directory apply` and `keys issue` record beside
//! it (each one more writer under the append lock), and the node sees what they recorded;
//! those that need the ledger alone (`init`, a repairing `rebuild`, `import`) are refused
//! naming the node, and work once it has stopped. And the audit signing key: `audit keygen` prints one, which
//! `KEYLEDGER_AUDIT_KEY` then takes. The PostgreSQL tests run only when
//! `KEYLEDGER_TEST_DATABASE_URL` names a server (e.g. postgres://postgres@127.0.0.1:5432/test);
//! the schemas they make are dropped afterwards.

mod common;

use std::process::{Command, Output};

use common::fixtures::fixture;
use common::http::{authenticates, create, in_days, Resp};
use common::server::{cli, cli_ok, stdout_of, DataDir, Server, BIN};
use common::store::{test_database, Schema};
use serde_json::json;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `args` is refused because a node serves the ledger, naming that node.
fn assert_refused_while_serving(args: &[&str], server: &Server) {
    let out = cli(args);
    let message = stderr(&out);
    assert!(!out.status.success(), "{args:?} ran while a node serves: {message}");
    assert!(message.contains("is refused while nodes serve this ledger"), "{args:?}: {message}");
    assert!(
        message.contains("keyledger serve ") && message.contains(&format!(":{} from ", server.pid())),
        "{args:?} names the node: {message}"
    );
}

/// `keyledger <args>` with `KEYLEDGER_AUDIT_KEY` set to `key` (or removed).
fn with_audit_key(args: &[&str], key: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("RUST_LOG");
    match key {
        Some(key) => command.env("KEYLEDGER_AUDIT_KEY", key),
        None => command.env_remove("KEYLEDGER_AUDIT_KEY"),
    };
    command.output().expect("run keyledger")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writers_run_beside_a_serving_node_and_repairs_wait_until_it_stops() {
    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "tool");
    let unused = DataDir::new();
    let server = Server::start_with(&unused, &schema.with(&[]));
    let owner = server.owner_token().expect("banner with the owner's token");

    // Reads, also while the node appends: every read sees one snapshot, so the stored
    // projections are compared with the log as of one moment.
    let appending = {
        let (base_server, owner) = (&server, owner.clone());
        async move {
            for n in 0..20 {
                let Resp { status, json: body, .. } =
                    create(base_server, &owner, json!({"name": format!("ci-{n}"), "kind": "personal", "expires_at": in_days(30)})).await;
                assert_eq!(status, 201, "{body}");
            }
        }
    };
    let reading = tokio::task::spawn_blocking({
        let args: Vec<String> = schema.with(&[]).iter().map(|s| s.to_string()).collect();
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            for _ in 0..3 {
                let checked = cli_ok(&[&["rebuild", "--check"], args.as_slice()].concat());
                assert!(checked.contains("the stored projections match the log"), "{checked}");
                let verified = cli_ok(&[&["audit", "verify"], args.as_slice()].concat());
                assert!(verified.contains("log intact"), "{verified}");
            }
        }
    });
    appending.await;
    reading.await.expect("the reads beside the appends");
    let exported = cli(&schema.with(&["export"]));
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert!(exported.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() >= 22);
    let log = cli_ok(&schema.with(&["audit", "log"]));
    assert!(log.contains("ci-19"), "{log}");

    // Writers beside the node: a directory change and a key issued to a user it adds, both
    // seen by the node (its follower folds them) within a bound far above the measured lag.
    let directory = fixture("directory.example.json");
    let directory = directory.to_str().expect("utf-8 fixture path");
    let files = tempfile::tempdir().expect("temp dir");
    let export_file = files.path().join("ledger.jsonl");
    std::fs::write(&export_file, &exported.stdout).expect("write the export");
    let export_file = export_file.to_str().expect("utf-8 temp path");
    let applied = cli(&schema.with(&["directory", "apply", directory]));
    assert!(applied.status.success(), "directory apply beside a node: {}", stderr(&applied));
    assert!(stderr(&applied).contains("directory applied"), "{}", stderr(&applied));
    let issue = ["keys", "issue", "--org", "Acme", "--user", "alice@acme.test", "--name", "offline", "--expires-in", "1d"];
    let issued = cli_ok(&schema.with(&issue));
    assert!(issued.starts_with("rootly_"), "{issued}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !authenticates(&server, &issued).await {
        assert!(std::time::Instant::now() < deadline, "the node never saw the key issued beside it");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let taken = cli(&schema.with(&issue));
    assert!(!taken.status.success(), "the same name again is refused, as the rules say: {}", stdout_of(&taken));

    // Changes that need the ledger alone are refused, naming the node.
    assert_refused_while_serving(&schema.with(&["init", "--org", "other", "--owner", "bob@other.test"]), &server);
    assert_refused_while_serving(&schema.with(&["rebuild"]), &server);
    assert_refused_while_serving(&schema.with(&["import", export_file]), &server);

    // Once the node has stopped, they run.
    server.stop();
    let rebuilt = cli_ok(&schema.with(&["rebuild"]));
    assert!(rebuilt.contains("already match the log"), "{rebuilt}");
    // A serve started again holds the ledger again.
    let server = Server::start_with(&unused, &schema.with(&[]));
    assert_refused_while_serving(&schema.with(&["rebuild"]), &server);
    server.kill9();
    // A node that dies releases the ledger with its session.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = cli(&schema.with(&["rebuild"]));
        if out.status.success() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still refused after the node died: {}", stderr(&out));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn audit_keygen_prints_a_fresh_key_that_signs_checkpoints_on_postgres() {
    let first = with_audit_key(&["audit", "keygen"], None);
    assert!(first.status.success(), "{}", stderr(&first));
    let key = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(key.lines().count(), 1, "one line on stdout: {key:?}");
    let key = key.trim().to_owned();
    assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()), "a 32-byte seed in hex: {key:?}");
    assert!(stderr(&first).contains("KEYLEDGER_AUDIT_KEY"), "{}", stderr(&first));
    let second = with_audit_key(&["audit", "keygen"], None);
    assert_ne!(String::from_utf8_lossy(&second.stdout).trim(), key, "every key is new");

    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "tool");
    // Without a key, init says how to make one, and checkpoint refuses saying why.
    let init = with_audit_key(&schema.with(&["init", "--org", "acme", "--owner", "alice@acme.test"]), None);
    assert!(init.status.success(), "{}", stderr(&init));
    assert!(stderr(&init).contains("keyledger audit keygen"), "{}", stderr(&init));
    let unsigned = with_audit_key(&schema.with(&["audit", "checkpoint"]), None);
    assert!(!unsigned.status.success());
    assert!(stderr(&unsigned).contains("keyledger audit keygen") && stderr(&unsigned).contains("re-sign"), "{}", stderr(&unsigned));

    // With the generated key: a checkpoint, checked against the key's verifier.
    let signed = with_audit_key(&schema.with(&["audit", "checkpoint"]), Some(&key));
    assert!(signed.status.success(), "{}", stderr(&signed));
    let vkey = with_audit_key(&schema.with(&["audit", "checkpoint", "--verifier-key"]), Some(&key));
    assert!(vkey.status.success(), "{}", stderr(&vkey));
    let files = tempfile::tempdir().expect("temp dir");
    let note = files.path().join("checkpoint.txt");
    std::fs::write(&note, &signed.stdout).expect("write the checkpoint");
    let vkey = String::from_utf8_lossy(&vkey.stdout).trim().to_owned();
    let verified = with_audit_key(
        &schema.with(&["audit", "verify", "--checkpoint", note.to_str().expect("utf-8 temp path"), "--verifier-key", &vkey]),
        None,
    );
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("the log extends it"), "{}", String::from_utf8_lossy(&verified.stdout));
}
