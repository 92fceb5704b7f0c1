//! `verify-baseline`: the bare floor that `keyledger audit verify` is a ratio of.
//!
//! It checks the chain of an export (`keyledger export`) held in memory, with nothing of
//! keyledger but the reading of an export line ([`chain::from_line`]) and the link itself
//! ([`chain::link`]): no store, no envelope decoding. Two passes, each on every core (the
//! log cut into as many runs of lines, each run starting from the stored hash before it):
//!
//! - `hash`: every link `blake3(previous hash ‖ canonical bytes)` recomputed and compared
//!   with the stored hash;
//! - `hash + json`: the same, and every envelope read as JSON without building anything
//!   (`serde::de::IgnoredAny`), the least any check that "every event decodes" must do.
//!
//! Usage: `verify-baseline EXPORT`.

use std::time::Instant;

use anyhow::{bail, ensure, Context};
use keyledger::ledger::chain::{self, ChainHead};
use keyledger::ledger::StoredEvent;
use serde::de::IgnoredAny;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).context("usage: verify-baseline EXPORT (a file written by `keyledger export`)")?;
    let text = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let events = text
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .zip(1..)
        .map(|(line, number)| chain::from_line(line, number).with_context(|| format!("{path}, line {number}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!("{} events, {} bytes, {threads} threads", events.len(), text.len());
    for (name, parse) in [("hash", false), ("hash + json", true)] {
        let started = Instant::now();
        check(&events, threads, parse)?;
        let seconds = started.elapsed().as_secs_f64();
        println!("{name}: {seconds:.3} s ({:.0} events/s)", events.len() as f64 / seconds);
    }
    Ok(())
}

/// Checks every link, each thread a run of consecutive events.
fn check(events: &[StoredEvent], threads: usize, parse: bool) -> anyhow::Result<()> {
    let run = events.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..events.len())
            .step_by(run)
            .map(|start| {
                let prev = if start == 0 { ChainHead::genesis().hash } else { events[start - 1].hash };
                let end = events.len().min(start + run);
                scope.spawn(move || check_run(&events[start..end], prev, parse))
            })
            .collect();
        runs.into_iter().try_for_each(|run| run.join().unwrap_or_else(|_| bail!("a checking thread panicked")))
    })
}

fn check_run(events: &[StoredEvent], mut prev: blake3::Hash, parse: bool) -> anyhow::Result<()> {
    for event in events {
        let position = event.position;
        ensure!(
            chain::link(&prev, &event.canonical) == event.hash,
            "event {position}: the stored hash is not blake3(previous hash ‖ canonical bytes)"
        );
        if parse {
            serde_json::from_slice::<IgnoredAny>(&event.canonical).with_context(|| format!("event {position}"))?;
        }
        prev = event.hash;
    }
    Ok(())
}
