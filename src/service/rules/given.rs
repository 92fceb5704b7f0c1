//! Given-state builders for rule tests: the fixture organizations folded into a [`State`],
//! and the given → when → then of a rule: `given.when(&command).then_expect(actor, events)`
//! asserts the whole decision (who acted, and every event, in order), never a chosen part of it.

use chrono::{DateTime, Duration, TimeZone, Utc};
use keyledger_projections::event::ApiKeyCreated;
use keyledger_projections::{Actor, ApiKeyKind, Event, RecordedEvent, State};
use uuid::Uuid;

use super::caller::Credential;
use super::create_api_key::{self, CreateApiKey, NewApiKey, Requester, DEFAULT_MAX_KEYS_PER_SCOPE};
use super::directory::{plan, DirectoryFile};
use super::revoke_api_key::{self, RevokeApiKey};
use super::rotate_api_key::{self, RotateApiKey};
use super::update_api_key::{self, UpdateApiKey};
use super::{Decision, Rejection};

pub const PLATFORM: &str = "6f1c1a52-2d0e-4c39-9a57-6b1f3a0d2e11";

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).single().unwrap_or_default()
}

/// A state built by folding events, as the writer would.
pub struct Given {
    pub state: State,
    next_id: u128,
}

impl Given {
    /// Acme (fixtures/directory.example.json) and Globex, each user with a personal key
    /// whose id is [`Given::login`] of their email.
    pub fn acme_and_globex() -> Given {
        let mut given = Given { state: State::default(), next_id: 1 };
        for text in [include_str!("../../../fixtures/directory.example.json"), include_str!("../../../fixtures/directory.other-org.json")] {
            let file: DirectoryFile = serde_json::from_str(text).unwrap_or_else(|e| panic!("fixture: {e}"));
            let mut ids = || Uuid::new_v4();
            let events = plan(&file, &given.state, &mut ids).unwrap_or_else(|e| panic!("{e}"));
            given.record(Actor::Operator, events);
        }
        for org in given.state.directory.organizations().cloned().collect::<Vec<_>>() {
            for user in org.users.values() {
                let key = ApiKeyCreated {
                    api_key_id: Given::login(&user.email),
                    organization_id: org.id,
                    kind: ApiKeyKind::Personal,
                    name: "login".into(),
                    description: None,
                    user_id: Some(user.id),
                    group_id: None,
                    role_id: None,
                    on_call_role_id: None,
                    service_account_id: None,
                    token_digest: blake3::hash(user.email.as_bytes()).to_hex().to_string(),
                    expires_at: now() + Duration::days(30),
                };
                given.record(Actor::Operator, vec![Event::ApiKeyCreated(key)]);
            }
        }
        given
    }

    /// The id of the personal key the fixture gives the user with `email`.
    pub fn login(email: &str) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&blake3::hash(email.as_bytes()).as_bytes()[..16]);
        Uuid::from_bytes(bytes)
    }

    /// The credential of `key`'s current secret (a digest no key has when `key` is unknown).
    pub fn credential(&self, key: Uuid) -> Credential {
        Credential::current(&self.state, key).unwrap_or(Credential { api_key_id: key, token_digest: blake3::hash(b"no such key") })
    }

    pub fn record(&mut self, actor: Actor, events: Vec<Event>) {
        for event in events {
            let recorded = RecordedEvent {
                position: self.state.position + 1,
                stream: event.stream(),
                stream_version: 1,
                recorded_at: now() - Duration::hours(1),
                actor: actor.clone(),
                request_id: "given".into(),
                client_request_id: None,
                event,
            };
            self.state.fold([&recorded]);
        }
    }

    /// What the rule of `command` decides on this state at [`now`].
    pub fn when(&self, command: &impl Rule) -> Then {
        self.when_at(command, now())
    }

    /// What the rule of `command` decides on this state at `at`.
    pub fn when_at(&self, command: &impl Rule, at: DateTime<Utc>) -> Then {
        Then { result: command.decide(&self.state, at) }
    }

    /// Records a decision's events, as a committed batch would.
    pub fn accept(&mut self, decision: Decision) {
        self.record(decision.actor, decision.events);
    }

    /// A create command from `email`'s login key.
    pub fn create_by(&mut self, email: &str, attributes: NewApiKey) -> CreateApiKey {
        self.next_id += 1;
        CreateApiKey {
            requester: Requester::Key(self.credential(Given::login(email))),
            api_key_id: Uuid::from_u128(self.next_id),
            service_account_id: Uuid::from_u128(self.next_id << 64),
            token_digest: blake3::hash(&self.next_id.to_be_bytes()),
            attributes,
            max_keys_per_scope: DEFAULT_MAX_KEYS_PER_SCOPE,
        }
    }
}

/// Attributes of a valid key of `kind`, expiring in 30 days.
pub fn attributes(kind: &str, name: &str) -> NewApiKey {
    NewApiKey {
        name: Some(name.into()),
        kind: Some(kind.into()),
        expires_at: Some((now() + Duration::days(30)).to_rfc3339()),
        ..NewApiKey::default()
    }
}

/// A command and the rule that decides it, so that [`Given::when`] takes any of them.
pub trait Rule {
    fn decide(&self, state: &State, now: DateTime<Utc>) -> Result<Decision, Rejection>;
}

impl Rule for CreateApiKey {
    fn decide(&self, state: &State, now: DateTime<Utc>) -> Result<Decision, Rejection> {
        create_api_key::decide(self, state, now)
    }
}

impl Rule for RevokeApiKey {
    fn decide(&self, state: &State, now: DateTime<Utc>) -> Result<Decision, Rejection> {
        revoke_api_key::decide(self, state, now)
    }
}

impl Rule for RotateApiKey {
    fn decide(&self, state: &State, now: DateTime<Utc>) -> Result<Decision, Rejection> {
        rotate_api_key::decide(self, state, now)
    }
}

impl Rule for UpdateApiKey {
    fn decide(&self, state: &State, now: DateTime<Utc>) -> Result<Decision, Rejection> {
        update_api_key::decide(self, state, now)
    }
}

/// What a rule decided, to be compared whole with what the test expects.
#[must_use = "a decision is only checked by one of the then_expect methods"]
pub struct Then {
    result: Result<Decision, Rejection>,
}

impl Then {
    /// The rule decided exactly this: `actor` caused `events`, all of them, in this order.
    /// Returns the decision, to be [`Given::accept`]ed.
    pub fn then_expect(self, actor: Actor, events: Vec<Event>) -> Decision {
        let expected = Decision { actor, events };
        match self.result {
            Ok(decision) => {
                assert_eq!(decision, expected, "the decision");
                decision
            }
            Err(rejection) => panic!("expected {expected:#?}, the command was refused: {rejection:?}"),
        }
    }

    /// The rule refused the command with exactly this rejection.
    pub fn then_expect_rejection(self, expected: Rejection) {
        assert_eq!(self.result, Err(expected));
    }
}

/// The key `cmd` creates in Acme, as a personal key named `name` expiring when [`attributes`]
/// says, created by `user_id` (a personal key's owner; the creator, for team and organization
/// keys); a test changes what its command changes.
pub fn created(given: &Given, cmd: &CreateApiKey, name: &str, user_id: u64) -> ApiKeyCreated {
    ApiKeyCreated {
        api_key_id: cmd.api_key_id,
        organization_id: organization(given, "Acme"),
        kind: ApiKeyKind::Personal,
        name: name.into(),
        description: None,
        user_id: Some(user_id),
        group_id: None,
        role_id: None,
        on_call_role_id: None,
        service_account_id: None,
        token_digest: cmd.token_digest.to_hex().to_string(),
        expires_at: now() + Duration::days(30),
    }
}

/// The fixture's organization named `name` (Acme, Globex).
pub fn organization(given: &Given, name: &str) -> Uuid {
    given.state.directory.organization_by_name(name).map(|o| o.id).unwrap_or_else(|| panic!("no organization {name}"))
}

/// Actor `user_id` of Acme, acting with `key`.
pub fn acme_user(given: &Given, user_id: u64, key: Uuid) -> Actor {
    Actor::User { organization_id: organization(given, "Acme"), user_id, api_key_id: key }
}
