//! `GET /metrics` in the Prometheus text format, and the middleware that counts and times
//! every request by its route (see [`crate::telemetry`] for what each series means).
//!
//! The route label is the matched route's template (`/v1/api_keys/{id}`), never the
//! requested path: a path holds key ids and anything a client cares to send, and every
//! distinct label value is a series kept forever. An unknown path is `unmatched`.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use super::AppState;
use crate::telemetry;

/// The media type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples are folded into their buckets when nobody scrapes: without
/// it an unscraped server would keep every sample of every request.
pub(super) const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The metrics, rendered now.
pub(super) async fn render(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], state.metrics.render()).into_response()
}

/// The request's method as a label: the standard ones by name, anything else (a client may
/// send any token as a method) as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times each request, outside every other layer, so that the answers the
/// layers give (413, a timeout's 503, a panic's 500) are counted too.
pub(super) async fn count(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| telemetry::UNMATCHED_ROUTE.to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(telemetry::REQUEST_DURATION, "route" => route.clone(), "method" => method).record(started.elapsed().as_secs_f64());
    metrics::counter!(telemetry::REQUESTS, "route" => route, "method" => method, "status" => status).increment(1);
    response
}

/// Folds histogram samples into buckets every [`UPKEEP_EVERY`], for the life of the server.
pub(super) async fn upkeep(metrics: PrometheusHandle) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        every.tick().await;
        metrics.run_upkeep();
    }
}
