//! The event vocabulary: every fact the ledger can record.
//!
//! Events are facts in the past tense and are never rewritten. A payload's shape is versioned
//! by [`Event::schema_version`]; when a shape changes, the old version stays decodable through
//! [`Event::decode`], which upcasts it to the current one. Plaintext tokens never appear here:
//! a key is recorded with the digest of its token only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Users are numbered per organization, as in the directory file.
pub type UserId = u64;

/// An event as it stands in the log: its place, its provenance and the fact itself.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    /// Global position, starting at 1, without gaps.
    pub position: u64,
    /// The entity the event belongs to, e.g. `api_key-<uuid>`.
    pub stream: String,
    /// Position within the stream, starting at 1.
    pub stream_version: u64,
    pub recorded_at: DateTime<Utc>,
    pub actor: Actor,
    /// The id this server gave the request that caused the event.
    pub request_id: String,
    /// The `X-Request-Id` the client sent, if any: kept beside the server's own, never in
    /// its place, so that a client cannot make two requests look like one in the audit log.
    pub client_request_id: Option<String>,
    pub event: Event,
}

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// A user, acting through one of their personal keys.
    User { organization_id: Uuid, user_id: UserId, api_key_id: Uuid },
    /// A team or organization key's service account.
    ServiceAccount { organization_id: Uuid, service_account_id: Uuid, api_key_id: Uuid },
    /// Someone with access to the data directory, through the `keyledger` CLI.
    Operator,
    /// keyledger itself, acting on its expiry schedule (a grace period that ran out).
    Schedule,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyKind {
    Personal,
    Team,
    Organization,
}

impl ApiKeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyKind::Personal => "personal",
            ApiKeyKind::Team => "team",
            ApiKeyKind::Organization => "organization",
        }
    }
}

/// The `api_keys_permissions` a role grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationCreated {
    pub organization_id: Uuid,
    pub name: String,
    pub grace_period: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationSettingsChanged {
    pub organization_id: Uuid,
    pub grace_period: bool,
}

/// A role came into being or was redefined (same id, new name or permissions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDefined {
    pub organization_id: Uuid,
    pub role_id: Uuid,
    pub slug: String,
    pub name: String,
    pub api_keys_permissions: Vec<Permission>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCallRoleDefined {
    pub organization_id: Uuid,
    pub on_call_role_id: Uuid,
    pub slug: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserJoined {
    pub organization_id: Uuid,
    pub user_id: UserId,
    pub email: String,
    pub role_id: Uuid,
    pub on_call_role_id: Option<Uuid>,
}

/// A user's email or roles changed; a demotion takes effect on the next request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserChanged {
    pub organization_id: Uuid,
    pub user_id: UserId,
    pub email: String,
    pub role_id: Uuid,
    pub on_call_role_id: Option<Uuid>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRemoved {
    pub organization_id: Uuid,
    pub user_id: UserId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamCreated {
    pub organization_id: Uuid,
    pub team_id: Uuid,
    pub slug: String,
    pub name: String,
}

/// The whole membership of a team, as it now stands (`admin_ids` ⊆ `user_ids`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamMembershipChanged {
    pub organization_id: Uuid,
    pub team_id: Uuid,
    pub user_ids: Vec<UserId>,
    pub admin_ids: Vec<UserId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamDeleted {
    pub organization_id: Uuid,
    pub team_id: Uuid,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    pub api_key_id: Uuid,
    pub organization_id: Uuid,
    pub kind: ApiKeyKind,
    /// Trimmed, as the caller will see it.
    pub name: String,
    pub description: Option<String>,
    /// The owner of a personal key; the creator of a team or organization key, if a user.
    pub user_id: Option<UserId>,
    pub group_id: Option<Uuid>,
    pub role_id: Option<Uuid>,
    pub on_call_role_id: Option<Uuid>,
    /// The service account that a team or organization key acts as.
    pub service_account_id: Option<Uuid>,
    /// Hex of the domain-separated BLAKE3 digest of the token; never the token.
    pub token_digest: String,
    #[serde(deserialize_with = "crate::timestamp::deserialize")]
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountCreated {
    pub service_account_id: Uuid,
    pub organization_id: Uuid,
    pub api_key_id: Uuid,
    pub kind: ApiKeyKind,
    pub group_id: Option<Uuid>,
    pub role_id: Option<Uuid>,
    pub on_call_role_id: Option<Uuid>,
}

/// A key's name, description or expiry changed (`PUT /v1/api_keys/{id}`). The payload has
/// the new values and, for the name index, the previous name and the key's scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyUpdated {
    pub api_key_id: Uuid,
    pub organization_id: Uuid,
    pub kind: ApiKeyKind,
    pub user_id: Option<UserId>,
    pub group_id: Option<Uuid>,
    pub previous_name: String,
    /// Trimmed.
    pub name: String,
    pub description: Option<String>,
    #[serde(deserialize_with = "crate::timestamp::deserialize")]
    pub expires_at: DateTime<Utc>,
}

/// A key got a new secret (`POST /v1/api_keys/{id}/rotate`); its id, name and scope stay.
/// Digests only: the new token exists in the rotate response and nowhere else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRotated {
    pub api_key_id: Uuid,
    pub organization_id: Uuid,
    /// Hex digest of the new token.
    pub token_digest: String,
    /// Hex digest of the token this rotation replaced.
    pub previous_token_digest: String,
    /// Until when the replaced token still authenticates; `None`: it stopped at once
    /// (grace 0, or the organization's grace-period setting is off).
    #[serde(default, deserialize_with = "crate::timestamp::optional")]
    pub grace_period_ends_at: Option<DateTime<Utc>>,
    /// An older token that was still in its grace period and ends with this rotation: only
    /// the newest previous token gets a grace period.
    pub retired_token_digest: Option<String>,
    #[serde(deserialize_with = "crate::timestamp::deserialize")]
    pub expires_at: DateTime<Utc>,
}

/// A rotated key's previous token reached `grace_period_ends_at` and stopped for good.
/// Recorded by the expiry schedule whether or not anyone presented the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyGracePeriodEnded {
    pub api_key_id: Uuid,
    pub organization_id: Uuid,
    /// Hex digest of the token that stopped.
    pub token_digest: String,
    #[serde(deserialize_with = "crate::timestamp::deserialize")]
    pub grace_period_ended_at: DateTime<Utc>,
}

/// Why a key stopped being valid for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// `DELETE /v1/api_keys/{id}` by someone allowed to.
    Requested,
    /// The directory no longer lists the key's user: their personal keys go with them.
    UserRemoved,
    /// The directory no longer lists the key's team: its team keys go with it.
    TeamDeleted,
}

/// A key was revoked: its token stops authenticating and its name is free again. The
/// payload repeats what the key was (name, scope, digest) so that the fact reads on its
/// own in an audit, and so that every projection can undo its part from the event alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRevoked {
    pub api_key_id: Uuid,
    pub organization_id: Uuid,
    pub kind: ApiKeyKind,
    pub name: String,
    pub user_id: Option<UserId>,
    pub group_id: Option<Uuid>,
    /// Hex of the digest that authenticated the key; never the token.
    pub token_digest: String,
    pub reason: RevocationReason,
}

/// A team or organization key's service account went with its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountDeleted {
    pub service_account_id: Uuid,
    pub organization_id: Uuid,
    pub api_key_id: Uuid,
}

/// Every fact the ledger records. The variant name is the envelope's `type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum Event {
    OrganizationCreated(OrganizationCreated),
    OrganizationSettingsChanged(OrganizationSettingsChanged),
    RoleDefined(RoleDefined),
    OnCallRoleDefined(OnCallRoleDefined),
    UserJoined(UserJoined),
    UserChanged(UserChanged),
    UserRemoved(UserRemoved),
    TeamCreated(TeamCreated),
    TeamMembershipChanged(TeamMembershipChanged),
    TeamDeleted(TeamDeleted),
    ApiKeyCreated(ApiKeyCreated),
    ServiceAccountCreated(ServiceAccountCreated),
    ApiKeyRevoked(ApiKeyRevoked),
    ServiceAccountDeleted(ServiceAccountDeleted),
    ApiKeyUpdated(ApiKeyUpdated),
    ApiKeyRotated(ApiKeyRotated),
    ApiKeyGracePeriodEnded(ApiKeyGracePeriodEnded),
}

/// An envelope named a type or version this build does not know, or its payload did not fit.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type:?} (schema version {schema_version}); is this log from a newer keyledger?")]
    UnknownType { event_type: String, schema_version: u32 },
    #[error("payload of {event_type} v{schema_version} does not decode: {source}")]
    Payload { event_type: String, schema_version: u32, source: serde_json::Error },
}

impl Event {
    /// The payload shape written today. Bump it when a payload changes and teach
    /// [`Event::decode`] to upcast the previous one.
    pub fn schema_version(&self) -> u32 {
        1
    }

    /// The payload alone, as written into an envelope.
    pub fn payload(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => map.remove("payload").unwrap_or_default(),
            // Every variant is a struct of plain fields: serialization cannot fail.
            _ => serde_json::Value::Null,
        }
    }

    /// Reads a payload written with `schema_version`, upcasting older shapes.
    pub fn decode(event_type: &str, schema_version: u32, payload: serde_json::Value) -> Result<Event, DecodeError> {
        if schema_version != 1 || !Event::TYPES.contains(&event_type) {
            return Err(DecodeError::UnknownType { event_type: event_type.to_owned(), schema_version });
        }
        let tagged = serde_json::json!({ "type": event_type, "payload": payload });
        serde_json::from_value(tagged).map_err(|source| DecodeError::Payload { event_type: event_type.to_owned(), schema_version, source })
    }

    pub fn organization_id(&self) -> Uuid {
        match self {
            Event::OrganizationCreated(e) => e.organization_id,
            Event::OrganizationSettingsChanged(e) => e.organization_id,
            Event::RoleDefined(e) => e.organization_id,
            Event::OnCallRoleDefined(e) => e.organization_id,
            Event::UserJoined(e) => e.organization_id,
            Event::UserChanged(e) => e.organization_id,
            Event::UserRemoved(e) => e.organization_id,
            Event::TeamCreated(e) => e.organization_id,
            Event::TeamMembershipChanged(e) => e.organization_id,
            Event::TeamDeleted(e) => e.organization_id,
            Event::ApiKeyCreated(e) => e.organization_id,
            Event::ServiceAccountCreated(e) => e.organization_id,
            Event::ApiKeyRevoked(e) => e.organization_id,
            Event::ServiceAccountDeleted(e) => e.organization_id,
            Event::ApiKeyUpdated(e) => e.organization_id,
            Event::ApiKeyRotated(e) => e.organization_id,
            Event::ApiKeyGracePeriodEnded(e) => e.organization_id,
        }
    }

    /// Whether the event is about keys and service accounts rather than the directory.
    pub fn concerns_keys(&self) -> bool {
        matches!(
            self,
            Event::ApiKeyCreated(_)
                | Event::ServiceAccountCreated(_)
                | Event::ApiKeyRevoked(_)
                | Event::ServiceAccountDeleted(_)
                | Event::ApiKeyUpdated(_)
                | Event::ApiKeyRotated(_)
                | Event::ApiKeyGracePeriodEnded(_)
        )
    }

    /// The stream (entity) an event belongs to.
    pub fn stream(&self) -> String {
        match self {
            Event::OrganizationCreated(e) => format!("organization-{}", e.organization_id),
            Event::OrganizationSettingsChanged(e) => format!("organization-{}", e.organization_id),
            Event::RoleDefined(e) => format!("role-{}", e.role_id),
            Event::OnCallRoleDefined(e) => format!("on_call_role-{}", e.on_call_role_id),
            Event::UserJoined(e) => format!("user-{}-{}", e.organization_id, e.user_id),
            Event::UserChanged(e) => format!("user-{}-{}", e.organization_id, e.user_id),
            Event::UserRemoved(e) => format!("user-{}-{}", e.organization_id, e.user_id),
            Event::TeamCreated(e) => format!("team-{}", e.team_id),
            Event::TeamMembershipChanged(e) => format!("team-{}", e.team_id),
            Event::TeamDeleted(e) => format!("team-{}", e.team_id),
            Event::ApiKeyCreated(e) => format!("api_key-{}", e.api_key_id),
            Event::ServiceAccountCreated(e) => format!("service_account-{}", e.service_account_id),
            Event::ApiKeyRevoked(e) => format!("api_key-{}", e.api_key_id),
            Event::ServiceAccountDeleted(e) => format!("service_account-{}", e.service_account_id),
            Event::ApiKeyUpdated(e) => format!("api_key-{}", e.api_key_id),
            Event::ApiKeyRotated(e) => format!("api_key-{}", e.api_key_id),
            Event::ApiKeyGracePeriodEnded(e) => format!("api_key-{}", e.api_key_id),
        }
    }
}

/// Names every event type once, from its variant: [`Event::type_name`] (the envelope's
/// `type`, as serde tags the variant) and [`Event::TYPES`] come from this one list, and the
/// `match` is exhaustive, so a new variant does not compile until it is listed here.
macro_rules! event_types {
    ($($variant:ident,)*) => {
        impl Event {
            /// Every event type, in the order the variants are declared.
            pub const TYPES: [&'static str; [$(stringify!($variant),)*].len()] = [$(stringify!($variant),)*];

            /// The envelope's `type`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => stringify!($variant),)*
                }
            }
        }
    };
}

event_types! {
    OrganizationCreated,
    OrganizationSettingsChanged,
    RoleDefined,
    OnCallRoleDefined,
    UserJoined,
    UserChanged,
    UserRemoved,
    TeamCreated,
    TeamMembershipChanged,
    TeamDeleted,
    ApiKeyCreated,
    ServiceAccountCreated,
    ApiKeyRevoked,
    ServiceAccountDeleted,
    ApiKeyUpdated,
    ApiKeyRotated,
    ApiKeyGracePeriodEnded,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_through_decode() {
        let event = Event::TeamDeleted(TeamDeleted { organization_id: Uuid::nil(), team_id: Uuid::nil() });
        let decoded = Event::decode(event.type_name(), event.schema_version(), event.payload()).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn unknown_type_and_version_are_named() {
        let err = Event::decode("KeyTeleported", 1, serde_json::json!({})).unwrap_err();
        assert!(matches!(err, DecodeError::UnknownType { .. }), "{err}");
        let err = Event::decode("TeamDeleted", 7, serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("schema version 7"), "{err}");
    }

    #[test]
    fn bad_payload_is_a_payload_error() {
        let err = Event::decode("TeamDeleted", 1, serde_json::json!({"team_id": 3})).unwrap_err();
        assert!(matches!(err, DecodeError::Payload { .. }), "{err}");
    }
}
