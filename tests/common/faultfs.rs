//! A disk that fails on demand, under the real store: a FUSE filesystem that passes every
//! operation through to a backing directory until a test switches a [`Fault`] on, and then
//! answers what a failing disk answers (`EIO`) or a full one (`ENOSPC`), while reads go on.
//!
//! Why FUSE: sled and keyledger reach the disk through ordinary files (`pwrite`, `fdatasync`,
//! `fsync` of directories, `flock`), so the only honest way to make their writes fail without
//! changing them is to fail the system calls themselves. It runs in the test binary, on a
//! background thread, and is mounted with mount(2) straight on `/dev/fuse` (the `fuser`
//! crate's pure-Rust mount: the tests run as root, so neither libfuse nor `fusermount` is
//! needed). Dropping a [`FaultFs`] unmounts it (lazily, so even a test that panics with a
//! server still holding files open leaves no mount behind).
//!
//! What the model promises, and no more: under [`Fault::Eio`] and [`Fault::Enospc`] nothing new
//! reaches the backing files (writes, creates, truncations and, under `EIO`, renames and
//! removals fail), and under `EIO` every `fsync`/`fdatasync` fails too, so whatever was written
//! since the last successful sync may or may not be on the disk — as after a real failed sync.
//! [`Fault::SyncEio`] fails the syncs alone: the writes before them land, unacknowledged. Files are opened with
//! `direct_io`, so the kernel caches no file data: every read and write reaches this
//! filesystem. Locks (`flock`, `fcntl`) are not forwarded (the kernel is not told this
//! filesystem handles them), so the kernel keeps them locally, as on any local disk.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{File, FileTimes, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackgroundSession, BsdFileFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use nix::libc;
use nix::mount::{umount2, MntFlags};
use tempfile::TempDir;

/// What the disk does wrong while a fault is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An I/O error: every write, sync (`fsync`, `fdatasync`, of files and directories),
    /// create, truncation, rename and removal fails with `EIO`.
    Eio,
    /// A full disk: writes, creates and truncations that grow a file fail with `ENOSPC`, and
    /// `statfs` shows no free blocks; syncs, renames and removals (which need no new space)
    /// go on.
    Enospc,
    /// Only syncs fail (`fsync`, `fdatasync`, of files and directories: `EIO`): writes still
    /// reach the backing files, as they reach a page cache that the disk then fails to write
    /// back. Whether such data survives is unknown to whoever saw the sync fail; here it does.
    SyncEio,
}

/// The kinds of operation a fault can refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Write,
    Sync,
    Create,
    Grow,
    Shrink,
    Rename,
    Remove,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Sync => "sync",
            Op::Create => "create",
            Op::Grow | Op::Shrink => "truncate",
            Op::Rename => "rename",
            Op::Remove => "remove",
        }
    }
}

/// The switch a test turns, shared with the filesystem's thread, and what it refused.
#[derive(Default)]
struct Switch {
    fault: Mutex<Option<Fault>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    total: AtomicU64,
}

impl Switch {
    fn fault(&self) -> Option<Fault> {
        *lock(&self.fault)
    }

    /// The error `op` fails with now, if any (counted).
    fn refuses(&self, op: Op) -> Option<Errno> {
        let errno = match (self.fault()?, op) {
            (Fault::Eio, _) => Errno::EIO,
            (Fault::Enospc, Op::Write | Op::Create | Op::Grow) => Errno::ENOSPC,
            (Fault::Enospc, Op::Sync | Op::Shrink | Op::Rename | Op::Remove) => return None,
            (Fault::SyncEio, Op::Sync) => Errno::EIO,
            (Fault::SyncEio, Op::Write | Op::Create | Op::Grow | Op::Shrink | Op::Rename | Op::Remove) => return None,
        };
        *lock(&self.refused).entry(op.name()).or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(errno)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A mounted fault-injecting filesystem over a backing directory. Unmounted when dropped.
pub struct FaultFs {
    switch: Arc<Switch>,
    session: Option<BackgroundSession>,
    mountpoint: TempDir,
}

impl FaultFs {
    /// Mounts a passthrough of `backing` (an existing directory, whose files it shows and
    /// changes) at a new temporary directory, served on a background thread. `None` where
    /// FUSE cannot be mounted (not root, no /dev/fuse), said once on stdout, so that the README's
    /// test command passes on a machine with only Rust; with `KEYLEDGER_TEST_REQUIRE_FUSE`
    /// set (as `.ci/run` sets it) that is a failure instead.
    pub fn mount(backing: &Path) -> Option<FaultFs> {
        sweep_stale_mounts();
        let backing = backing.canonicalize().unwrap_or_else(|e| panic!("the backing dir {}: {e}", backing.display()));
        let mountpoint = tempfile::tempdir().expect("a mountpoint dir");
        let switch = Arc::new(Switch::default());
        let filesystem = Passthrough::new(backing, Arc::clone(&switch));
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName(format!("{FS_NAME}-{}", std::process::id()))];
        // Two threads: a slow sync of one file does not hold up every other operation.
        config.n_threads = Some(2);
        let session = match fuser::spawn_mount(filesystem, mountpoint.path(), &config) {
            Ok(session) => session,
            Err(e) if std::env::var_os("KEYLEDGER_TEST_REQUIRE_FUSE").is_some() => {
                panic!("mount the fault filesystem at {} (needs root and /dev/fuse): {e}", mountpoint.path().display())
            }
            Err(e) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    println!("keyledger disk-fault tests: skipped, FUSE cannot be mounted here (needs root and /dev/fuse): {e}")
                });
                return None;
            }
        };
        Some(FaultFs { switch, session: Some(session), mountpoint })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.mountpoint.path()
    }

    /// [`FaultFs::path`] as a command-line argument.
    pub fn arg(&self) -> &str {
        self.path().to_str().expect("utf-8 temp path")
    }

    /// Makes the operations `fault` covers fail from now on, until [`FaultFs::heal`].
    pub fn fail(&self, fault: Fault) {
        *lock(&self.switch.fault) = Some(fault);
    }

    /// Lets every operation through again.
    pub fn heal(&self) {
        *lock(&self.switch.fault) = None;
    }

    /// How many operations a fault has failed so far.
    pub fn failures(&self) -> u64 {
        self.switch.total.load(Ordering::Relaxed)
    }

    /// How many of each kind of operation a fault has failed so far (for messages).
    pub fn failures_by_operation(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.switch.refused).clone()
    }

    /// Unmounts now and waits for the filesystem's thread; fails the test if the mount is
    /// busy (a process still has files open on it).
    pub fn unmount(mut self) {
        let session = self.session.take().expect("mounted");
        session.umount_and_join().unwrap_or_else(|e| panic!("unmount {}: {e}", self.path().display()));
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // Whatever still has files open finishes on a working disk; the mount leaves the
            // tree at once (MNT_DETACH), and the filesystem's thread ends with the last of
            // them (a server the test kills). The session's own unmount then finds nothing.
            self.heal();
            let _ = umount2(self.mountpoint.path(), MntFlags::MNT_DETACH);
            drop(session);
        }
    }
}

/// The source name of every mount, followed by the mounting test binary's pid.
const FS_NAME: &str = "keyledger-faultfs";

/// Detaches mounts of this filesystem whose test binary is gone (killed before its drops
/// ran): their directories would otherwise answer "transport endpoint is not connected".
fn sweep_stale_mounts() {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return };
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(source), Some(target)) = (fields.next(), fields.next()) else { continue };
        let Some(pid) = source.strip_prefix(FS_NAME).and_then(|rest| rest.strip_prefix('-')).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            // Mount points with spaces are written with octal escapes; tempdirs have none.
            let _ = umount2(target, MntFlags::MNT_DETACH);
        }
    }
}

/// How long the kernel may keep an entry or attributes: this filesystem is their only writer,
/// and the kernel updates them itself after what it sends through.
const TTL: Duration = Duration::from_secs(1);

/// The filesystem: inode numbers of its own for paths under the backing directory, and the
/// backing files it opened, by handle.
struct Passthrough {
    root: PathBuf,
    switch: Arc<Switch>,
    inodes: Mutex<Inodes>,
    files: Mutex<HashMap<u64, Arc<File>>>,
    dirs: Mutex<HashMap<u64, Vec<Entry>>>,
    next_handle: AtomicU64,
}

/// A directory's entry, as listed when the directory was opened.
struct Entry {
    ino: u64,
    kind: FileType,
    name: OsString,
}

/// Inode numbers ↔ paths relative to the backing directory (the root, 1, is the empty path).
/// Numbers are never reused within a mount.
struct Inodes {
    paths: HashMap<u64, PathBuf>,
    numbers: HashMap<PathBuf, u64>,
    next: u64,
}

impl Inodes {
    fn new() -> Self {
        let root = PathBuf::new();
        Inodes { paths: HashMap::from([(INodeNo::ROOT.0, root.clone())]), numbers: HashMap::from([(root, INodeNo::ROOT.0)]), next: 2 }
    }

    fn number(&mut self, path: &Path) -> u64 {
        if let Some(&ino) = self.numbers.get(path) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.paths.insert(ino, path.to_owned());
        self.numbers.insert(path.to_owned(), ino);
        ino
    }

    fn removed(&mut self, path: &Path) {
        if let Some(ino) = self.numbers.remove(path) {
            self.paths.remove(&ino);
        }
    }

    /// `from` (and everything under it) is now `to`; whatever `to` was is gone.
    fn renamed(&mut self, from: &Path, to: &Path) {
        self.removed(to);
        let moved: Vec<(u64, PathBuf)> = self
            .paths
            .iter()
            .filter_map(|(&ino, path)| {
                path.strip_prefix(from).ok().map(|rest| (ino, if rest.as_os_str().is_empty() { to.to_owned() } else { to.join(rest) }))
            })
            .collect();
        for (ino, path) in moved {
            if let Some(old) = self.paths.insert(ino, path.clone()) {
                self.numbers.remove(&old);
            }
            self.numbers.insert(path, ino);
        }
    }
}

impl Passthrough {
    fn new(root: PathBuf, switch: Arc<Switch>) -> Self {
        Passthrough {
            root,
            switch,
            inodes: Mutex::new(Inodes::new()),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        }
    }

    /// The error `op` fails with now, if a fault refuses it.
    fn refuse(&self, op: Op) -> Result<(), Errno> {
        self.switch.refuses(op).map_or(Ok(()), Err)
    }

    /// The relative path of inode `ino`.
    fn relative(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        lock(&self.inodes).paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    /// The backing path of inode `ino`.
    fn real(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        Ok(self.root.join(self.relative(ino)?))
    }

    /// The relative and backing paths of `name` in directory `parent`.
    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<(PathBuf, PathBuf), Errno> {
        let relative = self.relative(parent)?.join(name);
        let real = self.root.join(&relative);
        Ok((relative, real))
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        lock(&self.files).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn handle(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    /// The attributes of the backing `path`, numbered as `relative`.
    fn entry(&self, relative: &Path, real: &Path) -> Result<FileAttr, Errno> {
        let metadata = std::fs::symlink_metadata(real)?;
        let ino = lock(&self.inodes).number(relative);
        Ok(attributes(ino, &metadata))
    }

    fn lookup(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let (relative, real) = self.child(parent, name)?;
        self.entry(&relative, &real)
    }

    fn getattr(&self, ino: INodeNo, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
        let metadata = match fh.and_then(|fh| self.file(fh).ok()) {
            Some(file) => file.metadata()?,
            None => std::fs::symlink_metadata(self.real(ino)?)?,
        };
        Ok(attributes(ino.0, &metadata))
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        let real = self.real(ino)?;
        if let Some(size) = size {
            let file = match fh.and_then(|fh| self.file(fh).ok()) {
                Some(file) => file,
                None => Arc::new(OpenOptions::new().write(true).open(&real)?),
            };
            let grows = size > file.metadata()?.len();
            self.refuse(if grows { Op::Grow } else { Op::Shrink })?;
            file.set_len(size)?;
        }
        if let Some(mode) = mode {
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode))?;
        }
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::lchown(&real, uid, gid)?;
        }
        if atime.is_some() || mtime.is_some() {
            let at = |time: TimeOrNow| match time {
                TimeOrNow::SpecificTime(time) => time,
                TimeOrNow::Now => SystemTime::now(),
            };
            let mut times = FileTimes::new();
            if let Some(atime) = atime {
                times = times.set_accessed(at(atime));
            }
            if let Some(mtime) = mtime {
                times = times.set_modified(at(mtime));
            }
            File::open(&real)?.set_times(times)?;
        }
        self.getattr(ino, fh)
    }

    fn mkdir(&self, parent: INodeNo, name: &OsStr, mode: u32, umask: u32) -> Result<FileAttr, Errno> {
        self.refuse(Op::Create)?;
        let (relative, real) = self.child(parent, name)?;
        std::fs::DirBuilder::new().mode(mode & !umask).create(&real)?;
        self.entry(&relative, &real)
    }

    fn remove(&self, parent: INodeNo, name: &OsStr, directory: bool) -> Result<(), Errno> {
        self.refuse(Op::Remove)?;
        let (relative, real) = self.child(parent, name)?;
        if directory {
            std::fs::remove_dir(&real)?;
        } else {
            std::fs::remove_file(&real)?;
        }
        lock(&self.inodes).removed(&relative);
        Ok(())
    }

    fn rename(&self, parent: INodeNo, name: &OsStr, newparent: INodeNo, newname: &OsStr, flags: RenameFlags) -> Result<(), Errno> {
        if !flags.is_empty() {
            // renameat2's exchange and no-replace: nothing here uses them.
            return Err(Errno::EINVAL);
        }
        self.refuse(Op::Rename)?;
        let (from, from_real) = self.child(parent, name)?;
        let (to, to_real) = self.child(newparent, newname)?;
        std::fs::rename(&from_real, &to_real)?;
        lock(&self.inodes).renamed(&from, &to);
        Ok(())
    }

    fn open(&self, ino: INodeNo, flags: i32) -> Result<u64, Errno> {
        let real = self.real(ino)?;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let truncates = writes && flags & libc::O_TRUNC != 0;
        if truncates {
            self.refuse(Op::Shrink)?;
        }
        let file = OpenOptions::new().read(true).write(writes).truncate(truncates).open(real)?;
        let fh = self.handle();
        lock(&self.files).insert(fh, Arc::new(file));
        Ok(fh)
    }

    fn create(&self, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, flags: i32) -> Result<(FileAttr, u64), Errno> {
        self.refuse(Op::Create)?;
        let (relative, real) = self.child(parent, name)?;
        let mut options = OpenOptions::new();
        options.read(true).write(true).mode(mode & !umask);
        if flags & libc::O_EXCL != 0 {
            options.create_new(true);
        } else {
            options.create(true).truncate(flags & libc::O_TRUNC != 0);
        }
        let file = options.open(&real)?;
        let attr = self.entry(&relative, &real)?;
        let fh = self.handle();
        lock(&self.files).insert(fh, Arc::new(file));
        Ok((attr, fh))
    }

    fn read(&self, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let file = self.file(fh)?;
        let mut buffer = vec![0; size as usize];
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read_at(&mut buffer[filled..], offset + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        buffer.truncate(filled);
        Ok(buffer)
    }

    fn write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        self.refuse(Op::Write)?;
        self.file(fh)?.write_all_at(data, offset)?;
        u32::try_from(data.len()).map_err(|_| Errno::EINVAL)
    }

    fn fsync(&self, fh: FileHandle, datasync: bool) -> Result<(), Errno> {
        self.refuse(Op::Sync)?;
        let file = self.file(fh)?;
        if datasync {
            file.sync_data()?;
        } else {
            file.sync_all()?;
        }
        Ok(())
    }

    fn opendir(&self, ino: INodeNo) -> Result<u64, Errno> {
        let relative = self.relative(ino)?;
        let mut entries = vec![
            Entry { ino: ino.0, kind: FileType::Directory, name: ".".into() },
            Entry { ino: ino.0, kind: FileType::Directory, name: "..".into() },
        ];
        for entry in std::fs::read_dir(self.root.join(&relative))? {
            let entry = entry?;
            let kind = FileType::from_std(entry.file_type()?).unwrap_or(FileType::RegularFile);
            let ino = lock(&self.inodes).number(&relative.join(entry.file_name()));
            entries.push(Entry { ino, kind, name: entry.file_name() });
        }
        let fh = self.handle();
        lock(&self.dirs).insert(fh, entries);
        Ok(fh)
    }

    fn fsyncdir(&self, ino: INodeNo) -> Result<(), Errno> {
        self.refuse(Op::Sync)?;
        File::open(self.real(ino)?)?.sync_all()?;
        Ok(())
    }

    fn statfs(&self) -> Result<nix::sys::statvfs::Statvfs, Errno> {
        nix::sys::statvfs::statvfs(&self.root).map_err(|e| Errno::from_i32(e as i32))
    }
}

/// A backing file's metadata as FUSE attributes, numbered `ino`.
fn attributes(ino: u64, metadata: &std::fs::Metadata) -> FileAttr {
    let time = |seconds: i64, nanos: i64| {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)) + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
    };
    FileAttr {
        ino: INodeNo(ino),
        size: metadata.len(),
        blocks: metadata.blocks(),
        atime: time(metadata.atime(), metadata.atime_nsec()),
        mtime: time(metadata.mtime(), metadata.mtime_nsec()),
        ctime: time(metadata.ctime(), metadata.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: FileType::from_std(metadata.file_type()).unwrap_or(FileType::RegularFile),
        perm: (metadata.mode() & 0o7777) as u16,
        nlink: u32::try_from(metadata.nlink()).unwrap_or(u32::MAX),
        uid: metadata.uid(),
        gid: metadata.gid(),
        rdev: u32::try_from(metadata.rdev()).unwrap_or(0),
        blksize: u32::try_from(metadata.blksize()).unwrap_or(4096),
        flags: 0,
    }
}

/// No page cache for file data: every read and write comes here, so that what a fault
/// refuses is never served or kept by the kernel instead.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

impl Filesystem for Passthrough {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match Passthrough::lookup(self, parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match Passthrough::getattr(self, ino, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match Passthrough::setattr(self, ino, mode, uid, gid, size, atime, mtime, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match Passthrough::mkdir(self, parent, name, mode, umask) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.remove(parent, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.remove(parent, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(Passthrough::rename(self, parent, name, newparent, newname, flags), reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match Passthrough::open(self, ino, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match Passthrough::read(self, fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match Passthrough::write(self, fh, offset, data) {
            Ok(written) => reply.written(written),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Writes went through as they came: a close has nothing left to write.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.files).remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        reply_empty(Passthrough::fsync(self, fh, datasync), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match Passthrough::opendir(self, ino) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let dirs = lock(&self.dirs);
        let Some(entries) = dirs.get(&fh.0) else {
            drop(dirs);
            return reply.error(Errno::EBADF);
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (at, entry) in entries.iter().enumerate().skip(skip) {
            // The offset of an entry is where the next listing resumes.
            if reply.add(INodeNo(entry.ino), at as u64 + 1, entry.kind, &entry.name) {
                break;
            }
        }
        drop(dirs);
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        lock(&self.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(Passthrough::fsyncdir(self, ino), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match Passthrough::statfs(self) {
            Ok(stats) => {
                let full = self.switch.fault() == Some(Fault::Enospc);
                let (free, available) = if full { (0, 0) } else { (stats.blocks_free(), stats.blocks_available()) };
                reply.statfs(
                    stats.blocks(),
                    free,
                    available,
                    stats.files(),
                    stats.files_free(),
                    u32::try_from(stats.block_size()).unwrap_or(4096),
                    u32::try_from(stats.name_max()).unwrap_or(255),
                    u32::try_from(stats.fragment_size()).unwrap_or(4096),
                );
            }
            Err(e) => reply.error(e),
        }
    }

    fn create(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        match Passthrough::create(self, parent, name, mode, umask, flags) {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), FileHandle(fh), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }
}

fn reply_empty(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}
