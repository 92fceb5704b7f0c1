//! The name index: which (organization, kind, scope, name) is taken, and by which key.
//!
//! Names are unique per kind within their scope (the user for personal keys, the team for
//! team keys, the organization for organization keys), compared as [`comparable_name`]
//! makes them: trimmed, NFKC-normalized and case-folded, so that names a person reads as
//! the same (`Deploy`, `ＤＥＰＬＯＹ`, `deploy`; `Straße`, `STRASSE`) are one name. The
//! writer stores this index in the same transaction as the event that claims a name, so no
//! committed key exists without its reservation.

use std::collections::HashMap;

use unicase::UniCase;
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use crate::event::{ApiKeyKind, Event, UserId};
use crate::projection::{positioned, split_positioned, Projection, RowError, TouchedRows};
use crate::RecordedEvent;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NameIndex {
    holders: HashMap<String, Claim>,
}

/// Who holds a name, since which position (the position keys the stored row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Claim {
    api_key_id: Uuid,
    position: u64,
}

/// Where a name must be unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameScope {
    User(UserId),
    Team(Uuid),
    Organization,
}

/// The index key of a name: `<organization>/<kind>/<scope>/<comparable name>`.
pub fn name_key(organization_id: Uuid, kind: ApiKeyKind, scope: NameScope, name: &str) -> String {
    let scope = match scope {
        NameScope::User(id) => id.to_string(),
        NameScope::Team(id) => id.to_string(),
        NameScope::Organization => organization_id.to_string(),
    };
    format!("{organization_id}/{}/{scope}/{}", kind.as_str(), comparable_name(name))
}

/// What two names are compared as: trimmed of Unicode white space, NFKC-normalized (so
/// full-width and compatibility forms read as their plain letters), fully case-folded
/// (`ß` as `ss`), and normalized again, since folding can leave a composable sequence.
pub fn comparable_name(name: &str) -> String {
    let name = name.trim();
    if name.is_ascii() {
        // NFKC leaves ASCII as it is and folding it is lowercasing: most names, cheaply.
        return name.to_ascii_lowercase();
    }
    let compatible: String = name.nfkc().collect();
    UniCase::new(compatible).to_folded_case().nfkc().collect()
}

/// A stored row's name key with its name made comparable again. Rows written before names
/// were NFKC-folded hold a lowercased name; re-deriving the name keeps their claims where
/// today's writer looks for them (a name already folded comes back unchanged).
fn recompared(key: &str) -> String {
    if key.is_ascii() {
        // Ids and kinds are lowercase ASCII already: a start loading a million rows pays
        // for normalization only where a name is not ASCII.
        return key.to_ascii_lowercase();
    }
    match key.splitn(4, '/').collect::<Vec<_>>().as_slice() {
        [organization, kind, scope, name] => format!("{organization}/{kind}/{scope}/{}", comparable_name(name)),
        _ => key.to_owned(),
    }
}

/// The scope a key's name lives in, from the fields its creation recorded.
pub fn scope_of(kind: ApiKeyKind, user_id: Option<UserId>, group_id: Option<Uuid>) -> NameScope {
    match (kind, user_id, group_id) {
        (ApiKeyKind::Personal, Some(user), _) => NameScope::User(user),
        (ApiKeyKind::Team, _, Some(team)) => NameScope::Team(team),
        _ => NameScope::Organization,
    }
}

impl NameIndex {
    /// The key holding `key`, if the name is taken.
    pub fn holder(&self, key: &str) -> Option<Uuid> {
        self.holders.get(key).map(|claim| claim.api_key_id)
    }
}

impl Projection for NameIndex {
    const NAME: &'static str = "name_index";

    fn apply(&mut self, recorded: &RecordedEvent, touched: &mut impl TouchedRows) {
        if let Event::ApiKeyUpdated(e) = &recorded.event {
            let scope = scope_of(e.kind, e.user_id, e.group_id);
            let old = name_key(e.organization_id, e.kind, scope, &e.previous_name);
            let new = name_key(e.organization_id, e.kind, scope, &e.name);
            if old != new {
                if let Some(claim) = self.holders.get(&old).filter(|c| c.api_key_id == e.api_key_id).copied() {
                    self.holders.remove(&old);
                    touched.touch(|| positioned(claim.position, &old));
                }
                touched.touch(|| positioned(recorded.position, &new));
                self.holders.insert(new, Claim { api_key_id: e.api_key_id, position: recorded.position });
            }
        }
        if let Event::ApiKeyRevoked(e) = &recorded.event {
            let key = name_key(e.organization_id, e.kind, scope_of(e.kind, e.user_id, e.group_id), &e.name);
            if let Some(claim) = self.holders.get(&key).filter(|c| c.api_key_id == e.api_key_id).copied() {
                self.holders.remove(&key);
                touched.touch(|| positioned(claim.position, &key));
            }
        }
        if let Event::ApiKeyCreated(e) = &recorded.event {
            let key = name_key(e.organization_id, e.kind, scope_of(e.kind, e.user_id, e.group_id), &e.name);
            touched.touch(|| positioned(recorded.position, &key));
            self.holders.insert(key, Claim { api_key_id: e.api_key_id, position: recorded.position });
        }
    }

    fn encode_row(&self, key: &str) -> Option<Vec<u8>> {
        let (position, name) = split_positioned(key)?;
        let claim = self.holders.get(name).filter(|c| c.position == position)?;
        Some(claim.api_key_id.to_string().into_bytes())
    }

    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError> {
        let (position, name) = split_positioned(key).ok_or_else(|| RowError::new(Self::NAME, key, "not <position>/<name key>"))?;
        let api_key_id = std::str::from_utf8(value)
            .ok()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| RowError::new(Self::NAME, key, "value is not a key id"))?;
        self.holders.insert(recompared(name), Claim { api_key_id, position });
        Ok(())
    }

    fn unload_row(&mut self, key: &str) {
        if let Some((position, name)) = split_positioned(key) {
            let name = recompared(name);
            if self.holders.get(&name).is_some_and(|c| c.position == position) {
                self.holders.remove(&name);
            }
        }
    }

    fn row_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.holders.iter().map(|(name, claim)| positioned(claim.position, name)).collect();
        keys.sort();
        keys
    }
}
