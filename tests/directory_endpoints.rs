//! The read-only directory: `GET /v1/users/me`, `/v1/roles`, `/v1/on_call_roles`,
//! `/v1/teams` — contents, pagination like the keys list, 400s naming the parameter, 401s
//! and tenant isolation — through the real binary.

mod common;

use std::collections::HashSet;

use common::fixtures::{GLOBEX_TEAM, PLATFORM_TEAM, SECURITY_TEAM};
use common::http::{create, get, in_days, revoke, send, Resp};
use common::jsonapi::{assert_bad_parameter, titles};
use common::server::{Server, World};
use serde_json::{json, Value};

const LISTS: [&str; 3] = ["/v1/roles", "/v1/on_call_roles", "/v1/teams"];

/// Every item of a list, following `links.next` from a first page of `size`; checks that
/// `meta` agrees with what was walked and that no item comes twice.
async fn walk(server: &Server, token: &str, path: &str, size: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut next = Some(format!("{path}?page[size]={size}"));
    let mut pages = 0;
    let mut total = None;
    while let Some(link) = next {
        let Resp { status, json: page, .. } = get(server, token, &link).await;
        assert_eq!(status, 200, "{link}: {page}");
        pages += 1;
        assert_eq!(page["meta"]["current_page"], pages, "{page}");
        assert_eq!(page["links"]["prev"].is_null(), pages == 1, "{page}");
        total = page["meta"]["total_count"].as_u64();
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= size, "{page}");
        items.extend(data.iter().cloned());
        next = page["links"]["next"].as_str().map(str::to_owned);
        assert!(pages <= 20, "the links loop");
    }
    assert_eq!(Some(items.len() as u64), total, "total_count counts what the pages hold");
    let ids: HashSet<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids.len(), items.len(), "no item twice: {items:?}");
    items
}

fn by_slug<'a>(items: &'a [Value], slug: &str) -> &'a Value {
    items.iter().find(|i| i["attributes"]["slug"] == slug).unwrap_or_else(|| panic!("no {slug} in {items:?}"))
}

#[tokio::test]
async fn users_me_is_the_user_of_a_personal_key_and_the_service_account_of_a_team_or_organization_key() {
    let World { data: _data, tokens, server } = World::start();
    let carol = &tokens["carol@acme.test"];
    let roles = walk(&server, carol, "/v1/roles", 100).await;
    let on_call_roles = walk(&server, carol, "/v1/on_call_roles", 100).await;

    let Resp { status, json: me, .. } = get(&server, carol, "/v1/users/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!((&me["data"]["id"], &me["data"]["type"]), (&json!("3"), &json!("users")), "{me}");
    let attributes = &me["data"]["attributes"];
    assert_eq!(attributes["kind"], "user");
    assert_eq!(attributes["email"], "carol@acme.test");
    assert_eq!(attributes["role_id"], by_slug(&roles, "user")["id"], "{me}");
    assert_eq!(attributes["on_call_role_id"], by_slug(&on_call_roles, "responder")["id"], "{me}");

    let Resp { status, json: team_key, .. } =
        create(&server, carol, json!({"name": "ci", "kind": "team", "group_id": PLATFORM_TEAM, "expires_at": in_days(30)})).await;
    assert_eq!(status, 201, "{team_key}");
    let Resp { json: me, .. } = get(&server, team_key["data"]["attributes"]["token"].as_str().expect("token"), "/v1/users/me").await;
    assert_eq!(me["data"]["type"], "users", "{me}");
    assert_ne!(me["data"]["id"], "3", "the key's service account, not its creator: {me}");
    assert_eq!(me["data"]["attributes"]["kind"], "service_account", "{me}");
    assert_eq!(me["data"]["attributes"]["email"], Value::Null);
    assert_eq!(me["data"]["attributes"]["group_id"], PLATFORM_TEAM);
    assert_eq!(me["data"]["attributes"]["api_key_id"], team_key["data"]["id"]);

    let Resp { status, json: org_key, .. } = create(
        &server,
        &tokens["alice@acme.test"],
        json!({"name": "audit", "kind": "organization", "role_id": "observer", "expires_at": in_days(30)}),
    )
    .await;
    assert_eq!(status, 201, "{org_key}");
    let Resp { json: me, .. } = get(&server, org_key["data"]["attributes"]["token"].as_str().expect("token"), "/v1/users/me").await;
    assert_eq!(me["data"]["attributes"]["role_id"], by_slug(&roles, "observer")["id"], "{me}");
}

#[tokio::test]
async fn roles_on_call_roles_and_teams_show_the_organizations_directory() {
    let World { data: _data, tokens, server } = World::start();
    let frank = &tokens["frank@acme.test"];

    let roles = walk(&server, frank, "/v1/roles", 100).await;
    let slugs: Vec<&str> = roles.iter().filter_map(|r| r["attributes"]["slug"].as_str()).collect();
    assert_eq!(slugs, ["admin", "auditor", "no_access", "observer", "owner", "user"], "every role, even for no_access, in slug order");
    assert!(roles.iter().all(|r| r["type"] == "roles"));
    assert_eq!(by_slug(&roles, "auditor")["attributes"]["api_keys_permissions"], json!(["read"]));
    assert_eq!(by_slug(&roles, "auditor")["attributes"]["name"], "Auditor");
    assert_eq!(by_slug(&roles, "owner")["attributes"]["api_keys_permissions"], json!(["create", "read", "update", "delete"]));

    let on_call = walk(&server, frank, "/v1/on_call_roles", 100).await;
    assert_eq!(on_call.len(), 5, "four system on-call roles and incident_commander: {on_call:?}");
    assert!(on_call.iter().all(|r| r["type"] == "on_call_roles"));
    assert_eq!(by_slug(&on_call, "incident_commander")["attributes"]["name"], "Incident commander");

    let teams = walk(&server, frank, "/v1/teams", 100).await;
    assert_eq!(teams.len(), 2);
    let platform = by_slug(&teams, "platform");
    assert_eq!((&platform["id"], &platform["type"]), (&json!(PLATFORM_TEAM), &json!("groups")));
    assert_eq!(platform["attributes"]["name"], "Platform");
    assert_eq!(platform["attributes"]["user_ids"], json!([3, 4]));
    assert_eq!(platform["attributes"]["admin_ids"], json!([3]));
    assert_eq!(by_slug(&teams, "security")["id"], SECURITY_TEAM);
}

#[tokio::test]
async fn pagination_links_walk_every_entry_exactly_once() {
    let World { data: _data, tokens, server } = World::start();
    let alice = &tokens["alice@acme.test"];
    for (path, everything) in [("/v1/roles", 6), ("/v1/on_call_roles", 5), ("/v1/teams", 2)] {
        let whole = walk(&server, alice, path, 100).await;
        assert_eq!(whole.len(), everything, "{path}");
        for size in [1, 2, 4] {
            let paged = walk(&server, alice, path, size).await;
            assert_eq!(paged, whole, "{path} in pages of {size}: the same entries in the same order");
        }
    }
    let Resp { json: page, .. } = get(&server, alice, "/v1/roles?page[size]=4&page[number]=2").await;
    assert_eq!(page["meta"], json!({"current_page": 2, "next_page": null, "prev_page": 1, "total_count": 6, "total_pages": 2}));
    assert_eq!(page["links"]["self"], "/v1/roles?page%5Bsize%5D=4&page%5Bnumber%5D=2");
    assert_eq!(page["links"]["first"], "/v1/roles?page%5Bsize%5D=4&page%5Bnumber%5D=1");
    assert_eq!(page["links"]["last"], page["links"]["self"]);
    assert_eq!(page["links"]["next"], Value::Null);
}

#[tokio::test]
async fn malformed_or_unknown_parameters_are_400_naming_them() {
    let World { data: _data, tokens, server } = World::start();
    let alice = &tokens["alice@acme.test"];
    for path in LISTS {
        for parameter in ["page[size]=101", "page[size]=0", "page[number]=0", "page[number]=two", "filter[name]=x", "sort=slug"] {
            assert_bad_parameter(&server, alice, path, parameter).await;
        }
    }
}

#[tokio::test]
async fn without_a_valid_token_every_endpoint_is_401() {
    let World { data: _data, tokens, server } = World::start();
    let revoked = &tokens["dave@acme.test"];
    let Resp { json: listed, .. } = get(&server, revoked, "/v1/api_keys").await;
    let id = listed["data"][0]["id"].as_str().expect("dave's login").to_owned();
    assert_eq!(revoke(&server, revoked, &id).await.status, 200);
    for path in LISTS.into_iter().chain(["/v1/users/me"]) {
        assert_eq!(send(&server, "GET", path, None, None, None).await.status, 401, "{path} without a token");
        let Resp { status, json: body, .. } = get(&server, revoked, path).await;
        assert_eq!((status, titles(&body)), (401, vec!["Invalid token".to_owned()]), "{path} with a revoked token");
    }
}

#[tokio::test]
async fn globex_never_sees_acmes_directory() {
    let World { data: _data, tokens, server } = World::start();
    let ids = |items: &[Value]| items.iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect::<HashSet<_>>();
    for path in LISTS {
        let acme = ids(&walk(&server, &tokens["alice@acme.test"], path, 100).await);
        let globex = ids(&walk(&server, &tokens["hank@globex.test"], path, 100).await);
        assert!(!globex.is_empty(), "{path}");
        assert!(acme.is_disjoint(&globex), "{path}: {acme:?} and {globex:?} share entries");
    }
    let teams = walk(&server, &tokens["ivy@globex.test"], "/v1/teams", 100).await;
    assert_eq!(ids(&teams), HashSet::from([GLOBEX_TEAM.to_owned()]));
    let roles = walk(&server, &tokens["ivy@globex.test"], "/v1/roles", 100).await;
    assert!(roles.iter().all(|r| r["attributes"]["slug"] != "auditor"), "Acme's custom role stays Acme's");
    let Resp { json: me, .. } = get(&server, &tokens["hank@globex.test"], "/v1/users/me").await;
    assert_eq!((&me["data"]["id"], &me["data"]["attributes"]["email"]), (&json!("1"), &json!("hank@globex.test")));
}
