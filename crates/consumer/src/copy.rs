//! [`copy_latest_frame`]: the newest frame of a bus, copied without a
//! consumer entry (doc/PROTOCOL.md §19, `shm_layout::unpinned`). What
//! `framebus snapshot` falls back to when every consumer entry is taken.
//!
//! Nothing is written to the bus: no entry is claimed, no pin bit is set,
//! no FIFO is made. The slot is copied with relaxed `AtomicU64` loads
//! (never a `&[u8]` over memory the producer may be rewriting) between two
//! checks of the slot's `seq`; a copy that overlapped a rewrite is
//! discarded and taken again. A registered [`crate::Consumer`] is still
//! the way to read frames: it reads them in place, without a copy, and is
//! woken by the producer.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use shm_layout::unpinned::{self, CopyOutcome};
use shm_layout::{BusName, PixelFormat};

use crate::attach::MappedBus;
use crate::error::ConsumerError;
use crate::sys;
use crate::view::FrameView;

/// Copies that may fail because the producer rewrote the slot meanwhile
/// before [`copy_latest_frame`] gives up.
pub const COPY_MAX_ATTEMPTS: u32 = 64;

/// A private copy of one whole frame of a bus (its slot's bytes, row
/// padding included), from [`copy_latest_frame`].
#[derive(Clone, PartialEq, Eq)]
pub struct FrameCopy {
    width: u32,
    height: u32,
    stride: u32,
    format: PixelFormat,
    significant_bits: u8,
    seq: u64,
    capture_ns: u64,
    publish_ns: u64,
    slot: u32,
    instance_id: u64,
    /// `stride * height` bytes, rounded up to whole words: 8-byte aligned,
    /// so a gray16 frame can be viewed as `u16`s.
    words: Vec<u64>,
}

impl FrameCopy {
    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Frame height in rows.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes from one row to the next in [`FrameCopy::pixels`].
    pub fn stride(&self) -> u32 {
        self.stride
    }

    /// The bus's pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Significant bits per value (8 for 8-bit formats; 1..=16 for gray16).
    pub fn significant_bits(&self) -> u8 {
        self.significant_bits
    }

    /// The frame's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Capture time, `CLOCK_MONOTONIC` nanoseconds.
    pub fn capture_ns(&self) -> u64 {
        self.capture_ns
    }

    /// Publish time, `CLOCK_MONOTONIC` nanoseconds.
    pub fn publish_ns(&self) -> u64 {
        self.publish_ns
    }

    /// The slot the frame was copied from.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The bus instance it came from.
    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// The pixel bytes: `stride * height`, rows `stride` bytes apart (bytes
    /// past `width * bytes_per_pixel` in a row are padding).
    pub fn pixels(&self) -> &[u8] {
        let len = self.stride as usize * self.height as usize;
        let bytes = self.words.len() * 8;
        assert!(len <= bytes, "a frame copy shorter than its frame");
        // SAFETY: `words` is a live allocation of `bytes` initialised bytes
        // (every u64 is 8 initialised bytes), `len <= bytes`, u8 has no
        // alignment requirement, and the slice borrows `self`, so the
        // buffer outlives it and is not mutated meanwhile.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), len) }
    }

    /// The frame as algorithm code sees it (rows, typed views).
    pub fn view(&self) -> FrameView<'_> {
        FrameView {
            width: self.width,
            height: self.height,
            stride: self.stride,
            format: self.format,
            significant_bits: self.significant_bits,
            seq: self.seq,
            capture_ns: self.capture_ns,
            pixels: self.pixels(),
        }
    }
}

impl std::fmt::Debug for FrameCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCopy")
            .field("seq", &self.seq)
            .field("slot", &self.slot)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("stride", &self.stride)
            .field("format", &self.format)
            .finish()
    }
}

/// Why [`copy_latest_frame`] got no frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// The bus could not be opened (missing, not running, untrusted,
    /// invalid, truncated...).
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// The producer runs but published no frame within the timeout.
    #[error("bus {bus:?} published no frame within {waited:?}; is its producer stalled? (framebus inspect --bus {bus})")]
    NoFrameYet {
        /// The bus name.
        bus: String,
        /// How long it waited.
        waited: Duration,
    },
    /// Every copy overlapped a rewrite of its slot.
    #[error("bus {bus:?}: the producer rewrote the newest frame's slot during each of {attempts} copies; try again, or lower the producer's --fps")]
    TooFast {
        /// The bus name.
        bus: String,
        /// Copies tried.
        attempts: u32,
    },
    /// The producer stopped while waiting for a frame.
    #[error("bus {bus:?}: the producer stopped before a frame could be copied")]
    ProducerGone {
        /// The bus name.
        bus: String,
    },
    /// The shared memory names a slot that does not exist (another process
    /// wrote the bus's header).
    #[error("bus {bus:?}: its newest frame names slot {slot}, which does not exist; another process is writing the bus's memory")]
    BadSlot {
        /// The bus name.
        bus: String,
        /// The slot index read.
        slot: u32,
    },
}

/// Copies the newest frame of `bus` without registering: no consumer
/// entry, no pin, nothing written to the bus, so it works when every entry
/// is taken. Waits up to `timeout` for a first frame; a copy that
/// overlapped a rewrite of its slot is taken again, up to
/// [`COPY_MAX_ATTEMPTS`] times ([`CopyError::TooFast`]). The result is one
/// whole frame, never parts of two (doc/PROTOCOL.md §19). Trusts the
/// bus's owner as [`crate::Consumer`] does by default (this user and
/// `FRAMEBUS_TRUST_OWNERS`).
///
/// It costs a copy of the frame (`stride * height` bytes) and a mapping
/// of the bus per call: register a [`crate::Consumer`] to read frames in
/// place, and use this only when no entry is free.
pub fn copy_latest_frame(bus: &BusName, timeout: Duration) -> Result<FrameCopy, CopyError> {
    let mapped = MappedBus::open_running(bus)?;
    let name = || bus.to_string();
    let layout = *mapped.control.layout();
    let frame_len = layout.frame_len();
    let words_per_slot = frame_len.div_ceil(8);
    // Every slot starts on a page of the pixel mapping (gray_offset and
    // slot_pitch are page multiples, validated) and the slot pitch is
    // >= stride * height and a page multiple, so the frame rounded up to
    // whole words is inside its slot. Checked anyway rather than trusted.
    let map_len = mapped.pixels.len();
    let slot_words = |slot: u32| -> Option<&[AtomicU64]> {
        if slot >= layout.slot_count {
            return None;
        }
        let ptr = MappedBus::gray_slot_ptr(&mapped.pixels, &layout, slot);
        let offset = ptr as usize - mapped.pixels.as_ptr() as usize;
        if offset.checked_add(words_per_slot * 8)? > map_len || ptr as usize % 8 != 0 {
            return None;
        }
        // SAFETY: the `words_per_slot` 8-byte words at `ptr` are inside the
        // pixel mapping and 8-aligned (checked above), and `mapped` keeps
        // the mapping alive for as long as the slice is used (this
        // function). The reader forms no plain reference to these bytes and
        // only loads them atomically, so it races with no non-atomic access
        // of its own process; a relaxed 8-byte atomic load is a plain load
        // on x86-64/aarch64 and is documented as sound on read-only memory
        // (std::sync::atomic, "Atomic accesses to read-only memory"). A
        // load that races with the producer's rewrite returns some bytes,
        // which the seq check then discards.
        Some(unsafe { std::slice::from_raw_parts(ptr.cast::<AtomicU64>(), words_per_slot) })
    };
    let mut copy = vec![0u64; words_per_slot];
    let start = sys::monotonic_ns();
    let deadline = start.saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
    let mut failed = 0u32;
    let mut last_check = start;
    loop {
        // One attempt (shm_layout::unpinned): `latest` (Acquire), the
        // slot's seq, the stamps and the words (Relaxed), fence(Acquire),
        // the seq again.
        match unpinned::try_copy(
            &mapped.control.dynamic().latest,
            mapped.control.slots(),
            slot_words,
            &mut copy,
        ) {
            CopyOutcome::Copied {
                seq,
                slot,
                capture_ns,
                publish_ns,
            } => {
                if mapped.truncated() {
                    // The copy came (in part) from zero pages.
                    return Err(ConsumerError::BusTruncated { bus: name() }.into());
                }
                return Ok(FrameCopy {
                    width: layout.width,
                    height: layout.height,
                    stride: layout.stride,
                    format: layout.format,
                    significant_bits: layout.significant_bits,
                    seq,
                    capture_ns,
                    publish_ns,
                    slot,
                    instance_id: mapped.header.instance_id,
                    words: copy,
                });
            }
            CopyOutcome::Rewritten => {
                failed += 1;
                if failed >= COPY_MAX_ATTEMPTS {
                    return Err(CopyError::TooFast {
                        bus: name(),
                        attempts: failed,
                    });
                }
                std::thread::yield_now();
            }
            CopyOutcome::BadSlot { slot } => {
                return Err(CopyError::BadSlot { bus: name(), slot });
            }
            CopyOutcome::Empty => {
                // No frame yet: wait, watching the producer.
                let now = sys::monotonic_ns();
                if now.saturating_sub(last_check) >= 50_000_000 {
                    last_check = now;
                    if !mapped.producer_running() {
                        return Err(CopyError::ProducerGone { bus: name() });
                    }
                }
                if now >= deadline {
                    return Err(CopyError::NoFrameYet {
                        bus: name(),
                        waited: timeout,
                    });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}
