//! The framebus C ABI: consumers and producers of a framebus bus for C,
//! C++ and any language with a C FFI.
//!
//! The header `include/framebus.h` is generated from this crate by cbindgen
//! (`cbindgen.toml`; the test `tests/header.rs` fails when it drifts, and
//! `FRAMEBUS_BLESS=1 cargo test -p framebus-ffi --test header` rewrites it).
//! `include/framebus.hpp` is a header-only C++17 wrapper over it.
//! `doc/C_API.md` states the rules; in short:
//!
//! - **Ownership.** Every handle (`framebus_consumer`, `framebus_frame`,
//!   `framebus_producer`) is created by one function of this library and
//!   freed by exactly one other (`framebus_consumer_leave`,
//!   `framebus_frame_release`, `framebus_producer_destroy`). A frame may
//!   outlive its consumer: it keeps the bus mapped until it is released.
//! - **Errors.** Every function that can fail returns a [`FramebusStatus`];
//!   [`framebus_last_error_message`] gives the text of the last error on
//!   the calling thread. No panic crosses the boundary: it becomes
//!   `FRAMEBUS_ERROR_PANIC`.
//! - **Threads.** A consumer or producer handle may move between threads
//!   but serves one call at a time: a call made while another thread is
//!   inside a call on the same handle fails with
//!   `FRAMEBUS_ERROR_CONCURRENT_USE` (no undefined behaviour, no
//!   deadlock). A frame handle is immutable: its accessors may be called
//!   from any number of threads at once.
#![warn(missing_docs)]

mod consumer;
mod error;
mod frame;
mod pattern;
mod producer;

use std::ffi::c_char;

pub use consumer::*;
pub use error::{framebus_last_error_message, framebus_status_name, FramebusStatus};
pub use frame::*;
pub use pattern::*;
pub use producer::*;

/// Major version of the C ABI: bumped (with the shared library's soname,
/// `libframebus.so.<major>`) by any change that breaks a program built
/// against an older header.
pub const FRAMEBUS_ABI_VERSION_MAJOR: u32 = 1;
/// Minor version of the C ABI: bumped when functions or options-struct
/// fields are added; a program built against minor `m` runs with any
/// library of the same major and a minor `>= m`.
pub const FRAMEBUS_ABI_VERSION_MINOR: u32 = 0;
/// The ABI version this header describes, `major << 16 | minor`; compare
/// with `framebus_abi_version()` at run time (`FRAMEBUS_ABI_COMPATIBLE`).
pub const FRAMEBUS_ABI_VERSION: u32 = 65536;

const _: () = assert!(
    FRAMEBUS_ABI_VERSION == (FRAMEBUS_ABI_VERSION_MAJOR << 16 | FRAMEBUS_ABI_VERSION_MINOR)
);

/// Pixel formats a frame can have (the bus header's `pixel_format` code,
/// doc/LAYOUT.md §5.5). A frame's format accessor returns one of these;
/// programs should refuse values they do not know.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramebusFormat {
    /// One byte per pixel, 0 = black, 255 = white; rows `stride` bytes apart.
    FRAMEBUS_FORMAT_GRAY8 = 1,
    /// One little-endian `uint16_t` per pixel (2-aligned; `stride` is
    /// even); a mono10/12 camera's values are unshifted, 0..2^bits - 1.
    FRAMEBUS_FORMAT_GRAY16 = 2,
    /// Three bytes per pixel: blue, green, red.
    FRAMEBUS_FORMAT_BGR8 = 3,
    /// Three bytes per pixel: red, green, blue.
    FRAMEBUS_FORMAT_RGB8 = 4,
}

const _: () = {
    use shm_layout::header::{
        PIXEL_FORMAT_BGR8, PIXEL_FORMAT_GRAY16, PIXEL_FORMAT_GRAY8, PIXEL_FORMAT_RGB8,
    };
    assert!(FramebusFormat::FRAMEBUS_FORMAT_GRAY8 as u32 == PIXEL_FORMAT_GRAY8);
    assert!(FramebusFormat::FRAMEBUS_FORMAT_GRAY16 as u32 == PIXEL_FORMAT_GRAY16);
    assert!(FramebusFormat::FRAMEBUS_FORMAT_BGR8 as u32 == PIXEL_FORMAT_BGR8);
    assert!(FramebusFormat::FRAMEBUS_FORMAT_RGB8 as u32 == PIXEL_FORMAT_RGB8);
};

/// A `framebus_format` argument, checked.
pub(crate) fn format_arg(code: u32) -> Result<shm_layout::PixelFormat, error::FfiError> {
    shm_layout::PixelFormat::from_code(code).ok_or_else(|| {
        error::FfiError::InvalidArgument(format!(
            "format {code} is not a framebus_format: use FRAMEBUS_FORMAT_GRAY8 (1), GRAY16 (2), BGR8 (3) or RGB8 (4)"
        ))
    })
}

/// A `framebus_format` argument and its significant bits, checked: `bits`
/// 0 means all of the format's bits; gray16 takes 1 to 16, the 8-bit
/// formats only 8. `what` names the bits argument in the message.
pub(crate) fn format_and_bits_arg(
    format: u32,
    bits: u32,
    what: &str,
) -> Result<(shm_layout::PixelFormat, u8), error::FfiError> {
    let format = format_arg(format)?;
    let checked = u8::try_from(bits)
        .ok()
        .and_then(|b| format.check_significant_bits(b).ok());
    let Some(significant_bits) = checked else {
        let allowed = if format == shm_layout::PixelFormat::Gray16 {
            "1 to 16 (10 or 12 for a mono10/12 camera)"
        } else {
            "8"
        };
        return Err(error::FfiError::InvalidArgument(format!(
            "{what} is {bits} for {format}: use 0 (all bits) or {allowed}"
        )));
    };
    Ok((format, significant_bits))
}

/// The ABI version of the loaded library, `major << 16 | minor`. A program
/// built against header version `FRAMEBUS_ABI_VERSION` works with it if the
/// majors are equal and the library's minor is at least the header's
/// (`FRAMEBUS_ABI_COMPATIBLE(framebus_abi_version())`). Cannot fail.
#[no_mangle]
pub extern "C" fn framebus_abi_version() -> u32 {
    FRAMEBUS_ABI_VERSION
}

/// Now on the bus's clock, in nanoseconds: the clock of every
/// `capture_ns` and `publish_ns` (`CLOCK_MONOTONIC` on Linux,
/// `QueryPerformanceCounter` on Windows; not wall time, and only
/// comparable between processes of one machine). A producer that stamps
/// its own capture times reads them from here. Cannot fail.
#[no_mangle]
pub extern "C" fn framebus_monotonic_ns() -> u64 {
    framebus_producer::monotonic_ns()
}

/// The library's release as a static NUL-terminated string (e.g. "0.1.0").
/// Cannot fail; the pointer is valid for the life of the process.
#[no_mangle]
pub extern "C" fn framebus_library_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_version_is_the_crate_version() {
        // SAFETY: a static NUL-terminated string (the function's contract).
        let v = unsafe { std::ffi::CStr::from_ptr(framebus_library_version()) };
        assert_eq!(v.to_str(), Ok(env!("CARGO_PKG_VERSION")));
        assert_eq!(framebus_abi_version(), FRAMEBUS_ABI_VERSION);
    }
}
