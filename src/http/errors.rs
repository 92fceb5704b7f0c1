//! JSON:API error documents.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::document;
use crate::service::rules::{Problem, Rejection};
use crate::service::writer::CommandError;
use crate::service::{ServiceError, RECOVERY_RETRY};

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
            errors: vec![ErrorObject {
                status: status.as_str().to_owned(),
                title: title.to_owned(),
                detail: Some(detail.into()),
                source: None,
            }],
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token", "Send a valid, unexpired API token as `Authorization: Bearer <token>`.")
    }

    /// A bare 500: nothing of what failed, so nothing secret, reaches the client.
    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error",
            "The request failed unexpectedly; nothing secret was logged.",
        )
    }

    /// A 503: the ledger cannot do this right now, and the client should try again after
    /// the `Retry-After` every 503 carries.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable", detail)
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
            ServiceError::Command(CommandError::Panicked) => ApiError::internal(),
            other => {
                tracing::error!(error = %other, "request could not be recorded");
                ApiError::unavailable("The ledger cannot record changes right now; nothing was changed. Try again shortly.")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Plain data with string keys: serialization cannot fail.
        let mut response = document(self.status, serde_json::to_vec(&ErrorDocument { errors: self.errors }).unwrap_or_default());
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // The writer tries to reopen a failing store this often: sooner is refused again.
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RECOVERY_RETRY.as_secs().max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 503 tells the client when to try again; no other error does.
    #[test]
    fn a_503_carries_retry_after_and_other_errors_do_not() {
        let unavailable = ApiError::from(ServiceError::Command(CommandError::Unavailable("the disk failed".into()))).into_response();
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
        let not_found = ApiError::not_found().into_response();
        assert_eq!(not_found.headers().get(RETRY_AFTER), None);
    }
}
