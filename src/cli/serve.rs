//! `keyledger serve`: the HTTP API over a data directory.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use keyledger::service::clock::SystemClock;
use keyledger::service::operator;
use keyledger::service::rules::create_api_key::DEFAULT_MAX_KEYS_PER_SCOPE;
use keyledger::service::rules::directory::DirectoryFile;
use keyledger::service::token::TokenFormat;
use keyledger::service::{Consistency, Policy, Provenance, Service};
use keyledger::{http, telemetry};
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

use super::offline::writer_over;
use super::store::StoreArgs;
use super::{read_directory, TokenPrefix};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, env = "KEYLEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A directory file to initialize from, or to apply at start and again on each SIGHUP.
    #[arg(long, env = "KEYLEDGER_DIRECTORY")]
    directory: Option<PathBuf>,
    #[command(flatten)]
    prefix: TokenPrefix,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "KEYLEDGER_BODY_LIMIT", default_value_t = http::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// The most live (unrevoked, unexpired) keys one scope may hold: a user's personal keys,
    /// a team's keys, or an organization's organization keys.
    #[arg(long, env = "KEYLEDGER_MAX_KEYS_PER_SCOPE", default_value_t = DEFAULT_MAX_KEYS_PER_SCOPE, value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    max_keys_per_scope: usize,
    /// Seconds a connection may take to send a request's headers (counted from when it is
    /// ready for the request; the connection is closed beyond it).
    #[arg(long, env = "KEYLEDGER_HEADER_TIMEOUT", default_value_t = http::Limits::default().header_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a request may take from its headers to its answer (503 beyond it).
    #[arg(long, env = "KEYLEDGER_REQUEST_TIMEOUT", default_value_t = http::Limits::default().request_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout: u64,
    /// Seconds a kept-alive connection may wait idle for its next request (at most the header
    /// timeout, which covers that wait too).
    #[arg(long, env = "KEYLEDGER_IDLE_TIMEOUT", default_value_t = http::Limits::default().idle_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Connections served at once; further ones wait until one closes.
    #[arg(long, env = "KEYLEDGER_MAX_CONNECTIONS", default_value_t = http::Limits::default().max_connections,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Requests per key and minute (429 beyond it); 0 turns the limit off.
    #[arg(long, env = "KEYLEDGER_RATE_LIMIT", default_value_t = http::Limits::default().rate_limit)]
    rate_limit: u32,
    /// Requests without a valid token per client address and minute (429 instead of 401
    /// beyond it); 0 turns the limit off.
    #[arg(long, env = "KEYLEDGER_AUTH_FAILURE_LIMIT", default_value_t = http::Limits::default().auth_failure_limit)]
    auth_failure_limit: u32,
    /// How log lines on stderr are written: `text` for a person (coloured on a terminal),
    /// `json` one object a line, for a log collector. `RUST_LOG` chooses which (default `info`).
    #[arg(long, env = "KEYLEDGER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// How fresh the state is that requests are authenticated against, when several nodes
    /// share a PostgreSQL ledger: `eventual` answers from memory, which follows the other
    /// nodes' commits within about a notification's delivery; `strict` reads the head before
    /// each authentication and folds what it lacks (a query per request; 503 while the
    /// database is unreachable). Nothing to follow with sled: both are the same there.
    #[arg(long, env = "KEYLEDGER_CONSISTENCY", value_enum, default_value_t = ConsistencyArg::Eventual)]
    consistency: ConsistencyArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ConsistencyArg {
    Eventual,
    Strict,
}

impl From<ConsistencyArg> for Consistency {
    fn from(arg: ConsistencyArg) -> Self {
        match arg {
            ConsistencyArg::Eventual => Consistency::Eventual,
            ConsistencyArg::Strict => Consistency::Strict,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Starts logging to stderr. Log lines carry no token: the only place a token is written is
/// the banner of a first start, which is not a log line (see [`banner`]).
fn start_logging(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // The event's fields beside `timestamp`, `level` and `target`, not nested under
        // `fields`: what collectors index without a mapping.
        LogFormat::Json => logs.json().flatten_event(true).with_ansi(false).init(),
    }
}

impl ServeArgs {
    fn limits(&self) -> http::Limits {
        http::Limits {
            body: self.body_limit,
            header_timeout: Duration::from_secs(self.header_timeout),
            request_timeout: Duration::from_secs(self.request_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            max_connections: self.max_connections,
            rate_limit: self.rate_limit,
            auth_failure_limit: self.auth_failure_limit,
        }
    }
}

const DEFAULT_ORGANIZATION: &str = "default";
const DEFAULT_OWNER: &str = "owner@localhost";

/// The first owner's token, shown once on stderr before the listening line. It is written
/// around `tracing`, not logged: it is the operator's only way to get that token, and no log
/// line carries a token. (With `--log-format json` it is the one non-JSON block on stderr.)
fn banner(organization: &str, owner: &str, token: &str) -> String {
    let rule = "=".repeat(78);
    format!(
        "{rule}\nkeyledger initialized organization {organization:?}.\n\
         API token of its owner {owner} — shown once, it will not be shown again; store it now:\n\n    {token}\n\n{rule}"
    )
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    start_logging(args.log_format);
    // Before the ledger is opened, so that an initialization's events are counted too.
    let metrics = telemetry::install().context("cannot install the metrics recorder")?;
    let tokens = TokenFormat::new(&args.prefix.token_prefix)?;
    let limits = args.limits();
    // Held until `run` returns: on PostgreSQL, no command that needs the ledger alone (an
    // import, a repair) runs while this node serves it.
    let (ledger, _serving) = args.store.open_serving(&mut |holders| {
        tracing::warn!(holders, "waiting for a command that has the ledger alone to finish before serving it");
    })?;
    let mut writer = writer_over(ledger.storage, &ledger.place)?;
    let files = args.directory.as_deref().map(read_directory).transpose()?;
    if writer.head().position == 0 {
        if args.log_format == LogFormat::Json {
            // A log collector keeps stderr: the owner's token must not reach it.
            anyhow::bail!(
                "the ledger is empty, and with --log-format json serve does not print the owner's token \
                 (a log collector would keep it): run `keyledger init` first, which prints it on stdout"
            );
        }
        let files = files.unwrap_or_else(|| vec![DirectoryFile::single_owner(DEFAULT_ORGANIZATION, DEFAULT_OWNER)]);
        super::verify::ensure_audit_key(&args.store)?;
        let token = operator::initialize(&mut writer, &files, &tokens)?;
        let owner = files.first().and_then(DirectoryFile::first_owner).map(|u| u.email.as_str()).unwrap_or_default();
        eprintln!("{}", banner(&files[0].organization, owner, token.reveal()));
    } else if let Some(files) = files {
        let recorded = operator::apply_directory(&mut writer, &files)?;
        tracing::info!(recorded, "directory file applied");
    }

    let (mut service, writer_thread) =
        Service::start(writer, tokens, ledger.last_uses, Policy { max_keys_per_scope: args.max_keys_per_scope }, Arc::new(SystemClock))
            .context("cannot start the service")?;
    service.set_consistency(args.consistency.into());
    let service = Arc::new(service);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        // Signal handlers first: a supervisor may send SIGTERM or SIGHUP as soon as it reads
        // the listening line, and that must already mean a graceful shutdown or a reload.
        let shutdown = shutdown_signal()?;
        tokio::spawn(directory_reloads(args.directory.clone(), Arc::clone(&service))?);
        let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let schedule = Arc::clone(&service);
        tokio::spawn(async move { schedule.run_expiry_schedule().await });
        eprintln!("keyledger listening on http://{address}");
        tracing::info!(%address, "listening");
        http::serve(listener, service, &limits, metrics, shutdown).await;
        anyhow::Ok(())
    });
    drop(runtime);
    // Every handle on the service is gone now: the writer drains its queue and stops, and the
    // last uses noted since the last store write are stored.
    writer_thread.join();
    served
}

/// Installs the SIGHUP handler now and returns the loop that re-reads the directory file
/// and applies it through the running service on each SIGHUP. Without `--directory` a
/// SIGHUP is ignored with a warning rather than ending the process (its default action).
fn directory_reloads(path: Option<PathBuf>, service: Arc<Service>) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    Ok(async move {
        while hangup.recv().await.is_some() {
            match &path {
                Some(path) => reload_directory(path, &service).await,
                None => tracing::warn!("SIGHUP ignored: serve was started without --directory"),
            }
        }
    })
}

/// Applies the directory file as it now is. A file that cannot be read, does not parse or
/// is inconsistent records nothing: the directory in effect stays as it was.
async fn reload_directory(path: &Path, service: &Service) {
    let files = match read_directory(path) {
        Ok(files) => files,
        Err(e) => {
            tracing::error!("directory not reloaded, the previous one stays in effect: {}", one_line(&format!("{e:#}")));
            return;
        }
    };
    match service.apply_directory(files, Provenance::from(format!("sighup-{}", Uuid::new_v4()))).await {
        Ok(recorded) => tracing::info!(recorded, file = %path.display(), "directory reloaded"),
        Err(e) => {
            tracing::error!(file = %path.display(), "directory not reloaded, the previous one stays in effect: {}", one_line(&e.to_string()))
        }
    }
}

/// A multi-line error (a directory's list of problems) as one log line, so that a log
/// reader never takes its second problem for a line of its own.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Installs the SIGTERM and SIGINT handlers now and returns the future that completes on
/// either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}
