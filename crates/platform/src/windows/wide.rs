//! UTF-16 names for the Win32 `W` functions.

use std::io;

/// `s` as a NUL-terminated UTF-16 string. A NUL inside `s` is refused (the
/// name would be cut there).
pub(crate) fn wide(s: &str) -> io::Result<Vec<u16>> {
    if s.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{s:?} contains a NUL character"),
        ));
    }
    Ok(s.encode_utf16().chain(std::iter::once(0)).collect())
}

/// The calling thread's last Win32 error as an `io::Error`.
pub(crate) fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// The calling thread's last Win32 error code.
pub(crate) fn last_code() -> u32 {
    // SAFETY: GetLastError only reads the calling thread's error slot.
    unsafe { windows_sys::Win32::Foundation::GetLastError() }
}
