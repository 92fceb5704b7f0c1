//! `verify-baseline`: the bare floor that `keyledger audit verify` is a ratio of.
//!
//! It checks the chain of an export (`keyledger export`) held in memory, with none of
//! keyledger: no store, no envelope decoding. Each line is one event's canonical bytes with
//! `"hash"` appended, so the canonical bytes are the line without that field, and each link
//! is `blake3(previous hash ‖ canonical bytes)`. Two passes, each on every core (the log cut
//! into as many runs of lines, each run starting from the stored hash before it):
//!
//! - `hash`: every link recomputed and compared with the stored hash;
//! - `hash + json`: the same, and every envelope read as JSON without building anything
//!   (`serde::de::IgnoredAny`), the least any check that "every event decodes" must do.
//!
//! Usage: `verify-baseline EXPORT`.

use std::time::Instant;

use anyhow::{bail, ensure, Context};
use serde::de::IgnoredAny;

/// `,"hash":"<64 hex digits>"}`: what an export line adds after the canonical envelope's last
/// field.
const HASH_FIELD: &[u8] = br#","hash":""#;
const SUFFIX_LEN: usize = HASH_FIELD.len() + 64 + 2;

struct Link<'a> {
    /// The canonical bytes without their closing brace, which is hashed on its own: hashing
    /// copies no line (only the JSON pass does, as its reader needs the whole envelope).
    body: &'a [u8],
    hash: blake3::Hash,
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).context("usage: verify-baseline EXPORT (a file written by `keyledger export`)")?;
    let text = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let links = text
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .zip(1..)
        .map(|(line, number)| link(line).with_context(|| format!("{path}, line {number}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!("{} events, {} bytes, {threads} threads", links.len(), text.len());
    for (name, parse) in [("hash", false), ("hash + json", true)] {
        let started = Instant::now();
        check(&links, threads, parse)?;
        let seconds = started.elapsed().as_secs_f64();
        println!("{name}: {seconds:.3} s ({:.0} events/s)", links.len() as f64 / seconds);
    }
    Ok(())
}

fn link(line: &[u8]) -> anyhow::Result<Link<'_>> {
    ensure!(line.len() > SUFFIX_LEN, "not an exported envelope");
    let (body, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    let hex = suffix
        .strip_prefix(HASH_FIELD)
        .and_then(|rest| rest.strip_suffix(br#""}"#.as_slice()))
        .context("the last field is not \"hash\"")?;
    Ok(Link { body, hash: blake3::Hash::from_hex(hex)? })
}

/// Checks every link, each thread a run of consecutive lines.
fn check(links: &[Link<'_>], threads: usize, parse: bool) -> anyhow::Result<()> {
    let run = links.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..links.len())
            .step_by(run)
            .map(|start| {
                let prev = if start == 0 { blake3::Hash::from_bytes([0; 32]) } else { links[start - 1].hash };
                let end = links.len().min(start + run);
                scope.spawn(move || check_run(&links[start..end], prev, start + 1, parse))
            })
            .collect();
        runs.into_iter().try_for_each(|run| run.join().unwrap_or_else(|_| bail!("a checking thread panicked")))
    })
}

fn check_run(links: &[Link<'_>], mut prev: blake3::Hash, first_line: usize, parse: bool) -> anyhow::Result<()> {
    let mut canonical = Vec::new();
    for (link, number) in links.iter().zip(first_line..) {
        let computed = blake3::Hasher::new().update(prev.as_bytes()).update(link.body).update(b"}").finalize();
        ensure!(computed == link.hash, "line {number}: the stored hash is not blake3(previous hash ‖ canonical bytes)");
        if parse {
            // The JSON reader needs the whole envelope in one slice.
            canonical.clear();
            canonical.extend_from_slice(link.body);
            canonical.push(b'}');
            serde_json::from_slice::<IgnoredAny>(&canonical).with_context(|| format!("line {number}"))?;
        }
        prev = link.hash;
    }
    Ok(())
}
