//! The OpenAPI 3.1 document of the whole API, served at `GET /openapi.json`.
//!
//! Nothing here is written by hand but the overview: each route's entry comes from the
//! `#[utoipa::path]` on its handler, registered together with the route itself
//! ([`utoipa_axum::router::OpenApiRouter`]), so a route cannot exist without its entry; the
//! response schemas are derived from the very types the handlers serialize.
//!
//! Request documents are the exception: handlers read them by hand to report every problem
//! at once (a derived deserializer stops at the first), so their shapes are described by the
//! types in [`requests`], which exist for this document.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

/// Name of the bearer-token security scheme (also spelled out in `security(...)` above).
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyledger",
        description = "The API-key resource of an incident-management platform's public REST API (JSON:API), \
                       kept as an event-sourced, hash-chained ledger. Every call but this document's takes \
                       `Authorization: Bearer <token>`; a plaintext token appears only in the responses of \
                       create and rotate."
    ),
    components(schemas(super::errors::ErrorDocument), responses(
        responses::BadRequest,
        responses::InvalidToken,
        responses::Forbidden,
        responses::NotFound,
        responses::PayloadTooLarge,
        responses::UnsupportedMediaType,
        responses::Invalid,
        responses::TooManyRequests,
        responses::ServiceUnavailable
    )),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "api_keys", description = "Create, list, show, update, revoke and rotate API keys."),
        (name = "directory", description = "The caller's organization, read-only: who am I, roles, on-call roles, teams.")
    )
)]
pub(super) struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(BEARER, SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// The rate-limit headers of every authenticated response (API.md, Limits).
const RATE_LIMIT_HEADERS: [(&str, &str); 3] = [
    ("RateLimit-Limit", "Requests this key may make in the current window."),
    ("RateLimit-Remaining", "Requests this key has left in the current window."),
    ("RateLimit-Reset", "Seconds until the current window ends."),
];

/// Rate limiting in the finished document: a 429 and a 503 on every `/v1` operation, and the
/// `RateLimit-*` headers on each of its responses but the 401 (which answers no key). Done
/// over the whole document, once every route's entry is in, so that a new route cannot be
/// left without them.
pub(super) fn with_rate_limits(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let headers = || RATE_LIMIT_HEADERS.map(|(name, _)| (name.to_owned(), RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))));
    let components = document.components.get_or_insert_with(Default::default);
    for (name, description) in RATE_LIMIT_HEADERS {
        let schema = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        components
            .headers
            .insert(name.to_owned(), RefOr::T(HeaderBuilder::new().schema(Some(schema)).description(Some(description)).build()));
    }
    for (name, response) in &mut components.responses {
        if let (RefOr::T(response), false) = (response, name == "InvalidToken") {
            response.headers.extend(headers());
        }
    }
    let too_many = RefOr::Ref(Ref::from_response_name("TooManyRequests"));
    let unavailable = RefOr::Ref(Ref::from_response_name("ServiceUnavailable"));
    for (path, item) in &mut document.paths.paths {
        if !path.starts_with("/v1/") {
            continue;
        }
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.extend(headers());
                }
            }
            operation.responses.responses.insert("429".to_owned(), too_many.clone());
            operation.responses.responses.insert("503".to_owned(), unavailable.clone());
        }
    }
    document
}

/// The request documents, as the handlers read them.
pub(super) mod requests {
    #![expect(dead_code, reason = "read only by the OpenAPI derive; the handlers parse requests by hand")]

    use serde::Deserialize;
    use utoipa::ToSchema;

    /// `POST /v1/api_keys`.
    #[derive(Deserialize, ToSchema)]
    pub(in crate::http) struct CreateApiKeyDocument {
        data: CreateApiKeyData,
    }

    #[derive(Deserialize, ToSchema)]
    struct CreateApiKeyData {
        /// Always `api_keys`.
        #[serde(rename = "type")]
        #[schema(example = "api_keys")]
        kind: String,
        attributes: CreateApiKeyAttributes,
    }

    #[derive(Deserialize, ToSchema)]
    struct CreateApiKeyAttributes {
        /// Unique within its kind and scope, compared case-insensitively after trimming; at most 255 characters.
        name: String,
        /// `personal`, `team` or `organization`.
        #[schema(example = "personal")]
        kind: String,
        /// Strictly in the future, at most 5 years from now.
        expires_at: chrono::DateTime<chrono::Utc>,
        /// At most 1000 characters.
        description: Option<String>,
        /// A team of the caller's organization (id or slug); team keys only.
        group_id: Option<String>,
        /// A role of the organization (id or slug); organization keys only.
        role_id: Option<String>,
        /// An on-call role of the organization (id or slug); organization keys only.
        on_call_role_id: Option<String>,
    }

    /// `PUT /v1/api_keys/{id}`: only these attributes change; `kind`, `role_id`,
    /// `on_call_role_id`, `group_id` and `token` are refused (rotate, or revoke and create anew).
    #[derive(Deserialize, ToSchema)]
    pub(in crate::http) struct UpdateApiKeyDocument {
        data: UpdateApiKeyData,
    }

    #[derive(Deserialize, ToSchema)]
    struct UpdateApiKeyData {
        #[serde(rename = "type")]
        #[schema(example = "api_keys")]
        kind: String,
        attributes: UpdateApiKeyAttributes,
    }

    #[derive(Deserialize, ToSchema)]
    struct UpdateApiKeyAttributes {
        name: Option<String>,
        description: Option<String>,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    }

    /// `POST /v1/api_keys/{id}/rotate`; the body may be left out altogether.
    #[derive(Deserialize, ToSchema)]
    pub(in crate::http) struct RotateApiKeyDocument {
        data: RotateApiKeyData,
    }

    #[derive(Deserialize, ToSchema)]
    struct RotateApiKeyData {
        #[serde(rename = "type")]
        #[schema(example = "api_keys")]
        kind: String,
        attributes: RotateApiKeyAttributes,
    }

    #[derive(Deserialize, ToSchema)]
    struct RotateApiKeyAttributes {
        /// The new secret's expiry; default now + 90 days.
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        /// How long the previous token keeps working: 0 (not at all) to 1440; default 30.
        #[schema(minimum = 0, maximum = 1440, default = 30)]
        grace_period_minutes: Option<u32>,
    }
}

/// The error responses, each described once, by status; the handlers' `#[utoipa::path]`s
/// name the ones they can answer.
pub(super) mod responses {
    #![expect(dead_code, reason = "read only by the OpenAPI derive; errors are built by `ApiError`")]

    use utoipa::ToResponse;

    use super::super::errors::ErrorDocument;

    /// The body is not JSON, or a query parameter is malformed or unknown (named in `source.parameter`).
    #[derive(ToResponse)]
    #[response(content_type = "application/vnd.api+json")]
    pub(in crate::http) struct BadRequest(ErrorDocument);

    /// Missing, malformed, unknown, expired or revoked token.
    #[derive(ToResponse)]
    #[response(content_type = "application/vnd.api+json")]
    pub(in crate::http) struct InvalidToken(ErrorDocument);

    /// Authenticated but not allowed.
    #[derive(ToResponse)]
    #[response(content_type = "application/vnd.api+json")]
    pub(in crate::http) struct Forbidden(ErrorDocument);

    /// Not found or unauthorized: missing, or not visible to the caller.
    #[derive(ToResponse)]
    #[response(content_type = "application/vnd.api+json")]
    pub(in crate::http) struct NotFound(ErrorDocument);

    /// The body is larger than the configured limit.
    #[derive(ToResponse)]
    #[response(content_type = "application/vnd.api+json")]
    pub(in crate::http) struct PayloadTooLarge(ErrorDocument);

    /// A body that is not application/vnd.api+json or application/json.
    #[derive(ToResponse)]
    #[response(content_type = "application/vnd.api+json")]
    pub(in crate::http) struct UnsupportedMediaType(ErrorDocument);

    /// Validation: one entry per problem, each with `source.pointer`.
    #[derive(ToResponse)]
    #[response(content_type = "application/vnd.api+json")]
    pub(in crate::http) struct Invalid(ErrorDocument);

    /// Too many requests: this key's rate limit, or (without a valid token) this address's
    /// failed authentications; try again after `Retry-After` seconds.
    #[derive(ToResponse)]
    #[response(
        content_type = "application/vnd.api+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before trying again."))
    )]
    pub(in crate::http) struct TooManyRequests(ErrorDocument);

    /// The ledger cannot do this right now (its store is failing or recovering, the request
    /// ran past the timeout, or a strict node cannot confirm it is up to date); nothing was
    /// changed unless the detail says it may have been. Try again after `Retry-After` seconds.
    #[derive(ToResponse)]
    #[response(
        content_type = "application/vnd.api+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before trying again."))
    )]
    pub(in crate::http) struct ServiceUnavailable(ErrorDocument);
}
