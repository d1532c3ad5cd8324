//! The reader side of the debug BGR slot's seqlock: [`read_bgr`] copies the
//! producer's last colour frame out of shared memory (doc/CAMERA.md,
//! doc/PROTOCOL.md "Debug BGR slot seqlock").
//!
//! The BGR slot is never pinned, so the producer may rewrite it while it is
//! copied. The copy is made of relaxed `AtomicU64` loads (never a `&[u8]`
//! over memory another process writes), bracketed by two loads of the
//! seqlock; it is kept only if the seqlock was even and unchanged, which
//! proves no write overlapped it.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use shm_layout::header::FLAG_DEBUG_BGR;
use shm_layout::seqlock::{self, ReadOutcome};
use shm_layout::BusName;

use crate::attach::MappedBus;
use crate::error::ConsumerError;
use crate::sys;

/// Copies that may fail because the producer rewrote the slot meanwhile
/// before [`read_bgr`] gives up.
pub const BGR_MAX_ATTEMPTS: u32 = 64;

/// A copy of the debug BGR frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgrFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in rows.
    pub height: u32,
    /// Sequence number of the gray frame it is the colour of.
    pub seq: u64,
    /// Its capture time, `CLOCK_MONOTONIC` nanoseconds.
    pub capture_ns: u64,
    /// The bus instance it came from.
    pub instance_id: u64,
    /// Pixels, B, G, R per pixel, rows packed (`3 * width` bytes each).
    pub pixels: Vec<u8>,
}

impl BgrFrame {
    /// Row `y` (`3 * width` bytes).
    ///
    /// # Panics
    /// If `y >= height`.
    pub fn row(&self, y: u32) -> &[u8] {
        assert!(y < self.height, "row {y} out of {} rows", self.height);
        let len = 3 * self.width as usize;
        &self.pixels[y as usize * len..(y as usize + 1) * len]
    }

    /// Pixel (x, y) as `[b, g, r]`.
    ///
    /// # Panics
    /// If (x, y) is outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        assert!(x < self.width, "column {x} out of {}", self.width);
        let r = &self.row(y)[3 * x as usize..3 * x as usize + 3];
        [r[0], r[1], r[2]]
    }
}

/// Why the BGR frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BgrError {
    /// The bus could not be opened (missing, not running, invalid...).
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// The producer does not write the BGR slot.
    #[error("bus {bus:?} has no BGR frame: its producer runs without --debug-bgr; restart it with --debug-bgr (e.g. framebus produce --bus {bus} --source camera:0 --debug-bgr), or take the gray frame (leave out --bgr)")]
    NotEnabled {
        /// The bus name.
        bus: String,
    },
    /// The producer writes the BGR slot but has not written a frame yet.
    #[error("bus {bus:?}: no BGR frame written yet (waited {waited:?}); the producer has not captured a frame, try again")]
    NotWrittenYet {
        /// The bus name.
        bus: String,
        /// How long it waited.
        waited: Duration,
    },
    /// Every copy overlapped a rewrite.
    #[error("bus {bus:?}: the producer rewrites the BGR slot faster than it can be copied ({attempts} copies overlapped a rewrite); try again, or lower the producer's --fps")]
    TooFast {
        /// The bus name.
        bus: String,
        /// Copies tried.
        attempts: u32,
    },
    /// The producer stopped while the frame was being read.
    #[error("bus {bus:?}: the producer stopped before a whole BGR frame could be copied")]
    ProducerGone {
        /// The bus name.
        bus: String,
    },
}

/// Copies the debug BGR frame of `bus`: waits up to `timeout` for the first
/// one to be written, and returns a seqlock-consistent copy (one whole
/// frame, never parts of two). Needs a producer started with `--debug-bgr`
/// ([`BgrError::NotEnabled`] otherwise). Registers nothing on the bus.
pub fn read_bgr(bus: &BusName, timeout: Duration) -> Result<BgrFrame, BgrError> {
    let mapped = MappedBus::open_running(bus)?;
    let name = || bus.to_string();
    if mapped.header.flags & FLAG_DEBUG_BGR == 0 {
        return Err(BgrError::NotEnabled { bus: name() });
    }
    let layout = *mapped.control.layout();
    let bgr_len = layout.bgr_len();
    let words = bgr_len.div_ceil(8);
    // The pixel mapping starts at bgr_offset (page aligned, so 8-aligned).
    // It holds the BGR slot and then the gray slots, which start on a page
    // boundary at or after its end: the slot rounded up to 8 bytes is
    // inside the mapping. Checked anyway rather than trusted.
    if mapped.pixels.len() < words * 8 || mapped.pixels.as_ptr() as usize % 8 != 0 {
        return Err(ConsumerError::Os {
            what: format!("bus {bus}: the BGR slot does not fit its mapping"),
            source: std::io::Error::other("the mapping is shorter than the BGR slot"),
        }
        .into());
    }
    // SAFETY: the first `words` 8-byte words of the pixel mapping are inside
    // it and 8-aligned (checked above), and `mapped` keeps the mapping alive
    // as long as `slot` is used. The producer writes these words only with
    // atomic stores and nobody forms a plain reference to them, so relaxed
    // loads through this shared `&[AtomicU64]` race with no non-atomic
    // access. A relaxed 8-byte atomic load is a plain load on
    // x86-64/aarch64 and is documented as sound on read-only memory
    // (std::sync::atomic, "Atomic accesses to read-only memory"), and the
    // reader only loads.
    let slot =
        unsafe { std::slice::from_raw_parts(mapped.pixels.as_ptr() as *const AtomicU64, words) };
    let lock = mapped.control.bgr_seqlock();
    let mut copy = vec![0u64; words];
    let start = sys::monotonic_ns();
    let deadline = start.saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
    let mut failed = 0u32;
    let mut last_check = start;
    loop {
        let now = sys::monotonic_ns();
        // The seqlock's reader protocol (shm_layout::seqlock): an Acquire
        // load of the seqlock, the stamps and the words (Relaxed),
        // fence(Acquire), the seqlock again.
        let empty = match seqlock::try_read(lock, slot, &mut copy) {
            ReadOutcome::Copied {
                frame_seq,
                capture_ns,
            } => {
                if mapped.truncated() {
                    // The copy came (in part) from zero pages.
                    return Err(ConsumerError::BusTruncated { bus: name() }.into());
                }
                return Ok(pack(
                    &copy,
                    &layout,
                    frame_seq,
                    capture_ns,
                    mapped.header.instance_id,
                ));
            }
            ReadOutcome::Overlapped => {
                failed += 1;
                if failed >= BGR_MAX_ATTEMPTS {
                    return Err(BgrError::TooFast {
                        bus: name(),
                        attempts: failed,
                    });
                }
                continue;
            }
            ReadOutcome::Empty => true,
            ReadOutcome::Writing => false,
        };
        // Nothing written yet, or a write in progress: wait, watching the
        // producer (a dead one never finishes its write).
        if now.saturating_sub(last_check) >= 50_000_000 {
            last_check = now;
            if !mapped.producer_running() {
                return Err(BgrError::ProducerGone { bus: name() });
            }
        }
        if now >= deadline {
            return Err(if empty {
                BgrError::NotWrittenYet {
                    bus: name(),
                    waited: timeout,
                }
            } else {
                BgrError::TooFast {
                    bus: name(),
                    attempts: failed,
                }
            });
        }
        if empty {
            std::thread::sleep(Duration::from_millis(2));
        } else {
            std::thread::yield_now();
        }
    }
}

/// The accepted copy, rows without their padding.
fn pack(
    copy: &[u64],
    layout: &shm_layout::Layout,
    seq: u64,
    capture_ns: u64,
    instance_id: u64,
) -> BgrFrame {
    let bytes: Vec<u8> = copy.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let row_len = 3 * layout.width as usize;
    let stride = layout.bgr_stride as usize;
    let mut pixels = Vec::with_capacity(row_len * layout.height as usize);
    for y in 0..layout.height as usize {
        pixels.extend_from_slice(&bytes[y * stride..y * stride + row_len]);
    }
    BgrFrame {
        width: layout.width,
        height: layout.height,
        seq,
        capture_ns,
        instance_id,
        pixels,
    }
}
