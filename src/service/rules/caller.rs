//! Who is calling: the identity behind an authenticated key, resolved against the
//! *current* directory, so that a demotion or removal takes effect on the next request.

use chrono::{DateTime, Utc};
use keyledger_projections::directory::{Organization, Role};
use keyledger_projections::event::UserId;
use keyledger_projections::keys_view::ApiKey;
use keyledger_projections::{Actor, ApiKeyKind, Permission, State};
use uuid::Uuid;

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
}

/// Whether `key` authenticates at `now`, and as whom.
pub fn resolve(state: &State, api_key_id: Uuid, now: DateTime<Utc>) -> Option<Caller> {
    let key = state.keys.get(api_key_id)?;
    if now >= key.expires_at {
        return None;
    }
    let org = state.directory.organization(key.organization_id)?;
    let identity = identity_of(state, org, key)?;
    Some(Caller { organization_id: key.organization_id, api_key_id, identity })
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
