//! The HTTP front end: axum routes, JSON:API documents, bearer authentication.
//!
//! This module knows HTTP and nothing of disks: it turns requests into service calls and
//! service answers into JSON:API documents. Every failure, including a panic in a handler,
//! leaves as a JSON:API error document.

mod api_keys;
mod auth;
mod directory;
mod errors;
mod list;
mod openapi;
mod pagination;
pub mod request_documents;
mod resource;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Service;

pub use errors::ApiError;

/// The media type of every response.
pub const JSON_API: &str = "application/vnd.api+json";

/// Request body limit unless configured otherwise.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub(crate) struct AppState {
    service: Arc<Service>,
}

/// A JSON:API response: `body` with the JSON:API media type.
fn document(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API));
    response
}

/// Every route of the API, each registered with its OpenAPI entry.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(api_keys::create, list::list))
        .routes(routes!(api_keys::show, api_keys::update, api_keys::revoke))
        .routes(routes!(api_keys::rotate))
        .routes(routes!(directory::me))
        .routes(routes!(directory::roles))
        .routes(routes!(directory::on_call_roles))
        .routes(routes!(directory::teams))
}

/// The whole API as one router, with its OpenAPI document at `GET /openapi.json` (no token
/// needed: it describes the API, not anyone's data).
pub fn router(service: Arc<Service>, body_limit: usize) -> Router {
    let (routes, document) = api().split_for_parts();
    // The document is plain data with string keys: serialization cannot fail.
    let document = openapi::with_rate_limits(document).to_json().unwrap_or_default();
    let routes = routes
        .route("/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) }))
        .fallback(errors::not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .with_state(AppState { service });
    harden(routes, body_limit)
}

/// The layers every route runs behind: the body limit, a panic becoming a JSON:API 500
/// that reveals nothing, and request tracing (method, path, status; never headers).
pub fn harden(routes: Router, body_limit: usize) -> Router {
    routes
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(errors::panicked))
        .layer(TraceLayer::new_for_http())
}
