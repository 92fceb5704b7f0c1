//! Listing keys (`GET /v1/api_keys`): filters, order and pages, as a pure function of the
//! state, the caller, the moment and the keys' last uses (kept outside the state). Only the
//! slices of the caller's organization that can hold a listed key are walked, and only the
//! keys the caller may see are counted or shown.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyledger_projections::directory::Organization;
use keyledger_projections::event::UserId;
use keyledger_projections::keys_view::{ApiKey, KeysView, Slice};
use keyledger_projections::{ApiKeyKind, State};
use uuid::Uuid;

use super::paging::{Page, Paging};
use super::rules::caller::Caller;
use super::rules::visibility::{can_see, visible_parts, Part};

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

/// Whether `key` passes every filter of `query`; `search` is the query's search, lowercased
/// once for all keys.
fn matches(query: &ListQuery, search: Option<&str>, key: &ApiKey, last_used_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let expired = key.expires_at <= now;
    query.kind.is_none_or(|kind| key.kind == kind)
        && query.name.as_deref().is_none_or(|name| key.name == name)
        && search.is_none_or(|s| key.name.to_lowercase().contains(s))
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
        // Lowercased a character at a time: a sort compares each name many times, and
        // allocating a lowercase copy per comparison was most of a sort by name's cost.
        SortField::Name => a.name.chars().flat_map(char::to_lowercase).cmp(b.name.chars().flat_map(char::to_lowercase)),
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
/// requests that change nothing. [`gather`] then [`page`]; the service runs the first under
/// the state's lock and the second after it.
pub fn list(
    state: &State,
    caller: &Caller,
    query: &ListQuery,
    now: DateTime<Utc>,
    last_used: &dyn Fn(Uuid) -> Option<DateTime<Utc>>,
) -> Page<Listed> {
    page(gather(state, caller, query), query, now, last_used)
}

/// What a list takes from the state: the keys it may show, each a shared pointer, so that
/// filtering, sorting and rendering run after the state's lock is let go and no writer, and
/// no reader queued behind a writer, waits for them.
pub enum Gathered {
    /// The page itself, when the keys need counting, not looking at (creation order, no
    /// filter the slices do not already answer): the walk stopped at the page.
    Page(Page<Arc<ApiKey>>),
    /// Every key the caller may see that the query can match, in creation order (newest
    /// first for `-created_at`), for [`page`] to filter and sort.
    Candidates(Vec<Arc<ApiKey>>),
}

/// The keys of the caller's organization a query can list. Nothing sorts the organization:
/// the keys are walked from the narrowest slices of the keys view that hold every key the
/// caller may see and the query can match; in creation order, with nothing else to filter,
/// the walk stops once the page is full and the total is the slices' count.
pub fn gather(state: &State, caller: &Caller, query: &ListQuery) -> Gathered {
    let Some(org) = state.directory.organization(caller.organization_id) else {
        return Gathered::Page(Page { items: Vec::new(), total: 0 });
    };
    let candidates = Candidates::of(&state.keys, caller, org, query);
    if query.sort == SortField::CreatedAt && candidates.exact {
        let skip = query.paging.number.saturating_sub(1).saturating_mul(query.paging.size);
        let items = candidates.in_creation_order(query.descending, skip).take(query.paging.size).cloned().collect();
        return Gathered::Page(Page { items, total: candidates.count() });
    }
    let descending = query.sort == SortField::CreatedAt && query.descending;
    Gathered::Candidates(candidates.in_creation_order(descending, 0).filter(|key| can_see(caller, org, key)).cloned().collect())
}

/// The requested page of what [`gather`] took: the filters, then creation order or, for
/// any other sort, the best keys kept in a heap as large as the pages up to the one asked
/// for.
pub fn page(gathered: Gathered, query: &ListQuery, now: DateTime<Utc>, last_used: &dyn Fn(Uuid) -> Option<DateTime<Utc>>) -> Page<Listed> {
    let listed = |key: &ApiKey| Listed { key: key.clone(), last_used_at: last_used(key.id) };
    let candidates = match gathered {
        Gathered::Page(page) => return Page { items: page.items.iter().map(|key| listed(key)).collect(), total: page.total },
        Gathered::Candidates(candidates) => candidates,
    };
    let search = query.search.as_deref().map(str::to_lowercase);
    let wanted = |key: &&Arc<ApiKey>| matches(query, search.as_deref(), key, last_used(key.id), now);
    let skip = query.paging.number.saturating_sub(1).saturating_mul(query.paging.size);
    let (keys, total) = match query.sort {
        SortField::CreatedAt => {
            let mut total = 0;
            let mut page = Vec::new();
            for key in candidates.iter().filter(wanted) {
                if total >= skip && page.len() < query.paging.size {
                    page.push(key);
                }
                total += 1;
            }
            (page, total)
        }
        field => best(candidates.iter().filter(wanted), field, query, last_used, skip),
    };
    Page { items: keys.into_iter().map(|key| listed(key)).collect(), total }
}

/// Where the keys a query can list are: disjoint slices of the caller's organization, and the
/// caller's own key when no slice holds it (it may always see itself).
struct Candidates<'a> {
    view: &'a KeysView,
    organization_id: Uuid,
    slices: Vec<Slice>,
    own_key: Option<&'a Arc<ApiKey>>,
    /// Every key of the slices is visible and matches: they need counting, not looking at.
    exact: bool,
}

const KINDS: [ApiKeyKind; 3] = [ApiKeyKind::Personal, ApiKeyKind::Team, ApiKeyKind::Organization];

impl<'a> Candidates<'a> {
    fn of(view: &'a KeysView, caller: &Caller, org: &Organization, query: &ListQuery) -> Self {
        let visible = visible_parts(caller, org);
        let own_key = view
            .shared(caller.api_key_id)
            .filter(|key| key.organization_id == caller.organization_id && !visible.iter().any(|part| part.contains(key)));
        let mut teams = query.group_ids.clone();
        teams.sort_unstable();
        teams.dedup();
        let parts = visible.iter().flat_map(|part| narrowed(part, query, &teams));
        let mut slices = Vec::new();
        let mut exact = query.name.is_none()
            && query.search.is_none()
            && query.role_id.is_none()
            && query.active.is_none()
            && query.expired.is_none()
            && query.times.is_empty();
        for part in parts {
            let kinds = part.kind.map_or(KINDS.to_vec(), |kind| vec![kind]);
            let by_user = |user| kinds.iter().map(move |kind| Slice::User(*kind, user));
            let by_team = |team| kinds.iter().map(move |kind| Slice::Team(*kind, team));
            match (part.user_id, part.group_id) {
                (None, None) => slices.push(part.kind.map_or(Slice::All, Slice::Kind)),
                (Some(user), None) => slices.extend(by_user(user)),
                (None, Some(team)) => slices.extend(by_team(team)),
                (Some(user), Some(team)) => {
                    // Only a walk can tell which keys are in both: walk the smaller.
                    exact = false;
                    let size = |slices: Vec<Slice>| (slices.iter().map(|s| view.count(caller.organization_id, *s)).sum::<usize>(), slices);
                    let (user_keys, team_keys) = (size(by_user(user).collect()), size(by_team(team).collect()));
                    let narrowest = if user_keys.0 <= team_keys.0 { user_keys.1 } else { team_keys.1 };
                    for slice in narrowest {
                        if !slices.contains(&slice) {
                            slices.push(slice);
                        }
                    }
                }
            }
        }
        let own_key = own_key.filter(|key| !exact || narrowed(&Part::default(), query, &teams).iter().any(|part| part.contains(key)));
        Candidates { view, organization_id: caller.organization_id, slices, own_key, exact }
    }

    fn count(&self) -> usize {
        self.slices.iter().map(|slice| self.view.count(self.organization_id, *slice)).sum::<usize>() + usize::from(self.own_key.is_some())
    }

    /// The candidates, each once, by `created_at` (descending: newest first), ties always by
    /// position, the first `skip` left out: from one slice by skipping whole chunks, from
    /// several by merging their walks (slices picked for a user and a team may overlap).
    fn in_creation_order(&self, descending: bool, skip: usize) -> Box<dyn Iterator<Item = &'a Arc<ApiKey>> + 'a> {
        let (view, organization_id) = (self.view, self.organization_id);
        match (self.slices.as_slice(), self.own_key) {
            ([slice], None) if !descending => Box::new(view.oldest_first(organization_id, *slice, skip)),
            ([slice], None) => {
                // The key `skip` from the newest may share its `created_at` with newer ones,
                // which come after it in this order: start the walk at the newest of them.
                let count = view.count(organization_id, *slice);
                let mut from = view.oldest_first(organization_id, *slice, count.saturating_sub(skip.saturating_add(1)));
                let tied =
                    from.next().filter(|_| skip < count).map_or(0, |key| from.take_while(|k| k.created_at == key.created_at).count());
                Box::new(TiesOldestFirst::new(view.newest_first(organization_id, *slice, skip - tied)).skip(tied))
            }
            (slices, own_key) => {
                let walks = slices.iter().map(|slice| -> Box<dyn Iterator<Item = &'a Arc<ApiKey>> + 'a> {
                    if descending {
                        Box::new(view.newest_first(organization_id, *slice, 0))
                    } else {
                        Box::new(view.oldest_first(organization_id, *slice, 0))
                    }
                });
                let merged = Merged::new(
                    walks.chain(own_key.map(|key| -> Box<dyn Iterator<Item = &'a Arc<ApiKey>> + 'a> { Box::new(std::iter::once(key)) })),
                    descending,
                );
                if descending {
                    Box::new(TiesOldestFirst::new(merged).skip(skip))
                } else {
                    Box::new(merged.skip(skip))
                }
            }
        }
    }
}

/// The parts of `part` a query with the kind, user and (deduplicated) `teams` filters can
/// match: none when they contradict it, one per team asked for.
fn narrowed(part: &Part, query: &ListQuery, teams: &[Uuid]) -> Vec<Part> {
    fn both<T: PartialEq + Copy>(a: Option<T>, b: Option<T>) -> Option<Option<T>> {
        match (a, b) {
            (Some(a), Some(b)) if a != b => None,
            (a, b) => Some(a.or(b)),
        }
    }
    let (Some(kind), Some(user_id)) = (both(part.kind, query.kind), both(part.user_id, query.user_id)) else {
        return Vec::new();
    };
    if teams.is_empty() {
        return vec![Part { kind, user_id, group_id: part.group_id }];
    }
    teams.iter().filter_map(|team| both(part.group_id, Some(*team))).map(|group_id| Part { kind, user_id, group_id }).collect()
}

/// Several walks in creation order as one (each ordered by `created_at`, then position;
/// all ascending, or all descending), a key in more than one walk once.
struct Merged<'a> {
    walks: Vec<std::iter::Peekable<Box<dyn Iterator<Item = &'a Arc<ApiKey>> + 'a>>>,
    descending: bool,
    last: Option<u64>,
}

impl<'a> Merged<'a> {
    fn new(walks: impl Iterator<Item = Box<dyn Iterator<Item = &'a Arc<ApiKey>> + 'a>>, descending: bool) -> Self {
        Merged { walks: walks.map(Iterator::peekable).collect(), descending, last: None }
    }
}

impl<'a> Iterator for Merged<'a> {
    type Item = &'a Arc<ApiKey>;

    fn next(&mut self) -> Option<&'a Arc<ApiKey>> {
        loop {
            let descending = self.descending;
            let heads = self.walks.iter_mut().enumerate().filter_map(|(i, walk)| walk.peek().map(|key| (i, key.creation())));
            let (next, _) = heads.reduce(|a, b| if (b.1 < a.1) != descending { b } else { a })?;
            let key = self.walks.get_mut(next).and_then(Iterator::next)?;
            if self.last != Some(key.position) {
                self.last = Some(key.position);
                return Some(key);
            }
        }
    }
}

/// A newest-first walk with the keys that share a `created_at` turned oldest first, as the
/// list orders ties (by position) in both directions.
struct TiesOldestFirst<'a, I: Iterator<Item = &'a Arc<ApiKey>>> {
    walk: std::iter::Peekable<I>,
    /// The current run of ties, newest first: popped from the back.
    ties: Vec<&'a Arc<ApiKey>>,
}

impl<'a, I: Iterator<Item = &'a Arc<ApiKey>>> TiesOldestFirst<'a, I> {
    fn new(walk: I) -> Self {
        TiesOldestFirst { walk: walk.peekable(), ties: Vec::new() }
    }
}

impl<'a, I: Iterator<Item = &'a Arc<ApiKey>>> Iterator for TiesOldestFirst<'a, I> {
    type Item = &'a Arc<ApiKey>;

    fn next(&mut self) -> Option<&'a Arc<ApiKey>> {
        if self.ties.is_empty() {
            let first = self.walk.next()?;
            self.ties.push(first);
            while let Some(tied) = self.walk.next_if(|key| key.created_at == first.created_at) {
                self.ties.push(tied);
            }
        }
        self.ties.pop()
    }
}

/// One page of `keys` in the list's order for a sort other than creation, and how many keys
/// there are: only the best `skip` + page size are ever kept, in a max-heap (the worst on top).
fn best<'a>(
    keys: impl Iterator<Item = &'a Arc<ApiKey>>,
    field: SortField,
    query: &ListQuery,
    last_used: &dyn Fn(Uuid) -> Option<DateTime<Utc>>,
    skip: usize,
) -> (Vec<&'a Arc<ApiKey>>, usize) {
    let keep = skip.saturating_add(query.paging.size);
    let mut heap = BinaryHeap::new();
    let mut total = 0;
    for key in keys {
        total += 1;
        let ranked = Ranked { key, last_used_at: last_used(key.id), field, descending: query.descending };
        if heap.len() < keep {
            heap.push(ranked);
        } else if heap.peek().is_some_and(|worst| ranked < *worst) {
            heap.pop();
            heap.push(ranked);
        }
    }
    let page = heap.into_sorted_vec().into_iter().skip(skip).map(|ranked| ranked.key).collect();
    (page, total)
}

/// A key where the list puts it: by the sort field, ties by creation position.
struct Ranked<'a> {
    key: &'a Arc<ApiKey>,
    last_used_at: Option<DateTime<Utc>>,
    field: SortField,
    descending: bool,
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let order = compare((self.key, self.last_used_at), (other.key, other.last_used_at), self.field);
        let order = if self.descending { order.reverse() } else { order };
        order.then(self.key.position.cmp(&other.key.position))
    }
}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked<'_> {}

#[cfg(test)]
mod tests {
    use super::super::rules::caller::resolve;
    use super::super::rules::create_api_key::{self, NewApiKey};
    use super::super::rules::given::{attributes, now, Given, PLATFORM};
    use super::super::rules::revoke_api_key::revocation;
    use super::*;
    use keyledger_projections::event::{ApiKeyUpdated, RevocationReason};
    use keyledger_projections::{Actor, Event, RecordedEvent};

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
            let query =
                ListQuery { paging: Paging { number: page, size: 3 }, sort: SortField::Name, descending: true, ..ListQuery::default() };
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
        let recent = ListQuery {
            times: vec![(TimeField::LastUsedAt, Comparison::Gte, now() - chrono::TimeDelta::hours(1))],
            ..ListQuery::default()
        };
        assert_eq!(names_with(&given, "carol@acme.test", &recent, &last_used), ["backup"]);
        let by_use = ListQuery { sort: SortField::LastUsedAt, ..ListQuery::default() };
        assert_eq!(names_with(&given, "carol@acme.test", &by_use, &last_used), ["Deploy", "backup", "login", "ci"]);
        let by_use = ListQuery { descending: true, ..by_use };
        assert_eq!(names_with(&given, "carol@acme.test", &by_use, &last_used), ["login", "ci", "backup", "Deploy"]);
        let page = list(&given.state, &carol, &by_use, now(), &last_used);
        assert_eq!(
            page.items.last().and_then(|listed| listed.last_used_at),
            Some(now() - chrono::TimeDelta::hours(2)),
            "each listed key carries its last use"
        );
    }

    /// The list as it was before indexes: every key of the organization that the caller may
    /// see and the query matches, fully sorted, then cut. The reference for the walks.
    fn listed_by_scan(
        state: &State,
        caller: &Caller,
        query: &ListQuery,
        last_used: &dyn Fn(Uuid) -> Option<DateTime<Utc>>,
    ) -> Page<Listed> {
        let Some(org) = state.directory.organization(caller.organization_id) else {
            return Page { items: Vec::new(), total: 0 };
        };
        let mut keys: Vec<(&ApiKey, Option<DateTime<Utc>>)> = state
            .keys
            .iter()
            .filter(|key| key.organization_id == caller.organization_id && can_see(caller, org, key))
            .map(|key| (key, last_used(key.id)))
            .filter(|(key, last_used_at)| {
                matches(query, query.search.as_deref().map(str::to_lowercase).as_deref(), key, *last_used_at, now())
            })
            .collect();
        keys.sort_by(|a, b| {
            let order = compare(*a, *b, query.sort);
            let order = if query.descending { order.reverse() } else { order };
            order.then(a.0.position.cmp(&b.0.position))
        });
        query.paging.cut(keys).map(|(key, last_used_at)| Listed { key: key.clone(), last_used_at })
    }

    /// A deterministic draw below `bound` (no randomness crate here).
    fn draw(seed: &mut u64, bound: usize) -> usize {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 33) % bound.max(1) as u64) as usize
    }

    fn one_of<T: Copy>(seed: &mut u64, items: &[T]) -> T {
        items[draw(seed, items.len())]
    }

    /// The fixture (with a team and an organization key that act as callers), then random
    /// keys of every kind, user and team, created at a few instants out of position order,
    /// some of them renamed or revoked.
    fn a_random_ledger(seed: &mut u64) -> Given {
        let mut given = given_keys();
        let cmd = given.create_by("alice@acme.test", attributes("organization", "acme wide"));
        let decision = create_api_key::decide(&cmd, &given.state, now()).unwrap_or_else(|e| panic!("{e:?}"));
        given.accept(decision);
        let orgs: Vec<_> = given.state.directory.organizations().cloned().collect();
        let mut created = Vec::new();
        for n in 0..draw(seed, 120) {
            let org = &orgs[usize::from(draw(seed, 5) == 0)];
            let users: Vec<UserId> = org.users.keys().copied().collect();
            let teams: Vec<Uuid> = org.teams.keys().copied().collect();
            let roles: Vec<Uuid> = org.roles.keys().copied().collect();
            let kind = one_of(seed, &[ApiKeyKind::Personal, ApiKeyKind::Personal, ApiKeyKind::Team, ApiKeyKind::Organization]);
            let key = keyledger_projections::event::ApiKeyCreated {
                api_key_id: Uuid::from_u128(0xabc << 64 | n as u128),
                organization_id: org.id,
                kind,
                name: format!("{} {}", one_of(seed, &["deploy", "Backup", "ci", "DEPLOY bot"]), draw(seed, 3)),
                description: None,
                user_id: (kind == ApiKeyKind::Personal || draw(seed, 3) > 0).then(|| one_of(seed, &users)),
                group_id: (kind == ApiKeyKind::Team && !teams.is_empty()).then(|| one_of(seed, &teams)),
                role_id: (kind == ApiKeyKind::Organization && draw(seed, 2) == 0).then(|| one_of(seed, &roles)),
                on_call_role_id: None,
                service_account_id: None,
                token_digest: format!("{n}"),
                expires_at: now() + chrono::TimeDelta::hours(draw(seed, 48) as i64 - 12),
            };
            created.push(key.clone());
            record_at(&mut given, Event::ApiKeyCreated(key), draw(seed, 4));
        }
        for key in created {
            let events = match (draw(seed, 8), given.state.keys.get(key.api_key_id)) {
                (0, Some(stored)) => revocation(stored, RevocationReason::Requested),
                (1, _) => vec![Event::ApiKeyUpdated(ApiKeyUpdated {
                    api_key_id: key.api_key_id,
                    organization_id: key.organization_id,
                    kind: key.kind,
                    user_id: key.user_id,
                    group_id: key.group_id,
                    name: format!("renamed {}", draw(seed, 5)),
                    previous_name: key.name,
                    description: None,
                    expires_at: now() + chrono::TimeDelta::hours(draw(seed, 48) as i64 - 12),
                })],
                _ => continue,
            };
            for event in events {
                record_at(&mut given, event, 5);
            }
        }
        given
    }

    /// Folds `event` in, recorded `hours` hours before [`now`].
    fn record_at(given: &mut Given, event: Event, hours: usize) {
        let recorded = RecordedEvent {
            position: given.state.position + 1,
            stream: event.stream(),
            stream_version: 1,
            recorded_at: now() - chrono::TimeDelta::hours(hours as i64),
            actor: Actor::Operator,
            request_id: "random".into(),
            client_request_id: None,
            event,
        };
        given.state.fold([&recorded]);
    }

    fn a_random_query(seed: &mut u64, state: &State) -> ListQuery {
        let kinds = [None, None, Some(ApiKeyKind::Personal), Some(ApiKeyKind::Team), Some(ApiKeyKind::Organization)];
        let teams: Vec<Uuid> = state.directory.organizations().flat_map(|org| org.teams.keys().copied()).chain([Uuid::nil()]).collect();
        let at = now() - chrono::TimeDelta::hours(draw(seed, 6) as i64) + chrono::TimeDelta::hours(draw(seed, 3) as i64 * 12);
        let time = (
            one_of(seed, &[TimeField::CreatedAt, TimeField::ExpiresAt, TimeField::LastUsedAt]),
            one_of(seed, &[Comparison::Gt, Comparison::Gte, Comparison::Lt, Comparison::Lte]),
            at,
        );
        let sorts = [
            SortField::CreatedAt,
            SortField::CreatedAt,
            SortField::CreatedAt,
            SortField::Name,
            SortField::Kind,
            SortField::UpdatedAt,
            SortField::ExpiresAt,
            SortField::LastUsedAt,
        ];
        let rarely = |seed: &mut u64| draw(seed, 6) == 0;
        ListQuery {
            kind: one_of(seed, &kinds),
            name: rarely(seed).then(|| "ci 1".to_owned()),
            search: rarely(seed).then(|| "dep".to_owned()),
            user_id: (draw(seed, 3) == 0).then(|| draw(seed, 8) as UserId),
            group_ids: if draw(seed, 3) == 0 { (0..=draw(seed, 2)).map(|_| one_of(seed, &teams)).collect() } else { Vec::new() },
            role_id: rarely(seed).then(|| state.directory.organizations().flat_map(|o| o.roles.keys().copied()).next().unwrap_or_default()),
            active: rarely(seed).then(|| draw(seed, 2) == 0),
            expired: rarely(seed).then(|| draw(seed, 2) == 0),
            times: if rarely(seed) { vec![time] } else { Vec::new() },
            sort: one_of(seed, &sorts),
            descending: draw(seed, 2) == 0,
            paging: Paging { number: 1 + draw(seed, 4), size: 1 + draw(seed, 12) },
        }
    }

    #[test]
    fn every_page_is_the_page_of_the_whole_list_filtered_and_sorted() {
        let mut seed = 2026;
        for _ in 0..30 {
            let given = a_random_ledger(&mut seed);
            let callers: Vec<Caller> = given.state.keys.iter().filter_map(|key| resolve(&given.state, key.id, now())).collect();
            let used: Vec<Uuid> = given.state.keys.iter().map(|key| key.id).filter(|_| draw(&mut seed, 2) == 0).collect();
            let last_used = |id: Uuid| used.iter().position(|u| *u == id).map(|i| now() - chrono::TimeDelta::minutes((i % 7) as i64 * 90));
            for _ in 0..200 {
                let caller = &callers[draw(&mut seed, callers.len())];
                let query = a_random_query(&mut seed, &given.state);
                let expected = listed_by_scan(&given.state, caller, &query, &last_used);
                assert_eq!(list(&given.state, caller, &query, now(), &last_used), expected, "{caller:?} asking {query:?}");
            }
        }
    }
}
