//! The `api_keys` resource as JSON:API, serialized straight from the keys view (no
//! intermediate `serde_json::Value`: the show path is hot).

use chrono::{DateTime, SecondsFormat, Utc};
use keyledger_projections::event::UserId;
use keyledger_projections::keys_view::ApiKey;
use serde::{Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

/// RFC 3339 in UTC with `Z`; fractional digits only when there are any (at most 6, as the
/// ledger keeps microseconds).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn utc<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&timestamp(*at))
}

fn optional_utc<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => utc(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// Nullable attributes are always present (null when unset): generated SDKs that parse
/// strictly treat a missing attribute as an error, so the schema marks them required.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiKeyAttributes)]
struct Attributes<'a> {
    name: &'a str,
    /// `personal`, `team` or `organization`.
    #[schema(example = "personal")]
    kind: &'static str,
    #[serde(serialize_with = "utc")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "utc")]
    updated_at: DateTime<Utc>,
    #[schema(required = true)]
    description: Option<&'a str>,
    #[schema(required = true)]
    role_id: Option<Uuid>,
    #[schema(required = true)]
    on_call_role_id: Option<Uuid>,
    #[schema(required = true)]
    group_id: Option<Uuid>,
    #[schema(required = true)]
    user_id: Option<UserId>,
    #[serde(serialize_with = "utc")]
    expires_at: DateTime<Utc>,
    #[serde(serialize_with = "optional_utc")]
    #[schema(required = true)]
    last_used_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "optional_utc")]
    #[schema(required = true)]
    grace_period_ends_at: Option<DateTime<Utc>>,
    /// The plaintext token: only in the responses of create and rotate, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

/// An API key as a JSON:API resource object.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiKey)]
pub struct Resource<'a> {
    id: Uuid,
    /// Always `api_keys`.
    #[serde(rename = "type")]
    #[schema(example = "api_keys")]
    kind: &'static str,
    attributes: Attributes<'a>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ApiKeyDocument)]
pub(super) struct Document<'a> {
    data: Resource<'a>,
}

/// The JSON:API document of one key; `token` only in the two responses that may carry it.
pub fn api_key_document(key: &ApiKey, last_used_at: Option<DateTime<Utc>>, token: Option<&str>) -> Vec<u8> {
    // Plain data with string keys: serialization cannot fail.
    serde_json::to_vec(&Document { data: api_key(key, last_used_at, token) }).unwrap_or_default()
}

/// The resource object of one key; its last use is kept outside the keys view, so it comes
/// separately.
pub fn api_key<'a>(key: &'a ApiKey, last_used_at: Option<DateTime<Utc>>, token: Option<&'a str>) -> Resource<'a> {
    Resource {
        id: key.id,
        kind: "api_keys",
        attributes: Attributes {
            name: &key.name,
            kind: key.kind.as_str(),
            created_at: key.created_at,
            updated_at: key.updated_at,
            description: key.description.as_deref(),
            role_id: key.role_id,
            on_call_role_id: key.on_call_role_id,
            group_id: key.group_id,
            user_id: key.user_id,
            expires_at: key.expires_at,
            last_used_at,
            grace_period_ends_at: key.grace_period_ends_at,
            token,
        },
    }
}
