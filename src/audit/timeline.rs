//! The audit timeline: which recorded events an auditor asked for, how to say each of them in
//! one line, and which keys stood at a given moment.
//!
//! Everything here is a pure function of verified [`RecordedEvent`]s (or of their stored
//! bytes) and of projections folded from them: reading the log, checking the chain and
//! printing belong to the CLI (`keyledger audit log`, `keyledger audit state`). Keeping the
//! decisions here lets them be unit-tested without a data directory, and keeps "what counts
//! as an event of key X" in one place for every front end that will need it.
//!
//! Nothing here ever sees a token: the log holds only `token_digest`, and no output built
//! here shows even that.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use keyledger_projections::directory::{Directory, Organization};
use keyledger_projections::event::{Actor, ApiKeyKind, Event, UserId};
use keyledger_projections::keys_view::ApiKey;
use keyledger_projections::state::Touched;
use keyledger_projections::{Permission, RecordedEvent, State};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ledger::StoredEvent;

/// Why an auditor's question could not be understood, or a stored envelope not be printed.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("{input:?} is not an RFC 3339 date-time such as 2030-01-31T12:00:00Z or 2030-01-31T13:00:00+01:00")]
    BadTime { input: String },
    #[error("unknown event type {input:?}; the event types are {}", Event::TYPES.join(", "))]
    UnknownType { input: String },
    #[error("{input:?} is not an actor; use operator, user:<id>, service_account:<uuid> or the id of an API key the actor acted through")]
    BadActor { input: String },
    #[error("{input:?} is not an API key id (a UUID such as 0b7d7c5e-8f43-4f4e-b1a9-2f5f0c9d8a22)")]
    BadKeyId { input: String },
    #[error("the stored envelope at position {position} does not read as an envelope: {source}")]
    Envelope { position: u64, source: serde_json::Error },
}

/// An RFC 3339 date-time, in any offset, as UTC. Nothing looser (no bare dates, no local
/// time): an audit bound must mean the same instant on every auditor's machine.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, TimelineError> {
    DateTime::parse_from_rfc3339(text.trim()).map(|t| t.with_timezone(&Utc)).map_err(|_| TimelineError::BadTime { input: text.to_owned() })
}

/// An event type name, case-insensitively, as its canonical spelling. Unknown names are an
/// error rather than an empty result: a typo must not look like "nothing happened".
pub fn parse_event_type(text: &str) -> Result<&'static str, TimelineError> {
    let wanted = text.trim();
    Event::TYPES
        .iter()
        .find(|name| name.eq_ignore_ascii_case(wanted))
        .copied()
        .ok_or_else(|| TimelineError::UnknownType { input: text.to_owned() })
}

/// An API key id: a UUID, or the key's stream name `api_key-<uuid>` as the log shows it.
pub fn parse_key_id(text: &str) -> Result<Uuid, TimelineError> {
    let trimmed = text.trim();
    let id = trimmed.strip_prefix("api_key-").unwrap_or(trimmed);
    Uuid::parse_str(id).map_err(|_| TimelineError::BadKeyId { input: text.to_owned() })
}

/// Who `--actor` asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorMatch {
    /// `operator`: someone at the data directory, through the CLI.
    Operator,
    /// `schedule`: keyledger itself, when a grace period ran out.
    Schedule,
    /// `user:<id>`: that user number, in any organization (users are numbered per
    /// organization, as in the directory file).
    User(UserId),
    /// `service_account:<uuid>`: a team or organization key's service account.
    ServiceAccount(Uuid),
    /// `<uuid>` or `api_key:<uuid>`: whoever acted through that API key.
    ApiKey(Uuid),
}

impl FromStr for ActorMatch {
    type Err = TimelineError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || TimelineError::BadActor { input: text.to_owned() };
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("operator") {
            return Ok(ActorMatch::Operator);
        }
        if trimmed.eq_ignore_ascii_case("schedule") {
            return Ok(ActorMatch::Schedule);
        }
        if let Some(id) = trimmed.strip_prefix("user:") {
            return id.trim().parse().map(ActorMatch::User).map_err(|_| bad());
        }
        if let Some(id) = trimmed.strip_prefix("service_account:") {
            return Uuid::parse_str(id.trim()).map(ActorMatch::ServiceAccount).map_err(|_| bad());
        }
        let key = trimmed.strip_prefix("api_key:").unwrap_or(trimmed);
        Uuid::parse_str(key.trim()).map(ActorMatch::ApiKey).map_err(|_| bad())
    }
}

impl ActorMatch {
    pub fn matches(&self, actor: &Actor) -> bool {
        match (self, actor) {
            (ActorMatch::Operator, Actor::Operator) | (ActorMatch::Schedule, Actor::Schedule) => true,
            (ActorMatch::User(id), Actor::User { user_id, .. }) => user_id == id,
            (ActorMatch::ServiceAccount(id), Actor::ServiceAccount { service_account_id, .. }) => service_account_id == id,
            (ActorMatch::ApiKey(id), Actor::User { api_key_id, .. } | Actor::ServiceAccount { api_key_id, .. }) => api_key_id == id,
            _ => false,
        }
    }
}

/// An actor in the syntax `--actor` accepts, so that a table cell can be pasted back.
pub fn actor_label(actor: &Actor) -> String {
    match actor {
        Actor::Operator => "operator".to_owned(),
        Actor::Schedule => "schedule".to_owned(),
        Actor::User { user_id, .. } => format!("user:{user_id}"),
        Actor::ServiceAccount { service_account_id, .. } => format!("service_account:{service_account_id}"),
    }
}

/// What `keyledger audit log` was asked for. Every given criterion must hold; `types` is any
/// of (empty: every type).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// The events of this key's stream and of its service account's stream.
    pub key: Option<Uuid>,
    pub actor: Option<ActorMatch>,
    /// Canonical names from [`Event::TYPES`].
    pub types: Vec<&'static str>,
    /// Inclusive: events recorded at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive: events recorded before this instant, so that consecutive windows
    /// (`--since A --until B`, `--since B --until C`) never show an event twice.
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    /// A selector to run over the log in order.
    pub fn selector(self) -> Selector {
        let key_stream = self.key.map(|id| format!("api_key-{id}"));
        Selector { filter: self, key_stream, service_account_stream: None }
    }
}

/// Applies a [`Filter`] to the log, event by event, in position order.
///
/// It is stateful because a key's service account is only known from the log: the
/// `ServiceAccountCreated` (or the key's `ApiKeyCreated`) names it, and later events of the
/// service account's stream belong to the key too. So [`Selector::matches`] must see every
/// event, not only those another criterion lets through.
#[derive(Clone, Debug)]
pub struct Selector {
    filter: Filter,
    key_stream: Option<String>,
    service_account_stream: Option<String>,
}

impl Selector {
    pub fn matches(&mut self, recorded: &RecordedEvent) -> bool {
        let key = self.matches_key(recorded);
        let filter = &self.filter;
        key && filter.actor.is_none_or(|actor| actor.matches(&recorded.actor))
            && (filter.types.is_empty() || filter.types.contains(&recorded.event.type_name()))
            && filter.since.is_none_or(|since| recorded.recorded_at >= since)
            && filter.until.is_none_or(|until| recorded.recorded_at < until)
    }

    fn matches_key(&mut self, recorded: &RecordedEvent) -> bool {
        let (Some(key), Some(key_stream)) = (self.filter.key, &self.key_stream) else { return true };
        let service_account = match &recorded.event {
            Event::ApiKeyCreated(e) if e.api_key_id == key => e.service_account_id,
            Event::ServiceAccountCreated(e) if e.api_key_id == key => Some(e.service_account_id),
            _ => None,
        };
        if let Some(id) = service_account {
            self.service_account_stream = Some(format!("service_account-{id}"));
        }
        recorded.stream == *key_stream || self.service_account_stream.as_deref() == Some(recorded.stream.as_str())
    }
}

/// UTC to the second, the resolution a person reads; `jsonl` keeps the recorded microseconds.
pub fn utc_seconds(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn organization_name(directory: &Directory, id: Uuid) -> String {
    directory.organization(id).map_or_else(|| format!("organization {id}"), |o| o.name.clone())
}

fn user_label(org: Option<&Organization>, user_id: UserId) -> String {
    match org.and_then(|o| o.users.get(&user_id)) {
        Some(user) => format!("user {user_id} <{}>", user.email),
        None => format!("user {user_id}"),
    }
}

fn team_label(org: Option<&Organization>, team_id: Uuid) -> String {
    match org.and_then(|o| o.teams.get(&team_id)) {
        Some(team) => format!("team {}", team.name),
        None => format!("team {team_id}"),
    }
}

fn role_label(org: Option<&Organization>, role_id: Uuid) -> String {
    org.and_then(|o| o.role_slug(role_id)).map_or_else(|| role_id.to_string(), str::to_owned)
}

fn on_call_label(org: Option<&Organization>, on_call_role_id: Option<Uuid>) -> String {
    match on_call_role_id {
        None => "none".to_owned(),
        Some(id) => org.and_then(|o| o.on_call_roles.get(&id)).map_or_else(|| id.to_string(), |r| r.slug.clone()),
    }
}

fn ids(ids: &[UserId]) -> String {
    if ids.is_empty() {
        return "none".to_owned();
    }
    ids.iter().map(UserId::to_string).collect::<Vec<_>>().join(", ")
}

fn permissions(permissions: &[Permission]) -> String {
    if permissions.is_empty() {
        return "none".to_owned();
    }
    let names: Vec<&str> = permissions
        .iter()
        .map(|p| match p {
            Permission::Create => "create",
            Permission::Read => "read",
            Permission::Update => "update",
            Permission::Delete => "delete",
        })
        .collect();
    names.join(", ")
}

/// One line saying what an event did, for a person reading a terminal: names instead of
/// ids where `directory` (the directory as it stood *before* this event) knows them.
/// User-chosen names are quoted with escapes, so that a name cannot pass for other text.
pub fn summary(event: &Event, directory: &Directory) -> String {
    let org = directory.organization(event.organization_id());
    let org_name = organization_name(directory, event.organization_id());
    let on_off = |on: bool| if on { "on" } else { "off" };
    match event {
        Event::OrganizationCreated(e) => {
            format!("organization {:?} created, grace period {}", e.name, on_off(e.grace_period))
        }
        Event::OrganizationSettingsChanged(e) => format!("{org_name}: grace period {}", on_off(e.grace_period)),
        Event::RoleDefined(e) => {
            let verb = if org.is_some_and(|o| o.roles.contains_key(&e.role_id)) { "redefined" } else { "defined" };
            format!("role {:?} ({:?}) {verb} in {org_name}, api key permissions: {}", e.slug, e.name, permissions(&e.api_keys_permissions))
        }
        Event::OnCallRoleDefined(e) => {
            let verb = if org.is_some_and(|o| o.on_call_roles.contains_key(&e.on_call_role_id)) { "redefined" } else { "defined" };
            format!("on-call role {:?} ({:?}) {verb} in {org_name}", e.slug, e.name)
        }
        Event::UserJoined(e) => format!(
            "user {} <{}> joined {org_name} as {}, on-call role {}",
            e.user_id,
            e.email,
            role_label(org, e.role_id),
            on_call_label(org, e.on_call_role_id)
        ),
        Event::UserChanged(e) => {
            let mut changes = Vec::new();
            let before = org.and_then(|o| o.users.get(&e.user_id));
            if before.is_none_or(|b| b.email != e.email) {
                changes.push(format!("email {}", e.email));
            }
            if before.is_none_or(|b| b.role_id != e.role_id) {
                let was = before.map(|b| format!(" (was {})", role_label(org, b.role_id))).unwrap_or_default();
                changes.push(format!("role {}{was}", role_label(org, e.role_id)));
            }
            if before.is_none_or(|b| b.on_call_role_id != e.on_call_role_id) {
                let was = before.map(|b| format!(" (was {})", on_call_label(org, b.on_call_role_id))).unwrap_or_default();
                changes.push(format!("on-call role {}{was}", on_call_label(org, e.on_call_role_id)));
            }
            if changes.is_empty() {
                changes.push("unchanged".to_owned());
            }
            format!("{} in {org_name}: {}", user_label(org, e.user_id), changes.join(", "))
        }
        Event::UserRemoved(e) => format!("{} removed from {org_name}", user_label(org, e.user_id)),
        Event::TeamCreated(e) => format!("team {:?} ({:?}) created in {org_name}", e.slug, e.name),
        Event::TeamMembershipChanged(e) => {
            format!("{} in {org_name}: members {}; admins {}", team_label(org, e.team_id), ids(&e.user_ids), ids(&e.admin_ids))
        }
        Event::TeamDeleted(e) => format!("{} deleted from {org_name}", team_label(org, e.team_id)),
        Event::ApiKeyCreated(e) => {
            let scope = match (e.kind, e.user_id, e.group_id) {
                (ApiKeyKind::Personal, Some(user), _) => format!(" for {}", user_label(org, user)),
                (ApiKeyKind::Team, _, Some(team)) => format!(" for {}", team_label(org, team)),
                _ => String::new(),
            };
            let role = e.role_id.map(|r| format!(", role {}", role_label(org, r))).unwrap_or_default();
            let on_call = e.on_call_role_id.map(|r| format!(", on-call role {}", on_call_label(org, Some(r)))).unwrap_or_default();
            format!("{} key {:?}{scope} in {org_name}{role}{on_call}, expires {}", e.kind.as_str(), e.name, utc_seconds(e.expires_at))
        }
        Event::ServiceAccountCreated(e) => {
            let team = e.group_id.map(|t| format!(" for {}", team_label(org, t))).unwrap_or_default();
            format!("service account of {} key {}{team} in {org_name}", e.kind.as_str(), e.api_key_id)
        }
        Event::ApiKeyRevoked(e) => {
            let reason = match e.reason {
                keyledger_projections::event::RevocationReason::Requested => "on request",
                keyledger_projections::event::RevocationReason::UserRemoved => "as its user left the directory",
                keyledger_projections::event::RevocationReason::TeamDeleted => "as its team was deleted",
            };
            format!("{} key {:?} revoked {reason} in {org_name}", e.kind.as_str(), e.name)
        }
        Event::ServiceAccountDeleted(e) => format!("service account of key {} deleted in {org_name}", e.api_key_id),
        Event::ApiKeyUpdated(e) => format!(
            "{} key {:?} updated in {org_name}: name {:?}, expires {}",
            e.kind.as_str(),
            e.previous_name,
            e.name,
            utc_seconds(e.expires_at)
        ),
        Event::ApiKeyRotated(e) => {
            let grace = match e.grace_period_ends_at {
                Some(ends) => format!("previous token valid until {}", utc_seconds(ends)),
                None => "previous token stopped at once".to_owned(),
            };
            let retired = if e.retired_token_digest.is_some() { "; an older token in its grace period stopped" } else { "" };
            format!("key {} rotated in {org_name}: {grace}{retired}; expires {}", e.api_key_id, utc_seconds(e.expires_at))
        }
        Event::ApiKeyGracePeriodEnded(e) => format!(
            "key {}: previous token stopped in {org_name}, its grace period ended {}",
            e.api_key_id,
            utc_seconds(e.grace_period_ended_at)
        ),
    }
}

/// One `jsonl` line of `keyledger audit log`: the envelope as it was recorded, minus the
/// chain's `prev_hash`. Read from the stored bytes rather than re-encoded from the decoded
/// event, so that an auditor sees the payload and `schema_version` that were written, even
/// once an upcaster reads an old payload as a newer shape.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub position: u64,
    pub stream: String,
    pub stream_version: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    /// Kept as the text that was recorded.
    pub recorded_at: String,
    pub actor: Actor,
    pub request_id: String,
    pub payload: serde_json::Value,
}

impl LogLine {
    /// Reads the line out of a stored event (whose chain the caller has checked).
    pub fn from_stored(stored: &StoredEvent) -> Result<LogLine, TimelineError> {
        serde_json::from_slice(&stored.canonical).map_err(|source| TimelineError::Envelope { position: stored.position, source })
    }
}

/// A key's status at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Working, with the secret it was created with.
    Active,
    /// Working, with a secret from a rotation.
    Rotated,
    Expired,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Rotated => "rotated",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }
}

/// The status of `key`, as folded from events recorded up to `at`, at the instant `at`.
/// Arms are checked in order, so the first that holds wins: revocation above expiry (a
/// revoked key that has since expired was still revoked), expiry above rotation (a rotated
/// key that expired no longer works).
pub fn status_at(key: &ApiKey, revoked: bool, at: DateTime<Utc>) -> KeyStatus {
    match key {
        _ if revoked => KeyStatus::Revoked,
        // `expires_at` is the first instant the key no longer works.
        ApiKey { expires_at, .. } if *expires_at <= at => KeyStatus::Expired,
        ApiKey { rotated_at: Some(_), .. } => KeyStatus::Rotated,
        _ => KeyStatus::Active,
    }
}

/// A key as it stood at a moment: one row of `keyledger audit state`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyAt {
    pub id: Uuid,
    pub organization_id: Uuid,
    /// The organization's name at that moment.
    pub organization: String,
    pub kind: ApiKeyKind,
    pub name: String,
    /// The owner of a personal key (team and organization keys have none).
    pub owner_user_id: Option<UserId>,
    /// The owner's email at that moment, if the user was still in the directory.
    pub owner_email: Option<String>,
    pub team_id: Option<Uuid>,
    /// The team's name at that moment, if it still existed.
    pub team: Option<String>,
    /// Who created the key, in `--actor` syntax.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: KeyStatus,
}

impl KeyAt {
    /// The owner (personal key) or team (team key) in words, for a table cell.
    pub fn owner_label(&self) -> String {
        match (self.kind, self.owner_user_id, self.team_id) {
            (ApiKeyKind::Personal, Some(user), _) => match &self.owner_email {
                Some(email) => format!("user {user} <{email}>"),
                None => format!("user {user}"),
            },
            (ApiKeyKind::Team, _, Some(team)) => match &self.team {
                Some(name) => format!("team {name}"),
                None => format!("team {team}"),
            },
            (ApiKeyKind::Organization, _, _) => "whole organization".to_owned(),
            _ => "-".to_owned(),
        }
    }
}

/// The state as it stood at `at`: the fold of every event recorded at or before `at`.
///
/// Events are offered in log order and those recorded later are skipped rather than ending
/// the fold, so the answer follows the recorded times even if a clock once stepped back.
#[derive(Clone, Debug)]
pub struct StateAt {
    at: DateTime<Utc>,
    state: State,
    touched: Touched,
    /// Keys revoked by the moment, as they were just before: the keys view forgets them.
    revoked: Vec<ApiKey>,
}

impl StateAt {
    pub fn new(at: DateTime<Utc>) -> Self {
        StateAt { at, state: State::default(), touched: Touched::new(), revoked: Vec::new() }
    }

    /// Folds `event` in if it was recorded at or before the moment.
    pub fn offer(&mut self, event: &RecordedEvent) {
        if event.recorded_at <= self.at {
            if let Event::ApiKeyRevoked(e) = &event.event {
                self.revoked.extend(self.state.keys.get(e.api_key_id).cloned());
            }
            self.state.apply(event, &mut self.touched);
            self.touched.clear();
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Every key that existed at the moment, sorted by organization name, then creation
    /// time (then id, so that the order is the same on every run).
    pub fn keys(&self) -> Vec<KeyAt> {
        let directory = &self.state.directory;
        let live = self.state.keys.iter().map(|key| (key, false));
        let revoked = self.revoked.iter().map(|key| (key, true));
        let mut keys: Vec<KeyAt> = live
            .chain(revoked)
            .map(|(key, revoked)| {
                let org = directory.organization(key.organization_id);
                let personal = key.kind == ApiKeyKind::Personal;
                let owner_user_id = key.user_id.filter(|_| personal);
                let team_id = key.group_id.filter(|_| key.kind == ApiKeyKind::Team);
                KeyAt {
                    id: key.id,
                    organization_id: key.organization_id,
                    organization: organization_name(directory, key.organization_id),
                    kind: key.kind,
                    name: key.name.clone(),
                    owner_user_id,
                    owner_email: owner_user_id.and_then(|u| org.and_then(|o| o.users.get(&u)).map(|u| u.email.clone())),
                    team_id,
                    team: team_id.and_then(|t| org.and_then(|o| o.teams.get(&t)).map(|t| t.name.clone())),
                    created_by: actor_label(&key.created_by),
                    created_at: key.created_at,
                    expires_at: key.expires_at,
                    status: status_at(key, revoked, self.at),
                }
            })
            .collect();
        keys.sort_by(|a, b| (&a.organization, a.created_at, a.id).cmp(&(&b.organization, b.created_at, b.id)));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::{seal, ChainHead};
    use keyledger_projections::event::{
        ApiKeyCreated, ApiKeyGracePeriodEnded, ApiKeyRevoked, ApiKeyRotated, ApiKeyUpdated, OnCallRoleDefined, OrganizationCreated,
        OrganizationSettingsChanged, RevocationReason, RoleDefined, ServiceAccountCreated, ServiceAccountDeleted, TeamCreated, TeamDeleted,
        TeamMembershipChanged, UserChanged, UserJoined, UserRemoved,
    };
    use keyledger_projections::Projection;

    const ORG: Uuid = Uuid::from_u128(0xA);
    const ROLE: Uuid = Uuid::from_u128(0xB);
    const ADMIN: Uuid = Uuid::from_u128(0xBB);
    const ON_CALL: Uuid = Uuid::from_u128(0xC);
    const TEAM: Uuid = Uuid::from_u128(0xD);
    const PERSONAL_KEY: Uuid = Uuid::from_u128(0xE1);
    const TEAM_KEY: Uuid = Uuid::from_u128(0xE2);
    const SERVICE_ACCOUNT: Uuid = Uuid::from_u128(0xF);

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    fn carol_via(key: Uuid) -> Actor {
        Actor::User { organization_id: ORG, user_id: 3, api_key_id: key }
    }

    fn key_created(id: Uuid, kind: ApiKeyKind, name: &str, expires: i64) -> Event {
        Event::ApiKeyCreated(ApiKeyCreated {
            api_key_id: id,
            organization_id: ORG,
            kind,
            name: name.into(),
            description: None,
            user_id: Some(3),
            group_id: (kind == ApiKeyKind::Team).then_some(TEAM),
            role_id: (kind != ApiKeyKind::Personal).then_some(ADMIN),
            on_call_role_id: None,
            service_account_id: (kind != ApiKeyKind::Personal).then_some(SERVICE_ACCOUNT),
            token_digest: "d".repeat(64),
            expires_at: at(expires),
        })
    }

    /// One event of every type, each recorded a second after the last, as a small
    /// organization's history: directory, carol's personal key (by the operator), a team key
    /// carol creates through it, then changes and removals.
    fn history() -> Vec<RecordedEvent> {
        record(history_events())
    }

    /// [`history`] followed by an update and a rotation of the team key, the end of the
    /// rotation's grace period, and the key's revocation.
    fn history_with_revocation() -> Vec<RecordedEvent> {
        let mut events = history_events();
        events.push((
            Actor::Operator,
            Event::ApiKeyUpdated(ApiKeyUpdated {
                api_key_id: TEAM_KEY,
                organization_id: ORG,
                kind: ApiKeyKind::Team,
                user_id: Some(3),
                group_id: Some(TEAM),
                previous_name: "ci".into(),
                name: "ci-2".into(),
                description: None,
                expires_at: at(100),
            }),
        ));
        events.push((
            Actor::Operator,
            Event::ApiKeyRotated(ApiKeyRotated {
                api_key_id: TEAM_KEY,
                organization_id: ORG,
                token_digest: "e".repeat(64),
                previous_token_digest: "d".repeat(64),
                grace_period_ends_at: Some(at(50)),
                retired_token_digest: None,
                expires_at: at(100),
            }),
        ));
        events.push((
            Actor::Schedule,
            Event::ApiKeyGracePeriodEnded(ApiKeyGracePeriodEnded {
                api_key_id: TEAM_KEY,
                organization_id: ORG,
                token_digest: "d".repeat(64),
                grace_period_ended_at: at(50),
            }),
        ));
        events.push((
            Actor::Operator,
            Event::ApiKeyRevoked(ApiKeyRevoked {
                api_key_id: TEAM_KEY,
                organization_id: ORG,
                kind: ApiKeyKind::Team,
                name: "ci".into(),
                user_id: Some(3),
                group_id: Some(TEAM),
                token_digest: "e".repeat(64),
                reason: RevocationReason::Requested,
            }),
        ));
        events.push((
            Actor::Operator,
            Event::ServiceAccountDeleted(ServiceAccountDeleted {
                service_account_id: SERVICE_ACCOUNT,
                organization_id: ORG,
                api_key_id: TEAM_KEY,
            }),
        ));
        record(events)
    }

    fn history_events() -> Vec<(Actor, Event)> {
        vec![
            (
                Actor::Operator,
                Event::OrganizationCreated(OrganizationCreated { organization_id: ORG, name: "Acme".into(), grace_period: true }),
            ),
            (
                Actor::Operator,
                Event::RoleDefined(RoleDefined {
                    organization_id: ORG,
                    role_id: ROLE,
                    slug: "user".into(),
                    name: "User".into(),
                    api_keys_permissions: vec![Permission::Create, Permission::Read],
                }),
            ),
            (
                Actor::Operator,
                Event::RoleDefined(RoleDefined {
                    organization_id: ORG,
                    role_id: ADMIN,
                    slug: "admin".into(),
                    name: "Admin".into(),
                    api_keys_permissions: vec![],
                }),
            ),
            (
                Actor::Operator,
                Event::OnCallRoleDefined(OnCallRoleDefined {
                    organization_id: ORG,
                    on_call_role_id: ON_CALL,
                    slug: "responder".into(),
                    name: "Responder".into(),
                }),
            ),
            (
                Actor::Operator,
                Event::UserJoined(UserJoined {
                    organization_id: ORG,
                    user_id: 3,
                    email: "carol@acme.test".into(),
                    role_id: ROLE,
                    on_call_role_id: Some(ON_CALL),
                }),
            ),
            (
                Actor::Operator,
                Event::TeamCreated(TeamCreated { organization_id: ORG, team_id: TEAM, slug: "platform".into(), name: "Platform".into() }),
            ),
            (
                Actor::Operator,
                Event::TeamMembershipChanged(TeamMembershipChanged {
                    organization_id: ORG,
                    team_id: TEAM,
                    user_ids: vec![3, 4],
                    admin_ids: vec![3],
                }),
            ),
            (Actor::Operator, key_created(PERSONAL_KEY, ApiKeyKind::Personal, "deploy bot", 1000)),
            (carol_via(PERSONAL_KEY), key_created(TEAM_KEY, ApiKeyKind::Team, "ci", 100)),
            (
                carol_via(PERSONAL_KEY),
                Event::ServiceAccountCreated(ServiceAccountCreated {
                    service_account_id: SERVICE_ACCOUNT,
                    organization_id: ORG,
                    api_key_id: TEAM_KEY,
                    kind: ApiKeyKind::Team,
                    group_id: Some(TEAM),
                    role_id: Some(ADMIN),
                    on_call_role_id: None,
                }),
            ),
            (
                Actor::Operator,
                Event::OrganizationSettingsChanged(OrganizationSettingsChanged { organization_id: ORG, grace_period: false }),
            ),
            (
                Actor::Operator,
                Event::UserChanged(UserChanged {
                    organization_id: ORG,
                    user_id: 3,
                    email: "carol@acme.test".into(),
                    role_id: ADMIN,
                    on_call_role_id: Some(ON_CALL),
                }),
            ),
            (Actor::Operator, Event::UserRemoved(UserRemoved { organization_id: ORG, user_id: 3 })),
            (Actor::Operator, Event::TeamDeleted(TeamDeleted { organization_id: ORG, team_id: TEAM })),
        ]
    }

    fn record(events: Vec<(Actor, Event)>) -> Vec<RecordedEvent> {
        events
            .into_iter()
            .zip(1u64..)
            .map(|((actor, event), position)| RecordedEvent {
                position,
                stream: event.stream(),
                stream_version: 1,
                recorded_at: at(position as i64),
                actor,
                request_id: format!("req-{position}"),
                client_request_id: None,
                event,
            })
            .collect()
    }

    fn selected(filter: Filter) -> Vec<u64> {
        let mut selector = filter.selector();
        history().into_iter().filter(|e| selector.matches(e)).map(|e| e.position).collect()
    }

    #[test]
    fn a_revoked_key_stays_listed_as_revoked() {
        let mut state = StateAt::new(at(100));
        for event in history_with_revocation() {
            state.offer(&event);
        }
        let team_key = state.keys().into_iter().find(|k| k.id == TEAM_KEY).map(|k| k.status);
        assert_eq!(team_key, Some(KeyStatus::Revoked));
    }

    #[test]
    fn every_type_is_listed_under_its_own_name_and_known_to_the_decoder() {
        let events = history_with_revocation();
        let mut seen: Vec<&str> = events.iter().map(|e| e.event.type_name()).collect();
        assert!(seen.iter().all(|name| Event::TYPES.contains(name)), "{seen:?}");
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), Event::TYPES.len(), "the history has one event of every type");
        for name in Event::TYPES {
            let decoded = Event::decode(name, 1, serde_json::json!({}));
            assert!(!matches!(decoded, Err(keyledger_projections::event::DecodeError::UnknownType { .. })), "{name} is not an event type");
        }
    }

    #[test]
    fn no_filter_selects_everything() {
        assert_eq!(selected(Filter::default()), (1..=14).collect::<Vec<_>>());
    }

    #[test]
    fn a_key_selects_its_stream_and_its_service_accounts() {
        assert_eq!(selected(Filter { key: Some(TEAM_KEY), ..Filter::default() }), [9, 10]);
        assert_eq!(selected(Filter { key: Some(PERSONAL_KEY), ..Filter::default() }), [8]);
        assert_eq!(selected(Filter { key: Some(Uuid::from_u128(0x99)), ..Filter::default() }), Vec::<u64>::new());
    }

    #[test]
    fn a_later_event_of_the_service_accounts_stream_belongs_to_the_key() {
        let mut events = history();
        let mut later = events[9].clone();
        later.position = 15;
        // Any later event of the service account's stream, which does not name the key itself.
        later.event = Event::TeamDeleted(TeamDeleted { organization_id: ORG, team_id: TEAM });
        events.push(later);
        let mut selector = Filter { key: Some(TEAM_KEY), ..Filter::default() }.selector();
        let positions: Vec<u64> = events.iter().filter(|e| selector.matches(e)).map(|e| e.position).collect();
        assert_eq!(positions, [9, 10, 15]);
    }

    #[test]
    fn the_key_criterion_learns_the_service_account_even_when_other_criteria_reject_its_event() {
        let filter = Filter { key: Some(TEAM_KEY), types: vec!["ApiKeyCreated"], ..Filter::default() };
        assert_eq!(selected(filter), [9]);
        let mut events = history();
        let mut later = events[9].clone();
        later.position = 15;
        later.recorded_at = at(100);
        later.event = Event::TeamDeleted(TeamDeleted { organization_id: ORG, team_id: TEAM });
        events.push(later);
        let mut selector = Filter { key: Some(TEAM_KEY), since: Some(at(50)), ..Filter::default() }.selector();
        let positions: Vec<u64> = events.iter().filter(|e| selector.matches(e)).map(|e| e.position).collect();
        assert_eq!(positions, [15]);
    }

    #[test]
    fn actors_match_by_kind_user_number_and_the_key_acted_through() {
        let operator: Vec<u64> = (1..=8).chain(11..=14).collect();
        assert_eq!(selected(Filter { actor: Some(ActorMatch::Operator), ..Filter::default() }), operator);
        assert_eq!(selected(Filter { actor: Some(ActorMatch::User(3)), ..Filter::default() }), [9, 10]);
        assert_eq!(selected(Filter { actor: Some(ActorMatch::User(4)), ..Filter::default() }), Vec::<u64>::new());
        assert_eq!(selected(Filter { actor: Some(ActorMatch::ApiKey(PERSONAL_KEY)), ..Filter::default() }), [9, 10]);
        assert_eq!(selected(Filter { actor: Some(ActorMatch::ApiKey(TEAM_KEY)), ..Filter::default() }), Vec::<u64>::new());
        let service_account = Actor::ServiceAccount { organization_id: ORG, service_account_id: SERVICE_ACCOUNT, api_key_id: TEAM_KEY };
        assert!(ActorMatch::ServiceAccount(SERVICE_ACCOUNT).matches(&service_account));
        assert!(ActorMatch::ApiKey(TEAM_KEY).matches(&service_account));
        assert!(!ActorMatch::User(3).matches(&service_account));
        assert!(!ActorMatch::Operator.matches(&service_account));
    }

    #[test]
    fn actors_parse_in_every_documented_form_and_nothing_else() {
        assert_eq!("operator".parse::<ActorMatch>().ok(), Some(ActorMatch::Operator));
        assert_eq!("Operator".parse::<ActorMatch>().ok(), Some(ActorMatch::Operator));
        assert_eq!("user:3".parse::<ActorMatch>().ok(), Some(ActorMatch::User(3)));
        assert_eq!(
            format!("service_account:{SERVICE_ACCOUNT}").parse::<ActorMatch>().ok(),
            Some(ActorMatch::ServiceAccount(SERVICE_ACCOUNT))
        );
        assert_eq!(TEAM_KEY.to_string().parse::<ActorMatch>().ok(), Some(ActorMatch::ApiKey(TEAM_KEY)));
        assert_eq!(format!("api_key:{TEAM_KEY}").parse::<ActorMatch>().ok(), Some(ActorMatch::ApiKey(TEAM_KEY)));
        for bad in ["", "user", "user:", "user:carol", "user:-1", "service_account:3", "alice@acme.test", "operators"] {
            assert!(matches!(bad.parse::<ActorMatch>(), Err(TimelineError::BadActor { .. })), "{bad:?} parsed");
        }
    }

    #[test]
    fn actor_labels_parse_back_to_a_match_for_the_same_actor() {
        for event in history() {
            let label = actor_label(&event.actor);
            let parsed: ActorMatch = label.parse().unwrap_or(ActorMatch::ApiKey(Uuid::nil()));
            assert!(parsed.matches(&event.actor), "{label}");
        }
    }

    #[test]
    fn types_match_case_insensitively_and_any_of_several() {
        assert_eq!(parse_event_type("apikeycreated").ok(), Some("ApiKeyCreated"));
        assert_eq!(parse_event_type(" TEAMDELETED ").ok(), Some("TeamDeleted"));
        let err = parse_event_type("ApiKeyCreate").map(str::to_owned).unwrap_err();
        assert!(err.to_string().contains("ServiceAccountCreated"), "the error lists the known types: {err}");
        let types = vec!["ApiKeyCreated", "TeamDeleted"];
        assert_eq!(selected(Filter { types, ..Filter::default() }), [8, 9, 14]);
    }

    #[test]
    fn since_is_inclusive_and_until_exclusive() {
        assert_eq!(selected(Filter { since: Some(at(12)), ..Filter::default() }), [12, 13, 14]);
        assert_eq!(selected(Filter { until: Some(at(3)), ..Filter::default() }), [1, 2]);
        assert_eq!(selected(Filter { since: Some(at(3)), until: Some(at(5)), ..Filter::default() }), [3, 4]);
        assert_eq!(selected(Filter { since: Some(at(5)), until: Some(at(5)), ..Filter::default() }), Vec::<u64>::new());
    }

    #[test]
    fn criteria_combine_with_and() {
        let filter = Filter { actor: Some(ActorMatch::User(3)), types: vec!["ServiceAccountCreated"], ..Filter::default() };
        assert_eq!(selected(filter), [10]);
        let filter = Filter { key: Some(TEAM_KEY), actor: Some(ActorMatch::Operator), ..Filter::default() };
        assert_eq!(selected(filter), Vec::<u64>::new());
    }

    #[test]
    fn times_are_rfc_3339_in_any_offset_and_nothing_looser() {
        assert_eq!(parse_time("2027-01-15T10:00:00Z").ok().map(|t| t.timestamp()), Some(1_800_007_200));
        assert_eq!(parse_time("2027-01-15T11:00:00+01:00").ok().map(|t| t.timestamp()), Some(1_800_007_200));
        assert_eq!(parse_time("2027-01-15T10:00:00.000001Z").ok().map(|t| t.timestamp_subsec_micros()), Some(1));
        for bad in ["", "2027-01-15", "2027-01-15 10:00:00", "yesterday", "1800007200"] {
            assert!(matches!(parse_time(bad), Err(TimelineError::BadTime { .. })), "{bad:?} parsed");
        }
    }

    #[test]
    fn key_ids_are_uuids_or_their_stream_names() {
        assert_eq!(parse_key_id(&TEAM_KEY.to_string()).ok(), Some(TEAM_KEY));
        assert_eq!(parse_key_id(&format!("api_key-{TEAM_KEY}")).ok(), Some(TEAM_KEY));
        assert!(parse_key_id("ci").is_err());
    }

    /// The summaries of the whole history, each against the directory before its event.
    fn summaries() -> Vec<String> {
        let mut directory = Directory::default();
        let mut touched = Vec::new();
        history_with_revocation()
            .iter()
            .map(|e| {
                let line = summary(&e.event, &directory);
                directory.apply(e, &mut touched);
                line
            })
            .collect()
    }

    #[test]
    fn summaries_name_what_happened_with_the_names_known_before_it() {
        let lines = summaries();
        let expected = [
            r#"organization "Acme" created, grace period on"#,
            r#"role "user" ("User") defined in Acme, api key permissions: create, read"#,
            r#"role "admin" ("Admin") defined in Acme, api key permissions: none"#,
            r#"on-call role "responder" ("Responder") defined in Acme"#,
            "user 3 <carol@acme.test> joined Acme as user, on-call role responder",
            r#"team "platform" ("Platform") created in Acme"#,
            "team Platform in Acme: members 3, 4; admins 3",
            r#"personal key "deploy bot" for user 3 <carol@acme.test> in Acme, expires 2027-01-15T08:16:40Z"#,
            r#"team key "ci" for team Platform in Acme, role admin, expires 2027-01-15T08:01:40Z"#,
            "service account of team key 00000000-0000-0000-0000-0000000000e2 for team Platform in Acme",
            "Acme: grace period off",
            "user 3 <carol@acme.test> in Acme: role admin (was user)",
            "user 3 <carol@acme.test> removed from Acme",
            "team Platform deleted from Acme",
            r#"team key "ci" updated in Acme: name "ci-2", expires 2027-01-15T08:01:40Z"#,
            "key 00000000-0000-0000-0000-0000000000e2 rotated in Acme: previous token valid until 2027-01-15T08:00:50Z; expires 2027-01-15T08:01:40Z",
            "key 00000000-0000-0000-0000-0000000000e2: previous token stopped in Acme, its grace period ended 2027-01-15T08:00:50Z",
            r#"team key "ci" revoked on request in Acme"#,
            "service account of key 00000000-0000-0000-0000-0000000000e2 deleted in Acme",
        ];
        assert_eq!(lines, expected);
    }

    #[test]
    fn summaries_fall_back_to_ids_and_escape_names() {
        let event = key_created(PERSONAL_KEY, ApiKeyKind::Organization, "evil\n\u{1b}[2Jname", 0);
        let line = summary(&event, &Directory::default());
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("organization 00000000-0000-0000-0000-00000000000a"), "{line}");
        assert!(line.contains(&format!("role {ADMIN}")), "{line}");
    }

    #[test]
    fn no_summary_shows_the_token_digest() {
        for line in summaries() {
            assert!(!line.contains(&"d".repeat(16)), "{line}");
        }
    }

    #[test]
    fn a_log_line_is_the_recorded_envelope_without_prev_hash() {
        let events = history();
        let mut head = ChainHead::genesis();
        for event in &events {
            let stored = seal(event, head).unwrap();
            head = ChainHead { position: stored.position, hash: stored.hash };
            let line = LogLine::from_stored(&stored).map_err(|e| e.to_string());
            let Ok(line) = line else { panic!("{line:?}") };
            let recorded: serde_json::Value = serde_json::from_slice(&stored.canonical).unwrap_or_default();
            assert_eq!(line.position, event.position);
            assert_eq!(line.event_type, event.event.type_name());
            assert_eq!(line.payload, recorded["payload"]);
            assert_eq!(line.recorded_at, recorded["recorded_at"]);
            assert_eq!(line.actor, event.actor);
            let printed = serde_json::to_value(&line).unwrap_or_default();
            let mut expected = recorded.clone();
            if let Some(map) = expected.as_object_mut() {
                map.remove("prev_hash");
            }
            assert_eq!(printed, expected, "every recorded field but prev_hash, unchanged");
        }
        let broken = StoredEvent { position: 7, hash: head.hash, canonical: b"{".to_vec() };
        assert!(matches!(LogLine::from_stored(&broken), Err(TimelineError::Envelope { position: 7, .. })));
    }

    fn state_at(seconds: i64) -> StateAt {
        let mut state = StateAt::new(at(seconds));
        for event in history() {
            state.offer(&event);
        }
        state
    }

    #[test]
    fn the_state_at_a_moment_holds_only_keys_created_by_then() {
        assert!(state_at(7).keys().is_empty());
        let keys = state_at(8).keys();
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [PERSONAL_KEY], "creation time is inclusive");
        assert_eq!(state_at(8).state().position, 8);
        let keys = state_at(10).keys();
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [PERSONAL_KEY, TEAM_KEY], "ordered by creation");
    }

    #[test]
    fn a_rotated_key_reads_rotated_until_it_is_revoked() {
        let events = history_with_revocation();
        let time_of = |name: &str| events.iter().find(|e| e.event.type_name() == name).map(|e| e.recorded_at).unwrap_or_default();
        let status = |moment| {
            let mut state = StateAt::new(moment);
            for event in &events {
                state.offer(event);
            }
            state.keys().iter().find(|k| k.id == TEAM_KEY).map(|k| k.status)
        };
        assert_eq!(status(time_of("ApiKeyRotated") - chrono::Duration::seconds(1)), Some(KeyStatus::Active));
        assert_eq!(status(time_of("ApiKeyRotated")), Some(KeyStatus::Rotated));
        assert_eq!(status(time_of("ApiKeyRevoked")), Some(KeyStatus::Revoked));
    }

    #[test]
    fn a_key_is_expired_from_its_expiry_instant_on() {
        let status = |seconds| state_at(seconds).keys().iter().find(|k| k.id == TEAM_KEY).map(|k| k.status);
        assert_eq!(status(99), Some(KeyStatus::Active));
        assert_eq!(status(100), Some(KeyStatus::Expired));
        assert_eq!(status(5000), Some(KeyStatus::Expired));
    }

    #[test]
    fn keys_at_a_moment_carry_their_owner_and_team_as_named_then() {
        let keys = state_at(10).keys();
        let personal = &keys[0];
        assert_eq!((personal.owner_user_id, personal.owner_email.as_deref()), (Some(3), Some("carol@acme.test")));
        assert_eq!(personal.owner_label(), "user 3 <carol@acme.test>");
        assert_eq!(personal.created_by, "operator");
        assert_eq!(personal.organization, "Acme");
        let team = &keys[1];
        assert_eq!(team.owner_user_id, None, "the creator of a team key is not its owner");
        assert_eq!(team.owner_label(), "team Platform");
        assert_eq!(team.created_by, "user:3");
        // After carol left and the team was deleted, the keys remain, without the names.
        let keys = state_at(14).keys();
        assert_eq!(keys[0].owner_label(), "user 3");
        assert_eq!(keys[1].owner_label(), format!("team {TEAM}"));
    }

    #[test]
    fn keys_sort_by_organization_name_then_creation() {
        let mut events = history();
        let other = Uuid::from_u128(0x0B);
        let mut org = events[0].clone();
        org.position = 15;
        org.event =
            Event::OrganizationCreated(OrganizationCreated { organization_id: other, name: "Aardvark".into(), grace_period: false });
        let mut key = events[7].clone();
        key.position = 16;
        key.recorded_at = at(16);
        if let Event::ApiKeyCreated(e) = &mut key.event {
            e.api_key_id = Uuid::from_u128(0xE3);
            e.organization_id = other;
        }
        events.extend([org, key]);
        let mut state = StateAt::new(at(100));
        events.iter().for_each(|e| state.offer(e));
        let order: Vec<Uuid> = state.keys().iter().map(|k| k.id).collect();
        assert_eq!(order, [Uuid::from_u128(0xE3), PERSONAL_KEY, TEAM_KEY]);
    }

    #[test]
    fn events_recorded_after_the_moment_are_skipped_even_out_of_order() {
        let mut events = history();
        events[8].recorded_at = at(500); // the team key, recorded "late"
        let mut state = StateAt::new(at(12));
        events.iter().for_each(|e| state.offer(e));
        assert_eq!(state.keys().iter().map(|k| k.id).collect::<Vec<_>>(), [PERSONAL_KEY]);
    }

    #[test]
    fn key_rows_serialize_with_lowercase_kind_and_status() {
        let keys = state_at(200).keys();
        let json = serde_json::to_value(&keys).unwrap_or_default();
        assert_eq!(json[1]["kind"], "team");
        assert_eq!(json[1]["status"], "expired");
        assert_eq!(json[0]["status"], "active");
        assert_eq!(json[0]["owner_user_id"], 3);
        assert!(!json.to_string().contains(&"d".repeat(16)), "no digest in a state row");
    }
}
