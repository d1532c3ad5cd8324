//! The consumer handle: attach, wait for / pin the newest frame, bus info
//! and statistics, leave. The frames it hands out are in `frame.rs`.

use std::ffi::{c_char, CStr};
use std::sync::Mutex;
use std::time::Duration;

use framebus_consumer::{Consumer, ConsumerConfig};
use shm_layout::BusName;

use crate::error::{
    guard, lock, non_null, options_arg, out_arg, write_out, FfiError, FramebusStatus, SizedOptions,
};
use crate::frame::{frame_handle, FramebusFrame};

/// A consumer of one bus: its registration (consumer entry, trigger FIFO or pipe)
/// and the last frame it handed out. Created by
/// `framebus_consumer_attach`, freed by `framebus_consumer_leave`.
///
/// Threads: may be used from any thread, one call at a time; a call while
/// another thread is inside a call on it fails with
/// `FRAMEBUS_ERROR_CONCURRENT_USE`.
pub struct FramebusConsumer {
    inner: Mutex<Consumer>,
}

/// Options of `framebus_consumer_attach`. Fill it with
/// `framebus_consumer_options_init` first (which sets `size`), then change
/// fields: later ABI minors may append fields, and `size` tells the library
/// which ones the caller knows.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FramebusConsumerOptions {
    /// `sizeof(framebus_consumer_options)` as the caller compiled it.
    pub size: u32,
    /// A short name `framebus inspect` shows (16 bytes kept, UTF-8);
    /// NULL = "ffi". Copied during the call.
    pub name: *const c_char,
    /// Frame rate limit in frames per second (the consumer then takes the
    /// newest frame at most this often); 0 = every frame it keeps up with.
    pub max_fps: f64,
}

/// Geometry and identity of a bus instance.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramebusBusInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in rows.
    pub height: u32,
    /// Bytes from the start of one row to the next (>= width * bytes per
    /// pixel).
    pub stride: u32,
    /// Pixel format, a `framebus_format` value.
    pub format: u32,
    /// Significant bits of each value: 8 for the 8-bit formats; 10, 12 or
    /// 16 for gray16 (a mono10/12 camera's values are 0..2^bits - 1).
    pub significant_bits: u32,
    /// Frame slots of the bus.
    pub slot_count: u32,
    /// Consumer entries of the bus.
    pub max_consumers: u32,
    /// Frames one consumer may hold at once.
    pub pins_per_consumer: u32,
    /// The consumer's entry index (its pin bit); `UINT32_MAX` for a producer.
    pub entry: u32,
    /// The producer's process id.
    pub producer_pid: u32,
    /// The producer's instance id (new at every start of a producer).
    pub instance_id: u64,
}

/// Consumer statistics (`framebus_consumer_get_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramebusConsumerStats {
    /// Frames handed out so far.
    pub frames: u64,
    /// Times the consumer attached again after losing its producer.
    pub reattached: u64,
    /// Triggers the producer dropped because this consumer's pipe was full
    /// (current attachment).
    pub coalesced: u64,
    /// Frames published but never taken: over the frames handed out, the
    /// sum of the sequence gaps before each (a consumer slower than the
    /// producer skips frames; it always gets the newest).
    pub skipped: u64,
}

/// The bus name argument, checked.
pub(crate) fn bus_arg(bus: *const c_char) -> Result<BusName, FfiError> {
    let bus = non_null(bus, "bus")?;
    // SAFETY: the caller passes a NUL-terminated string (the header's
    // contract for `bus`), checked non-NULL above; it is only read here.
    let text = unsafe { CStr::from_ptr(bus) };
    let text = text
        .to_str()
        .map_err(|_| FfiError::InvalidArgument("bus name is not UTF-8".into()))?;
    BusName::new(text).map_err(|e| FfiError::InvalidArgument(e.to_string()))
}

/// A timeout in milliseconds: negative = none (wait forever).
pub(crate) fn timeout_arg(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

// `options_arg` reads `size` at offset 0 as a u32.
const _: () = assert!(std::mem::offset_of!(FramebusConsumerOptions, size) == 0);

impl SizedOptions for FramebusConsumerOptions {
    const C_NAME: &'static str = "framebus_consumer_options";

    fn defaults() -> Self {
        Self {
            size: std::mem::size_of::<Self>() as u32,
            name: std::ptr::null(),
            max_fps: 0.0,
        }
    }
}

/// Fills `*options` with the defaults (name "ffi", no rate limit) and sets
/// its `size`. Returns `FRAMEBUS_ERROR_INVALID_ARGUMENT` if `options` is
/// NULL.
///
/// # Safety
/// `options` must point to writable memory for one
/// `framebus_consumer_options`.
#[no_mangle]
pub unsafe extern "C" fn framebus_consumer_options_init(
    options: *mut FramebusConsumerOptions,
) -> FramebusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `options`.
        unsafe { write_out(options, "options", FramebusConsumerOptions::defaults())? };
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Attaches to the bus `bus`: validates its header, claims a consumer entry
/// and creates this consumer's trigger FIFO (a named pipe on Windows). With `timeout_ms` 0 it fails
/// at once if there is no running producer; with `timeout_ms > 0` it waits
/// that long for one (and for a free entry); negative = wait forever.
/// `options` may be NULL (defaults). On success `*out` is a new consumer
/// handle (free it with `framebus_consumer_leave`); on failure `*out` is
/// NULL and the status says why (`FRAMEBUS_ERROR_BUS_NOT_FOUND`,
/// `FRAMEBUS_ERROR_LAYOUT_VERSION`, `FRAMEBUS_ERROR_BUS_FULL`, ...).
///
/// # Safety
/// `bus` must be a NUL-terminated string; `options` NULL or a valid
/// `framebus_consumer_options` whose `size` is set (by
/// `framebus_consumer_options_init`), `name` NULL or NUL-terminated; `out`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_consumer_attach(
    bus: *const c_char,
    options: *const FramebusConsumerOptions,
    timeout_ms: i64,
    out: *mut *mut FramebusConsumer,
) -> FramebusStatus {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: `out` is non-NULL and writable (the caller's contract):
        // NULL until a consumer exists.
        unsafe { out.write(std::ptr::null_mut()) };
        let bus = bus_arg(bus)?;
        // SAFETY: `options` is NULL or the caller's struct, as
        // `options_arg` requires (this function's contract).
        let options = unsafe { options_arg(options) }?;
        let name = if options.name.is_null() {
            String::from("ffi")
        } else {
            // SAFETY: a non-NULL `name` is NUL-terminated (the contract).
            unsafe { CStr::from_ptr(options.name) }
                .to_string_lossy()
                .into_owned()
        };
        if !(options.max_fps >= 0.0 && options.max_fps.is_finite()) {
            return Err(FfiError::InvalidArgument(format!(
                "options.max_fps is {}; use 0 (no limit) or a positive rate",
                options.max_fps
            )));
        }
        let config = ConsumerConfig {
            name,
            max_fps: (options.max_fps > 0.0).then_some(options.max_fps),
            ..ConsumerConfig::new(bus)
        };
        let consumer = match timeout_arg(timeout_ms) {
            Some(Duration::ZERO) => Consumer::attach(config)?,
            Some(t) => Consumer::attach_wait(config, t)?,
            // "Forever": 136 years, so the deadline arithmetic cannot overflow.
            None => Consumer::attach_wait(config, Duration::from_secs(u64::from(u32::MAX)))?,
        };
        let handle = Box::new(FramebusConsumer {
            inner: Mutex::new(consumer),
        });
        // SAFETY: checked and writable above.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Shared body of `next_frame` and `pin_newest`.
///
/// # Safety
/// `consumer` NULL or a live handle; `out` writable.
unsafe fn take(
    consumer: *mut FramebusConsumer,
    timeout: Option<Duration>,
    none: FramebusStatus,
    out: *mut *mut FramebusFrame,
) -> Result<FramebusStatus, FfiError> {
    let out = out_arg(out, "out")?;
    // SAFETY: `out` is non-NULL and writable (the caller's contract).
    unsafe { out.write(std::ptr::null_mut()) };
    let consumer = non_null(consumer, "consumer")?;
    // SAFETY: a non-NULL consumer is a live handle from
    // framebus_consumer_attach (the caller's contract); only `&` is taken,
    // and the Mutex serialises use of the Consumer inside.
    let handle = unsafe { &*consumer };
    let mut c = lock(&handle.inner, "consumer")?;
    match c.next_frame_owned(timeout)? {
        Some(frame) => {
            // SAFETY: as above.
            unsafe { out.write(frame_handle(frame)) };
            Ok(FramebusStatus::FRAMEBUS_OK)
        }
        None => Ok(none),
    }
}

/// Waits up to `timeout_ms` (negative = forever) for a frame newer than the
/// last one this consumer took, pins the newest and returns it in `*out`.
/// Returns `FRAMEBUS_TIMEOUT` (and `*out = NULL`) if none came in time:
/// not an error. If the producer stops or dies meanwhile, the consumer
/// waits for the next producer of the bus and attaches to it by itself.
/// Holding more frames than the bus's pins-per-consumer fails with
/// `FRAMEBUS_ERROR_PIN_BUDGET`: release one first.
///
/// # Safety
/// `consumer` must be a live handle (not left), `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_consumer_next_frame(
    consumer: *mut FramebusConsumer,
    timeout_ms: i64,
    out: *mut *mut FramebusFrame,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    guard(|| unsafe {
        take(
            consumer,
            timeout_arg(timeout_ms),
            FramebusStatus::FRAMEBUS_TIMEOUT,
            out,
        )
    })
}

/// Pins the newest frame without waiting, if it is newer than the last one
/// this consumer took; else returns `FRAMEBUS_NO_FRAME` with `*out = NULL`.
///
/// # Safety
/// `consumer` must be a live handle (not left), `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_consumer_pin_newest(
    consumer: *mut FramebusConsumer,
    out: *mut *mut FramebusFrame,
) -> FramebusStatus {
    // SAFETY: the caller's contract, passed on.
    guard(|| unsafe {
        take(
            consumer,
            Some(Duration::ZERO),
            FramebusStatus::FRAMEBUS_NO_FRAME,
            out,
        )
    })
}

/// Geometry and identity of the bus the consumer is attached to. Fails
/// with `FRAMEBUS_ERROR_NOT_RUNNING` while the consumer waits for a new
/// producer (after its producer went away).
///
/// # Safety
/// `consumer` must be a live handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_consumer_get_bus_info(
    consumer: *mut FramebusConsumer,
    out: *mut FramebusBusInfo,
) -> FramebusStatus {
    guard(|| {
        let consumer = non_null(consumer, "consumer")?;
        // SAFETY: a live handle (the caller's contract); `&` only.
        let handle = unsafe { &*consumer };
        let c = lock(&handle.inner, "consumer")?;
        let info = c.info().ok_or(FfiError::Detached)?;
        let l = info.layout;
        let value = FramebusBusInfo {
            width: l.width,
            height: l.height,
            stride: l.stride,
            format: l.format.code(),
            significant_bits: u32::from(l.significant_bits),
            slot_count: l.slot_count,
            max_consumers: l.max_consumers,
            pins_per_consumer: l.pins_per_consumer,
            entry: info.entry,
            producer_pid: info.producer_pid,
            instance_id: info.instance_id,
        };
        // SAFETY: the caller's contract for `out`.
        unsafe { write_out(out, "out", value)? };
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// The consumer's counters.
///
/// # Safety
/// `consumer` must be a live handle, `out` writable.
#[no_mangle]
pub unsafe extern "C" fn framebus_consumer_get_stats(
    consumer: *mut FramebusConsumer,
    out: *mut FramebusConsumerStats,
) -> FramebusStatus {
    guard(|| {
        let consumer = non_null(consumer, "consumer")?;
        // SAFETY: a live handle (the caller's contract); `&` only.
        let handle = unsafe { &*consumer };
        let c = lock(&handle.inner, "consumer")?;
        let value = FramebusConsumerStats {
            frames: c.frames(),
            reattached: c.reattached(),
            coalesced: c.coalesced(),
            skipped: c.skipped(),
        };
        // SAFETY: the caller's contract for `out`.
        unsafe { write_out(out, "out", value)? };
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}

/// Leaves the bus and frees the handle: frees the consumer entry and removes
/// the trigger FIFO or pipe (once the last of its frames is released; frames still
/// held stay valid). NULL is accepted (nothing to do). Fails with
/// `FRAMEBUS_ERROR_CONCURRENT_USE`, freeing nothing, if another thread is
/// inside a call on it. The handle must not be used afterwards.
///
/// # Safety
/// `consumer` must be NULL or a live handle from `framebus_consumer_attach`
/// not left before; no other thread may start a call on it during or after
/// this one.
#[no_mangle]
pub unsafe extern "C" fn framebus_consumer_leave(
    consumer: *mut FramebusConsumer,
) -> FramebusStatus {
    guard(|| {
        if consumer.is_null() {
            return Ok(FramebusStatus::FRAMEBUS_OK);
        }
        {
            // SAFETY: a live handle (the caller's contract); `&` only, and
            // the borrow ends before the Box is rebuilt below.
            let handle = unsafe { &*consumer };
            match lock(&handle.inner, "consumer") {
                Ok(_) | Err(FfiError::Poisoned(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // SAFETY: the pointer came from Box::into_raw in
        // framebus_consumer_attach and is freed only here, once (the
        // caller's contract); no call is inside it (checked above).
        drop(unsafe { Box::from_raw(consumer) });
        Ok(FramebusStatus::FRAMEBUS_OK)
    })
}
