//! What an operator at the data directory can do without the HTTP API: initialize a
//! ledger, apply a directory file, mint a personal key for a user. These run on a
//! [`Writer`] directly, with the same rules and the same durable commit as requests.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::rules::create_api_key::{CreateApiKey, NewApiKey, Requester, DEFAULT_MAX_KEYS_PER_SCOPE};
use super::rules::directory::{plan_all, DirectoryFile};
use super::rules::{Problem, Rejection};
use super::token::{IssuedToken, TokenError, TokenFormat};
use super::writer::{Answer, Command, CommandError, Provenance, Writer};

/// The lifetime of the first owner's token.
pub const INITIAL_TOKEN_DAYS: i64 = 90;
pub const INITIAL_KEY_NAME: &str = "Initial owner key";

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("this data directory is already initialized ({0} events recorded); use `keyledger directory apply` to change it")]
    AlreadyInitialized(u64),
    #[error("this data directory holds no ledger yet; run `keyledger init` (or `keyledger serve`) first")]
    NotInitialized,
    #[error("the directory names no user with role \"owner\"; the first token is minted for the first owner")]
    NoOwner,
    #[error("organization {0:?} does not exist in this ledger")]
    NoSuchOrganization(String),
    #[error("this ledger has several organizations; say which with --org")]
    OrganizationAmbiguous,
    #[error("organization {organization:?} has no user with email {email:?}")]
    NoSuchUser { organization: String, email: String },
    #[error("the key was not created:\n  - {}", .0.iter().map(|p| format!("{} ({})", p.title, p.detail)).collect::<Vec<_>>().join("\n  - "))]
    Invalid(Vec<Problem>),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Reads a directory file's text: one organization object, or an array of them. The one
/// reader of directory files (`init`, `directory apply`, `serve` and its SIGHUP reloads),
/// and the entry point of the `directory_file` fuzz target.
pub fn parse_directory(text: &str) -> Result<Vec<DirectoryFile>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(DirectoryFile),
        Many(Vec<DirectoryFile>),
    }
    let parsed: OneOrMany = serde_json::from_str(text).or_else(|_| {
        // Re-parse as a single object to report the precise error of the common case.
        serde_json::from_str::<DirectoryFile>(text).map(OneOrMany::One)
    })?;
    Ok(match parsed {
        OneOrMany::One(file) => vec![file],
        OneOrMany::Many(files) => files,
    })
}

fn request_id() -> Provenance {
    Provenance::from(format!("cli-{}", Uuid::new_v4()))
}

/// The number of events a command recorded, or why it recorded none.
fn events_recorded(answer: Option<Answer>) -> Result<usize, OperatorError> {
    match answer {
        Some(Ok(events)) => Ok(events.len()),
        Some(Err(CommandError::Rejected(Rejection::Invalid(problems)))) => Err(OperatorError::Invalid(problems)),
        Some(Err(e)) => Err(e.into()),
        None => Err(CommandError::Unavailable("the writer gave no answer".into()).into()),
    }
}

/// Applies a directory file's organizations, all or none; returns how many events that
/// recorded (0: nothing changed).
pub fn apply_directory(writer: &mut Writer, files: &[DirectoryFile]) -> Result<usize, OperatorError> {
    if writer.head().position == 0 {
        return Err(OperatorError::NotInitialized);
    }
    events_recorded(writer.execute(vec![(Command::ApplyDirectory(files.to_vec()), request_id())]).pop())
}

/// Creates the organizations of `files` in an empty ledger and mints the first owner's
/// personal token (of the first file's organization) — all in one commit, so that a crash
/// cannot leave an organization without its owner's token.
pub fn initialize(writer: &mut Writer, files: &[DirectoryFile], tokens: &TokenFormat) -> Result<IssuedToken, OperatorError> {
    let head = writer.head().position;
    if head > 0 {
        return Err(OperatorError::AlreadyInitialized(head));
    }
    let first = files.first().ok_or(OperatorError::NoOwner)?;
    let owner = first.first_owner().ok_or(OperatorError::NoOwner)?.email.clone();
    plan_all(files, writer.state(), &mut Uuid::new_v4).map_err(CommandError::from)?;
    let token = tokens.mint()?;
    let expires_at = Utc::now() + Duration::days(INITIAL_TOKEN_DAYS);
    let mut batch = vec![(Command::ApplyDirectory(files.to_vec()), request_id())];
    batch.push((personal_key(&first.organization, &owner, INITIAL_KEY_NAME, expires_at, &token), request_id()));
    for answer in writer.execute(batch) {
        events_recorded(Some(answer))?;
    }
    Ok(token)
}

fn personal_key(organization: &str, email: &str, name: &str, expires_at: DateTime<Utc>, token: &IssuedToken) -> Command {
    Command::CreateApiKey(CreateApiKey {
        requester: Requester::Operator { organization: organization.to_owned(), email: email.to_owned() },
        api_key_id: Uuid::new_v4(),
        service_account_id: Uuid::new_v4(),
        token_digest: token.digest(),
        attributes: NewApiKey {
            name: Some(name.to_owned()),
            kind: Some("personal".into()),
            expires_at: Some(expires_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            ..NewApiKey::default()
        },
        max_keys_per_scope: DEFAULT_MAX_KEYS_PER_SCOPE,
    })
}

/// Mints a personal key for the user with `email`, recorded with actor `operator`.
pub fn issue_personal_key(
    writer: &mut Writer,
    organization: Option<&str>,
    email: &str,
    name: &str,
    expires_at: DateTime<Utc>,
    tokens: &TokenFormat,
) -> Result<IssuedToken, OperatorError> {
    let directory = &writer.state().directory;
    let org = match organization {
        Some(name) => directory.organization_by_name(name).ok_or_else(|| OperatorError::NoSuchOrganization(name.to_owned()))?,
        None => {
            let mut all = directory.organizations();
            match (all.next(), all.next()) {
                (Some(org), None) => org,
                (None, _) => return Err(OperatorError::NotInitialized),
                (Some(_), Some(_)) => return Err(OperatorError::OrganizationAmbiguous),
            }
        }
    };
    if org.user_by_email(email).is_none() {
        return Err(OperatorError::NoSuchUser { organization: org.name.clone(), email: email.to_owned() });
    }
    let token = tokens.mint()?;
    let command = personal_key(&org.name.clone(), email, name, expires_at, &token);
    events_recorded(writer.execute(vec![(command, request_id())]).pop())?;
    Ok(token)
}
