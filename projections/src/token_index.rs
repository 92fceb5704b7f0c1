//! The token index: token digest → key.
//!
//! Only digests are known here. Lookups hash the presented token first, so the map is
//! probed with a value an attacker cannot steer towards a stored digest; the final
//! comparison against the key's digest is constant-time ([`blake3::Hash`]'s equality).

use std::collections::HashMap;

use uuid::Uuid;

use crate::event::Event;
use crate::projection::{positioned, split_positioned, Projection, RowError};
use crate::RecordedEvent;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenIndex {
    keys: HashMap<blake3::Hash, Entry>,
}

/// The key a digest belongs to, and the position that introduced the digest (which keys
/// the stored row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    api_key_id: Uuid,
    position: u64,
}

impl TokenIndex {
    pub fn key_for(&self, digest: &blake3::Hash) -> Option<Uuid> {
        self.keys.get(digest).map(|e| e.api_key_id)
    }
}

impl Projection for TokenIndex {
    const NAME: &'static str = "token_index";

    fn apply(&mut self, recorded: &RecordedEvent, touched: &mut Vec<String>) {
        if let Event::ApiKeyRevoked(e) = &recorded.event {
            if let Ok(digest) = blake3::Hash::from_hex(&e.token_digest) {
                if let Some(entry) = self.keys.get(&digest).filter(|entry| entry.api_key_id == e.api_key_id).copied() {
                    self.keys.remove(&digest);
                    touched.push(positioned(entry.position, digest.to_hex().as_str()));
                }
            }
        }
        if let Event::ApiKeyCreated(e) = &recorded.event {
            if let Ok(digest) = blake3::Hash::from_hex(&e.token_digest) {
                self.keys.insert(digest, Entry { api_key_id: e.api_key_id, position: recorded.position });
                touched.push(positioned(recorded.position, digest.to_hex().as_str()));
            }
        }
    }

    fn encode_row(&self, key: &str) -> Option<Vec<u8>> {
        let (position, hex) = split_positioned(key)?;
        let digest = blake3::Hash::from_hex(hex).ok()?;
        let entry = self.keys.get(&digest).filter(|e| e.position == position)?;
        Some(entry.api_key_id.to_string().into_bytes())
    }

    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError> {
        let (position, hex) =
            split_positioned(key).ok_or_else(|| RowError::new(Self::NAME, key, "not <position>/<digest>"))?;
        let digest = blake3::Hash::from_hex(hex).map_err(|e| RowError::new(Self::NAME, key, e))?;
        let api_key_id = std::str::from_utf8(value)
            .ok()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| RowError::new(Self::NAME, key, "value is not a key id"))?;
        self.keys.insert(digest, Entry { api_key_id, position });
        Ok(())
    }

    fn unload_row(&mut self, key: &str) {
        let parsed = split_positioned(key).and_then(|(p, hex)| Some((p, blake3::Hash::from_hex(hex).ok()?)));
        if let Some((position, digest)) = parsed {
            if self.keys.get(&digest).is_some_and(|e| e.position == position) {
                self.keys.remove(&digest);
            }
        }
    }

    fn row_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.keys.iter().map(|(d, e)| positioned(e.position, d.to_hex().as_str())).collect();
        keys.sort();
        keys
    }
}
