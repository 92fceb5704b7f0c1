//! `keyledger audit log` and `keyledger audit state`: read the log (checking every link of the
//! chain on the way) and print. Which events are selected, how each is summarized and which
//! keys stood at a moment is decided in `keyledger::audit::timeline`; here are the flags,
//! the reading and the output formats.

use std::io::{self, Write};
use std::str::FromStr;

use anyhow::bail;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use keyledger::audit::timeline::{
    actor_label, parse_event_type, parse_key_id, parse_time, summary, utc_seconds, ActorMatch, Filter, KeyAt, LogLine, StateAt,
};
use keyledger::ledger::chain::{self, Replay};
use keyledger::ledger::{ChainHead, Storage};
use keyledger_projections::directory::Directory;
use keyledger_projections::projection::Untracked;
use keyledger_projections::Projection;
use uuid::Uuid;

use super::progress;
use super::store::StoreArgs;

// The filters have no `KEYLEDGER_*` variables, unlike other flags: they are a question asked
// once, and a variable left set in a shell would silently hide events from an audit.

const LOG_HELP: &str = "\
Every event is read and its link in the hash chain checked; if the chain is broken the
command prints the events before the break and exits 1 naming the position.

Actors (--actor):
  operator                 someone at the data directory, through the keyledger CLI
  user:<id>                that user number, in any organization (e.g. user:3)
  service_account:<uuid>   a team or organization key's service account
  <uuid> | api_key:<uuid>  whoever acted through that API key

Times are RFC 3339, e.g. 2030-01-31T12:00:00Z or 2030-01-31T13:00:00+01:00.
--since is inclusive and --until exclusive, so consecutive windows never overlap.
The table shows times in UTC to the second; jsonl keeps the recorded microseconds.
No output ever contains a token: the log holds only token digests.";

const STATE_HELP: &str = "\
The log is replayed from the start (checking every link of the hash chain) and every event
recorded at or before --at is folded in. A key is listed if it had been created by then; its
status is `active`, or `expired` if its expires_at is at or before --at. Keys are sorted by
organization name, then creation time.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Aligned columns for a person.
    Table,
    /// One JSON object per event: the envelope as recorded (without prev_hash).
    Jsonl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StateFormat {
    /// Aligned columns for a person.
    Table,
    /// A JSON array with one object per key.
    Json,
}

#[derive(Args)]
#[command(after_long_help = LOG_HELP)]
pub struct LogArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only this API key's events: its own stream and, for a team or organization key, its
    /// service account's. A UUID, or api_key-<uuid>.
    #[arg(long, value_name = "ID", value_parser = parse_key_id)]
    key: Option<Uuid>,
    /// Only events caused by ACTOR: operator, user:<id>, service_account:<uuid>, or the id of an
    /// API key the actor acted through (see --help).
    #[arg(long, value_name = "ACTOR", value_parser = ActorMatch::from_str)]
    actor: Option<ActorMatch>,
    /// Only events of this type, e.g. ApiKeyCreated (case-insensitive). Repeat the flag or
    /// separate types with commas for any of several.
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',', value_parser = parse_event_type)]
    types: Vec<&'static str>,
    /// Only events recorded at or after TIME (inclusive; RFC 3339, e.g. 2030-01-31T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only events recorded before TIME (exclusive; RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// Output format; `table` unless told otherwise, also when piped, so that a script gets
    /// what it asked for and not what the terminal implies.
    #[arg(long, value_enum, default_value_t = LogFormat::Table)]
    format: LogFormat,
}

#[derive(Args)]
#[command(after_long_help = STATE_HELP)]
pub struct StateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The moment (RFC 3339, e.g. 2030-01-31T12:00:00Z): events recorded at or before it count.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: DateTime<Utc>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StateFormat::Table)]
    format: StateFormat,
}

pub fn log(args: LogArgs) -> anyhow::Result<()> {
    if let (Some(since), Some(until)) = (args.since, args.until) {
        if since >= until {
            bail!(
                "--since {} is not before --until {}: no event could match (--since is inclusive, --until exclusive)",
                since.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                until.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
        }
    }
    let storage = args.store.open_reading()?;
    let storage = &*storage;
    let bar = progress::bar(head_position(storage)?, "reading");
    let mut sink = Sink { bar: &bar, buf: Vec::new() };
    let filter = Filter { key: args.key, actor: args.actor, types: args.types, since: args.since, until: args.until };
    let written = write_log(storage, filter, args.format, &mut sink);
    bar.finish_and_clear();
    // Whatever was printed (on a broken chain: the events before the break) goes out first;
    // a broken chain is reported even if the reader has gone.
    let flushed = tolerate_closed_stdout(sink.flush().map_err(anyhow::Error::from));
    let matched = tolerate_closed_stdout(written)?;
    flushed?;
    if matched == Some(0) {
        eprintln!("no event matches");
    }
    Ok(())
}

pub fn state(args: StateArgs) -> anyhow::Result<()> {
    let storage = args.store.open_reading()?;
    let storage = &*storage;
    let bar = progress::bar(head_position(storage)?, "replaying");
    let mut state = StateAt::new(args.at);
    let replayed: anyhow::Result<()> = Replay::new(storage.events_from(1), ChainHead::genesis()).try_for_each(|event| {
        state.offer(&event?);
        bar.inc(1);
        Ok(())
    });
    bar.finish_and_clear();
    replayed?;
    let keys = state.keys();
    tolerate_closed_stdout(print_state(&keys, args.format))?;
    Ok(())
}

fn head_position(storage: &dyn Storage) -> anyhow::Result<u64> {
    Ok(storage.last_event()?.map_or(0, |e| e.position))
}

/// A reader that stopped reading (`audit log | head`) has what it wanted: that is not a
/// failure worth a message. `None`: stdout was closed early.
fn tolerate_closed_stdout<T>(result: anyhow::Result<T>) -> anyhow::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Prints the selected events; returns how many there were. On a broken chain the events
/// before the break (whose links all held) are printed, then the break is the error.
fn write_log(storage: &dyn Storage, filter: Filter, format: LogFormat, out: &mut Sink<'_>) -> anyhow::Result<u64> {
    let mut selector = filter.selector();
    let mut table = (format == LogFormat::Table).then(|| {
        Table::new(&[
            ("POSITION", Align::Right),
            ("TIME (UTC)", Align::Left),
            ("TYPE", Align::Left),
            ("ACTOR", Align::Left),
            ("STREAM", Align::Left),
            ("SUMMARY", Align::Left),
        ])
    });
    // The directory as it stood before each event, for names in summaries.
    let mut directory = Directory::default();
    let mut head = ChainHead::genesis();
    let mut matched = 0;
    let mut broken = None;
    // `chain::open` is the check `Replay` makes, used directly because `jsonl` prints the
    // stored bytes that were verified rather than a re-encoding of the decoded event.
    for stored in storage.events_from(1) {
        let verified = stored.and_then(|stored| chain::open(&stored, head).map(|event| (stored, event)));
        let (stored, event) = match verified {
            Ok(verified) => verified,
            Err(e) => {
                broken = Some(e);
                break;
            }
        };
        head = ChainHead { position: stored.position, hash: stored.hash };
        out.bar.inc(1);
        if selector.matches(&event) {
            matched += 1;
            match &mut table {
                Some(table) => table.row(
                    out,
                    vec![
                        event.position.to_string(),
                        utc_seconds(event.recorded_at),
                        event.event.type_name().to_owned(),
                        actor_label(&event.actor),
                        event.stream.clone(),
                        summary(&event.event, &directory),
                    ],
                )?,
                None => {
                    // Encoded apart from writing, so that a closed stdout stays an `io::Error`.
                    let mut line = serde_json::to_vec(&LogLine::from_stored(&stored)?)?;
                    line.push(b'\n');
                    out.write_all(&line)?;
                }
            }
        }
        if table.is_some() {
            directory.apply(&event, &mut Untracked);
        }
    }
    if let Some(table) = table {
        table.finish(out)?;
    }
    match broken {
        Some(e) => Err(e.into()),
        None => Ok(matched),
    }
}

fn print_state(keys: &[KeyAt], format: StateFormat) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match format {
        StateFormat::Json => {
            let mut json = serde_json::to_vec_pretty(keys)?;
            json.push(b'\n');
            out.write_all(&json)?;
        }
        StateFormat::Table => {
            let mut table = Table::new(&[
                ("ID", Align::Left),
                ("ORGANIZATION", Align::Left),
                ("KIND", Align::Left),
                ("NAME", Align::Left),
                ("OWNER/TEAM", Align::Left),
                ("CREATED (UTC)", Align::Left),
                ("EXPIRES (UTC)", Align::Left),
                ("STATUS", Align::Left),
            ]);
            for key in keys {
                table.row(
                    &mut out,
                    vec![
                        key.id.to_string(),
                        key.organization.clone(),
                        key.kind.as_str().to_owned(),
                        key.name.clone(),
                        key.owner_label(),
                        utc_seconds(key.created_at),
                        utc_seconds(key.expires_at),
                        key.status.as_str().to_owned(),
                    ],
                )?;
            }
            table.finish(&mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Stdout, written in large pieces with the progress bar (on stderr) out of the way, so that
/// on a terminal the bar and the rows do not garble each other.
struct Sink<'a> {
    bar: &'a ProgressBar,
    buf: Vec<u8>,
}

impl Sink<'_> {
    const PIECE: usize = 64 * 1024;
}

impl Write for Sink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::PIECE {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        self.bar.suspend(|| {
            let mut stdout = io::stdout().lock();
            stdout.write_all(&buf)?;
            stdout.flush()
        })
    }
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A table with columns as wide as their widest cell. Column widths come from the first
/// [`Table::LOOKAHEAD`] rows, so that a long log streams in bounded memory; a wider cell after
/// that only pushes its own line out.
struct Table {
    columns: Vec<(&'static str, Align)>,
    widths: Vec<usize>,
    /// Rows held back until the widths are known (`None` once they are).
    pending: Option<Vec<Vec<String>>>,
}

impl Table {
    const LOOKAHEAD: usize = 10_000;

    fn new(columns: &[(&'static str, Align)]) -> Self {
        Table { columns: columns.to_vec(), widths: Vec::new(), pending: Some(Vec::new()) }
    }

    fn row(&mut self, out: &mut impl Write, cells: Vec<String>) -> io::Result<()> {
        let cells: Vec<String> = cells.iter().map(|c| printable(c)).collect();
        match &mut self.pending {
            Some(rows) => {
                rows.push(cells);
                if rows.len() >= Self::LOOKAHEAD {
                    self.start(out)?;
                }
                Ok(())
            }
            None => self.line(out, &cells),
        }
    }

    /// Fixes the widths and prints the header and the held-back rows.
    fn start(&mut self, out: &mut impl Write) -> io::Result<()> {
        let rows = self.pending.take().unwrap_or_default();
        self.widths = self.columns.iter().map(|(title, _)| title.chars().count()).collect();
        for row in &rows {
            for (width, cell) in self.widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|(title, _)| (*title).to_owned()).collect();
        self.line(out, &header)?;
        rows.iter().try_for_each(|row| self.line(out, row))
    }

    fn finish(mut self, out: &mut impl Write) -> io::Result<()> {
        if self.pending.is_some() {
            self.start(out)?;
        }
        Ok(())
    }

    fn line(&self, out: &mut impl Write, cells: &[String]) -> io::Result<()> {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = self.widths.get(i).copied().unwrap_or(0);
            let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
            if i > 0 {
                line.push_str("  ");
            }
            match self.columns.get(i).map_or(Align::Left, |(_, align)| *align) {
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
        }
        writeln!(out, "{}", line.trim_end())
    }
}

/// A cell as it may reach a terminal: control characters (a newline that would forge a row,
/// an escape sequence that would repaint the screen) are shown escaped.
fn printable(cell: &str) -> String {
    if !cell.chars().any(char::is_control) {
        return cell.to_owned();
    }
    cell.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(rows: &[Vec<&str>]) -> String {
        let mut table = Table::new(&[("N", Align::Right), ("NAME", Align::Left), ("LAST", Align::Left)]);
        let mut out = Vec::new();
        for row in rows {
            let cells = row.iter().map(|c| (*c).to_owned()).collect();
            assert!(table.row(&mut out, cells).is_ok());
        }
        assert!(table.finish(&mut out).is_ok());
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn tables_align_columns_and_print_a_header_even_when_empty() {
        assert_eq!(render(&[]), "N  NAME  LAST\n");
        let text = render(&[vec!["1", "a", "x"], vec!["10", "longer name", "y"]]);
        assert_eq!(text, " N  NAME         LAST\n 1  a            x\n10  longer name  y\n");
    }

    #[test]
    fn control_characters_cannot_forge_rows_or_repaint_the_terminal() {
        let text = render(&[vec!["1", "evil\nforged\u{1b}[2J", "x"]]);
        assert_eq!(text.lines().count(), 2, "{text:?}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains(r"evil\nforged\u{1b}[2J"), "{text:?}");
    }
}
