//! Linux: POSIX shared memory in /dev/shm, FIFOs with rustix, signal flags
//! with signal-hook.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rustix::fs::{FallocateFlags, Mode};
use rustix::io::Errno;
use rustix::shm;
use shm_layout::BusName;

/// Creates a new shared memory object exclusively, with exactly `mode` and,
/// if given, group `group`. `Ok(None)` if it exists.
pub(crate) fn create_shm(name: &str, mode: u32, group: Option<u32>) -> io::Result<Option<OwnedFd>> {
    let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
    match shm::open(name, flags, Mode::from_raw_mode(mode)) {
        Ok(fd) => {
            let set_up = || -> io::Result<()> {
                if let Some(g) = group {
                    rustix::fs::fchown(&fd, None, Some(rustix::fs::Gid::from_raw(g))).map_err(|e| {
                        io::Error::new(
                            io::Error::from(e).kind(),
                            format!("cannot give it to group {g} ({e}): you must be a member of that group (see `id`) or root"),
                        )
                    })?;
                }
                // shm_open's mode is filtered by the umask; set it exactly.
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
                Ok(())
            };
            match set_up() {
                Ok(()) => Ok(Some(fd)),
                Err(e) => {
                    // Nothing half-made is left behind.
                    let _ = shm::unlink(name);
                    Err(e)
                }
            }
        }
        Err(Errno::EXIST) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens an existing shared memory object read-only, with its size.
/// `Ok(None)` if it does not exist.
pub(crate) fn open_shm_read(name: &str) -> io::Result<Option<(OwnedFd, u64)>> {
    match shm::open(name, shm::OFlags::RDONLY, Mode::empty()) {
        Ok(fd) => {
            let size = rustix::fs::fstat(&fd)?.st_size as u64;
            Ok(Some((fd, size)))
        }
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes a shared memory object; a missing one is not an error.
pub(crate) fn unlink_shm(name: &str) -> io::Result<()> {
    match shm::unlink(name) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sizes a new object and reserves its pages, so running out of room in
/// /dev/shm is an error now rather than a SIGBUS on first touch.
pub(crate) fn size_shm(fd: &OwnedFd, size: u64) -> io::Result<()> {
    rustix::fs::ftruncate(fd, size)?;
    match rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        // Filesystems without fallocate: the pages are reserved lazily.
        Err(Errno::OPNOTSUPP) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Maps the whole object read-write with its page tables populated (a first
/// copy into never-touched pages is several times slower).
pub(crate) fn map_rw(fd: &OwnedFd, len: u64) -> io::Result<memmap2::MmapRaw> {
    let len =
        usize::try_from(len).map_err(|_| io::Error::other("bus larger than the address space"))?;
    memmap2::MmapOptions::new().len(len).populate().map_raw(fd)
}

/// `CLOCK_MONOTONIC` in nanoseconds: the timestamp base shared by every
/// process on the machine.
pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Wall clock in nanoseconds since the Unix epoch.
pub(crate) fn realtime_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Whether process `pid` is running (a process of another user counts). A
/// zombie — exited, not yet reaped by its parent — holds no memory and no
/// descriptors, so for a bus it is gone.
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    if matches!(rustix::process::test_kill_process(p), Err(Errno::SRCH)) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name in "(...)".
        Ok(stat) => !matches!(
            stat.iter()
                .rposition(|&b| b == b')')
                .and_then(|i| stat.get(i + 2)),
            Some(b'Z' | b'X')
        ),
        Err(_) => true, // no /proc to ask: trust kill()
    }
}

/// This process's id.
pub(crate) fn my_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The root of trigger directories for this user.
pub(crate) fn runtime_root() -> PathBuf {
    let xdg = std::env::var("XDG_RUNTIME_DIR").ok();
    shm_layout::naming::runtime_root(xdg.as_deref(), rustix::process::geteuid().as_raw())
}

/// Creates (or checks) a trigger directory: a real directory, ours, mode
/// 0700 — or, shared with `group`, setgid 2770 in that group (so the FIFOs
/// group members create there belong to the group), below a root that the
/// group may traverse (0711). The root is created 0700 otherwise.
pub(crate) fn ensure_trigger_dir(path: &Path, group: Option<u32>) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent, 0o700)?;
        if group.is_some() {
            // Search (not list) for others, so group members reach the
            // bus's directory; what is in the root stays hidden.
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))?;
        }
    }
    ensure_dir(path, if group.is_some() { 0o2770 } else { 0o700 })?;
    if let Some(g) = group {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(g)))?;
        // chown may clear the setgid bit: set the mode again.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o2770))?;
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn ensure_dir(path: &Path, mode: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} exists and is not a directory",
            path.display()
        )));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(io::Error::other(format!(
            "{} belongs to uid {}, not to this user",
            path.display(),
            meta.uid()
        )));
    }
    Ok(())
}

/// A bus's producer lock: an exclusive `flock` on the shared memory object
/// [`BusName::lock_name`] (`/dev/shm/.framebus-lock.<bus>`, mode 0600),
/// held for the producer's whole life and dropped by the kernel when it
/// dies. It lives in the same namespace as the bus object itself, so every
/// process that can see the bus sees the lock, whatever its environment.
/// (Bus names never start with `.`, so no bus can be called like a lock.)
///
/// Dropping it removes the lock object while still holding the lock, then
/// releases it: a clean stop leaves nothing in /dev/shm. A process that
/// opened the object before the removal may then get the lock of an
/// unlinked object; [`lock_bus`] sees that (the name no longer leads to the
/// object it locked) and starts over, so whoever holds the lock of the
/// object the name leads to is the only owner of the bus. Only an owner
/// removes the object, so the name cannot change under an owner.
pub(crate) struct BusLock {
    _fd: OwnedFd,
    name: String,
}

impl Drop for BusLock {
    fn drop(&mut self) {
        // Still locked here: `_fd` closes (and unlocks) after this body.
        if let Err(e) = shm::unlink(self.name.as_str()) {
            tracing::debug!(lock = %self.name, error = %e, "cannot remove the bus lock");
        }
    }
}

/// Takes bus `bus`'s producer lock (see [`BusLock`]). `Ok(None)` if another
/// process holds it.
pub(crate) fn lock_bus(bus: &BusName) -> io::Result<Option<BusLock>> {
    let name = bus.lock_name();
    let path = format!("/dev/shm{name}");
    // Each retry means an owner removed the object between our open and our
    // lock: a handful at most, unless something removes it in a loop.
    for _ in 0..100 {
        let fd = shm::open(
            name.as_str(),
            shm::OFlags::CREATE | shm::OFlags::RDWR,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot open the bus lock {path}: {e}"),
            )
        })?;
        match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let locked = rustix::fs::fstat(&fd)?;
        match rustix::fs::stat(path.as_str()) {
            Ok(now) if (now.st_dev, now.st_ino) == (locked.st_dev, locked.st_ino) => {
                return Ok(Some(BusLock { _fd: fd, name }));
            }
            // Removed (or replaced) since we opened it: not the lock.
            Ok(_) | Err(Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(format!(
        "cannot take the bus lock {path}: something keeps removing it"
    )))
}

/// The owner uid of an open file.
pub(crate) fn owner_uid(fd: &OwnedFd) -> io::Result<u32> {
    Ok(rustix::fs::fstat(fd)?.st_uid)
}

/// The first ancestor of `dir` (itself excluded) that members of group
/// `gid` (other than its owner) cannot search, if any.
pub(crate) fn untraversable_by_group(dir: &Path, gid: u32) -> Option<PathBuf> {
    dir.ancestors().skip(1).find_map(|a| {
        let m = std::fs::metadata(a).ok()?;
        let mode = m.mode();
        // Members of the directory's group get its group bits, not its
        // other bits (POSIX checks one class only).
        let searchable = if m.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        (!searchable).then(|| a.to_path_buf())
    })
}

/// Whether `path` is a directory (not a link to one) owned by this user.
pub(crate) fn is_own_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.uid() == my_uid())
}

/// This process's effective uid.
pub(crate) fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// What opening a consumer's FIFO found.
#[derive(Debug)]
pub(crate) enum FifoOpen {
    /// Open for writing.
    Open(File),
    /// No reader (ENXIO) or no FIFO (ENOENT): the consumer is gone.
    NoReader,
    /// Something that is not this user's FIFO is at the path.
    Foreign(String),
    /// Opening failed for a reason that says nothing about the consumer
    /// (out of descriptors, memory...): try again later.
    Failed(io::Error),
}

/// Opens a consumer's FIFO for writing without blocking. It must be a FIFO
/// owned by this user or, on a bus shared with `group`, in that group.
pub(crate) fn open_fifo_writer(path: &Path, group: Option<u32>) -> FifoOpen {
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => {
            return FifoOpen::NoReader
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return FifoOpen::NoReader,
        // O_NOFOLLOW on a symlink.
        Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
            return FifoOpen::Foreign(format!("{} is a symbolic link", path.display()))
        }
        Err(e) => return FifoOpen::Failed(e),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return FifoOpen::Failed(e),
    };
    if !meta.file_type().is_fifo() {
        return FifoOpen::Foreign(format!("{} is not a FIFO", path.display()));
    }
    if meta.uid() != my_uid() && group != Some(meta.gid()) {
        return FifoOpen::Foreign(format!(
            "{} belongs to uid {} and group {}",
            path.display(),
            meta.uid(),
            meta.gid()
        ));
    }
    FifoOpen::Open(file)
}

/// What became of one trigger write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TriggerWrite {
    /// Written whole.
    Sent,
    /// The pipe is full (the consumer is behind), or the write failed in a
    /// way that says nothing about the consumer.
    Full,
    /// The reader is gone (EPIPE).
    Gone,
}

/// One non-blocking write of a whole trigger message (< PIPE_BUF, so the
/// kernel writes all of it or nothing). Only EPIPE says the reader is gone;
/// any other failure drops this one trigger, like a full pipe.
pub(crate) fn write_trigger(file: &mut File, msg: &[u8]) -> TriggerWrite {
    match file.write(msg) {
        Ok(_) => TriggerWrite::Sent,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => TriggerWrite::Gone,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => TriggerWrite::Full,
        Err(e) => {
            tracing::debug!("trigger write failed ({e}); dropped like a full pipe");
            TriggerWrite::Full
        }
    }
}

/// Removes a FIFO if it is one; anything else at the path is left alone.
/// Returns whether it removed one.
pub(crate) fn remove_fifo(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => match std::fs::remove_file(path) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("could not remove {}: {e}", path.display());
                false
            }
        },
        _ => false,
    }
}

/// Removes every FIFO in a trigger directory, then the directory if empty.
/// Returns the FIFOs removed.
pub(crate) fn remove_trigger_dir(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if remove_fifo(&entry.path()) {
                removed.push(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
    removed
}

/// Bus names that have a shared memory object in /dev/shm or a trigger
/// directory under `root`.
pub(crate) fn bus_names_on_machine(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_prefix(shm_layout::naming::SHM_PREFIX)
                .or_else(|| name.strip_prefix(shm_layout::naming::LOCK_PREFIX))
                .map(str::to_owned)
        })
        .collect();
    names.extend(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| !n.starts_with('.')),
    );
    names.sort();
    names.dedup();
    names
}

/// A flag set by SIGINT or SIGTERM.
pub(crate) fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    /// Threads that each open the lock object themselves (separate open
    /// file descriptions: for `flock` they are as separate as processes)
    /// take and drop the lock in a loop; dropping removes the object, so
    /// some of them lock an object just removed. Never two owners at once,
    /// and nothing left behind.
    #[test]
    fn bus_lock_has_one_owner_while_its_object_comes_and_goes() {
        let bus = BusName::new(&format!("locktest-{}", std::process::id())).expect("bus name");
        let owners = AtomicU32::new(0);
        let taken = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        let Some(lock) = lock_bus(&bus).expect("lock_bus") else {
                            continue;
                        };
                        assert_eq!(
                            owners.fetch_add(1, Ordering::SeqCst),
                            0,
                            "two owners of one bus"
                        );
                        taken.fetch_add(1, Ordering::Relaxed);
                        std::thread::yield_now();
                        owners.fetch_sub(1, Ordering::SeqCst);
                        drop(lock);
                    }
                });
            }
        });
        assert!(taken.load(Ordering::Relaxed) > 0);
        let path = format!("/dev/shm{}", bus.lock_name());
        assert!(!std::path::Path::new(&path).exists(), "{path} left behind");
    }
}
