//! One node on PostgreSQL, as a real process: `serve --database-url` initializes a schema,
//! keeps a key across a restart, and its `export` is byte for byte the export of the same
//! events imported into sled. Runs only when `KEYLEDGER_TEST_DATABASE_URL` names a server
//! (e.g. postgres://postgres@127.0.0.1:5432/test); the schema it makes is dropped afterwards.

mod common;

use common::http::*;
use common::jsonapi::*;
use common::server::*;
use common::store::{sled_only, test_database, Schema};
use serde_json::json;

#[tokio::test]
async fn one_node_on_postgres_keeps_keys_across_a_restart_and_exports_what_sled_would() {
    if sled_only("names its own schema and compares with a sled import: runs in the sled half") {
        return;
    }
    let Some(url) = test_database() else { return };
    let schema = Schema::new(&url, "node");
    // --data is given too (the harness always passes one) and must be left alone.
    let unused = DataDir::new();

    let server = Server::start_with(&unused, &schema.args());
    let owner = server.owner_token().expect("banner with the owner's token");
    let Resp { status, json: body, .. } =
        create(&server, &owner, json!({"name": "ci", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
    let token = body["data"]["attributes"]["token"].as_str().expect("token").to_owned();
    let path = format!("/v1/api_keys/{}", body["data"]["id"].as_str().expect("id"));
    let Resp { status, json: before, .. } = get(&server, &token, &path).await;
    assert_eq!(status, 200, "{before}");
    server.stop();

    let server = Server::start_with(&unused, &schema.args());
    assert!(server.owner_token().is_none(), "a restart finds the ledger: no new owner token");
    let Resp { status, json: after, .. } = get(&server, &token, &path).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(durable_attributes(&after), durable_attributes(&before), "the key reads back the same after a restart");
    server.stop();
    assert!(!unused.path().join("sled").exists(), "nothing was written to --data");

    let files = tempfile::tempdir().expect("temp dir");
    let from_postgres = files.path().join("postgres.jsonl");
    let from_sled = files.path().join("sled.jsonl");
    let sled_data = files.path().join("sled-data");
    let [flag, url_arg, schema_flag, schema_name] = ["--database-url", schema.url.as_str(), "--database-schema", schema.name.as_str()];
    cli_ok(&["audit", "verify", flag, url_arg, schema_flag, schema_name]);
    cli_ok(&["export", flag, url_arg, schema_flag, schema_name, "--output", path_arg(&from_postgres)]);
    cli_ok(&["import", "--data", path_arg(&sled_data), path_arg(&from_postgres)]);
    cli_ok(&["export", "--data", path_arg(&sled_data), "--output", path_arg(&from_sled)]);
    let exported = std::fs::read(&from_postgres).expect("read the PostgreSQL export");
    assert!(exported.split(|b| *b == b'\n').filter(|line| !line.is_empty()).count() >= 2, "the export holds the ledger's events");
    assert!(exported == std::fs::read(&from_sled).expect("read the sled export"), "the same bytes from either store");

    // An import goes only into an empty schema, and a database that is not there is one line.
    let refused = cli(&["import", flag, url_arg, schema_flag, schema_name, path_arg(&from_postgres)]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already holds a ledger"), "{refused:?}");
    let unreachable = cli(&["export", "--database-url", "postgres://keyledger:secret@127.0.0.1:1/ledger"]);
    let message = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success());
    assert!(message.contains("cannot connect to PostgreSQL at keyledger@127.0.0.1:1/ledger"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(!message.contains("secret") && !message.contains("panicked"), "{message}");
}

fn path_arg(path: &std::path::Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}
