//! The caller's organization's directory, read-only (`GET /v1/users/me`, `/v1/roles`,
//! `/v1/on_call_roles`, `/v1/teams`), so that clients can find the ids the keys API takes.
//! Only the caller's organization is ever read. Lists are in a stable order — by slug, then
//! id — so that pages never overlap or skip an entry between requests that change nothing.

use keyledger_projections::directory::{OnCallRole, Organization, Role, Team, User};
use keyledger_projections::service_accounts::ServiceAccount;
use keyledger_projections::State;
use uuid::Uuid;

use super::paging::{Page, Paging};
use super::rules::caller::{Caller, Identity};

/// Who the caller is: the user behind a personal key, or the service account a team or
/// organization key acts as.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Me<'a> {
    User(&'a User),
    ServiceAccount(&'a ServiceAccount),
}

/// The caller as the directory now has it; `None` only if it vanished since it authenticated.
pub fn me<'a>(state: &'a State, caller: &Caller) -> Option<Me<'a>> {
    match &caller.identity {
        Identity::User { user_id, .. } => organization(state, caller)?.users.get(user_id).map(Me::User),
        Identity::ServiceAccount { service_account_id, .. } => {
            state.service_accounts.get(*service_account_id).filter(|a| a.organization_id == caller.organization_id).map(Me::ServiceAccount)
        }
    }
}

pub fn roles<'a>(state: &'a State, caller: &Caller, paging: Paging) -> Page<&'a Role> {
    let roles = organization(state, caller).into_iter().flat_map(|o| o.roles.values());
    in_slug_order(roles, |r| (&r.slug, r.id), paging)
}

pub fn on_call_roles<'a>(state: &'a State, caller: &Caller, paging: Paging) -> Page<&'a OnCallRole> {
    let roles = organization(state, caller).into_iter().flat_map(|o| o.on_call_roles.values());
    in_slug_order(roles, |r| (&r.slug, r.id), paging)
}

pub fn teams<'a>(state: &'a State, caller: &Caller, paging: Paging) -> Page<&'a Team> {
    let teams = organization(state, caller).into_iter().flat_map(|o| o.teams.values());
    in_slug_order(teams, |t| (&t.slug, t.id), paging)
}

fn organization<'a>(state: &'a State, caller: &Caller) -> Option<&'a Organization> {
    state.directory.organization(caller.organization_id)
}

fn in_slug_order<'a, T>(items: impl Iterator<Item = &'a T>, key: impl Fn(&T) -> (&String, Uuid), paging: Paging) -> Page<&'a T> {
    let mut items: Vec<&T> = items.collect();
    items.sort_by(|a, b| key(a).cmp(&key(b)));
    paging.cut(items)
}

#[cfg(test)]
mod tests {
    use super::super::rules::caller::resolve;
    use super::super::rules::create_api_key::{self, NewApiKey};
    use super::super::rules::given::{attributes, now, Given, PLATFORM};
    use super::*;

    fn caller(given: &Given, key: Uuid) -> Caller {
        resolve(&given.state, key, now()).unwrap_or_else(|| panic!("{key} does not authenticate"))
    }

    fn login(given: &Given, email: &str) -> Caller {
        caller(given, Given::login(email))
    }

    #[test]
    fn me_is_the_user_or_the_service_account_behind_the_key() {
        let mut given = Given::acme_and_globex();
        let carol = login(&given, "carol@acme.test");
        assert!(matches!(me(&given.state, &carol), Some(Me::User(u)) if u.email == "carol@acme.test" && u.id == 3));
        let cmd = given.create_by("carol@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "ci") });
        let decision = create_api_key::decide(&cmd, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}"));
        given.accept(decision);
        let team_key = caller(&given, cmd.api_key_id);
        assert!(matches!(me(&given.state, &team_key), Some(Me::ServiceAccount(a)) if a.id == cmd.service_account_id));
    }

    #[test]
    fn lists_hold_the_callers_organization_only_in_slug_order() {
        let given = Given::acme_and_globex();
        let (alice, hank) = (login(&given, "alice@acme.test"), login(&given, "hank@globex.test"));
        let slugs = |page: Page<&Role>| page.items.iter().map(|r| r.slug.clone()).collect::<Vec<_>>();
        let all = Paging::default();
        assert_eq!(slugs(roles(&given.state, &alice, all)), ["admin", "auditor", "no_access", "observer", "owner", "user"]);
        assert_eq!(slugs(roles(&given.state, &hank, all)), ["admin", "no_access", "observer", "owner", "user"]);
        let acme_ids: Vec<Uuid> = roles(&given.state, &alice, all).items.iter().map(|r| r.id).collect();
        assert!(roles(&given.state, &hank, all).items.iter().all(|r| !acme_ids.contains(&r.id)), "Globex has its own roles");

        let team_slugs = |caller: &Caller| teams(&given.state, caller, all).items.iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(team_slugs(&alice).len(), 2);
        assert!(team_slugs(&hank).iter().all(|id| !team_slugs(&alice).contains(id)), "Globex never sees Acme's teams");
        let on_call = on_call_roles(&given.state, &alice, Paging { number: 2, size: 3 });
        assert_eq!((on_call.total, on_call.items.len()), (5, 2), "four system on-call roles and incident_commander");
    }
}
