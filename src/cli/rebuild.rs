//! `keyledger rebuild`: a thin wrapper over `keyledger::service::rebuild`.

use anyhow::bail;
use clap::Args;

use keyledger::service::rebuild::{self, Report, Swap};
use keyledger_projections::state::PROJECTIONS;
use keyledger_projections::ProjectionId;

use super::progress;
use super::store::{Open, StoreArgs};

/// Why a repairing `rebuild` is refused while nodes serve a PostgreSQL ledger.
const REPAIR_ALONE: &str = "a repair rewrites the stored projections that the nodes append to and loaded at their start; stop every `keyledger serve` on this ledger first (`rebuild --check` only reads, and may run beside them)";

#[derive(Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only this projection (directory, name_index, token_index, keys, service_accounts,
    /// expiry_schedule); the others keep their stored rows.
    #[arg(long, env = "KEYLEDGER_PROJECTION", value_name = "NAME")]
    projection: Option<String>,
    /// Only compare and report; change nothing, and exit non-zero if anything differs.
    #[arg(long, env = "KEYLEDGER_CHECK")]
    check: bool,
    /// Write every row afresh as a new journal generation, even when few or none differ:
    /// shrinks a journal that has grown with every change, so that a start loads less.
    #[arg(long, env = "KEYLEDGER_COMPACT", conflicts_with = "check")]
    compact: bool,
    /// The most differences listed one by one (all are counted).
    #[arg(long, env = "KEYLEDGER_SHOW", default_value_t = 20, value_name = "N")]
    show: usize,
}

pub fn rebuild(args: RebuildArgs) -> anyhow::Result<()> {
    // Checked before the store is opened: a typo should not cost a replay.
    let selected: Vec<ProjectionId> = match &args.projection {
        Some(name) => vec![rebuild::projection_named(name)?],
        None => PROJECTIONS.to_vec(),
    };
    // A check only reads, in one snapshot, and may run beside serving nodes; a repair
    // rewrites the stored projections and must have the ledger alone (the lock is held until
    // the swap is done).
    let (storage, _alone) = if args.check {
        (args.store.open_reading()?, None)
    } else {
        let (ledger, lock) = args.store.open_alone(Open::Existing, "rebuild", REPAIR_ALONE)?;
        (ledger.storage, lock)
    };
    let storage = &*storage;
    let head = storage.last_event()?.map_or(0, |e| e.position);
    let bar = progress::bar(head, "replay");
    let rebuilt = rebuild::build(storage, &mut |events| bar.set_position(events));
    bar.finish_and_clear();
    let rebuilt = rebuilt?;
    for (projection, checkpoint) in &rebuilt.checkpoints {
        if *checkpoint != head && selected.contains(projection) {
            println!("note: {projection} was stored up to position {checkpoint} of {head}; compared as caught up, as the service loads it");
        }
    }
    let report = rebuild::compare(&rebuilt.fresh, &rebuilt.live, &selected, args.show);
    print_report(&report);
    if args.check {
        if !report.is_clean() {
            bail!("{} row(s) of the stored projections differ from the log; `keyledger rebuild` repairs them", report.total());
        }
        println!("the stored projections match the log ({head} event(s)): {}", names(&selected));
    } else {
        let writing = progress::bar(1, "swap in");
        writing.enable_steady_tick(std::time::Duration::from_millis(250));
        let swap = rebuild::swap_in(storage, &rebuilt, &report, args.compact);
        writing.finish_and_clear();
        let projections = names(&selected);
        match swap? {
            Swap::Repaired { rows: 0 } => println!("the stored {projections} already match the log ({head} event(s)); nothing written"),
            Swap::Repaired { rows } => println!("repaired {projections} from {head} event(s): {rows} row(s) written in one commit"),
            Swap::Replaced { rows } => println!(
                "swapped in fresh {projections} from {head} event(s): {} difference(s) repaired; the journal now holds {rows} row(s), compacted",
                report.total()
            ),
        }
    }
    // Two full copies of every projection are millions of small allocations; freeing them
    // one by one only delays the exit, and the process ends here anyway.
    std::mem::forget(rebuilt);
    Ok(())
}

fn names(projections: &[ProjectionId]) -> String {
    projections.iter().map(|projection| projection.name()).collect::<Vec<_>>().join(", ")
}

fn print_report(report: &Report) {
    for difference in &report.shown {
        println!("{:<16} {:<16} {}", difference.projection, difference.discrepancy, difference.key);
    }
    let more = report.total().saturating_sub(report.shown.len());
    if more > 0 {
        println!("… and {more} more");
    }
    for (projection, count) in &report.counts {
        if *count > 0 {
            println!("{projection}: {count} row(s) differ from the log");
        }
    }
}
