//! The keys view: every key as the API shows it (minus `last_used_at`, which is not an event).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::creation_order::{Creation, CreationOrder};
use crate::event::{Actor, ApiKeyKind, Event, UserId};
use crate::projection::{decode, encode, positioned, split_positioned, Projection, RowError, TouchedRows};
use crate::RecordedEvent;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeysView {
    /// Shared, so that a copy of the view (the service keeps two: the writer's and the one
    /// readers see) shares every key until one side changes it (`Arc::make_mut`): a copy
    /// costs a pointer per key, not a key.
    keys: HashMap<Uuid, Arc<ApiKey>>,
    /// Each organization's keys in creation order, whole and in [`Slice`]s, so that listing
    /// one tenant never walks another's and a page of a large one is read, not sorted. A
    /// derivation of `keys`, never persisted: `load_row` rebuilds it.
    slices: HashMap<(Uuid, Slice), CreationOrder>,
}

/// A part of one organization's keys that the keys view keeps in creation order and counts:
/// listing walks the narrowest one that holds every key a request can list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slice {
    All,
    Kind(ApiKeyKind),
    /// Keys of one kind whose `user_id` (a personal key's owner, another key's creator) is this.
    User(ApiKeyKind, UserId),
    /// Keys of one kind for this team (`group_id`).
    Team(ApiKeyKind, Uuid),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Uuid,
    /// Position of the `ApiKeyCreated` event; keys the stored row.
    pub position: u64,
    /// Version of the key's stream (`api_key-<id>`) after its last event.
    pub stream_version: u64,
    pub organization_id: Uuid,
    pub kind: ApiKeyKind,
    pub name: String,
    pub description: Option<String>,
    pub user_id: Option<UserId>,
    pub group_id: Option<Uuid>,
    pub role_id: Option<Uuid>,
    pub on_call_role_id: Option<Uuid>,
    pub service_account_id: Option<Uuid>,
    pub token_digest: String,
    /// The token the last rotation replaced, while it is in its grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_token_digest: Option<String>,
    pub created_by: Actor,
    #[serde(deserialize_with = "crate::timestamp::deserialize")]
    pub created_at: DateTime<Utc>,
    #[serde(deserialize_with = "crate::timestamp::deserialize")]
    pub updated_at: DateTime<Utc>,
    #[serde(deserialize_with = "crate::timestamp::deserialize")]
    pub expires_at: DateTime<Utc>,
    /// When the previous token stops: set by a rotation with a grace period, `None` once it
    /// has ended or after a rotation without one. Non-null means a second token still works.
    #[serde(default, deserialize_with = "crate::timestamp::optional")]
    pub grace_period_ends_at: Option<DateTime<Utc>>,
    /// When the key last got a new secret.
    #[serde(default, deserialize_with = "crate::timestamp::optional", skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Where the key sorts in creation order; neither part ever changes.
    pub fn creation(&self) -> Creation {
        (self.created_at, self.position)
    }

    /// Every slice of its organization the key belongs to.
    fn slices(&self) -> impl Iterator<Item = Slice> {
        [
            Some(Slice::All),
            Some(Slice::Kind(self.kind)),
            self.user_id.map(|user| Slice::User(self.kind, user)),
            self.group_id.map(|team| Slice::Team(self.kind, team)),
        ]
        .into_iter()
        .flatten()
    }

    /// Which of the key's secrets `digest` is at `now`: its current token, or the previous
    /// one before its grace period ends; `None` when it authenticates nothing.
    /// `blake3::Hash` compares in constant time.
    pub fn secret(&self, digest: &blake3::Hash, now: DateTime<Utc>) -> Option<Secret> {
        let matches = |hex: &str| blake3::Hash::from_hex(hex).is_ok_and(|stored| stored == *digest);
        if matches(&self.token_digest) {
            return Some(Secret::Current);
        }
        let in_grace = self.grace_period_ends_at.is_some_and(|ends| now < ends);
        (in_grace && self.previous_token_digest.as_deref().is_some_and(matches)).then_some(Secret::Superseded)
    }

    /// Whether `digest` authenticates this key at `now` (either of its secrets).
    pub fn accepts(&self, digest: &blake3::Hash, now: DateTime<Utc>) -> bool {
        self.secret(digest, now).is_some()
    }
}

/// Which secret of a key a request presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secret {
    Current,
    /// The token a rotation replaced, during its grace period: it may read, never change
    /// anything, so a leaked old secret cannot take the key over by rotating it again.
    Superseded,
}

impl KeysView {
    pub fn get(&self, id: Uuid) -> Option<&ApiKey> {
        self.keys.get(&id).map(Arc::as_ref)
    }

    /// Every key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &ApiKey> {
        self.keys.values().map(Arc::as_ref)
    }

    /// A key to change in place; copied first if another copy of the view shares it.
    fn get_mut(&mut self, id: &Uuid) -> Option<&mut ApiKey> {
        self.keys.get_mut(id).map(Arc::make_mut)
    }

    /// The keys of one organization, oldest first.
    pub fn of_organization(&self, organization_id: Uuid) -> impl Iterator<Item = &ApiKey> {
        self.oldest_first(organization_id, Slice::All, 0).map(Arc::as_ref)
    }

    /// How many keys of the organization are in the slice.
    pub fn count(&self, organization_id: Uuid, slice: Slice) -> usize {
        self.slices.get(&(organization_id, slice)).map_or(0, CreationOrder::len)
    }

    /// The organization's keys in the slice by creation (`created_at`, ties by position),
    /// the first `skip` left out without being looked at. The keys come shared, so that a
    /// reader can keep them after it lets go of the state.
    pub fn oldest_first(&self, organization_id: Uuid, slice: Slice, skip: usize) -> impl Iterator<Item = &Arc<ApiKey>> {
        let ids = self.slices.get(&(organization_id, slice)).map(|order| order.oldest_first(skip));
        ids.into_iter().flatten().filter_map(|id| self.keys.get(&id))
    }

    /// Exactly the reverse of [`Self::oldest_first`].
    pub fn newest_first(&self, organization_id: Uuid, slice: Slice, skip: usize) -> impl Iterator<Item = &Arc<ApiKey>> {
        let ids = self.slices.get(&(organization_id, slice)).map(|order| order.newest_first(skip));
        ids.into_iter().flatten().filter_map(|id| self.keys.get(&id))
    }

    /// A key, shared (see [`Self::oldest_first`]).
    pub fn shared(&self, id: Uuid) -> Option<&Arc<ApiKey>> {
        self.keys.get(&id)
    }

    /// Adds or replaces a key; a replacement keeps its place unless it moved (it never does
    /// by an event, but a loaded row may differ from what it replaces).
    fn insert(&mut self, key: ApiKey) {
        let same_place =
            |old: &ApiKey| old.organization_id == key.organization_id && old.creation() == key.creation() && old.slices().eq(key.slices());
        match self.keys.get(&key.id) {
            Some(old) if same_place(old) => {}
            old => {
                if old.is_some() {
                    self.remove(&key.id);
                }
                let keys = &self.keys;
                for slice in key.slices() {
                    let order = self.slices.entry((key.organization_id, slice)).or_default();
                    order.insert(key.id, key.creation(), |id| keys.get(id).map(|k| k.creation()));
                }
            }
        }
        self.keys.insert(key.id, Arc::new(key));
    }

    fn remove(&mut self, id: &Uuid) -> Option<Arc<ApiKey>> {
        let keys = &self.keys;
        let key = keys.get(id)?;
        for slice in key.slices() {
            let place = (key.organization_id, slice);
            if let Some(order) = self.slices.get_mut(&place) {
                order.remove(key.id, key.creation(), |id| keys.get(id).map(|k| k.creation()));
                if order.is_empty() {
                    self.slices.remove(&place);
                }
            }
        }
        self.keys.remove(id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Projection for KeysView {
    const NAME: &'static str = "keys";

    fn apply(&mut self, recorded: &RecordedEvent, touched: &mut impl TouchedRows) {
        if let Event::ApiKeyUpdated(e) = &recorded.event {
            if let Some(key) = self.get_mut(&e.api_key_id) {
                key.name = e.name.clone();
                key.description = e.description.clone();
                key.expires_at = e.expires_at;
                key.updated_at = recorded.recorded_at;
                key.stream_version = recorded.stream_version;
                touched.touch(|| positioned(key.position, &key.id.to_string()));
            }
        }
        if let Event::ApiKeyRotated(e) = &recorded.event {
            if let Some(key) = self.get_mut(&e.api_key_id) {
                key.token_digest = e.token_digest.clone();
                key.previous_token_digest = e.grace_period_ends_at.map(|_| e.previous_token_digest.clone());
                key.grace_period_ends_at = e.grace_period_ends_at;
                key.expires_at = e.expires_at;
                key.rotated_at = Some(recorded.recorded_at);
                key.updated_at = recorded.recorded_at;
                key.stream_version = recorded.stream_version;
                touched.touch(|| positioned(key.position, &key.id.to_string()));
            }
        }
        if let Event::ApiKeyGracePeriodEnded(e) = &recorded.event {
            if let Some(key) = self.get_mut(&e.api_key_id) {
                if key.previous_token_digest.as_deref() == Some(e.token_digest.as_str()) {
                    key.previous_token_digest = None;
                    key.grace_period_ends_at = None;
                }
                key.stream_version = recorded.stream_version;
                touched.touch(|| positioned(key.position, &key.id.to_string()));
            }
        }
        if let Event::ApiKeyRevoked(e) = &recorded.event {
            // A revoked key is gone from every view; the log keeps it.
            if let Some(key) = self.remove(&e.api_key_id) {
                touched.touch(|| positioned(key.position, &key.id.to_string()));
            }
        }
        if let Event::ApiKeyCreated(e) = &recorded.event {
            self.insert(ApiKey {
                id: e.api_key_id,
                position: recorded.position,
                stream_version: recorded.stream_version,
                organization_id: e.organization_id,
                kind: e.kind,
                name: e.name.clone(),
                description: e.description.clone(),
                user_id: e.user_id,
                group_id: e.group_id,
                role_id: e.role_id,
                on_call_role_id: e.on_call_role_id,
                service_account_id: e.service_account_id,
                token_digest: e.token_digest.clone(),
                created_by: recorded.actor.clone(),
                created_at: recorded.recorded_at,
                updated_at: recorded.recorded_at,
                expires_at: e.expires_at,
                previous_token_digest: None,
                grace_period_ends_at: None,
                rotated_at: None,
            });
            touched.touch(|| positioned(recorded.position, &e.api_key_id.to_string()));
        }
    }

    fn encode_row(&self, key: &str) -> Option<Vec<u8>> {
        let (position, id) = split_positioned(key)?;
        self.get(Uuid::parse_str(id).ok()?).filter(|row| row.position == position).and_then(encode)
    }

    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError> {
        let api_key: ApiKey = decode(Self::NAME, key, value)?;
        self.insert(api_key);
        Ok(())
    }

    fn unload_row(&mut self, key: &str) {
        let Some((position, id)) = split_positioned(key) else { return };
        let Ok(id) = Uuid::parse_str(id) else { return };
        if self.keys.get(&id).is_some_and(|row| row.position == position) {
            self.remove(&id);
        }
    }

    fn row_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.keys.values().map(|k| positioned(k.position, &k.id.to_string())).collect();
        keys.sort();
        keys
    }
}
