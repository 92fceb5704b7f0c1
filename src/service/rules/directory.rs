//! The directory file and the events that make the ledger's directory match it.
//!
//! `plan` compares a file with the current state and returns only the differences, so
//! applying the same file twice records nothing the second time. Users and teams missing
//! from the file are removed; roles are never deleted (keys may still name them).
//!
//! Keys follow the directory: a removed user's personal keys and a deleted team's keys are
//! revoked in the same plan, before the user or team goes, so the ledger records why each
//! key stopped working and their names are free again. Team and organization keys belong
//! to the organization, not to whoever created them, and survive their creator leaving.

use std::collections::{BTreeSet, HashMap, HashSet};

use keyledger_projections::directory::{Organization, SYSTEM_ROLES};
use keyledger_projections::event::{
    OnCallRoleDefined, OrganizationCreated, OrganizationSettingsChanged, RevocationReason, RoleDefined, TeamCreated, TeamDeleted,
    TeamMembershipChanged, UserChanged, UserId, UserJoined, UserRemoved,
};
use keyledger_projections::keys_view::ApiKey;
use keyledger_projections::{ApiKeyKind, Event, Permission, State};
use serde::Deserialize;
use uuid::Uuid;

use super::revoke_api_key::revocation;

/// The on-call roles every organization has.
pub const SYSTEM_ON_CALL_ROLES: [(&str, &str); 4] =
    [("admin", "Admin"), ("responder", "Responder"), ("observer", "Observer"), ("no_access", "No access")];

/// One organization as an operator describes it (see `fixtures/directory.example.json`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    pub organization: String,
    #[serde(default = "grace_period_default")]
    pub grace_period: bool,
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
    #[serde(default)]
    pub on_call_roles: Vec<OnCallRoleSpec>,
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub teams: Vec<TeamSpec>,
}

fn grace_period_default() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub id: Option<Uuid>,
    pub slug: String,
    pub name: Option<String>,
    #[serde(default)]
    pub api_keys_permissions: Vec<Permission>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OnCallRoleSpec {
    pub id: Option<Uuid>,
    pub slug: String,
    pub name: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub id: UserId,
    pub email: String,
    /// A role's slug or id.
    pub role: String,
    pub on_call_role: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub user_ids: Vec<UserId>,
    #[serde(default)]
    pub admin_ids: Vec<UserId>,
}

impl DirectoryFile {
    /// The organization `init` creates when given no file: one owner.
    pub fn single_owner(organization: &str, owner_email: &str) -> Self {
        DirectoryFile {
            organization: organization.to_owned(),
            grace_period: true,
            roles: Vec::new(),
            on_call_roles: Vec::new(),
            users: vec![UserSpec { id: 1, email: owner_email.to_owned(), role: "owner".into(), on_call_role: Some("admin".into()) }],
            teams: Vec::new(),
        }
    }

    /// The first user with the `owner` role: who `init` mints the first token for.
    pub fn first_owner(&self) -> Option<&UserSpec> {
        self.users.iter().find(|u| u.role == "owner")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the directory for {organization:?} is inconsistent:\n  - {}", problems.join("\n  - "))]
pub struct DirectoryError {
    pub organization: String,
    pub problems: Vec<String>,
}

/// Roles and on-call roles as they will stand, by slug and by id.
struct RoleTable {
    by_slug: HashMap<String, Uuid>,
}

impl RoleTable {
    fn find(&self, slug_or_id: &str) -> Option<Uuid> {
        match Uuid::parse_str(slug_or_id) {
            Ok(id) => self.by_slug.values().copied().find(|v| *v == id),
            Err(_) => self.by_slug.get(slug_or_id).copied(),
        }
    }
}

/// The events that bring every organization of a directory file (one or several) from
/// `state` to the file, as one plan: if any organization's part is inconsistent, nothing
/// is planned, so a file is applied whole or not at all.
pub fn plan_all(files: &[DirectoryFile], state: &State, new_id: &mut dyn FnMut() -> Uuid) -> Result<Vec<Event>, DirectoryError> {
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for file in files {
        // Each part is planned against the same state, which holds only for distinct organizations.
        if !seen.insert(file.organization.as_str()) {
            return Err(DirectoryError {
                organization: file.organization.clone(),
                problems: vec!["the organization is described twice in one file".to_owned()],
            });
        }
        events.extend(plan(file, state, new_id)?);
    }
    Ok(events)
}

/// The events that bring the organization described by `file` from `state` to the file.
/// `new_id` supplies ids for things the file does not name.
pub fn plan(file: &DirectoryFile, state: &State, new_id: &mut dyn FnMut() -> Uuid) -> Result<Vec<Event>, DirectoryError> {
    check(file)?;
    let existing = state.directory.organization_by_name(&file.organization);
    let organization_id = existing.map_or_else(&mut *new_id, |o| o.id);
    let mut events = Vec::new();
    match existing {
        None => events.push(Event::OrganizationCreated(OrganizationCreated {
            organization_id,
            name: file.organization.clone(),
            grace_period: file.grace_period,
        })),
        Some(org) if org.grace_period != file.grace_period => events
            .push(Event::OrganizationSettingsChanged(OrganizationSettingsChanged { organization_id, grace_period: file.grace_period })),
        Some(_) => {}
    }

    let roles = plan_roles(file, existing, organization_id, new_id, &mut events);
    let on_call_roles = plan_on_call_roles(file, existing, organization_id, new_id, &mut events);

    let mut problems = Vec::new();
    let mut wanted_users = HashSet::new();
    for user in &file.users {
        wanted_users.insert(user.id);
        let Some(role_id) = roles.find(&user.role) else {
            problems.push(format!("user {} has role {:?}, which is neither a system role nor in roles", user.id, user.role));
            continue;
        };
        let on_call_role_id = match &user.on_call_role {
            Some(r) => match on_call_roles.find(r) {
                Some(id) => Some(id),
                None => {
                    problems.push(format!("user {} has on_call_role {r:?}, which does not exist", user.id));
                    continue;
                }
            },
            None => None,
        };
        match existing.and_then(|o| o.users.get(&user.id)) {
            None => events.push(Event::UserJoined(UserJoined {
                organization_id,
                user_id: user.id,
                email: user.email.clone(),
                role_id,
                on_call_role_id,
            })),
            Some(u) if u.email != user.email || u.role_id != role_id || u.on_call_role_id != on_call_role_id => {
                events.push(Event::UserChanged(UserChanged {
                    organization_id,
                    user_id: user.id,
                    email: user.email.clone(),
                    role_id,
                    on_call_role_id,
                }))
            }
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(DirectoryError { organization: file.organization.clone(), problems });
    }
    if let Some(org) = existing {
        let removed: BTreeSet<UserId> = org.users.keys().filter(|id| !wanted_users.contains(id)).copied().collect();
        let personal_key_of_removed =
            |key: &ApiKey| key.kind == ApiKeyKind::Personal && key.user_id.is_some_and(|user| removed.contains(&user));
        revoke_keys(state, organization_id, RevocationReason::UserRemoved, personal_key_of_removed, &mut events);
        for user_id in &removed {
            events.push(Event::UserRemoved(UserRemoved { organization_id, user_id: *user_id }));
        }
    }
    plan_teams(file, state, existing, organization_id, &mut events);
    Ok(events)
}

/// Appends the revocation of every key of the organization that `doomed` picks, oldest
/// first. One walk over the organization's keys, however many users or teams go.
fn revoke_keys(state: &State, organization_id: Uuid, reason: RevocationReason, doomed: impl Fn(&ApiKey) -> bool, events: &mut Vec<Event>) {
    let mut keys: Vec<&ApiKey> = state.keys.of_organization(organization_id).filter(|key| doomed(key)).collect();
    keys.sort_by_key(|key| key.position);
    events.extend(keys.into_iter().flat_map(|key| revocation(key, reason)));
}

fn plan_roles(
    file: &DirectoryFile,
    existing: Option<&Organization>,
    organization_id: Uuid,
    new_id: &mut dyn FnMut() -> Uuid,
    events: &mut Vec<Event>,
) -> RoleTable {
    let mut by_slug: HashMap<String, Uuid> =
        existing.map(|o| o.roles.values().map(|r| (r.slug.clone(), r.id)).collect()).unwrap_or_default();
    let system = SYSTEM_ROLES.iter().map(|(slug, name, perms)| RoleSpec {
        id: None,
        slug: (*slug).to_owned(),
        name: Some((*name).to_owned()),
        api_keys_permissions: perms.to_vec(),
    });
    for spec in system.chain(file.roles.iter().cloned()) {
        let name = spec.name.clone().unwrap_or_else(|| spec.slug.clone());
        let current = existing.and_then(|o| o.roles.values().find(|r| r.slug == spec.slug));
        let unchanged = current.is_some_and(|r| r.name == name && r.api_keys_permissions == spec.api_keys_permissions);
        if unchanged {
            continue;
        }
        let role_id = current.map(|r| r.id).or(spec.id).unwrap_or_else(&mut *new_id);
        by_slug.insert(spec.slug.clone(), role_id);
        events.push(Event::RoleDefined(RoleDefined {
            organization_id,
            role_id,
            slug: spec.slug,
            name,
            api_keys_permissions: spec.api_keys_permissions,
        }));
    }
    RoleTable { by_slug }
}

fn plan_on_call_roles(
    file: &DirectoryFile,
    existing: Option<&Organization>,
    organization_id: Uuid,
    new_id: &mut dyn FnMut() -> Uuid,
    events: &mut Vec<Event>,
) -> RoleTable {
    let mut by_slug: HashMap<String, Uuid> =
        existing.map(|o| o.on_call_roles.values().map(|r| (r.slug.clone(), r.id)).collect()).unwrap_or_default();
    let system = SYSTEM_ON_CALL_ROLES.iter().map(|(slug, name)| OnCallRoleSpec {
        id: None,
        slug: (*slug).to_owned(),
        name: Some((*name).to_owned()),
    });
    for spec in system.chain(file.on_call_roles.iter().cloned()) {
        let name = spec.name.clone().unwrap_or_else(|| spec.slug.clone());
        let current = existing.and_then(|o| o.on_call_roles.values().find(|r| r.slug == spec.slug));
        if current.is_some_and(|r| r.name == name) {
            continue;
        }
        let on_call_role_id = current.map(|r| r.id).or(spec.id).unwrap_or_else(&mut *new_id);
        by_slug.insert(spec.slug.clone(), on_call_role_id);
        events.push(Event::OnCallRoleDefined(OnCallRoleDefined { organization_id, on_call_role_id, slug: spec.slug, name }));
    }
    RoleTable { by_slug }
}

fn plan_teams(file: &DirectoryFile, state: &State, existing: Option<&Organization>, organization_id: Uuid, events: &mut Vec<Event>) {
    let wanted: HashSet<Uuid> = file.teams.iter().map(|t| t.id).collect();
    if let Some(org) = existing {
        let deleted: BTreeSet<Uuid> = org.teams.keys().filter(|id| !wanted.contains(id)).copied().collect();
        let key_of_deleted = |key: &ApiKey| key.kind == ApiKeyKind::Team && key.group_id.is_some_and(|team| deleted.contains(&team));
        revoke_keys(state, organization_id, RevocationReason::TeamDeleted, key_of_deleted, events);
        for team_id in &deleted {
            events.push(Event::TeamDeleted(TeamDeleted { organization_id, team_id: *team_id }));
        }
    }
    for team in &file.teams {
        let current = existing.and_then(|o| o.teams.get(&team.id));
        if current.is_none() {
            events.push(Event::TeamCreated(TeamCreated {
                organization_id,
                team_id: team.id,
                slug: team.slug.clone(),
                name: team.name.clone(),
            }));
        }
        let user_ids: BTreeSet<UserId> = team.user_ids.iter().copied().collect();
        let admin_ids: BTreeSet<UserId> = team.admin_ids.iter().copied().collect();
        if current.is_none_or(|t| t.user_ids != user_ids || t.admin_ids != admin_ids) {
            events.push(Event::TeamMembershipChanged(TeamMembershipChanged {
                organization_id,
                team_id: team.id,
                user_ids: user_ids.into_iter().collect(),
                admin_ids: admin_ids.into_iter().collect(),
            }));
        }
    }
}

/// Internal consistency of a file, before it is compared with anything.
fn check(file: &DirectoryFile) -> Result<(), DirectoryError> {
    let mut problems = Vec::new();
    if file.organization.trim().is_empty() {
        problems.push("organization must have a name".to_owned());
    }
    let mut seen = HashSet::new();
    for role in &file.roles {
        if SYSTEM_ROLES.iter().any(|(slug, _, _)| *slug == role.slug) {
            problems.push(format!("role {:?} is a system role and cannot be redefined", role.slug));
        } else if !seen.insert(role.slug.as_str()) {
            problems.push(format!("role {:?} is listed twice", role.slug));
        }
    }
    let mut ids = HashSet::new();
    let mut emails = HashSet::new();
    for user in &file.users {
        if !ids.insert(user.id) {
            problems.push(format!("user id {} is listed twice", user.id));
        }
        if !emails.insert(user.email.to_lowercase()) {
            problems.push(format!("email {:?} is listed twice", user.email));
        }
    }
    let mut team_ids = HashSet::new();
    let mut team_slugs = HashSet::new();
    for team in &file.teams {
        if !team_ids.insert(team.id) {
            problems.push(format!("team {} is listed twice", team.id));
        } else if !team_slugs.insert(team.slug.as_str()) {
            problems.push(format!("team slug {:?} is used by two teams; a slug names one team", team.slug));
        }
        for id in team.user_ids.iter().chain(&team.admin_ids) {
            if !ids.contains(id) {
                problems.push(format!("team {:?} names user {id}, who is not in users", team.slug));
            }
        }
        for id in &team.admin_ids {
            if !team.user_ids.contains(id) {
                problems.push(format!("team {:?} has admin {id} who is not among its user_ids", team.slug));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DirectoryError { organization: file.organization.clone(), problems })
    }
}

#[cfg(test)]
mod tests {
    use super::super::caller::resolve;
    use super::super::create_api_key::{self, NewApiKey};
    use super::super::given::{attributes, now, Given, PLATFORM};
    use super::*;
    use keyledger_projections::Actor;

    fn acme() -> DirectoryFile {
        serde_json::from_str(include_str!("../../../fixtures/directory.example.json")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn types(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(Event::type_name).collect()
    }

    #[test]
    fn applying_the_same_file_again_records_nothing() {
        let given = Given::acme_and_globex();
        assert_eq!(plan(&acme(), &given.state, &mut Uuid::new_v4), Ok(vec![]));
    }

    #[test]
    fn a_new_organization_gets_the_system_roles() {
        let events = plan(&DirectoryFile::single_owner("Initech", "peter@initech.test"), &State::default(), &mut Uuid::new_v4).unwrap();
        let roles: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::RoleDefined(r) => Some(r.slug.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(roles, ["owner", "admin", "user", "observer", "no_access"]);
        assert_eq!(types(&events[..1]), ["OrganizationCreated"]);
        assert!(matches!(events.last(), Some(Event::UserJoined(u)) if u.email == "peter@initech.test"));
    }

    #[test]
    fn changes_become_the_matching_events() {
        let mut given = Given::acme_and_globex();
        let mut file = acme();
        file.grace_period = false;
        file.users.retain(|u| u.id != 4);
        file.users.iter_mut().filter(|u| u.id == 2).for_each(|u| u.role = "user".into());
        file.teams.retain(|t| t.slug != "security");
        file.teams[0].user_ids = vec![3];
        let events = plan(&file, &given.state, &mut Uuid::new_v4).unwrap();
        assert_eq!(
            types(&events),
            ["OrganizationSettingsChanged", "UserChanged", "ApiKeyRevoked", "UserRemoved", "TeamDeleted", "TeamMembershipChanged"],
            "dave's login key is revoked before he goes"
        );
        given.record(Actor::Operator, events);
        assert_eq!(plan(&file, &given.state, &mut Uuid::new_v4), Ok(vec![]), "and then the file is in effect");
    }

    #[test]
    fn inconsistent_files_are_refused_with_every_problem() {
        let mut file = acme();
        let mut twin = file.teams[0].clone();
        twin.id = Uuid::new_v4();
        file.teams.push(twin);
        file.users.push(file.users[0].clone());
        file.users[1].role = "wizard".into();
        file.teams[0].admin_ids.push(6);
        file.roles.push(RoleSpec { id: None, slug: "owner".into(), name: None, api_keys_permissions: vec![] });
        let err = check(&file).unwrap_err();
        assert_eq!(err.problems.len(), 5, "{err}");
        assert!(err.problems.iter().any(|p| p.contains(&format!("team slug {:?} is used by two teams", file.teams[0].slug))), "{err}");
        let err = plan(&acme_with_role(&mut acme(), "wizard"), &State::default(), &mut Uuid::new_v4).unwrap_err();
        assert!(err.to_string().contains("wizard"), "{err}");
    }

    /// Creates a key through the create rule, as `email`; returns its id.
    fn create(given: &mut Given, email: &str, attributes: NewApiKey) -> Uuid {
        let cmd = given.create_by(email, attributes);
        let decision = create_api_key::decide(&cmd, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}"));
        given.accept(decision);
        cmd.api_key_id
    }

    fn revoked(events: &[Event]) -> Vec<(Uuid, RevocationReason)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ApiKeyRevoked(r) => Some((r.api_key_id, r.reason)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_removed_users_personal_keys_are_revoked_and_the_keys_they_created_for_others_stay() {
        let mut given = Given::acme_and_globex();
        let deploy = create(&mut given, "carol@acme.test", attributes("personal", "deploy"));
        let team_key = create(&mut given, "carol@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "ci") });
        let org_key = create(&mut given, "bob@acme.test", attributes("organization", "billing"));
        let mut file = acme();
        file.users.retain(|u| u.id != 2 && u.id != 3);
        for team in &mut file.teams {
            team.user_ids.retain(|id| *id != 2 && *id != 3);
            team.admin_ids.clear();
        }
        let events = plan(&file, &given.state, &mut Uuid::new_v4).unwrap_or_else(|e| panic!("{e}"));
        let reason = RevocationReason::UserRemoved;
        assert_eq!(
            revoked(&events),
            [(Given::login("bob@acme.test"), reason), (Given::login("carol@acme.test"), reason), (deploy, reason)],
            "the personal keys of bob and carol, oldest first, and nothing else"
        );
        let first_removal = events.iter().position(|e| matches!(e, Event::UserRemoved(_)));
        let last_revocation = events.iter().rposition(|e| matches!(e, Event::ApiKeyRevoked(_)));
        assert!(last_revocation < first_removal, "keys go before their users: {:?}", types(&events));

        given.record(Actor::Operator, events);
        assert!(given.state.keys.get(deploy).is_none(), "revoked, its name free");
        for key in [team_key, org_key] {
            assert!(resolve(&given.state, key, now()).is_some(), "a team or organization key outlives its creator");
        }
    }

    #[test]
    fn a_deleted_teams_keys_are_revoked_with_their_service_accounts_before_the_team_goes() {
        let mut given = Given::acme_and_globex();
        let platform_keys = [
            create(&mut given, "carol@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "ci") }),
            create(&mut given, "alice@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "cd") }),
        ];
        let security_key =
            create(&mut given, "bob@acme.test", NewApiKey { group_id: Some("security".into()), ..attributes("team", "scan") });
        let accounts: Vec<Uuid> =
            platform_keys.iter().filter_map(|k| given.state.keys.get(*k).and_then(|k| k.service_account_id)).collect();
        let mut file = acme();
        file.teams.retain(|t| t.slug != "platform");
        let events = plan(&file, &given.state, &mut Uuid::new_v4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(types(&events), ["ApiKeyRevoked", "ServiceAccountDeleted", "ApiKeyRevoked", "ServiceAccountDeleted", "TeamDeleted"]);
        let reason = RevocationReason::TeamDeleted;
        assert_eq!(revoked(&events), [(platform_keys[0], reason), (platform_keys[1], reason)]);

        given.record(Actor::Operator, events);
        assert!(platform_keys.iter().all(|k| given.state.keys.get(*k).is_none()));
        assert!(accounts.len() == 2 && accounts.iter().all(|a| given.state.service_accounts.get(*a).is_none()));
        assert!(resolve(&given.state, security_key, now()).is_some(), "another team's key is untouched");
        assert_eq!(plan(&file, &given.state, &mut Uuid::new_v4), Ok(vec![]), "and then the file is in effect");
    }

    #[test]
    fn a_file_of_several_organizations_is_planned_whole_or_not_at_all() {
        let given = Given::acme_and_globex();
        let mut acme_changed = acme();
        acme_changed.users.retain(|u| u.id != 6);
        let mut initech = DirectoryFile::single_owner("Initech", "peter@initech.test");
        initech.users[0].role = "wizard".into();
        let err = plan_all(&[acme_changed.clone(), initech], &given.state, &mut Uuid::new_v4).unwrap_err();
        assert_eq!(err.organization, "Initech", "{err}");
        let err = plan_all(&[acme_changed.clone(), acme()], &given.state, &mut Uuid::new_v4).unwrap_err();
        assert!(err.to_string().contains("described twice"), "{err}");
        let events =
            plan_all(&[acme_changed, DirectoryFile::single_owner("Initech", "peter@initech.test")], &given.state, &mut Uuid::new_v4)
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(types(&events).contains(&"UserRemoved") && types(&events).contains(&"OrganizationCreated"));
    }

    fn acme_with_role(file: &mut DirectoryFile, role: &str) -> DirectoryFile {
        file.users[0].role = role.into();
        file.clone()
    }
}
