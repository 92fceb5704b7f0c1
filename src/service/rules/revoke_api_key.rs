//! Revoking a key: immediate and final (API.md "Update, revoke, rotate").
//!
//! Anything the caller may not revoke is answered exactly like a key that does not exist:
//! revoking is no way to learn which keys exist.

use chrono::{DateTime, Utc};
use keyledger_projections::event::{ApiKeyRevoked, RevocationReason, ServiceAccountDeleted};
use keyledger_projections::keys_view::ApiKey;
use keyledger_projections::{Event, Permission, State};
use uuid::Uuid;

use super::caller::{self, Credential};
use super::visibility::can_change;
use super::{Decision, Rejection};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeApiKey {
    /// The token that authenticates the request.
    pub caller: Credential,
    pub api_key_id: Uuid,
}

pub fn decide(cmd: &RevokeApiKey, state: &State, now: DateTime<Utc>) -> Result<Decision, Rejection> {
    let caller = caller::acting(state, cmd.caller, now)?;
    let org = state.directory.organization(caller.organization_id).ok_or(Rejection::Unauthenticated)?;
    let key = state.keys.get(cmd.api_key_id).ok_or(Rejection::NotFound)?;
    if !can_change(&caller, org, key, Permission::Delete) {
        return Err(Rejection::NotFound);
    }
    Ok(Decision { actor: caller.actor(), events: revocation(key, RevocationReason::Requested) })
}

/// The events that revoke `key` for `reason`: the revocation, then the deletion of the
/// service account a team or organization key acts as. Requested revocations and the
/// directory's (a user or team gone) build them here alike, so every projection undoes
/// a key the same way whatever the reason.
pub fn revocation(key: &ApiKey, reason: RevocationReason) -> Vec<Event> {
    let mut events = vec![Event::ApiKeyRevoked(ApiKeyRevoked {
        api_key_id: key.id,
        organization_id: key.organization_id,
        kind: key.kind,
        name: key.name.clone(),
        user_id: key.user_id,
        group_id: key.group_id,
        token_digest: key.token_digest.clone(),
        reason,
    })];
    if let Some(service_account_id) = key.service_account_id {
        events.push(Event::ServiceAccountDeleted(ServiceAccountDeleted {
            service_account_id,
            organization_id: key.organization_id,
            api_key_id: key.id,
        }));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::super::create_api_key::{self, NewApiKey};
    use super::super::given::{acme_user, attributes, now, organization, Given, PLATFORM};
    use super::*;
    use keyledger_projections::ApiKeyKind;

    fn create(given: &mut Given, email: &str, attributes: NewApiKey) -> Uuid {
        let cmd = given.create_by(email, attributes);
        let decision = create_api_key::decide(&cmd, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}"));
        given.accept(decision);
        cmd.api_key_id
    }

    fn revocation_by(given: &Given, email: &str, key: Uuid) -> RevokeApiKey {
        RevokeApiKey { caller: given.credential(Given::login(email)), api_key_id: key }
    }

    fn revoke(given: &Given, email: &str, key: Uuid) -> Result<Decision, Rejection> {
        decide(&revocation_by(given, email, key), &given.state, now())
    }

    fn digest(given: &Given, key: Uuid) -> String {
        given.state.keys.get(key).map(|k| k.token_digest.clone()).unwrap_or_else(|| panic!("no key {key}"))
    }

    #[test]
    fn revoking_a_key_frees_its_name_and_forgets_its_token() {
        let mut given = Given::acme_and_globex();
        let key = create(&mut given, "carol@acme.test", attributes("personal", "deploy"));
        let digest = digest(&given, key);
        let revoked = ApiKeyRevoked {
            api_key_id: key,
            organization_id: organization(&given, "Acme"),
            kind: ApiKeyKind::Personal,
            name: "deploy".into(),
            user_id: Some(3),
            group_id: None,
            token_digest: digest.clone(),
            reason: RevocationReason::Requested,
        };
        // A personal key has no service account to take with it.
        let carol = acme_user(&given, 3, Given::login("carol@acme.test"));
        let decision = given.when(&revocation_by(&given, "carol@acme.test", key)).then_expect(carol, vec![Event::ApiKeyRevoked(revoked)]);
        given.accept(decision);
        assert!(given.state.keys.get(key).is_none());
        let digest = blake3::Hash::from_hex(digest).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(given.state.tokens.key_for(&digest), None);
        assert!(given.state.expiry_schedule.due_by(now() + chrono::Duration::days(3650)).all(|(_, id)| id != key));
        let again = given.create_by("carol@acme.test", attributes("personal", "Deploy"));
        assert!(create_api_key::decide(&again, &given.state, now()).is_ok(), "the name is free again");
    }

    #[test]
    fn a_team_key_takes_its_service_account_with_it() {
        let mut given = Given::acme_and_globex();
        let key = create(&mut given, "carol@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "ci") });
        let account = given.state.keys.get(key).and_then(|k| k.service_account_id);
        let organization_id = organization(&given, "Acme");
        let revoked = ApiKeyRevoked {
            api_key_id: key,
            organization_id,
            kind: ApiKeyKind::Team,
            name: "ci".into(),
            user_id: Some(3), // its creator, carol
            group_id: Some(PLATFORM.parse().unwrap_or_else(|e| panic!("{e}"))),
            token_digest: digest(&given, key),
            reason: RevocationReason::Requested,
        };
        let deleted = ServiceAccountDeleted {
            service_account_id: account.unwrap_or_else(|| panic!("a team key has a service account")),
            organization_id,
            api_key_id: key,
        };
        let bob = acme_user(&given, 2, Given::login("bob@acme.test"));
        let decision = given
            .when(&revocation_by(&given, "bob@acme.test", key))
            .then_expect(bob, vec![Event::ApiKeyRevoked(revoked), Event::ServiceAccountDeleted(deleted)]);
        given.accept(decision);
        assert!(account.is_some_and(|a| given.state.service_accounts.get(a).is_none()));
    }

    #[test]
    fn others_get_not_found_as_if_the_key_did_not_exist() {
        let mut given = Given::acme_and_globex();
        let key = create(&mut given, "carol@acme.test", attributes("personal", "mine"));
        for email in ["dave@acme.test", "erin@acme.test", "hank@globex.test"] {
            assert_eq!(revoke(&given, email, key), Err(Rejection::NotFound), "{email}");
        }
        assert_eq!(revoke(&given, "carol@acme.test", Uuid::nil()), Err(Rejection::NotFound));
        assert!(revoke(&given, "alice@acme.test", key).is_ok(), "owners may revoke any key of their organization");
    }

    #[test]
    fn users_without_the_delete_permission_cannot_revoke_their_own_keys_but_a_key_can_revoke_itself() {
        let mut given = Given::acme_and_globex();
        let org = given.state.directory.organization_by_name("Acme").map(|o| o.name.clone()).unwrap_or_default();
        let cmd = create_api_key::CreateApiKey {
            requester: create_api_key::Requester::Operator { organization: org, email: "erin@acme.test".into() },
            ..given.create_by("alice@acme.test", attributes("personal", "erin's"))
        };
        let decision = create_api_key::decide(&cmd, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}"));
        given.accept(decision);
        assert_eq!(revoke(&given, "erin@acme.test", cmd.api_key_id), Err(Rejection::NotFound), "observers lack delete");
        let self_revoke =
            decide(&RevokeApiKey { caller: given.credential(cmd.api_key_id), api_key_id: cmd.api_key_id }, &given.state, now());
        assert!(self_revoke.is_ok(), "a leaked key can always be revoked with itself");
    }
}
