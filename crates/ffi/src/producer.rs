//! The producer handle: create a bus, publish frames (copied in, or
//! written in place by a callback), housekeeping, shutdown.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Mutex;

use framebus_producer::{monotonic_ns, Captured, Producer, ProducerConfig, SourceError};

use crate::consumer::{bus_arg, FramebusBusInfo};
use crate::error::{
    guard, lock, non_null, options_arg, out_arg, write_out, FfiError, FramebusStatus, SizedOptions,
};
use crate::{format_and_bits_arg, FramebusFormat};

/// The producer of one bus. Created by `framebus_producer_create`, freed by
/// `framebus_producer_destroy` (which shuts the bus down if
/// `framebus_producer_shutdown` has not).
///
/// Threads: may be used from any thread, one call at a time; a call while
/// another thread is inside a call on it fails with
/// `FRAMEBUS_ERROR_CONCURRENT_USE`.
pub struct FramebusProducer {
    inner: Mutex<ProducerState>,
}

struct ProducerState {
    producer: Producer,
    shut_down: bool,
}

// The handle hops threads with its caller: the producer must be Send.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Producer>();
};

/// Options of `framebus_producer_create`. Fill it with
/// `framebus_producer_options_init` first (which sets `size`), then change
/// fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FramebusProducerOptions {
    /// `sizeof(framebus_producer_options)` as the caller compiled it.
    pub size: u32,
    /// Consumer entries, 1..=63 (default 8).
    pub max_consumers: u32,
    /// Frames each consumer may hold at once, 1..=8 (default 2, so that a
    /// consumer may keep the previous frame while it takes the next, as a
    /// Python loop or a C++ `frame = consumer.next_frame()` does). The bus
    /// gets `max_consumers * pins_per_consumer + 2` slots.
    pub pins_per_consumer: u32,
    /// Nominal frame rate written into the header for `inspect` (0 =
    /// unpaced; the library does not pace: the caller publishes when it
    /// has a frame).
    pub nominal_fps: f64,
    /// The frames' pixel format, a `framebus_format` value (default
    /// `FRAMEBUS_FORMAT_GRAY8`).
    pub format: u32,
    /// Significant bits of each value, for gray16: 10 or 12 for a mono10/12
    /// camera (values 0..2^bits - 1, unshifted); 0 = all of the format's
    /// bits (the default; 8-bit formats accept only 0 or 8).
    pub significant_bits: u32,
}

/// The slot a fill callback writes: `height` rows of `width` pixels,
/// `stride` bytes apart, at `data`.
#[repr(C)]
#[derive(Debug)]
pub struct FramebusSlot {
    /// The slot's first byte; `len` bytes are writable until the callback
    /// returns (not after).
    pub data: *mut u8,
    /// Writable bytes at `data`: `stride * height`.
    pub len: usize,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in rows.
    pub height: u32,
    /// Bytes from one row to the next.
    pub stride: u32,
    /// Pixel format to write, a `framebus_format` value.
    pub format: u32,
    /// The sequence number this frame will have.
    pub seq: u64,
    /// Significant bits of each value (8, or 10/12/16 for gray16).
    pub significant_bits: u32,
    /// Set by the callback: the capture time in nanoseconds on the bus's
    /// clock (`framebus_monotonic_ns`). Left at 0, the library uses the
    /// time the callback returned.
    pub capture_ns: u64,
}

/// A fill callback: writes frame `slot->seq` into `slot->data` and returns
/// 0 to publish it, or non-zero to publish nothing (the call then returns
/// `FRAMEBUS_ERROR_CALLBACK`). It must not unwind (no C++ exception, no
/// `longjmp`) through the library and must not call into the same producer.
pub type FramebusFillFn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, slot: *mut FramebusSlot) -> c_int>;

/// Producer counters (`framebus_producer_get_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramebusProducerStats {
    /// Frames published.
    pub frames: u64,
    /// Consumers reclaimed (dead, or evicted for holding too many frames).
    pub reclaimed: u64,
}

// `options_arg` reads `size` at offset 0 as a u32.
const _: () = assert!(std::mem::offset_of!(FramebusProducerOptions, size) == 0);

impl SizedOptions for FramebusProducerOptions {
    const C_NAME: &'static str = "framebus_producer_options";

    fn defaults() -> Self {
        Self {
            size: std::mem::size_of::<Self>() as u32,
            max_consumers: 8,
            pins_per_consumer: 2,
            nominal_fps: 0.0,
            format: FramebusFormat::FRAMEBUS_FORMAT_GRAY8 as u32,
            significant_bits: 0,
        }
    }
}

/// Fills `*options` with the defaults (8 consumers, 2 pins each, unpaced,
/// gray8) and sets its `size`.
///
/// # Safety
/// `options` must point to writable memory for one
/// `framebus_producer_options`.
#[no_mangle]
pub unsafe extern "C" fn framebus_producer_options_init(
    options: *mut FramebusProducerOptions,
) -> FramebusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `options`.
        unsafe { write_out(options, "options", FramebusProducerOptions::defaults())? };
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Creates the bus `bus` for frames of `width` x `height` pixels (each
/// 1..=16384) in `options.format`: the shared memory object (Linux:
/// `/dev/shm/framebus.<bus>`, mode 0600; Windows: a named mapping for the
/// creating user only; a dead producer's bus is taken over) and the
/// trigger directory. Fails with `FRAMEBUS_ERROR_BUS_BUSY` if a live
/// producer owns the bus, `FRAMEBUS_ERROR_INVALID_ARGUMENT` for an unknown
/// format or a bit count the format cannot have. `options`
/// may be NULL (defaults). On success `*out` is the new handle; on failure
/// NULL.
///
/// # Safety
/// `bus` must be a NUL-terminated string; `options` NULL or a valid
/// `framebus_producer_options` whose `size` is set; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_producer_create(
    bus: *const c_char,
    options: *const FramebusProducerOptions,
    width: u32,
    height: u32,
    out: *mut *mut FramebusProducer,
) -> FramebusStatus {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: `out` is non-NULL and writable (the caller's contract).
        unsafe { out.write(std::ptr::null_mut()) };
        let bus = bus_arg(bus)?;
        // SAFETY: `options` is NULL or the caller's struct, as
        // `options_arg` requires (this function's contract).
        let options = unsafe { options_arg(options) }?;
        if !(options.nominal_fps >= 0.0 && options.nominal_fps.is_finite()) {
            return Err(FfiError::InvalidArgument(format!(
                "options.nominal_fps is {}; use 0 (unpaced) or a positive rate",
                options.nominal_fps
            )));
        }
        let (format, significant_bits) = format_and_bits_arg(
            options.format,
            options.significant_bits,
            "options.significant_bits",
        )?;
        let config = ProducerConfig {
            max_consumers: options.max_consumers,
            pins_per_consumer: options.pins_per_consumer,
            nominal_fps: options.nominal_fps,
            format,
            significant_bits,
            ..ProducerConfig::new(bus)
        };
        let producer = Producer::create(config, width, height)?;
        let handle = Box::new(FramebusProducer {
            inner: Mutex::new(ProducerState {
                producer,
                shut_down: false,
            }),
        });
        // SAFETY: checked and writable above.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// The producer behind a handle.
///
/// # Safety
/// `producer` must be NULL or a live handle.
unsafe fn producer_ref<'a>(
    producer: *mut FramebusProducer,
) -> Result<&'a FramebusProducer, FfiError> {
    let producer = non_null(producer, "producer")?;
    // SAFETY: a live handle from framebus_producer_create (the caller's
    // contract); only `&` is taken, the Mutex serialises the rest.
    Ok(unsafe { &*producer })
}

/// Runs `body` on the producer, locked for one call; refuses a shut-down
/// producer unless `allow_shut_down`.
fn with_producer<R>(
    handle: &FramebusProducer,
    allow_shut_down: bool,
    body: impl FnOnce(&mut ProducerState) -> Result<R, FfiError>,
) -> Result<R, FfiError> {
    let mut state = lock(&handle.inner, "producer")?;
    if state.shut_down && !allow_shut_down {
        return Err(FfiError::ShutDown(
            state.producer.config().bus.as_str().to_string(),
        ));
    }
    body(&mut state)
}

/// Publishes one frame by copying it from `data`: `height` rows of
/// `width * bytes_per_pixel` bytes (1 for gray8, 2 for gray16, 3 for
/// bgr8/rgb8), `src_stride` bytes apart (0 = tightly packed), so `len`
/// must be at least `src_stride * (height - 1) + width * bytes_per_pixel`.
/// gray16 values are little-endian `uint16_t` (any alignment of `data`
/// is accepted). `capture_ns` is the capture time on the bus's clock
/// (`framebus_monotonic_ns`; 0 = now). Every consumer is
/// triggered; none is waited for. `*out_seq` (if not NULL) gets the
/// frame's sequence number. Also does the housekeeping (connects new
/// consumers, reclaims dead ones).
///
/// # Safety
/// `producer` must be a live handle; `data` readable for `len` bytes;
/// `out_seq` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_producer_publish(
    producer: *mut FramebusProducer,
    data: *const u8,
    len: usize,
    src_stride: u32,
    capture_ns: u64,
    out_seq: *mut u64,
) -> FramebusStatus {
    guard(|| {
        let data = non_null(data, "data")?;
        // SAFETY: the caller's contract for `producer`.
        let handle = unsafe { producer_ref(producer)? };
        let seq = with_producer(handle, false, |state| {
            let l = *state.producer.layout();
            let height = l.height as usize;
            // Bytes of one row's pixels.
            let width = l.width as usize * l.format.bytes_per_pixel() as usize;
            let src_stride = if src_stride == 0 {
                width
            } else {
                src_stride as usize
            };
            if src_stride < width {
                return Err(FfiError::InvalidArgument(format!(
                    "src_stride {src_stride} is smaller than a row of the frame ({} {} pixels: {width} bytes)",
                    l.width, l.format
                )));
            }
            let need = src_stride
                .checked_mul(height - 1)
                .and_then(|n| n.checked_add(width))
                .ok_or_else(|| FfiError::InvalidArgument("src_stride is too large".into()))?;
            if len < need {
                return Err(FfiError::InvalidArgument(format!(
                    "len is {len} bytes, but a {}x{height} {} frame with rows {src_stride} bytes apart needs {need}",
                    l.width, l.format
                )));
            }
            // SAFETY: `data` is non-NULL and readable for `len` bytes
            // (the caller's contract), and the library never writes it.
            let src = unsafe { std::slice::from_raw_parts(data, len) };
            let seq = state.producer.publish(|_seq, slot| {
                let dst_stride = slot.stride() as usize;
                let dst = slot.data();
                for y in 0..height {
                    dst[y * dst_stride..y * dst_stride + width]
                        .copy_from_slice(&src[y * src_stride..y * src_stride + width]);
                }
                let capture_ns = if capture_ns == 0 {
                    monotonic_ns()
                } else {
                    capture_ns
                };
                Ok(Captured { capture_ns })
            })?;
            Ok(seq)
        })?;
        if !out_seq.is_null() {
            // SAFETY: non-NULL and writable (the caller's contract).
            unsafe { out_seq.write(seq) };
        }
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Publishes one frame written in place: takes a free slot and calls
/// `fill(user_data, slot)` once, synchronously, to write the frame straight
/// into shared memory (no copy). If `fill` returns 0 the frame is
/// published and every consumer triggered; otherwise nothing is published
/// and this returns `FRAMEBUS_ERROR_CALLBACK`. `*out_seq` (if not NULL)
/// gets the frame's sequence number.
///
/// # Safety
/// `producer` must be a live handle; `fill` a valid callback that follows
/// the `framebus_fill_fn` rules (no unwinding, no call on this producer);
/// `out_seq` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_producer_fill(
    producer: *mut FramebusProducer,
    fill: FramebusFillFn,
    user_data: *mut c_void,
    out_seq: *mut u64,
) -> FramebusStatus {
    guard(|| {
        let fill = fill.ok_or_else(|| FfiError::InvalidArgument(String::from("fill is NULL")))?;
        let mut refused: Option<c_int> = None;
        // SAFETY: the caller's contract for `producer`.
        let handle = unsafe { producer_ref(producer)? };
        let published = with_producer(handle, false, |state| {
            let published = state.producer.publish(|seq, writer| {
                let (width, height, stride) = (writer.width(), writer.height(), writer.stride());
                let format = writer.format().code();
                let significant_bits = u32::from(writer.significant_bits());
                let data = writer.data();
                let mut slot = FramebusSlot {
                    data: data.as_mut_ptr(),
                    len: data.len(),
                    width,
                    height,
                    stride,
                    format,
                    significant_bits,
                    seq,
                    capture_ns: 0,
                };
                // SAFETY: `fill` is a valid callback (the caller's
                // contract); `slot.data` is the slot the producer holds
                // for writing, `len` bytes, exclusively ours until
                // `publish` returns, and the callback may only use it
                // during this call; `slot` lives across the call.
                let rc = unsafe { fill(user_data, &mut slot) };
                if rc != 0 {
                    refused = Some(rc);
                    return Err(SourceError::Failed(format!(
                        "the fill callback returned {rc}"
                    )));
                }
                let capture_ns = if slot.capture_ns == 0 {
                    monotonic_ns()
                } else {
                    slot.capture_ns
                };
                Ok(Captured { capture_ns })
            });
            Ok(published)
        })?;
        let seq = match (published, refused) {
            (Ok(seq), _) => seq,
            (Err(_), Some(rc)) => return Err(FfiError::Callback(rc)),
            (Err(e), None) => return Err(e.into()),
        };
        if !out_seq.is_null() {
            // SAFETY: non-NULL and writable (the caller's contract).
            unsafe { out_seq.write(seq) };
        }
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Connects new consumers and reclaims dead ones (at most every 50 ms;
/// publishing does it too). Call it at least every 50 ms or so while no
/// frame is published, so a consumer that died meanwhile gets its pins
/// and entry back promptly.
///
/// # Safety
/// `producer` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn framebus_producer_housekeeping(
    producer: *mut FramebusProducer,
) -> FramebusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `producer`.
        let handle = unsafe { producer_ref(producer)? };
        with_producer(handle, false, |state| {
            state.producer.housekeeping();
            Ok(())
        })?;
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Geometry and identity of the producer's bus (`entry` is `UINT32_MAX`).
///
/// # Safety
/// `producer` must be a live handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_producer_get_bus_info(
    producer: *mut FramebusProducer,
    out: *mut FramebusBusInfo,
) -> FramebusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `producer`.
        let handle = unsafe { producer_ref(producer)? };
        let info = with_producer(handle, true, |state| {
            let l = *state.producer.layout();
            Ok(FramebusBusInfo {
                width: l.width,
                height: l.height,
                stride: l.stride,
                format: l.format.code(),
                significant_bits: u32::from(l.significant_bits),
                slot_count: l.slot_count,
                max_consumers: l.max_consumers,
                pins_per_consumer: l.pins_per_consumer,
                entry: u32::MAX,
                producer_pid: std::process::id(),
                instance_id: state.producer.instance_id(),
            })
        })?;
        // SAFETY: the caller's contract for `out`.
        unsafe { write_out(out, "out", info)? };
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// The producer's counters.
///
/// # Safety
/// `producer` must be a live handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_producer_get_stats(
    producer: *mut FramebusProducer,
    out: *mut FramebusProducerStats,
) -> FramebusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `producer`.
        let handle = unsafe { producer_ref(producer)? };
        let stats = with_producer(handle, true, |state| {
            let s = state.producer.stats();
            Ok(FramebusProducerStats {
                frames: s.frames,
                reclaimed: s.reclaimed,
            })
        })?;
        // SAFETY: the caller's contract for `out`.
        unsafe { write_out(out, "out", stats)? };
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Stops the bus: consumers see the producer stop (and wait for the next
/// one), the trigger FIFOs (pipes) and the shared memory object are removed.
/// Frames consumers still hold stay readable. Further publishes fail with
/// `FRAMEBUS_ERROR_SHUT_DOWN`; the handle still needs
/// `framebus_producer_destroy`. Calling it twice is fine.
///
/// # Safety
/// `producer` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn framebus_producer_shutdown(
    producer: *mut FramebusProducer,
) -> FramebusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `producer`.
        let handle = unsafe { producer_ref(producer)? };
        with_producer(handle, true, |state| {
            state.producer.shutdown();
            state.shut_down = true;
            Ok(())
        })?;
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Shuts the bus down (if not done yet), releases the bus's lock and frees
/// the handle. NULL is accepted. Fails with
/// `FRAMEBUS_ERROR_CONCURRENT_USE`, freeing nothing, if another thread is
/// inside a call on it.
///
/// # Safety
/// `producer` must be NULL or a live handle from `framebus_producer_create`
/// not destroyed before; no other thread may start a call on it during or
/// after this one.
#[no_mangle]
pub unsafe extern "C" fn framebus_producer_destroy(
    producer: *mut FramebusProducer,
) -> FramebusStatus {
    guard(|| {
        if producer.is_null() {
            return Ok(FramebusStatus::FRAMEBUS_OK);
        }
        {
            // SAFETY: a live handle (the caller's contract); the borrow
            // ends before the Box is rebuilt below.
            let handle = unsafe { &*producer };
            match lock(&handle.inner, "producer") {
                Ok(_) | Err(FfiError::Poisoned(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // SAFETY: from Box::into_raw in framebus_producer_create, freed only
        // here, once (the caller's contract); no call is inside it (checked
        // above). Dropping the Producer shuts the bus down.
        drop(unsafe { Box::from_raw(producer) });
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}
