//! All projections together: what the service decides against and answers from.

use crate::directory::Directory;
use crate::expiry_schedule::ExpirySchedule;
use crate::keys_view::KeysView;
use crate::name_index::NameIndex;
use crate::projection::{Projection, RowError, TouchedRows};
use crate::service_accounts::ServiceAccounts;
use crate::token_index::TokenIndex;
use crate::{Event, RecordedEvent};

/// Rows touched by applied events, as (projection name, row key); duplicates are allowed.
pub type Touched = Vec<(&'static str, String)>;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Position of the last event folded in (0: none).
    pub position: u64,
    pub directory: Directory,
    pub name_index: NameIndex,
    pub tokens: TokenIndex,
    pub keys: KeysView,
    pub service_accounts: ServiceAccounts,
    pub expiry_schedule: ExpirySchedule,
}

/// Names of every persisted projection, in the order they are stored and checked.
pub const PROJECTIONS: [&str; 6] = [
    Directory::NAME,
    NameIndex::NAME,
    TokenIndex::NAME,
    KeysView::NAME,
    ServiceAccounts::NAME,
    ExpirySchedule::NAME,
];

/// The rows one projection touches, noted in a [`Touched`] under its name, if one is kept.
struct RowsOf<'a> {
    projection: &'static str,
    touched: Option<&'a mut Touched>,
}

impl TouchedRows for RowsOf<'_> {
    fn touch(&mut self, key: impl FnOnce() -> String) {
        if let Some(touched) = &mut self.touched {
            touched.push((self.projection, key()));
        }
    }
}

impl State {
    /// Folds one event into every projection, recording which rows changed.
    pub fn apply(&mut self, event: &RecordedEvent, touched: &mut Touched) {
        self.apply_all(event, Some(touched));
    }

    /// The version `event`'s stream has before `event`: every stream's version is kept by
    /// the projection that owns its entity, so the store needs no table of streams.
    pub fn stream_version(&self, event: &Event) -> u64 {
        match event {
            Event::ApiKeyCreated(e) => self.keys.get(e.api_key_id).map_or(0, |k| k.stream_version),
            Event::ServiceAccountCreated(e) => self.service_accounts.get(e.service_account_id).map_or(0, |a| a.stream_version),
            Event::ApiKeyRevoked(e) => self.keys.get(e.api_key_id).map_or(0, |k| k.stream_version),
            Event::ApiKeyUpdated(e) => self.keys.get(e.api_key_id).map_or(0, |k| k.stream_version),
            Event::ApiKeyRotated(e) => self.keys.get(e.api_key_id).map_or(0, |k| k.stream_version),
            Event::ApiKeyGracePeriodEnded(e) => self.keys.get(e.api_key_id).map_or(0, |k| k.stream_version),
            Event::ServiceAccountDeleted(e) => self.service_accounts.get(e.service_account_id).map_or(0, |a| a.stream_version),
            other => self.directory.stream_version(other.organization_id(), &other.stream()),
        }
    }

    /// Folds events in without keeping track of rows (for read-only copies and replays).
    pub fn fold<'a>(&mut self, events: impl IntoIterator<Item = &'a RecordedEvent>) {
        for event in events {
            self.apply_all(event, None);
        }
    }

    fn apply_all(&mut self, event: &RecordedEvent, mut touched: Option<&mut Touched>) {
        for projection in PROJECTIONS {
            self.apply_named(projection, event, touched.as_deref_mut());
        }
        self.position = event.position;
    }

    /// Folds one event into the named projection only: how a projection that is behind
    /// catches up.
    pub fn apply_to(&mut self, projection: &str, event: &RecordedEvent, touched: &mut Touched) {
        self.apply_named(projection, event, Some(touched));
    }

    /// [`State::apply_to`] without keeping track of rows: for a copy that is never stored.
    pub fn fold_to(&mut self, projection: &str, event: &RecordedEvent) {
        self.apply_named(projection, event, None);
    }

    fn apply_named(&mut self, projection: &str, event: &RecordedEvent, touched: Option<&mut Touched>) {
        match projection {
            Directory::NAME => self.directory.apply(event, &mut RowsOf { projection: Directory::NAME, touched }),
            NameIndex::NAME => self.name_index.apply(event, &mut RowsOf { projection: NameIndex::NAME, touched }),
            TokenIndex::NAME => self.tokens.apply(event, &mut RowsOf { projection: TokenIndex::NAME, touched }),
            KeysView::NAME => self.keys.apply(event, &mut RowsOf { projection: KeysView::NAME, touched }),
            ServiceAccounts::NAME => self.service_accounts.apply(event, &mut RowsOf { projection: ServiceAccounts::NAME, touched }),
            ExpirySchedule::NAME => self.expiry_schedule.apply(event, &mut RowsOf { projection: ExpirySchedule::NAME, touched }),
            _ => {}
        }
    }

    /// The current encoding of one row of one projection (`None`: the row is gone).
    pub fn encode_row(&self, projection: &str, key: &str) -> Option<Vec<u8>> {
        match projection {
            Directory::NAME => self.directory.encode_row(key),
            NameIndex::NAME => self.name_index.encode_row(key),
            TokenIndex::NAME => self.tokens.encode_row(key),
            KeysView::NAME => self.keys.encode_row(key),
            ServiceAccounts::NAME => self.service_accounts.encode_row(key),
            ExpirySchedule::NAME => self.expiry_schedule.encode_row(key),
            _ => None,
        }
    }

    /// Restores one stored row into the named projection.
    pub fn load_row(&mut self, projection: &str, key: &str, value: &[u8]) -> Result<(), RowError> {
        match projection {
            Directory::NAME => self.directory.load_row(key, value),
            NameIndex::NAME => self.name_index.load_row(key, value),
            TokenIndex::NAME => self.tokens.load_row(key, value),
            KeysView::NAME => self.keys.load_row(key, value),
            ServiceAccounts::NAME => self.service_accounts.load_row(key, value),
            ExpirySchedule::NAME => self.expiry_schedule.load_row(key, value),
            other => Err(RowError::new("unknown", key, format!("no projection named {other:?}"))),
        }
    }

    /// Forgets one stored row of the named projection.
    pub fn unload_row(&mut self, projection: &str, key: &str) {
        match projection {
            Directory::NAME => self.directory.unload_row(key),
            NameIndex::NAME => self.name_index.unload_row(key),
            TokenIndex::NAME => self.tokens.unload_row(key),
            KeysView::NAME => self.keys.unload_row(key),
            ServiceAccounts::NAME => self.service_accounts.unload_row(key),
            ExpirySchedule::NAME => self.expiry_schedule.unload_row(key),
            _ => {}
        }
    }

    /// Every row key of the named projection, sorted.
    pub fn row_keys(&self, projection: &str) -> Vec<String> {
        match projection {
            Directory::NAME => self.directory.row_keys(),
            NameIndex::NAME => self.name_index.row_keys(),
            TokenIndex::NAME => self.tokens.row_keys(),
            KeysView::NAME => self.keys.row_keys(),
            ServiceAccounts::NAME => self.service_accounts.row_keys(),
            ExpirySchedule::NAME => self.expiry_schedule.row_keys(),
            _ => Vec::new(),
        }
    }
}
