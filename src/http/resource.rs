//! The `api_keys` resource as JSON:API.

use chrono::{DateTime, SecondsFormat, Utc};
use keyledger_projections::keys_view::ApiKey;
use serde_json::{json, Value};

/// RFC 3339 in UTC with `Z`; fractional digits only when there are any (at most 6, as the
/// ledger keeps microseconds).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn optional_timestamp(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |at| Value::String(timestamp(at)))
}

/// The resource object of a key; `token` only in the two responses that may carry it.
pub fn api_key(key: &ApiKey, token: Option<&str>) -> Value {
    let mut attributes = json!({
        "name": key.name,
        "kind": key.kind.as_str(),
        "created_at": timestamp(key.created_at),
        "updated_at": timestamp(key.updated_at),
        "description": key.description,
        "role_id": key.role_id.map(|id| id.to_string()),
        "on_call_role_id": key.on_call_role_id.map(|id| id.to_string()),
        "group_id": key.group_id.map(|id| id.to_string()),
        "user_id": key.user_id,
        "expires_at": timestamp(key.expires_at),
        "last_used_at": Value::Null,
        "grace_period_ends_at": optional_timestamp(key.grace_period_ends_at),
    });
    if let (Some(token), Some(map)) = (token, attributes.as_object_mut()) {
        map.insert("token".into(), Value::String(token.to_owned()));
    }
    json!({ "id": key.id.to_string(), "type": "api_keys", "attributes": attributes })
}
