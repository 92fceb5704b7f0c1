//! Commands that work on a data directory directly, while no server holds it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Duration, Utc};
use clap::Args;
use keyledger::ledger::postgres::LedgerLock;
use keyledger::ledger::Storage;
use keyledger::service::operator;
use keyledger::service::recovery::load_state;
use keyledger::service::rules::directory::DirectoryFile;
use keyledger::service::token::TokenFormat;
use keyledger::service::writer::Writer;

use super::store::{Open, StoreArgs};
use super::{read_directory, TokenPrefix};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["directory", "org"]))]
pub struct InitArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// A directory file describing the organization(s) to create.
    #[arg(long, env = "KEYLEDGER_DIRECTORY")]
    directory: Option<PathBuf>,
    /// Name of the organization to create (with --owner).
    #[arg(long, env = "KEYLEDGER_ORG", requires = "owner")]
    org: Option<String>,
    /// Email of its owner, who gets the first token.
    #[arg(long, env = "KEYLEDGER_OWNER", requires = "org")]
    owner: Option<String>,
    #[command(flatten)]
    prefix: TokenPrefix,
}

#[derive(Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The directory file (see fixtures/directory.example.json).
    file: PathBuf,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("expiry").required(true).args(["expires_in", "expires_at"]))]
pub struct IssueArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The organization (needed only when the ledger has several).
    #[arg(long, env = "KEYLEDGER_ORG")]
    org: Option<String>,
    /// Email of the user who will own the key.
    #[arg(long, env = "KEYLEDGER_USER")]
    user: String,
    /// Name of the key (unique among the user's personal keys).
    #[arg(long, env = "KEYLEDGER_KEY_NAME")]
    name: String,
    /// Lifetime from now: e.g. 30d, 12h, 90m, 2w.
    #[arg(long, env = "KEYLEDGER_EXPIRES_IN")]
    expires_in: Option<String>,
    /// Expiry as an RFC 3339 date-time.
    #[arg(long, env = "KEYLEDGER_EXPIRES_AT")]
    expires_at: Option<String>,
    #[command(flatten)]
    prefix: TokenPrefix,
}

/// A writer over the ledger in `storage` (at `place`) with its projections loaded.
pub fn writer_over(storage: Arc<dyn Storage>, place: &str) -> anyhow::Result<Writer> {
    let state = load_state(&*storage).with_context(|| format!("cannot load the ledger in {place}"))?;
    Ok(Writer::new(storage, state)?)
}

/// Why `init` is refused while nodes serve a PostgreSQL ledger: it is for a ledger nobody
/// serves yet (a node initializes an empty one itself).
const INIT_ALONE: &str = "`init` starts a ledger that no node serves yet; this one is served, so it has an owner already: issue keys with `keyledger keys issue` or the HTTP API";

/// Opens the ledger with its projections loaded, ready to record as `command`. On
/// PostgreSQL it runs beside serving nodes, as one more writer: each batch it records is
/// decided under the append lock after folding what the nodes committed (see
/// `Storage::begin_append`); only a command that holds the ledger alone (an import, a
/// repair) is waited for.
pub fn open_writer(store: &StoreArgs, mode: Open, command: &str) -> anyhow::Result<(Writer, Option<LedgerLock>)> {
    let mut waiting = |holders: &str| eprintln!("waiting for {holders} to finish with the ledger");
    let (ledger, lock) = store.open_beside_nodes(mode, command, &mut waiting)?;
    Ok((writer_over(ledger.storage, &ledger.place)?, lock))
}

pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let tokens = TokenFormat::new(&args.prefix.token_prefix)?;
    let files = match (&args.directory, &args.org, &args.owner) {
        (Some(path), _, _) => read_directory(path)?,
        (None, Some(org), Some(owner)) => vec![DirectoryFile::single_owner(org, owner)],
        _ => bail!("give either --directory FILE or both --org NAME and --owner EMAIL"),
    };
    let (ledger, _alone) = args.store.open_alone(Open::CreateIfMissing, "init", INIT_ALONE)?;
    let mut writer = writer_over(ledger.storage, &ledger.place)?;
    super::verify::ensure_audit_key(&args.store)?;
    let token = operator::initialize(&mut writer, &files, &tokens)?;
    println!("{}", token.reveal());
    Ok(())
}

pub fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let files = read_directory(&args.file)?;
    let (mut writer, _beside_nodes) = open_writer(&args.store, Open::Existing, "directory apply")?;
    let recorded = operator::apply_directory(&mut writer, &files)?;
    if recorded == 0 {
        eprintln!("directory unchanged: nothing recorded");
    } else {
        eprintln!("directory applied: {recorded} event(s) recorded");
    }
    Ok(())
}

/// `30d`, `12h`, `90m`, `2w`, `45s`.
fn parse_lifetime(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().with_context(|| format!("{text:?} is not a lifetime like 30d, 12h or 90m"))?;
    Ok(match unit {
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => bail!("{text:?} has no known unit; use s, m, h, d or w (e.g. 30d)"),
    })
}

pub fn issue(args: IssueArgs) -> anyhow::Result<()> {
    let tokens = TokenFormat::new(&args.prefix.token_prefix)?;
    let expires_at: DateTime<Utc> = match (&args.expires_in, &args.expires_at) {
        (Some(lifetime), _) => Utc::now() + parse_lifetime(lifetime)?,
        (None, Some(at)) => DateTime::parse_from_rfc3339(at)
            .with_context(|| format!("--expires-at {at:?} is not an RFC 3339 date-time such as 2030-01-31T12:00:00Z"))?
            .with_timezone(&Utc),
        (None, None) => bail!("give --expires-in or --expires-at"),
    };
    let (mut writer, _beside_nodes) = open_writer(&args.store, Open::Existing, "keys issue")?;
    let token = operator::issue_personal_key(&mut writer, args.org.as_deref(), &args.user, &args.name, expires_at, &tokens)?;
    println!("{}", token.reveal());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_lifetime;
    use chrono::Duration;

    #[test]
    fn lifetimes_parse_with_units() {
        assert_eq!(parse_lifetime("30d").ok(), Some(Duration::days(30)));
        assert_eq!(parse_lifetime("12h").ok(), Some(Duration::hours(12)));
        assert!(parse_lifetime("30").is_err());
        assert!(parse_lifetime("d").is_err());
        assert!(parse_lifetime("3y").is_err());
    }
}
