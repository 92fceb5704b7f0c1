//! API.md "Create": team keys, through real HTTP against the real binary.

mod common;

use common::fixtures::{GLOBEX_TEAM, PLATFORM_TEAM, SECURITY_TEAM};
use common::http::{create, create_ok, in_days, show, Resp};
use common::jsonapi::{assert_forbidden, assert_invalid, assert_invalid_at, assert_key_doc};
use common::server::World;
use serde_json::{json, Value};

fn team_key(name: &str, group_id: &str) -> Value {
    json!({"name": name, "kind": "team", "group_id": group_id, "expires_at": in_days(30)})
}

/// `group_id` is an extra attribute (API.md allows extras); when the service returns it, it
/// must name the team the key was created for.
fn assert_group(resp: &Resp, team: &str) {
    if let Some(group) = resp.attrs().get("group_id") {
        assert_eq!(group, &Value::String(team.to_owned()), "{}", resp.text);
    }
}

#[tokio::test]
async fn a_team_key_is_created_by_team_id_or_slug_and_its_token_authenticates() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");

    let by_id = create_ok(s, &alice, team_key("deploys", PLATFORM_TEAM)).await;
    assert_eq!(by_id.attrs()["kind"], "team");
    assert_group(&by_id, PLATFORM_TEAM);
    let shown = show(s, &by_id.token(), &by_id.id()).await;
    assert_eq!(shown.status, 200, "the team key's token must authenticate: {}", shown.text);
    assert_key_doc(&shown, false);
    assert_eq!(shown.attrs()["kind"], "team");

    let by_slug = create_ok(s, &alice, team_key("alerts", "security")).await;
    assert_group(&by_slug, SECURITY_TEAM);
    assert_eq!(show(s, &by_slug.token(), &by_slug.id()).await.status, 200);

    // The slug names the same scope as the id: a name taken through one is taken through the other.
    create_ok(s, &alice, team_key("shared name", "platform")).await;
    let again = create(s, &alice, team_key("Shared Name", PLATFORM_TEAM)).await;
    assert_invalid(&again, "Name has already been taken", "/data/attributes/name");
    create_ok(s, &alice, team_key("shared name", SECURITY_TEAM)).await;
    let again = create(s, &alice, team_key("shared name", "security")).await;
    assert_invalid(&again, "Name has already been taken", "/data/attributes/name");
}

#[tokio::test]
async fn owners_admins_and_admins_of_the_team_may_create_team_keys_and_no_one_else() {
    let world = World::start();
    let s = &world.server;
    // Allowed: carol administers platform; bob (admin) and alice (owner) any team.
    for (who, team) in [
        ("carol", PLATFORM_TEAM),
        ("carol", "platform"),
        ("bob", PLATFORM_TEAM),
        ("bob", SECURITY_TEAM),
        ("alice", PLATFORM_TEAM),
        ("alice", SECURITY_TEAM),
        ("hank", GLOBEX_TEAM),
        ("ivy", "platform"), // Globex's platform team, which ivy (role user) administers
    ] {
        let name = format!("{who} on {team}");
        let created = create_ok(s, &world.token(who), team_key(&name, team)).await;
        assert_eq!(created.attrs()["kind"], "team");
        assert_eq!(show(s, &created.token(), &created.id()).await.status, 200, "{name}");
    }
    // Refused: carol is no admin of security; dave is a plain member of platform; erin a
    // plain member of security; frank, grace belong to no team.
    for (who, team) in [
        ("carol", SECURITY_TEAM),
        ("carol", "security"),
        ("dave", PLATFORM_TEAM),
        ("dave", "platform"),
        ("erin", SECURITY_TEAM),
        ("frank", PLATFORM_TEAM),
        ("grace", SECURITY_TEAM),
    ] {
        let refused = create(s, &world.token(who), team_key(&format!("{who} on {team}"), team)).await;
        assert_forbidden(&refused);
    }
}

#[tokio::test]
async fn a_team_that_is_not_of_the_callers_organization_is_group_must_exist() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let hank = world.token("hank");

    // Another organization's team, by id, from either side.
    let cross = create(s, &alice, team_key("cross", GLOBEX_TEAM)).await;
    assert_invalid(&cross, "Group must exist", "/data/attributes/group_id");
    let cross_back = create(s, &hank, team_key("cross", PLATFORM_TEAM)).await;
    assert_invalid(&cross_back, "Group must exist", "/data/attributes/group_id");
    // Even a team admin elsewhere (ivy administers Globex's platform) cannot reach Acme's.
    let ivy = create(s, &world.token("ivy"), team_key("cross", PLATFORM_TEAM)).await;
    assert_invalid(&ivy, "Group must exist", "/data/attributes/group_id");

    // Indistinguishable from a team that exists nowhere: nothing leaks across organizations.
    let nowhere = create(s, &alice, team_key("cross", &uuid::Uuid::new_v4().to_string())).await;
    assert_invalid(&nowhere, "Group must exist", "/data/attributes/group_id");
    assert_eq!(cross.json, nowhere.json, "another organization's team must look exactly like no team");
    let unknown_slug = create(s, &alice, team_key("cross", "no-such-team")).await;
    assert_invalid(&unknown_slug, "Group must exist", "/data/attributes/group_id");

    // The same slug resolves within the caller's own organization only.
    let own = create_ok(s, &hank, team_key("globex platform", "platform")).await;
    assert_group(&own, GLOBEX_TEAM);
}

#[tokio::test]
async fn a_team_key_without_group_id_is_422() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    let missing = create(s, &alice, json!({"name": "no team", "kind": "team", "expires_at": in_days(30)})).await;
    assert_invalid_at(&missing, "/data/attributes/group_id");
    let null = create(s, &alice, json!({"name": "no team", "kind": "team", "group_id": null, "expires_at": in_days(30)})).await;
    assert_invalid_at(&null, "/data/attributes/group_id");
    let empty = create(s, &alice, json!({"name": "no team", "kind": "team", "group_id": "", "expires_at": in_days(30)})).await;
    assert_invalid_at(&empty, "/data/attributes/group_id");
}

#[tokio::test]
async fn team_keys_refuse_role_attributes() {
    let world = World::start();
    let s = &world.server;
    let alice = world.token("alice");
    for attribute in ["role_id", "on_call_role_id"] {
        let mut attributes = team_key(&format!("with {attribute}"), PLATFORM_TEAM);
        attributes[attribute] = json!(if attribute == "role_id" { "admin" } else { "responder" });
        let refused = create(s, &alice, attributes).await;
        assert_invalid_at(&refused, &format!("/data/attributes/{attribute}"));
    }
}

#[tokio::test]
async fn a_team_keys_service_account_acts_as_an_admin_of_its_team_only() {
    let world = World::start();
    let s = &world.server;
    let key = create_ok(s, &world.token("carol"), team_key("platform bot", PLATFORM_TEAM)).await;
    let bot = key.token();

    // A team admin's right: team keys for its own team.
    let child = create_ok(s, &bot, team_key("made by the bot", PLATFORM_TEAM)).await;
    assert_group(&child, PLATFORM_TEAM);
    assert_eq!(show(s, &child.token(), &child.id()).await.status, 200);
    // Nothing beyond it.
    assert_forbidden(&create(s, &bot, team_key("elsewhere", SECURITY_TEAM)).await);
    assert_forbidden(&create(s, &bot, json!({"name": "org", "kind": "organization", "expires_at": in_days(30)})).await);
    assert_forbidden(&create(s, &bot, json!({"name": "me", "kind": "personal", "expires_at": in_days(30)})).await);
    // Another organization's team is not a team at all for it.
    let cross = create(s, &bot, team_key("cross", GLOBEX_TEAM)).await;
    assert_invalid(&cross, "Group must exist", "/data/attributes/group_id");
}

#[tokio::test]
async fn a_team_key_acts_as_its_service_account_not_as_any_user() {
    // The key acts as its service account, not as its creator: dave (plain member) cannot
    // create team keys, but a team key carol made keeps creating them for the team.
    let world = World::start();
    let s = &world.server;
    let key = create_ok(s, &world.token("carol"), team_key("ci", "platform")).await;
    assert_forbidden(&create(s, &world.token("dave"), team_key("dave's", PLATFORM_TEAM)).await);
    create_ok(s, &key.token(), team_key("dave's", PLATFORM_TEAM)).await;
}
