//! Request ids: the server gives every request its own (`X-Request-Id` on the response, and
//! the `request_id` of every event the request records), and keeps a client's
//! `X-Request-Id` only beside it, as `client_request_id`, so that a client can correlate its
//! requests with the audit log but never make its entries look like another request's.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use crate::service::Provenance;

const X_REQUEST_ID: &str = "x-request-id";

/// The client's `X-Request-Id` when it is a sane one (1 to 64 visible ASCII characters):
/// anything else is not kept, rather than written into the ledger.
fn client_request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}

/// Gives the request its [`Provenance`] (for the handlers, as an extension) and the
/// response the server's id.
pub(super) async fn assign(mut request: Request, next: Next) -> Response {
    let provenance = Provenance { request_id: Uuid::new_v4().to_string(), client_request_id: client_request_id(request.headers()) };
    let header = HeaderValue::from_str(&provenance.request_id);
    request.extensions_mut().insert(provenance);
    let mut response = next.run(request).await;
    if let Ok(value) = header {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}
