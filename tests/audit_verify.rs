//! `keyledger audit verify` and `keyledger audit checkpoint` on real data directories: an intact
//! log verifies, a flipped byte is found at its position, a checkpoint is extended by later
//! events, and a rewritten, truncated or foreign history — or a tampered checkpoint — fails
//! the check that says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::ledger::{damage_event, open_stopped, truncate_log};
use common::server::{run_keyledger, DataDir};
use common::store::sled_only;
use keyledger::ledger::chain::{self, ChainHead, Replay};
use keyledger::ledger::checkpoint::KEY_FILE;
use keyledger::ledger::{Commit, SledStorage, Storage, StoredEvent};

/// The variables that change what these commands do; none may leak in from the caller.
/// `keyledger <args>` with `envs` (and no inherited `KEYLEDGER_*`, such as an audit key).
fn keyledger(args: &[&str], envs: &[(&str, &str)]) -> Output {
    run_keyledger(args, envs, Path::new("."), Duration::from_secs(120))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed ({}): {}", out.status, stderr(&out));
    stdout(&out)
}

/// Asserts exit code 1 with a reason on stderr and no panic; returns stderr.
fn fails(out: Output, what: &str) -> String {
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{what} must exit 1; stdout: {} stderr: {err}", stdout(&out));
    assert!(!err.contains("panicked"), "{what} panicked: {err}");
    err
}

fn verify(data: &DataDir, extra: &[&str]) -> Output {
    keyledger(&[&["audit", "verify", "--data", data.arg()], extra].concat(), &[])
}

/// `audit checkpoint`, written to a file in `dir` (which outlives the data directory's edits).
fn checkpoint(data: &DataDir, dir: &Path, name: &str) -> PathBuf {
    let note = ok(keyledger(&["audit", "checkpoint", "--data", data.arg()], &[]), "audit checkpoint");
    let path = dir.join(name);
    std::fs::write(&path, note).expect("write checkpoint");
    path
}

fn verifier_key(data: &DataDir) -> String {
    ok(keyledger(&["audit", "checkpoint", "--data", data.arg(), "--verifier-key"], &[]), "audit checkpoint --verifier-key")
        .trim()
        .to_owned()
}

fn issue_key(data: &DataDir, name: &str) {
    let out = keyledger(
        &["keys", "issue", "--data", data.arg(), "--org", "Acme", "--user", "alice@acme.test", "--name", name, "--expires-in", "30d"],
        &[],
    );
    ok(out, "keys issue");
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Every stored event, read straight from the store (no keyledger process may be running).
fn stored_events(data: &DataDir) -> Vec<StoredEvent> {
    let storage = open_stopped(data.path(), false);
    storage.events_from(1).collect::<Result<_, _>>().expect("read the log")
}

/// Rewrites history from `from` on and recomputes every later hash and `prev_hash`, so that
/// the chain is internally consistent again: only a checkpoint can tell. The log is cut
/// before `from` and the rewritten events are stored after the cut.
fn rewrite_history(data: &DataDir, from: u64) {
    let stored = stored_events(data);
    truncate_log(data.path(), from - 1);
    let storage = SledStorage::open_existing(data.path()).expect("open the ledger");
    let recorded: Vec<_> = Replay::new(stored.iter().cloned().map(Ok), ChainHead::genesis()).collect::<Result<_, _>>().expect("intact");
    let mut head = ChainHead::genesis();
    let mut rewritten = Vec::new();
    for (mut event, original) in recorded.into_iter().zip(&stored) {
        if event.position == from {
            event.request_id = "rewritten-by-someone-with-disk-access".into();
        }
        let sealed = if event.position < from { original.clone() } else { chain::seal(&event, head).expect("seal") };
        head = ChainHead { position: sealed.position, hash: sealed.hash };
        if event.position >= from {
            rewritten.push(sealed);
        }
    }
    storage.commit(Commit { events: rewritten.clone(), ..Commit::default() }).expect("store the rewrite");
    drop(storage);
    let now = stored_events(data);
    assert_eq!(now[..from as usize - 1], stored[..from as usize - 1], "history before the rewrite is kept");
    assert_eq!(now[from as usize - 1..], rewritten, "the rewrite is what is stored from {from} on");
}

#[test]
fn an_intact_log_verifies_with_its_event_count_and_head() {
    let data = DataDir::new();
    data.acme_and_globex();
    let events = stored_events(&data);
    let last = events.last().expect("events");
    let out = ok(verify(&data, &[]), "audit verify");
    assert!(out.contains(&format!("{} events", events.len())), "the summary gives the event count: {out}");
    assert!(out.contains(&format!("position {}, hash {}", last.position, last.hash)), "the summary gives the head: {out}");
}

#[test]
fn an_empty_log_verifies_and_says_it_is_empty() {
    let data = DataDir::new();
    drop(open_stopped(data.path(), true));
    let out = ok(verify(&data, &[]), "audit verify of an empty ledger");
    assert!(out.contains("empty") && out.contains("0 events"), "{out}");
    let err = fails(keyledger(&["audit", "checkpoint", "--data", data.arg()], &[]), "checkpoint of an empty log");
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn a_flipped_byte_is_found_at_its_position_with_its_stream() {
    if sled_only("damages an event in sled's pages") {
        return;
    }
    let data = DataDir::new();
    data.acme_and_globex();
    let position = 7;
    let stream = {
        let events = stored_events(&data);
        let envelope: serde_json::Value = serde_json::from_slice(&events[position as usize - 1].canonical).expect("json");
        envelope["stream"].as_str().expect("stream").to_owned()
    };
    damage_event(data.path(), position, |canonical| {
        // A letter of the payload's name changes case: the envelope still decodes, only the
        // hash can tell.
        let name = canonical.windows(8).position(|w| w == b"\"name\":\"").expect("a name in the payload");
        let i = name + 8;
        assert!(canonical[i].is_ascii_alphabetic());
        canonical[i] ^= 0x20;
    });
    let err = fails(verify(&data, &[]), "audit verify of a damaged log");
    assert!(err.contains(&format!("event {position} ")), "names the position: {err}");
    assert!(err.contains(&stream), "names the stream {stream}: {err}");
    assert!(err.contains("was altered: its stored hash is"), "says what differs: {err}");
}

#[test]
fn a_checkpoint_is_extended_by_later_events() {
    let data = DataDir::new();
    data.acme_and_globex();
    let keep = tempfile::tempdir().expect("tempdir");
    let before = stored_events(&data).len();
    let note_path = checkpoint(&data, keep.path(), "checkpoint.txt");
    let vkey = verifier_key(&data);

    let note = std::fs::read_to_string(&note_path).expect("read");
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(lines.len(), 5, "origin, size, hash, blank line, signature: {note:?}");
    assert!(lines[0].starts_with("keyledger/"), "{note}");
    assert_eq!(lines[1], before.to_string());
    assert!(lines[4].starts_with(&format!("\u{2014} {} ", lines[0])), "signed under the origin: {note}");
    assert!(vkey.starts_with(&format!("{}+", lines[0])), "the verifier key is named by the origin: {vkey}");

    issue_key(&data, "after the checkpoint");
    issue_key(&data, "and another");
    let after = stored_events(&data).len();
    assert!(after > before);

    for extra in [vec![], vec!["--verifier-key", &vkey]] {
        let out = ok(verify(&data, &[&["--checkpoint", path_arg(&note_path)], extra.as_slice()].concat()), "verify --checkpoint");
        assert!(out.contains("extends"), "{out}");
        assert!(out.contains(&format!("{after} events")), "{out}");
    }
}

#[test]
fn a_rewritten_history_fails_the_checkpoint_though_its_chain_is_consistent() {
    if sled_only("cuts sled's log to rewrite history") {
        return;
    }
    let data = DataDir::new();
    data.acme_and_globex();
    let keep = tempfile::tempdir().expect("tempdir");
    let note_path = checkpoint(&data, keep.path(), "checkpoint.txt");
    let vkey = verifier_key(&data);
    let size = stored_events(&data).len();

    rewrite_history(&data, 3);
    ok(verify(&data, &[]), "the rewritten chain is consistent on its own");
    let err = fails(verify(&data, &["--checkpoint", path_arg(&note_path), "--verifier-key", &vkey]), "verify a rewrite");
    assert!(err.contains("hash check failed"), "says which check failed: {err}");
    assert!(err.contains(&format!("at size {size}")), "{err}");
}

#[test]
fn a_truncated_log_fails_the_size_check() {
    if sled_only("cuts sled's log") {
        return;
    }
    let data = DataDir::new();
    data.acme_and_globex();
    let keep = tempfile::tempdir().expect("tempdir");
    let note_path = checkpoint(&data, keep.path(), "checkpoint.txt");
    let size = stored_events(&data).len() as u64;
    truncate_log(data.path(), size - 1);
    assert_eq!(stored_events(&data).len() as u64, size - 1, "the last event is gone");
    ok(verify(&data, &[]), "a prefix of the log is a consistent chain");
    let err = fails(verify(&data, &["--checkpoint", path_arg(&note_path)]), "verify a truncated log");
    assert!(err.contains("size check failed"), "{err}");
}

#[test]
fn another_ledgers_history_fails_the_origin_check() {
    let ours = DataDir::new();
    ours.acme_and_globex();
    let keep = tempfile::tempdir().expect("tempdir");
    let note_path = checkpoint(&ours, keep.path(), "checkpoint.txt");
    let vkey = verifier_key(&ours);

    let other = DataDir::new();
    other.acme_and_globex_of_its_own();
    let err = fails(verify(&other, &["--checkpoint", path_arg(&note_path), "--verifier-key", &vkey]), "verify another ledger");
    assert!(err.contains("origin check failed"), "{err}");
    // With the other ledger's own key the signature does not even match.
    let err = fails(verify(&other, &["--checkpoint", path_arg(&note_path)]), "verify with another ledger's key");
    assert!(err.contains("signature check failed"), "{err}");
}

#[test]
fn a_tampered_checkpoint_fails_the_signature_check() {
    let data = DataDir::new();
    data.acme_and_globex();
    let keep = tempfile::tempdir().expect("tempdir");
    let note_path = checkpoint(&data, keep.path(), "checkpoint.txt");
    let vkey = verifier_key(&data);
    let note = std::fs::read_to_string(&note_path).expect("read");

    // One character of the signature changed.
    let signature_start = note.rfind(' ').expect("signature") + 1;
    let mut bytes = note.clone().into_bytes();
    bytes[signature_start + 10] = if bytes[signature_start + 10] == b'A' { b'B' } else { b'A' };
    let forged_signature = keep.path().join("forged-signature.txt");
    std::fs::write(&forged_signature, bytes).expect("write");
    // A body claiming fewer events, with the original signature.
    let lines: Vec<&str> = note.split('\n').collect();
    let smaller = (lines[1].parse::<u64>().expect("size") - 1).to_string();
    let forged_body = keep.path().join("forged-body.txt");
    std::fs::write(&forged_body, [lines[0], &smaller, &lines[2..].join("\n")].join("\n")).expect("write");

    for forged in [&forged_signature, &forged_body] {
        for extra in [vec![], vec!["--verifier-key", &vkey]] {
            let err = fails(verify(&data, &[&["--checkpoint", path_arg(forged)], extra.as_slice()].concat()), "verify a forged checkpoint");
            assert!(err.contains("signature check failed"), "{}: {err}", forged.display());
        }
    }
    // The untouched one still passes: the failures above are the tampering's.
    ok(verify(&data, &["--checkpoint", path_arg(&note_path), "--verifier-key", &vkey]), "verify the original");
}

#[test]
fn the_signing_key_is_made_at_init_private_and_the_environment_overrides_it() {
    if sled_only("the audit key file in the data dir (PostgreSQL keeps none)") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let data = DataDir::new();
    data.acme_and_globex();
    let key_file = data.path().join(KEY_FILE);
    let mode = std::fs::metadata(&key_file).expect("init creates the key file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    let file_vkey = verifier_key(&data);

    let seed = "5a".repeat(32);
    let env = [("KEYLEDGER_AUDIT_KEY", seed.as_str())];
    let env_vkey = ok(keyledger(&["audit", "checkpoint", "--data", data.arg(), "--verifier-key"], &env), "vkey from env").trim().to_owned();
    assert_ne!(env_vkey, file_vkey, "KEYLEDGER_AUDIT_KEY takes precedence over the key file");
    let keep = tempfile::tempdir().expect("tempdir");
    let note = ok(keyledger(&["audit", "checkpoint", "--data", data.arg()], &env), "checkpoint with the env key");
    assert!(!note.contains(&seed), "the seed is never printed");
    let note_path = keep.path().join("env-signed.txt");
    std::fs::write(&note_path, note).expect("write");
    ok(verify(&data, &["--checkpoint", path_arg(&note_path), "--verifier-key", &env_vkey]), "verify with the env key's vkey");
    let err = fails(verify(&data, &["--checkpoint", path_arg(&note_path)]), "verify with the key file");
    assert!(err.contains("signature check failed"), "{err}");

    let err = fails(keyledger(&["audit", "checkpoint", "--data", data.arg()], &[("KEYLEDGER_AUDIT_KEY", "not hex")]), "bad env key");
    assert!(err.contains("KEYLEDGER_AUDIT_KEY") && !err.contains("not hex"), "names the variable, not its value: {err}");
}

#[test]
fn a_ledger_without_a_key_gets_one_at_its_first_checkpoint() {
    if sled_only("the audit key file in the data dir (PostgreSQL keeps none)") {
        return;
    }
    let data = DataDir::new();
    data.acme_and_globex();
    let key_file = data.path().join(KEY_FILE);
    std::fs::remove_file(&key_file).expect("an older data directory has no key");
    let out = keyledger(&["audit", "checkpoint", "--data", data.arg()], &[]);
    let err = stderr(&out);
    let note = ok(out, "checkpoint without a key file");
    assert!(err.contains("created") && err.contains(KEY_FILE), "says it created a key: {err}");
    assert!(key_file.is_file());
    let keep = tempfile::tempdir().expect("tempdir");
    let note_path = keep.path().join("checkpoint.txt");
    std::fs::write(&note_path, note).expect("write");
    ok(verify(&data, &["--checkpoint", path_arg(&note_path)]), "verify with the new key");
}
