//! Given-events → then-state helpers shared by the projection tests.
//!
//! Events are built with small functions named after the facts they record; `given` turns a
//! list of events into a log (positions from 1, one second apart), and the `fold*` and
//! `round_trip*` helpers run a projection over it the way the ledger does.

#![allow(dead_code)]

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use keyledger_projections::event::{
    ApiKeyCreated, ApiKeyGracePeriodEnded, ApiKeyRevoked, ApiKeyRotated, OnCallRoleDefined, OrganizationCreated,
    OrganizationSettingsChanged, RevocationReason, RoleDefined, ServiceAccountCreated, TeamCreated, TeamDeleted, TeamMembershipChanged,
    UserChanged, UserId, UserJoined, UserRemoved,
};
use keyledger_projections::{Actor, ApiKeyKind, Event, Permission, Projection, RecordedEvent};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Ids and times

/// A readable, deterministic id: `id(0xa)` is `00000000-0000-0000-0000-00000000000a`.
pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub const ORG_A: u128 = 0xa0;
pub const ORG_B: u128 = 0xb0;

pub fn org_a() -> Uuid {
    id(ORG_A)
}

pub fn org_b() -> Uuid {
    id(ORG_B)
}

/// Midnight UTC of a calendar day.
pub fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

/// When the first event of a `given` log was recorded; later ones follow a second apart.
pub fn log_start() -> DateTime<Utc> {
    day(2025, 1, 1)
}

/// The hex digest the service would record for `token` (any stable 32-byte hash will do).
pub fn digest_of(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

pub fn digest_hash(token: &str) -> blake3::Hash {
    blake3::hash(token.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Recorded events

pub fn operator() -> Actor {
    Actor::Operator
}

/// Records `event` at `position`, one second after the previous position, as the first event
/// of its stream (`stream_version` 1).
pub fn recorded(position: u64, event: Event) -> RecordedEvent {
    recorded_by(position, Actor::Operator, event)
}

pub fn recorded_by(position: u64, actor: Actor, event: Event) -> RecordedEvent {
    RecordedEvent {
        position,
        stream: event.stream(),
        stream_version: 1,
        recorded_at: log_start() + chrono::Duration::seconds(position as i64 - 1),
        actor,
        request_id: format!("req-{position}"),
        client_request_id: None,
        event,
    }
}

/// The log of `events`, numbered from position 1, each stream's versions counting from 1 as
/// the writer numbers them.
pub fn given(events: impl IntoIterator<Item = Event>) -> Vec<RecordedEvent> {
    let mut versions: HashMap<String, u64> = HashMap::new();
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let mut event = recorded(i as u64 + 1, e);
            let version = versions.entry(event.stream.clone()).or_insert(0);
            *version += 1;
            event.stream_version = *version;
            event
        })
        .collect()
}

/// A fresh projection with every event folded in.
pub fn fold<P: Projection + Default>(events: impl IntoIterator<Item = Event>) -> P {
    let mut p = P::default();
    let mut touched = Vec::new();
    for e in given(events) {
        p.apply(&e, &mut touched);
    }
    p
}

/// Folds the events in and returns, per event, the row keys it reported as touched.
pub fn touched_per_event<P: Projection>(p: &mut P, events: impl IntoIterator<Item = Event>) -> Vec<Vec<String>> {
    given(events)
        .iter()
        .map(|e| {
            let mut touched = Vec::new();
            p.apply(e, &mut touched);
            touched
        })
        .collect()
}

/// The keys one event reports as touched, on top of the state `p` already has.
pub fn touched_by<P: Projection>(p: &mut P, position: u64, event: Event) -> Vec<String> {
    let mut touched = Vec::new();
    p.apply(&recorded(position, event), &mut touched);
    touched
}

/// A fresh projection loaded only from the encoded rows of `original` (every row it lists).
pub fn round_trip_all_rows<P: Projection + Default>(original: &P) -> P {
    let mut copy = P::default();
    for key in original.row_keys() {
        let value = original.encode_row(&key).unwrap_or_else(|| panic!("row {key:?} listed but not encodable"));
        copy.load_row(&key, &value).unwrap_or_else(|e| panic!("row {key:?} does not load back: {e}"));
    }
    copy
}

/// Folds the events into a projection, collecting the touched keys, then builds a fresh
/// projection only from the encodings of those touched rows. Returns (original, rebuilt).
pub fn round_trip_touched<P: Projection + Default>(events: impl IntoIterator<Item = Event>) -> (P, P) {
    let mut original = P::default();
    let mut touched = Vec::new();
    for e in given(events) {
        original.apply(&e, &mut touched);
    }
    let mut rebuilt = P::default();
    for key in &touched {
        if let Some(value) = original.encode_row(key) {
            rebuilt.load_row(key, &value).unwrap_or_else(|e| panic!("row {key:?} does not load back: {e}"));
        }
    }
    (original, rebuilt)
}

// ---------------------------------------------------------------------------------------------
// Directory events

pub fn organization_created(org: Uuid, name: &str) -> Event {
    Event::OrganizationCreated(OrganizationCreated { organization_id: org, name: name.to_owned(), grace_period: true })
}

pub fn organization_created_without_grace(org: Uuid, name: &str) -> Event {
    Event::OrganizationCreated(OrganizationCreated { organization_id: org, name: name.to_owned(), grace_period: false })
}

pub fn grace_period_set(org: Uuid, grace_period: bool) -> Event {
    Event::OrganizationSettingsChanged(OrganizationSettingsChanged { organization_id: org, grace_period })
}

pub fn role_defined(org: Uuid, role: Uuid, slug: &str, permissions: &[Permission]) -> Event {
    Event::RoleDefined(RoleDefined {
        organization_id: org,
        role_id: role,
        slug: slug.to_owned(),
        name: format!("{slug} role"),
        api_keys_permissions: permissions.to_vec(),
    })
}

pub fn on_call_role_defined(org: Uuid, on_call_role: Uuid, slug: &str) -> Event {
    Event::OnCallRoleDefined(OnCallRoleDefined {
        organization_id: org,
        on_call_role_id: on_call_role,
        slug: slug.to_owned(),
        name: format!("{slug} on-call role"),
    })
}

pub fn user_joined(org: Uuid, user: UserId, email: &str, role: Uuid, on_call_role: Option<Uuid>) -> Event {
    Event::UserJoined(UserJoined {
        organization_id: org,
        user_id: user,
        email: email.to_owned(),
        role_id: role,
        on_call_role_id: on_call_role,
    })
}

pub fn user_changed(org: Uuid, user: UserId, email: &str, role: Uuid, on_call_role: Option<Uuid>) -> Event {
    Event::UserChanged(UserChanged {
        organization_id: org,
        user_id: user,
        email: email.to_owned(),
        role_id: role,
        on_call_role_id: on_call_role,
    })
}

pub fn user_removed(org: Uuid, user: UserId) -> Event {
    Event::UserRemoved(UserRemoved { organization_id: org, user_id: user })
}

pub fn team_created(org: Uuid, team: Uuid, slug: &str) -> Event {
    Event::TeamCreated(TeamCreated { organization_id: org, team_id: team, slug: slug.to_owned(), name: format!("{slug} team") })
}

pub fn membership_changed(org: Uuid, team: Uuid, user_ids: &[UserId], admin_ids: &[UserId]) -> Event {
    Event::TeamMembershipChanged(TeamMembershipChanged {
        organization_id: org,
        team_id: team,
        user_ids: user_ids.to_vec(),
        admin_ids: admin_ids.to_vec(),
    })
}

pub fn team_deleted(org: Uuid, team: Uuid) -> Event {
    Event::TeamDeleted(TeamDeleted { organization_id: org, team_id: team })
}

// ---------------------------------------------------------------------------------------------
// Key events

/// A personal key of `user`, token `token-<key id>`, expiring on 2026-01-01.
pub fn personal_key(org: Uuid, key: Uuid, user: UserId, name: &str) -> ApiKeyCreated {
    ApiKeyCreated {
        api_key_id: key,
        organization_id: org,
        kind: ApiKeyKind::Personal,
        name: name.to_owned(),
        description: None,
        user_id: Some(user),
        group_id: None,
        role_id: None,
        on_call_role_id: None,
        service_account_id: None,
        token_digest: digest_of(&format!("token-{key}")),
        expires_at: day(2026, 1, 1),
    }
}

/// A team key of `team`, created by user 1, acting as service account `account`.
pub fn team_key(org: Uuid, key: Uuid, team: Uuid, account: Uuid, name: &str) -> ApiKeyCreated {
    ApiKeyCreated { kind: ApiKeyKind::Team, group_id: Some(team), service_account_id: Some(account), ..personal_key(org, key, 1, name) }
}

/// An organization key created by user 1, acting as service account `account`.
pub fn organization_key(org: Uuid, key: Uuid, account: Uuid, name: &str) -> ApiKeyCreated {
    ApiKeyCreated { kind: ApiKeyKind::Organization, service_account_id: Some(account), ..personal_key(org, key, 1, name) }
}

pub fn created(key: ApiKeyCreated) -> Event {
    Event::ApiKeyCreated(key)
}

/// `key` (of organization `org`) rotated from token `from` to token `to`, expiring on
/// 2027-01-01; the previous token's grace period ends at `grace` (`None`: at once), and
/// `retired` is an older token still in its grace period that this rotation ends.
pub fn rotated(org: Uuid, key: Uuid, from: &str, to: &str, grace: Option<DateTime<Utc>>, retired: Option<&str>) -> Event {
    Event::ApiKeyRotated(ApiKeyRotated {
        api_key_id: key,
        organization_id: org,
        token_digest: digest_of(to),
        previous_token_digest: digest_of(from),
        grace_period_ends_at: grace,
        retired_token_digest: retired.map(digest_of),
        expires_at: day(2027, 1, 1),
    })
}

/// The revocation, on request, of the key `key` created.
pub fn revocation_of(key: ApiKeyCreated) -> ApiKeyRevoked {
    ApiKeyRevoked {
        api_key_id: key.api_key_id,
        organization_id: key.organization_id,
        kind: key.kind,
        name: key.name,
        user_id: key.user_id,
        group_id: key.group_id,
        token_digest: key.token_digest,
        reason: RevocationReason::Requested,
    }
}

pub fn grace_period_ended(org: Uuid, key: Uuid, token: &str, at: DateTime<Utc>) -> Event {
    Event::ApiKeyGracePeriodEnded(ApiKeyGracePeriodEnded {
        api_key_id: key,
        organization_id: org,
        token_digest: digest_of(token),
        grace_period_ended_at: at,
    })
}

/// The service account of a team key.
pub fn team_account(org: Uuid, account: Uuid, key: Uuid, team: Uuid) -> ServiceAccountCreated {
    ServiceAccountCreated {
        service_account_id: account,
        organization_id: org,
        api_key_id: key,
        kind: ApiKeyKind::Team,
        group_id: Some(team),
        role_id: None,
        on_call_role_id: None,
    }
}

/// The service account of an organization key.
pub fn organization_account(org: Uuid, account: Uuid, key: Uuid, role: Uuid, on_call_role: Option<Uuid>) -> ServiceAccountCreated {
    ServiceAccountCreated {
        service_account_id: account,
        organization_id: org,
        api_key_id: key,
        kind: ApiKeyKind::Organization,
        group_id: None,
        role_id: Some(role),
        on_call_role_id: on_call_role,
    }
}

pub fn account_created(account: ServiceAccountCreated) -> Event {
    Event::ServiceAccountCreated(account)
}

// ---------------------------------------------------------------------------------------------
// A small but complete history

/// Two organizations with roles, users, teams, keys of every kind and their service accounts:
/// every event type appears at least once.
pub fn a_busy_history() -> Vec<Event> {
    let (a, b) = (org_a(), org_b());
    let (admin_a, user_a, admin_b) = (id(0x1), id(0x2), id(0x3));
    let (on_call_a, platform, ops, doomed) = (id(0x4), id(0x5), id(0x6), id(0x7));
    let all = [Permission::Create, Permission::Read, Permission::Update, Permission::Delete];
    vec![
        organization_created(a, "acme"),
        organization_created_without_grace(b, "globex"),
        role_defined(a, admin_a, "admin", &all),
        role_defined(a, user_a, "user", &all),
        role_defined(b, admin_b, "admin", &all),
        on_call_role_defined(a, on_call_a, "responder"),
        user_joined(a, 1, "ada@acme.test", admin_a, Some(on_call_a)),
        user_joined(a, 2, "bob@acme.test", user_a, None),
        user_joined(a, 3, "cy@acme.test", user_a, None),
        user_joined(b, 1, "dee@globex.test", admin_b, None),
        team_created(a, platform, "platform"),
        team_created(a, ops, "ops"),
        team_created(a, doomed, "doomed"),
        membership_changed(a, platform, &[1, 2, 3], &[1]),
        membership_changed(a, ops, &[2, 3], &[3]),
        user_changed(a, 2, "robert@acme.test", admin_a, Some(on_call_a)),
        role_defined(a, user_a, "user", &[Permission::Read]),
        user_removed(a, 3),
        team_deleted(a, doomed),
        grace_period_set(b, true),
        created(personal_key(a, id(0x100), 1, "Laptop")),
        created(personal_key(a, id(0x101), 2, "laptop")),
        created(team_key(a, id(0x102), platform, id(0x200), "Deploy bot")),
        account_created(team_account(a, id(0x200), id(0x102), platform)),
        created(organization_key(a, id(0x103), id(0x201), "Terraform")),
        account_created(organization_account(a, id(0x201), id(0x103), admin_a, Some(on_call_a))),
        created(ApiKeyCreated { expires_at: day(2025, 6, 30), ..personal_key(b, id(0x104), 1, "Laptop") }),
        created(ApiKeyCreated {
            description: Some("nightly export".to_owned()),
            expires_at: day(2025, 3, 1),
            ..organization_key(b, id(0x105), id(0x202), "Exporter")
        }),
        account_created(organization_account(b, id(0x202), id(0x105), admin_b, None)),
        rotated(a, id(0x100), &format!("token-{}", id(0x100)), "token-100-b", Some(day(2025, 1, 1)), None),
        rotated(a, id(0x100), "token-100-b", "token-100-c", Some(day(2025, 2, 1)), Some(&format!("token-{}", id(0x100)))),
        rotated(a, id(0x103), &format!("token-{}", id(0x103)), "token-103-b", Some(day(2025, 1, 1)), None),
        grace_period_ended(a, id(0x103), &format!("token-{}", id(0x103)), day(2025, 1, 1)),
        rotated(b, id(0x105), &format!("token-{}", id(0x105)), "token-105-b", None, None),
    ]
}
