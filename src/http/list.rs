//! `GET /v1/api_keys`: query parameters to a [`ListQuery`], a page to a JSON:API document
//! with `links` and `meta`. Every malformed or unknown parameter is a 400 naming it.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use serde::Serialize;
use uuid::Uuid;

use super::auth::Authenticated;
use super::errors::ApiError;
use super::{resource, AppState, JSON_API};
use crate::service::listing::{Comparison, ListQuery, Page, SortField, TimeField, MAX_PAGE_SIZE};
use keyledger_projections::ApiKeyKind;

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

fn parse_query(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery::default();
    for (parameter, value) in pairs {
        let p = parameter.as_str();
        match p {
            "page[number]" => {
                query.page = value.parse().ok().filter(|n| *n >= 1).ok_or_else(|| bad(p, "page[number] must be a whole number from 1."))?;
            }
            "page[size]" => {
                query.size = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| bad(p, format!("page[size] must be a whole number from 1 to {MAX_PAGE_SIZE}.")))?;
            }
            "filter[kind]" => {
                query.kind = Some(match value.as_str() {
                    "personal" => ApiKeyKind::Personal,
                    "team" => ApiKeyKind::Team,
                    "organization" => ApiKeyKind::Organization,
                    _ => return Err(bad(p, "filter[kind] must be personal, team or organization.")),
                });
            }
            "filter[name]" => query.name = Some(value.clone()),
            "filter[search]" => query.search = Some(value.clone()),
            "filter[user_id]" => query.user_id = Some(value.parse().map_err(|_| bad(p, "filter[user_id] must be a user's number."))?),
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
                    _ => return Err(bad(p, "sort must be one of name, kind, created_at, updated_at, expires_at, last_used_at, with - for descending.")),
                };
            }
            _ => query.times.push(time_filter(p, value)?),
        }
    }
    Ok(query)
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

#[derive(Serialize)]
struct Links {
    #[serde(rename = "self")]
    this: String,
    first: String,
    prev: Option<String>,
    next: Option<String>,
    last: String,
}

#[derive(Serialize)]
struct Meta {
    current_page: usize,
    next_page: Option<usize>,
    prev_page: Option<usize>,
    total_count: usize,
    total_pages: usize,
}

/// The URL of page `n` with every other parameter kept.
fn page_link(pairs: &[(String, String)], n: usize) -> String {
    let number = n.to_string();
    let mut kept: Vec<(&str, &str)> = pairs.iter().filter(|(k, _)| k != "page[number]").map(|(k, v)| (k.as_str(), v.as_str())).collect();
    kept.push(("page[number]", &number));
    format!("/v1/api_keys?{}", serde_urlencoded::to_string(&kept).unwrap_or_default())
}

#[derive(Serialize)]
struct ListDocument<'a> {
    data: Vec<resource::Resource<'a>>,
    links: Links,
    meta: Meta,
}

fn document(page: &Page, query: &ListQuery, pairs: &[(String, String)]) -> Vec<u8> {
    let total_pages = page.total.div_ceil(query.size).max(1);
    let current = query.page;
    let links = Links {
        this: page_link(pairs, current),
        first: page_link(pairs, 1),
        prev: (current > 1).then(|| page_link(pairs, (current - 1).min(total_pages))),
        next: (current < total_pages).then(|| page_link(pairs, current + 1)),
        last: page_link(pairs, total_pages),
    };
    let meta = Meta {
        current_page: current,
        next_page: (current < total_pages).then_some(current + 1),
        prev_page: (current > 1).then_some(current - 1),
        total_count: page.total,
        total_pages,
    };
    let data = page.keys.iter().map(|listed| resource::api_key(&listed.key, listed.last_used_at, None)).collect();
    // Plain data with string keys: serialization cannot fail.
    serde_json::to_vec(&ListDocument { data, links, meta }).unwrap_or_default()
}

pub(super) async fn list(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = pairs.map_err(|_| ApiError::bad_request("The query string is malformed."))?;
    let query = parse_query(&pairs)?;
    let body = app.service.list_api_keys(&caller, &query, |page| document(page, &query, &pairs));
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API));
    Ok(response)
}
