//! `GET /v1/api_keys`: query parameters to a [`ListQuery`], a page to a JSON:API document
//! with `links` and `meta` (shared with every list in [`super::pagination`]). Every
//! malformed or unknown parameter is a 400 naming it.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::DateTime;
use uuid::Uuid;

use super::auth::Authenticated;
use super::errors::ApiError;
use super::openapi::responses::{BadRequest, InvalidToken};
use super::pagination::{ListDocument, PageParameters};
use super::{document, pagination, resource, AppState};
use crate::service::listing::{Comparison, ListQuery, SortField, TimeField};
use keyledger_projections::event::UserId;
use keyledger_projections::ApiKeyKind;

/// The longest `filter[search]`: a name is at most 255 characters, so a longer search
/// matches nothing and would only cost a walk of the organization's keys.
const MAX_SEARCH_CHARS: usize = 255;

fn bad(parameter: &str, detail: impl Into<String>) -> ApiError {
    ApiError::bad_parameter(parameter, detail)
}

fn boolean(parameter: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(parameter, format!("{parameter} must be true or false, not {value:?}."))),
    }
}

/// The filters and sort of the key list, for the OpenAPI document (the query is read by
/// hand, in [`parse_query`], to name a malformed parameter in the 400).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct KeyFilters {
    /// `personal`, `team` or `organization`.
    #[param(rename = "filter[kind]", pattern = "^(personal|team|organization)$")]
    _kind: Option<String>,
    /// The exact name.
    #[param(rename = "filter[name]")]
    _name: Option<String>,
    /// A case-insensitive part of the name, at most 255 characters.
    #[param(rename = "filter[search]", max_length = 255)]
    _search: Option<String>,
    /// Personal keys of this user.
    #[param(rename = "filter[user_id]", minimum = 0, maximum = 9223372036854775807_i64)]
    _user_id: Option<i64>,
    /// Team keys of these teams, ids separated by commas.
    #[param(rename = "filter[group_ids]", style = Form, explode = false, min_items = 1)]
    _group_ids: Option<Vec<Uuid>>,
    /// Organization keys with this role.
    #[param(rename = "filter[role_id]")]
    _role_id: Option<Uuid>,
    /// Keys that authenticate now (`true`) or not.
    #[param(rename = "filter[active]")]
    _active: Option<bool>,
    /// Keys whose expiry has passed (`true`) or not.
    #[param(rename = "filter[expired]")]
    _expired: Option<bool>,
    /// Keys whose `created_at` is after this RFC 3339 date-time.
    #[param(rename = "filter[created_at][gt]")]
    _created_at_gt: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `created_at` is at or after this RFC 3339 date-time.
    #[param(rename = "filter[created_at][gte]")]
    _created_at_gte: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `created_at` is before this RFC 3339 date-time.
    #[param(rename = "filter[created_at][lt]")]
    _created_at_lt: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `created_at` is at or before this RFC 3339 date-time.
    #[param(rename = "filter[created_at][lte]")]
    _created_at_lte: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `expires_at` is after this RFC 3339 date-time.
    #[param(rename = "filter[expires_at][gt]")]
    _expires_at_gt: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `expires_at` is at or after this RFC 3339 date-time.
    #[param(rename = "filter[expires_at][gte]")]
    _expires_at_gte: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `expires_at` is before this RFC 3339 date-time.
    #[param(rename = "filter[expires_at][lt]")]
    _expires_at_lt: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `expires_at` is at or before this RFC 3339 date-time.
    #[param(rename = "filter[expires_at][lte]")]
    _expires_at_lte: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `last_used_at` is after this RFC 3339 date-time.
    #[param(rename = "filter[last_used_at][gt]")]
    _last_used_at_gt: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `last_used_at` is at or after this RFC 3339 date-time.
    #[param(rename = "filter[last_used_at][gte]")]
    _last_used_at_gte: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `last_used_at` is before this RFC 3339 date-time.
    #[param(rename = "filter[last_used_at][lt]")]
    _last_used_at_lt: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys whose `last_used_at` is at or before this RFC 3339 date-time.
    #[param(rename = "filter[last_used_at][lte]")]
    _last_used_at_lte: Option<chrono::DateTime<chrono::Utc>>,
    /// `name`, `kind`, `created_at`, `updated_at`, `expires_at` or `last_used_at`; `-` first
    /// for descending. Default `created_at`.
    #[param(rename = "sort", pattern = "^-?(name|kind|created_at|updated_at|expires_at|last_used_at)$")]
    _sort: Option<String>,
}

pub(super) fn parse_query(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery::default();
    for (parameter, value) in pairs {
        let p = parameter.as_str();
        if pagination::read_page_parameter(&mut query.paging, p, value)? {
            continue;
        }
        match p {
            "filter[kind]" => {
                query.kind = Some(match value.as_str() {
                    "personal" => ApiKeyKind::Personal,
                    "team" => ApiKeyKind::Team,
                    "organization" => ApiKeyKind::Organization,
                    _ => return Err(bad(p, "filter[kind] must be personal, team or organization.")),
                });
            }
            "filter[name]" => query.name = Some(value.clone()),
            "filter[search]" if value.chars().count() > MAX_SEARCH_CHARS => {
                return Err(bad(p, format!("filter[search] may be at most {MAX_SEARCH_CHARS} characters.")));
            }
            "filter[search]" => query.search = Some(value.clone()),
            "filter[user_id]" => {
                query.user_id =
                    Some(user_id(value).ok_or_else(|| bad(p, "filter[user_id] must be a user's number, 0 to 9223372036854775807."))?)
            }
            "filter[group_ids]" => {
                query.group_ids = value
                    .split(',')
                    .map(|id| Uuid::parse_str(id.trim()))
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad(p, "filter[group_ids] must be team ids separated by commas."))?;
            }
            "filter[role_id]" => query.role_id = Some(Uuid::parse_str(value).map_err(|_| bad(p, "filter[role_id] must be a role id."))?),
            "filter[active]" => query.active = Some(boolean(p, value)?),
            "filter[expired]" => query.expired = Some(boolean(p, value)?),
            "sort" => {
                let (descending, field) = value.strip_prefix('-').map_or((false, value.as_str()), |f| (true, f));
                query.descending = descending;
                query.sort = match field {
                    "name" => SortField::Name,
                    "kind" => SortField::Kind,
                    "created_at" => SortField::CreatedAt,
                    "updated_at" => SortField::UpdatedAt,
                    "expires_at" => SortField::ExpiresAt,
                    "last_used_at" => SortField::LastUsedAt,
                    _ => {
                        return Err(bad(
                            p,
                            "sort must be one of name, kind, created_at, updated_at, expires_at, last_used_at, with - for descending.",
                        ))
                    }
                };
            }
            _ => query.times.push(time_filter(p, value)?),
        }
    }
    Ok(query)
}

/// A user's number as the OpenAPI document states it (an int64, from 0): generated clients
/// and schema-driven tools hold it in a signed 64-bit integer.
fn user_id(value: &str) -> Option<UserId> {
    value.parse::<i64>().ok().and_then(|id| UserId::try_from(id).ok())
}

/// `filter[created_at|expires_at|last_used_at][gt|gte|lt|lte]`, or an unknown parameter.
fn time_filter(parameter: &str, value: &str) -> Result<(TimeField, Comparison, DateTime<chrono::Utc>), ApiError> {
    let unknown = || bad(parameter, format!("{parameter} is not a parameter of this list; see the API's filter and sort parameters."));
    let rest = parameter.strip_prefix("filter[").ok_or_else(unknown)?;
    let (field, comparison) = rest.split_once("][").ok_or_else(unknown)?;
    let comparison = comparison.strip_suffix(']').ok_or_else(unknown)?;
    let field = match field {
        "created_at" => TimeField::CreatedAt,
        "expires_at" => TimeField::ExpiresAt,
        "last_used_at" => TimeField::LastUsedAt,
        _ => return Err(unknown()),
    };
    let comparison = match comparison {
        "gt" => Comparison::Gt,
        "gte" => Comparison::Gte,
        "lt" => Comparison::Lt,
        "lte" => Comparison::Lte,
        _ => return Err(unknown()),
    };
    let at = DateTime::parse_from_rfc3339(value)
        .map_err(|_| bad(parameter, format!("{parameter} must be an RFC 3339 date-time.")))?
        .with_timezone(&chrono::Utc);
    Ok((field, comparison, at))
}

#[utoipa::path(get, path = "/v1/api_keys", tag = "api_keys", params(PageParameters, KeyFilters),
    responses(
        (status = 200, description = "The keys the caller may see, a page at a time (never a token)", body = ListDocument<resource::Resource>, content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = InvalidToken),
    ))]
pub(super) async fn list(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = pagination::pairs(query)?;
    let query = parse_query(&pairs)?;
    // A list may walk and sort a whole organization's keys: that runs on the blocking pool,
    // not on the threads that answer every other request, and only so many at once that a
    // core stays free for them (a GET beside eight looping lists would otherwise wait for
    // a runtime thread that is busy sorting).
    let permit = Arc::clone(&app.lists).acquire_owned().await.map_err(|_| ApiError::internal())?;
    let service = Arc::clone(&app.service);
    let body = tokio::task::spawn_blocking(move || {
        let _computing = permit;
        service.list_api_keys(&caller, &query, |page| {
            let data = page.items.iter().map(|listed| resource::api_key(&listed.key, listed.last_used_at, None)).collect();
            pagination::document("/v1/api_keys", &pairs, query.paging, page.total, data)
        })
    })
    .await
    .map_err(|_| ApiError::internal())?;
    Ok(document(StatusCode::OK, body))
}

/// How many key lists are computed at once: all cores but one, at least one.
pub(super) fn concurrent_lists() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get().saturating_sub(1).max(1))
}
