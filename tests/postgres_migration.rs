//! Moving a ledger between sled and PostgreSQL with real processes: `export` from sled,
//! `import --database-url` into an empty schema, `export` again gives the same bytes and
//! `audit verify` the same head, `rebuild --check` finds the imported projections clean, the
//! keys authenticate when a node serves the schema, and the same way back into sled. A file
//! that breaks the chain leaves no schema behind; a schema that holds a ledger is refused.
//! Runs only when `KEYLEDGER_TEST_DATABASE_URL` names a server (e.g.
//! postgres://postgres@127.0.0.1:5432/test); the schemas it makes are dropped afterwards.

mod common;

use std::path::Path;

use common::http::{get, Resp};
use common::jsonapi::durable_attributes;
use common::server::{cli, cli_ok, ledger_with_a_key_of_each_kind, DataDir, Server};
use common::store::{test_database, Schema};

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// The `head: position N, hash H` line of `audit verify`.
fn verified_head(stdout: &str) -> String {
    stdout.lines().find(|line| line.starts_with("head: ")).unwrap_or_else(|| panic!("no head line in {stdout:?}")).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_to_postgres_and_back_keeps_every_byte_and_the_head() {
    let Some(url) = test_database() else { return };
    let (sled, _tokens, created) = ledger_with_a_key_of_each_kind();
    let schema = Schema::new(&url, "migr");
    let files = tempfile::tempdir().expect("temp dir");
    let from_sled = files.path().join("from-sled.jsonl");
    let from_postgres = files.path().join("from-postgres.jsonl");
    let back_in_sled = files.path().join("back-in-sled.jsonl");

    // sled → PostgreSQL.
    cli_ok(&["export", "--data", sled.arg(), "--output", arg(&from_sled)]);
    let sled_head = verified_head(&cli_ok(&["audit", "verify", "--data", sled.arg()]));
    let imported = cli(&schema.with(&["import", arg(&from_sled)]));
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert!(String::from_utf8_lossy(&imported.stderr).contains(&format!("into schema {}", schema.name)), "{imported:?}");
    cli_ok(&schema.with(&["export", "--output", arg(&from_postgres)]));
    let exported = std::fs::read(&from_sled).expect("read the sled export");
    assert!(exported == std::fs::read(&from_postgres).expect("read the PostgreSQL export"), "the export of the import is byte-identical");
    assert_eq!(verified_head(&cli_ok(&schema.with(&["audit", "verify"]))), sled_head, "the same head on PostgreSQL");
    let checked = cli_ok(&schema.with(&["rebuild", "--check"]));
    assert!(checked.contains("the stored projections match the log"), "{checked}");

    // The imported ledger serves the same keys to the same tokens.
    let unused = DataDir::new();
    let server = Server::start_with(&unused, &schema.with(&[]));
    assert!(server.owner_token().is_none(), "an imported ledger is not initialized again");
    for key in &created {
        let Resp { status, json: shown, .. } = get(&server, &key.token, &format!("/v1/api_keys/{}", key.id)).await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(durable_attributes(&shown), durable_attributes(&key.shown));
    }
    server.stop();

    // PostgreSQL → sled.
    let back = files.path().join("back");
    cli_ok(&["import", "--data", arg(&back), arg(&from_postgres)]);
    cli_ok(&["export", "--data", arg(&back), "--output", arg(&back_in_sled)]);
    assert!(exported == std::fs::read(&back_in_sled).expect("read the export of the way back"), "and byte-identical on the way back");
    assert_eq!(verified_head(&cli_ok(&["audit", "verify", "--data", arg(&back)])), sled_head);
    let checked = cli_ok(&["rebuild", "--check", "--data", arg(&back)]);
    assert!(checked.contains("the stored projections match the log"), "{checked}");

    // A schema that holds a ledger is refused, and keeps its ledger.
    let again = cli(&schema.with(&["import", arg(&from_sled)]));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a ledger"), "{again:?}");
    assert_eq!(verified_head(&cli_ok(&schema.with(&["audit", "verify"]))), sled_head);
}

#[test]
fn a_broken_file_leaves_no_schema_and_an_empty_schema_takes_a_good_one() {
    let Some(url) = test_database() else { return };
    let data = DataDir::new();
    cli_ok(&["init", "--data", data.arg(), "--org", "acme", "--owner", "alice@acme.test"]);
    cli_ok(&["keys", "issue", "--data", data.arg(), "--user", "alice@acme.test", "--name", "ci", "--expires-in", "30d"]);
    let files = tempfile::tempdir().expect("temp dir");
    let good = files.path().join("good.jsonl");
    cli_ok(&["export", "--data", data.arg(), "--output", arg(&good)]);
    let lines: Vec<Vec<u8>> =
        std::fs::read(&good).expect("read the export").split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    assert!(lines.len() >= 3, "the export holds a few events");

    // The last line edited: every line before it checks and was inserted, and still nothing
    // is committed; the schema the import created is gone again.
    let mut edited = lines.clone();
    let last = edited.len() - 1;
    let at = edited[last].iter().position(|b| *b == b'"').expect("a quote") + 1;
    edited[last][at] = if edited[last][at] == b'x' { b'y' } else { b'x' };
    let broken = files.path().join("broken.jsonl");
    std::fs::write(&broken, edited.join(&b'\n')).expect("write the broken file");
    let schema = Schema::new(&url, "migr");
    let refused = cli(&schema.with(&["import", arg(&broken)]));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains(&format!("line {}", lines.len())) && stderr.contains("nothing was imported"), "{stderr}");
    assert!(!schema.exists(), "a refused import leaves no schema");

    // A schema that exists and holds no ledger (made by hand, say) receives the import.
    let (url_owned, name) = (url.clone(), schema.name.clone());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url_owned, postgres::NoTls).expect("connect");
        client.batch_execute(&format!("CREATE SCHEMA {name}")).expect("create an empty schema");
    })
    .join()
    .expect("create the schema");
    cli_ok(&schema.with(&["import", arg(&good)]));
    let out = files.path().join("out.jsonl");
    cli_ok(&schema.with(&["export", "--output", arg(&out)]));
    assert!(std::fs::read(&out).expect("read") == std::fs::read(&good).expect("read"));
}
