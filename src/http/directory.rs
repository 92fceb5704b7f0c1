//! The directory, read-only, so that clients can find the ids the keys API takes:
//! `GET /v1/users/me`, `/v1/roles`, `/v1/on_call_roles` and `/v1/teams` (JSON:API type
//! `groups`). Lists page like `GET /v1/api_keys` and take no other parameter. Every caller
//! of an organization may read its directory, whatever its role: the ids are what it needs
//! to ask for anything, and the keys API still decides what it may do.
//!
//! `users/me` for a team or organization key is the service account the key acts as, as a
//! `users` resource with `kind` `service_account`, no email, and the key and team it
//! belongs to; for a personal key it is the user, with `kind` `user`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyledger_projections::directory::{OnCallRole, Role, Team};
use keyledger_projections::event::UserId;
use keyledger_projections::Permission;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Authenticated;
use super::errors::ApiError;
use super::openapi::responses::{BadRequest, InvalidToken};
use super::pagination::{ListDocument, PageParameters};
use super::{document, pagination, AppState};
use crate::service::directory::{self, Me};
use crate::service::paging::{Page, Paging};
use crate::service::rules::caller::Caller;

/// A directory entry as a JSON:API resource object.
#[derive(Serialize, ToSchema)]
#[schema(as = DirectoryResource)]
pub(super) struct Resource<A> {
    id: String,
    /// `users`, `roles`, `on_call_roles` or `groups`.
    #[serde(rename = "type")]
    kind: &'static str,
    attributes: A,
}

#[derive(Serialize, ToSchema)]
pub(super) struct UserAttributes {
    /// `user`, or `service_account` for the account a team or organization key acts as.
    kind: &'static str,
    #[schema(required = true)]
    email: Option<String>,
    #[schema(required = true)]
    role_id: Option<Uuid>,
    #[schema(required = true)]
    on_call_role_id: Option<Uuid>,
    /// A team key's team.
    #[schema(required = true)]
    group_id: Option<Uuid>,
    /// The key a service account acts for.
    #[schema(required = true)]
    api_key_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct RoleAttributes {
    name: String,
    slug: String,
    #[schema(value_type = Vec<String>, example = json!(["create", "read", "update", "delete"]))]
    api_keys_permissions: Vec<Permission>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct OnCallRoleAttributes {
    name: String,
    slug: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct GroupAttributes {
    name: String,
    slug: String,
    user_ids: Vec<UserId>,
    admin_ids: Vec<UserId>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DirectoryDocument)]
pub(super) struct Document<A> {
    data: Resource<A>,
}

fn user(me: Me<'_>) -> Resource<UserAttributes> {
    match me {
        Me::User(user) => Resource {
            id: user.id.to_string(),
            kind: "users",
            attributes: UserAttributes {
                kind: "user",
                email: Some(user.email.clone()),
                role_id: Some(user.role_id),
                on_call_role_id: user.on_call_role_id,
                group_id: None,
                api_key_id: None,
            },
        },
        Me::ServiceAccount(account) => Resource {
            id: account.id.to_string(),
            kind: "users",
            attributes: UserAttributes {
                kind: "service_account",
                email: None,
                role_id: account.role_id,
                on_call_role_id: account.on_call_role_id,
                group_id: account.group_id,
                api_key_id: Some(account.api_key_id),
            },
        },
    }
}

fn role(role: &Role) -> Resource<RoleAttributes> {
    Resource {
        id: role.id.to_string(),
        kind: "roles",
        attributes: RoleAttributes {
            name: role.name.clone(),
            slug: role.slug.clone(),
            api_keys_permissions: role.api_keys_permissions.clone(),
        },
    }
}

fn on_call_role(role: &OnCallRole) -> Resource<OnCallRoleAttributes> {
    Resource {
        id: role.id.to_string(),
        kind: "on_call_roles",
        attributes: OnCallRoleAttributes { name: role.name.clone(), slug: role.slug.clone() },
    }
}

fn group(team: &Team) -> Resource<GroupAttributes> {
    Resource {
        id: team.id.to_string(),
        kind: "groups",
        attributes: GroupAttributes {
            name: team.name.clone(),
            slug: team.slug.clone(),
            user_ids: team.user_ids.iter().copied().collect(),
            admin_ids: team.admin_ids.iter().copied().collect(),
        },
    }
}

/// `GET /v1/users/me`. 401 if the caller left the directory after it authenticated.
#[utoipa::path(get, path = "/v1/users/me", tag = "directory",
    responses(
        (status = 200, description = "The caller: a user, or the service account a team or organization key acts as", body = Document<UserAttributes>, content_type = "application/vnd.api+json"),
        (status = 401, response = InvalidToken),
    ))]
pub(super) async fn me(State(app): State<AppState>, Authenticated(caller): Authenticated) -> Result<Response, ApiError> {
    let data = app.service.read(|state| directory::me(state, &caller).map(user)).ok_or_else(ApiError::unauthorized)?;
    // Plain data with string keys: serialization cannot fail. Rendered after the state's
    // lock is let go, as every answer is.
    Ok(document(StatusCode::OK, serde_json::to_vec(&Document { data }).unwrap_or_default()))
}

/// A page of one of the directory's lists, cut under one look at the state (its entries
/// copied out, at most a page of them) and rendered after the lock is let go.
fn list<A: Serialize>(
    app: &AppState,
    caller: &Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    path: &str,
    page: impl FnOnce(&keyledger_projections::State, &Caller, Paging) -> Page<Resource<A>>,
) -> Result<Response, ApiError> {
    let pairs = pagination::pairs(query)?;
    let paging = pagination::paging_only(&pairs)?;
    let page = app.service.read(|state| page(state, caller, paging));
    Ok(document(StatusCode::OK, pagination::document(path, &pairs, paging, page.total, page.items)))
}

#[utoipa::path(get, path = "/v1/roles", tag = "directory", params(PageParameters),
    responses(
        (status = 200, description = "The organization's roles, a page at a time", body = ListDocument<Resource<RoleAttributes>>, content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = InvalidToken),
    ))]
pub(super) async fn roles(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    list(&app, &caller, query, "/v1/roles", |state, caller, paging| directory::roles(state, caller, paging).map(role))
}

#[utoipa::path(get, path = "/v1/on_call_roles", tag = "directory", params(PageParameters),
    responses(
        (status = 200, description = "The organization's on-call roles, a page at a time", body = ListDocument<Resource<OnCallRoleAttributes>>, content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = InvalidToken),
    ))]
pub(super) async fn on_call_roles(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    list(&app, &caller, query, "/v1/on_call_roles", |state, caller, paging| {
        directory::on_call_roles(state, caller, paging).map(on_call_role)
    })
}

#[utoipa::path(get, path = "/v1/teams", tag = "directory", params(PageParameters),
    responses(
        (status = 200, description = "The organization's teams (type groups), a page at a time", body = ListDocument<Resource<GroupAttributes>>, content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = InvalidToken),
    ))]
pub(super) async fn teams(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    list(&app, &caller, query, "/v1/teams", |state, caller, paging| directory::teams(state, caller, paging).map(group))
}
