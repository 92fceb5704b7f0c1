//! The end of grace periods: the expiry schedule's own decision, taken on time whether or
//! not anyone presents the previous token.
//!
//! Authentication already refuses a previous token from the instant its grace period ends;
//! recording the end makes the ledger say so too, and drops the token from the token index.

use chrono::{DateTime, Utc};
use keyledger_projections::event::ApiKeyGracePeriodEnded;
use keyledger_projections::{Actor, Event, State};

use super::Decision;

/// The most grace periods one decision ends, so that a backlog (after downtime) is worked
/// off in bounded commits.
pub const MAX_ENDED_PER_DECISION: usize = 1000;

/// The grace periods that ran out by `now`, earliest first; no events when none did.
pub fn end_grace_periods(state: &State, now: DateTime<Utc>) -> Decision {
    let events = state
        .expiry_schedule
        .grace_periods_ended_by(now)
        .filter_map(|(ended_at, key_id)| {
            let key = state.keys.get(key_id)?;
            Some(Event::ApiKeyGracePeriodEnded(ApiKeyGracePeriodEnded {
                api_key_id: key.id,
                organization_id: key.organization_id,
                token_digest: key.previous_token_digest.clone()?,
                grace_period_ended_at: ended_at,
            }))
        })
        .take(MAX_ENDED_PER_DECISION)
        .collect();
    Decision { actor: Actor::Schedule, events }
}

#[cfg(test)]
mod tests {
    use super::super::given::{now, Given};
    use super::super::rotate_api_key::{self, RotateApiKey, Rotation};
    use super::*;
    use chrono::Duration;

    fn rotated_by(given: &mut Given, email: &str, minutes: i64) {
        let key = Given::login(email);
        let rotation = Rotation { grace_period_minutes: Some(minutes), ..Rotation::default() };
        let cmd = RotateApiKey { caller: given.credential(key), api_key_id: key, token_digest: blake3::hash(email.as_bytes()), rotation };
        given.accept(rotate_api_key::decide(&cmd, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}")));
    }

    #[test]
    fn grace_periods_end_on_time_earliest_first_and_not_before() {
        let mut given = Given::acme_and_globex();
        rotated_by(&mut given, "dave@acme.test", 10);
        rotated_by(&mut given, "carol@acme.test", 5);

        assert!(end_grace_periods(&given.state, now() + Duration::minutes(5) - Duration::microseconds(1)).events.is_empty());
        let acme = given.state.directory.organization_by_name("Acme").map(|o| o.id).unwrap_or_else(|| panic!("Acme"));
        // The token that stops working is the one each key had before its rotation: the
        // fixture's login token, whose digest is that of the email.
        let ended = |email: &str, at| {
            Event::ApiKeyGracePeriodEnded(ApiKeyGracePeriodEnded {
                api_key_id: Given::login(email),
                organization_id: acme,
                token_digest: blake3::hash(email.as_bytes()).to_hex().to_string(),
                grace_period_ended_at: at,
            })
        };
        assert_eq!(
            end_grace_periods(&given.state, now() + Duration::minutes(10)),
            Decision {
                actor: Actor::Schedule,
                events: vec![
                    ended("carol@acme.test", now() + Duration::minutes(5)),
                    ended("dave@acme.test", now() + Duration::minutes(10)),
                ],
            }
        );
    }

    #[test]
    fn an_ended_grace_period_is_not_ended_twice() {
        let mut given = Given::acme_and_globex();
        rotated_by(&mut given, "carol@acme.test", 5);
        let later = now() + Duration::hours(1);
        given.accept(end_grace_periods(&given.state, later));

        assert!(end_grace_periods(&given.state, later).events.is_empty());
        assert_eq!(given.state.keys.get(Given::login("carol@acme.test")).and_then(|k| k.previous_token_digest.clone()), None);
    }
}
