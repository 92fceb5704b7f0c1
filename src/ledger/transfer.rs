//! Export and import: the whole log as JSON lines, one envelope per line with its hash.
//!
//! An export line is [`chain::to_line`]: the stored canonical bytes with `"hash"` appended,
//! so [`chain::from_line`] gives back exactly the bytes that were hashed, and the export of an
//! import is byte-identical to the original. An export carries only envelopes, which carry only
//! token digests: it is safe to hand to an auditor.
//!
//! Export copies the stored events verbatim, without checking them: it is a faithful copy of
//! the log, damage included, so that damage can be examined elsewhere. Import is where the
//! chain is checked, line by line, before anything is kept.
//!
//! Import builds the new ledger in a staging directory and moves it into place only once the
//! events and the projections are durable, so that a refused file, a failed disk or a crash
//! never leaves a half-imported ledger under the target's name.
//!
//! Into PostgreSQL ([`import_into_postgres`]) the same checked lines go into one transaction
//! instead (see `postgres::import`): committed whole, or rolled back whole.
//!
//! This module knows no projection: [`import`] folds the checked events into a [`Projector`]
//! the caller hands in (the service's), and journals the rows it yields.

use std::fs::{self, File};
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use keyledger_projections::{ProjectionId, RecordedEvent};

use super::chain::{self, ChainHead};
use super::{Commit, LedgerError, PostgresStorage, RowChange, SledStorage, Storage};

/// Events per append during an import: large enough to amortise sled's batch, small enough
/// that memory stays bounded whatever the file's size.
pub const IMPORT_CHUNK: usize = 10_000;

/// How often (in events) export reports progress; a bar needs no more.
const PROGRESS_EVERY: u64 = 4096;

/// Projection rows per journal record an import writes. sled keeps every intermediate
/// version of the tree until a batch ends, so one batch holding the rows of a million keys
/// needs tens of GiB; records of this size keep each batch to a few MiB.
pub const ROWS_PER_RECORD: usize = 20_000;

/// The projections an import builds while it reads: the service's fold, handed in because
/// the ledger knows no projection. Folding as the events are checked spares a second pass
/// over the log.
pub trait Projector {
    /// Folds one checked event (in position order).
    fn apply(&mut self, event: &RecordedEvent);

    /// Hands every row of every projection to `row`, once every event is folded.
    fn rows(&self, row: &mut dyn FnMut(RowChange) -> Result<(), LedgerError>) -> Result<(), LedgerError>;

    /// Every projection, with the position its rows now reflect.
    fn checkpoints(&self, head: u64) -> Vec<(ProjectionId, u64)>;
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("cannot write the export to {to}: {source}")]
    Write { to: String, source: io::Error },
    #[error("cannot read the file to import: {0}")]
    Read(#[source] io::Error),
    #[error("{target} is not empty (it holds {entries}); import only into an empty or not yet existing data directory")]
    NotEmpty { target: PathBuf, entries: String },
    #[error("{0} exists and is not a directory; import only into an empty or not yet existing data directory")]
    NotADirectory(PathBuf),
    #[error("cannot stage the import at {path}: {source}")]
    Staging { path: PathBuf, source: io::Error },
    #[error("line {line}{}: {reason}; the file is refused and nothing was imported", .position.map(|p| format!(" (event at position {p})")).unwrap_or_default())]
    Broken { line: u64, position: Option<u64>, reason: String },
    #[error("schema {schema} at {target} already holds a ledger ({events} event(s)); import only into an empty schema, or name a new one with --database-schema")]
    SchemaNotEmpty { schema: String, target: String, events: u64 },
    #[error("the file holds no events; nothing was imported")]
    Empty,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What an export wrote or an import loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transferred {
    pub events: u64,
    /// The last event's position and hash (genesis for an empty log).
    pub head: ChainHead,
}

/// Writes every stored event, in position order, as one line each, to `out`; `to` names
/// `out` in errors. `progress` is told how many events are written so far.
pub fn export(storage: &dyn Storage, out: &mut dyn Write, to: &str, progress: &mut dyn FnMut(u64)) -> Result<Transferred, TransferError> {
    let write_err = |source| TransferError::Write { to: to.to_owned(), source };
    let mut head = ChainHead::genesis();
    let mut events = 0u64;
    for stored in storage.events_from(1) {
        let stored = stored?;
        let mut line = chain::to_line(&stored);
        line.push(b'\n');
        out.write_all(&line).map_err(write_err)?;
        head = ChainHead { position: stored.position, hash: stored.hash };
        events += 1;
        if events.is_multiple_of(PROGRESS_EVERY) {
            progress(events);
        }
    }
    out.flush().map_err(write_err)?;
    progress(events);
    Ok(Transferred { events, head })
}

/// [`export`] to the file `path`, atomically: the lines go to a temporary file beside it,
/// which is fsynced and then renamed over `path`, so a crash or a full disk never leaves half
/// an export under the final name (nor destroys an earlier export of that name).
pub fn export_file(storage: &dyn Storage, path: &Path, progress: &mut dyn FnMut(u64)) -> Result<Transferred, TransferError> {
    let to = path.display().to_string();
    let write_err = |source| TransferError::Write { to: to.clone(), source };
    let name = path.file_name().ok_or_else(|| write_err(io::Error::new(io::ErrorKind::InvalidInput, "not a file name")))?;
    let mut temp_name = name.to_owned();
    temp_name.push(format!(".exporting-{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let written = (|| {
        let file = File::create(&temp).map_err(write_err)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let exported = export(storage, &mut out, &to, progress)?;
        let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        drop(file);
        fs::rename(&temp, path).map_err(write_err)?;
        sync_dir(parent_of(path)).map_err(write_err)?;
        Ok(exported)
    })();
    if written.is_err() {
        // Best effort: the temporary file is only litter, and the error that matters is above.
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Loads an export (from `source`, line by line) into the data directory `target`, which must
/// not exist yet or be empty.
///
/// Every line is checked as it is read, as [`chain::Replay`] checks a stored log: positions
/// contiguous from 1, `prev_hash` naming the previous event's hash, `hash` =
/// `blake3(prev_hash ‖ canonical bytes)`, the event decodable. The first line that fails
/// refuses the whole file. Events are appended [`IMPORT_CHUNK`] at a time and folded into
/// `projector`; its rows are then journaled, [`ROWS_PER_RECORD`] per record, with every
/// checkpoint at the head. Only once all of it is durable does the ledger move to `target`.
/// `progress` is told how many bytes of `source` are read so far.
pub fn import(
    source: &mut dyn BufRead,
    target: &Path,
    progress: &mut dyn FnMut(u64),
    projector: &mut dyn Projector,
) -> Result<Transferred, TransferError> {
    let staging = Staging::plan(target)?;
    staging.create()?;
    let imported = fill(&staging.dir, source, progress, projector).and_then(|imported| {
        staging.move_into_place()?;
        Ok(imported)
    });
    if imported.is_err() {
        staging.discard();
    }
    imported
}

/// Reads and checks every line into a new ledger in `dir`, journals the projections and
/// makes it all durable. The storage is closed on return (its lock released), ready to be
/// moved.
fn fill(
    dir: &Path,
    source: &mut dyn BufRead,
    progress: &mut dyn FnMut(u64),
    projector: &mut dyn Projector,
) -> Result<Transferred, TransferError> {
    let storage = SledStorage::open(dir)?;
    // Appended but not synced commit by commit: nothing in the staging directory counts
    // until the one sync below, and a failure discards all of it anyway.
    let loaded = load(source, progress, projector, &mut |commit| storage.append(commit))?;
    storage.sync()?;
    drop(storage);
    // Files sled created after opening (snapshots, blobs) need their directory entries synced
    // before the rename publishes them.
    for created in [dir.join("sled"), dir.to_owned()] {
        sync_dir(&created).map_err(|source| TransferError::Staging { path: created.clone(), source })?;
    }
    Ok(loaded)
}

/// Loads an export into the empty ledger in `storage`'s schema, in one transaction (see
/// `postgres::import`): checked, folded and journaled as [`import`] does for sled, and
/// committed only if every line checks. `progress` is told how many bytes are read so far.
pub fn import_into_postgres(
    source: &mut dyn BufRead,
    storage: &PostgresStorage,
    progress: &mut dyn FnMut(u64),
    projector: &mut dyn Projector,
) -> Result<Transferred, TransferError> {
    storage.import_whole(|append| load(source, progress, projector, append))
}

/// Reads every line of `source`, checks it, folds it into `projector` and hands `append` the
/// commits of the new ledger in order: the events [`IMPORT_CHUNK`] at a time, then the
/// projections' rows [`ROWS_PER_RECORD`] per commit, then every checkpoint at the head (last,
/// so that the rows they vouch for are all in before them). The store behind `append` decides
/// how the whole becomes visible at once (a staging directory, a transaction).
pub fn load(
    source: &mut dyn BufRead,
    progress: &mut dyn FnMut(u64),
    projector: &mut dyn Projector,
    append: &mut dyn FnMut(Commit) -> Result<(), LedgerError>,
) -> Result<Transferred, TransferError> {
    let mut head = ChainHead::genesis();
    let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
    let mut line = Vec::new();
    let mut line_number = 0u64;
    let mut read = 0u64;
    loop {
        line.clear();
        let n = source.read_until(b'\n', &mut line).map_err(TransferError::Read)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        line_number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let stored = chain::from_line(&line, line_number).map_err(|e| broken(line_number, None, e))?;
        let event = chain::open(&stored, head).map_err(|e| broken(line_number, Some(stored.position), e))?;
        projector.apply(&event);
        head = ChainHead { position: stored.position, hash: stored.hash };
        chunk.push(stored);
        if chunk.len() == IMPORT_CHUNK {
            let events = std::mem::replace(&mut chunk, Vec::with_capacity(IMPORT_CHUNK));
            append(Commit { events, ..Commit::default() })?;
            progress(read);
        }
    }
    if line_number == 0 {
        return Err(TransferError::Empty);
    }
    append(Commit { events: chunk, ..Commit::default() })?;
    progress(read);

    let mut rows = Vec::with_capacity(ROWS_PER_RECORD);
    projector.rows(&mut |row| {
        rows.push(row);
        if rows.len() == ROWS_PER_RECORD {
            let full = std::mem::replace(&mut rows, Vec::with_capacity(ROWS_PER_RECORD));
            append(Commit { rows: full, ..Commit::default() })?;
        }
        Ok(())
    })?;
    append(Commit { rows, checkpoints: projector.checkpoints(head.position), ..Commit::default() })?;
    Ok(Transferred { events: line_number, head })
}

/// A line that breaks the file: which line, which event (when it got that far), and why.
fn broken(line: u64, position: Option<u64>, error: LedgerError) -> TransferError {
    match error {
        LedgerError::Corrupt { reason, .. } => {
            // `from_line` already names the line; say it once.
            let prefix = format!("line {line}: ");
            let reason = reason.strip_prefix(&prefix).map(str::to_owned).unwrap_or(reason);
            TransferError::Broken { line, position, reason }
        }
        other => TransferError::Ledger(other),
    }
}

/// Where an import builds its ledger, and how it moves it into place.
///
/// A target that does not exist yet is built beside it (`DIR.importing-<pid>`) and renamed
/// to `DIR` in one step. A target that exists and is empty may be a mount point (a container
/// volume, say), which cannot be renamed over; the ledger is then built in
/// `DIR/.importing-<pid>` and only its `sled` directory is renamed to `DIR/sled`: a data
/// directory holds a ledger exactly when `sled/db` is in it (see
/// [`SledStorage::open_existing`]), so that one rename publishes the whole ledger at once.
struct Staging {
    dir: PathBuf,
    target: PathBuf,
    inside: bool,
}

impl Staging {
    fn plan(target: &Path) -> Result<Staging, TransferError> {
        let suffix = format!("importing-{}", std::process::id());
        match fs::read_dir(target) {
            Ok(entries) => {
                let mut names = Vec::new();
                let mut more = false;
                for entry in entries {
                    let entry = entry.map_err(|source| TransferError::Staging { path: target.to_owned(), source })?;
                    if names.len() == 5 {
                        more = true;
                        break;
                    }
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
                if !names.is_empty() {
                    names.sort();
                    let entries = names.join(", ") + if more { ", …" } else { "" };
                    return Err(TransferError::NotEmpty { target: target.to_owned(), entries });
                }
                Ok(Staging { dir: target.join(format!(".{suffix}")), target: target.to_owned(), inside: true })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let name = target.file_name().ok_or_else(|| TransferError::Staging {
                    path: target.to_owned(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, "name a directory to import into"),
                })?;
                let mut staging_name = name.to_owned();
                staging_name.push(format!(".{suffix}"));
                Ok(Staging { dir: target.with_file_name(staging_name), target: target.to_owned(), inside: false })
            }
            Err(_) if target.exists() && !target.is_dir() => Err(TransferError::NotADirectory(target.to_owned())),
            Err(source) => Err(TransferError::Staging { path: target.to_owned(), source }),
        }
    }

    fn create(&self) -> Result<(), TransferError> {
        let staging_err = |source| TransferError::Staging { path: self.dir.clone(), source };
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(staging_err)?;
        }
        // `create_dir`, not `create_dir_all`: a directory left there by someone else is not ours.
        fs::create_dir(&self.dir).map_err(staging_err)
    }

    /// Publishes the durable ledger under the target's name, durably.
    fn move_into_place(&self) -> Result<(), TransferError> {
        let move_err = |source| TransferError::Staging { path: self.target.clone(), source };
        if self.inside {
            fs::rename(self.dir.join("sled"), self.target.join("sled")).map_err(move_err)?;
            sync_dir(&self.target).map_err(move_err)?;
            // What is left is the staging lock file; the ledger is complete without it.
            fs::remove_dir_all(&self.dir).map_err(move_err)?;
            sync_dir(&self.target).map_err(move_err)
        } else {
            fs::rename(&self.dir, &self.target).map_err(move_err)?;
            sync_dir(parent_of(&self.target)).map_err(move_err)
        }
    }

    /// Removes the staging directory after a failure; nothing was published.
    fn discard(&self) {
        // Best effort: the import already failed with the error that matters, and a staging
        // directory is never mistaken for a ledger (it does not carry the target's name).
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Makes a directory's entries (a rename, a new file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::sample::log as stored_log;

    fn export_of(dir: &Path) -> Vec<u8> {
        let storage = SledStorage::open_existing(dir).unwrap();
        let mut out = Vec::new();
        export(&storage, &mut out, "memory", &mut |_| {}).unwrap();
        out
    }

    /// Counts events and journals one row per event, to show rows land in bounded records.
    #[derive(Default)]
    struct Counting(u64);

    impl Projector for Counting {
        fn apply(&mut self, event: &RecordedEvent) {
            assert_eq!(event.position, self.0 + 1, "events are folded in order");
            self.0 += 1;
        }

        fn rows(&self, row: &mut dyn FnMut(RowChange) -> Result<(), LedgerError>) -> Result<(), LedgerError> {
            for n in 0..self.0 {
                row(RowChange { projection: ProjectionId::KeysView, key: format!("{n:08}"), value: Some(b"1".to_vec()) })?;
            }
            Ok(())
        }

        fn checkpoints(&self, head: u64) -> Vec<(ProjectionId, u64)> {
            vec![(ProjectionId::KeysView, head)]
        }
    }

    #[test]
    fn an_import_exports_byte_for_byte_what_was_exported() {
        let source = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(source.path()).unwrap();
        storage.commit(Commit { events: stored_log(25), ..Commit::default() }).unwrap();
        drop(storage);
        let exported = export_of(source.path());
        assert_eq!(exported.iter().filter(|b| **b == b'\n').count(), 25);

        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("new");
        let imported = import(&mut exported.as_slice(), &target, &mut |_| {}, &mut Counting::default()).unwrap();
        assert_eq!(imported.events, 25);
        assert_eq!(export_of(&target), exported);
        let storage = SledStorage::open_existing(&target).unwrap();
        let rows: Vec<RowChange> = storage.journal().flat_map(|record| record.and_then(|r| r.changes()).unwrap()).collect();
        assert_eq!(rows.len(), 25, "every row the projector yields is journaled");
        assert_eq!(storage.checkpoint(ProjectionId::KeysView).unwrap(), 25);
        drop(storage);
        let left: Vec<_> = fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("new")], "no staging directory is left beside the target");
    }

    #[test]
    fn an_existing_empty_directory_receives_the_ledger_and_no_staging_litter() {
        let source = tempfile::tempdir().unwrap();
        SledStorage::open(source.path()).unwrap().commit(Commit { events: stored_log(3), ..Commit::default() }).unwrap();
        let exported = export_of(source.path());
        let target = tempfile::tempdir().unwrap();
        import(&mut exported.as_slice(), target.path(), &mut |_| {}, &mut Counting::default()).unwrap();
        assert_eq!(export_of(target.path()), exported);
        let hidden = fs::read_dir(target.path()).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'));
        assert_eq!(hidden.count(), 0);
    }

    #[test]
    fn a_broken_line_refuses_the_file_and_leaves_nothing() {
        let lines: Vec<Vec<u8>> = stored_log(4).iter().map(chain::to_line).collect();
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("new");
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        let mut edited = lines.clone();
        let at = edited[2].iter().position(|b| *b == b'x').unwrap();
        edited[2][at] = b'y';
        for (case, lines, line) in [("swapped", swapped, 2), ("edited", edited, 3)] {
            let file = lines.join(&b'\n');
            match import(&mut file.as_slice(), &target, &mut |_| {}, &mut Counting::default()) {
                Err(TransferError::Broken { line: found, .. }) => assert_eq!(found, line, "{case}"),
                other => panic!("{case}: expected a broken line, got {other:?}"),
            }
            assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0, "{case}: nothing is left");
        }
        assert!(matches!(import(&mut b"".as_slice(), &target, &mut |_| {}, &mut Counting::default()), Err(TransferError::Empty)));
    }

    #[test]
    fn a_directory_with_anything_in_it_is_refused() {
        let target = tempfile::tempdir().unwrap();
        fs::write(target.path().join("notes.txt"), "mine").unwrap();
        let file = chain::to_line(&stored_log(1)[0]);
        let refused = import(&mut file.as_slice(), target.path(), &mut |_| {}, &mut Counting::default());
        assert!(matches!(refused, Err(TransferError::NotEmpty { ref entries, .. }) if entries == "notes.txt"), "{refused:?}");
        assert_eq!(fs::read_to_string(target.path().join("notes.txt")).unwrap(), "mine");
    }
}
