//! The producer lock: one producer per bus name.

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::shm;
use shm_layout::BusName;

use crate::linux::process::ForkGuard;

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
pub struct BusLock {
    _fd: OwnedFd,
    name: String,
    fork: ForkGuard,
}

impl Drop for BusLock {
    fn drop(&mut self) {
        if self.fork.in_child() {
            // A forked child's copy: the lock and its object are the
            // parent's (the child's descriptor closes, the lock stays).
            return;
        }
        // Still locked here: `_fd` closes (and unlocks) after this body.
        if let Err(e) = shm::unlink(self.name.as_str()) {
            tracing::debug!(lock = %self.name, error = %e, "cannot remove the bus lock");
        }
    }
}

/// Takes bus `bus`'s producer lock (see [`BusLock`]). `Ok(None)` if another
/// process holds it.
pub fn lock_bus(bus: &BusName) -> io::Result<Option<BusLock>> {
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
                return Ok(Some(BusLock {
                    _fd: fd,
                    name,
                    fork: ForkGuard::new(),
                }));
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
