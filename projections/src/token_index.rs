//! The token index: token digest → key.
//!
//! Only digests are known here. Lookups hash the presented token first, so the map is
//! probed with a value an attacker cannot steer towards a stored digest; the final
//! comparison against the key's digest is constant-time ([`blake3::Hash`]'s equality).

use std::collections::HashMap;

use uuid::Uuid;

use crate::event::Event;
use crate::projection::{Projection, RowError};
use crate::RecordedEvent;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenIndex {
    keys: HashMap<blake3::Hash, Uuid>,
}

impl TokenIndex {
    pub fn key_for(&self, digest: &blake3::Hash) -> Option<Uuid> {
        self.keys.get(digest).copied()
    }
}

impl Projection for TokenIndex {
    const NAME: &'static str = "token_index";

    fn apply(&mut self, recorded: &RecordedEvent, touched: &mut Vec<String>) {
        if let Event::ApiKeyCreated(e) = &recorded.event {
            if let Ok(digest) = blake3::Hash::from_hex(&e.token_digest) {
                self.keys.insert(digest, e.api_key_id);
                touched.push(digest.to_hex().to_string());
            }
        }
    }

    fn encode_row(&self, key: &str) -> Option<Vec<u8>> {
        let digest = blake3::Hash::from_hex(key).ok()?;
        self.keys.get(&digest).map(|id| id.to_string().into_bytes())
    }

    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError> {
        let digest = blake3::Hash::from_hex(key).map_err(|e| RowError::new(Self::NAME, key, e))?;
        let id = std::str::from_utf8(value)
            .ok()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| RowError::new(Self::NAME, key, "value is not a key id"))?;
        self.keys.insert(digest, id);
        Ok(())
    }

    fn row_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.keys.keys().map(|d| d.to_hex().to_string()).collect();
        keys.sort();
        keys
    }
}
