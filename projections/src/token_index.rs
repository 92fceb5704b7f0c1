//! The token index: token digest → key.
//!
//! Only digests are known here. Lookups hash the presented token first, so the map is
//! probed with a value an attacker cannot steer towards a stored digest; the final
//! comparison against the key's digest is constant-time ([`blake3::Hash`]'s equality).

use std::collections::HashMap;

use uuid::Uuid;

use crate::event::Event;
use crate::projection::{positioned, split_positioned, Projection, RowError, TouchedRows};
use crate::RecordedEvent;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenIndex {
    keys: HashMap<blake3::Hash, Entry>,
    /// Each rotated key's previous token, while it is in its grace period: a revocation
    /// ends it along with the current one.
    previous: HashMap<Uuid, blake3::Hash>,
}

/// The key a digest belongs to, and the position that introduced the digest (which keys
/// the stored row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    api_key_id: Uuid,
    position: u64,
}

/// How a stored row marks a key's previous token.
const PREVIOUS: &str = " previous";

impl TokenIndex {
    pub fn key_for(&self, digest: &blake3::Hash) -> Option<Uuid> {
        self.keys.get(digest).map(|e| e.api_key_id)
    }

    fn insert(&mut self, digest: blake3::Hash, api_key_id: Uuid, position: u64, touched: &mut impl TouchedRows) {
        self.keys.insert(digest, Entry { api_key_id, position });
        touched.touch(|| positioned(position, digest.to_hex().as_str()));
    }

    /// Forgets `hex` if it is a token of `api_key_id`.
    fn forget(&mut self, hex: &str, api_key_id: Uuid, touched: &mut impl TouchedRows) {
        let Ok(digest) = blake3::Hash::from_hex(hex) else { return };
        if let Some(entry) = self.keys.get(&digest).filter(|entry| entry.api_key_id == api_key_id).copied() {
            self.keys.remove(&digest);
            if self.previous.get(&api_key_id) == Some(&digest) {
                self.previous.remove(&api_key_id);
            }
            touched.touch(|| positioned(entry.position, digest.to_hex().as_str()));
        }
    }
}

impl Projection for TokenIndex {
    const NAME: &'static str = "token_index";

    fn apply(&mut self, recorded: &RecordedEvent, touched: &mut impl TouchedRows) {
        match &recorded.event {
            Event::ApiKeyCreated(e) => {
                if let Ok(digest) = blake3::Hash::from_hex(&e.token_digest) {
                    self.insert(digest, e.api_key_id, recorded.position, touched);
                }
            }
            Event::ApiKeyRotated(e) => {
                if let Some(retired) = &e.retired_token_digest {
                    self.forget(retired, e.api_key_id, touched);
                }
                match (e.grace_period_ends_at, blake3::Hash::from_hex(&e.previous_token_digest)) {
                    (Some(_), Ok(previous)) if self.key_for(&previous) == Some(e.api_key_id) => {
                        self.previous.insert(e.api_key_id, previous);
                        if let Some(entry) = self.keys.get(&previous) {
                            touched.touch(|| positioned(entry.position, previous.to_hex().as_str()));
                        }
                    }
                    _ => self.forget(&e.previous_token_digest, e.api_key_id, touched),
                }
                if let Ok(digest) = blake3::Hash::from_hex(&e.token_digest) {
                    self.insert(digest, e.api_key_id, recorded.position, touched);
                }
            }
            Event::ApiKeyGracePeriodEnded(e) => self.forget(&e.token_digest, e.api_key_id, touched),
            Event::ApiKeyRevoked(e) => {
                if let Some(previous) = self.previous.get(&e.api_key_id).copied() {
                    self.forget(previous.to_hex().as_str(), e.api_key_id, touched);
                }
                self.forget(&e.token_digest, e.api_key_id, touched);
            }
            _ => {}
        }
    }

    fn encode_row(&self, key: &str) -> Option<Vec<u8>> {
        let (position, hex) = split_positioned(key)?;
        let digest = blake3::Hash::from_hex(hex).ok()?;
        let entry = self.keys.get(&digest).filter(|e| e.position == position)?;
        let mut value = entry.api_key_id.to_string();
        if self.previous.get(&entry.api_key_id) == Some(&digest) {
            value.push_str(PREVIOUS);
        }
        Some(value.into_bytes())
    }

    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError> {
        let (position, hex) = split_positioned(key).ok_or_else(|| RowError::new(Self::NAME, key, "not <position>/<digest>"))?;
        let digest = blake3::Hash::from_hex(hex).map_err(|e| RowError::new(Self::NAME, key, e))?;
        let text = std::str::from_utf8(value).map_err(|e| RowError::new(Self::NAME, key, e))?;
        let (id, previous) = text.strip_suffix(PREVIOUS).map_or((text, false), |id| (id, true));
        let api_key_id = Uuid::parse_str(id).map_err(|_| RowError::new(Self::NAME, key, "value is not a key id"))?;
        self.keys.insert(digest, Entry { api_key_id, position });
        if previous {
            self.previous.insert(api_key_id, digest);
        }
        Ok(())
    }

    fn unload_row(&mut self, key: &str) {
        let parsed = split_positioned(key).and_then(|(p, hex)| Some((p, blake3::Hash::from_hex(hex).ok()?)));
        if let Some((position, digest)) = parsed {
            if let Some(entry) = self.keys.get(&digest).filter(|e| e.position == position).copied() {
                self.keys.remove(&digest);
                if self.previous.get(&entry.api_key_id) == Some(&digest) {
                    self.previous.remove(&entry.api_key_id);
                }
            }
        }
    }

    fn row_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.keys.iter().map(|(d, e)| positioned(e.position, d.to_hex().as_str())).collect();
        keys.sort();
        keys
    }
}
