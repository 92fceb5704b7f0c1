//! `keyledger audit verify` and `keyledger audit checkpoint`: thin wrappers around
//! `ledger::verify` and `ledger::checkpoint`, adding files, the environment and a progress bar.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use keyledger::ledger::checkpoint::{self, AuditKey, Checkpoint, KeyFile, Verifier};
use keyledger::ledger::verify::{self, Summary};
use keyledger::ledger::Storage;

use super::progress;
use super::store::StoreArgs;

/// The environment variable that gives the audit signing key (its 32-byte seed in hex)
/// instead of the data directory's key file. A variable rather than a flag, so that the
/// secret never shows in a process list.
const KEY_ENV: &str = "KEYLEDGER_AUDIT_KEY";

/// Why the key is not kept in the database on PostgreSQL (as sled keeps it in the data
/// directory): everyone who can rewrite the schema's rows could then also read the key and
/// re-sign the rewritten log, and a checkpoint would prove nothing against them.
const NOT_WITH_THE_LEDGER: &str =
    "keyledger keeps none in the database, since whoever can rewrite the log there could then also re-sign it";

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// A signed checkpoint (from `keyledger audit checkpoint`) that the log must extend.
    #[arg(long, env = "KEYLEDGER_CHECKPOINT")]
    checkpoint: Option<PathBuf>,
    /// The verifier key to check the checkpoint's signature with, as recorded when it was
    /// taken (`keyledger audit checkpoint --verifier-key`). Without it, the data directory's
    /// own key is used, which whoever can rewrite the log can also replace. No environment
    /// variable: one left set would silently decide which key a signature is checked with.
    #[arg(long, requires = "checkpoint")]
    verifier_key: Option<String>,
}

#[derive(Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print the verifier key (C2SP vkey: name+key ID+public key) instead of a checkpoint.
    #[arg(long)]
    verifier_key: bool,
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let storage = args.store.open_reading()?;
    // The signature first: it is cheap, and a forged checkpoint need not wait for a replay.
    let checkpoint = match &args.checkpoint {
        Some(path) => Some(open_checkpoint(&args.store, path, args.verifier_key.as_deref())?),
        None => None,
    };
    let summary = verify_log(&*storage)?;
    if summary.events == 0 {
        println!("the log is empty: 0 events, nothing to verify");
    } else {
        println!(
            "log intact: {} events, positions 1 to {} contiguous, every hash and prev_hash linked, every event decodes",
            summary.events, summary.head.position
        );
        println!("head: position {}, hash {}", summary.head.position, summary.head.hash);
    }
    if let Some((path, checkpoint, signer)) = checkpoint {
        checkpoint
            .check_extended_by(&*storage, &summary)
            .with_context(|| format!("the log does not extend the checkpoint {}", path.display()))?;
        println!(
            "checkpoint {}: signed by {signer}; the log extends it ({} events then, {} now, same hash at {})",
            path.display(),
            checkpoint.size,
            summary.events,
            checkpoint.size
        );
    }
    Ok(())
}

pub fn checkpoint(args: CheckpointArgs) -> anyhow::Result<()> {
    let storage = args.store.open_reading()?;
    let key = signing_key(&args.store)?;
    if args.verifier_key {
        let first = match storage.events_from(1).next().transpose()? {
            Some(first) if first.position == 1 => first.hash,
            _ => bail!(checkpoint::CheckpointError::Empty),
        };
        println!("{}", key.verifier(&checkpoint::origin(&first)).to_vkey());
        return Ok(());
    }
    // Never sign a broken chain: a checkpoint vouches for everything before it.
    let summary = verify_log(&*storage)?;
    let signed = Checkpoint::of(&summary)?.sign(&key);
    // Exactly the note: a trailing blank line would make it a different (malformed) note.
    print!("{signed}");
    Ok(())
}

/// `keyledger audit keygen`: a new audit signing key, its seed in hex as the only line on
/// stdout (what `KEYLEDGER_AUDIT_KEY` takes), so that a ledger on PostgreSQL, which keeps no
/// key, can get one kept elsewhere (a secret store, the nodes' environment). Stored nowhere.
pub fn keygen() -> anyhow::Result<()> {
    let key = AuditKey::generate()?;
    println!("{}", key.seed_hex());
    eprintln!(
        "keyledger: a new audit signing key (its 32-byte seed in hex) is on stdout and stored nowhere: keep it secret and apart from the ledger, \
         set {KEY_ENV} to it where checkpoints are signed, and give auditors its verifier key (keyledger audit checkpoint --verifier-key)"
    );
    Ok(())
}

/// Creates the data directory's audit signing key unless the environment gives one (then it
/// only checks that one is well formed), so that every new ledger can sign checkpoints.
/// Called by `init` and by `serve` when it initializes an empty ledger. On PostgreSQL there
/// is no data directory to keep a key file in (nor one that every node shares): the key comes
/// from the environment only, and a ledger started without it is told how to sign later.
pub fn ensure_audit_key(store: &StoreArgs) -> anyhow::Result<()> {
    match std::env::var(KEY_ENV) {
        Ok(hex) => {
            AuditKey::from_hex(&hex, KEY_ENV)?;
        }
        Err(_) if store.on_postgres() => {
            eprintln!("keyledger: no audit signing key: on PostgreSQL {NOT_WITH_THE_LEDGER}. To sign checkpoints, create one with `keyledger audit keygen`, keep it apart from the database, and set {KEY_ENV} to it");
        }
        Err(_) => {
            checkpoint::load_or_create_key_file(&store.data)?;
        }
    }
    Ok(())
}

/// The key that signs: the environment's if set, else the data directory's, which is created
/// (and said so) for a ledger made before audit keys existed. On PostgreSQL, the
/// environment's only.
fn signing_key(store: &StoreArgs) -> anyhow::Result<AuditKey> {
    if let Ok(hex) = std::env::var(KEY_ENV) {
        return Ok(AuditKey::from_hex(&hex, KEY_ENV)?);
    }
    if store.on_postgres() {
        bail!("no audit signing key: on PostgreSQL it comes from {KEY_ENV} only ({NOT_WITH_THE_LEDGER}); create one with `keyledger audit keygen` (keep it apart from the database) and set {KEY_ENV} to it");
    }
    let dir = &store.data;
    let (key, how) = checkpoint::load_or_create_key_file(dir)?;
    if how == KeyFile::Created {
        eprintln!(
            "keyledger: this ledger had no audit signing key; created {} (keep it private, give auditors its verifier key: keyledger audit checkpoint --verifier-key)",
            dir.join(checkpoint::KEY_FILE).display()
        );
    }
    Ok(key)
}

/// Reads a checkpoint file and checks its signature; returns it with who signed it.
fn open_checkpoint(store: &StoreArgs, path: &Path, vkey: Option<&str>) -> anyhow::Result<(PathBuf, Checkpoint, String)> {
    let note = std::fs::read_to_string(path).with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
    let verifier = match vkey {
        Some(vkey) => Verifier::from_vkey(vkey)?,
        None => {
            let key = match std::env::var(KEY_ENV) {
                Ok(hex) => AuditKey::from_hex(&hex, KEY_ENV)?,
                Err(_) if store.on_postgres() => {
                    bail!("no key to check the checkpoint's signature with: give --verifier-key (on PostgreSQL there is no data directory key)")
                }
                Err(_) => checkpoint::load_key_file(&store.data)?.with_context(|| {
                    format!(
                        "no key to check the checkpoint's signature with: {} has no {}; give --verifier-key",
                        store.data.display(),
                        checkpoint::KEY_FILE
                    )
                })?,
            };
            eprintln!("keyledger: checking the checkpoint's signature with the data directory's own key; an auditor should pass --verifier-key as recorded when the checkpoint was taken");
            let origin = Checkpoint::claimed_origin(&note).with_context(|| format!("checkpoint {}", path.display()))?;
            key.verifier(&origin)
        }
    };
    let checkpoint = Checkpoint::open(&note, &verifier).with_context(|| format!("checkpoint {}", path.display()))?;
    Ok((path.to_owned(), checkpoint, verifier.to_vkey()))
}

/// Verifies the whole log behind a progress bar; times it on stderr.
fn verify_log(storage: &dyn Storage) -> anyhow::Result<Summary> {
    let total = storage.last_event()?.map_or(0, |last| last.position);
    let bar = progress::bar(total, "verify");
    let started = Instant::now();
    let verified = verify::verify(storage, &|n| bar.inc(n));
    bar.finish_and_clear();
    let summary = verified.context("the log is broken")?;
    let seconds = started.elapsed().as_secs_f64();
    // Only worth saying for a log large enough to take a while.
    if seconds >= 0.5 {
        eprintln!("verified {} events in {seconds:.2} s ({:.0} events/s)", summary.events, summary.events as f64 / seconds.max(1e-9));
    }
    Ok(summary)
}
