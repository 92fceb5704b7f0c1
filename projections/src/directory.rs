//! The directory: organizations and, inside each, roles, on-call roles, users and teams.
//!
//! One row per organization: directory changes are rare and an organization is the unit
//! that nothing may cross.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{Event, Permission, UserId};
use crate::projection::{decode, encode, Projection, RowError, TouchedRows};
use crate::RecordedEvent;

/// The roles every organization has, with their `api_keys_permissions`.
pub const SYSTEM_ROLES: [(&str, &str, &[Permission]); 5] = [
    ("owner", "Owner", &[Permission::Create, Permission::Read, Permission::Update, Permission::Delete]),
    ("admin", "Admin", &[Permission::Create, Permission::Read, Permission::Update, Permission::Delete]),
    ("user", "User", &[Permission::Create, Permission::Read, Permission::Update, Permission::Delete]),
    ("observer", "Observer", &[Permission::Read]),
    ("no_access", "No access", &[]),
];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Directory {
    organizations: HashMap<Uuid, Organization>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    /// Whether a rotation may keep the previous token alive for a grace period.
    pub grace_period: bool,
    pub roles: BTreeMap<Uuid, Role>,
    pub on_call_roles: BTreeMap<Uuid, OnCallRole>,
    pub users: BTreeMap<UserId, User>,
    pub teams: BTreeMap<Uuid, Team>,
    /// Version of each of the organization's streams (organization, roles, users, teams).
    #[serde(default)]
    pub stream_versions: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub api_keys_permissions: Vec<Permission>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnCallRole {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub role_id: Uuid,
    pub on_call_role_id: Option<Uuid>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub user_ids: BTreeSet<UserId>,
    pub admin_ids: BTreeSet<UserId>,
}

impl Directory {
    pub fn organization(&self, id: Uuid) -> Option<&Organization> {
        self.organizations.get(&id)
    }

    /// Organization names are matched exactly: they name tenants in operator commands.
    pub fn organization_by_name(&self, name: &str) -> Option<&Organization> {
        self.organizations.values().find(|o| o.name == name)
    }

    pub fn organizations(&self) -> impl Iterator<Item = &Organization> {
        self.organizations.values()
    }

    /// The version of a directory stream of an organization (0: no event yet).
    pub fn stream_version(&self, organization_id: Uuid, stream: &str) -> u64 {
        self.organizations.get(&organization_id).and_then(|o| o.stream_versions.get(stream)).copied().unwrap_or(0)
    }
}

impl Organization {
    /// A role by its id or its slug, as `role_id` in the API accepts either.
    pub fn role(&self, id_or_slug: &str) -> Option<&Role> {
        match Uuid::parse_str(id_or_slug) {
            Ok(id) => self.roles.get(&id),
            Err(_) => self.roles.values().find(|r| r.slug == id_or_slug),
        }
    }

    pub fn on_call_role(&self, id_or_slug: &str) -> Option<&OnCallRole> {
        match Uuid::parse_str(id_or_slug) {
            Ok(id) => self.on_call_roles.get(&id),
            Err(_) => self.on_call_roles.values().find(|r| r.slug == id_or_slug),
        }
    }

    pub fn team(&self, id_or_slug: &str) -> Option<&Team> {
        match Uuid::parse_str(id_or_slug) {
            Ok(id) => self.teams.get(&id),
            Err(_) => self.teams.values().find(|t| t.slug == id_or_slug),
        }
    }

    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        self.users.values().find(|u| u.email.eq_ignore_ascii_case(email))
    }

    /// The slug of a role of this organization (`owner`, `admin`, …).
    pub fn role_slug(&self, role_id: Uuid) -> Option<&str> {
        self.roles.get(&role_id).map(|r| r.slug.as_str())
    }
}

impl Projection for Directory {
    const NAME: &'static str = "directory";

    fn apply(&mut self, recorded: &RecordedEvent, touched: &mut impl TouchedRows) {
        let org_id = recorded.event.organization_id();
        if let Event::OrganizationCreated(e) = &recorded.event {
            self.organizations.insert(
                e.organization_id,
                Organization {
                    id: e.organization_id,
                    name: e.name.clone(),
                    grace_period: e.grace_period,
                    roles: BTreeMap::new(),
                    on_call_roles: BTreeMap::new(),
                    users: BTreeMap::new(),
                    teams: BTreeMap::new(),
                    stream_versions: BTreeMap::from([(recorded.stream.clone(), recorded.stream_version)]),
                },
            );
            touched.touch(|| org_id.to_string());
            return;
        }
        let Some(org) = self.organizations.get_mut(&org_id) else { return };
        if !recorded.event.concerns_keys() {
            org.stream_versions.insert(recorded.stream.clone(), recorded.stream_version);
        }
        match &recorded.event {
            Event::OrganizationSettingsChanged(e) => org.grace_period = e.grace_period,
            Event::RoleDefined(e) => {
                org.roles.insert(
                    e.role_id,
                    Role {
                        id: e.role_id,
                        slug: e.slug.clone(),
                        name: e.name.clone(),
                        api_keys_permissions: e.api_keys_permissions.clone(),
                    },
                );
            }
            Event::OnCallRoleDefined(e) => {
                org.on_call_roles
                    .insert(e.on_call_role_id, OnCallRole { id: e.on_call_role_id, slug: e.slug.clone(), name: e.name.clone() });
            }
            Event::UserJoined(e) => {
                org.users.insert(
                    e.user_id,
                    User { id: e.user_id, email: e.email.clone(), role_id: e.role_id, on_call_role_id: e.on_call_role_id },
                );
            }
            Event::UserChanged(e) => {
                org.users.insert(
                    e.user_id,
                    User { id: e.user_id, email: e.email.clone(), role_id: e.role_id, on_call_role_id: e.on_call_role_id },
                );
            }
            Event::UserRemoved(e) => {
                org.users.remove(&e.user_id);
                for team in org.teams.values_mut() {
                    team.user_ids.remove(&e.user_id);
                    team.admin_ids.remove(&e.user_id);
                }
            }
            Event::TeamCreated(e) => {
                org.teams.insert(
                    e.team_id,
                    Team {
                        id: e.team_id,
                        slug: e.slug.clone(),
                        name: e.name.clone(),
                        user_ids: BTreeSet::new(),
                        admin_ids: BTreeSet::new(),
                    },
                );
            }
            Event::TeamMembershipChanged(e) => {
                if let Some(team) = org.teams.get_mut(&e.team_id) {
                    team.user_ids = e.user_ids.iter().copied().collect();
                    team.admin_ids = e.admin_ids.iter().copied().collect();
                }
            }
            Event::TeamDeleted(e) => {
                org.teams.remove(&e.team_id);
            }
            Event::OrganizationCreated(_)
            | Event::ApiKeyRotated(_)
            | Event::ApiKeyGracePeriodEnded(_)
            | Event::ApiKeyCreated(_)
            | Event::ServiceAccountCreated(_)
            | Event::ApiKeyRevoked(_)
            | Event::ServiceAccountDeleted(_)
            | Event::ApiKeyUpdated(_) => return,
        }
        touched.touch(|| org_id.to_string());
    }

    fn encode_row(&self, key: &str) -> Option<Vec<u8>> {
        let id = Uuid::parse_str(key).ok()?;
        self.organizations.get(&id).and_then(encode)
    }

    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError> {
        let org: Organization = decode(Self::NAME, key, value)?;
        self.organizations.insert(org.id, org);
        Ok(())
    }

    fn unload_row(&mut self, key: &str) {
        if let Ok(id) = Uuid::parse_str(key) {
            self.organizations.remove(&id);
        }
    }

    fn row_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.organizations.keys().map(Uuid::to_string).collect();
        keys.sort();
        keys
    }
}
