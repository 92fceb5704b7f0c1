//! What an operator at the data directory can do without the HTTP API: initialize a
//! ledger, apply a directory file, mint a personal key for a user. These run on a
//! [`Writer`] directly, with the same rules and the same durable commit as requests.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::rules::create_api_key::{CreateApiKey, NewApiKey, Requester};
use super::rules::directory::DirectoryFile;
use super::rules::{Problem, Rejection};
use super::token::{IssuedToken, TokenError, TokenFormat};
use super::writer::{Command, CommandError, Writer};

/// The lifetime of the first owner's token.
pub const INITIAL_TOKEN_DAYS: i64 = 90;
pub const INITIAL_KEY_NAME: &str = "Initial owner key";

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("this data directory is already initialized ({0} events recorded); use `keyledger directory apply` to change it")]
    AlreadyInitialized(u64),
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

fn request_id() -> String {
    format!("cli-{}", Uuid::new_v4())
}

fn run(writer: &mut Writer, command: Command) -> Result<usize, OperatorError> {
    let answer = writer.execute(vec![(command, request_id())]).pop();
    match answer {
        Some(Ok(events)) => Ok(events.len()),
        Some(Err(CommandError::Rejected(Rejection::Invalid(problems)))) => Err(OperatorError::Invalid(problems)),
        Some(Err(e)) => Err(e.into()),
        None => Err(CommandError::Unavailable("the writer gave no answer".into()).into()),
    }
}

/// Applies directory files; returns how many events that recorded (0: nothing changed).
pub fn apply_directory(writer: &mut Writer, files: &[DirectoryFile]) -> Result<usize, OperatorError> {
    let mut recorded = 0;
    for file in files {
        recorded += run(writer, Command::ApplyDirectory(file.clone()))?;
    }
    Ok(recorded)
}

/// Creates the organizations of `files` in an empty ledger and mints the first owner's
/// personal token (of the first file's organization).
pub fn initialize(writer: &mut Writer, files: &[DirectoryFile], tokens: &TokenFormat) -> Result<IssuedToken, OperatorError> {
    let head = writer.head().position;
    if head > 0 {
        return Err(OperatorError::AlreadyInitialized(head));
    }
    let first = files.first().ok_or(OperatorError::NoOwner)?;
    let owner = first.first_owner().ok_or(OperatorError::NoOwner)?.email.clone();
    apply_directory(writer, files)?;
    let expires_at = Utc::now() + Duration::days(INITIAL_TOKEN_DAYS);
    issue_personal_key(writer, Some(&first.organization), &owner, INITIAL_KEY_NAME, expires_at, tokens)
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
                (None, _) => return Err(OperatorError::NoSuchOrganization(String::new())),
                (Some(_), Some(_)) => return Err(OperatorError::OrganizationAmbiguous),
            }
        }
    };
    let user = org
        .user_by_email(email)
        .ok_or_else(|| OperatorError::NoSuchUser { organization: org.name.clone(), email: email.to_owned() })?;
    let token = tokens.mint()?;
    let command = Command::CreateApiKey(CreateApiKey {
        requester: Requester::Operator { organization_id: org.id, user_id: user.id },
        api_key_id: Uuid::new_v4(),
        service_account_id: Uuid::new_v4(),
        token_digest: token.digest(),
        attributes: NewApiKey {
            name: Some(name.to_owned()),
            kind: Some("personal".into()),
            expires_at: Some(expires_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            ..NewApiKey::default()
        },
    });
    run(writer, command)?;
    Ok(token)
}
