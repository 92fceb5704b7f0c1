//! Times `GET /v1/api_keys` (`service::listing::list`, the pure function behind it) on a
//! 1 M-key keys view built in memory, and measures what the keys view costs in resident
//! memory beyond its keys:
//!
//! ```sh
//! cargo run --release -p keyledger-bench --bin list-scale -- [KEYS]
//! ```
//!
//! One organization of 1000 users in 20 teams (the `generate-ledger` directory); KEYS keys
//! (default 1 000 000), one created per millisecond: 2 % team keys (of team `(n / 50) % 20`,
//! created by its first admin), 0.2 % organization keys, the rest personal keys spread over
//! the users. Each query runs until it has taken half a second (at most 200 times); the
//! median is printed. `full scan` rows are what listing did before it had indexes (every key
//! of the organization, visibility, filters, a full sort, then the page), timed in the same
//! run as the baseline.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, TimeZone, Utc};
use keyledger::service::listing::{list, ListQuery, SortField};
use keyledger::service::paging::Paging;
use keyledger::service::rules::caller::{resolve, Caller};
use keyledger::service::rules::directory::{plan, DirectoryFile, TeamSpec, UserSpec};
use keyledger::service::rules::visibility::can_see;
use keyledger_projections::event::ApiKeyCreated;
use keyledger_projections::keys_view::{ApiKey, KeysView};
use keyledger_projections::{Actor, ApiKeyKind, Event, Projection, RecordedEvent, State};
use uuid::Uuid;

const USERS: u64 = 1000;
const TEAMS: u64 = 20;
/// A member of team `TEAM_ADMIN % 20` and one of its two admins, with role `user`.
const TEAM_ADMIN: u64 = 3;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

fn directory() -> DirectoryFile {
    DirectoryFile {
        organization: "Bench".into(),
        grace_period: true,
        roles: Vec::new(),
        on_call_roles: Vec::new(),
        users: (1..=USERS)
            .map(|id| UserSpec {
                id,
                email: format!("user{id}@bench.test"),
                role: if id == 1 { "owner".into() } else { "user".into() },
                on_call_role: None,
            })
            .collect(),
        teams: (0..TEAMS)
            .map(|t| {
                let members: Vec<u64> = (1..=USERS).filter(|u| u % TEAMS == t).collect();
                TeamSpec {
                    id: Uuid::from_u128(0x7ea0 + u128::from(t)),
                    slug: format!("team-{t}"),
                    name: format!("Team {t}"),
                    admin_ids: members.iter().take(2).copied().collect(),
                    user_ids: members,
                }
            })
            .collect(),
    }
}

/// The `n`th key: its user owns it (personal) or created it (team: the team's first admin).
fn key_created(n: u64, organization_id: Uuid) -> ApiKeyCreated {
    let (kind, user, group_id) = if n % 50 == 25 {
        let team = (n / 50) % TEAMS;
        (ApiKeyKind::Team, if team == 0 { TEAMS } else { team }, Some(Uuid::from_u128(0x7ea0 + u128::from(team))))
    } else if n % 500 == 7 {
        (ApiKeyKind::Organization, 1, None)
    } else {
        (ApiKeyKind::Personal, n % USERS + 1, None)
    };
    ApiKeyCreated {
        api_key_id: Uuid::from_u128(u128::from(n) + 1),
        organization_id,
        kind,
        name: format!("key {n}"),
        description: n.is_multiple_of(3).then(|| format!("generated key number {n}")),
        user_id: Some(user),
        group_id,
        role_id: None,
        on_call_role_id: None,
        service_account_id: (kind != ApiKeyKind::Personal).then(|| Uuid::from_u128(u128::from(n) << 64)),
        token_digest: blake3::hash(&n.to_be_bytes()).to_hex().to_string(),
        expires_at: start() + chrono::Duration::days(400),
    }
}

fn recorded(position: u64, at: DateTime<Utc>, event: Event) -> RecordedEvent {
    RecordedEvent {
        position,
        stream: event.stream(),
        stream_version: 1,
        recorded_at: at,
        actor: Actor::Operator,
        request_id: "bench".into(),
        client_request_id: None,
        event,
    }
}

/// Every event of the benchmark ledger, in order: the directory, then `keys` keys.
fn events(keys: u64) -> anyhow::Result<(Uuid, impl Iterator<Item = RecordedEvent>)> {
    let mut next = 0u128;
    let mut ids = || {
        next += 1;
        Uuid::from_u128(0xd1 << 64 | next)
    };
    let directory = plan(&directory(), &State::default(), &mut ids)?;
    let Some(organization_id) = directory.first().map(Event::organization_id) else { bail!("the directory plan is empty") };
    let first_key = directory.len() as u64 + 1;
    let directory = directory.into_iter().enumerate().map(|(i, e)| recorded(i as u64 + 1, start(), e));
    let keys = (0..keys).map(move |n| {
        let at = start() + chrono::Duration::milliseconds(n as i64 + 1);
        recorded(first_key + n, at, Event::ApiKeyCreated(key_created(n, organization_id)))
    });
    Ok((organization_id, directory.chain(keys)))
}

fn resident_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS in /proc/self/status")?;
    let kib: u64 = line.split_whitespace().nth(1).context("VmRSS has no value")?.parse()?;
    Ok(kib * 1024)
}

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Resident memory of the keys view folded from the ledger, and of a bare map of the same
/// keys: the difference is what the view keeps beside its keys (its indexes).
fn measure_memory(keys: u64) -> anyhow::Result<()> {
    let before = resident_bytes()? as i64;
    let mut view = KeysView::default();
    let mut touched = Vec::new();
    for event in events(keys)?.1 {
        view.apply(&event, &mut touched);
        touched.clear();
    }
    let with_view = resident_bytes()? as i64;
    let bare: HashMap<Uuid, ApiKey> = view.iter().map(|k| (k.id, k.clone())).collect();
    let with_bare = resident_bytes()? as i64;
    let (view_bytes, bare_bytes) = (with_view - before, with_bare - with_view);
    println!("| keys view, resident | {} |", mib(view_bytes));
    println!("| bare `HashMap<Uuid, ApiKey>` of the same keys, resident | {} |", mib(bare_bytes));
    println!("| keys view beyond its keys (indexes) | {} |", mib(view_bytes - bare_bytes));
    drop((view, bare));
    Ok(())
}

/// Listing before indexes: every key of the organization, then visibility, a full sort and
/// the page (only the filter-free default order is needed for the baseline).
fn full_scan(state: &State, caller: &Caller, query: &ListQuery) -> usize {
    let Some(org) = state.directory.organization(caller.organization_id) else { return 0 };
    let mut keys: Vec<&ApiKey> =
        state.keys.iter().filter(|k| k.organization_id == caller.organization_id && can_see(caller, org, k)).collect();
    keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.position.cmp(&b.position)));
    let start = query.paging.number.saturating_sub(1) * query.paging.size;
    keys.iter().skip(start).take(query.paging.size).count()
}

fn median(mut run: impl FnMut()) -> Duration {
    let mut times = Vec::new();
    let began = Instant::now();
    while times.len() < 200 && (times.len() < 3 || began.elapsed() < Duration::from_millis(500)) {
        let t = Instant::now();
        run();
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() -> anyhow::Result<()> {
    let keys: u64 = std::env::args().nth(1).map(|k| k.parse()).transpose().context("KEYS must be a number")?.unwrap_or(1_000_000);
    println!("| Memory, {keys} keys | |\n|---|---:|");
    measure_memory(keys)?;

    let built = Instant::now();
    let (organization_id, ledger) = events(keys)?;
    let mut state = State::default();
    for event in ledger {
        state.fold([&event]);
    }
    eprintln!("state of {} keys folded in {:.1} s", state.keys.len(), built.elapsed().as_secs_f64());
    let now = start() + chrono::Duration::days(30);
    let login = |user: u64| {
        (0..keys)
            .find(|&n| key_created(n, organization_id).kind == ApiKeyKind::Personal && n % USERS + 1 == user)
            .map(|n| Uuid::from_u128(u128::from(n) + 1))
    };
    let caller = |user: u64| login(user).and_then(|id| resolve(&state, id, now)).with_context(|| format!("user {user} has no login key"));
    let (owner, team_admin) = (caller(1)?, caller(TEAM_ADMIN)?);

    let default = ListQuery::default();
    let cases: Vec<(&str, &Caller, ListQuery)> = vec![
        ("owner, default order", &owner, default.clone()),
        ("owner, `sort=-created_at`", &owner, ListQuery { descending: true, ..default.clone() }),
        ("owner, `filter[kind]=team`", &owner, ListQuery { kind: Some(ApiKeyKind::Team), ..default.clone() }),
        ("owner, `filter[user_id]=42`", &owner, ListQuery { user_id: Some(42), ..default.clone() }),
        ("non-admin user (own keys + one team's), default order", &team_admin, default.clone()),
        ("owner, `filter[search]=key 12` (walks)", &owner, ListQuery { search: Some("key 12".into()), ..default.clone() }),
        ("owner, `sort=name` (walks)", &owner, ListQuery { sort: SortField::Name, ..default.clone() }),
    ];
    println!("\n| `listing::list`, {keys} keys, page size 50 | page 1 | page 100 | total_count |\n|---|---:|---:|---:|");
    let no_uses = |_: Uuid| None;
    for (label, caller, query) in &cases {
        let at = |number| ListQuery { paging: Paging { number, size: 50 }, ..query.clone() };
        let (first, hundredth) = (at(1), at(100));
        let total = list(&state, caller, &first, now, &no_uses).total;
        let t1 = median(|| {
            black_box(list(&state, caller, &first, now, &no_uses));
        });
        let t100 = median(|| {
            black_box(list(&state, caller, &hundredth, now, &no_uses));
        });
        println!("| {label} | {} | {} | {total} |", micros(t1), micros(t100));
    }
    for (label, caller) in [("owner", &owner), ("non-admin user", &team_admin)] {
        let t1 = median(|| {
            black_box(full_scan(&state, caller, &default));
        });
        let t100 = median(|| {
            black_box(full_scan(&state, caller, &ListQuery { paging: Paging { number: 100, size: 50 }, ..default.clone() }));
        });
        println!("| full scan baseline: {label}, default order | {} | {} | |", micros(t1), micros(t100));
    }
    Ok(())
}
