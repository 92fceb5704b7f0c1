//! `keyledger.lock`: who holds the data directory, said plainly to whoever else tries.
//!
//! sled locks its own data file too, but a second process would learn only that sled
//! "could not acquire lock"; this lock is taken first and records the holder's pid and
//! command line, so that the refusal can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::ledger::LedgerError;

pub(super) const LOCK_FILE: &str = "keyledger.lock";

/// Takes the directory's lock and records who holds it, so that a second process can say
/// which one is in the way instead of failing obscurely inside sled.
pub(super) fn lock(dir: &Path) -> Result<File, LedgerError> {
    let open_err = |source| LedgerError::Open { dir: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(open_err)?;
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(LOCK_FILE)).map_err(open_err)?;
    let mut attempts = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::Error(source)) => return Err(open_err(source)),
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut holder));
                let holder = holder.trim();
                // A lock this process recorded and no longer holds itself is held by a
                // child that another thread is starting: between its fork and its exec it
                // has a copy of every descriptor, and it lets go at the exec.
                if recorded_pid(holder) == Some(std::process::id()) && waited_for_release(&mut attempts) {
                    continue;
                }
                let holder = if holder.is_empty() { String::new() } else { format!(" ({holder})") };
                return Err(LedgerError::Locked { dir: dir.to_owned(), holder });
            }
        }
    }
    record_holder(&mut file).map_err(open_err)?;
    Ok(file)
}

/// Writes this process into the lock file.
fn record_holder(file: &mut File) -> std::io::Result<()> {
    let me = format!("pid {}: {}", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(me.as_bytes())
}

/// Whether the directory's disk takes writes and syncs again: the holder is written into the
/// lock file once more and synced. sled cannot be asked (after an I/O error it keeps
/// answering that error), and dropping its database while syncs fail panics inside sled.
pub(super) fn disk_works(file: &mut File) -> std::io::Result<()> {
    record_holder(file)?;
    file.sync_data()
}

/// Waits a moment for a lock that this process is letting go of, and says whether to try
/// again: for up to two seconds in all, counted in `attempts`.
pub(super) fn waited_for_release(attempts: &mut u32) -> bool {
    if *attempts >= 200 {
        return false;
    }
    *attempts += 1;
    std::thread::sleep(std::time::Duration::from_millis(10));
    true
}

/// The process id a lock file records (`pid N: command line`).
fn recorded_pid(holder: &str) -> Option<u32> {
    holder.strip_prefix("pid ")?.split(':').next()?.parse().ok()
}

/// Whether some handle holds sled's lock on its data file (an exclusive `flock`, as sled
/// takes it) at this moment. Holding `keyledger.lock`, such a handle can only be this
/// process's own: a `Db` whose threads are still letting go, or a child's copy.
pub(super) fn sled_lock_held(data_file: &Path) -> bool {
    File::open(data_file).is_ok_and(|file| matches!(file.try_lock(), Err(TryLockError::WouldBlock)))
}
