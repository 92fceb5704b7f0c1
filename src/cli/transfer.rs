//! `keyledger export` and `keyledger import`: thin wrappers over `keyledger::ledger::transfer`.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::ProgressStyle;
use keyledger::ledger::transfer;

use keyledger::service::rebuild;

use super::progress;
use super::store::StoreArgs;

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Write the export to FILE (atomically: complete or not at all) instead of standard output.
    #[arg(long, short, env = "KEYLEDGER_EXPORT_OUTPUT", value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The export to load (JSON lines, as `keyledger export` writes them).
    file: PathBuf,
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    // One snapshot: nodes may go on appending while the export is written.
    let storage = args.store.open_reading()?;
    let storage = &*storage;
    let total = storage.last_event()?.map_or(0, |e| e.position);
    let bar = progress::bar(total, "export");
    let mut report = |events| bar.set_position(events);
    let exported = match &args.output {
        Some(path) => transfer::export_file(storage, path, &mut report)?,
        None => {
            let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            transfer::export(storage, &mut out, "standard output", &mut report)?
        }
    };
    bar.finish_and_clear();
    let to = args.output.as_ref().map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
    eprintln!("exported {} event(s) to {to}; head {}", exported.events, exported.head.hash);
    Ok(())
}

pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    let file = File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    // On PostgreSQL the schema is opened and held before the file is read: a node serving it
    // should be said at once, not after a long read.
    let postgres = args.store.open_postgres_alone("import", IMPORT_ALONE)?;
    let bar = progress::bar(size, "import");
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut source = BufReader::with_capacity(1 << 20, file);
    let mut projections = rebuild::Fold::default();
    let mut report = |read| bar.set_position(read);
    let imported = match &postgres {
        Some(alone) => transfer::import_into_postgres(&mut source, &alone.storage, &mut report, &mut projections),
        None => transfer::import(&mut source, &args.store.data, &mut report, &mut projections),
    };
    bar.finish_and_clear();
    // The folded projections are journaled; freeing their millions of allocations one by one
    // would only delay the exit.
    std::mem::forget(projections);
    let place = args.store.place();
    if imported.is_err() {
        if let Some(alone) = postgres.as_ref().filter(|alone| alone.created) {
            // Best effort: the import failed with the error that matters, and an empty schema
            // left behind holds no ledger (an import into it would succeed).
            if let Err(e) = alone.storage.drop_if_empty() {
                eprintln!("keyledger: the schema this import created is left empty ({e})");
            }
        }
    }
    let imported = imported.with_context(|| format!("cannot import {} into {place}", args.file.display()))?;
    // The lock goes only now: a node started meanwhile waited for the whole import.
    drop(postgres);
    eprintln!("imported {} event(s) into {place}; head {} at position {}", imported.events, imported.head.hash, imported.head.position);
    Ok(())
}

/// Why `import` is refused while nodes serve a schema.
const IMPORT_ALONE: &str = "an import goes only into an empty schema, and a node initializes the schema it serves; import into a new schema (--database-schema) instead";
