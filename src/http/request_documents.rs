//! The readers of what clients send, callable without a server: the entry points the fuzz
//! targets in `fuzz/` drive. Each runs exactly the code its handler runs on a request's
//! body or query string, after authentication and before any service call, so a finding
//! here is a finding in the handler.

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, Uri};

use super::api_keys::{self, read_document, Body};
use super::errors::ApiError;
use super::{list, pagination};
use crate::service::listing::ListQuery;
use crate::service::rules::create_api_key::NewApiKey;
use crate::service::rules::rotate_api_key::Rotation;
use crate::service::rules::update_api_key::KeyChanges;

/// A body as the handlers read it, sent with no content type (the handler's 415 depends
/// only on the header).
fn document(body: &[u8], need: Body) -> Result<serde_json::Value, ApiError> {
    read_document(&HeaderMap::new(), Ok(Bytes::copy_from_slice(body)), need)
}

/// The body of `POST /v1/api_keys`: 400 when it is not JSON, else its attributes with every
/// shape problem noted.
pub fn create(body: &[u8]) -> Result<NewApiKey, ApiError> {
    Ok(api_keys::new_api_key(&document(body, Body::Required)?))
}

/// The body of `PUT /v1/api_keys/{id}`.
pub fn update(body: &[u8]) -> Result<KeyChanges, ApiError> {
    Ok(api_keys::key_changes(&document(body, Body::Required)?))
}

/// The body of `POST /v1/api_keys/{id}/rotate` (none at all asks for the defaults).
pub fn rotate(body: &[u8]) -> Result<Rotation, ApiError> {
    Ok(api_keys::rotation(&document(body, Body::Optional)?))
}

/// The query string of `GET /v1/api_keys` (without the `?`), decoded as axum's `Query`
/// decodes a request's. A string that cannot be part of a request target is refused as the
/// server would refuse it (400).
pub fn list_query(query: &str) -> Result<ListQuery, ApiError> {
    let malformed = || ApiError::bad_request("The query string is malformed.");
    let uri: Uri = format!("/v1/api_keys?{query}").parse().map_err(|_| malformed())?;
    list::parse_query(&pagination::pairs(Query::try_from_uri(&uri))?)
}
