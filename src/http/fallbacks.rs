//! The answers no handler gives: unknown paths and methods, a handler that panicked, and a
//! request cut by the request timeout. Each is a JSON:API error document like any other.

use std::any::Any;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::BoxError;

use super::auth::Authenticated;
use super::errors::ApiError;

/// Unknown paths: 401 without a valid token, 404 with one.
pub(super) async fn not_found(_caller: Authenticated) -> ApiError {
    ApiError::not_found()
}

pub(super) async fn method_not_allowed(_caller: Authenticated) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", "This path does not accept that method.")
}

/// A panicking handler becomes a 500 that reveals nothing of the panic.
pub(super) fn panicked(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::internal().into_response()
}

/// A request still unanswered at the request timeout. 503 rather than 408: headers are
/// bounded by their own timeout and bodies are small, so a request still running this long
/// is nearly always waiting on the server (the ledger's storage), which is the 503 this API
/// already answers when it cannot record; clients retry a 503 later, as they should here.
/// A change the request asked for may still be recorded, and the detail says so. (The
/// timeout is the only error the routes' layers can raise: the routes themselves cannot fail.)
pub(super) async fn cut_off(_elapsed: BoxError) -> ApiError {
    tracing::warn!("a request was cut at the request timeout");
    ApiError::unavailable(
        "The request took too long and was cut. A change it asked for may or may not have been recorded: \
         read the resource before trying again.",
    )
}
