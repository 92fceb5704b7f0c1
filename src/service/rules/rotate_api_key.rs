//! Rotating a key: a new secret under the same id (API.md "Update, revoke, rotate").
//!
//! Only the key itself may rotate: whoever holds the secret is the one who must learn the
//! next one, and nobody else can hand a key a secret they would also know. The previous
//! token keeps working for a grace period so that a fleet can switch over; a second
//! rotation ends the older token at once, so at most two secrets of a key ever work.

use chrono::{DateTime, Duration, Utc};
use keyledger_projections::event::ApiKeyRotated;
use keyledger_projections::{Event, State};
use uuid::Uuid;

use super::caller::{self, Credential};
use super::create_api_key::check_expires_at;
use super::visibility::can_see;
use super::{Decision, Problem, Rejection};

/// How long the previous token keeps working unless the request says otherwise.
pub const DEFAULT_GRACE_PERIOD_MINUTES: i64 = 30;
/// One day: longer, and a leaked token outlives the rotation meant to end it.
pub const MAX_GRACE_PERIOD_MINUTES: i64 = 1440;
/// `expires_at` of the new secret unless the request says otherwise.
pub const DEFAULT_LIFETIME_DAYS: i64 = 90;

/// The attributes of a rotate request, all optional. `problems` holds what was wrong with
/// the document's shape, reported with everything else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    pub expires_at: Option<String>,
    pub grace_period_minutes: Option<i64>,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotateApiKey {
    /// The token that authenticates the request.
    pub caller: Credential,
    pub api_key_id: Uuid,
    /// Digest of the new token, minted by the service; never the token.
    pub token_digest: blake3::Hash,
    pub rotation: Rotation,
}

pub fn decide(cmd: &RotateApiKey, state: &State, now: DateTime<Utc>) -> Result<Decision, Rejection> {
    let caller = caller::acting(state, cmd.caller, now)?;
    let org = state.directory.organization(caller.organization_id).ok_or(Rejection::Unauthenticated)?;
    let key = state.keys.get(cmd.api_key_id).ok_or(Rejection::NotFound)?;
    if key.id != caller.api_key_id {
        // Keys the caller cannot see stay unknown; the ones it can see, it still may not rotate.
        return Err(if can_see(&caller, org, key) {
            Rejection::Forbidden("Only a key can rotate itself: authenticate with the key you are rotating.".into())
        } else {
            Rejection::NotFound
        });
    }

    let mut problems = cmd.rotation.problems.clone();
    let expires_at = match &cmd.rotation.expires_at {
        None => Some(now + Duration::days(DEFAULT_LIFETIME_DAYS)),
        Some(raw) => check_expires_at(Some(raw), now, &mut problems),
    };
    let minutes = cmd.rotation.grace_period_minutes.unwrap_or(DEFAULT_GRACE_PERIOD_MINUTES);
    if !(0..=MAX_GRACE_PERIOD_MINUTES).contains(&minutes) {
        problems.push(Problem::attribute(
            "grace_period_minutes",
            format!("Grace period minutes must be between 0 and {MAX_GRACE_PERIOD_MINUTES}"),
            format!("Give a whole number of minutes from 0 (the old token stops at once) to {MAX_GRACE_PERIOD_MINUTES}."),
        ));
    }
    let (Some(expires_at), true) = (expires_at, problems.is_empty()) else {
        return Err(Rejection::Invalid(problems));
    };

    let grace_period_ends_at = (minutes > 0 && org.grace_period).then(|| now + Duration::minutes(minutes));
    let event = ApiKeyRotated {
        api_key_id: key.id,
        organization_id: key.organization_id,
        token_digest: cmd.token_digest.to_hex().to_string(),
        previous_token_digest: key.token_digest.clone(),
        grace_period_ends_at,
        retired_token_digest: key.previous_token_digest.clone(),
        expires_at,
    };
    Ok(Decision { actor: caller.actor(), events: vec![Event::ApiKeyRotated(event)] })
}

#[cfg(test)]
mod tests {
    use super::super::create_api_key::{self, NewApiKey};
    use super::super::given::{acme_user, attributes, now, Given, PLATFORM};
    use super::*;
    use keyledger_projections::event::OrganizationSettingsChanged;
    use keyledger_projections::Actor;

    /// `caller` rotates `key` to the token whose digest is `blake3("next")`.
    fn rotation(given: &Given, caller: Uuid, key: Uuid, rotation: Rotation) -> RotateApiKey {
        RotateApiKey { caller: given.credential(caller), api_key_id: key, token_digest: blake3::hash(b"next"), rotation }
    }

    fn rotate(given: &Given, caller: Uuid, key: Uuid, rotation: Rotation) -> Result<Decision, Rejection> {
        decide(&self::rotation(given, caller, key, rotation), &given.state, now())
    }

    /// Key `id` rotated to `blake3("next")` as it stands in `given`: its current token becomes
    /// the previous one, nothing retired, 90 days from now, the grace period as given.
    fn rotated(given: &Given, id: Uuid, grace_period_ends_at: Option<DateTime<Utc>>) -> Vec<Event> {
        let key = given.state.keys.get(id).unwrap_or_else(|| panic!("no key {id}"));
        vec![Event::ApiKeyRotated(ApiKeyRotated {
            api_key_id: id,
            organization_id: key.organization_id,
            token_digest: blake3::hash(b"next").to_hex().to_string(),
            previous_token_digest: key.token_digest.clone(),
            grace_period_ends_at,
            retired_token_digest: None,
            expires_at: now() + Duration::days(90),
        })]
    }

    fn by_carol(given: &Given) -> Actor {
        acme_user(given, 3, carol())
    }

    fn carol() -> Uuid {
        Given::login("carol@acme.test")
    }

    #[test]
    fn a_key_rotates_itself_with_a_thirty_minute_grace_and_ninety_days_by_default() {
        let given = Given::acme_and_globex();
        let cmd = rotation(&given, carol(), carol(), Rotation::default());
        given.when(&cmd).then_expect(by_carol(&given), rotated(&given, carol(), Some(now() + Duration::minutes(30))));
    }

    #[test]
    fn another_key_is_forbidden_when_visible_and_not_found_when_not() {
        let mut given = Given::acme_and_globex();
        let cmd = given.create_by("carol@acme.test", attributes("personal", "deploy"));
        given.accept(create_api_key::decide(&cmd, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}")));

        let by_owner = rotate(&given, carol(), cmd.api_key_id, Rotation::default());
        assert!(matches!(by_owner, Err(Rejection::Forbidden(_))), "even the key's owner: {by_owner:?}");
        let by_admin = rotate(&given, Given::login("alice@acme.test"), cmd.api_key_id, Rotation::default());
        assert!(matches!(by_admin, Err(Rejection::Forbidden(_))), "{by_admin:?}");
        for email in ["dave@acme.test", "hank@globex.test"] {
            assert_eq!(rotate(&given, Given::login(email), cmd.api_key_id, Rotation::default()), Err(Rejection::NotFound), "{email}");
        }
        assert_eq!(rotate(&given, carol(), Uuid::nil(), Rotation::default()), Err(Rejection::NotFound));
    }

    #[test]
    fn a_team_key_rotates_itself() {
        let mut given = Given::acme_and_globex();
        let cmd = given.create_by("carol@acme.test", NewApiKey { group_id: Some(PLATFORM.into()), ..attributes("team", "ci") });
        given.accept(create_api_key::decide(&cmd, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}")));

        let key = given.state.keys.get(cmd.api_key_id).unwrap_or_else(|| panic!("the team key"));
        let itself = Actor::ServiceAccount {
            organization_id: key.organization_id,
            service_account_id: cmd.service_account_id,
            api_key_id: cmd.api_key_id,
        };
        let events = rotated(&given, cmd.api_key_id, Some(now() + Duration::minutes(30)));
        given.when(&rotation(&given, cmd.api_key_id, cmd.api_key_id, Rotation::default())).then_expect(itself, events);
    }

    #[test]
    fn grace_zero_or_the_organization_setting_off_stops_the_old_token_at_once() {
        let mut given = Given::acme_and_globex();
        let zero = Rotation { grace_period_minutes: Some(0), ..Rotation::default() };
        given.when(&rotation(&given, carol(), carol(), zero)).then_expect(by_carol(&given), rotated(&given, carol(), None));

        let organization_id = given.state.keys.get(carol()).map(|k| k.organization_id).unwrap_or_default();
        given.record(
            Actor::Operator,
            vec![Event::OrganizationSettingsChanged(OrganizationSettingsChanged { organization_id, grace_period: false })],
        );
        let asked = Rotation { grace_period_minutes: Some(60), ..Rotation::default() };
        given.when(&rotation(&given, carol(), carol(), asked)).then_expect(by_carol(&given), rotated(&given, carol(), None));
    }

    #[test]
    fn a_rotation_during_a_grace_period_retires_the_older_token() {
        let mut given = Given::acme_and_globex();
        let original = given.state.keys.get(carol()).map(|k| k.token_digest.clone());
        let first = rotate(&given, carol(), carol(), Rotation::default()).unwrap_or_else(|e| panic!("{e:?}"));
        given.accept(first);

        let mut expected = rotated(&given, carol(), Some(now() + Duration::minutes(30)));
        let Event::ApiKeyRotated(second) = &mut expected[0] else { unreachable!() };
        assert_eq!(second.previous_token_digest, blake3::hash(b"next").to_hex().to_string());
        second.retired_token_digest = original;
        given.when(&rotation(&given, carol(), carol(), Rotation::default())).then_expect(by_carol(&given), expected);
    }

    #[test]
    fn bad_grace_periods_and_expiries_are_reported_together() {
        let given = Given::acme_and_globex();
        for minutes in [-1, 1441] {
            let rotation =
                Rotation { grace_period_minutes: Some(minutes), expires_at: Some("2020-01-01T00:00:00Z".into()), ..Rotation::default() };
            let Err(Rejection::Invalid(problems)) = rotate(&given, carol(), carol(), rotation) else {
                panic!("{minutes} minutes was accepted");
            };
            let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
            assert_eq!(pointers, ["/data/attributes/expires_at", "/data/attributes/grace_period_minutes"]);
        }
        let edge = Rotation { grace_period_minutes: Some(1440), ..Rotation::default() };
        given
            .when(&rotation(&given, carol(), carol(), edge))
            .then_expect(by_carol(&given), rotated(&given, carol(), Some(now() + Duration::days(1))));
    }
}
