//! `serve --directory FILE` applies the file again on SIGHUP: removed users, demoted admins
//! and deleted teams take effect for the very next request — through the real binary and a
//! real signal. Each test waits for the reload's log line, never for a fixed time.

mod common;

use std::path::PathBuf;

use common::fixtures::{fixture, PLATFORM_TEAM, SECURITY_TEAM};
use common::http::{create, get, in_days, Resp};
use common::server::{cli_ok, DataDir, Server, World};
use serde_json::{json, Value};
use tempfile::TempDir;

/// A directory file outside the data directory, starting as the Acme fixture.
struct DirectoryFile {
    _dir: TempDir,
    path: PathBuf,
}

impl DirectoryFile {
    fn acme() -> (DirectoryFile, Value) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("directory.json");
        let text = std::fs::read_to_string(fixture("directory.example.json")).expect("read fixture");
        std::fs::write(&path, &text).expect("write directory file");
        (DirectoryFile { _dir: dir, path }, serde_json::from_str(&text).expect("fixture is JSON"))
    }

    fn arg(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.path, text).expect("write directory file");
    }
}

/// Acme and Globex with a login per user, serving Acme's directory file.
fn serve() -> (DataDir, std::collections::HashMap<String, String>, DirectoryFile, Value, Server) {
    let data = DataDir::new();
    let tokens = data.acme_and_globex();
    let (file, acme) = DirectoryFile::acme();
    let server = Server::start_logging(&data, &["--directory", file.arg()], "info");
    (data, tokens, file, acme, server)
}

/// Rewrites the file, sends SIGHUP and waits until the server says it applied it.
fn reload(server: &Server, file: &DirectoryFile, directory: &Value) -> String {
    file.write(&directory.to_string());
    server.signal("HUP");
    server.wait_for_stderr("directory reloaded")
}

/// The directory without the users `ids`, in users and in every team.
fn without_users(directory: &Value, ids: &[u64]) -> Value {
    let mut directory = directory.clone();
    let gone = |v: &Value| v.as_u64().is_some_and(|id| ids.contains(&id));
    if let Some(users) = directory["users"].as_array_mut() {
        users.retain(|u| !gone(&u["id"]));
    }
    for team in directory["teams"].as_array_mut().into_iter().flatten() {
        for list in ["user_ids", "admin_ids"] {
            if let Some(members) = team[list].as_array_mut() {
                members.retain(|id| !gone(id));
            }
        }
    }
    directory
}

async fn created(server: &Server, token: &str, attributes: Value) -> (String, String) {
    let Resp { status, json: body, .. } = create(server, token, attributes).await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().expect("id").to_owned();
    (id, body["data"]["attributes"]["token"].as_str().expect("token").to_owned())
}

/// Whether `token` authenticates: `GET` of its own key answers 200 rather than 401.
async fn status_of(server: &Server, token: &str, id: &str) -> u16 {
    get(server, token, &format!("/v1/api_keys/{id}")).await.status
}

#[tokio::test]
async fn a_removed_users_keys_stop_at_once_and_the_keys_they_created_for_others_survive() {
    let (data, tokens, file, acme, server) = serve();
    let carol = &tokens["carol@acme.test"];
    let (personal, personal_token) =
        created(&server, carol, json!({"name": "deploy", "kind": "personal", "expires_at": in_days(30)})).await;
    let (team, team_token) =
        created(&server, carol, json!({"name": "ci", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(30)})).await;
    let (org, org_token) =
        created(&server, &tokens["bob@acme.test"], json!({"name": "billing", "kind": "organization", "expires_at": in_days(30)})).await;

    let line = reload(&server, &file, &without_users(&acme, &[2, 3]));
    assert!(line.contains("recorded"), "the reload says what it recorded: {line}");

    assert_eq!(status_of(&server, &personal_token, &personal).await, 401, "a removed user's key stops at once");
    assert_eq!(get(&server, carol, "/v1/api_keys").await.status, 401, "and so does their login");
    assert_eq!(status_of(&server, &team_token, &team).await, 200, "a team key survives its creator");
    assert_eq!(status_of(&server, &org_token, &org).await, 200, "an organization key survives its creator");
    let Resp { json: listed, .. } = get(&server, &tokens["alice@acme.test"], "/v1/api_keys?filter[kind]=personal&filter[user_id]=3").await;
    assert_eq!(listed["meta"]["total_count"], 0, "carol's personal keys are revoked, not only refused: {listed}");
    server.stop();

    let log = cli_ok(&["audit", "log", "--data", data.arg(), "--key", &personal]);
    assert!(log.contains("revoked as its user left the directory"), "{log}");
}

#[tokio::test]
async fn a_demoted_admins_keys_lose_the_rights_at_once() {
    let (_data, tokens, file, acme, server) = serve();
    let bob = &tokens["bob@acme.test"];
    let org_key = json!({"name": "billing", "kind": "organization", "expires_at": in_days(30)});
    created(&server, bob, org_key.clone()).await;
    let Resp { json: before, .. } = get(&server, bob, "/v1/api_keys").await;
    let others = |list: &Value| list["data"].as_array().into_iter().flatten().filter(|k| k["attributes"]["user_id"] != 2).count();
    assert!(others(&before) > 0, "as an admin bob sees everyone's keys: {before}");

    let mut demoted = acme.clone();
    for user in demoted["users"].as_array_mut().into_iter().flatten() {
        if user["id"] == 2 {
            user["role"] = json!("user");
        }
    }
    reload(&server, &file, &demoted);

    let Resp { status, json: body, .. } =
        create(&server, bob, json!({"name": "another", "kind": "organization", "expires_at": in_days(30)})).await;
    assert_eq!(status, 403, "{body}");
    let Resp { status, json: after, .. } = get(&server, bob, "/v1/api_keys").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(others(&after), 0, "bob now lists only his own keys: {after}");
    assert_eq!(after["meta"]["total_count"], 1, "his login: {after}");
}

#[tokio::test]
async fn a_deleted_teams_keys_are_revoked_and_the_log_says_why() {
    let (data, tokens, file, acme, server) = serve();
    let (platform_key, platform_token) = created(
        &server,
        &tokens["carol@acme.test"],
        json!({"name": "ci", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(30)}),
    )
    .await;
    let (security_key, security_token) = created(
        &server,
        &tokens["bob@acme.test"],
        json!({"name": "scan", "kind": "team", "group_id": SECURITY_TEAM, "expires_at": in_days(30)}),
    )
    .await;

    let mut directory = acme.clone();
    if let Some(teams) = directory["teams"].as_array_mut() {
        teams.retain(|t| t["slug"] != "platform");
    }
    reload(&server, &file, &directory);

    assert_eq!(status_of(&server, &platform_token, &platform_key).await, 401, "the deleted team's key stops at once");
    assert_eq!(status_of(&server, &security_token, &security_key).await, 200, "another team's key is untouched");
    assert_eq!(get(&server, &tokens["alice@acme.test"], &format!("/v1/api_keys/{platform_key}")).await.status, 404);
    server.stop();

    let log = cli_ok(&["audit", "log", "--data", data.arg(), "--key", &platform_key, "--format", "jsonl"]);
    let revoked: Vec<Value> =
        log.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).filter(|event| event["type"] == "ApiKeyRevoked").collect();
    assert_eq!(revoked.len(), 1, "{log}");
    assert_eq!(revoked[0]["payload"]["reason"], "team_deleted", "{log}");
    assert!(log.contains("ServiceAccountDeleted"), "its service account goes with it: {log}");
}

#[tokio::test]
async fn a_broken_or_inconsistent_file_changes_nothing_and_says_why() {
    let (_data, tokens, file, acme, server) = serve();
    let bob = &tokens["bob@acme.test"];

    file.write("{ this is not json");
    server.signal("HUP");
    let line = server.wait_for_stderr("directory not reloaded");
    assert!(line.contains("not a valid directory"), "the error names the problem: {line}");

    let mut inconsistent = without_users(&acme, &[3]);
    for user in inconsistent["users"].as_array_mut().into_iter().flatten() {
        if user["id"] == 2 {
            user["role"] = json!("wizard");
        }
    }
    file.write(&inconsistent.to_string());
    server.signal("HUP");
    let line = server.wait_for_stderr("directory not reloaded");
    assert!(line.contains("wizard"), "the error names the problem: {line}");

    assert_eq!(get(&server, &tokens["carol@acme.test"], "/v1/api_keys").await.status, 200, "carol's removal was not applied either");
    let Resp { status, json: body, .. } =
        create(&server, bob, json!({"name": "billing", "kind": "organization", "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "bob is still an admin: {body}");

    let line = reload(&server, &file, &without_users(&acme, &[3]));
    assert!(!line.contains("recorded=0"), "a good file afterwards applies: {line}");
    assert_eq!(get(&server, &tokens["carol@acme.test"], "/v1/api_keys").await.status, 401);
}

#[tokio::test]
async fn sighup_without_a_directory_file_is_ignored() {
    let World { data: _data, tokens, server } = World::start();
    server.signal("HUP");
    server.wait_for_stderr("SIGHUP ignored");
    assert_eq!(get(&server, &tokens["alice@acme.test"], "/v1/api_keys").await.status, 200, "still serving");
}
