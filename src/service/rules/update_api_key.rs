//! Updating a key: `name`, `description` and `expires_at`, under the create rules.
//!
//! Everything else about a key is fixed for its lifetime: a different kind, role, team or
//! secret is a different key (rotate it, or revoke it and create another).

use chrono::{DateTime, Utc};
use keyledger_projections::event::ApiKeyUpdated;
use keyledger_projections::name_index::{name_key, scope_of};
use keyledger_projections::{Event, Permission, State};
use uuid::Uuid;

use super::caller::{self, Credential};
use super::create_api_key::{check_description, check_expires_at, name_shape, name_taken};
use super::visibility::can_change;
use super::{Decision, Problem, Rejection};

/// Attributes that can never change, and what to do instead.
pub const IMMUTABLE: [&str; 5] = ["kind", "role_id", "on_call_role_id", "group_id", "token"];

/// The attributes of an update request; `None` leaves a field as it is. `problems` holds
/// what was wrong with the document's shape, reported with everything else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyChanges {
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub expires_at: Option<String>,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateApiKey {
    /// The token that authenticates the request.
    pub caller: Credential,
    pub api_key_id: Uuid,
    pub changes: KeyChanges,
}

pub fn decide(cmd: &UpdateApiKey, state: &State, now: DateTime<Utc>) -> Result<Decision, Rejection> {
    let caller = caller::acting(state, cmd.caller, now)?;
    let org = state.directory.organization(caller.organization_id).ok_or(Rejection::Unauthenticated)?;
    let key = state.keys.get(cmd.api_key_id).ok_or(Rejection::NotFound)?;
    if !can_change(&caller, org, key, Permission::Update) {
        return Err(Rejection::NotFound);
    }
    if key.expires_at <= now {
        return Err(Rejection::Invalid(vec![Problem::new(
            "/data",
            "Key has expired",
            "An expired key cannot be changed, only revoked; create a new key instead.",
        )]));
    }
    let changes = &cmd.changes;
    let mut problems = changes.problems.clone();

    let name = match &changes.name {
        None => Some(key.name.clone()),
        Some(raw) => name_shape(Some(raw), &mut problems).and_then(|name| {
            let scope = scope_of(key.kind, key.user_id, key.group_id);
            let holder = state.name_index.holder(&name_key(key.organization_id, key.kind, scope, name));
            if holder.is_some_and(|holder| holder != key.id) {
                problems.push(name_taken(key.kind, name));
                return None;
            }
            Some(name.to_owned())
        }),
    };
    let description = changes.description.clone().unwrap_or_else(|| key.description.clone());
    check_description(description.as_deref(), &mut problems);
    let expires_at = match &changes.expires_at {
        None => Some(key.expires_at),
        Some(raw) => check_expires_at(Some(raw), now, &mut problems),
    };

    let (Some(name), Some(expires_at), true) = (name, expires_at, problems.is_empty()) else {
        return Err(Rejection::Invalid(problems));
    };
    if key.id == caller.api_key_id && expires_at > key.expires_at {
        // Otherwise a leaked key could keep itself alive for five more years.
        return Err(Rejection::Forbidden(
            "A key may shorten its own life but never lengthen it: ask an owner or admin to change its expiry.".into(),
        ));
    }
    let unchanged = name == key.name && description == key.description && expires_at == key.expires_at;
    let events = if unchanged {
        Vec::new()
    } else {
        vec![Event::ApiKeyUpdated(ApiKeyUpdated {
            api_key_id: key.id,
            organization_id: key.organization_id,
            kind: key.kind,
            user_id: key.user_id,
            group_id: key.group_id,
            previous_name: key.name.clone(),
            name,
            description,
            expires_at,
        })]
    };
    Ok(Decision { actor: caller.actor(), events })
}

#[cfg(test)]
mod tests {
    use super::super::create_api_key;
    use super::super::given::{acme_user, attributes, now, organization, Given};
    use super::*;
    use keyledger_projections::ApiKeyKind;

    fn create(given: &mut Given, email: &str, name: &str) -> Uuid {
        let cmd = given.create_by(email, attributes("personal", name));
        let decision = create_api_key::decide(&cmd, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}"));
        given.accept(decision);
        cmd.api_key_id
    }

    fn update_by(given: &Given, email: &str, key: Uuid, changes: KeyChanges) -> UpdateApiKey {
        UpdateApiKey { caller: given.credential(Given::login(email)), api_key_id: key, changes }
    }

    fn update(given: &Given, email: &str, key: Uuid, changes: KeyChanges) -> Result<Decision, Rejection> {
        decide(&update_by(given, email, key, changes), &given.state, now())
    }

    /// Carol's personal key `key`, named `name`, as [`create`] made it, updated to `changed`.
    fn carols_key_updated(given: &Given, key: Uuid, name: &str, changed: impl FnOnce(&mut ApiKeyUpdated)) -> Vec<Event> {
        let mut updated = ApiKeyUpdated {
            api_key_id: key,
            organization_id: organization(given, "Acme"),
            kind: ApiKeyKind::Personal,
            user_id: Some(3),
            group_id: None,
            previous_name: name.into(),
            name: name.into(),
            description: None,
            expires_at: now() + chrono::Duration::days(30),
        };
        changed(&mut updated);
        vec![Event::ApiKeyUpdated(updated)]
    }

    fn titles(result: Result<Decision, Rejection>) -> Vec<String> {
        match result {
            Err(Rejection::Invalid(problems)) => problems.into_iter().map(|p| p.title).collect(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn a_rename_moves_the_name_reservation() {
        let mut given = Given::acme_and_globex();
        let key = create(&mut given, "carol@acme.test", "old");
        let changes = KeyChanges { name: Some(" new ".into()), ..KeyChanges::default() };
        let carol = acme_user(&given, 3, Given::login("carol@acme.test"));
        let renamed = carols_key_updated(&given, key, "old", |e| e.name = "new".into());
        let decision = given.when(&update_by(&given, "carol@acme.test", key, changes)).then_expect(carol, renamed);
        given.accept(decision);
        assert_eq!(given.state.keys.get(key).map(|k| k.name.as_str()), Some("new"));
        let reuse = given.create_by("carol@acme.test", attributes("personal", "OLD"));
        assert!(create_api_key::decide(&reuse, &given.state, now()).is_ok(), "the old name is free");
        let clash = given.create_by("carol@acme.test", attributes("personal", "NEW"));
        assert!(create_api_key::decide(&clash, &given.state, now()).is_err(), "the new name is taken");
    }

    #[test]
    fn the_create_rules_apply_to_every_change() {
        let mut given = Given::acme_and_globex();
        let key = create(&mut given, "carol@acme.test", "a");
        create(&mut given, "carol@acme.test", "b");
        let changes = KeyChanges {
            name: Some("B".into()),
            description: Some(Some("d".repeat(1001))),
            expires_at: Some("yesterday".into()),
            problems: Vec::new(),
        };
        assert_eq!(
            titles(update(&given, "carol@acme.test", key, changes)),
            ["Name has already been taken", "Description is too long (maximum is 1000 characters)", "Expires at is not a valid date-time"]
        );
        let same_name_other_case = KeyChanges { name: Some("A".into()), ..KeyChanges::default() };
        assert!(update(&given, "carol@acme.test", key, same_name_other_case).is_ok(), "a key does not clash with itself");
    }

    #[test]
    fn nothing_to_change_records_nothing_and_strangers_get_not_found() {
        let mut given = Given::acme_and_globex();
        let key = create(&mut given, "carol@acme.test", "a");
        let same = update_by(&given, "carol@acme.test", key, KeyChanges { name: Some("a".into()), ..KeyChanges::default() });
        given.when(&same).then_expect(acme_user(&given, 3, Given::login("carol@acme.test")), vec![]);
        for email in ["dave@acme.test", "hank@globex.test"] {
            assert_eq!(update(&given, email, key, KeyChanges::default()), Err(Rejection::NotFound), "{email}");
        }
    }

    #[test]
    fn a_new_expiry_reschedules_the_key() {
        let mut given = Given::acme_and_globex();
        let key = create(&mut given, "carol@acme.test", "a");
        let soon = now() + chrono::Duration::hours(1);
        let changes = KeyChanges { expires_at: Some(soon.to_rfc3339()), ..KeyChanges::default() };
        let carol = acme_user(&given, 3, Given::login("carol@acme.test"));
        let rescheduled = carols_key_updated(&given, key, "a", |e| e.expires_at = soon);
        let decision = given.when(&update_by(&given, "carol@acme.test", key, changes)).then_expect(carol, rescheduled);
        given.accept(decision);
        assert!(given.state.expiry_schedule.due_by(soon).any(|(_, id)| id == key));
    }
}
