//! The service-account view: the identity a team or organization key acts as.
//!
//! A team key's account is a member of its team with the rights of a team admin; an
//! organization key's account holds the role and on-call role chosen at creation. Accounts
//! belong to the organization, not to the user who created the key, so they outlive them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{ApiKeyKind, Event};
use crate::projection::{decode, encode, positioned, split_positioned, Projection, RowError, TouchedRows};
use crate::RecordedEvent;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceAccounts {
    accounts: HashMap<Uuid, ServiceAccount>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub id: Uuid,
    /// Position of the `ServiceAccountCreated` event; keys the stored row.
    pub position: u64,
    /// Version of the account's stream after its last event.
    pub stream_version: u64,
    pub organization_id: Uuid,
    pub api_key_id: Uuid,
    pub kind: ApiKeyKind,
    pub group_id: Option<Uuid>,
    pub role_id: Option<Uuid>,
    pub on_call_role_id: Option<Uuid>,
    #[serde(deserialize_with = "crate::timestamp::deserialize")]
    pub created_at: DateTime<Utc>,
}

impl ServiceAccounts {
    pub fn get(&self, id: Uuid) -> Option<&ServiceAccount> {
        self.accounts.get(&id)
    }
}

impl Projection for ServiceAccounts {
    const NAME: &'static str = "service_accounts";

    fn apply(&mut self, recorded: &RecordedEvent, touched: &mut impl TouchedRows) {
        if let Event::ServiceAccountDeleted(e) = &recorded.event {
            if let Some(account) = self.accounts.remove(&e.service_account_id) {
                touched.touch(|| positioned(account.position, &account.id.to_string()));
            }
        }
        if let Event::ServiceAccountCreated(e) = &recorded.event {
            self.accounts.insert(
                e.service_account_id,
                ServiceAccount {
                    id: e.service_account_id,
                    position: recorded.position,
                    stream_version: recorded.stream_version,
                    organization_id: e.organization_id,
                    api_key_id: e.api_key_id,
                    kind: e.kind,
                    group_id: e.group_id,
                    role_id: e.role_id,
                    on_call_role_id: e.on_call_role_id,
                    created_at: recorded.recorded_at,
                },
            );
            touched.touch(|| positioned(recorded.position, &e.service_account_id.to_string()));
        }
    }

    fn encode_row(&self, key: &str) -> Option<Vec<u8>> {
        let (position, id) = split_positioned(key)?;
        self.accounts.get(&Uuid::parse_str(id).ok()?).filter(|row| row.position == position).and_then(encode)
    }

    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError> {
        let account: ServiceAccount = decode(Self::NAME, key, value)?;
        self.accounts.insert(account.id, account);
        Ok(())
    }

    fn unload_row(&mut self, key: &str) {
        let Some((position, id)) = split_positioned(key) else { return };
        let Ok(id) = Uuid::parse_str(id) else { return };
        if self.accounts.get(&id).is_some_and(|row| row.position == position) {
            self.accounts.remove(&id);
        }
    }

    fn row_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.accounts.values().map(|a| positioned(a.position, &a.id.to_string())).collect();
        keys.sort();
        keys
    }
}
