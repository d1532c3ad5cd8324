//! Surviving a truncated bus object.
//!
//! Anyone who may write the bus object (its owner, or a member of its group
//! on a shared bus) can `ftruncate` it while others have it mapped. A touch
//! of a mapped page past the new end raises SIGBUS, which kills the process
//! by default. Like a Wayland compositor does for its clients' shm pools,
//! every process maps the bus through a [`GuardedMap`]: a SIGBUS handler
//! that finds the faulting address inside a guarded mapping maps anonymous
//! zero pages over the whole mapping (`MAP_FIXED`, same protection), marks
//! it broken and returns, so the faulting access completes on zeros. The
//! owner of the mapping then sees [`GuardedMap::broken`] and reports a
//! named error (`BusTruncated`). A SIGBUS at any other address goes to the
//! handler that was installed before ours, or kills the process as it
//! would have.
//!
//! The handler is async-signal-safe: it reads a fixed table of atomics and
//! calls `mmap`, nothing else.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// How many mappings can be guarded at once in one process (each consumer
/// or producer holds two or three).
const MAX_GUARDED: usize = 256;

/// One guarded mapping: `start == 0` means the entry is unused.
struct Guarded {
    start: AtomicUsize,
    len: AtomicUsize,
    prot: AtomicUsize,
    broken: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const UNUSED: Guarded = Guarded {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    prot: AtomicUsize::new(0),
    broken: AtomicBool::new(false),
};

static TABLE: [Guarded; MAX_GUARDED] = [UNUSED; MAX_GUARDED];

/// Faults repaired since the process started (for tests and logs).
static REPAIRED: AtomicUsize = AtomicUsize::new(0);

/// The SIGBUS disposition before ours, to chain to.
static PREVIOUS: OnceLock<io::Result<libc::sigaction>> = OnceLock::new();

/// A mapping of a bus object that survives the object being truncated: see
/// the module documentation. Derefs to nothing: use [`GuardedMap::as_ptr`]
/// and [`GuardedMap::len`] like `memmap2::MmapRaw`'s.
pub struct GuardedMap {
    map: memmap2::MmapRaw,
    slot: usize,
}

impl std::fmt::Debug for GuardedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedMap")
            .field("ptr", &self.map.as_ptr())
            .field("len", &self.map.len())
            .field("broken", &self.broken())
            .finish()
    }
}

impl GuardedMap {
    /// Guards `map`, mapped with protection `writable` (read-write) or
    /// read-only. Installs the process's SIGBUS handler on first use.
    pub fn new(map: memmap2::MmapRaw, writable: bool) -> io::Result<Self> {
        install()?;
        let start = map.as_ptr() as usize;
        let len = map.len();
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        } as usize;
        for (slot, g) in TABLE.iter().enumerate() {
            // Claim the entry with its length first, then publish the start
            // with Release: the handler reads start (Acquire), then the rest.
            if g.len
                .compare_exchange(0, len, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                g.prot.store(prot, Ordering::Relaxed);
                g.broken.store(false, Ordering::Relaxed);
                g.start.store(start, Ordering::Release);
                return Ok(Self { map, slot });
            }
        }
        Err(io::Error::other(format!(
            "more than {MAX_GUARDED} bus mappings in one process"
        )))
    }

    /// The mapping's first byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// The mapping's first byte, for writing (read-write mappings only).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never, for a bus).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Whether a fault in this mapping was repaired: the object was
    /// truncated under it, and the mapping now shows zero pages.
    pub fn broken(&self) -> bool {
        TABLE[self.slot].broken.load(Ordering::Acquire)
    }
}

impl Drop for GuardedMap {
    fn drop(&mut self) {
        let g = &TABLE[self.slot];
        g.start.store(0, Ordering::Release);
        g.len.store(0, Ordering::Release);
        // `map` unmaps after this body: whatever is mapped there (the
        // object's pages or our zero pages) goes.
    }
}

/// How many SIGBUS faults in guarded mappings this process has survived.
pub fn faults_repaired() -> usize {
    REPAIRED.load(Ordering::Relaxed)
}

fn install() -> io::Result<()> {
    let previous = PREVIOUS.get_or_init(|| {
        // SAFETY: `sigaction` with a zeroed struct, a valid SA_SIGINFO
        // handler of the right signature and an empty mask installs our
        // handler and returns the old disposition into `old`, which we own.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut old) == 0 {
                Ok(old)
            } else {
                Err(io::Error::last_os_error())
            }
        }
    });
    match previous {
        Ok(_) => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot install the SIGBUS handler: {e}"),
        )),
    }
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler;
    // for SIGBUS `si_addr` is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    for g in &TABLE {
        let start = g.start.load(Ordering::Acquire);
        if start == 0 {
            continue;
        }
        let len = g.len.load(Ordering::Relaxed);
        if addr < start || addr - start >= len {
            continue;
        }
        let prot = g.prot.load(Ordering::Relaxed) as libc::c_int;
        // SAFETY: [start, start+len) is a live mapping this process made
        // and registered (it is unregistered before it is unmapped);
        // replacing it with private anonymous pages of the same protection
        // keeps every pointer into it valid — they now read zeros. `mmap`
        // is async-signal-safe.
        let r = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                prot,
                libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if r != libc::MAP_FAILED {
            g.broken.store(true, Ordering::Release);
            REPAIRED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        break;
    }
    chain(sig, info, ctx);
}

/// Not one of ours (or it could not be repaired): what would have happened
/// without us.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if let Some(Ok(prev)) = PREVIOUS.get() {
        let handler = prev.sa_sigaction;
        if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            if prev.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous disposition was installed as an
                // SA_SIGINFO handler with exactly this signature.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(handler) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a plain handler takes the signal number only.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
                f(sig);
            }
            return;
        }
    }
    // Default action: restore it and return; the access faults again and
    // the process dies of SIGBUS as it would have without us.
    // SAFETY: resetting a disposition to SIG_DFL is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_mapping_reads_zeros_and_says_so() {
        let path = std::env::temp_dir().join(format!("fb-fault-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(3 * 4096).unwrap();
        let raw = memmap2::MmapOptions::new()
            .len(3 * 4096)
            .map_raw(&file)
            .unwrap();
        let map = GuardedMap::new(raw, true).unwrap();
        // SAFETY: in bounds of a live read-write mapping of 3 pages.
        unsafe { map.as_mut_ptr().add(2 * 4096).write_volatile(7) };
        assert!(!map.broken());
        file.set_len(4096).unwrap();
        let before = faults_repaired();
        // SAFETY: in bounds of the mapping; the page past the end faults and
        // the handler maps zeros over it.
        let v = unsafe { map.as_ptr().add(2 * 4096).read_volatile() };
        assert_eq!(v, 0);
        assert!(map.broken());
        assert_eq!(faults_repaired(), before + 1);
        // SAFETY: still a valid (now anonymous) mapping.
        unsafe { map.as_mut_ptr().write_volatile(1) };
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }
}
