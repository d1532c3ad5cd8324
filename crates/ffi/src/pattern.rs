//! The fake camera's test pattern (doc/LAYOUT.md §9) for C programs: fill
//! a frame with it (a producer under test) or check a frame against it (a
//! consumer under test).

use shm_layout::pattern::Pattern;

use crate::consumer::{frame_arg, FramebusFrame};
use crate::error::{guard, non_null, FfiError, FramebusStatus};

/// Checks that a `width` x `height` frame with rows `stride` apart fits in
/// `len` bytes.
fn check_geometry(len: usize, width: u32, height: u32, stride: u32) -> Result<(), FfiError> {
    if width == 0 || height == 0 || stride < width {
        return Err(FfiError::InvalidArgument(format!(
            "a {width}x{height} frame with stride {stride}: width and height must be > 0 and stride >= width"
        )));
    }
    let need = (stride as usize)
        .checked_mul(height as usize - 1)
        .and_then(|n| n.checked_add(width as usize))
        .ok_or_else(|| FfiError::InvalidArgument("the frame is too large".into()))?;
    if len < need {
        return Err(FfiError::InvalidArgument(format!(
            "len is {len} bytes, but a {width}x{height} frame with stride {stride} needs {need}"
        )));
    }
    Ok(())
}

fn verify(seq: u64, src: &[u8], width: u32, height: u32, stride: u32) -> Result<(), FfiError> {
    Pattern::new(width)
        .verify(seq, src, stride as usize, height)
        .map_err(|m| FfiError::PatternMismatch {
            seq,
            row: m.row,
            col: m.col,
            found: m.found,
            expected: m.expected,
        })
}

/// Writes frame `seq` of the fake camera's test pattern into `data`
/// (`height` rows of `width` bytes, `stride` apart; padding untouched), as
/// `framebus produce` does, so any framebus consumer can check it.
///
/// # Safety
/// `data` must be writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn framebus_pattern_fill(
    data: *mut u8,
    len: usize,
    width: u32,
    height: u32,
    stride: u32,
    seq: u64,
) -> FramebusStatus {
    guard(|| {
        let data = non_null(data.cast_const(), "data")?.cast_mut();
        check_geometry(len, width, height, stride)?;
        // SAFETY: non-NULL and writable for `len` bytes (the caller's
        // contract); no other reference to it exists during this call.
        let dst = unsafe { std::slice::from_raw_parts_mut(data, len) };
        Pattern::new(width).fill(seq, dst, stride as usize, height);
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Checks that `data` holds exactly frame `seq` of the test pattern:
/// `FRAMEBUS_OK`, or `FRAMEBUS_ERROR_PATTERN_MISMATCH` with the first wrong
/// row, column and byte in the message.
///
/// # Safety
/// `data` must be readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn framebus_pattern_verify(
    data: *const u8,
    len: usize,
    width: u32,
    height: u32,
    stride: u32,
    seq: u64,
) -> FramebusStatus {
    guard(|| {
        let data = non_null(data, "data")?;
        check_geometry(len, width, height, stride)?;
        // SAFETY: non-NULL and readable for `len` bytes (the caller's
        // contract); only read.
        let src = unsafe { std::slice::from_raw_parts(data, len) };
        verify(seq, src, width, height, stride)?;
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Checks a pinned frame against the test pattern of its own `seq` (what
/// `framebus consume --algo verify` does): `FRAMEBUS_OK` or
/// `FRAMEBUS_ERROR_PATTERN_MISMATCH`.
///
/// # Safety
/// `frame` must be a live frame handle.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_verify_pattern(
    frame: *const FramebusFrame,
) -> FramebusStatus {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let f = unsafe { frame_arg(frame)? }.frame();
        verify(f.seq(), f.pixels(), f.width(), f.height(), f.stride())?;
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_verify_and_a_wrong_byte_is_named() {
        let (w, h, stride) = (100u32, 7u32, 128u32);
        let mut buf = vec![0u8; (stride * h) as usize];
        // SAFETY: buf is writable/readable for its whole length.
        unsafe {
            assert_eq!(
                framebus_pattern_fill(buf.as_mut_ptr(), buf.len(), w, h, stride, 42),
                FramebusStatus::FRAMEBUS_OK
            );
            assert_eq!(
                framebus_pattern_verify(buf.as_ptr(), buf.len(), w, h, stride, 42),
                FramebusStatus::FRAMEBUS_OK
            );
            buf[3 * 128 + 5] ^= 1;
            assert_eq!(
                framebus_pattern_verify(buf.as_ptr(), buf.len(), w, h, stride, 42),
                FramebusStatus::FRAMEBUS_ERROR_PATTERN_MISMATCH
            );
            // Too short for the geometry: refused before any access.
            assert_eq!(
                framebus_pattern_verify(buf.as_ptr(), 10, w, h, stride, 42),
                FramebusStatus::FRAMEBUS_ERROR_INVALID_ARGUMENT
            );
            assert_eq!(
                framebus_pattern_fill(std::ptr::null_mut(), 10, w, h, stride, 42),
                FramebusStatus::FRAMEBUS_ERROR_INVALID_ARGUMENT
            );
        }
    }
}
