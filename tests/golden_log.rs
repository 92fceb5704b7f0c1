//! A log written by an earlier keyledger must stay readable. Each `fixtures/golden-log*.jsonl`
//! is such a log (one exported envelope per line), replayed and folded here:
//!
//! - `golden-log.jsonl`, written by the first keyledger (create, update, revoke). Frozen:
//!   never regenerated.
//! - `golden-log-lifecycle.jsonl`, adding rotations (with and without grace) and the
//!   revocations a directory change causes (user removed, team deleted). Regenerate it only
//!   when adding events to it, never to paper over a decoding change:
//!   `KEYLEDGER_WRITE_GOLDEN=1 cargo test --test golden_log`. Once a release has shipped
//!   it, freeze it like the first and start another.

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use common::fixtures::{fixture, PLATFORM_TEAM};
use keyledger::ledger::chain::{from_line, to_line, Replay};
use keyledger::ledger::{ChainHead, SledStorage, Storage};
use keyledger::service::operator;
use keyledger::service::recovery::load_state;
use keyledger::service::rules::caller::Credential;
use keyledger::service::rules::create_api_key::{CreateApiKey, NewApiKey, Requester, DEFAULT_MAX_KEYS_PER_SCOPE};
use keyledger::service::rules::directory::DirectoryFile;
use keyledger::service::rules::revoke_api_key::RevokeApiKey;
use keyledger::service::rules::rotate_api_key::{RotateApiKey, Rotation};
use keyledger::service::rules::update_api_key::{KeyChanges, UpdateApiKey};
use keyledger::service::token::TokenFormat;
use keyledger::service::writer::{Command, Writer};
use keyledger_projections::event::RevocationReason;
use keyledger_projections::{ApiKeyKind, Event, State};
use uuid::Uuid;

const FIRST: &str = "fixtures/golden-log.jsonl";
const LIFECYCLE: &str = "fixtures/golden-log-lifecycle.jsonl";

fn write_lifecycle_golden() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
    let mut writer = Writer::new(Arc::clone(&storage), load_state(&*storage).unwrap()).unwrap();
    let acme: DirectoryFile = serde_json::from_str(&std::fs::read_to_string(fixture("directory.example.json")).unwrap()).unwrap();
    let tokens = TokenFormat::new("rootly").unwrap();
    operator::initialize(&mut writer, &[acme], &tokens).unwrap();
    let owner_key = writer.state().keys.iter().next().map(|k| k.id).unwrap();
    let expires = (Utc::now() + Duration::days(365 * 4)).to_rfc3339();
    let mut created = Vec::new();
    for (kind, name, group) in [("team", "platform deploys", Some(PLATFORM_TEAM)), ("organization", "audit export", None)] {
        let command = Command::CreateApiKey(CreateApiKey {
            requester: Requester::Key(Credential::current(writer.state(), owner_key).unwrap()),
            api_key_id: Uuid::new_v4(),
            service_account_id: Uuid::new_v4(),
            token_digest: tokens.mint().unwrap().digest(),
            attributes: NewApiKey {
                name: Some(name.into()),
                kind: Some(kind.into()),
                expires_at: Some(expires.clone()),
                group_id: group.map(str::to_owned),
                ..NewApiKey::default()
            },
            max_keys_per_scope: DEFAULT_MAX_KEYS_PER_SCOPE,
        });
        let events = writer.execute(vec![(command, "golden".into())]).pop().unwrap().unwrap();
        created.push(events[0].stream.trim_start_matches("api_key-").parse::<Uuid>().unwrap());
    }
    // The owner's key acts with its current secret, which the first rotation changes.
    let owner = |writer: &Writer| Credential::current(writer.state(), owner_key).unwrap();
    let update = Command::UpdateApiKey(UpdateApiKey {
        caller: owner(&writer),
        api_key_id: created[0],
        changes: KeyChanges { name: Some("platform deploys v2".into()), ..KeyChanges::default() },
    });
    let revoke = Command::RevokeApiKey(RevokeApiKey { caller: owner(&writer), api_key_id: created[1] });
    for command in [update, revoke] {
        writer.execute(vec![(command, "golden".into())]).pop().unwrap().unwrap();
    }
    for minutes in [30, 0] {
        let rotation = Command::RotateApiKey(RotateApiKey {
            caller: owner(&writer),
            api_key_id: owner_key,
            token_digest: tokens.mint().unwrap().digest(),
            rotation: Rotation { grace_period_minutes: Some(minutes), ..Rotation::default() },
        });
        writer.execute(vec![(rotation, "golden".into())]).pop().unwrap().unwrap();
    }
    // dave leaves and the platform team is deleted: dave's key and the team's key go with them.
    let dave = operator::issue_personal_key(
        &mut writer,
        Some("Acme"),
        "dave@acme.test",
        "dave's laptop",
        Utc::now() + Duration::days(30),
        &tokens,
    );
    dave.unwrap();
    let mut smaller: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("directory.example.json")).unwrap()).unwrap();
    smaller["users"].as_array_mut().unwrap().retain(|u| u["email"] != "dave@acme.test");
    smaller["teams"].as_array_mut().unwrap().retain(|t| t["slug"] != "platform");
    operator::apply_directory(&mut writer, &[serde_json::from_value(smaller).unwrap()]).unwrap();
    let mut out = Vec::new();
    for stored in storage.events_from(1) {
        out.extend(to_line(&stored.unwrap()));
        out.push(b'\n');
    }
    std::fs::write(LIFECYCLE, out).unwrap();
}

/// Replays a golden log, checking every link, and folds it.
fn replayed(path: &str) -> (Vec<keyledger_projections::RecordedEvent>, State) {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let stored = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate().map(|(i, line)| from_line(line, i as u64 + 1));
    let mut replay = Replay::new(stored, ChainHead::genesis());
    let events: Vec<_> = replay.by_ref().collect::<Result<_, _>>().expect("every golden event decodes and chains");
    assert_eq!(replay.head().position, events.len() as u64);
    let mut state = State::default();
    state.fold(&events);
    (events, state)
}

#[test]
fn the_first_golden_log_replays_into_the_state_it_recorded() {
    let (events, state) = replayed(FIRST);

    let acme = state.directory.organization_by_name("Acme").expect("Acme");
    assert_eq!(acme.users.len(), 7);
    assert_eq!(acme.team("platform").map(|t| t.admin_ids.len()), Some(1));
    let kinds: Vec<ApiKeyKind> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::ApiKeyCreated(k) => Some(k.kind),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [ApiKeyKind::Personal, ApiKeyKind::Team, ApiKeyKind::Organization]);
    let types: Vec<&str> = events.iter().rev().take(3).map(|e| e.event.type_name()).collect();
    assert_eq!(types, ["ServiceAccountDeleted", "ApiKeyRevoked", "ApiKeyUpdated"]);
    let names: Vec<&str> = state.keys.iter().map(|k| k.name.as_str()).collect();
    assert!(names.contains(&"platform deploys v2") && !names.contains(&"audit export"), "{names:?}");
}

#[test]
fn the_lifecycle_golden_log_replays_into_the_state_it_recorded() {
    if std::env::var_os("KEYLEDGER_WRITE_GOLDEN").is_some() {
        write_lifecycle_golden();
    }
    let (events, state) = replayed(LIFECYCLE);

    let rotations: Vec<bool> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::ApiKeyRotated(r) => Some(r.grace_period_ends_at.is_some()),
            _ => None,
        })
        .collect();
    assert_eq!(rotations, [true, false], "one rotation with a grace period, one without");
    let reasons: Vec<RevocationReason> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::ApiKeyRevoked(r) => Some(r.reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [RevocationReason::Requested, RevocationReason::UserRemoved, RevocationReason::TeamDeleted]);
    let acme = state.directory.organization_by_name("Acme").expect("Acme");
    assert!(acme.team("platform").is_none() && acme.users.len() == 6);
    let names: Vec<&str> = state.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names.len(), 1, "only the owner's rotated key is left: {names:?}");
    assert!(state.keys.iter().all(|k| k.rotated_at.is_some() && k.grace_period_ends_at.is_none()));
}
