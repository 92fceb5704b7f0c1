//! Request ids: the server gives every request its own (`X-Request-Id` on the response, and
//! the `request_id` of every event the request records), and keeps a client's
//! `X-Request-Id` only beside it, as `client_request_id`, so that a client can correlate its
//! requests with the audit log but never make its entries look like another request's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

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

/// A new request id: a keyed BLAKE3 hash of a per-process counter, under a key drawn once
/// per process, shaped as a version-4 UUID. As unique and unguessable as a random one (it
/// tells a client nothing about how many requests others made), without an OS random
/// number per request, which showed in the read path's profile.
fn next_request_id() -> Uuid {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(|| *blake3::hash(Uuid::new_v4().as_bytes()).as_bytes());
    let hash = blake3::keyed_hash(key, &COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_bytes()[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Gives the request its [`Provenance`] (for the handlers, as an extension) and the
/// response the server's id.
pub(super) async fn assign(mut request: Request, next: Next) -> Response {
    let provenance = Provenance { request_id: next_request_id().to_string(), client_request_id: client_request_id(request.headers()) };
    let header = HeaderValue::from_str(&provenance.request_id);
    request.extensions_mut().insert(provenance);
    let mut response = next.run(request).await;
    if let Ok(value) = header {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<Uuid> = (0..1000).map(|_| next_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.get_version_num() == 4 && id.get_variant() == uuid::Variant::RFC4122));
    }
}
