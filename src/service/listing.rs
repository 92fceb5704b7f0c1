//! Listing keys (`GET /v1/api_keys`): filters, order and pages, as a pure function of the
//! state, the caller, the moment and the keys' last uses (kept outside the state). Only the caller's organization is walked, and only the
//! keys the caller may see are counted or shown.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use keyledger_projections::event::UserId;
use keyledger_projections::keys_view::ApiKey;
use keyledger_projections::{ApiKeyKind, State};
use uuid::Uuid;

use super::paging::{Page, Paging};
use super::rules::caller::Caller;
use super::rules::visibility::can_see;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeField {
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    Name,
    Kind,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
    LastUsedAt,
}

/// What a list request asks for; every filter present must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct ListQuery {
    pub kind: Option<ApiKeyKind>,
    /// Exact name.
    pub name: Option<String>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    pub user_id: Option<UserId>,
    /// Team keys of any of these teams.
    pub group_ids: Vec<Uuid>,
    pub role_id: Option<Uuid>,
    pub active: Option<bool>,
    pub expired: Option<bool>,
    pub times: Vec<(TimeField, Comparison, DateTime<Utc>)>,
    pub sort: SortField,
    pub descending: bool,
    pub paging: Paging,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            kind: None,
            name: None,
            search: None,
            user_id: None,
            group_ids: Vec::new(),
            role_id: None,
            active: None,
            expired: None,
            times: Vec::new(),
            sort: SortField::CreatedAt,
            descending: false,
            paging: Paging::default(),
        }
    }
}

/// A key as listed: with its last use.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub key: ApiKey,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A never-used key matches no `last_used_at` filter.
fn time_of(key: &ApiKey, last_used_at: Option<DateTime<Utc>>, field: TimeField) -> Option<DateTime<Utc>> {
    match field {
        TimeField::CreatedAt => Some(key.created_at),
        TimeField::ExpiresAt => Some(key.expires_at),
        TimeField::LastUsedAt => last_used_at,
    }
}

fn matches(query: &ListQuery, key: &ApiKey, last_used_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let expired = key.expires_at <= now;
    query.kind.is_none_or(|kind| key.kind == kind)
        && query.name.as_deref().is_none_or(|name| key.name == name)
        && query.search.as_deref().is_none_or(|s| key.name.to_lowercase().contains(&s.to_lowercase()))
        && query.user_id.is_none_or(|user| key.user_id == Some(user))
        && (query.group_ids.is_empty() || key.group_id.is_some_and(|g| query.group_ids.contains(&g)))
        && query.role_id.is_none_or(|role| key.role_id == Some(role))
        && query.active.is_none_or(|active| active != expired)
        && query.expired.is_none_or(|wanted| wanted == expired)
        && query.times.iter().all(|(field, comparison, at)| {
            time_of(key, last_used_at, *field).is_some_and(|t| match comparison {
                Comparison::Gt => t > *at,
                Comparison::Gte => t >= *at,
                Comparison::Lt => t < *at,
                Comparison::Lte => t <= *at,
            })
        })
}

/// Never-used keys sort after every used one, before them descending (as PostgreSQL orders
/// NULLs by default).
fn compare((a, a_used): (&ApiKey, Option<DateTime<Utc>>), (b, b_used): (&ApiKey, Option<DateTime<Utc>>), field: SortField) -> Ordering {
    match field {
        SortField::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
        SortField::Kind => a.kind.cmp(&b.kind),
        SortField::CreatedAt => a.created_at.cmp(&b.created_at),
        SortField::UpdatedAt => a.updated_at.cmp(&b.updated_at),
        SortField::ExpiresAt => a.expires_at.cmp(&b.expires_at),
        SortField::LastUsedAt => match (a_used, b_used) {
            (Some(a_used), Some(b_used)) => a_used.cmp(&b_used),
            (a_used, b_used) => b_used.is_some().cmp(&a_used.is_some()),
        },
    }
}

/// The requested page of the keys the caller may see; `last_used` tells when a key was last
/// used. Ties are broken by creation position, so pages never overlap or skip a key between
/// requests that change nothing.
pub fn list(
    state: &State,
    caller: &Caller,
    query: &ListQuery,
    now: DateTime<Utc>,
    last_used: &dyn Fn(Uuid) -> Option<DateTime<Utc>>,
) -> Page<Listed> {
    let Some(org) = state.directory.organization(caller.organization_id) else {
        return Page { items: Vec::new(), total: 0 };
    };
    let mut keys: Vec<(&ApiKey, Option<DateTime<Utc>>)> = state
        .keys
        .of_organization(caller.organization_id)
        .filter(|key| can_see(caller, org, key))
        .map(|key| (key, last_used(key.id)))
        .filter(|(key, last_used_at)| matches(query, key, *last_used_at, now))
        .collect();
    keys.sort_by(|a, b| {
        let order = compare(*a, *b, query.sort);
        let order = if query.descending { order.reverse() } else { order };
        order.then(a.0.position.cmp(&b.0.position))
    });
    query.paging.cut(keys).map(|(key, last_used_at)| Listed { key: key.clone(), last_used_at })
}

#[cfg(test)]
mod tests {
    use super::super::rules::caller::resolve;
    use super::super::rules::create_api_key::{self, NewApiKey};
    use super::super::rules::given::{attributes, now, Given, PLATFORM};
    use super::*;

    fn given_keys() -> Given {
        let mut given = Given::acme_and_globex();
        for (email, kind, name) in [
            ("carol@acme.test", "personal", "Deploy"),
            ("carol@acme.test", "personal", "backup"),
            ("dave@acme.test", "personal", "dave's"),
            ("carol@acme.test", "team", "ci"),
            ("hank@globex.test", "personal", "globex deploy"),
        ] {
            let group_id = (kind == "team").then(|| PLATFORM.to_owned());
            let cmd = given.create_by(email, NewApiKey { group_id, ..attributes(kind, name) });
            let decision = create_api_key::decide(&cmd, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}"));
            given.accept(decision);
        }
        given
    }

    fn names_with(given: &Given, email: &str, query: &ListQuery, last_used: &dyn Fn(Uuid) -> Option<DateTime<Utc>>) -> Vec<String> {
        let caller = resolve(&given.state, Given::login(email), now()).unwrap_or_else(|| panic!("{email}"));
        list(&given.state, &caller, query, now(), last_used).items.into_iter().map(|listed| listed.key.name).collect()
    }

    fn names(given: &Given, email: &str, query: &ListQuery) -> Vec<String> {
        names_with(given, email, query, &|_| None)
    }

    #[test]
    fn each_caller_lists_what_it_may_see_and_never_another_organization() {
        let given = given_keys();
        let query = ListQuery { search: Some("DEP".into()), ..ListQuery::default() };
        assert_eq!(names(&given, "alice@acme.test", &query), ["Deploy"], "search ignores case; Globex's key is not listed");
        let all = ListQuery { sort: SortField::Name, ..ListQuery::default() };
        assert_eq!(names(&given, "carol@acme.test", &all), ["backup", "ci", "Deploy", "login"]);
        assert_eq!(names(&given, "dave@acme.test", &all), ["dave's", "login"]);
    }

    #[test]
    fn pages_walk_every_key_once() {
        let given = given_keys();
        let mut seen = Vec::new();
        for page in 1..=4 {
            let query = ListQuery { paging: Paging { number: page, size: 3 }, sort: SortField::Name, descending: true, ..ListQuery::default() };
            seen.extend(names(&given, "alice@acme.test", &query));
        }
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(seen.len(), 11, "7 logins and 4 created keys of Acme: {seen:?}");
        assert_eq!(sorted.len(), seen.len() - 6, "the six other logins share the name \"login\"");
    }

    #[test]
    fn filters_combine() {
        let given = given_keys();
        let query = ListQuery { kind: Some(ApiKeyKind::Team), ..ListQuery::default() };
        assert_eq!(names(&given, "bob@acme.test", &query), ["ci"]);
        let query = ListQuery { user_id: Some(3), kind: Some(ApiKeyKind::Personal), name: Some("backup".into()), ..ListQuery::default() };
        assert_eq!(names(&given, "bob@acme.test", &query), ["backup"]);
        let query = ListQuery { expired: Some(true), ..ListQuery::default() };
        assert!(names(&given, "bob@acme.test", &query).is_empty());
        let query = ListQuery { times: vec![(TimeField::LastUsedAt, Comparison::Gt, now())], ..ListQuery::default() };
        assert!(names(&given, "bob@acme.test", &query).is_empty(), "no key has a last use yet");
    }

    #[test]
    fn last_uses_filter_and_sort_with_never_used_keys_last_ascending() {
        let given = given_keys();
        let carol = resolve(&given.state, Given::login("carol@acme.test"), now()).unwrap_or_else(|| panic!("carol"));
        let id_of = |name: &str| given.state.keys.of_organization(carol.organization_id).find(|k| k.name == name).map(|k| k.id);
        let (deploy, backup) = (id_of("Deploy"), id_of("backup"));
        let last_used = |id: Uuid| match Some(id) {
            id if id == deploy => Some(now() - chrono::TimeDelta::hours(2)),
            id if id == backup => Some(now() - chrono::TimeDelta::minutes(1)),
            _ => None,
        };
        let recent = ListQuery { times: vec![(TimeField::LastUsedAt, Comparison::Gte, now() - chrono::TimeDelta::hours(1))], ..ListQuery::default() };
        assert_eq!(names_with(&given, "carol@acme.test", &recent, &last_used), ["backup"]);
        let by_use = ListQuery { sort: SortField::LastUsedAt, ..ListQuery::default() };
        assert_eq!(names_with(&given, "carol@acme.test", &by_use, &last_used), ["Deploy", "backup", "login", "ci"]);
        let by_use = ListQuery { descending: true, ..by_use };
        assert_eq!(names_with(&given, "carol@acme.test", &by_use, &last_used), ["login", "ci", "backup", "Deploy"]);
        let page = list(&given.state, &carol, &by_use, now(), &last_used);
        assert_eq!(page.items.last().and_then(|listed| listed.last_used_at), Some(now() - chrono::TimeDelta::hours(2)), "each listed key carries its last use");
    }
}
