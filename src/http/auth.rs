//! Bearer authentication as an extractor: a handler that takes [`Authenticated`] runs only
//! for a valid token within its key's rate limit; everything else answers 401 (429 beyond
//! the client address's quota of failures) or 429 before any body is read. A valid token is
//! a use of its key (`last_used_at`), noted before the handler runs, so the response of the
//! request that used a key already shows it; a request refused for its key's rate is no use.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;
use super::rate_limit::StandingSlot;
use super::AppState;
use crate::service::rules::caller::Caller;
use crate::telemetry;

pub(crate) struct Authenticated(pub Caller);

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(parts: &Parts) -> Option<&str> {
    let header = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts);
        if token.is_some() {
            // Strict consistency: never authenticate against a state behind the shared log.
            state.service.catch_up_if_strict().await.map_err(|e| {
                tracing::warn!(error = %e, "strict consistency: cannot confirm this node is up to date; answering 503");
                ApiError::unavailable(
                    "This node cannot confirm it has every change to the ledger right now; nothing was read or changed. Try again shortly.",
                )
                .into_response()
            })?;
        }
        let Some(caller) = token.and_then(|token| state.service.authenticate(token)) else {
            let reason = if token.is_some() { "rejected" } else { "missing" };
            metrics::counter!(telemetry::AUTHENTICATION_FAILURES, "reason" => reason).increment(1);
            let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
            return Err(state.rate_limits.failed_authentication(address));
        };
        let standing = state.rate_limits.request_by(caller.api_key_id).map_err(IntoResponse::into_response)?;
        if let (Some(slot), Some(standing)) = (parts.extensions.get::<StandingSlot>(), standing) {
            slot.fill(standing);
        }
        state.service.note_use(caller.api_key_id);
        Ok(Authenticated(caller))
    }
}
