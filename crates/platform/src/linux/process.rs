//! This process: clocks, identity, fork detection and stop signals.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// `CLOCK_MONOTONIC` in nanoseconds: the timestamp base shared by every
/// process on the machine (pid and mount namespaces share it).
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Wall clock in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// This process's id, as seen in its own pid namespace: for tables that
/// people read, never for deciding who is alive.
pub fn my_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// This process's effective uid.
pub fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Remembers which process made an object, so a forked child — which
/// inherits a copy of the object, its descriptors and its mappings — can
/// tell that the object is its parent's and must not act with it.
///
/// It compares this process's id with the creator's, both read in the same
/// pid namespace (a process never changes namespace, and `fork` gives the
/// child a new id in it): this identifies the process itself, it never
/// judges whether another process lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkGuard {
    creator: u32,
}

impl ForkGuard {
    /// A guard for an object this process is creating.
    pub fn new() -> Self {
        Self { creator: my_pid() }
    }

    /// Whether this is a forked child of the process that made the object.
    pub fn in_child(&self) -> bool {
        my_pid() != self.creator
    }
}

impl Default for ForkGuard {
    fn default() -> Self {
        Self::new()
    }
}

/// A flag set by SIGINT or SIGTERM.
pub fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}
