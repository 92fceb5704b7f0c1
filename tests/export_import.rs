//! `keyledger export` and `keyledger import`: an export is every envelope with its hash, and
//! nothing else; importing it gives the same ledger (its export is byte-identical, and it
//! serves the same keys and tokens); a file whose chain breaks anywhere is refused whole,
//! naming the line, and leaves no ledger behind; only an empty or new directory is imported
//! into.

mod common;

use std::path::{Path, PathBuf};

use common::http::{create, get, in_days, Resp};
use common::jsonapi::durable_attributes;
use common::server::{cli, cli_ok, ledger_with_a_key_of_each_kind, DataDir, Server};
use common::store::sled_only;
use serde_json::{json, Value};

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `keyledger export` to stdout, as bytes.
fn export_stdout(data: &Path) -> Vec<u8> {
    let out = cli(&["export", "--data", arg(data)]);
    assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `keyledger export --output FILE`, read back.
fn export_file(data: &Path, file: &Path) -> Vec<u8> {
    cli_ok(&["export", "--data", arg(data), "--output", arg(file)]);
    std::fs::read(file).expect("read the export")
}

/// Imports `lines` (written to a file) into `target`; returns the command's output.
fn import(lines: &[u8], target: &Path) -> std::process::Output {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), lines).expect("write the export");
    cli(&["import", "--data", arg(target), arg(file.path())])
}

/// The names in a directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Asserts that `target` holds no usable ledger: offline commands say there is none.
fn assert_no_ledger(target: &Path, what: &str) {
    let out = cli(&["keys", "issue", "--data", arg(target), "--user", "alice@acme.test", "--name", "x", "--expires-in", "1d"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: a ledger was left at {}", target.display());
    assert!(stderr.contains("no ledger"), "{what}: expected \"no ledger\", got: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_then_export_is_byte_identical_and_holds_no_token() {
    if sled_only("imports into data dirs and compares their files (PostgreSQL's round trip is tests/postgres_migration.rs)") {
        return;
    }
    let (data, tokens, created) = ledger_with_a_key_of_each_kind();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ledger.jsonl");
    let exported = export_file(data.path(), &file);
    assert_eq!(export_stdout(data.path()), exported, "--output writes what stdout gets");
    assert_eq!(names_in(dir.path()), vec!["ledger.jsonl"], "no temporary file is left beside the export");

    let text = String::from_utf8(exported.clone()).expect("an export is UTF-8");
    assert!(text.ends_with('\n'));
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let envelope: Value = serde_json::from_str(line).expect("every line is JSON");
        assert_eq!(envelope["position"], json!(i + 1), "lines are in position order");
        assert!(envelope["hash"].as_str().is_some_and(|h| h.len() == 64), "every line carries its hash");
    }
    for kind in ["personal", "team", "organization"] {
        assert!(text.contains(&format!(r#""kind":"{kind}""#)), "the {kind} key is exported");
    }
    for key in &created {
        assert!(text.contains(&key.id), "key {} is exported", key.id);
    }
    let all = tokens.values().chain(created.iter().map(|c| &c.token));
    for token in all {
        assert!(!text.contains(token.as_str()), "the export holds a token");
        let secret = token.rsplit('_').next().unwrap_or(token);
        assert!(!text.contains(secret), "the export holds a token's secret part");
    }

    // Into a directory that does not exist yet (its parent does not either).
    let target = dir.path().join("restored").join("data");
    cli_ok(&["import", "--data", arg(&target), arg(&file)]);
    assert_eq!(export_stdout(&target), exported, "the export of the import differs from the original export");
    assert_eq!(names_in(&dir.path().join("restored")), vec!["data"], "no staging directory is left beside the target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_imported_ledger_serves_the_same_keys_and_takes_the_same_tokens() {
    if sled_only("imports into data dirs and compares their files (PostgreSQL's round trip is tests/postgres_migration.rs)") {
        return;
    }
    let (data, tokens, created) = ledger_with_a_key_of_each_kind();
    let exported = export_stdout(data.path());
    // Into an existing, empty directory.
    let target = DataDir::new();
    let out = import(&exported, target.path());
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(names_in(target.path()).iter().all(|n| !n.starts_with('.')), "staging left in the target: {:?}", names_in(target.path()));

    let out = cli(&["rebuild", "--check", "--data", arg(target.path())]);
    assert!(
        out.status.success(),
        "the imported projections differ from its log: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let server = Server::start(&target);
    assert!(server.owner_token().is_none(), "serve must not initialize an imported ledger again");
    for key in &created {
        let Resp { status, json: shown, .. } = get(&server, &key.token, &format!("/v1/api_keys/{}", key.id)).await;
        assert_eq!(status, 200, "a token issued before the export no longer authenticates: {shown}");
        assert_eq!(durable_attributes(&shown), durable_attributes(&key.shown), "the imported ledger shows the key differently");
    }
    // Tokens minted offline before the export, too (digests are keyless).
    for (user, token) in &tokens {
        let Resp { status, json: body, .. } = get(&server, token, "/v1/api_keys/00000000-0000-0000-0000-000000000000").await;
        assert_eq!(status, 404, "{user}'s token from before the export is refused: {body}");
    }
    // And it records on top of the imported log, with the imported name index.
    let alice = &tokens["alice@acme.test"];
    let Resp { status, json: body, .. } =
        create(&server, alice, json!({"name": "Laptop", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 422, "a name taken before the export must still be taken: {body}");
    let Resp { status, json: body, .. } =
        create(&server, alice, json!({"name": "after import", "kind": "personal", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
    server.stop();
}

/// The lines of an export, each as it was written (without its '\n').
fn lines_of(export: &[u8]) -> Vec<Vec<u8>> {
    export.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

fn joined(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

#[test]
fn an_export_whose_chain_breaks_is_refused_naming_the_line_and_leaves_no_ledger() {
    if sled_only("imports into data dirs and compares their files (PostgreSQL's round trip is tests/postgres_migration.rs)") {
        return;
    }
    let data = DataDir::new();
    data.acme_and_globex();
    let exported = export_stdout(data.path());
    let lines = lines_of(&exported);
    assert!(lines.len() > 10, "the fixture ledger is too small for this test");

    // One character inside the payload of the ApiKeyCreated event of "test login" keys.
    let mut edited = lines.clone();
    let at = edited.iter().position(|l| l.windows(12).any(|w| w == b"\"test login\"")).expect("a key event");
    let line = &mut edited[at];
    let payload = line.windows(10).position(|w| w == b"\"payload\":").expect("a payload");
    let name = payload + line[payload..].windows(10).position(|w| w == b"test login").expect("the name in the payload");
    line[name] = b'T';
    let mut deleted = lines.clone();
    deleted.remove(5);
    let mut swapped = lines.clone();
    swapped.swap(7, 8);
    let mut bad_hash = lines.clone();
    let last = bad_hash.len() - 1;
    let hash_at = bad_hash[last].len() - 4;
    bad_hash[last][hash_at] = if bad_hash[last][hash_at] == b'0' { b'1' } else { b'0' };

    let parent = tempfile::tempdir().expect("tempdir");
    for (what, file, line) in [
        ("an edited payload", joined(&edited), at + 1),
        ("a deleted line", joined(&deleted), 6),
        ("two swapped lines", joined(&swapped), 8),
        ("an edited hash", joined(&bad_hash), last + 1),
    ] {
        let target = parent.path().join("target");
        let out = import(&file, &target);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} was imported");
        assert!(
            stderr.contains(&format!("line {line}:")) || stderr.contains(&format!("line {line} ")),
            "{what}: the message does not name line {line}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(!target.exists(), "{what}: the target was created");
        assert!(names_in(parent.path()).is_empty(), "{what}: left behind: {:?}", names_in(parent.path()));
        assert_no_ledger(&target, what);

        // The same into an existing empty directory: it stays empty.
        let empty = DataDir::new();
        let out = import(&file, empty.path());
        assert!(!out.status.success(), "{what} was imported into an empty directory");
        assert!(names_in(empty.path()).is_empty(), "{what}: left in the empty target: {:?}", names_in(empty.path()));
        assert_no_ledger(empty.path(), what);
    }

    // The intact file still imports: the refusals were about the edits.
    let target = parent.path().join("intact");
    let out = import(&exported, &target);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn import_refuses_a_directory_that_is_not_empty() {
    if sled_only("imports into data dirs and compares their files (PostgreSQL's round trip is tests/postgres_migration.rs)") {
        return;
    }
    let data = DataDir::new();
    data.acme_and_globex();
    let exported = export_stdout(data.path());

    // A ledger: refused, and left as it was.
    let out = import(&exported, data.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an import into a ledger succeeded");
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(export_stdout(data.path()), exported, "the existing ledger changed");

    // Anything else in it: refused, named, untouched.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(other.path().join("notes.txt"), "mine").expect("write");
    let out = import(&exported, other.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an import into a non-empty directory succeeded");
    assert!(stderr.contains("notes.txt"), "{stderr}");
    assert_eq!(names_in(other.path()), vec!["notes.txt"]);

    // A file where the directory should be.
    let file = other.path().join("notes.txt");
    let out = import(&exported, &file);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "mine");

    // An empty file is no ledger.
    let target: PathBuf = other.path().join("from-nothing");
    let out = import(b"", &target);
    assert!(!out.status.success(), "an empty file was imported");
    assert!(!target.exists());
}
