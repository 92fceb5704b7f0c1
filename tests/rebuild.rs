//! `keyledger rebuild`: fresh projections from the log, compared with the stored ones
//! (`--check`, changing nothing) or swapped in; damage to a stored projection is found and
//! named, a rebuild repairs it, and the API answers exactly as before.

mod common;

use std::path::Path;
use std::process::Output;

use common::http::{get, Resp};
use common::ledger::{damage_event, open_sled, open_stopped};
use common::server::{cli, ledger_with_a_key_of_each_kind, CreatedKey, DataDir, Server, BIN};
use common::store::{point_at_store, sled_only};
use keyledger::ledger::{Commit, RowChange, Storage};
use keyledger::service::recovery::load_state;
use keyledger_projections::ProjectionId;
use serde_json::{json, Value};

fn rebuild(data: &DataDir, extra: &[&str]) -> Output {
    let mut args = vec!["rebuild", "--data", data.arg()];
    args.extend_from_slice(extra);
    cli(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_clean(data: &DataDir, extra: &[&str], what: &str) {
    let mut args = vec!["--check"];
    args.extend_from_slice(extra);
    let out = rebuild(data, &args);
    assert!(out.status.success(), "{what}: rebuild --check is not clean:\n{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("match the log"), "{what}: {}", stdout(&out));
}

/// Runs `rebuild --check` (plus `extra`), which must fail; returns stdout and stderr together.
fn assert_dirty(data: &DataDir, extra: &[&str], what: &str) -> String {
    let mut args = vec!["--check"];
    args.extend_from_slice(extra);
    let out = rebuild(data, &args);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "{what}: rebuild --check passed a damaged store:\n{text}");
    assert!(!text.contains("panicked"), "{what}: {text}");
    text
}

/// The exact bytes of the stored projection journal and checkpoints.
fn journal_bytes(data: &DataDir) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = open_sled(data.path());
    let tree = db.open_tree("ledger").expect("ledger tree");
    let mut entries = Vec::new();
    for prefix in [b"j", b"c"] {
        for entry in tree.scan_prefix(prefix) {
            let (k, v) = entry.expect("entry");
            entries.push((k.to_vec(), v.to_vec()));
        }
    }
    entries
}

/// Removes every journal entry (every stored projection row), keeping the checkpoints, so
/// the service would load empty projections as if they were current.
fn wipe_journal(data: &DataDir) {
    let db = open_sled(data.path());
    let tree = db.open_tree("ledger").expect("ledger tree");
    let keys: Vec<_> = tree.scan_prefix(b"j").keys().map(|k| k.expect("key")).collect();
    assert!(!keys.is_empty(), "the journal is empty already");
    for key in keys {
        tree.remove(key).expect("remove");
    }
    db.flush().expect("flush");
}

/// Appends a journal record that changes one stored row of `projection` (the first one),
/// as a bug in a projection's writer might: `None` deletes it, `Some` replaces its value.
/// On a thread of its own: the PostgreSQL client blocks, which it may not in a runtime.
fn damage_row(data: &DataDir, projection: &str, edit: impl FnOnce(&[u8]) -> Option<Vec<u8>> + Send) -> String {
    let projection = ProjectionId::from_name(projection).expect("a projection");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let storage = open_stopped(data.path(), false);
                let state = load_state(&*storage).expect("load");
                let key = state.row_keys(projection).into_iter().next().expect("a row to damage");
                let value = state.encode_row(projection, &key).expect("the row's value");
                let rows = vec![RowChange { projection, key: key.clone(), value: edit(&value) }];
                storage.commit(Commit { rows, ..Commit::default() }).expect("append the damage");
                key
            })
            .join()
            .expect("damaging a row failed")
    })
}

/// Appends a journal record adding a keys row the log never produced (a copy of the first
/// key under a new id); returns its row key.
fn add_extra_key_row(data: &DataDir) -> String {
    let storage = open_stopped(data.path(), false);
    let state = load_state(&*storage).expect("load");
    let first = state.row_keys(ProjectionId::KeysView).into_iter().next().expect("a keys row");
    let mut row: Value = serde_json::from_slice(&state.encode_row(ProjectionId::KeysView, &first).expect("value")).expect("JSON");
    let id = "5e1f0000-0000-4000-8000-000000000001";
    row["id"] = json!(id);
    let position = first.split('/').next().expect("positioned key");
    let key = format!("{position}/{id}");
    let value = serde_json::to_vec(&row).ok();
    storage
        .commit(Commit { rows: vec![RowChange { projection: ProjectionId::KeysView, key: key.clone(), value }], ..Commit::default() })
        .expect("append");
    key
}

/// What the API shows for each key, asked with the key's own token.
async fn shown(data: &DataDir, created: &[CreatedKey]) -> Vec<(u16, Value)> {
    let server = Server::start(data);
    let mut bodies = Vec::new();
    for key in created {
        let resp = get(&server, &key.token, &format!("/v1/api_keys/{}", key.id)).await;
        bodies.push((resp.status, resp.json));
    }
    server.stop();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_journal_is_found_and_rebuilt_and_the_api_answers_the_same() {
    if sled_only("wipes and reads sled's journal entries") {
        return;
    }
    let (data, _tokens, created) = ledger_with_a_key_of_each_kind();
    assert_clean(&data, &[], "a healthy store");
    let before = shown(&data, &created).await;
    assert!(before.iter().all(|(status, _)| *status == 200), "{before:?}");

    let untouched = journal_bytes(&data);
    wipe_journal(&data);
    let report = assert_dirty(&data, &[], "a wiped journal");
    for projection in ["directory", "name_index", "token_index", "keys", "service_accounts", "expiry_schedule"] {
        assert!(report.contains(&format!("{projection}: ")), "the report does not name {projection}:\n{report}");
    }
    assert!(report.contains("missing in live"), "{report}");
    // --check changed nothing: it is still dirty, with nothing journaled.
    assert!(journal_bytes(&data).iter().all(|(k, _)| k[0] != b'j'), "--check wrote rows");
    assert_ne!(journal_bytes(&data), untouched);

    let out = rebuild(&data, &[]);
    assert!(out.status.success(), "rebuild failed: {}", stderr(&out));
    assert_clean(&data, &[], "after the rebuild");
    assert_eq!(shown(&data, &created).await, before, "the API answers differently after the rebuild");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_row_is_named_and_a_rebuild_restores_what_the_api_showed() {
    let (data, tokens, created) = ledger_with_a_key_of_each_kind();
    let before = shown(&data, &created).await;

    let key = damage_row(&data, "keys", |value| {
        let mut row: Value = serde_json::from_slice(value).expect("a keys row is JSON");
        row["name"] = json!("hijacked");
        serde_json::to_vec(&row).ok()
    });
    let report = assert_dirty(&data, &[], "an altered keys row");
    assert!(report.contains(&key) && report.contains("differs"), "the altered row is not named:\n{report}");
    assert!(report.contains("keys: 1 row(s) differ"), "{report}");

    let out = rebuild(&data, &[]);
    assert!(out.status.success(), "rebuild failed: {}", stderr(&out));
    assert_clean(&data, &[], "after the rebuild");
    assert_eq!(shown(&data, &created).await, before);
    // Tokens minted offline authenticate too.
    let server = Server::start(&data);
    for (user, token) in &tokens {
        let Resp { status, json: body, .. } = get(&server, token, "/v1/api_keys/00000000-0000-0000-0000-000000000000").await;
        assert_eq!(status, 404, "{user}'s token no longer authenticates: {body}");
    }
    server.stop();
}

#[test]
fn rebuild_of_one_projection_touches_only_that_projection() {
    let data = DataDir::new();
    data.acme_and_globex();
    let keys_row = damage_row(&data, "keys", |_| None);
    let token_row = damage_row(&data, "token_index", |_| None);
    let extra_row = add_extra_key_row(&data);

    let only_keys = assert_dirty(&data, &["--projection", "keys"], "keys damaged");
    assert!(only_keys.contains(&keys_row), "{only_keys}");
    assert!(only_keys.lines().any(|l| l.contains(&extra_row) && l.contains("extra in live")), "{only_keys}");
    assert!(!only_keys.contains("token_index"), "--projection keys reported another projection:\n{only_keys}");

    let out = rebuild(&data, &["--projection", "keys"]);
    assert!(out.status.success(), "rebuild --projection keys failed: {}", stderr(&out));
    assert_clean(&data, &["--projection", "keys"], "keys after rebuilding keys");
    let rest = assert_dirty(&data, &[], "token_index still damaged");
    assert!(rest.contains(&token_row) && rest.contains("token_index: 1 row(s) differ"), "{rest}");
    assert!(!rest.contains("keys: "), "keys still differs after its rebuild:\n{rest}");

    let out = rebuild(&data, &["--projection", "token_index"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_clean(&data, &[], "after rebuilding both");
}

#[test]
fn an_unknown_projection_is_refused_with_the_valid_names() {
    let data = DataDir::new();
    data.acme_and_globex();
    let out = rebuild(&data, &["--projection", "key", "--check"]);
    assert!(!out.status.success());
    let message = stderr(&out);
    for name in ["directory", "name_index", "token_index", "keys", "service_accounts", "expiry_schedule"] {
        assert!(message.contains(name), "{name} missing from: {message}");
    }
}

#[test]
fn a_broken_chain_stops_the_rebuild_and_changes_nothing() {
    if sled_only("damages an event in sled's pages") {
        return;
    }
    let data = DataDir::new();
    data.acme_and_globex();
    let before = journal_bytes(&data);
    damage_event(data.path(), 3, |canonical| {
        let at = canonical.len() - 10;
        canonical[at] ^= 0x01;
    });
    for extra in [&["--check"][..], &[][..]] {
        let out = rebuild(&data, extra);
        assert!(!out.status.success(), "rebuild {extra:?} replayed a broken chain");
        assert!(stderr(&out).contains("position 3"), "{}", stderr(&out));
    }
    assert_eq!(journal_bytes(&data), before, "a failed rebuild changed the stored projections");
}

#[test]
fn rebuild_needs_a_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cli(&["rebuild", "--data", dir.path().to_str().expect("utf-8"), "--check"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no ledger"), "{}", stderr(&out));
    assert!(std::fs::read_dir(dir.path()).expect("read").next().is_none(), "rebuild created files in {}", Path::new(dir.path()).display());
}

#[test]
fn projections_behind_the_log_are_checked_as_the_service_loads_them_and_check_writes_nothing() {
    if sled_only("removes and reads sled's journal and checkpoint entries") {
        return;
    }
    let data = DataDir::new();
    data.acme_and_globex();
    {
        // No rows and no checkpoints: every projection is behind, as if new.
        let db = open_sled(data.path());
        let tree = db.open_tree("ledger").expect("ledger tree");
        let keys: Vec<_> = tree.scan_prefix(b"j").keys().chain(tree.scan_prefix(b"c").keys()).map(|k| k.expect("key")).collect();
        for key in keys {
            tree.remove(key).expect("remove");
        }
        db.flush().expect("flush");
    }
    assert!(journal_bytes(&data).is_empty());
    let out = rebuild(&data, &["--check"]);
    assert!(out.status.success(), "projections behind the log are caught up at start, not damaged: {}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("note: keys was stored up to position 0"), "{}", stdout(&out));
    assert!(journal_bytes(&data).is_empty(), "rebuild --check wrote to the store");

    let out = rebuild(&data, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!journal_bytes(&data).is_empty(), "rebuild stored nothing");
    assert_clean(&data, &[], "after the rebuild");
    assert!(!stdout(&rebuild(&data, &["--check"])).contains("note:"), "the checkpoints were not advanced");
}

#[test]
fn a_rebuild_of_a_healthy_store_writes_nothing_and_compact_rewrites_the_journal() {
    if sled_only("compares sled's journal bytes") {
        return;
    }
    let data = DataDir::new();
    data.acme_and_globex();
    let before = journal_bytes(&data);
    let out = rebuild(&data, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing written"), "{}", stdout(&out));
    assert_eq!(journal_bytes(&data), before, "a rebuild of a healthy store changed the stored projections");

    let out = rebuild(&data, &["--compact"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("compacted"), "{}", stdout(&out));
    let records: std::collections::BTreeSet<Vec<u8>> =
        journal_bytes(&data).into_iter().filter(|(key, _)| key[0] == b'j').map(|(key, _)| key[..9].to_vec()).collect();
    assert_eq!(records.len(), 1, "--compact leaves the journal as one record");
    assert_clean(&data, &[], "after --compact");

    let out = rebuild(&data, &["--compact", "--check"]);
    assert!(!out.status.success(), "--compact --check must be refused: --check writes nothing");
}

/// A single-owner organization and `count` personal keys of its owner, written straight
/// through the library's writer (as `generate-ledger` does): enough rows that a compaction
/// takes a while.
fn ledger_of_many_keys(data: &DataDir, count: usize) {
    use keyledger::service::operator;
    use keyledger::service::rules::create_api_key::{CreateApiKey, NewApiKey, Requester};
    use keyledger::service::rules::directory::DirectoryFile;
    use keyledger::service::token::TokenFormat;
    use keyledger::service::writer::{Command, Writer};

    let storage: std::sync::Arc<dyn Storage> = std::sync::Arc::from(open_stopped(data.path(), true));
    let mut writer = Writer::new(std::sync::Arc::clone(&storage), load_state(&*storage).expect("load")).expect("writer");
    let tokens = TokenFormat::new("rootly").expect("token format");
    let owner = "owner@many.test";
    operator::initialize(&mut writer, &[DirectoryFile::single_owner("Many", owner)], &tokens).expect("initialize");
    let expires_at = (chrono::Utc::now() + chrono::Duration::days(90)).to_rfc3339();
    for first in (0..count).step_by(500) {
        let batch = (first..count.min(first + 500))
            .map(|n| {
                let create = CreateApiKey {
                    requester: Requester::Operator { organization: "Many".into(), email: owner.into() },
                    api_key_id: uuid::Uuid::new_v4(),
                    service_account_id: uuid::Uuid::new_v4(),
                    token_digest: tokens.mint().expect("mint").digest(),
                    attributes: NewApiKey {
                        name: Some(format!("key {n}")),
                        kind: Some("personal".into()),
                        expires_at: Some(expires_at.clone()),
                        ..NewApiKey::default()
                    },
                    // One owner holds them all: more than a scope may hold through the API.
                    max_keys_per_scope: usize::MAX,
                };
                (Command::CreateApiKey(create), format!("test-{n}").into())
            })
            .collect();
        for answer in writer.execute(batch) {
            answer.expect("create");
        }
    }
}

#[test]
fn a_compaction_killed_at_any_moment_leaves_the_stored_projections_as_the_log_says() {
    let data = DataDir::new();
    ledger_of_many_keys(&data, 4000);
    let before = load_state(&*open_stopped(data.path(), false)).expect("load");
    let started = std::time::Instant::now();
    let whole = rebuild(&data, &["--compact"]);
    let run = started.elapsed();
    assert!(whole.status.success(), "{}", stderr(&whole));
    let mut interrupted = 0;
    // Each kill lands at a different part of a run as long as the one above (reading,
    // folding, writing the new journal generation, switching to it); whichever it is, what
    // the service loads afterwards must be what it loaded before, and agree with the log.
    for percent in [10, 30, 50, 65, 80, 90, 97] {
        let args = ["rebuild", "--compact", "--data", data.arg()];
        let mut compaction = std::process::Command::new(BIN);
        point_at_store(&mut compaction, &args, &[], Path::new("."));
        let mut compaction =
            compaction.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("start rebuild");
        std::thread::sleep(run * percent / 100);
        if compaction.try_wait().expect("poll rebuild").is_none() {
            compaction.kill().expect("kill -9 the rebuild");
            interrupted += 1;
        }
        compaction.wait().expect("reap rebuild");
        let storage = open_stopped(data.path(), false);
        assert_eq!(load_state(&*storage).expect("load after the kill"), before, "killed at {percent} % of a run");
        drop(storage);
        assert_clean(&data, &[], &format!("a compaction killed at {percent} % of a run"));
    }
    assert!(interrupted > 0, "every compaction finished before its kill: the test proved nothing");
}
