//! `/v1/api_keys`: create, show, update, revoke and rotate.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::auth::Authenticated;
use super::errors::ApiError;
use super::openapi::requests::{CreateApiKeyDocument, RotateApiKeyDocument, UpdateApiKeyDocument};
use super::openapi::responses::{BadRequest, Forbidden, Invalid, InvalidToken, NotFound, PayloadTooLarge, UnsupportedMediaType};
use super::{document, resource, AppState};
use crate::service::rules::create_api_key::NewApiKey;
use crate::service::rules::rotate_api_key::Rotation;
use crate::service::rules::update_api_key::{KeyChanges, IMMUTABLE};
use crate::service::rules::Problem;
use crate::service::Provenance;

const ATTRIBUTES: [&str; 7] = ["name", "kind", "expires_at", "description", "group_id", "role_id", "on_call_role_id"];
const UPDATABLE: [&str; 3] = ["name", "description", "expires_at"];

/// 415 unless the body is declared as one of the two JSON media types (or not declared).
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let essence = value.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence == "application/vnd.api+json" || essence == "application/json" {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "Send the body as application/vnd.api+json (or application/json).",
        ))
    }
}

/// Whether a request may come without a body (rotate: then it asks for the defaults).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Body {
    Required,
    Optional,
}

/// The request's JSON document, checked in API.md's order: the declared media type (415),
/// the size (413), the JSON (400). Where the body is optional, an empty one is `null`
/// whatever type it declares.
pub(super) fn read_document(headers: &HeaderMap, body: Result<Bytes, BytesRejection>, need: Body) -> Result<Value, ApiError> {
    if need == Body::Optional && body.as_ref().is_ok_and(|bytes| bytes.iter().all(u8::is_ascii_whitespace)) {
        return Ok(Value::Null);
    }
    check_content_type(headers)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large", "The request body is larger than this server accepts.")
        } else {
            ApiError::bad_request("The request body could not be read.")
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("The body is not valid JSON: {e}.")))
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn unknown_attribute(name: &str, allowed: &[&str]) -> Problem {
    Problem::attribute(&escape_pointer(name), format!("Unknown attribute {name}"), format!("Allowed attributes: {}.", allowed.join(", ")))
}

/// The `data.attributes` object of a JSON:API document, noting what is wrong with `data`
/// and `data.type` rather than stopping there.
fn attributes_of<'a>(document: &'a Value, problems: &mut Vec<Problem>) -> Option<&'a Map<String, Value>> {
    let Some(data) = document.get("data").and_then(Value::as_object) else {
        problems.push(Problem::new("/data", "Data can't be blank", r#"Send {"data": {"type": "api_keys", "attributes": {...}}}."#));
        return None;
    };
    if data.get("type").and_then(Value::as_str) != Some("api_keys") {
        problems.push(Problem::new("/data/type", "Type must be api_keys", r#"Set data.type to "api_keys"."#));
    }
    match data.get("attributes") {
        Some(Value::Object(map)) => Some(map),
        _ => {
            problems.push(Problem::new("/data/attributes", "Attributes can't be blank", "Send the key's attributes as an object."));
            None
        }
    }
}

/// An attribute's value as text: `Ok(None)` for null; ids may also be numbers.
fn text_of(name: &str, value: &Value) -> Result<Option<String>, Problem> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) if name.ends_with("_id") => Ok(Some(n.to_string())),
        _ => {
            let label = name.replace('_', " ");
            let mut chars = label.chars();
            let label = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or(label);
            Err(Problem::attribute(name, format!("{label} must be a string"), format!("Send {name} as a JSON string.")))
        }
    }
}

/// Reads the attributes of a create document, noting every shape problem rather than
/// stopping at the first.
pub(super) fn new_api_key(document: &Value) -> NewApiKey {
    let mut attrs = NewApiKey::default();
    let empty = Map::new();
    let attributes = attributes_of(document, &mut attrs.problems).unwrap_or(&empty);
    for (name, value) in attributes {
        if !ATTRIBUTES.contains(&name.as_str()) {
            attrs.problems.push(unknown_attribute(name, &ATTRIBUTES));
            continue;
        }
        let text = match text_of(name, value) {
            Ok(text) => text,
            Err(problem) => {
                attrs.problems.push(problem);
                continue;
            }
        };
        match name.as_str() {
            "name" => attrs.name = text,
            "kind" => attrs.kind = text,
            "expires_at" => attrs.expires_at = text,
            "description" => attrs.description = text,
            "group_id" => attrs.group_id = text,
            "role_id" => attrs.role_id = text,
            _ => attrs.on_call_role_id = text,
        }
    }
    attrs
}

#[utoipa::path(post, path = "/v1/api_keys", tag = "api_keys",
    request_body(content = CreateApiKeyDocument, content_type = "application/vnd.api+json"),
    responses(
        (status = 201, description = "The key with its token, shown here and never again", body = resource::Document, content_type = "application/vnd.api+json",
            links(
                ("show" = (operation_id = "show", parameters(("id" = "$response.body#/data/id")))),
                ("update" = (operation_id = "update", parameters(("id" = "$response.body#/data/id")))),
                ("revoke" = (operation_id = "revoke", parameters(("id" = "$response.body#/data/id")))),
                ("rotate" = (operation_id = "rotate", parameters(("id" = "$response.body#/data/id"))))
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = InvalidToken),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Invalid),
    ))]
pub(super) async fn create(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Extension(provenance): Extension<Provenance>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = read_document(&headers, body, Body::Required)?;
    let attributes = new_api_key(&request);
    let created = app.service.create_api_key(&caller, attributes, provenance).await?;
    let last_used_at = app.service.last_used_at(created.key.id);
    let mut response = document(StatusCode::CREATED, resource::api_key_document(&created.key, last_used_at, Some(created.token.reveal())));
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/api_keys/{}", created.key.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/v1/api_keys/{id}", tag = "api_keys", params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key (never its token)", body = resource::Document, content_type = "application/vnd.api+json"),
        (status = 401, response = InvalidToken),
        (status = 404, response = NotFound),
    ))]
pub(super) async fn show(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    let last_used_at = app.service.last_used_at(id);
    let body =
        app.service.show_api_key(&caller, id, |key| resource::api_key_document(key, last_used_at, None)).ok_or_else(ApiError::not_found)?;
    Ok(document(StatusCode::OK, body))
}

/// `DELETE /v1/api_keys/{id}`: 200 with the revoked key (never its token).
#[utoipa::path(delete, path = "/v1/api_keys/{id}", tag = "api_keys", params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The revoked key as it was; its token is refused from now on", body = resource::Document, content_type = "application/vnd.api+json"),
        (status = 401, response = InvalidToken),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ))]
pub(super) async fn revoke(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Extension(provenance): Extension<Provenance>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    let key = app.service.revoke_api_key(&caller, id, provenance).await?;
    Ok(document(StatusCode::OK, resource::api_key_document(&key, app.service.last_used_at(id), None)))
}

/// Reads the attributes of an update document: only `name`, `description`, `expires_at`.
pub(super) fn key_changes(document: &Value) -> KeyChanges {
    let mut changes = KeyChanges::default();
    let empty = Map::new();
    let attributes = attributes_of(document, &mut changes.problems).unwrap_or(&empty);
    for (name, value) in attributes {
        if IMMUTABLE.contains(&name.as_str()) {
            changes.problems.push(Problem::attribute(
                name,
                format!("{} can't be changed", name.replace('_', " ")),
                "Only name, description and expires_at can be updated: rotate the key for a new secret, \
                 or revoke it and create a new one for a different kind, team or role.",
            ));
            continue;
        }
        // Unknown first: its name is the client's, so only `unknown_attribute` may put it in
        // a pointer (escaped).
        if !UPDATABLE.contains(&name.as_str()) {
            changes.problems.push(unknown_attribute(name, &UPDATABLE));
            continue;
        }
        let text = match text_of(name, value) {
            Ok(text) => text,
            Err(problem) => {
                changes.problems.push(problem);
                continue;
            }
        };
        match name.as_str() {
            "name" => changes.name = Some(text.unwrap_or_default()),
            "description" => changes.description = Some(text),
            _ => match text {
                Some(text) => changes.expires_at = Some(text),
                None => changes.problems.push(Problem::attribute(
                    "expires_at",
                    "Expires at can't be blank",
                    "Give expires_at as an RFC 3339 date-time.",
                )),
            },
        }
    }
    changes
}

/// `PUT /v1/api_keys/{id}`: 200 with the key as it now is (never its token).
#[utoipa::path(put, path = "/v1/api_keys/{id}", tag = "api_keys", params(("id" = Uuid, Path, description = "The key's id")),
    request_body(content = UpdateApiKeyDocument, content_type = "application/vnd.api+json"),
    responses(
        (status = 200, description = "The key as it now is (never its token)", body = resource::Document, content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = InvalidToken),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Invalid),
    ))]
pub(super) async fn update(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Extension(provenance): Extension<Provenance>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    let request = read_document(&headers, body, Body::Required)?;
    let key = app.service.update_api_key(&caller, id, key_changes(&request), provenance).await?;
    Ok(document(StatusCode::OK, resource::api_key_document(&key, app.service.last_used_at(id), None)))
}

/// Reads the optional attributes of a rotate document. No body at all (or `{}`) asks for
/// the defaults.
pub(super) fn rotation(document: &Value) -> Rotation {
    let mut rotation = Rotation::default();
    if document.is_null() || document.as_object().is_some_and(Map::is_empty) {
        return rotation;
    }
    let empty = Map::new();
    let attributes = attributes_of(document, &mut rotation.problems).unwrap_or(&empty);
    for (name, value) in attributes {
        match (name.as_str(), value) {
            (_, Value::Null) if name == "expires_at" || name == "grace_period_minutes" => {}
            ("expires_at", Value::String(text)) => rotation.expires_at = Some(text.clone()),
            ("grace_period_minutes", Value::Number(n)) if n.as_i64().is_some() => rotation.grace_period_minutes = n.as_i64(),
            ("grace_period_minutes", Value::String(text)) if text.trim().parse::<i64>().is_ok() => {
                rotation.grace_period_minutes = text.trim().parse().ok();
            }
            ("expires_at", _) => rotation.problems.push(Problem::attribute(
                "expires_at",
                "Expires at must be a string",
                "Give expires_at as an RFC 3339 date-time string.",
            )),
            ("grace_period_minutes", _) => rotation.problems.push(Problem::attribute(
                "grace_period_minutes",
                "Grace period minutes must be a whole number",
                "Give grace_period_minutes as a whole number of minutes from 0 to 1440.",
            )),
            (other, _) => rotation.problems.push(unknown_attribute(other, &["expires_at", "grace_period_minutes"])),
        }
    }
    rotation
}

/// `POST /v1/api_keys/{id}/rotate`: 200 with the key and its new token, which is shown here
/// and never again. Only the key itself may rotate.
#[utoipa::path(post, path = "/v1/api_keys/{id}/rotate", tag = "api_keys", params(("id" = Uuid, Path, description = "The key's id")),
    request_body(content = Option<RotateApiKeyDocument>, content_type = "application/vnd.api+json"),
    responses(
        (status = 200, description = "The key with its new token, shown here and never again; the previous token works until grace_period_ends_at", body = resource::Document, content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = InvalidToken),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Invalid),
    ))]
pub(super) async fn rotate(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Extension(provenance): Extension<Provenance>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    let request = read_document(&headers, body, Body::Optional)?;
    let rotated = app.service.rotate_api_key(&caller, id, rotation(&request), provenance).await?;
    Ok(document(StatusCode::OK, resource::api_key_document(&rotated.key, app.service.last_used_at(id), Some(rotated.token.reveal()))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Found by the `request_body` fuzz target: an unknown attribute of an update whose value
    /// was not a string was reported as a wrong type, at a pointer holding its raw name.
    #[test]
    fn an_unknown_update_attribute_is_named_at_its_escaped_pointer_whatever_its_value() {
        let changes = key_changes(&json!({"data": {"type": "api_keys", "attributes": {"a/b~c": 1, "colour": null}}}));
        let mut problems: Vec<(&str, &str)> = changes.problems.iter().map(|p| (p.pointer.as_str(), p.title.as_str())).collect();
        problems.sort_unstable();
        assert_eq!(
            problems,
            [("/data/attributes/a~1b~0c", "Unknown attribute a/b~c"), ("/data/attributes/colour", "Unknown attribute colour")]
        );
    }
}
