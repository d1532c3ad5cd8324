//! The bus object: a POSIX shared memory object in /dev/shm, and its
//! mappings — every one a [`GuardedMap`], which survives the object being
//! truncated under it.

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{FallocateFlags, Mode};
use rustix::io::Errno;
use rustix::shm;

use crate::linux::fault::GuardedMap;

/// Creates a new shared memory object exclusively, with exactly `mode` and,
/// if given, group `group`. `Ok(None)` if it exists.
pub fn create_shm(name: &str, mode: u32, group: Option<u32>) -> io::Result<Option<OwnedFd>> {
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

/// Opens an existing bus object read-write (for its atomics), with its
/// size. `Ok(None)` if it does not exist.
pub fn open_shm(name: &str) -> io::Result<Option<(OwnedFd, u64)>> {
    open_with(name, shm::OFlags::RDWR)
}

/// Opens an existing shared memory object read-only, with its size.
/// `Ok(None)` if it does not exist.
pub fn open_shm_read(name: &str) -> io::Result<Option<(OwnedFd, u64)>> {
    open_with(name, shm::OFlags::RDONLY)
}

fn open_with(name: &str, flags: shm::OFlags) -> io::Result<Option<(OwnedFd, u64)>> {
    match shm::open(name, flags, Mode::empty()) {
        Ok(fd) => {
            let size = object_size(&fd)?;
            Ok(Some((fd, size)))
        }
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The object's current size in bytes (`fstat`).
pub fn object_size(fd: &OwnedFd) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// Removes a shared memory object; a missing one is not an error.
pub fn unlink_shm(name: &str) -> io::Result<()> {
    match shm::unlink(name) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sizes a new object and reserves its pages, so running out of room in
/// /dev/shm is an error now rather than a SIGBUS on first touch.
pub fn size_shm(fd: &OwnedFd, size: u64) -> io::Result<()> {
    rustix::fs::ftruncate(fd, size)?;
    match rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        // Filesystems without fallocate: the pages are reserved lazily.
        Err(Errno::OPNOTSUPP) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Maps the whole object read-write with its page tables populated (a first
/// copy into never-touched pages is several times slower): the producer's
/// mapping.
pub fn map_rw_populated(fd: &OwnedFd, len: u64) -> io::Result<GuardedMap> {
    let map = memmap2::MmapOptions::new()
        .len(to_usize(len)?)
        .populate()
        .map_raw(fd)?;
    GuardedMap::new(map, true)
}

/// Maps `len` bytes from offset 0 read-write: a consumer's view of the
/// header and tables (atomics only).
pub fn map_rw(fd: &OwnedFd, len: u64) -> io::Result<GuardedMap> {
    let map = memmap2::MmapOptions::new()
        .len(to_usize(len)?)
        .map_raw(fd)?;
    GuardedMap::new(map, true)
}

/// Maps `len` bytes at `offset` (page aligned) read-only: the pixels. A
/// buggy algorithm cannot scribble on frames other consumers read.
pub fn map_ro(fd: &OwnedFd, offset: u64, len: u64) -> io::Result<GuardedMap> {
    let map = memmap2::MmapOptions::new()
        .offset(offset)
        .len(to_usize(len)?)
        .map_raw_read_only(fd)?;
    GuardedMap::new(map, false)
}

fn to_usize(len: u64) -> io::Result<usize> {
    usize::try_from(len).map_err(|_| io::Error::other("bus larger than the address space"))
}

/// The owner uid of an open file.
pub fn owner_uid(fd: &OwnedFd) -> io::Result<u32> {
    Ok(rustix::fs::fstat(fd)?.st_uid)
}

/// An open of the bus object: on Linux, a descriptor of the POSIX shared
/// memory object. Its liveness tokens belong to it.
pub type BusHandle = OwnedFd;

/// A borrowed [`BusHandle`].
pub type BusRef<'a> = std::os::fd::BorrowedFd<'a>;

/// Borrows a [`BusHandle`].
pub fn bus_ref(bus: &BusHandle) -> BusRef<'_> {
    std::os::fd::AsFd::as_fd(bus)
}

/// Reads up to `buf.len()` bytes of the object at `offset` without mapping
/// it (`pread`); fewer if the object is shorter.
pub fn read_at(bus: &BusHandle, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    Ok(rustix::io::pread(bus, buf, offset)?)
}
