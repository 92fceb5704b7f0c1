//! sled's disk failing under a running `keyledger serve`: an I/O error and a full disk,
//! injected below the real store by a FUSE filesystem (`common::faultfs`) that its data
//! directory is mounted through.
//!
//! Three faults: writes and syncs failing (`EIO`), only syncs failing (`EIO` from `fdatasync`
//! after writes that landed: the batch may or may not be durable), and a full disk (`ENOSPC`).
//! While the disk fails, the node must be safe and say so: changes answer 503 with
//! `Retry-After` (never a 201 that a failed sync could not back), reads go on from memory,
//! and `/readyz` answers 503 so that a supervisor takes it out of rotation. Once the disk
//! works again it must recover by itself, without a restart: ready again and taking changes.
//! And nothing it acknowledged may be lost: after a `kill -9` and a restart every key that got
//! a 201 is there, and the log verifies.
//!
//! sled only: the faults are in sled's files (PostgreSQL's own outage is tested by
//! `postgres_single_node.rs`).

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::faultfs::{Fault, FaultFs};
use common::http::{create, create_ok, personal, send, show, Endpoint, Resp};
use common::jsonapi::assert_error_doc;
use common::server::{run_keyledger, stderr_of, stdout_of, DataDir, Server};
use common::store::sled_only;
use nix::libc;

/// How long a healed node may take to be ready again: it retries on its own schedule, far
/// more often than this on any machine.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

/// How much of a server's log a failure shows.
const LOG_LINES_SHOWN: usize = 30;

/// The harness itself, before any server relies on it: files pass through to the backing
/// directory, `flock` is exclusive across handles, and a fault fails writes and syncs with
/// their errno — and only what each fault covers, and counted — until healed; a drop leaves no mount behind.
#[test]
fn the_fault_filesystem_passes_through_and_fails_only_what_it_is_told() {
    let backing = tempfile::tempdir().expect("a backing dir");
    let Some(disk) = FaultFs::mount(backing.path()) else { return };
    let mounted = disk.path().to_owned();
    assert!(is_mounted(&mounted), "{} is not in /proc/self/mounts", mounted.display());

    std::fs::create_dir(mounted.join("dir")).expect("mkdir through the mount");
    let path = mounted.join("dir").join("file");
    let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).expect("create");
    file.write_all(b"durable").expect("write");
    file.sync_data().expect("fdatasync");
    std::fs::File::open(mounted.join("dir")).and_then(|d| d.sync_all()).expect("fsync of a directory");
    assert_eq!(std::fs::read(backing.path().join("dir").join("file")).expect("the backing file"), b"durable");

    // Locks are the kernel's, as on a local disk: a second handle cannot take the first's.
    let other = std::fs::File::open(&path).expect("open again");
    file.try_lock().expect("flock the first handle");
    assert!(matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)), "a second handle took a held flock");
    file.unlock().expect("unlock");

    std::fs::rename(&path, mounted.join("dir").join("renamed")).expect("rename");
    assert_eq!(std::fs::read(mounted.join("dir").join("renamed")).expect("read after rename"), b"durable");
    let path = mounted.join("dir").join("renamed");
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open after rename");

    disk.fail(Fault::Eio);
    let errno = |e: std::io::Error| e.raw_os_error();
    assert_eq!(file.write_all_at_end(b" lost").map_err(errno), Err(Some(libc::EIO)), "a write under EIO");
    assert_eq!(file.sync_data().map_err(errno), Err(Some(libc::EIO)), "fdatasync under EIO");
    assert_eq!(file.sync_all().map_err(errno), Err(Some(libc::EIO)), "fsync under EIO");
    assert_eq!(std::fs::write(mounted.join("new"), b"x").map_err(errno), Err(Some(libc::EIO)), "a create under EIO");
    assert_eq!(std::fs::read(&path).expect("reads go on under EIO"), b"durable");
    let under_eio = disk.failures();
    assert!(under_eio >= 4, "every refused operation is counted: {:?}", disk.failures_by_operation());

    disk.fail(Fault::Enospc);
    assert_eq!(file.write_all_at_end(b" lost").map_err(errno), Err(Some(libc::ENOSPC)), "a write on a full disk");
    file.sync_data().expect("a sync with nothing new to write works on a full disk");
    assert_eq!(std::fs::read(&path).expect("reads go on on a full disk"), b"durable");
    std::fs::remove_file(mounted.join("dir").join("absent")).expect_err("nothing to remove");
    assert!(disk.failures() > under_eio, "{:?}", disk.failures_by_operation());

    disk.fail(Fault::SyncEio);
    let under_enospc = disk.failures();
    file.write_all_at_end(b" and").expect("a write when only syncs fail");
    assert_eq!(file.sync_data().map_err(errno), Err(Some(libc::EIO)), "fdatasync when only syncs fail");
    assert_eq!(disk.failures(), under_enospc + 1, "{:?}", disk.failures_by_operation());

    disk.heal();
    file.write_all_at_end(b" more").expect("a write once healed");
    file.sync_data().expect("a sync once healed");
    assert_eq!(std::fs::read(backing.path().join("dir").join("renamed")).expect("the backing file"), b"durable and more");
    drop(file);
    std::fs::remove_file(&path).expect("unlink");
    std::fs::remove_dir(mounted.join("dir")).expect("rmdir");
    assert!(!backing.path().join("dir").exists(), "the removals reached the backing dir");

    // A drop with a file still open on the mount (a test failing beside a running server)
    // still takes the mount away at once.
    let still_open = std::fs::File::create(mounted.join("open")).expect("create");
    drop(disk);
    assert!(!is_mounted(&mounted), "{} is still mounted after the drop", mounted.display());
    drop((still_open, other));
}

/// Appends at the end of a file (as sled writes its log: at an offset).
trait AppendAtEnd {
    fn write_all_at_end(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

impl AppendAtEnd for std::fs::File {
    fn write_all_at_end(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.seek(SeekFrom::End(0))?;
        self.write_all(bytes)
    }
}

fn is_mounted(path: &Path) -> bool {
    let mut mounts = String::new();
    std::fs::File::open("/proc/self/mounts").and_then(|mut f| f.read_to_string(&mut mounts)).expect("read /proc/self/mounts");
    let path = path.to_str().expect("utf-8 temp path");
    mounts.lines().any(|line| line.split_whitespace().nth(1) == Some(path))
}

#[tokio::test]
async fn an_io_error_is_refused_safely_and_recovered_from_without_a_restart() {
    if sled_only("the faults are injected under sled's files") {
        return;
    }
    a_failing_disk_is_survived(Fault::Eio).await;
}

#[tokio::test]
async fn a_failed_fdatasync_is_refused_safely_and_recovered_from_without_a_restart() {
    if sled_only("the faults are injected under sled's files") {
        return;
    }
    a_failing_disk_is_survived(Fault::SyncEio).await;
}

#[tokio::test]
async fn a_full_disk_is_refused_safely_and_recovered_from_without_a_restart() {
    if sled_only("the faults are injected under sled's files") {
        return;
    }
    a_failing_disk_is_survived(Fault::Enospc).await;
}

/// A key that got its 201: its id and token.
struct Acked {
    id: String,
    token: String,
}

impl Acked {
    fn of(resp: &Resp) -> Self {
        Acked { id: resp.id(), token: resp.token() }
    }
}

/// The whole story for one fault: healthy, failing (safe, not ready), healed (ready again,
/// same process), killed and restarted (nothing acknowledged lost, the log intact).
async fn a_failing_disk_is_survived(fault: Fault) {
    let data = DataDir::new();
    let tokens = data.acme_and_globex();
    let alice = &tokens["alice@acme.test"];
    let Some(disk) = FaultFs::mount(data.path()) else { return };
    let server = Server::spawn(&["--data", disk.arg(), "--listen", "127.0.0.1:0"], &[], Path::new("."));
    let pid = server.pid();

    // 1. Healthy.
    let before = Acked::of(&create_ok(&server, alice, personal("before the fault")).await);
    assert_eq!(readyz(&server).await.status, 200, "ready before the fault");

    // 2. The disk fails: changes are refused, reads go on, the node says it is not ready.
    disk.fail(fault);
    for attempt in 0..3 {
        let resp = create(&server, alice, personal(&format!("during the fault {attempt}"))).await;
        assert!(!(200..300).contains(&resp.status), "{fault:?}: a create was acknowledged while the disk failed: {}", resp.text);
        assert_error_doc(&resp, 503);
        assert!(disk.failures() > 0, "{fault:?}: the create answered {} without touching the failing disk", resp.status);
        let retry_after = resp.headers.get("retry-after").map(|v| v.to_str().unwrap_or_default().to_owned());
        let seconds = retry_after.as_deref().and_then(|v| v.parse::<u64>().ok());
        assert!(
            seconds.is_some_and(|s| s >= 1),
            "{fault:?}: a 503 must say when to retry (Retry-After in whole seconds), got {retry_after:?}: {}",
            resp.text
        );
    }
    let shown = show(&server, &before.token, &before.id).await;
    assert_eq!(shown.status, 200, "{fault:?}: reads go on from memory while the disk fails: {}", shown.text);
    let not_ready = readyz(&server).await;
    assert_eq!(not_ready.status, 503, "{fault:?}: /readyz while the disk fails: {}", not_ready.text);

    // 3. The disk works again: the same process becomes ready and takes changes.
    let failed = disk.failures_by_operation();
    disk.heal();
    let started = Instant::now();
    let ready = loop {
        let resp = readyz(&server).await;
        if resp.status == 200 {
            break resp;
        }
        if started.elapsed() > RECOVERY_DEADLINE {
            server.signal("KILL");
            let (_, log) = server.wait_for_exit(Duration::from_secs(30));
            // How it went wrong is at the start; the rest repeats the failed probes.
            let shown = log.len().min(LOG_LINES_SHOWN);
            panic!(
                "{fault:?}: not ready {RECOVERY_DEADLINE:?} after the disk was healed (it had failed {failed:?}): {}\nthe server's log (first {shown} of {} lines):\n{}",
                resp.text,
                log.len(),
                log[..shown].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready.json["status"], "ready", "{}", ready.text);
    assert_eq!(server.pid(), pid, "recovered without a restart");
    let after = Acked::of(&create_ok(&server, alice, personal("after the fault")).await);
    let shown = show(&server, &before.token, &before.id).await;
    assert_eq!(shown.status, 200, "{fault:?}: the key from before the fault, after recovery: {}", shown.text);

    // 4. Killed and restarted: every acknowledged key is there and the log verifies.
    server.kill9();
    disk.unmount();
    let server = Server::start(&data);
    for key in [&before, &after] {
        let shown = show(&server, &key.token, &key.id).await;
        assert_eq!(shown.status, 200, "{fault:?}: acknowledged key {} lost after a restart: {}", key.id, shown.text);
    }
    server.stop();
    let verified = audit_verify(&data);
    assert!(verified.status.success(), "{fault:?}: audit verify after the fault failed: {}", stderr_of(&verified));
    assert!(stdout_of(&verified).contains("intact"), "{fault:?}: audit verify: {}", stdout_of(&verified));
}

async fn readyz(at: &(impl Endpoint + ?Sized)) -> Resp {
    send(at, "GET", "/readyz", None, None, None).await
}

fn audit_verify(data: &DataDir) -> Output {
    run_keyledger(["audit", "verify", "--data", data.arg()], &[], Path::new("."), Duration::from_secs(120))
}
