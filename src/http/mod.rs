//! The HTTP front end: axum routes, JSON:API documents, bearer authentication, and the
//! server that bounds what a client may cost (timeouts, connections, rate limits).
//!
//! This module knows HTTP and nothing of disks: it turns requests into service calls and
//! service answers into JSON:API documents. Every failure, including a panic in a handler
//! and a request cut by the request timeout, leaves as a JSON:API error document.

mod api_keys;
mod auth;
mod directory;
mod errors;
mod exposition;
mod fallbacks;
mod health;
mod list;
mod openapi;
mod pagination;
mod rate_limit;
pub mod request_documents;
mod request_id;
mod resource;
mod server;

use std::sync::Arc;

use std::time::Duration;
use tokio::sync::Semaphore;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Service;
use rate_limit::RateLimits;

pub use errors::ApiError;
pub use server::serve;

/// The media type of every response.
pub const JSON_API: &str = "application/vnd.api+json";

/// Request body limit unless configured otherwise.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// What one client may cost the server (API.md, "Limits and response hygiene"). The defaults
/// are the contract's; `serve` takes each from its command line.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub body: usize,
    /// From the moment a connection waits for a request until its headers have arrived.
    pub header_timeout: Duration,
    /// From a request's headers to its answer; beyond it the request is cut with a 503.
    pub request_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Requests per key and minute; 0: no limit.
    pub rate_limit: u32,
    /// Requests without a valid token per client address and minute; 0: no limit.
    pub auth_failure_limit: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body: DEFAULT_BODY_LIMIT,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            rate_limit: 3000,
            auth_failure_limit: 60,
        }
    }
}

/// What every handler is given: one pointer, since axum clones the state for each request
/// (a clone per field showed in the GET path's profile).
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    service: Arc<Service>,
    rate_limits: Arc<RateLimits>,
    metrics: PrometheusHandle,
    /// Key lists being computed at once (see [`list::list`]).
    lists: Arc<Semaphore>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
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
/// needed: it describes the API, not anyone's data) and, outside `/v1` and so without a
/// token or a rate limit, what operators ask: `GET /healthz`, `GET /readyz` ([`health`]) and
/// `GET /metrics` ([`exposition`], which also counts every request, outside all other layers).
fn router(service: Arc<Service>, rate_limits: Arc<RateLimits>, metrics: PrometheusHandle, limits: &Limits) -> Router {
    let (routes, document) = api().split_for_parts();
    // The document is plain data with string keys: serialization cannot fail.
    let document = openapi::with_rate_limits(document).to_json().unwrap_or_default();
    let routes = routes
        .route("/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) }))
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(exposition::render))
        .fallback(fallbacks::not_found)
        .method_not_allowed_fallback(fallbacks::method_not_allowed)
        .layer(axum::middleware::from_fn(rate_limit::standing_fields))
        .with_state(AppState(Arc::new(Shared {
            service,
            rate_limits,
            metrics,
            lists: Arc::new(Semaphore::new(list::concurrent_lists())),
        })));
    harden(routes, limits).layer(axum::middleware::from_fn(exposition::count))
}

/// The layers every route runs behind: the body limit, a panic becoming a JSON:API 500
/// that reveals nothing, the request timeout (a JSON:API 503), the request's id (see
/// [`request_id`]), the headers every response
/// carries — outside all of these, so that none of their answers goes without them — and
/// request tracing (method, path, status; never headers).
pub fn harden(routes: Router, limits: &Limits) -> Router {
    routes
        .layer(DefaultBodyLimit::max(limits.body))
        .layer(CatchPanicLayer::custom(fallbacks::panicked))
        .layer(ServiceBuilder::new().layer(HandleErrorLayer::new(fallbacks::cut_off)).timeout(limits.request_timeout))
        .layer(axum::middleware::from_fn(request_id::assign))
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(TraceLayer::new_for_http())
}
