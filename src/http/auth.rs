//! Bearer authentication as an extractor: a handler that takes [`Authenticated`] runs only
//! for a valid token, and everything else answers 401 before any body is read. A valid token
//! is a use of its key (`last_used_at`), noted before the handler runs, so the response of
//! the request that used a key already shows it.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::errors::ApiError;
use super::AppState;
use crate::service::rules::caller::Caller;

pub(crate) struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(ApiError::unauthorized)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or_else(ApiError::unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::unauthorized());
        }
        let caller = state.service.authenticate(token.trim()).ok_or_else(ApiError::unauthorized)?;
        state.service.note_use(caller.api_key_id);
        Ok(Authenticated(caller))
    }
}
