//! Creating a key: the "Create" rules of API.md.
//!
//! Authorization comes before field validation: someone who may not create a kind of key
//! learns nothing about names already taken in that scope.

use chrono::{DateTime, Months, SubsecRound, Utc};
use keyledger_projections::directory::Organization;
use keyledger_projections::event::{ApiKeyCreated, ServiceAccountCreated, UserId};
use keyledger_projections::keys_view::Slice;
use keyledger_projections::name_index::{name_key, NameScope};
use keyledger_projections::{Actor, ApiKeyKind, Event, Permission, State};
use unicode_general_category::{get_general_category, GeneralCategory};
use uuid::Uuid;

use super::caller::{self, Caller, Credential};
use super::{Decision, Problem, Rejection};

pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_LIFETIME_YEARS: u32 = 5;
/// Live keys one scope may hold unless configured otherwise (`--max-keys-per-scope`): far
/// more than a team or person uses, few enough that a runaway script cannot fill the ledger.
pub const DEFAULT_MAX_KEYS_PER_SCOPE: usize = 1000;

/// Who asks for the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requester {
    /// A request authenticated by this token.
    Key(Credential),
    /// An operator at the data directory (`keyledger keys issue`, `init`), minting a
    /// personal key for the user with `email` in the organization named `organization`.
    /// Named, not numbered, so that `init` can create an organization and its owner's key
    /// in one commit.
    Operator { organization: String, email: String },
}

/// The attributes of a create request, as read from the document; `problems` holds what
/// was already wrong with its shape (unknown attributes, wrong JSON types), so that every
/// problem of a request is reported together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewApiKey {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub expires_at: Option<String>,
    pub description: Option<String>,
    pub group_id: Option<String>,
    pub role_id: Option<String>,
    pub on_call_role_id: Option<String>,
    pub problems: Vec<Problem>,
}

impl NewApiKey {
    /// Whether reading the document already found a problem with `attribute` (e.g. a number
    /// where a string belongs): then it is not also reported as blank.
    fn already_reported(&self, attribute: &str) -> bool {
        let pointer = format!("/data/attributes/{attribute}");
        self.problems.iter().any(|p| p.pointer == pointer)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateApiKey {
    pub requester: Requester,
    pub api_key_id: Uuid,
    /// Used only for team and organization keys.
    pub service_account_id: Uuid,
    pub token_digest: blake3::Hash,
    pub attributes: NewApiKey,
    /// The most live (unrevoked, unexpired) keys the new key's scope may hold with it.
    pub max_keys_per_scope: usize,
}

/// Everything the kind-specific checks resolved.
struct Target {
    kind: ApiKeyKind,
    scope: NameScope,
    owner: Option<UserId>,
    group_id: Option<Uuid>,
    role_id: Option<Uuid>,
    on_call_role_id: Option<Uuid>,
}

pub fn decide(cmd: &CreateApiKey, state: &State, now: DateTime<Utc>) -> Result<Decision, Rejection> {
    let (org, caller) = match &cmd.requester {
        Requester::Key(credential) => {
            let caller = caller::acting(state, *credential, now)?;
            let org = state.directory.organization(caller.organization_id).ok_or(Rejection::Unauthenticated)?;
            (org, Some(caller))
        }
        Requester::Operator { organization, .. } => (state.directory.organization_by_name(organization).ok_or(Rejection::NotFound)?, None),
    };
    let attrs = &cmd.attributes;
    let mut problems = attrs.problems.clone();

    let target = resolve_target(cmd, caller.as_ref(), org, &mut problems)?;
    if let Some(target) = &target {
        check_room(target, org.id, state, now, cmd.max_keys_per_scope, &mut problems);
    }
    let name = check_name(attrs, &target, org.id, state, &mut problems);
    let expires_at =
        if attrs.already_reported("expires_at") { None } else { check_expires_at(attrs.expires_at.as_deref(), now, &mut problems) };
    let description = attrs.description.clone();
    check_description(description.as_deref(), &mut problems);

    let (Some(target), Some(name), Some(expires_at), true) = (target, name, expires_at, problems.is_empty()) else {
        return Err(Rejection::Invalid(problems));
    };
    let service_account_id = (target.kind != ApiKeyKind::Personal).then_some(cmd.service_account_id);
    let mut events = vec![Event::ApiKeyCreated(ApiKeyCreated {
        api_key_id: cmd.api_key_id,
        organization_id: org.id,
        kind: target.kind,
        name,
        description,
        user_id: target.owner.or(caller.as_ref().and_then(Caller::user_id)),
        group_id: target.group_id,
        role_id: target.role_id,
        on_call_role_id: target.on_call_role_id,
        service_account_id,
        token_digest: cmd.token_digest.to_hex().to_string(),
        expires_at,
    })];
    if let Some(service_account_id) = service_account_id {
        events.push(Event::ServiceAccountCreated(ServiceAccountCreated {
            service_account_id,
            organization_id: org.id,
            api_key_id: cmd.api_key_id,
            kind: target.kind,
            group_id: target.group_id,
            role_id: target.role_id,
            on_call_role_id: target.on_call_role_id,
        }));
    }
    let actor = caller.as_ref().map_or(Actor::Operator, Caller::actor);
    Ok(Decision { actor, events })
}

/// Kind, team, roles and permission. `Ok(None)` when the kind could not be resolved (the
/// problems say why); `Err` when the caller may not create this kind of key at all.
fn resolve_target(
    cmd: &CreateApiKey,
    caller: Option<&Caller>,
    org: &Organization,
    problems: &mut Vec<Problem>,
) -> Result<Option<Target>, Rejection> {
    let attrs = &cmd.attributes;
    let kind = match attrs.kind.as_deref() {
        Some("personal") => Some(ApiKeyKind::Personal),
        Some("team") => Some(ApiKeyKind::Team),
        Some("organization") => Some(ApiKeyKind::Organization),
        Some(other) => {
            problems.push(Problem::attribute(
                "kind",
                "Kind is not included in the list",
                format!("{other:?} is not a kind; use personal, team or organization."),
            ));
            None
        }
        None => {
            if !attrs.already_reported("kind") {
                problems.push(Problem::attribute("kind", "Kind can't be blank", "Give kind: personal, team or organization."));
            }
            None
        }
    };

    if kind != Some(ApiKeyKind::Team) && attrs.group_id.is_some() {
        problems.push(Problem::attribute("group_id", "Group is only allowed for team keys", "Remove group_id, or create a team key."));
    }
    if kind != Some(ApiKeyKind::Organization) {
        for field in [("role_id", &attrs.role_id, "Role"), ("on_call_role_id", &attrs.on_call_role_id, "On-call role")] {
            if field.1.is_some() {
                problems.push(Problem::attribute(
                    field.0,
                    format!("{} is only allowed for organization keys", field.2),
                    format!("Remove {}, or create an organization key.", field.0),
                ));
            }
        }
    }

    let Some(kind) = kind else { return Ok(None) };
    match kind {
        ApiKeyKind::Personal => {
            let owner = match (&cmd.requester, caller) {
                (Requester::Operator { email, .. }, _) => org.user_by_email(email).ok_or(Rejection::NotFound)?.id,
                (Requester::Key(_), Some(caller)) => {
                    let Some(user_id) = caller.user_id() else {
                        return Err(Rejection::Forbidden("A service account cannot create personal keys.".into()));
                    };
                    if !caller.has_permission(org, Permission::Create) {
                        return Err(Rejection::Forbidden("Your role may not create API keys.".into()));
                    }
                    user_id
                }
                (Requester::Key(_), None) => return Err(Rejection::Unauthenticated),
            };
            Ok(Some(Target {
                kind,
                scope: NameScope::User(owner),
                owner: Some(owner),
                group_id: None,
                role_id: None,
                on_call_role_id: None,
            }))
        }
        ApiKeyKind::Team => {
            let team = match attrs.group_id.as_deref() {
                Some(id) => org.team(id),
                None => None,
            };
            let Some(team) = team else {
                problems.push(Problem::attribute("group_id", "Group must exist", "group_id must name a team of your organization."));
                return Ok(None);
            };
            let allowed = caller.is_some_and(|c| c.is_organization_admin(org) || c.manages_team_keys(org, team.id, Permission::Create));
            if !allowed {
                return Err(Rejection::Forbidden(
                    "Only owners, admins, and admins of the team whose role may create API keys, may create team keys.".into(),
                ));
            }
            Ok(Some(Target {
                kind,
                scope: NameScope::Team(team.id),
                owner: None,
                group_id: Some(team.id),
                role_id: None,
                on_call_role_id: None,
            }))
        }
        ApiKeyKind::Organization => {
            if !caller.is_some_and(|c| c.is_organization_admin(org)) {
                return Err(Rejection::Forbidden("Only owners and admins may create organization keys.".into()));
            }
            let role = match attrs.role_id.as_deref() {
                Some(id) => org.role(id).or_else(|| {
                    problems.push(Problem::attribute(
                        "role_id",
                        "Role must exist",
                        "role_id must name a role of your organization (its id or slug).",
                    ));
                    None
                }),
                None => org.role("user"),
            };
            if let (Some(role), Some(caller)) = (role, caller) {
                if !caller.may_grant(org, role) {
                    return Err(Rejection::Forbidden(format!(
                        "Your role may not grant the role {:?}: a key's role may hold no API-key permission yours lacks, and only owners grant owner.",
                        role.slug
                    )));
                }
            }
            let role_id = role.map(|r| r.id);
            let on_call_role_id = match attrs.on_call_role_id.as_deref() {
                Some(id) => match org.on_call_role(id) {
                    Some(r) => Some(r.id),
                    None => {
                        problems.push(Problem::attribute(
                            "on_call_role_id",
                            "On-call role must exist",
                            "on_call_role_id must name an on-call role of your organization (its id or slug).",
                        ));
                        return Ok(None);
                    }
                },
                None => None,
            };
            Ok(role_id.map(|role_id| Target {
                kind,
                scope: NameScope::Organization,
                owner: None,
                group_id: None,
                role_id: Some(role_id),
                on_call_role_id,
            }))
        }
    }
}

/// The trimmed name, if it is present, short enough and free in its scope.
fn check_name(
    attrs: &NewApiKey,
    target: &Option<Target>,
    organization_id: Uuid,
    state: &State,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    if attrs.already_reported("name") {
        return None;
    }
    let name = name_shape(attrs.name.as_deref(), problems)?;
    let target = target.as_ref()?;
    let key = name_key(organization_id, target.kind, target.scope, name);
    if state.name_index.holder(&key).is_some() {
        problems.push(name_taken(target.kind, name));
        return None;
    }
    Some(name.to_owned())
}

/// The trimmed name if it is present, at most [`MAX_NAME_CHARS`] characters long, free of
/// characters that hide what a name says (see [`hidden_character`]) and shows at least one
/// visible character.
pub(super) fn name_shape<'a>(name: Option<&'a str>, problems: &mut Vec<Problem>) -> Option<&'a str> {
    let name = name.map(str::trim).unwrap_or_default();
    if name.is_empty() {
        problems.push(Problem::attribute("name", "Name can't be blank", "Give the key a name."));
        return None;
    }
    if let Some((at, c, what)) = name.chars().enumerate().find_map(|(at, c)| hidden_character(c).map(|what| (at, c, what))) {
        problems.push(Problem::attribute(
            "name",
            format!("Name contains {what}"),
            format!(
                "Character {} of the name is U+{:04X}, {what}; names may hold no control, format (zero-width, bidi) or unassigned characters.",
                at + 1,
                u32::from(c)
            ),
        ));
        return None;
    }
    if !name.chars().any(is_visible) {
        problems.push(Problem::attribute("name", "Name can't be blank", "The name has no visible character; give the key a name."));
        return None;
    }
    if name.chars().count() > MAX_NAME_CHARS {
        problems.push(Problem::attribute(
            "name",
            format!("Name is too long (maximum is {MAX_NAME_CHARS} characters)"),
            format!("The name has more than {MAX_NAME_CHARS} characters after trimming."),
        ));
        return None;
    }
    Some(name)
}

pub(super) fn name_taken(kind: ApiKeyKind, name: &str) -> Problem {
    Problem::attribute(
        "name",
        "Name has already been taken",
        format!(
            "A {} key named {name:?} already exists in this scope; names are compared ignoring case, width and compatibility forms.",
            kind.as_str()
        ),
    )
}

/// What kind of character `c` is, if it is one a name may not hold: a control character
/// (Cc), a format character (Cf: zero-width spaces and joiners, bidi overrides, the BOM),
/// which make two different names look alike or a name look like something else, or a
/// code point Unicode has not assigned, whose meaning may change with a later version.
fn hidden_character(c: char) -> Option<&'static str> {
    match get_general_category(c) {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::Format => Some("a format character"),
        GeneralCategory::Unassigned => Some("an unassigned code point"),
        _ => None,
    }
}

/// Letters, marks that take space, numbers, punctuation and symbols: what a reader sees.
/// White space, combining marks alone, separators and private-use code points are not.
fn is_visible(c: char) -> bool {
    use GeneralCategory::*;
    !matches!(
        get_general_category(c),
        SpaceSeparator
            | LineSeparator
            | ParagraphSeparator
            | NonspacingMark
            | EnclosingMark
            | Control
            | Format
            | Surrogate
            | PrivateUse
            | Unassigned
    )
}

/// A 422 "Too many keys" when the scope of `target` already holds `limit` live keys.
/// Counting walks the scope only when its keys (expired ones included) reach the limit.
fn check_room(target: &Target, organization_id: Uuid, state: &State, now: DateTime<Utc>, limit: usize, problems: &mut Vec<Problem>) {
    let slice = match target.scope {
        NameScope::User(user) => Slice::User(target.kind, user),
        NameScope::Team(team) => Slice::Team(target.kind, team),
        NameScope::Organization => Slice::Kind(target.kind),
    };
    if state.keys.count(organization_id, slice) < limit {
        return;
    }
    let live = state.keys.oldest_first(organization_id, slice, 0).filter(|key| key.expires_at > now).take(limit).count();
    if live >= limit {
        problems.push(Problem::new(
            "/data",
            "Too many keys",
            format!("This scope already holds {limit} live {} keys, the most allowed; revoke one first.", target.kind.as_str()),
        ));
    }
}

/// At most [`MAX_DESCRIPTION_CHARS`] characters.
pub(super) fn check_description(description: Option<&str>, problems: &mut Vec<Problem>) {
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        problems.push(Problem::attribute(
            "description",
            format!("Description is too long (maximum is {MAX_DESCRIPTION_CHARS} characters)"),
            format!("The description has more than {MAX_DESCRIPTION_CHARS} characters."),
        ));
    }
}

/// Parses `expires_at` (any RFC 3339 offset) to UTC with at most microsecond precision and
/// checks it lies in (now, now + 5 calendar years].
pub fn check_expires_at(value: Option<&str>, now: DateTime<Utc>, problems: &mut Vec<Problem>) -> Option<DateTime<Utc>> {
    let Some(value) = value else {
        problems.push(Problem::attribute("expires_at", "Expires at can't be blank", "Give expires_at as an RFC 3339 date-time."));
        return None;
    };
    let Ok(parsed) = DateTime::parse_from_rfc3339(value) else {
        problems.push(Problem::attribute(
            "expires_at",
            "Expires at is not a valid date-time",
            format!("{value:?} is not an RFC 3339 date-time such as 2030-01-31T12:00:00Z."),
        ));
        return None;
    };
    let expires_at = parsed.with_timezone(&Utc).trunc_subsecs(6);
    if expires_at <= now {
        problems.push(Problem::attribute("expires_at", "Expires at must be in the future", "Choose a moment after now."));
        return None;
    }
    let limit = now.checked_add_months(Months::new(12 * MAX_LIFETIME_YEARS))?;
    if expires_at > limit {
        problems.push(Problem::attribute(
            "expires_at",
            format!("Expires at must be within {MAX_LIFETIME_YEARS} years"),
            format!("Choose a moment no later than {}.", limit.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        ));
        return None;
    }
    Some(expires_at)
}

#[cfg(test)]
#[path = "create_api_key_tests.rs"]
mod tests;
