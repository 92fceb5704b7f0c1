//! `keyledger serve`: the HTTP API over a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use keyledger::http;
use keyledger::service::operator;
use keyledger::service::rules::directory::DirectoryFile;
use keyledger::service::token::TokenFormat;
use keyledger::service::Service;
use tracing_subscriber::EnvFilter;

use super::offline::{open_storage, writer_over, Open};
use super::{read_directory, DataDir, TokenPrefix};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    data: DataDir,
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, env = "KEYLEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A directory file to initialize from, or to apply at start.
    #[arg(long, env = "KEYLEDGER_DIRECTORY")]
    directory: Option<PathBuf>,
    #[command(flatten)]
    prefix: TokenPrefix,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "KEYLEDGER_BODY_LIMIT", default_value_t = http::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
}

const DEFAULT_ORGANIZATION: &str = "default";
const DEFAULT_OWNER: &str = "owner@localhost";

fn banner(organization: &str, owner: &str, token: &str) -> String {
    let rule = "=".repeat(78);
    format!(
        "{rule}\nkeyledger initialized organization {organization:?}.\n\
         API token of its owner {owner} — shown once, it will not be shown again; store it now:\n\n    {token}\n\n{rule}"
    )
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let tokens = TokenFormat::new(&args.prefix.token_prefix)?;
    let storage = open_storage(&args.data.data, Open::CreateIfMissing)?;
    let mut writer = writer_over(Arc::clone(&storage), &args.data.data)?;
    let files = args.directory.as_deref().map(read_directory).transpose()?;
    if writer.head().position == 0 {
        let files = files.unwrap_or_else(|| vec![DirectoryFile::single_owner(DEFAULT_ORGANIZATION, DEFAULT_OWNER)]);
        super::verify::ensure_audit_key(&args.data.data)?;
        let token = operator::initialize(&mut writer, &files, &tokens)?;
        let owner = files.first().and_then(DirectoryFile::first_owner).map(|u| u.email.as_str()).unwrap_or_default();
        eprintln!("{}", banner(&files[0].organization, owner, token.reveal()));
    } else if let Some(files) = files {
        let recorded = operator::apply_directory(&mut writer, &files)?;
        tracing::info!(recorded, "directory file applied");
    }

    let (service, writer_thread) = Service::start(writer, tokens, storage).context("cannot start the service")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        // Signal handlers first: a supervisor may send SIGTERM as soon as it reads the
        // listening line, and that must already mean a graceful shutdown.
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        eprintln!("keyledger listening on http://{address}");
        axum::serve(listener, http::router(Arc::new(service), args.body_limit))
            .with_graceful_shutdown(shutdown)
            .await
            .context("the HTTP server failed")
    });
    drop(runtime);
    // Every handle on the service is gone now: the writer drains its queue and stops, and the
    // last uses noted since the last store write are stored.
    writer_thread.join();
    served
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
