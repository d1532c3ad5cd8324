//! Trigger pipes on Windows: the consumer creates a named pipe (server,
//! inbound, message type, one instance) and reads it with overlapped I/O;
//! the producer opens it as a client set to `PIPE_NOWAIT`, so a write never
//! blocks: a full pipe makes `WriteFile` succeed with 0 bytes written, never
//! a partial message.
//!
//! The pipe's name comes from the path the protocol uses on Linux: the
//! components after `\\.\pipe\` joined by dots, e.g.
//! `\\.\pipe\framebus\cam0\consumer-3-7.fifo` is the pipe
//! `\\.\pipe\framebus.cam0.consumer-3-7.fifo`.

use std::fs::File;
use std::io::{self, Write};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use shm_layout::trigger::Decoder;
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_BROKEN_PIPE, ERROR_FILE_NOT_FOUND, ERROR_IO_INCOMPLETE,
    ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_NO_DATA, ERROR_OPERATION_ABORTED, ERROR_PIPE_BUSY,
    ERROR_PIPE_CONNECTED, ERROR_PIPE_NOT_CONNECTED, GENERIC_WRITE, INVALID_HANDLE_VALUE,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, ReadFile, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, OPEN_EXISTING,
    PIPE_ACCESS_INBOUND,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, SetNamedPipeHandleState, PIPE_NOWAIT, PIPE_READMODE_BYTE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_MESSAGE, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{CreateEventW, WaitForSingleObject};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use crate::trigger_types::finish_drain;
use crate::windows::wide::{last_code, last_error, wide};
use crate::{Drained, FifoError, FifoOpen, Readiness, TriggerWrite};

/// The pipe name for a trigger path (see the module docs).
pub fn pipe_name(path: &Path) -> String {
    let s = path.to_string_lossy();
    let rest = s
        .strip_prefix(r"\\.\pipe\")
        .or_else(|| s.strip_prefix("//./pipe/"))
        .unwrap_or(&s);
    let joined: String = rest
        .split(['\\', '/'])
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    format!(r"\\.\pipe\{joined}")
}

/// Whether an error code says the other end of a pipe is gone.
fn peer_gone(code: u32) -> bool {
    matches!(
        code,
        ERROR_NO_DATA | ERROR_BROKEN_PIPE | ERROR_PIPE_NOT_CONNECTED
    )
}

/// Opens a consumer's trigger pipe for writing, never blocking.
pub fn open_fifo_writer(path: &Path, _group: Option<u32>) -> FifoOpen {
    let name = pipe_name(path);
    let w = match wide(&name) {
        Ok(w) => w,
        Err(e) => return FifoOpen::Foreign(e.to_string()),
    };
    // SAFETY: `w` is a NUL-terminated UTF-16 string that outlives the call.
    let h = unsafe {
        CreateFileW(
            w.as_ptr(),
            GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return match last_code() {
            ERROR_FILE_NOT_FOUND => FifoOpen::NoReader,
            ERROR_PIPE_BUSY => FifoOpen::Foreign(format!("{name} is connected to another writer")),
            ERROR_ACCESS_DENIED => FifoOpen::Foreign(format!("{name}: access denied")),
            _ => FifoOpen::Failed(last_error()),
        };
    }
    // SAFETY: `h` is a valid handle just returned, owned by nobody else.
    let handle = unsafe { OwnedHandle::from_raw_handle(h) };
    let mode = PIPE_NOWAIT;
    // SAFETY: the handle is a pipe client opened for writing (which
    // includes FILE_WRITE_ATTRIBUTES); `mode` outlives the call.
    if unsafe {
        SetNamedPipeHandleState(
            handle.as_raw_handle(),
            &mode,
            std::ptr::null(),
            std::ptr::null(),
        )
    } == 0
    {
        return FifoOpen::Failed(last_error());
    }
    FifoOpen::Open(File::from(handle))
}

/// One non-blocking write of a whole trigger message. 0 bytes written means
/// the pipe is full; a gone reader is `ERROR_NO_DATA` (232), also 109/233.
pub fn write_trigger(file: &mut File, msg: &[u8]) -> TriggerWrite {
    match file.write(msg) {
        Ok(0) => TriggerWrite::Full,
        Ok(_) => TriggerWrite::Sent,
        Err(e) if e.raw_os_error().is_some_and(|c| peer_gone(c as u32)) => TriggerWrite::Gone,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => TriggerWrite::Gone,
        Err(e) => {
            tracing::debug!("trigger write failed ({e}); dropped like a full pipe");
            TriggerWrite::Full
        }
    }
}

/// Nothing to remove: a named pipe disappears with its server's handle.
pub fn remove_fifo(_path: &Path) -> bool {
    false
}

const BUF: usize = 4096;

/// The overlapped operation in flight, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Connect,
    Read,
}

/// The reader's state: the OVERLAPPED and buffer live in a Box so their
/// address stays fixed while an operation is in flight.
struct Io {
    ov: Box<OVERLAPPED>,
    buf: Box<[u8; BUF]>,
    pending: Pending,
    connected: bool,
    /// The writer closed its end (or never can connect again).
    broken: bool,
    /// Bytes read but not yet drained.
    got: Vec<u8>,
}

/// A consumer's trigger pipe.
pub struct TriggerPipe {
    pipe: OwnedHandle,
    _event: OwnedHandle,
    path: PathBuf,
    io: Mutex<Io>,
}

// SAFETY: the OVERLAPPED's raw event handle and buffers are owned by the
// TriggerPipe and touched only under its mutex; the kernel writes them only
// while an operation is pending, and Drop cancels and waits for it.
unsafe impl Send for TriggerPipe {}
// SAFETY: as above: every method goes through the mutex.
unsafe impl Sync for TriggerPipe {}

impl std::fmt::Debug for TriggerPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerPipe")
            .field("path", &self.path)
            .finish()
    }
}

impl TriggerPipe {
    /// Creates the pipe for `path` (see the module docs for its name).
    /// Another pipe of that name already there is [`FifoError::Occupied`].
    pub fn create(path: &Path, _mode: u32) -> Result<Self, FifoError> {
        let name = pipe_name(path);
        let w = wide(&name).map_err(FifoError::Io)?;
        let security = crate::windows::security::ObjectSecurity::new().map_err(FifoError::Io)?;
        // SAFETY: `w` is a NUL-terminated UTF-16 string and `security` a
        // valid SECURITY_ATTRIBUTES, both outliving the call.
        let h = unsafe {
            CreateNamedPipeW(
                w.as_ptr(),
                PIPE_ACCESS_INBOUND | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
                PIPE_TYPE_MESSAGE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                1,
                0,
                BUF as u32,
                0,
                security.attributes(),
            )
        };
        if h == INVALID_HANDLE_VALUE {
            return Err(match last_code() {
                ERROR_ACCESS_DENIED | ERROR_PIPE_BUSY => {
                    FifoError::Occupied("a pipe of that name (another process's)")
                }
                _ => FifoError::Io(last_error()),
            });
        }
        // SAFETY: a valid handle just returned, owned by nobody else.
        let pipe = unsafe { OwnedHandle::from_raw_handle(h) };
        // SAFETY: an unnamed manual-reset event, default security.
        let e = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
        if e.is_null() {
            return Err(FifoError::Io(last_error()));
        }
        // SAFETY: a valid handle just returned, owned by nobody else.
        let event = unsafe { OwnedHandle::from_raw_handle(e) };
        // SAFETY: OVERLAPPED is a plain C struct; all-zero is its documented
        // initial state.
        let mut ov: Box<OVERLAPPED> = Box::new(unsafe { std::mem::zeroed() });
        ov.hEvent = event.as_raw_handle();
        let pipe = Self {
            pipe,
            _event: event,
            path: path.to_path_buf(),
            io: Mutex::new(Io {
                ov,
                buf: Box::new([0; BUF]),
                pending: Pending::None,
                connected: false,
                broken: false,
                got: Vec::new(),
            }),
        };
        Ok(pipe)
    }

    /// The path this pipe was made for.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every trigger waiting, without blocking.
    pub fn drain(&self) -> io::Result<Drained> {
        self.drain_with(Decoder::new())
    }

    /// Like [`Self::drain`], counting a trigger naming a slot `>= slot_count`
    /// as malformed.
    pub fn drain_checked(&self, slot_count: u32) -> io::Result<Drained> {
        self.drain_with(Decoder::with_slot_count(slot_count))
    }

    fn drain_with(&self, mut decoder: Decoder) -> io::Result<Drained> {
        let mut io = self
            .io
            .lock()
            .map_err(|_| io::Error::other("trigger pipe poisoned"))?;
        self.pump(&mut io, false)?;
        decoder.feed(&io.got, |_| {});
        io.got.clear();
        let no_writer = io.broken || !io.connected;
        Ok(finish_drain(decoder, &self.path, no_writer))
    }

    /// Waits up to `timeout` for triggers.
    pub fn wait(&self, timeout: Duration) -> io::Result<Readiness> {
        let mut io = self
            .io
            .lock()
            .map_err(|_| io::Error::other("trigger pipe poisoned"))?;
        self.pump(&mut io, false)?;
        if !io.got.is_empty() {
            return Ok(Readiness::Readable);
        }
        if io.broken {
            return Ok(Readiness::HungUp);
        }
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX - 1);
        // SAFETY: the event handle is valid while `self` lives.
        let r = unsafe { WaitForSingleObject(io.ov.hEvent, ms) };
        match r {
            WAIT_OBJECT_0 => {
                self.pump(&mut io, false)?;
                Ok(if !io.got.is_empty() {
                    Readiness::Readable
                } else if io.broken {
                    Readiness::HungUp
                } else {
                    Readiness::Timeout
                })
            }
            WAIT_TIMEOUT => Ok(Readiness::Timeout),
            _ => Err(last_error()),
        }
    }

    /// Moves the pipe forward without blocking: completes a finished
    /// operation, connects, reads what is there, and leaves one operation
    /// pending so the event fires when more comes.
    fn pump(&self, io: &mut Io, _block: bool) -> io::Result<()> {
        let h = self.pipe.as_raw_handle();
        loop {
            if io.broken {
                return Ok(());
            }
            match io.pending {
                Pending::None => {}
                op => {
                    let mut n = 0u32;
                    // SAFETY: `ov` is the OVERLAPPED of the operation in
                    // flight on this handle; `n` is writable.
                    let ok = unsafe { GetOverlappedResult(h, &*io.ov, &mut n, 0) } != 0;
                    if !ok {
                        match last_code() {
                            ERROR_IO_INCOMPLETE => return Ok(()),
                            ERROR_MORE_DATA => {}
                            c if peer_gone(c) => {
                                io.pending = Pending::None;
                                io.broken = true;
                                return Ok(());
                            }
                            ERROR_PIPE_CONNECTED => {}
                            // Windows cancels a thread's pending I/O when
                            // the thread exits: a consumer used from a
                            // thread that has ended since (the C ABI lets a
                            // handle move between threads) finds its read
                            // or connect aborted. Nothing was transferred:
                            // issue it again from this thread.
                            ERROR_OPERATION_ABORTED => {
                                io.pending = Pending::None;
                                continue;
                            }
                            _ => {
                                io.pending = Pending::None;
                                return Err(last_error());
                            }
                        }
                    }
                    io.pending = Pending::None;
                    match op {
                        Pending::Connect => io.connected = true,
                        Pending::Read => {
                            let n = (n as usize).min(BUF);
                            io.got.extend_from_slice(&io.buf[..n]);
                        }
                        Pending::None => {}
                    }
                }
            }
            if !io.connected {
                // SAFETY: an inbound pipe server handle and its OVERLAPPED,
                // which stays at a fixed address (boxed) until the
                // operation completes or is cancelled in Drop.
                let ok = unsafe { ConnectNamedPipe(h, &mut *io.ov) } != 0;
                if ok {
                    io.connected = true;
                    continue;
                }
                match last_code() {
                    ERROR_IO_PENDING => {
                        io.pending = Pending::Connect;
                        return Ok(());
                    }
                    ERROR_PIPE_CONNECTED => {
                        io.connected = true;
                        continue;
                    }
                    // The writer connected and closed already.
                    ERROR_NO_DATA => {
                        io.connected = true;
                        io.broken = true;
                        return Ok(());
                    }
                    _ => return Err(last_error()),
                }
            }
            let mut n = 0u32;
            let buf = io.buf.as_mut_ptr();
            // SAFETY: `buf` is BUF writable bytes and `ov` an OVERLAPPED,
            // both boxed (fixed address) and kept until completion or the
            // cancel in Drop.
            let ok = unsafe { ReadFile(h, buf, BUF as u32, &mut n, &mut *io.ov) } != 0;
            if ok {
                io.got.extend_from_slice(&io.buf[..n as usize]);
                // The read completed at once; with an overlapped handle a
                // completion is also reported through the event, which
                // stays signalled: reset happens with the next operation.
                continue;
            }
            match last_code() {
                ERROR_IO_PENDING => {
                    io.pending = Pending::Read;
                    return Ok(());
                }
                ERROR_MORE_DATA => {
                    io.got.extend_from_slice(&io.buf[..]);
                    continue;
                }
                c if peer_gone(c) => {
                    io.broken = true;
                    return Ok(());
                }
                _ => return Err(last_error()),
            }
        }
    }

    /// Nothing to remove on Windows: the pipe's name goes with its handle.
    pub fn unlink(&self) {}
}

impl Drop for TriggerPipe {
    fn drop(&mut self) {
        let Ok(io) = self.io.get_mut() else {
            return;
        };
        if io.pending != Pending::None {
            let h = self.pipe.as_raw_handle();
            let mut n = 0u32;
            // SAFETY: cancel the operation in flight on our handle, then wait
            // for it to finish, so the kernel no longer writes the boxed
            // OVERLAPPED and buffer when they are freed.
            unsafe {
                CancelIoEx(h, &*io.ov);
                GetOverlappedResult(h, &*io.ov, &mut n, 1);
            }
        }
    }
}
