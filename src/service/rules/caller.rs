//! Who is calling: the identity behind an authenticated key, resolved against the
//! *current* directory, so that a demotion or removal takes effect on the next request.

use chrono::{DateTime, Utc};
use keyledger_projections::directory::{Organization, Role};
use keyledger_projections::event::UserId;
use keyledger_projections::keys_view::{ApiKey, Secret};
use keyledger_projections::{Actor, ApiKeyKind, Permission, State};
use uuid::Uuid;

use super::Rejection;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A user, through one of their personal keys.
    User { user_id: UserId, role_id: Uuid },
    /// A team or organization key's service account.
    ServiceAccount { service_account_id: Uuid, kind: ApiKeyKind, group_id: Option<Uuid>, role_id: Option<Uuid> },
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub organization_id: Uuid,
    pub api_key_id: Uuid,
    pub identity: Identity,
    /// The digest of the token the request presented, so that the writer can tell again,
    /// against its own state, which of the key's secrets it is.
    pub token_digest: blake3::Hash,
    pub secret: Secret,
}

/// A presented token, as the writer receives it with a command: which key it names and
/// its digest (never the token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credential {
    pub api_key_id: Uuid,
    pub token_digest: blake3::Hash,
}

/// Whether a token whose digest is `digest` authenticates key `api_key_id` at `now`, and as
/// whom: the key must be unexpired, the digest one of its working secrets, and its owner
/// (a user or a service account) still present in the directory.
pub fn authenticate(state: &State, credential: Credential, now: DateTime<Utc>) -> Option<Caller> {
    let key = state.keys.get(credential.api_key_id)?;
    let secret = key.secret(&credential.token_digest, now)?;
    if now >= key.expires_at {
        return None;
    }
    let org = state.directory.organization(key.organization_id)?;
    let identity = identity_of(state, org, key)?;
    Some(Caller { organization_id: key.organization_id, api_key_id: key.id, identity, token_digest: credential.token_digest, secret })
}

/// The caller behind a command that changes something: authenticated as by
/// [`authenticate`], and presenting the key's current secret. Decided by the writer against
/// its own state, so a rotation decided just before is seen even when the request was
/// authenticated before it.
pub fn acting(state: &State, credential: Credential, now: DateTime<Utc>) -> Result<Caller, Rejection> {
    let caller = authenticate(state, credential, now).ok_or(Rejection::Unauthenticated)?;
    match caller.secret {
        Secret::Current => Ok(caller),
        Secret::Superseded => Err(Rejection::SupersededSecret),
    }
}

/// The caller a key's current secret stands for (rule tests and benchmarks act as keys
/// without holding their tokens).
pub fn resolve(state: &State, api_key_id: Uuid, now: DateTime<Utc>) -> Option<Caller> {
    authenticate(state, Credential::current(state, api_key_id)?, now)
}

impl Credential {
    /// The credential of key `api_key_id`'s current secret, for whoever acts as a key
    /// without its token (see [`resolve`]).
    pub fn current(state: &State, api_key_id: Uuid) -> Option<Credential> {
        let digest = blake3::Hash::from_hex(&state.keys.get(api_key_id)?.token_digest).ok()?;
        Some(Credential { api_key_id, token_digest: digest })
    }
}

fn identity_of(state: &State, org: &Organization, key: &ApiKey) -> Option<Identity> {
    match key.kind {
        ApiKeyKind::Personal => {
            let user = org.users.get(&key.user_id?)?;
            Some(Identity::User { user_id: user.id, role_id: user.role_id })
        }
        ApiKeyKind::Team | ApiKeyKind::Organization => {
            let account = state.service_accounts.get(key.service_account_id?)?;
            Some(Identity::ServiceAccount {
                service_account_id: account.id,
                kind: account.kind,
                group_id: account.group_id,
                role_id: account.role_id,
            })
        }
    }
}

impl Caller {
    pub fn credential(&self) -> Credential {
        Credential { api_key_id: self.api_key_id, token_digest: self.token_digest }
    }

    pub fn actor(&self) -> Actor {
        match &self.identity {
            Identity::User { user_id, .. } => {
                Actor::User { organization_id: self.organization_id, user_id: *user_id, api_key_id: self.api_key_id }
            }
            Identity::ServiceAccount { service_account_id, .. } => Actor::ServiceAccount {
                organization_id: self.organization_id,
                service_account_id: *service_account_id,
                api_key_id: self.api_key_id,
            },
        }
    }

    /// The organization role the caller acts with: a user's current role, an organization
    /// service account's role. Team service accounts have none.
    pub fn role<'a>(&self, org: &'a Organization) -> Option<&'a Role> {
        match &self.identity {
            Identity::User { role_id, .. } => org.roles.get(role_id),
            Identity::ServiceAccount { role_id, .. } => org.roles.get(role_id.as_ref()?),
        }
    }

    /// Owners and admins (or an organization service account holding such a role).
    pub fn is_organization_admin(&self, org: &Organization) -> bool {
        self.role(org).is_some_and(|r| matches!(r.slug.as_str(), "owner" | "admin"))
    }

    pub fn has_permission(&self, org: &Organization, permission: Permission) -> bool {
        self.role(org).is_some_and(|r| r.api_keys_permissions.contains(&permission))
    }

    /// Whether the caller may act on the team's keys with `permission`: an admin of the
    /// team whose organization role holds it (a team admin who is an observer or has no
    /// access manages nothing), or the team's own service account, which has no
    /// organization role and holds a team admin's rights through its membership.
    pub fn manages_team_keys(&self, org: &Organization, team_id: Uuid, permission: Permission) -> bool {
        self.administers_team(org, team_id)
            && (matches!(self.identity, Identity::ServiceAccount { .. }) || self.has_permission(org, permission))
    }

    /// Whether the caller holds every api_keys permission of `role`: nobody hands out more
    /// than they have, and only an owner makes another owner.
    pub fn may_grant(&self, org: &Organization, role: &Role) -> bool {
        let Some(own) = self.role(org) else { return false };
        let is_owner = |r: &Role| r.slug == "owner";
        (!is_owner(role) || is_owner(own)) && role.api_keys_permissions.iter().all(|p| own.api_keys_permissions.contains(p))
    }

    /// An admin of the team, or the team's own service account (which holds a team
    /// admin's rights through its membership).
    pub fn administers_team(&self, org: &Organization, team_id: Uuid) -> bool {
        match &self.identity {
            Identity::User { user_id, .. } => org.teams.get(&team_id).is_some_and(|t| t.admin_ids.contains(user_id)),
            Identity::ServiceAccount { kind: ApiKeyKind::Team, group_id, .. } => {
                *group_id == Some(team_id) && org.teams.contains_key(&team_id)
            }
            Identity::ServiceAccount { .. } => false,
        }
    }

    pub fn user_id(&self) -> Option<UserId> {
        match &self.identity {
            Identity::User { user_id, .. } => Some(*user_id),
            Identity::ServiceAccount { .. } => None,
        }
    }
}
