//! Linux: shared memory mappings, the consumer's trigger FIFO, poll, clocks.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::shm;

/// Opens a bus object read-write (for its atomics), with its size.
/// `Ok(None)` if it does not exist.
pub(crate) fn open_shm(name: &str) -> io::Result<Option<(OwnedFd, u64)>> {
    match shm::open(name, shm::OFlags::RDWR, Mode::empty()) {
        Ok(fd) => {
            let size = rustix::fs::fstat(&fd)?.st_size as u64;
            Ok(Some((fd, size)))
        }
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Maps `len` bytes from offset 0 read-write.
pub(crate) fn map_rw(fd: &OwnedFd, len: u64) -> io::Result<memmap2::MmapRaw> {
    memmap2::MmapOptions::new().len(to_usize(len)?).map_raw(fd)
}

/// Maps `len` bytes at `offset` (page aligned) read-only: the pixels. A
/// buggy algorithm cannot scribble on frames other consumers read.
pub(crate) fn map_ro(fd: &OwnedFd, offset: u64, len: u64) -> io::Result<memmap2::MmapRaw> {
    memmap2::MmapOptions::new()
        .offset(offset)
        .len(to_usize(len)?)
        .map_raw_read_only(fd)
}

fn to_usize(len: u64) -> io::Result<usize> {
    usize::try_from(len).map_err(|_| io::Error::other("bus larger than the address space"))
}

/// `CLOCK_MONOTONIC` in nanoseconds, the producer's timestamp base.
pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
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

/// Checks the trigger directory a producer recorded in its bus: a real
/// directory that is ours, or one shared with a group this process belongs
/// to (setgid and group-writable, as `--group` makes it). Returns whether it
/// is shared: then FIFOs are made writable by the group (the producer writes
/// them as a group member).
pub(crate) fn check_trigger_dir(dir: &Path) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let shared = meta.permissions().mode() & 0o2070 == 0o2070;
    if meta.uid() == rustix::process::geteuid().as_raw() {
        return Ok(shared);
    }
    let gid = meta.gid();
    let mine = rustix::process::getegid().as_raw() == gid
        || rustix::process::getgroups().is_ok_and(|g| g.iter().any(|x| x.as_raw() == gid));
    if shared && mine {
        return Ok(true);
    }
    Err(io::Error::other(format!(
        "{} belongs to uid {} and is not shared with a group of this user (mode {:o})",
        dir.display(),
        meta.uid(),
        meta.permissions().mode() & 0o7777
    )))
}

/// A consumer's open trigger FIFO.
#[derive(Debug)]
pub(crate) struct TriggerPipe {
    file: File,
    path: PathBuf,
    ino: (u64, u64),
    /// False once a forked child disowned it: then it never unlinks.
    owned: bool,
}

/// Why a FIFO could not be created.
#[derive(Debug)]
pub(crate) enum FifoError {
    /// Something other than a FIFO is at the path.
    Occupied(&'static str),
    /// An OS call failed.
    Io(io::Error),
}

/// What a drain of the trigger pipe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// Read everything there was (maybe nothing).
    Empty,
    /// No writer: the producer closed its end or never opened it.
    NoWriter,
}

/// What poll said about the trigger pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Triggers are waiting.
    Readable,
    /// The writer closed its end.
    HungUp,
    /// Nothing happened before the timeout.
    Timeout,
}

impl TriggerPipe {
    /// Creates the FIFO at `path` (mode `mode`) and opens it for reading
    /// without blocking. A stale FIFO there is replaced; anything else is an
    /// error and stays untouched.
    pub(crate) fn create(path: &Path, mode: u32) -> Result<Self, FifoError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_fifo() => {
                std::fs::remove_file(path).map_err(FifoError::Io)?
            }
            Ok(meta) if meta.is_dir() => return Err(FifoError::Occupied("a directory")),
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(FifoError::Occupied("a symbolic link"))
            }
            Ok(meta) if meta.is_file() => return Err(FifoError::Occupied("a regular file")),
            Ok(_) => return Err(FifoError::Occupied("a special file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FifoError::Io(e)),
        }
        rustix::fs::mkfifoat(rustix::fs::CWD, path, Mode::from_raw_mode(mode))
            .map_err(|e| FifoError::Io(e.into()))?;
        // mkfifo's mode is filtered by the umask; set it exactly.
        rustix::fs::chmod(path, Mode::from_raw_mode(mode)).map_err(|e| FifoError::Io(e.into()))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32,
            )
            .open(path)
            .map_err(FifoError::Io)?;
        let meta = file.metadata().map_err(FifoError::Io)?;
        if !meta.file_type().is_fifo() {
            return Err(FifoError::Occupied("not a FIFO after creation"));
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            ino: (meta.dev(), meta.ino()),
            owned: true,
        })
    }

    /// The FIFO's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every waiting trigger (non-blocking). Whole 16-byte messages
    /// are what the producer writes; their content is not needed, since the
    /// consumer always takes the newest frame from the header.
    pub(crate) fn drain(&self) -> io::Result<Drained> {
        let mut buf = [0u8; 4096];
        loop {
            match (&self.file).read(&mut buf) {
                Ok(0) => return Ok(Drained::NoWriter),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Empty),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until triggers arrive, the writer hangs up, or `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) -> io::Result<Readiness> {
        let fd = self.file.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let ts = rustix::time::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(Errno::INTR) => Ok(Readiness::Timeout),
            Ok(_) => {
                let ev = fds[0].revents();
                if ev.contains(PollFlags::IN) {
                    Ok(Readiness::Readable)
                } else if ev.intersects(PollFlags::HUP | PollFlags::ERR) {
                    Ok(Readiness::HungUp)
                } else {
                    Ok(Readiness::Timeout)
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl TriggerPipe {
    /// Removes the FIFO if it is still the one we created: after a producer
    /// restart another consumer may own a FIFO at this path. Idempotent.
    pub(crate) fn unlink(&self) {
        if !self.owned {
            return;
        }
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.ino {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::debug!("could not remove {}: {e}", self.path.display());
                }
            }
        }
    }
}

impl TriggerPipe {
    /// Marks the FIFO as another process's (a forked child's copy): it will
    /// not be unlinked by this process.
    pub(crate) fn disown(&mut self) {
        self.owned = false;
    }
}

impl Drop for TriggerPipe {
    fn drop(&mut self) {
        self.unlink();
    }
}
