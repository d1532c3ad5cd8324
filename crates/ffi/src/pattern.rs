//! The fake camera's test pattern (doc/LAYOUT.md §9) for C programs: fill
//! a frame with it (a producer under test) or check a frame against it (a
//! consumer under test).

use shm_layout::pattern::Pattern;
use shm_layout::PixelFormat;

use crate::error::{guard, non_null, FfiError, FramebusStatus};
use crate::format_and_bits_arg;
use crate::frame::{frame_arg, FramebusFrame};

/// A frame's description as a C caller gives it, checked: the format, its
/// significant bits and the bytes one row of pixels takes.
struct Geometry {
    format: PixelFormat,
    significant_bits: u8,
    height: u32,
    stride: usize,
}

/// Checks that a `width` x `height` frame in `format` with rows `stride`
/// apart fits in `len` bytes.
fn check_geometry(
    len: usize,
    width: u32,
    height: u32,
    stride: u32,
    format: u32,
    significant_bits: u32,
) -> Result<Geometry, FfiError> {
    let (format, significant_bits) =
        format_and_bits_arg(format, significant_bits, "significant_bits")?;
    let row = u64::from(width) * u64::from(format.bytes_per_pixel());
    if width == 0 || height == 0 || u64::from(stride) < row {
        return Err(FfiError::InvalidArgument(format!(
            "a {width}x{height} {format} frame with stride {stride}: width and height must be > 0 and stride >= {row} (width * bytes per pixel)"
        )));
    }
    let need = u64::from(stride) * u64::from(height - 1) + row;
    if (len as u64) < need {
        return Err(FfiError::InvalidArgument(format!(
            "len is {len} bytes, but a {width}x{height} {format} frame with stride {stride} needs {need}"
        )));
    }
    Ok(Geometry {
        format,
        significant_bits,
        height,
        stride: stride as usize,
    })
}

fn verify(seq: u64, src: &[u8], width: u32, g: &Geometry) -> Result<(), FfiError> {
    Pattern::with_format(width, g.format, g.significant_bits)
        .verify(seq, src, g.stride, g.height)
        .map_err(|m| FfiError::PatternMismatch {
            seq,
            row: m.row,
            col: m.col,
            found: m.found,
            expected: m.expected,
        })
}

/// Writes frame `seq` of the fake camera's test pattern into `data`
/// (`height` rows of `width` pixels in `format` — a `framebus_format` —
/// `stride` bytes apart; padding untouched), as `framebus produce` does,
/// so any framebus consumer can check it. `significant_bits` is 0 (all
/// bits) or, for gray16, the camera's bit count (10, 12...).
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
    format: u32,
    significant_bits: u32,
    seq: u64,
) -> FramebusStatus {
    guard(|| {
        let data = non_null(data.cast_const(), "data")?.cast_mut();
        let g = check_geometry(len, width, height, stride, format, significant_bits)?;
        // SAFETY: non-NULL and writable for `len` bytes (the caller's
        // contract); no other reference to it exists during this call.
        let dst = unsafe { std::slice::from_raw_parts_mut(data, len) };
        Pattern::with_format(width, g.format, g.significant_bits).fill(seq, dst, g.stride, height);
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Checks that `data` holds exactly frame `seq` of the test pattern
/// (arguments as for `framebus_pattern_fill`): `FRAMEBUS_OK`, or
/// `FRAMEBUS_ERROR_PATTERN_MISMATCH` with the first wrong row, column and
/// byte in the message.
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
    format: u32,
    significant_bits: u32,
    seq: u64,
) -> FramebusStatus {
    guard(|| {
        let data = non_null(data, "data")?;
        let g = check_geometry(len, width, height, stride, format, significant_bits)?;
        // SAFETY: non-NULL and readable for `len` bytes (the caller's
        // contract); only read.
        let src = unsafe { std::slice::from_raw_parts(data, len) };
        verify(seq, src, width, &g)?;
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Checks a pinned frame against the test pattern of its own `seq`, in
/// its own format (what `framebus consume --algo verify` does):
/// `FRAMEBUS_OK` or `FRAMEBUS_ERROR_PATTERN_MISMATCH`.
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
        let g = Geometry {
            format: f.format(),
            significant_bits: f.significant_bits(),
            height: f.height(),
            stride: f.stride() as usize,
        };
        verify(f.seq(), f.pixels(), f.width(), &g)?;
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAY8: u32 = crate::FramebusFormat::FRAMEBUS_FORMAT_GRAY8 as u32;
    const GRAY16: u32 = crate::FramebusFormat::FRAMEBUS_FORMAT_GRAY16 as u32;
    const BGR8: u32 = crate::FramebusFormat::FRAMEBUS_FORMAT_BGR8 as u32;
    const RGB8: u32 = crate::FramebusFormat::FRAMEBUS_FORMAT_RGB8 as u32;

    #[test]
    fn fill_then_verify_and_a_wrong_byte_is_named() {
        let (w, h, stride) = (100u32, 7u32, 128u32);
        let mut buf = vec![0u8; (stride * h) as usize];
        // SAFETY: buf is writable/readable for its whole length.
        unsafe {
            assert_eq!(
                framebus_pattern_fill(buf.as_mut_ptr(), buf.len(), w, h, stride, GRAY8, 0, 42),
                FramebusStatus::FRAMEBUS_OK
            );
            assert_eq!(
                framebus_pattern_verify(buf.as_ptr(), buf.len(), w, h, stride, GRAY8, 0, 42),
                FramebusStatus::FRAMEBUS_OK
            );
            buf[3 * 128 + 5] ^= 1;
            assert_eq!(
                framebus_pattern_verify(buf.as_ptr(), buf.len(), w, h, stride, GRAY8, 0, 42),
                FramebusStatus::FRAMEBUS_ERROR_PATTERN_MISMATCH
            );
            // Too short for the geometry: refused before any access.
            assert_eq!(
                framebus_pattern_verify(buf.as_ptr(), 10, w, h, stride, GRAY8, 0, 42),
                FramebusStatus::FRAMEBUS_ERROR_INVALID_ARGUMENT
            );
            assert_eq!(
                framebus_pattern_fill(std::ptr::null_mut(), 10, w, h, stride, GRAY8, 0, 42),
                FramebusStatus::FRAMEBUS_ERROR_INVALID_ARGUMENT
            );
        }
    }

    /// The geometry check is exact: a buffer of exactly
    /// `stride * (height - 1) + width * bytes_per_pixel` bytes is enough,
    /// one byte less is not; a zero width or height is refused.
    #[test]
    fn the_geometry_check_is_exact() {
        let (w, h, stride) = (10u32, 4u32, 40u32);
        // gray16: rows of 20 bytes, 40 apart: 3 * 40 + 20.
        let need = 140usize;
        let mut buf = vec![0u8; need];
        // SAFETY: buf is writable for `need` bytes, and every length
        // passed is at most that.
        unsafe {
            assert_eq!(
                framebus_pattern_fill(buf.as_mut_ptr(), need, w, h, stride, GRAY16, 0, 3),
                FramebusStatus::FRAMEBUS_OK
            );
            assert_eq!(
                framebus_pattern_fill(buf.as_mut_ptr(), need - 1, w, h, stride, GRAY16, 0, 3),
                FramebusStatus::FRAMEBUS_ERROR_INVALID_ARGUMENT
            );
            for (w, h) in [(0, h), (w, 0)] {
                assert_eq!(
                    framebus_pattern_fill(buf.as_mut_ptr(), need, w, h, stride, GRAY16, 0, 3),
                    FramebusStatus::FRAMEBUS_ERROR_INVALID_ARGUMENT,
                    "{w}x{h}"
                );
            }
        }
    }

    /// Every format's pattern is the one the Rust consumers check, with
    /// rows of `width * bytes_per_pixel`; a stride that fits gray8 but not
    /// the format, an unknown format and impossible bits are refused.
    #[test]
    fn every_format_matches_the_rust_pattern() {
        let (w, h) = (33u32, 5u32);
        for (format, bpp, bits) in [
            (GRAY8, 1, 0),
            (GRAY16, 2, 12),
            (GRAY16, 2, 0),
            (BGR8, 3, 0),
            (RGB8, 3, 8),
        ] {
            let stride = w * bpp + 6;
            let mut buf = vec![0u8; (stride * h) as usize];
            // SAFETY: buf is writable/readable for its whole length.
            unsafe {
                assert_eq!(
                    framebus_pattern_fill(
                        buf.as_mut_ptr(),
                        buf.len(),
                        w,
                        h,
                        stride,
                        format,
                        bits,
                        7
                    ),
                    FramebusStatus::FRAMEBUS_OK
                );
                assert_eq!(
                    framebus_pattern_verify(buf.as_ptr(), buf.len(), w, h, stride, format, bits, 7),
                    FramebusStatus::FRAMEBUS_OK
                );
            }
            let f = PixelFormat::from_code(format).expect("a known format");
            let rust = Pattern::with_format(w, f, bits as u8);
            assert_eq!(
                rust.verify(7, &buf, stride as usize, h),
                Ok(()),
                "format {format}"
            );
            // The last pixel's last byte is checked too.
            let last = ((h - 1) * stride + w * bpp - 1) as usize;
            buf[last] ^= 0x01;
            // SAFETY: as above.
            let status = unsafe {
                framebus_pattern_verify(buf.as_ptr(), buf.len(), w, h, stride, format, bits, 7)
            };
            assert_eq!(
                status,
                FramebusStatus::FRAMEBUS_ERROR_PATTERN_MISMATCH,
                "format {format}"
            );
            if bpp > 1 {
                // SAFETY: as above; refused before any access.
                let status = unsafe {
                    framebus_pattern_verify(buf.as_ptr(), buf.len(), w, h, w, format, bits, 7)
                };
                assert_eq!(status, FramebusStatus::FRAMEBUS_ERROR_INVALID_ARGUMENT);
            }
        }
        let mut buf = vec![0u8; 64];
        for (format, bits) in [(0, 0), (5, 0), (GRAY8, 12), (GRAY16, 17), (BGR8, 16)] {
            // SAFETY: buf is writable for its length; refused before access.
            let status = unsafe {
                framebus_pattern_fill(buf.as_mut_ptr(), buf.len(), 4, 4, 12, format, bits, 1)
            };
            assert_eq!(
                status,
                FramebusStatus::FRAMEBUS_ERROR_INVALID_ARGUMENT,
                "{format}/{bits}"
            );
        }
    }
}
