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

/// Creates a new shared memory object exclusively. `Ok(None)` if it exists.
pub(crate) fn create_shm(name: &str, mode: u32) -> io::Result<Option<OwnedFd>> {
    let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
    match shm::open(name, flags, Mode::from_raw_mode(mode)) {
        Ok(fd) => {
            // shm_open's mode is filtered by the umask; set it exactly.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
            Ok(Some(fd))
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

/// Whether process `pid` exists (a process of another user counts).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
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
/// `mode`. Its parent root is created 0700 too.
pub(crate) fn ensure_private_dir(path: &Path, mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent, 0o700)?;
    }
    ensure_dir(path, mode)
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

/// Opens a consumer's FIFO for writing without blocking. `Ok(None)` when it
/// has no reader (ENXIO) or does not exist. Anything but a FIFO owned by
/// this user is refused.
pub(crate) fn open_fifo_writer(path: &Path) -> io::Result<Option<File>> {
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_fifo() {
        return Err(io::Error::other(format!(
            "{} is not a FIFO",
            path.display()
        )));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(io::Error::other(format!(
            "{} belongs to uid {}",
            path.display(),
            meta.uid()
        )));
    }
    Ok(Some(file))
}

/// What became of one trigger write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TriggerWrite {
    /// Written whole.
    Sent,
    /// The pipe is full: the consumer is behind.
    Full,
    /// The reader is gone (EPIPE) or the descriptor failed.
    Gone,
}

/// One non-blocking write of a whole trigger message (< PIPE_BUF, so the
/// kernel writes all of it or nothing).
pub(crate) fn write_trigger(file: &mut File, msg: &[u8]) -> TriggerWrite {
    match file.write(msg) {
        Ok(n) if n == msg.len() => TriggerWrite::Sent,
        Ok(_) => TriggerWrite::Gone,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => TriggerWrite::Full,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => TriggerWrite::Full,
        Err(_) => TriggerWrite::Gone,
    }
}

/// Removes a FIFO if it is one; anything else at the path is left alone.
pub(crate) fn remove_fifo(path: &Path) {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_fifo() {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::debug!("could not remove {}: {e}", path.display());
            }
        }
    }
}

/// Removes every FIFO in a trigger directory, then the directory if empty.
pub(crate) fn remove_trigger_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            remove_fifo(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A flag set by SIGINT or SIGTERM.
pub(crate) fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}
