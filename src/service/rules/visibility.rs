//! Which keys a caller may see. Anything else is answered exactly like a key that does not
//! exist ("Not found or unauthorized"), and nothing is ever visible across organizations.

use keyledger_projections::directory::Organization;
use keyledger_projections::event::UserId;
use keyledger_projections::keys_view::ApiKey;
use keyledger_projections::{ApiKeyKind, Permission};
use uuid::Uuid;

use super::caller::{Caller, Identity};

/// Whether the caller may change (`Update`) or revoke (`Delete`) a key it can see: the key
/// itself, owners and admins, a user holding `permission` for their own personal keys, and
/// a team's admins holding `permission` (and the team's service account) for the team's
/// keys.
pub fn can_change(caller: &Caller, org: &Organization, key: &ApiKey, permission: Permission) -> bool {
    can_see(caller, org, key)
        && (key.id == caller.api_key_id
            || caller.is_organization_admin(org)
            || match key.kind {
                ApiKeyKind::Personal => key.user_id.is_some() && key.user_id == caller.user_id() && caller.has_permission(org, permission),
                ApiKeyKind::Team => key.group_id.is_some_and(|team| caller.manages_team_keys(org, team, permission)),
                ApiKeyKind::Organization => false,
            })
}

pub fn can_see(caller: &Caller, org: &Organization, key: &ApiKey) -> bool {
    if key.organization_id != caller.organization_id || org.id != caller.organization_id {
        return false;
    }
    if key.id == caller.api_key_id || caller.is_organization_admin(org) {
        return true;
    }
    match &caller.identity {
        Identity::User { user_id, .. } => {
            caller.has_permission(org, Permission::Read)
                && match key.kind {
                    ApiKeyKind::Personal => key.user_id == Some(*user_id),
                    ApiKeyKind::Team => key.group_id.is_some_and(|team| caller.administers_team(org, team)),
                    ApiKeyKind::Organization => false,
                }
        }
        Identity::ServiceAccount { kind: ApiKeyKind::Team, group_id, .. } => {
            key.kind == ApiKeyKind::Team && key.group_id.is_some() && key.group_id == *group_id
        }
        Identity::ServiceAccount { .. } => false,
    }
}

/// A part of the caller's organization: the keys with every field that is given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Part {
    pub kind: Option<ApiKeyKind>,
    pub user_id: Option<UserId>,
    pub group_id: Option<Uuid>,
}

impl Part {
    pub fn contains(&self, key: &ApiKey) -> bool {
        self.kind.is_none_or(|kind| key.kind == kind)
            && self.user_id.is_none_or(|user| key.user_id == Some(user))
            && self.group_id.is_none_or(|team| key.group_id == Some(team))
    }
}

/// What [`can_see`] lets the caller see besides its own key, as disjoint parts of its
/// organization, so that a list can walk those instead of asking about every key.
pub fn visible_parts(caller: &Caller, org: &Organization) -> Vec<Part> {
    if org.id != caller.organization_id {
        return Vec::new();
    }
    if caller.is_organization_admin(org) {
        return vec![Part::default()];
    }
    match &caller.identity {
        Identity::User { user_id, .. } if caller.has_permission(org, Permission::Read) => {
            let personal = Part { kind: Some(ApiKeyKind::Personal), user_id: Some(*user_id), group_id: None };
            let administered = org.teams.keys().filter(|team| caller.administers_team(org, **team));
            std::iter::once(personal).chain(administered.map(|team| team_part(*team))).collect()
        }
        Identity::ServiceAccount { kind: ApiKeyKind::Team, group_id: Some(team), .. } => vec![team_part(*team)],
        Identity::User { .. } | Identity::ServiceAccount { .. } => Vec::new(),
    }
}

fn team_part(team: Uuid) -> Part {
    Part { kind: Some(ApiKeyKind::Team), user_id: None, group_id: Some(team) }
}

#[cfg(test)]
mod tests {
    use super::super::caller::resolve;
    use super::super::create_api_key::{decide, NewApiKey};
    use super::super::given::{attributes, now, Given, PLATFORM};
    use super::*;
    use uuid::Uuid;

    /// Who of the fixture users can see a key created by `creator`.
    fn seen_by(given: &Given, key: Uuid) -> Vec<&'static str> {
        let key = given.state.keys.get(key).unwrap();
        ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "hank", "ivy"]
            .into_iter()
            .filter(|name| {
                let email = if matches!(*name, "hank" | "ivy") { format!("{name}@globex.test") } else { format!("{name}@acme.test") };
                let caller = resolve(&given.state, Given::login(&email), now()).unwrap();
                let org = given.state.directory.organization(caller.organization_id).unwrap();
                can_see(&caller, org, key)
            })
            .collect()
    }

    fn create(given: &mut Given, email: &str, attributes: NewApiKey) -> Uuid {
        let cmd = given.create_by(email, attributes);
        let decision = decide(&cmd, &given.state, now()).unwrap();
        given.accept(decision);
        cmd.api_key_id
    }

    #[test]
    fn personal_keys_are_seen_by_their_owner_and_the_organization_admins() {
        let mut given = Given::acme_and_globex();
        let key = create(&mut given, "dave@acme.test", attributes("personal", "mine"));
        assert_eq!(seen_by(&given, key), ["alice", "bob", "dave"]);
    }

    #[test]
    fn team_keys_are_seen_by_team_admins_but_not_members() {
        let mut given = Given::acme_and_globex();
        let key = create(&mut given, "carol@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "t") });
        assert_eq!(seen_by(&given, key), ["alice", "bob", "carol"]);
    }

    #[test]
    fn a_team_service_account_sees_its_team_keys_only() {
        let mut given = Given::acme_and_globex();
        let team_key = create(&mut given, "carol@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "t") });
        let other = create(&mut given, "carol@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "u") });
        let personal = create(&mut given, "carol@acme.test", attributes("personal", "p"));
        let caller = resolve(&given.state, team_key, now()).unwrap();
        let org = given.state.directory.organization(caller.organization_id).unwrap();
        assert!(can_see(&caller, org, given.state.keys.get(other).unwrap()));
        assert!(!can_see(&caller, org, given.state.keys.get(personal).unwrap()));
    }

    #[test]
    fn nothing_is_visible_across_organizations() {
        let mut given = Given::acme_and_globex();
        let key = create(&mut given, "hank@globex.test", attributes("organization", "globex wide"));
        assert_eq!(seen_by(&given, key), ["hank"]);
    }

    #[test]
    fn the_visible_parts_hold_exactly_what_each_caller_may_see_besides_its_own_key() {
        let mut given = Given::acme_and_globex();
        let mut keys = vec![
            create(&mut given, "carol@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "t") }),
            create(&mut given, "carol@acme.test", attributes("personal", "p")),
            create(&mut given, "alice@acme.test", attributes("organization", "o")),
            create(&mut given, "hank@globex.test", attributes("organization", "globex wide")),
        ];
        keys.extend(given.state.keys.iter().map(|key| key.id));
        let callers = keys.iter().filter_map(|id| resolve(&given.state, *id, now()));
        for caller in callers {
            let org = given.state.directory.organization(caller.organization_id).unwrap();
            let parts = visible_parts(&caller, org);
            for key in given.state.keys.iter() {
                let in_parts = key.organization_id == caller.organization_id && parts.iter().any(|part| part.contains(key));
                assert_eq!(can_see(&caller, org, key), in_parts || key.id == caller.api_key_id, "{caller:?} and {key:?}");
                assert!(parts.iter().filter(|part| part.contains(key)).count() <= 1, "disjoint parts");
            }
        }
    }
}
