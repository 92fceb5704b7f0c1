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
mod pagination;
mod resource;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

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

/// The whole API as one router.
pub fn router(service: Arc<Service>, body_limit: usize) -> Router {
    let routes = Router::new()
        .route("/v1/api_keys", axum::routing::post(api_keys::create).get(list::list))
        .route("/v1/api_keys/{id}", get(api_keys::show).put(api_keys::update).delete(api_keys::revoke))
        .route("/v1/api_keys/{id}/rotate", axum::routing::post(api_keys::rotate))
        .route("/v1/users/me", get(directory::me))
        .route("/v1/roles", get(directory::roles))
        .route("/v1/on_call_roles", get(directory::on_call_roles))
        .route("/v1/teams", get(directory::teams))
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
