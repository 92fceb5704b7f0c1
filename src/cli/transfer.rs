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
    let storage = args.store.open_log()?;
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
    // An import is staged in a directory next to --data and moved into place whole; a
    // schema has no such move yet.
    args.store.refuse_on_postgres("import", "import into a data directory (--data) for now")?;
    let file = File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress::bar(size, "import");
    if let Ok(style) = ProgressStyle::with_template("{msg:>10} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut source = BufReader::with_capacity(1 << 20, file);
    let mut projections = rebuild::Fold::default();
    let imported = transfer::import(&mut source, &args.store.data, &mut |read| bar.set_position(read), &mut projections);
    bar.finish_and_clear();
    // The folded projections are journaled; freeing their millions of allocations one by one
    // would only delay the exit.
    std::mem::forget(projections);
    let imported = imported.with_context(|| format!("cannot import {} into {}", args.file.display(), args.store.data.display()))?;
    eprintln!(
        "imported {} event(s) into {}; head {} at position {}",
        imported.events,
        args.store.data.display(),
        imported.head.hash,
        imported.head.position
    );
    Ok(())
}
