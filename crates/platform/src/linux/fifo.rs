//! Trigger pipes: the consumer's FIFO (created, read, polled, removed) and
//! the producer's non-blocking write end.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use shm_layout::trigger::Decoder;

use crate::linux::process::{my_uid, ForkGuard};
use crate::{Drained, FifoError, FifoOpen, Readiness, TriggerWrite};

/// Opens a consumer's FIFO for writing without blocking. It must be a FIFO
/// owned by this user or, on a bus shared with `group`, in that group.
pub fn open_fifo_writer(path: &Path, group: Option<u32>) -> FifoOpen {
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
        // Out of descriptors or memory, or interrupted: says nothing about
        // the consumer.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EINTR | libc::EAGAIN)
            ) =>
        {
            return FifoOpen::Failed(e)
        }
        // A directory (EISDIR), a path we may not write (EACCES)...: not a
        // FIFO this consumer made for us.
        Err(e) => return FifoOpen::Foreign(format!("{}: {e}", path.display())),
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

/// One non-blocking write of a whole trigger message (< PIPE_BUF, so the
/// kernel writes all of it or nothing). Only EPIPE says the reader is gone;
/// any other failure drops this one trigger, like a full pipe.
pub fn write_trigger(file: &mut File, msg: &[u8]) -> TriggerWrite {
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

/// Opens a directory without following a symbolic link at its last
/// component (`O_DIRECTORY | O_NOFOLLOW`), for operations relative to it.
pub fn open_dir_nofollow(dir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn is_fifo(st: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo
}

/// Removes `name` in the directory open as `dir` if it is a FIFO (never
/// following a link); anything else is left alone. Returns whether it
/// removed one.
fn remove_fifo_at(dir: &OwnedFd, name: &std::ffi::OsStr) -> bool {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if is_fifo(&st) => match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("could not remove {name:?}: {e}");
                false
            }
        },
        _ => false,
    }
}

/// Removes a FIFO if it is one; anything else at the path is left alone,
/// and so is a path whose directory is a symbolic link. Returns whether it
/// removed one.
pub fn remove_fifo(path: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    open_dir_nofollow(dir).is_ok_and(|fd| remove_fifo_at(&fd, name))
}

/// Removes every FIFO in a trigger directory, then the directory if empty.
/// Returns the FIFOs removed. A trigger directory that is a symbolic link,
/// or not this user's, is refused: nothing in it is touched.
pub fn remove_trigger_dir(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(fd) = open_dir_nofollow(dir) else {
        tracing::debug!(
            "not removing {}: not a directory of ours (or a link)",
            dir.display()
        );
        return removed;
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) if st.st_uid == my_uid() => {}
        _ => {
            tracing::warn!(
                "not cleaning {}: it is not this user's directory",
                dir.display()
            );
            return removed;
        }
    }
    let names: Vec<std::ffi::OsString> = match rustix::fs::Dir::read_from(&fd) {
        Ok(entries) => entries
            .flatten()
            .map(|e| std::ffi::OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
            .filter(|n| n != "." && n != "..")
            .collect(),
        Err(_) => Vec::new(),
    };
    for name in names {
        if remove_fifo_at(&fd, &name) {
            removed.push(dir.join(name));
        }
    }
    let _ = std::fs::remove_dir(dir);
    removed
}

/// A consumer's open trigger FIFO.
#[derive(Debug)]
pub struct TriggerPipe {
    file: File,
    path: PathBuf,
    ino: (u64, u64),
    /// A forked child's copy never unlinks the FIFO (it is the parent's).
    fork: ForkGuard,
}

impl TriggerPipe {
    /// Creates the FIFO at `path` (mode `mode`) and opens it for reading
    /// without blocking. A stale FIFO there is replaced; anything else is an
    /// error and stays untouched.
    pub fn create(path: &Path, mode: u32) -> Result<Self, FifoError> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(FifoError::Io(io::Error::other(
                "a FIFO path needs a directory",
            )));
        };
        // Everything relative to the directory, opened without following a
        // link: a member of a shared directory cannot redirect any step.
        let dirfd = open_dir_nofollow(dir).map_err(FifoError::Io)?;
        match rustix::fs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                use rustix::fs::FileType;
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Fifo => rustix::fs::unlinkat(&dirfd, name, AtFlags::empty())
                        .map_err(|e| FifoError::Io(e.into()))?,
                    FileType::Directory => return Err(FifoError::Occupied("a directory")),
                    FileType::Symlink => return Err(FifoError::Occupied("a symbolic link")),
                    FileType::RegularFile => return Err(FifoError::Occupied("a regular file")),
                    _ => return Err(FifoError::Occupied("a special file")),
                }
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(FifoError::Io(e.into())),
        }
        // Owner-only while it is made (the umask may only narrow it), and
        // the exact mode set on the opened FIFO itself (fchmod), never by
        // path: no window in which a renamed link gets our chmod.
        rustix::fs::mkfifoat(&dirfd, name, Mode::from_raw_mode(mode & 0o600))
            .map_err(|e| FifoError::Io(e.into()))?;
        let fd = rustix::fs::openat(
            &dirfd,
            name,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP => FifoError::Occupied("a symbolic link (swapped in after creation)"),
            e => FifoError::Io(e.into()),
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| FifoError::Io(e.into()))?;
        if !is_fifo(&st) || st.st_uid != my_uid() {
            // Someone renamed their own file over ours: not ours to use.
            return Err(FifoError::Occupied("a file swapped in by someone else"));
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| FifoError::Io(e.into()))?;
        Ok(Self {
            file: File::from(fd),
            path: path.to_path_buf(),
            ino: (st.st_dev, st.st_ino),
            fork: ForkGuard::new(),
        })
    }

    /// The FIFO's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every waiting trigger (non-blocking) and counts the
    /// well-formed and malformed messages ([`drain_checked`] also checks
    /// their slots).
    ///
    /// [`drain_checked`]: Self::drain_checked
    pub fn drain(&self) -> io::Result<Drained> {
        self.drain_with(Decoder::new())
    }

    /// [`drain`](Self::drain), with a message naming a slot at or above
    /// `slot_count` counted as malformed.
    pub fn drain_checked(&self, slot_count: u32) -> io::Result<Drained> {
        self.drain_with(Decoder::with_slot_count(slot_count))
    }

    /// Whole 16-byte messages are what the producer writes, each with one
    /// atomic write; anyone else allowed to write the FIFO (a group member)
    /// may write anything in any pieces. The bytes go through the streaming
    /// decoder; the messages' content is not used (the consumer always takes
    /// the newest frame from the header), only counted. Once the pipe is
    /// empty (or has no writer) a partial message left over cannot be the
    /// producer's, so it is discarded and the framing starts afresh at the
    /// next drain. Malformed input is logged at debug level, then ignored.
    fn drain_with(&self, mut decoder: Decoder) -> io::Result<Drained> {
        let mut buf = [0u8; 4096];
        let no_writer = loop {
            match (&self.file).read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => decoder.feed(&buf[..n], |_| {}),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        Ok(crate::trigger_types::finish_drain(
            decoder, &self.path, no_writer,
        ))
    }

    /// Waits until triggers arrive, the writer hangs up, or `timeout`.
    pub fn wait(&self, timeout: Duration) -> io::Result<Readiness> {
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
    pub fn unlink(&self) {
        if self.fork.in_child() {
            return;
        }
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let Ok(dirfd) = open_dir_nofollow(dir) else {
            return;
        };
        if let Ok(st) = rustix::fs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            if (st.st_dev, st.st_ino) == self.ino {
                if let Err(e) = rustix::fs::unlinkat(&dirfd, name, AtFlags::empty()) {
                    tracing::debug!("could not remove {}: {e}", self.path.display());
                }
            }
        }
    }
}

impl Drop for TriggerPipe {
    fn drop(&mut self) {
        self.unlink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DrainCounts;
    use shm_layout::trigger::encode;

    #[test]
    fn drain_counts_well_formed_and_malformed_triggers() {
        let dir = std::env::temp_dir().join(format!("framebus-drain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.fifo");
        let pipe = TriggerPipe::create(&path, 0o600).unwrap_or_else(|_| panic!("create"));
        assert_eq!(
            pipe.drain().unwrap(),
            Drained::NoWriter(DrainCounts::default())
        );
        let FifoOpen::Open(mut w) = open_fifo_writer(&path, None) else {
            panic!("open writer");
        };
        let mut flagged = encode(3, 0);
        flagged[12] = 1;
        let mut bytes = Vec::new();
        for m in [encode(1, 0), encode(2, 5), flagged] {
            bytes.extend_from_slice(&m);
        }
        bytes.extend_from_slice(&[0xEE; 3]); // a partial message
        w.write_all(&bytes).unwrap();
        let d = pipe.drain().unwrap();
        assert_eq!(
            d,
            Drained::Empty(DrainCounts {
                triggers: 2,
                malformed: 2
            })
        );
        assert!(!d.no_writer());
        // The partial message was discarded: the next one decodes; slot 5
        // is out of range for a 2-slot bus.
        w.write_all(&encode(4, 1)).unwrap();
        w.write_all(&encode(5, 5)).unwrap();
        let d = pipe.drain_checked(2).unwrap();
        assert_eq!(
            d.counts(),
            DrainCounts {
                triggers: 1,
                malformed: 1
            }
        );
        w.write_all(&encode(6, 0)).unwrap();
        drop(w);
        let d = pipe.drain().unwrap();
        assert!(d.no_writer());
        assert_eq!(d.counts().triggers, 1, "read what was left before the end");
        drop(pipe);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
