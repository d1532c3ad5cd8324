//! The frame handle: a pinned frame's accessors and its release. Frames
//! are made by the consumer handle (`consumer.rs`).

use framebus_consumer::Frame;

use crate::error::{guard, non_null, write_out, FfiError, FramebusStatus};

/// A pinned frame: its pixels are the shared slot itself (zero-copy) and
/// stay exactly as they are until `framebus_frame_release`. Created by
/// `framebus_consumer_next_frame` / `framebus_consumer_pin_newest`.
///
/// Threads: immutable; its accessors may be called from any number of
/// threads at once, and it may be released from any thread (exactly once,
/// after every other use). It may outlive its consumer.
pub struct FramebusFrame {
    frame: Frame<'static>,
    info: FramebusFrameInfo,
}

/// Everything about a pinned frame in one struct
/// (`framebus_frame_get_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FramebusFrameInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in rows.
    pub height: u32,
    /// Bytes from the start of one row to the next (>= width * bytes per
    /// pixel).
    pub stride: u32,
    /// Pixel format, a `framebus_format` value.
    pub format: u32,
    /// Significant bits of each value (8, or 10/12/16 for gray16).
    pub significant_bits: u32,
    /// Sequence number: 1, 2, ... per producer instance; increasing.
    pub seq: u64,
    /// Capture time, nanoseconds on the bus's clock (`framebus_monotonic_ns`).
    pub capture_ns: u64,
    /// Publish time, nanoseconds on the bus's clock (`framebus_monotonic_ns`).
    pub publish_ns: u64,
    /// Nanoseconds from publish to the moment the library pinned the frame.
    pub latency_ns: u64,
    /// The producer instance the frame came from.
    pub instance_id: u64,
    /// The first pixel (row 0); rows are `stride` bytes apart. Read-only
    /// shared memory: writing it crashes the process.
    pub data: *const u8,
    /// Bytes at `data`: `stride * height`.
    pub len: usize,
}

/// A frame handle for a frame just pinned (freed by
/// `framebus_frame_release`).
pub(crate) fn frame_handle(frame: Frame<'static>) -> *mut FramebusFrame {
    let pixels = frame.pixels();
    let info = FramebusFrameInfo {
        width: frame.width(),
        height: frame.height(),
        stride: frame.stride(),
        format: frame.format().code(),
        significant_bits: u32::from(frame.significant_bits()),
        seq: frame.seq(),
        capture_ns: frame.capture_ns(),
        publish_ns: frame.publish_ns(),
        latency_ns: frame.latency_ns(),
        instance_id: frame.instance_id(),
        data: pixels.as_ptr(),
        len: pixels.len(),
    };
    Box::into_raw(Box::new(FramebusFrame { frame, info }))
}

/// Releases a frame's pin and frees the handle: the producer may reuse its
/// slot from now on, so no pointer to its pixels may be used afterwards.
/// NULL is accepted (nothing to do).
///
/// # Safety
/// `frame` must be NULL or a live handle from this library, released once,
/// with no other thread using it.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_release(frame: *mut FramebusFrame) -> FramebusStatus {
    guard(|| {
        if !frame.is_null() {
            // SAFETY: from Box::into_raw in frame_handle, freed only here,
            // once (the caller's contract). Dropping the Frame releases the
            // pin.
            drop(unsafe { Box::from_raw(frame) });
        }
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// The frame behind a handle.
///
/// # Safety
/// `frame` must be NULL or a live frame handle.
unsafe fn frame_ref<'a>(frame: *const FramebusFrame) -> Result<&'a FramebusFrame, FfiError> {
    let frame = non_null(frame, "frame")?;
    // SAFETY: non-NULL and live (the caller's contract); frames are
    // immutable, so shared references from several threads are fine.
    Ok(unsafe { &*frame })
}

/// One frame accessor: reads a field of the frame's info into `*out`.
///
/// # Safety
/// `frame` must be NULL or a live frame handle, `out` NULL or writable.
unsafe fn frame_field<T>(
    frame: *const FramebusFrame,
    out: *mut T,
    field: impl FnOnce(&FramebusFrameInfo) -> T,
) -> FramebusStatus {
    guard(|| {
        // SAFETY: the caller's contract, passed on.
        let f = unsafe { frame_ref(frame)? };
        // SAFETY: the caller's contract for `out`.
        unsafe { write_out(out, "out", field(&f.info))? };
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Everything about the frame in one struct (the accessors below, at once).
///
/// # Safety
/// `frame` must be a live frame handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_get_info(
    frame: *const FramebusFrame,
    out: *mut FramebusFrameInfo,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_field(frame, out, |i| *i) }
}

/// The frame's width in pixels.
///
/// # Safety
/// `frame` must be a live frame handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_width(
    frame: *const FramebusFrame,
    out: *mut u32,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_field(frame, out, |i| i.width) }
}

/// The frame's height in rows.
///
/// # Safety
/// `frame` must be a live frame handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_height(
    frame: *const FramebusFrame,
    out: *mut u32,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_field(frame, out, |i| i.height) }
}

/// Bytes from the start of one row to the next (>= width; the bytes past
/// `width` in a row are padding).
///
/// # Safety
/// `frame` must be a live frame handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_stride(
    frame: *const FramebusFrame,
    out: *mut u32,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_field(frame, out, |i| i.stride) }
}

/// The frame's pixel format, a `framebus_format` value
/// (`FRAMEBUS_FORMAT_GRAY8`, `_GRAY16`, `_BGR8` or `_RGB8`, as the bus says).
///
/// # Safety
/// `frame` must be a live frame handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_format(
    frame: *const FramebusFrame,
    out: *mut u32,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_field(frame, out, |i| i.format) }
}

/// The frame's sequence number (1, 2, ... per producer instance).
///
/// # Safety
/// `frame` must be a live frame handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_seq(
    frame: *const FramebusFrame,
    out: *mut u64,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_field(frame, out, |i| i.seq) }
}

/// The frame's capture time, nanoseconds on the bus's clock (`framebus_monotonic_ns`).
///
/// # Safety
/// `frame` must be a live frame handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_capture_ns(
    frame: *const FramebusFrame,
    out: *mut u64,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_field(frame, out, |i| i.capture_ns) }
}

/// The frame's publish time, nanoseconds on the bus's clock (`framebus_monotonic_ns`).
///
/// # Safety
/// `frame` must be a live frame handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_publish_ns(
    frame: *const FramebusFrame,
    out: *mut u64,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_field(frame, out, |i| i.publish_ns) }
}

/// The frame's first pixel (row 0; rows `stride` bytes apart), valid until
/// `framebus_frame_release`. Read-only shared memory.
///
/// # Safety
/// `frame` must be a live frame handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_data(
    frame: *const FramebusFrame,
    out: *mut *const u8,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_field(frame, out, |i| i.data) }
}

/// Bytes at `framebus_frame_data`: `stride * height`.
///
/// # Safety
/// `frame` must be a live frame handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_frame_len(
    frame: *const FramebusFrame,
    out: *mut usize,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_field(frame, out, |i| i.len) }
}

impl FramebusFrame {
    /// The pinned frame (for the pattern check).
    pub(crate) fn frame(&self) -> &Frame<'static> {
        &self.frame
    }
}

/// The frame behind a handle, for other modules.
///
/// # Safety
/// `frame` must be NULL or a live frame handle.
pub(crate) unsafe fn frame_arg<'a>(
    frame: *const FramebusFrame,
) -> Result<&'a FramebusFrame, FfiError> {
    // SAFETY: the caller's contract, passed on.
    unsafe { frame_ref(frame) }
}
