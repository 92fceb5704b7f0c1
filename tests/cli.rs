//! The command line: `init`, `directory apply`, `keys issue`, `serve`'s banner, flags given as
//! environment variables, and offline commands against a directory a server holds.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::fixtures::fixture;
use common::http::{authenticates, create, in_days, personal, show, Resp};
use common::jsonapi::{assert_taken, is_token};
use common::ledger::read_log;
use common::server::{run_keyledger, stderr_of, stdout_of, terminate, DataDir, Server, World};
use common::store::sled_only;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

fn keyledger(args: &[&str]) -> Output {
    let cwd = tempfile::tempdir().expect("tempdir");
    run_keyledger(args, &[], cwd.path(), WITHIN)
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Asserts success and returns stdout.
fn succeeded(output: &Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed ({}): {}", output.status, stderr_of(output));
    stdout_of(output)
}

/// Asserts a plain failure: non-zero exit, nothing on stdout, a message on stderr and no
/// panic. Returns stderr.
fn failed(output: &Output, what: &str) -> String {
    let stderr = stderr_of(output);
    assert!(!output.status.success(), "{what} should have failed; stdout: {}", stdout_of(output));
    assert_eq!(stdout_of(output), "", "{what} printed on stdout although it failed");
    assert!(!stderr.trim().is_empty(), "{what} failed without saying why");
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
    stderr
}

/// The single line of a command's stdout, which must be a token with `prefix`.
fn only_token(stdout: &str, prefix: &str, what: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{what} must print exactly one line on stdout, got {stdout:?}");
    assert!(stdout.ends_with('\n'), "{what}: the line ends with a newline: {stdout:?}");
    assert!(is_token(lines[0], prefix), "{what} printed {:?}, not a {prefix}_<64 hex> token", lines[0]);
    lines[0].to_owned()
}

fn init_acme(data: &DataDir) -> String {
    let acme = fixture("directory.example.json");
    let out = keyledger(&["init", "--data", data.arg(), "--directory", path_arg(&acme)]);
    only_token(&succeeded(&out, "init"), "rootly", "init")
}

fn issue(data: &DataDir, user: &str, name: &str, expires_in: &str) -> Output {
    // `=`: a value such as `-5d` reaches the lifetime parser instead of clap's flag parser.
    let expires_in = format!("--expires-in={expires_in}");
    keyledger(&["keys", "issue", "--data", data.arg(), "--user", user, "--name", name, &expires_in])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_prints_only_the_owner_token_and_a_later_server_takes_it() {
    let data = DataDir::new();
    let out = keyledger(&["init", "--data", data.arg(), "--org", "Initech", "--owner", "peter@initech.test"]);
    let token = only_token(&succeeded(&out, "init --org --owner"), "rootly", "init");
    assert!(!stderr_of(&out).contains(&token), "the token belongs on stdout only");

    let server = Server::start(&data);
    assert!(server.owner_token().is_none(), "serve on an initialized directory must not initialize it again");
    let api = server.base.clone();
    assert!(authenticates(&api, &token).await, "the token init printed is refused");
    // It is the owner's: an organization key needs owner or admin.
    let Resp { status, json: body, .. } =
        create(&api, &token, json!({"name": "deploy", "kind": "organization", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
}

#[test]
fn init_on_an_initialized_directory_fails_and_records_nothing() {
    let data = DataDir::new();
    init_acme(&data);
    let (head, _) = read_log(data.path());
    let acme = fixture("directory.example.json");
    for args in [
        vec!["init", "--data", data.arg(), "--directory", path_arg(&acme)],
        vec!["init", "--data", data.arg(), "--org", "Other", "--owner", "o@other.test"],
    ] {
        let stderr = failed(&keyledger(&args), "init on an initialized directory");
        assert!(stderr.contains("already initialized"), "{stderr}");
    }
    assert_eq!(read_log(data.path()).0, head, "a refused init changed the log");
}

#[test]
fn directory_apply_is_idempotent_and_says_so() {
    let data = DataDir::new();
    init_acme(&data);
    let (after_init, _) = read_log(data.path());
    let globex = fixture("directory.other-org.json");

    let out = keyledger(&["directory", "apply", "--data", data.arg(), path_arg(&globex)]);
    succeeded(&out, "first apply");
    let stderr = stderr_of(&out);
    assert!(stderr.contains("recorded") && !stderr.contains("nothing"), "the first apply records events: {stderr}");
    let (after_first, _) = read_log(data.path());
    assert!(after_first > after_init, "the first apply recorded nothing");

    let out = keyledger(&["directory", "apply", "--data", data.arg(), path_arg(&globex)]);
    succeeded(&out, "second apply");
    assert!(stderr_of(&out).contains("nothing recorded"), "the second apply must say nothing was recorded: {}", stderr_of(&out));
    assert_eq!(read_log(data.path()).0, after_first, "the second apply of the same file grew the log");

    // The file init was made from is already applied too.
    let acme = fixture("directory.example.json");
    let out = keyledger(&["directory", "apply", "--data", data.arg(), path_arg(&acme)]);
    succeeded(&out, "apply of the init file");
    assert!(stderr_of(&out).contains("nothing recorded"), "{}", stderr_of(&out));
    assert_eq!(read_log(data.path()).0, after_first);

    // What the first apply recorded is real: Globex's owner can be issued a key.
    let out = keyledger(&[
        "keys",
        "issue",
        "--data",
        data.arg(),
        "--org",
        "Globex",
        "--user",
        "hank@globex.test",
        "--name",
        "k",
        "--expires-in",
        "1d",
    ]);
    only_token(&succeeded(&out, "keys issue in Globex"), "rootly", "keys issue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_issue_mints_a_personal_key_whose_token_authenticates() {
    let data = DataDir::new();
    let alice = init_acme(&data);
    let out = issue(&data, "carol@acme.test", "cli key", "7d");
    let token = only_token(&succeeded(&out, "keys issue"), "rootly", "keys issue");
    assert!(!stderr_of(&out).contains(&token), "the token belongs on stdout only");

    // No route lists keys yet: the id comes from the log.
    let (_, logged) = read_log(data.path());
    let key = logged.iter().find(|k| k.name == "cli key").expect("the issued key is in the log");
    assert_eq!((key.kind, key.user_id), ("personal", Some(3)), "a personal key of carol (user 3): {key:?}");

    let server = Server::start(&data);
    let api = server.base.clone();
    let Resp { status, json: body, .. } = show(&api, &token, &key.id).await;
    assert_eq!(status, 200, "the issued token does not authenticate or does not see its own key: {body}");
    let attributes = &body["data"]["attributes"];
    assert_eq!(attributes["kind"], "personal", "{body}");
    assert_eq!(attributes["name"], "cli key", "{body}");
    assert!(attributes.get("token").is_none(), "{body}");
    let expires_at = chrono::DateTime::parse_from_rfc3339(attributes["expires_at"].as_str().expect("expires_at")).expect("RFC 3339");
    let off = (expires_at.with_timezone(&chrono::Utc) - (chrono::Utc::now() + chrono::Duration::days(7))).num_seconds().abs();
    assert!(off < 120, "--expires-in 7d gave expires_at {expires_at}");
    // The owner sees it too; the name is taken for carol.
    assert_eq!(show(&api, &alice, &key.id).await.status, 200);
    let Resp { status, json: body, .. } = create(&api, &token, personal("CLI key")).await;
    assert_taken(status, &body, "carol re-creating her CLI-issued name");
}

#[test]
fn keys_issue_refuses_unknown_users_organizations_and_lifetimes_plainly() {
    let data = DataDir::new();
    init_acme(&data);
    let (head, _) = read_log(data.path());

    let stderr = failed(&issue(&data, "nobody@acme.test", "k", "7d"), "keys issue for an unknown email");
    assert!(stderr.contains("nobody@acme.test"), "the message names the unknown email: {stderr}");
    let out = keyledger(&[
        "keys",
        "issue",
        "--data",
        data.arg(),
        "--org",
        "Umbrella",
        "--user",
        "alice@acme.test",
        "--name",
        "k",
        "--expires-in",
        "7d",
    ]);
    let stderr = failed(&out, "keys issue for an unknown organization");
    assert!(stderr.contains("Umbrella"), "the message names the unknown organization: {stderr}");

    for lifetime in ["30x", "soon", "d", "-5d", "", "7 days"] {
        let stderr = failed(&issue(&data, "alice@acme.test", "k", lifetime), &format!("--expires-in {lifetime:?}"));
        let quoted = format!("{:?}", lifetime.trim());
        assert!(stderr.contains(&quoted), "--expires-in {lifetime:?}: the message quotes the value: {stderr}");
        assert!(stderr.contains("30d"), "--expires-in {lifetime:?}: the message shows what a lifetime looks like: {stderr}");
    }
    // Well-formed but not in the future: refused by the same rules as the API.
    let stderr = failed(&issue(&data, "alice@acme.test", "k", "0s"), "--expires-in 0s");
    assert!(stderr.to_lowercase().contains("future"), "{stderr}");
    let out = keyledger(&["keys", "issue", "--data", data.arg(), "--user", "alice@acme.test", "--name", "k", "--expires-at", "tomorrow"]);
    failed(&out, "--expires-at tomorrow");

    assert_eq!(read_log(data.path()).0, head, "a refused keys issue changed the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flag_can_be_given_as_an_environment_variable() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let data = DataDir::new();
    let dir = data.arg();

    // init: KEYLEDGER_DATA, KEYLEDGER_ORG, KEYLEDGER_OWNER, KEYLEDGER_TOKEN_PREFIX.
    let env_init = [
        ("KEYLEDGER_DATA", dir),
        ("KEYLEDGER_ORG", "Initech"),
        ("KEYLEDGER_OWNER", "peter@initech.test"),
        ("KEYLEDGER_TOKEN_PREFIX", "acme"),
    ];
    let out = run_keyledger(["init"], &env_init, cwd.path(), WITHIN);
    let owner = only_token(&succeeded(&out, "init from the environment"), "acme", "init");

    // directory apply: KEYLEDGER_DATA (the file is an argument, not a flag).
    let globex = fixture("directory.other-org.json");
    let out = run_keyledger(["directory", "apply", path_arg(&globex)], &[("KEYLEDGER_DATA", dir)], cwd.path(), WITHIN);
    succeeded(&out, "directory apply from the environment");
    assert!(stderr_of(&out).contains("recorded") && !stderr_of(&out).contains("nothing"), "{}", stderr_of(&out));

    // keys issue: KEYLEDGER_DATA, KEYLEDGER_ORG, KEYLEDGER_USER, KEYLEDGER_KEY_NAME,
    // KEYLEDGER_EXPIRES_IN / KEYLEDGER_EXPIRES_AT, KEYLEDGER_TOKEN_PREFIX.
    let env_issue = [
        ("KEYLEDGER_DATA", dir),
        ("KEYLEDGER_ORG", "Globex"),
        ("KEYLEDGER_USER", "ivy@globex.test"),
        ("KEYLEDGER_KEY_NAME", "ivy env"),
        ("KEYLEDGER_EXPIRES_IN", "2d"),
        ("KEYLEDGER_TOKEN_PREFIX", "acme"),
    ];
    let out = run_keyledger(["keys", "issue"], &env_issue, cwd.path(), WITHIN);
    let ivy = only_token(&succeeded(&out, "keys issue from the environment"), "acme", "keys issue");
    let at = in_days(3);
    let env_issue_at = [
        ("KEYLEDGER_DATA", dir),
        ("KEYLEDGER_ORG", "Globex"),
        ("KEYLEDGER_USER", "hank@globex.test"),
        ("KEYLEDGER_KEY_NAME", "hank env"),
        ("KEYLEDGER_EXPIRES_AT", at.as_str()),
        ("KEYLEDGER_TOKEN_PREFIX", "acme"),
    ];
    let out = run_keyledger(["keys", "issue"], &env_issue_at, cwd.path(), WITHIN);
    let hank = only_token(&succeeded(&out, "keys issue with KEYLEDGER_EXPIRES_AT"), "acme", "keys issue");
    let (_, logged) = read_log(data.path());
    let names: Vec<&str> = logged.iter().map(|k| k.name.as_str()).collect();
    assert!(names.contains(&"ivy env") && names.contains(&"hank env"), "KEYLEDGER_KEY_NAME was not used: {names:?}");
    assert!(!cwd.path().join("keyledger-data").exists(), "a command ignored KEYLEDGER_DATA and used ./keyledger-data");

    // serve: KEYLEDGER_DATA, KEYLEDGER_LISTEN, KEYLEDGER_TOKEN_PREFIX, KEYLEDGER_BODY_LIMIT,
    // KEYLEDGER_DIRECTORY (applied at start: already applied, so nothing changes).
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let listen = format!("127.0.0.1:{port}");
    let env_serve = [
        ("KEYLEDGER_DATA", dir),
        ("KEYLEDGER_LISTEN", listen.as_str()),
        ("KEYLEDGER_TOKEN_PREFIX", "acme"),
        ("KEYLEDGER_BODY_LIMIT", "2048"),
        ("KEYLEDGER_DIRECTORY", path_arg(&globex)),
    ];
    let server = Server::spawn(&[], &env_serve, cwd.path());
    assert_eq!(server.base, format!("http://{listen}"), "KEYLEDGER_LISTEN was not used");
    assert_eq!(server.banner_token("acme"), None, "KEYLEDGER_DATA was not used: serve initialized a new ledger");
    let api = server.base.clone();
    for (who, token) in [("owner", &owner), ("ivy", &ivy), ("hank", &hank)] {
        assert!(authenticates(&api, token).await, "{who}'s acme_ token is refused");
    }
    let Resp { status, json: body, .. } = create(&api, &owner, personal("from env")).await;
    assert_eq!(status, 201, "{body}");
    let minted = body["data"]["attributes"]["token"].as_str().expect("token");
    assert!(is_token(minted, "acme"), "KEYLEDGER_TOKEN_PREFIX was not used by serve: {minted}");
    let Resp { status, json: body, .. } =
        create(&api, &owner, json!({"name": "big", "kind": "personal", "expires_at": in_days(1), "description": "x".repeat(900)})).await;
    assert_eq!(status, 201, "a body under KEYLEDGER_BODY_LIMIT: {body}");
    let Resp { status, json: body, .. } =
        create(&api, &owner, json!({"name": "bigger", "kind": "personal", "expires_at": in_days(1), "description": "x".repeat(3000)}))
            .await;
    assert_eq!(status, 413, "a body over KEYLEDGER_BODY_LIMIT=2048: {body}");
    server.stop();
    assert!(!cwd.path().join("keyledger-data").exists(), "serve ignored KEYLEDGER_DATA");

    // KEYLEDGER_DIRECTORY initializes an empty directory at serve.
    let empty = DataDir::new();
    let acme = fixture("directory.example.json");
    let env_fresh = [("KEYLEDGER_DATA", empty.arg()), ("KEYLEDGER_LISTEN", "127.0.0.1:0"), ("KEYLEDGER_DIRECTORY", path_arg(&acme))];
    let server = Server::spawn(&[], &env_fresh, cwd.path());
    assert!(server.startup.iter().any(|l| l.contains("alice@acme.test")), "KEYLEDGER_DIRECTORY was not used: {:?}", server.startup);
    let alice = server.banner_token("rootly").expect("a banner token");
    assert!(authenticates(&server.base, &alice).await);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_commands_on_a_directory_a_server_holds_fail_at_once_naming_the_holder() {
    if sled_only("the data dir's lock names the serve that holds it (PostgreSQL has no such lock)") {
        return;
    }
    let World { data, tokens, server } = World::start();
    let holder = format!("pid {}", server.pid());
    let globex = fixture("directory.other-org.json");
    let acme = fixture("directory.example.json");
    let cwd = tempfile::tempdir().expect("tempdir");
    let attempts: [(&str, Vec<&str>); 4] = [
        (
            "keys issue",
            vec![
                "keys",
                "issue",
                "--data",
                data.arg(),
                "--org",
                "Acme",
                "--user",
                "alice@acme.test",
                "--name",
                "blocked",
                "--expires-in",
                "1d",
            ],
        ),
        ("directory apply", vec!["directory", "apply", "--data", data.arg(), path_arg(&globex)]),
        ("init", vec!["init", "--data", data.arg(), "--directory", path_arg(&acme)]),
        ("serve", vec!["serve", "--data", data.arg(), "--listen", "127.0.0.1:0"]),
    ];
    for (what, args) in attempts {
        let out = run_keyledger(&args, &[], cwd.path(), Duration::from_secs(10));
        let stderr = failed(&out, &format!("{what} while serve holds the directory"));
        assert!(stderr.contains("in use"), "{what}: the message must say the directory is in use: {stderr}");
        assert!(stderr.contains(&holder), "{what}: the message must name the holder ({holder}): {stderr}");
    }

    // The server did not notice.
    let api = server.base.clone();
    let Resp { status, json: body, .. } = create(&api, &tokens["alice@acme.test"], personal("while refused")).await;
    assert_eq!(status, 201, "{body}");
    terminate(server, Duration::from_secs(30)).await;
    let (_, logged) = read_log(data.path());
    assert!(logged.iter().all(|k| k.name != "blocked"), "the refused keys issue recorded a key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_an_empty_directory_with_a_directory_file_prints_the_first_owners_token() {
    let data = DataDir::new();
    let cwd = tempfile::tempdir().expect("tempdir");
    let acme = fixture("directory.example.json");
    let server = Server::spawn(&["--data", data.arg(), "--listen", "127.0.0.1:0", "--directory", path_arg(&acme)], &[], cwd.path());
    let banner = server.startup.join("\n");
    assert!(banner.contains("alice@acme.test"), "the banner names the first owner, alice: {banner}");
    assert!(banner.contains("Acme"), "the banner names the organization: {banner}");
    let tokens: Vec<&str> = banner.split_whitespace().filter(|w| w.starts_with("rootly_")).collect();
    assert_eq!(tokens.len(), 1, "exactly one token in the banner: {banner}");
    assert!(is_token(tokens[0], "rootly"), "{}", tokens[0]);
    let alice = tokens[0].to_owned();

    let api = server.base.clone();
    assert!(authenticates(&api, &alice).await, "the banner token is refused");
    // It acts as alice: an owner (organization keys allowed), user 1 of Acme.
    let Resp { status, json: body, .. } =
        create(&api, &alice, json!({"name": "org", "kind": "organization", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{body}");
    let Resp { status, json: body, .. } = create(&api, &alice, personal("mine")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["attributes"]["user_id"], 1, "the banner token is alice's (user 1): {body}");
    server.stop();

    // Started again: no banner, same token.
    let server = Server::spawn(&["--data", data.arg(), "--listen", "127.0.0.1:0", "--directory", path_arg(&acme)], &[], cwd.path());
    assert_eq!(server.banner_token("rootly"), None, "a second banner: {:?}", server.startup);
    assert!(authenticates(&server.base, &alice).await);
    server.stop();
}

#[test]
fn offline_commands_on_a_path_without_a_ledger_create_nothing() {
    let parent = tempfile::tempdir().expect("tempdir");
    let missing = parent.path().join("typo");
    let acme = fixture("directory.example.json");
    for args in [
        vec!["directory", "apply", "--data", path_arg(&missing), path_arg(&acme)],
        vec!["keys", "issue", "--data", path_arg(&missing), "--user", "alice@acme.test", "--name", "k", "--expires-in", "1d"],
    ] {
        let stderr = failed(&keyledger(&args), "an offline command on a missing ledger");
        assert!(stderr.contains("no ledger in"), "{stderr}");
    }
    assert!(!missing.exists(), "a mistyped --data must not become a new ledger");
}
