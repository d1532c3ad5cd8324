//! Clocks, this process's identity, and stop requests (Ctrl-C, Ctrl-Break,
//! console close, logoff, shutdown).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use windows_sys::core::BOOL;
use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
use windows_sys::Win32::System::Performance::{QueryPerformanceCounter, QueryPerformanceFrequency};

/// The machine's monotonic clock in nanoseconds (`QueryPerformanceCounter`,
/// one clock for every process, as `CLOCK_MONOTONIC` is on Linux).
pub fn monotonic_ns() -> u64 {
    static FREQ: OnceLock<i64> = OnceLock::new();
    let freq = *FREQ.get_or_init(|| {
        let mut f = 0i64;
        // SAFETY: `f` is a valid, writable i64 for the call.
        unsafe { QueryPerformanceFrequency(&mut f) };
        f.max(1)
    });
    let mut count = 0i64;
    // SAFETY: `count` is a valid, writable i64 for the call.
    unsafe { QueryPerformanceCounter(&mut count) };
    let ns = i128::from(count) * 1_000_000_000 / i128::from(freq);
    u64::try_from(ns).unwrap_or(0)
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// This process's id, for people to read (never for a liveness decision).
pub fn my_pid() -> u32 {
    std::process::id()
}

/// Windows has no uid: every object framebus makes lives in the creator's
/// logon session with a DACL granting its creator (see `security`), so the "owner" of everything a
/// process finds is that process's user, written 0.
pub fn my_uid() -> u32 {
    0
}

/// Windows has no `fork`: an object is never copied into a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForkGuard;

impl ForkGuard {
    /// A guard for an object this process is creating.
    pub fn new() -> Self {
        Self
    }

    /// Always false: there are no forked children on Windows.
    pub fn in_child(&self) -> bool {
        false
    }
}

fn stop_flags() -> &'static Mutex<Vec<Arc<AtomicBool>>> {
    static FLAGS: OnceLock<Mutex<Vec<Arc<AtomicBool>>>> = OnceLock::new();
    FLAGS.get_or_init(|| Mutex::new(Vec::new()))
}

unsafe extern "system" fn on_console_event(_kind: u32) -> BOOL {
    if let Ok(flags) = stop_flags().lock() {
        for f in flags.iter() {
            f.store(true, Ordering::SeqCst);
        }
    }
    // Handled: the process is not ended at once, its owner stops cleanly
    // (for a console close Windows still ends it after a grace period).
    1
}

/// A flag set by Ctrl-C, Ctrl-Break, closing the console, logoff or
/// shutdown.
pub fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    let installed = *INSTALLED.get_or_init(|| {
        // SAFETY: `on_console_event` is a valid handler for the process's
        // lifetime (a plain function) and touches only a static.
        unsafe { SetConsoleCtrlHandler(Some(on_console_event), 1) != 0 }
    });
    if !installed {
        return Err(io::Error::other("SetConsoleCtrlHandler failed"));
    }
    let flag = Arc::new(AtomicBool::new(false));
    stop_flags()
        .lock()
        .map_err(|_| io::Error::other("stop flag list poisoned"))?
        .push(Arc::clone(&flag));
    Ok(flag)
}
