//! Status codes, the thread-local last error message, and [`guard`], the
//! wrapper every exported function runs its body in so that no panic
//! crosses the C boundary.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, TryLockError};

use framebus_consumer::ConsumerError;
use framebus_producer::ProducerError;
use shm_layout::LayoutError;

/// What a call did. `FRAMEBUS_OK` (0) is success; `FRAMEBUS_TIMEOUT` and
/// `FRAMEBUS_NO_FRAME` are normal outcomes that deliver nothing; every
/// `FRAMEBUS_ERROR_*` code is a failure whose text
/// `framebus_last_error_message()` returns on the same thread.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramebusStatus {
    /// Success.
    FRAMEBUS_OK = 0,
    /// The timeout passed before a new frame was published (no frame out).
    FRAMEBUS_TIMEOUT = 1,
    /// No frame newer than the last one this consumer took (no frame out).
    FRAMEBUS_NO_FRAME = 2,
    /// A NULL pointer, a malformed bus name, a bad size or option.
    FRAMEBUS_ERROR_INVALID_ARGUMENT = 3,
    /// No bus of that name exists (no running producer created it).
    FRAMEBUS_ERROR_BUS_NOT_FOUND = 4,
    /// The bus exists but its producer is gone or stopping.
    FRAMEBUS_ERROR_NOT_RUNNING = 5,
    /// The bus is being initialised by its producer: retry shortly.
    FRAMEBUS_ERROR_NOT_READY = 6,
    /// The bus was written with another layout version than this library's.
    FRAMEBUS_ERROR_LAYOUT_VERSION = 7,
    /// The shared memory object is not a usable bus (bad magic, corrupt or
    /// truncated header, bad trigger directory).
    FRAMEBUS_ERROR_BAD_BUS = 8,
    /// Every consumer entry of the bus is taken.
    FRAMEBUS_ERROR_BUS_FULL = 9,
    /// The consumer already holds as many frames as the bus allows it.
    FRAMEBUS_ERROR_PIN_BUDGET = 10,
    /// Another live producer owns the bus (or `framebus clean` is at work).
    FRAMEBUS_ERROR_BUS_BUSY = 11,
    /// No room for the bus (`/dev/shm` full on Linux, the paging file on
    /// Windows).
    FRAMEBUS_ERROR_NO_SPACE = 12,
    /// The producer was shut down: it publishes nothing more.
    FRAMEBUS_ERROR_SHUT_DOWN = 13,
    /// A fill callback returned non-zero: nothing was published.
    FRAMEBUS_ERROR_CALLBACK = 14,
    /// A frame does not hold the fake camera's test pattern.
    FRAMEBUS_ERROR_PATTERN_MISMATCH = 15,
    /// Another thread is inside a call on the same handle.
    FRAMEBUS_ERROR_CONCURRENT_USE = 16,
    /// An operating system call failed (the message names it and errno).
    FRAMEBUS_ERROR_OS = 17,
    /// The library panicked (a bug in framebus): the call did nothing
    /// reliable. A handle a panic left behind refuses further calls with
    /// this code; free it.
    FRAMEBUS_ERROR_PANIC = 18,
    /// Any other failure; the message says what.
    FRAMEBUS_ERROR_OTHER = 19,
    /// The handle was used in a forked child of the process that made it:
    /// it belongs to the parent. Make a new handle in the child.
    FRAMEBUS_ERROR_FORKED = 20,
    /// Another process truncated the bus object while it was mapped; frames
    /// held from it are invalid. A consumer waits for the re-created bus on
    /// its next call; a producer must be destroyed and created again.
    FRAMEBUS_ERROR_BUS_TRUNCATED = 21,
    /// The bus (or its trigger directory) belongs to a user this process
    /// does not trust, or everyone may write it (`FRAMEBUS_TRUST_OWNERS`).
    FRAMEBUS_ERROR_UNTRUSTED = 22,
}

/// Every status, in code order (for `framebus_status_name` and tests).
pub(crate) const ALL_STATUSES: [FramebusStatus; 23] = [
    FramebusStatus::FRAMEBUS_OK,
    FramebusStatus::FRAMEBUS_TIMEOUT,
    FramebusStatus::FRAMEBUS_NO_FRAME,
    FramebusStatus::FRAMEBUS_ERROR_INVALID_ARGUMENT,
    FramebusStatus::FRAMEBUS_ERROR_BUS_NOT_FOUND,
    FramebusStatus::FRAMEBUS_ERROR_NOT_RUNNING,
    FramebusStatus::FRAMEBUS_ERROR_NOT_READY,
    FramebusStatus::FRAMEBUS_ERROR_LAYOUT_VERSION,
    FramebusStatus::FRAMEBUS_ERROR_BAD_BUS,
    FramebusStatus::FRAMEBUS_ERROR_BUS_FULL,
    FramebusStatus::FRAMEBUS_ERROR_PIN_BUDGET,
    FramebusStatus::FRAMEBUS_ERROR_BUS_BUSY,
    FramebusStatus::FRAMEBUS_ERROR_NO_SPACE,
    FramebusStatus::FRAMEBUS_ERROR_SHUT_DOWN,
    FramebusStatus::FRAMEBUS_ERROR_CALLBACK,
    FramebusStatus::FRAMEBUS_ERROR_PATTERN_MISMATCH,
    FramebusStatus::FRAMEBUS_ERROR_CONCURRENT_USE,
    FramebusStatus::FRAMEBUS_ERROR_OS,
    FramebusStatus::FRAMEBUS_ERROR_PANIC,
    FramebusStatus::FRAMEBUS_ERROR_OTHER,
    FramebusStatus::FRAMEBUS_ERROR_FORKED,
    FramebusStatus::FRAMEBUS_ERROR_BUS_TRUNCATED,
    FramebusStatus::FRAMEBUS_ERROR_UNTRUSTED,
];

impl FramebusStatus {
    /// The code's name as a static NUL-terminated string.
    fn name(self) -> &'static str {
        match self {
            Self::FRAMEBUS_OK => "FRAMEBUS_OK\0",
            Self::FRAMEBUS_TIMEOUT => "FRAMEBUS_TIMEOUT\0",
            Self::FRAMEBUS_NO_FRAME => "FRAMEBUS_NO_FRAME\0",
            Self::FRAMEBUS_ERROR_INVALID_ARGUMENT => "FRAMEBUS_ERROR_INVALID_ARGUMENT\0",
            Self::FRAMEBUS_ERROR_BUS_NOT_FOUND => "FRAMEBUS_ERROR_BUS_NOT_FOUND\0",
            Self::FRAMEBUS_ERROR_NOT_RUNNING => "FRAMEBUS_ERROR_NOT_RUNNING\0",
            Self::FRAMEBUS_ERROR_NOT_READY => "FRAMEBUS_ERROR_NOT_READY\0",
            Self::FRAMEBUS_ERROR_LAYOUT_VERSION => "FRAMEBUS_ERROR_LAYOUT_VERSION\0",
            Self::FRAMEBUS_ERROR_BAD_BUS => "FRAMEBUS_ERROR_BAD_BUS\0",
            Self::FRAMEBUS_ERROR_BUS_FULL => "FRAMEBUS_ERROR_BUS_FULL\0",
            Self::FRAMEBUS_ERROR_PIN_BUDGET => "FRAMEBUS_ERROR_PIN_BUDGET\0",
            Self::FRAMEBUS_ERROR_BUS_BUSY => "FRAMEBUS_ERROR_BUS_BUSY\0",
            Self::FRAMEBUS_ERROR_NO_SPACE => "FRAMEBUS_ERROR_NO_SPACE\0",
            Self::FRAMEBUS_ERROR_SHUT_DOWN => "FRAMEBUS_ERROR_SHUT_DOWN\0",
            Self::FRAMEBUS_ERROR_CALLBACK => "FRAMEBUS_ERROR_CALLBACK\0",
            Self::FRAMEBUS_ERROR_PATTERN_MISMATCH => "FRAMEBUS_ERROR_PATTERN_MISMATCH\0",
            Self::FRAMEBUS_ERROR_CONCURRENT_USE => "FRAMEBUS_ERROR_CONCURRENT_USE\0",
            Self::FRAMEBUS_ERROR_OS => "FRAMEBUS_ERROR_OS\0",
            Self::FRAMEBUS_ERROR_PANIC => "FRAMEBUS_ERROR_PANIC\0",
            Self::FRAMEBUS_ERROR_OTHER => "FRAMEBUS_ERROR_OTHER\0",
            Self::FRAMEBUS_ERROR_FORKED => "FRAMEBUS_ERROR_FORKED\0",
            Self::FRAMEBUS_ERROR_BUS_TRUNCATED => "FRAMEBUS_ERROR_BUS_TRUNCATED\0",
            Self::FRAMEBUS_ERROR_UNTRUSTED => "FRAMEBUS_ERROR_UNTRUSTED\0",
        }
    }
}

/// Why a call failed, inside the library. Each maps to one status code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FfiError {
    /// A bad argument; the text says which.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// From the consumer library.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// From the producer library.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// A handle is in use by another thread.
    #[error("the {0} handle is in use by another thread: a handle serves one call at a time (see doc/C_API.md, threading)")]
    ConcurrentUse(&'static str),
    /// A handle left behind by a panic.
    #[error(
        "the {0} handle was left inconsistent by an internal panic in an earlier call; free it"
    )]
    Poisoned(&'static str),
    /// A consumer between producers.
    #[error(
        "the consumer lost its producer and is waiting for the next one: it has no bus right now"
    )]
    Detached,
    /// The producer was shut down.
    #[error("the producer of bus {0:?} was shut down; it publishes nothing more (free it with framebus_producer_destroy)")]
    ShutDown(String),
    /// A fill callback refused.
    #[error("the fill callback returned {0}; nothing was published")]
    Callback(c_int),
    /// A pattern check failed.
    #[error("frame {seq} differs from the test pattern at row {row}, column {col}: found {found}, expected {expected}")]
    PatternMismatch {
        /// The frame checked.
        seq: u64,
        /// Row of the first wrong byte.
        row: u32,
        /// Column of the first wrong byte.
        col: u32,
        /// The byte found.
        found: u8,
        /// The byte expected.
        expected: u8,
    },
}

impl FfiError {
    /// The status code C sees.
    pub(crate) fn status(&self) -> FramebusStatus {
        use FramebusStatus::*;
        match self {
            Self::InvalidArgument(_) => FRAMEBUS_ERROR_INVALID_ARGUMENT,
            Self::ConcurrentUse(_) => FRAMEBUS_ERROR_CONCURRENT_USE,
            Self::Poisoned(_) => FRAMEBUS_ERROR_PANIC,
            Self::Detached => FRAMEBUS_ERROR_NOT_RUNNING,
            Self::ShutDown(_) => FRAMEBUS_ERROR_SHUT_DOWN,
            Self::Callback(_) => FRAMEBUS_ERROR_CALLBACK,
            Self::PatternMismatch { .. } => FRAMEBUS_ERROR_PATTERN_MISMATCH,
            Self::Consumer(e) => match e {
                ConsumerError::BusName(_) => FRAMEBUS_ERROR_INVALID_ARGUMENT,
                ConsumerError::BusNotFound { .. } => FRAMEBUS_ERROR_BUS_NOT_FOUND,
                ConsumerError::NotRunning { .. } => FRAMEBUS_ERROR_NOT_RUNNING,
                ConsumerError::Layout { source, .. } => layout_status(source),
                ConsumerError::BusFull { .. } => FRAMEBUS_ERROR_BUS_FULL,
                ConsumerError::PinBudgetExhausted { .. } => FRAMEBUS_ERROR_PIN_BUDGET,
                ConsumerError::FifoPathOccupied { .. } | ConsumerError::Os { .. } => {
                    FRAMEBUS_ERROR_OS
                }
                ConsumerError::Forked { .. } => FRAMEBUS_ERROR_FORKED,
                ConsumerError::BusTruncated { .. } => FRAMEBUS_ERROR_BUS_TRUNCATED,
                ConsumerError::Untrusted { .. } | ConsumerError::BadTrustList { .. } => {
                    FRAMEBUS_ERROR_UNTRUSTED
                }
                _ => FRAMEBUS_ERROR_OTHER,
            },
            Self::Producer(e) => match e {
                ProducerError::BusBusy { .. } => FRAMEBUS_ERROR_BUS_BUSY,
                ProducerError::Foreign { .. } => FRAMEBUS_ERROR_BAD_BUS,
                ProducerError::Layout(_) => FRAMEBUS_ERROR_INVALID_ARGUMENT,
                ProducerError::NoSpace { .. } => FRAMEBUS_ERROR_NO_SPACE,
                ProducerError::TriggerDir { .. } | ProducerError::Os { .. } => FRAMEBUS_ERROR_OS,
                ProducerError::SlotTableCorrupt { .. } => FRAMEBUS_ERROR_BAD_BUS,
                ProducerError::Source(_) => FRAMEBUS_ERROR_CALLBACK,
                ProducerError::BusTruncated { .. } => FRAMEBUS_ERROR_BUS_TRUNCATED,
                ProducerError::Forked { .. } => FRAMEBUS_ERROR_FORKED,
            },
        }
    }
}

fn layout_status(e: &LayoutError) -> FramebusStatus {
    match e {
        LayoutError::NotReady | LayoutError::TooSmall { .. } => {
            FramebusStatus::FRAMEBUS_ERROR_NOT_READY
        }
        LayoutError::Version { .. } => FramebusStatus::FRAMEBUS_ERROR_LAYOUT_VERSION,
        _ => FramebusStatus::FRAMEBUS_ERROR_BAD_BUS,
    }
}

/// Locks a handle's state for one call. Never blocks: a handle another
/// thread is using fails with `FRAMEBUS_ERROR_CONCURRENT_USE`, one a panic
/// left behind with `FRAMEBUS_ERROR_PANIC`.
pub(crate) fn lock<'a, T>(
    m: &'a Mutex<T>,
    what: &'static str,
) -> Result<MutexGuard<'a, T>, FfiError> {
    match m.try_lock() {
        Ok(g) => Ok(g),
        Err(TryLockError::WouldBlock) => Err(FfiError::ConcurrentUse(what)),
        Err(TryLockError::Poisoned(_)) => Err(FfiError::Poisoned(what)),
    }
}

/// A required pointer argument, or `FRAMEBUS_ERROR_INVALID_ARGUMENT`
/// naming it.
pub(crate) fn non_null<T>(p: *const T, what: &str) -> Result<*const T, FfiError> {
    if p.is_null() {
        Err(FfiError::InvalidArgument(format!("{what} is NULL")))
    } else {
        Ok(p)
    }
}

/// A required output pointer, or `FRAMEBUS_ERROR_INVALID_ARGUMENT` naming it.
pub(crate) fn out_arg<T>(p: *mut T, what: &str) -> Result<*mut T, FfiError> {
    non_null(p.cast_const(), what).map(|p| p.cast_mut())
}

/// Writes `value` through an output pointer the caller passed.
///
/// # Safety
/// `out` must be valid for a write of `T` (non-NULL is checked).
pub(crate) unsafe fn write_out<T>(out: *mut T, what: &str, value: T) -> Result<(), FfiError> {
    let out = out_arg(out, what)?;
    // SAFETY: non-NULL (checked) and valid for writes (the caller's
    // contract); `write` does not read or drop the old value.
    unsafe { out.write(value) };
    Ok(())
}

/// A versioned options struct: `#[repr(C)]`, its first field the `u32
/// size` the caller compiled it with (asserted next to each impl).
pub(crate) trait SizedOptions: Copy {
    /// Its C name, for error messages.
    const C_NAME: &'static str;
    /// The options a NULL pointer stands for.
    fn defaults() -> Self;
}

/// The options a caller passed: the defaults for NULL, else a copy of its
/// struct once its `size` says it is at least as large as ours.
///
/// # Safety
/// A non-NULL `options` points to a readable struct that starts with its
/// `u32 size` field and is at least `size` bytes long (the caller's
/// contract, as the header states).
pub(crate) unsafe fn options_arg<T: SizedOptions>(options: *const T) -> Result<T, FfiError> {
    if options.is_null() {
        return Ok(T::defaults());
    }
    // SAFETY: a non-NULL `options` starts with its u32 `size` field (the
    // caller's contract; offset 0 asserted for every SizedOptions): read it
    // alone first.
    let size = unsafe { options.cast::<u32>().read() } as usize;
    if size < std::mem::size_of::<T>() {
        return Err(FfiError::InvalidArgument(format!(
            "options.size is {size}, smaller than {} ({} bytes): initialise options with {}_init",
            T::C_NAME,
            std::mem::size_of::<T>(),
            T::C_NAME
        )));
    }
    // SAFETY: the caller's struct is at least as large as ours (checked
    // above) and valid for reads.
    Ok(unsafe { options.read() })
}

thread_local! {
    /// The text of the last error on this thread, NUL-terminated.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: String) {
    // A message with a NUL inside would end early; replace such bytes.
    let bytes: Vec<u8> = message
        .into_bytes()
        .into_iter()
        .map(|b| if b == 0 { b'?' } else { b })
        .collect();
    let text = CString::new(bytes).unwrap_or_default();
    // `try_with`: during thread teardown the slot may be gone; the status
    // code still reports the failure.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = text);
}

/// Runs an exported function's body: an `Err` becomes its status code with
/// its text stored as the thread's last error; a panic becomes
/// `FRAMEBUS_ERROR_PANIC` with the panic's message. Nothing unwinds into C.
pub(crate) fn guard<F>(body: F) -> FramebusStatus
where
    F: FnOnce() -> Result<FramebusStatus, FfiError>,
{
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            let status = e.status();
            set_last_error(error_chain(&e));
            status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| String::from("(no message)"));
            set_last_error(format!(
                "internal panic in libframebus (a bug; please report it): {what}"
            ));
            FramebusStatus::FRAMEBUS_ERROR_PANIC
        }
    }
}

/// The error's text followed by its sources' (an OS error's errno text).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The text of the last error returned on the calling thread: what failed
/// and what to do about it. Never NULL; "" if no call on this thread has
/// failed yet. Successful calls leave it unchanged. The pointer stays valid
/// until the next failing call on this thread (or the thread's end): copy
/// the text to keep it.
#[no_mangle]
pub extern "C" fn framebus_last_error_message() -> *const c_char {
    const EMPTY: &[u8] = b"\0";
    catch_unwind(|| {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ptr())
            .unwrap_or(EMPTY.as_ptr().cast())
    })
    .unwrap_or(EMPTY.as_ptr().cast())
}

/// The name of a status code ("FRAMEBUS_ERROR_BUS_NOT_FOUND"), a static
/// string; "FRAMEBUS_UNKNOWN_STATUS" for a value that is no status. Takes an
/// `int` so any value is safe to pass. Cannot fail.
#[no_mangle]
pub extern "C" fn framebus_status_name(status: c_int) -> *const c_char {
    let name = ALL_STATUSES
        .iter()
        .find(|s| **s as c_int == status)
        .map_or("FRAMEBUS_UNKNOWN_STATUS\0", |s| s.name());
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: the function returns a valid NUL-terminated string that
        // lives until the next failing call on this thread (none here).
        unsafe { CStr::from_ptr(framebus_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_with_its_message() {
        let status = guard(|| panic!("boom {}", 42));
        assert_eq!(status, FramebusStatus::FRAMEBUS_ERROR_PANIC);
        assert!(last().contains("boom 42"), "{}", last());
    }

    #[test]
    fn an_error_sets_the_message_and_success_keeps_it() {
        let status = guard(|| Err(FfiError::InvalidArgument("x is NULL".into())));
        assert_eq!(status, FramebusStatus::FRAMEBUS_ERROR_INVALID_ARGUMENT);
        assert_eq!(last(), "invalid argument: x is NULL");
        assert_eq!(
            guard(|| Ok(FramebusStatus::FRAMEBUS_OK)),
            FramebusStatus::FRAMEBUS_OK
        );
        assert_eq!(last(), "invalid argument: x is NULL");
    }

    #[test]
    fn every_status_has_its_own_name() {
        for (i, s) in ALL_STATUSES.iter().enumerate() {
            assert_eq!(*s as usize, i, "codes are dense and in order");
            // SAFETY: framebus_status_name returns a static C string.
            let name = unsafe { CStr::from_ptr(framebus_status_name(i as c_int)) };
            assert_eq!(name.to_bytes(), s.name().trim_end_matches('\0').as_bytes());
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(framebus_status_name(-5)) };
        assert_eq!(unknown.to_bytes(), b"FRAMEBUS_UNKNOWN_STATUS");
    }

    #[test]
    fn a_nul_inside_a_message_does_not_cut_it() {
        guard(|| Err(FfiError::InvalidArgument("a\0b".into())));
        assert_eq!(last(), "invalid argument: a?b");
    }
}
