//! JSON:API error documents.

use std::any::Any;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Authenticated;
use super::JSON_API;
use crate::service::rules::{Problem, Rejection};
use crate::service::writer::CommandError;
use crate::service::ServiceError;

/// A JSON:API error document: one entry per problem.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorDocument {
    errors: Vec<ErrorObject>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ErrorObject {
    /// The HTTP status, as a string.
    #[schema(example = "422")]
    status: String,
    /// A sentence: "Name can't be blank".
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
}

/// Where the problem is: a JSON pointer into the request document, or a query parameter.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Source {
    Pointer(String),
    Parameter(String),
}

/// An error response: a status and one entry per problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    errors: Vec<ErrorObject>,
}

impl ApiError {
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            errors: vec![ErrorObject { status: status.as_str().to_owned(), title: title.to_owned(), detail: Some(detail.into()), source: None }],
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid token",
            "Send a valid, unexpired API token as `Authorization: Bearer <token>`.",
        )
    }

    pub fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "Not found or unauthorized", "No such resource is visible to this token.")
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }

    /// A 400 naming the query parameter at fault.
    pub fn bad_parameter(parameter: &str, detail: impl Into<String>) -> Self {
        let mut error = ApiError::bad_request(detail);
        error.errors[0].source = Some(Source::Parameter(parameter.to_owned()));
        error
    }

    /// 422 with every problem, each pointing at its place in the request document.
    pub fn invalid(problems: Vec<Problem>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors: problems
                .into_iter()
                .map(|p| ErrorObject {
                    status: "422".into(),
                    title: p.title,
                    detail: Some(p.detail),
                    source: Some(Source::Pointer(p.pointer)),
                })
                .collect(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Unauthenticated => ApiError::unauthorized(),
            Rejection::Forbidden(detail) => ApiError::new(StatusCode::FORBIDDEN, "Forbidden", detail),
            Rejection::SupersededSecret => ApiError::new(
                StatusCode::FORBIDDEN,
                "This token was replaced by a rotation; use the key's current token",
                "The key's previous secret may only read until its grace period ends; nothing was changed.",
            ),
            Rejection::Invalid(problems) => ApiError::invalid(problems),
            Rejection::NotFound => ApiError::not_found(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Command(CommandError::Rejected(rejection)) => rejection.into(),
            ServiceError::Command(CommandError::Panicked) => internal_error(),
            other => {
                tracing::error!(error = %other, "request could not be recorded");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service unavailable",
                    "The ledger cannot record changes right now; nothing was changed. Try again later.",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Plain data with string keys: serialization cannot fail.
        let body = serde_json::to_vec(&ErrorDocument { errors: self.errors }).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API));
        response
    }
}

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
    internal_error().into_response()
}

/// A bare 500: nothing of what failed, so nothing secret, reaches the client.
fn internal_error() -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", "The request failed unexpectedly; nothing secret was logged.")
}
