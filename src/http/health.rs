//! `GET /healthz` and `GET /readyz`: what a supervisor or load balancer asks, without a token
//! (they name no tenant's data and no secret, and a probe has no token to send).
//!
//! Alive means the process answers HTTP: restart it if not. Ready means it can do its work
//! now (see [`crate::service::readiness`]): send it requests only then. A node whose writer
//! refuses changes (its store failed and it is reopening it) is alive but not ready, so it
//! is taken out of rotation without interrupting its reads, and comes back by itself.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::AppState;
use crate::service::readiness::Readiness;

/// 200 while the process answers at all.
pub(super) async fn alive() -> Response {
    Json(json!({ "status": "alive" })).into_response()
}

#[derive(Serialize)]
struct ReadinessDocument {
    status: &'static str,
    checks: Readiness,
}

/// 200 when ready, 503 naming each condition that is not.
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    let checks = state.service.readiness().await;
    let (status, word) = if checks.is_ready() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") };
    (status, Json(ReadinessDocument { status: word, checks })).into_response()
}
