//! Command-line parsing and dispatch. Every flag can also be given as a `KEYLEDGER_*`
//! environment variable.

mod offline;
mod progress;
mod rebuild;
mod serve;
mod store;
mod timeline;
mod transfer;
mod verify;

use std::path::Path;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use keyledger::service::operator;
use keyledger::service::rules::directory::DirectoryFile;

#[derive(Parser)]
#[command(name = "keyledger", version, about = "An event-sourced, hash-chained ledger of API keys")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct TokenPrefix {
    /// Prefix of minted tokens: `<prefix>_<64 hex>`.
    #[arg(long, env = "KEYLEDGER_TOKEN_PREFIX", default_value = "rootly")]
    token_prefix: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (initializing an empty data directory first).
    Serve(serve::ServeArgs),
    /// Create the organization(s) of a new ledger and print the first owner's token.
    Init(offline::InitArgs),
    /// Manage organizations, roles, users and teams.
    #[command(subcommand)]
    Directory(DirectoryCommand),
    /// Operator actions on keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Prove what happened: verify the chain, sign checkpoints, read the timeline.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Write the whole log as JSON lines (envelopes with their hashes).
    Export(transfer::ExportArgs),
    /// Load an export into an empty data directory or PostgreSQL schema, verifying the chain
    /// as it goes.
    Import(transfer::ImportArgs),
    /// Build fresh projections from the log; compare them (--check) or swap them in.
    Rebuild(rebuild::RebuildArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Replay the whole log and check every link of the hash chain.
    Verify(verify::VerifyArgs),
    /// Print a signed checkpoint of the log's size and head hash.
    Checkpoint(verify::CheckpointArgs),
    /// The timeline of changes, filtered.
    Log(timeline::LogArgs),
    /// The keys as they stood at a moment.
    State(timeline::StateArgs),
    /// Print a new audit signing key (a 32-byte seed in hex) for KEYLEDGER_AUDIT_KEY.
    Keygen,
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Create or update the organization(s) a directory file describes (idempotent).
    Apply(offline::ApplyArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Mint a personal key for a user; prints the token as the only line on stdout.
    Issue(offline::IssueArgs),
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args),
        Command::Init(args) => offline::init(args),
        Command::Directory(DirectoryCommand::Apply(args)) => offline::apply(args),
        Command::Keys(KeysCommand::Issue(args)) => offline::issue(args),
        Command::Audit(AuditCommand::Verify(args)) => verify::verify(args),
        Command::Audit(AuditCommand::Checkpoint(args)) => verify::checkpoint(args),
        Command::Audit(AuditCommand::Log(args)) => timeline::log(args),
        Command::Audit(AuditCommand::State(args)) => timeline::state(args),
        Command::Audit(AuditCommand::Keygen) => verify::keygen(),
        Command::Export(args) => transfer::export(args),
        Command::Import(args) => transfer::import(args),
        Command::Rebuild(args) => rebuild::rebuild(args),
    }
}

/// Reads a directory file: one organization object, or an array of them.
fn read_directory(path: &Path) -> anyhow::Result<Vec<DirectoryFile>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read directory file {}", path.display()))?;
    operator::parse_directory(&text)
        .with_context(|| format!("directory file {} is not a valid directory (see fixtures/directory.example.json)", path.display()))
}
