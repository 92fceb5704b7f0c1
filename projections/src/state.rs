//! All projections together: what the service decides against and answers from.
//!
//! The set of projections is one list, in [`projections!`]'s invocation below: it makes the
//! [`ProjectionId`] enum, `State`'s fields and [`PROJECTIONS`] together, and every dispatch
//! on a projection is an exhaustive `match` the compiler checks. A projection's name (the
//! prefix of its rows, the name of its checkpoint) is used only where rows and checkpoints
//! are written and read ([`ProjectionId::name`], [`ProjectionId::from_name`]).

use std::fmt;

use crate::directory::Directory;
use crate::expiry_schedule::ExpirySchedule;
use crate::keys_view::KeysView;
use crate::name_index::NameIndex;
use crate::projection::{Projection, RowError, TouchedRows};
use crate::service_accounts::ServiceAccounts;
use crate::token_index::TokenIndex;
use crate::{Event, RecordedEvent};

/// Rows touched by applied events, as (projection, row key); duplicates are allowed.
pub type Touched = Vec<(ProjectionId, String)>;

/// Declares the projections: `Variant => field: Type`, in the order they are stored and
/// checked. Adding a projection is one line here (and its fold, a [`Projection`]).
macro_rules! projections {
    ($($id:ident => $field:ident: $projection:ty,)*) => {
        /// One persisted projection.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ProjectionId {
            $($id,)*
        }

        /// Every persisted projection, in the order they are stored and checked.
        pub const PROJECTIONS: [ProjectionId; [$(ProjectionId::$id,)*].len()] = [$(ProjectionId::$id,)*];

        impl ProjectionId {
            /// Stable name: the prefix of its rows and the name of its checkpoint.
            pub fn name(self) -> &'static str {
                match self {
                    $(ProjectionId::$id => <$projection as Projection>::NAME,)*
                }
            }
        }

        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct State {
            /// Position of the last event folded in (0: none).
            pub position: u64,
            $(pub $field: $projection,)*
        }

        impl State {
            fn apply_one(&mut self, projection: ProjectionId, event: &RecordedEvent, touched: Option<&mut Touched>) {
                let rows = &mut RowsOf { projection, touched };
                match projection {
                    $(ProjectionId::$id => self.$field.apply(event, rows),)*
                }
            }

            /// The current encoding of one row of one projection (`None`: the row is gone).
            pub fn encode_row(&self, projection: ProjectionId, key: &str) -> Option<Vec<u8>> {
                match projection {
                    $(ProjectionId::$id => self.$field.encode_row(key),)*
                }
            }

            /// Restores one stored row into the given projection.
            pub fn load_row(&mut self, projection: ProjectionId, key: &str, value: &[u8]) -> Result<(), RowError> {
                match projection {
                    $(ProjectionId::$id => self.$field.load_row(key, value),)*
                }
            }

            /// Forgets one stored row of the given projection.
            pub fn unload_row(&mut self, projection: ProjectionId, key: &str) {
                match projection {
                    $(ProjectionId::$id => self.$field.unload_row(key),)*
                }
            }

            /// Every row key of the given projection, sorted.
            pub fn row_keys(&self, projection: ProjectionId) -> Vec<String> {
                match projection {
                    $(ProjectionId::$id => self.$field.row_keys(),)*
                }
            }

            /// Whether `other` holds the same `projection` as `self`. Equal in memory means every
            /// row encodes the same (row encodings are deterministic: ordered maps only), which
            /// spares encoding every row twice to find that nothing differs.
            pub fn same_as(&self, other: &State, projection: ProjectionId) -> bool {
                match projection {
                    $(ProjectionId::$id => self.$field == other.$field,)*
                }
            }

            /// Copies `projection` from `other` into `self`: how a copy of the state is made a
            /// part at a time (the largest parts on threads of their own).
            pub fn copy_from(&mut self, other: &State, projection: ProjectionId) {
                match projection {
                    $(ProjectionId::$id => self.$field.clone_from(&other.$field),)*
                }
            }

            /// Moves `projection` out of `other` into `self` (`other` is left with an empty one):
            /// how projections folded or loaded on separate threads come together.
            pub fn take_from(&mut self, other: &mut State, projection: ProjectionId) {
                match projection {
                    $(ProjectionId::$id => self.$field = std::mem::take(&mut other.$field),)*
                }
            }
        }
    };
}

projections! {
    Directory => directory: Directory,
    NameIndex => name_index: NameIndex,
    TokenIndex => tokens: TokenIndex,
    KeysView => keys: KeysView,
    ServiceAccounts => service_accounts: ServiceAccounts,
    ExpirySchedule => expiry_schedule: ExpirySchedule,
}

impl ProjectionId {
    /// The projection a stored row or checkpoint names, if this build has it.
    pub fn from_name(name: &str) -> Option<Self> {
        PROJECTIONS.into_iter().find(|projection| projection.name() == name)
    }
}

/// Its name, padded as asked (reports line projections up in columns).
impl fmt::Display for ProjectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The rows one projection touches, noted in a [`Touched`] under its id, if one is kept.
struct RowsOf<'a> {
    projection: ProjectionId,
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
            self.apply_one(projection, event, touched.as_deref_mut());
        }
        self.position = event.position;
    }

    /// Folds one event into one projection only: how a projection that is behind catches up.
    pub fn apply_to(&mut self, projection: ProjectionId, event: &RecordedEvent, touched: &mut Touched) {
        self.apply_one(projection, event, Some(touched));
    }

    /// [`State::apply_to`] without keeping track of rows: for a copy that is never stored.
    pub fn fold_to(&mut self, projection: ProjectionId, event: &RecordedEvent) {
        self.apply_one(projection, event, None);
    }
}
