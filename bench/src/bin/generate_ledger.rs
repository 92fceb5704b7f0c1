//! Generates a large, realistic ledger for the audit and rebuild benchmarks:
//!
//! ```sh
//! cargo run --release -p keyledger-bench --bin generate-ledger -- DIR KEYS [USERS]
//! ```
//!
//! One organization with USERS users (default 1000) across 20 teams, then KEYS personal keys
//! spread over the users, created through the real writer (every rule applies, every batch
//! is a durable commit) in batches of 1000, so the log, the hash chain and the projection
//! journal look exactly like a served ledger's.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{Duration, Utc};
use keyledger::ledger::{SledStorage, Storage};
use keyledger::service::recovery::load_state;
use keyledger::service::rules::create_api_key::{CreateApiKey, NewApiKey, Requester};
use keyledger::service::rules::directory::{DirectoryFile, TeamSpec, UserSpec};
use keyledger::service::token::TokenFormat;
use keyledger::service::writer::{Command, Provenance, Writer};
use uuid::Uuid;

const BATCH: usize = 1000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(keys)) = (args.get(1), args.get(2)) else {
        bail!("usage: generate-ledger DIR KEYS [USERS]");
    };
    let keys: usize = keys.parse().context("KEYS must be a number")?;
    let users: u64 = args.get(3).map(|u| u.parse()).transpose().context("USERS must be a number")?.unwrap_or(1000).max(1);

    let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(std::path::Path::new(dir))?);
    let mut writer = Writer::new(Arc::clone(&storage), load_state(&*storage)?)?;
    if writer.head().position > 0 {
        bail!("{dir} already holds a ledger; give an empty directory");
    }
    let directory = DirectoryFile {
        organization: "Bench".into(),
        grace_period: true,
        roles: Vec::new(),
        on_call_roles: Vec::new(),
        users: (1..=users)
            .map(|id| UserSpec {
                id,
                email: format!("user{id}@bench.test"),
                role: if id == 1 { "owner".into() } else { "user".into() },
                on_call_role: None,
            })
            .collect(),
        teams: (0..20)
            .map(|t| {
                let members: Vec<u64> = (1..=users).filter(|u| u % 20 == t).collect();
                TeamSpec {
                    id: Uuid::new_v4(),
                    slug: format!("team-{t}"),
                    name: format!("Team {t}"),
                    admin_ids: members.iter().take(2).copied().collect(),
                    user_ids: members,
                }
            })
            .collect(),
    };
    writer.execute(vec![(Command::ApplyDirectory(vec![directory]), "generate".into())]).into_iter().collect::<Result<Vec<_>, _>>()?;

    let tokens = TokenFormat::new("rootly")?;
    let started = Instant::now();
    let expires_at = (Utc::now() + Duration::days(365)).to_rfc3339();
    let mut created = 0;
    while created < keys {
        let batch: Vec<(Command, Provenance)> = (created..keys.min(created + BATCH))
            .map(|n| {
                let user = (n as u64 % users) + 1;
                let command = Command::CreateApiKey(CreateApiKey {
                    requester: Requester::Operator { organization: "Bench".into(), email: format!("user{user}@bench.test") },
                    api_key_id: Uuid::new_v4(),
                    service_account_id: Uuid::new_v4(),
                    token_digest: tokens.mint().map(|t| t.digest()).unwrap_or_else(|_| blake3::hash(&n.to_be_bytes())),
                    attributes: NewApiKey {
                        name: Some(format!("key {n}")),
                        kind: Some("personal".into()),
                        expires_at: Some(expires_at.clone()),
                        description: (n % 3 == 0).then(|| format!("generated key number {n}")),
                        ..NewApiKey::default()
                    },
                    // Generated ledgers are as large as asked, whatever `serve` would allow.
                    max_keys_per_scope: usize::MAX,
                });
                (command, format!("generate-{n}").into())
            })
            .collect();
        created += batch.len();
        for answer in writer.execute(batch) {
            answer?;
        }
        if created % 100_000 == 0 || created == keys {
            eprintln!("{created} keys ({:.0}/s)", created as f64 / started.elapsed().as_secs_f64());
        }
    }
    eprintln!("ledger in {dir}: {} events", writer.head().position);
    Ok(())
}
