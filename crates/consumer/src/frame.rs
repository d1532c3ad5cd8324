//! [`Frame`]: a pinned frame, read zero-copy from its slot, with typed views
//! by pixel format. Dropping it releases the pin.

use std::marker::PhantomData;
use std::sync::Arc;

use shm_layout::pin;
use shm_layout::sync::Ordering;
use shm_layout::PixelFormat;

use crate::attach::Attachment;
use crate::attach::BusInfo;
use crate::view::{FormatError, FrameView, U16Rows};

/// A pinned frame. Its pixels are the slot itself: stable, byte for byte,
/// until the frame is dropped (the producer never writes a pinned slot).
///
/// `Frame<'c>` from [`crate::Consumer::next_frame`] borrows the consumer, so
/// the borrow checker allows one at a time; `Frame<'static>` from
/// [`crate::Consumer::next_frame_owned`] may be kept while taking more, up
/// to the bus's pins-per-consumer budget.
pub struct Frame<'c> {
    att: Arc<Attachment>,
    slot: u32,
    seq: u64,
    capture_ns: u64,
    publish_ns: u64,
    pinned_ns: u64,
    ptr: *const u8,
    len: usize,
    _borrow: PhantomData<&'c mut ()>,
}

// SAFETY: the pixels are read-only shared memory kept mapped by `att`; the
// pin is released through atomics, from any thread.
unsafe impl Send for Frame<'_> {}
// SAFETY: `&Frame` only reads immutable pinned bytes and plain fields.
unsafe impl Sync for Frame<'_> {}

impl<'c> Frame<'c> {
    /// Wraps a slot that `att`'s bit has pinned.
    pub(crate) fn new(att: Arc<Attachment>, slot: u32, seq: u64, pinned_ns: u64) -> Self {
        let entry = &att.control.slots()[slot as usize];
        // Relaxed: ordered after the producer's writes by the pin's Acquire.
        let capture_ns = entry.capture_ns.load(Ordering::Relaxed);
        let publish_ns = entry.publish_ns.load(Ordering::Relaxed);
        let ptr = att.gray_slot_ptr(slot);
        let len = att.layout().frame_len();
        att.held.fetch_add(1, Ordering::Relaxed);
        Self {
            att,
            slot,
            seq,
            capture_ns,
            publish_ns,
            pinned_ns,
            ptr,
            len,
            _borrow: PhantomData,
        }
    }

    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.att.layout().width
    }

    /// Frame height in rows.
    pub fn height(&self) -> u32 {
        self.att.layout().height
    }

    /// Bytes from the start of one row to the next (>= width * bytes per
    /// pixel).
    pub fn stride(&self) -> u32 {
        self.att.layout().stride
    }

    /// The bus's pixel format: gray8, gray16, bgr8 or rgb8.
    pub fn format(&self) -> PixelFormat {
        self.att.layout().format
    }

    /// Significant bits per value (8 for 8-bit formats; 1..=16 for gray16,
    /// e.g. 12 for a mono12 camera, whose values are 0..=4095).
    pub fn significant_bits(&self) -> u8 {
        self.att.layout().significant_bits
    }

    /// The frame's sequence number (1, 2, ... per producer instance).
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

    /// Nanoseconds from publish to this consumer's pin.
    pub fn latency_ns(&self) -> u64 {
        self.pinned_ns.saturating_sub(self.publish_ns)
    }

    /// Whether the bus object was truncated under this frame since it was
    /// pinned (another process shrank it): its pixels may then be zero
    /// pages, not the frame. Check it after reading pixels whose content
    /// matters (`framebus snapshot` does); the consumer's next call reports
    /// `BusTruncated`.
    pub fn truncated(&self) -> bool {
        self.att.truncated(false)
    }

    /// The slot index the frame lives in.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The instance id of the bus the frame came from.
    pub fn instance_id(&self) -> u64 {
        self.att.header.instance_id
    }

    /// The bus instance this frame came from (geometry, producer, entry).
    pub fn bus(&self) -> BusInfo {
        self.att.bus_info()
    }

    /// All pixel bytes, `stride * height`, rows `stride` apart (bytes past
    /// `width` in a row are padding). Zero-copy: this is the shared slot.
    pub fn pixels(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is gray slot `slot` inside the read-only pixel
        // mapping that `att` keeps alive; our pin bit is set on the slot, so
        // the producer does not write it until `drop` releases the pin
        // (doc/PROTOCOL.md); no `&mut` to it exists anywhere in this process.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Row `y`'s bytes without padding (`width * bytes_per_pixel` bytes:
    /// `width` for gray8).
    ///
    /// # Panics
    /// If `y >= height`.
    pub fn row(&self, y: u32) -> &[u8] {
        self.view().row(y)
    }

    /// A gray16 frame's values, zero-copy: the alignment is checked once
    /// here, then [`U16Rows::row`] hands out `&[u16]` rows. An error if the
    /// bus is not gray16.
    pub fn as_u16(&self) -> Result<U16Rows<'_>, FormatError> {
        self.view().as_u16()
    }

    /// The rows of a gray16 frame, top to bottom, as `&[u16]` of `width`
    /// values (see [`Frame::as_u16`]).
    pub fn rows_u16(&self) -> Result<impl Iterator<Item = &[u16]> + '_, FormatError> {
        Ok(self.as_u16()?.iter())
    }

    /// Row `y` of a bgr8 or rgb8 frame as pixel triples in the frame's
    /// byte order, zero-copy. An error for a gray bus.
    ///
    /// # Panics
    /// If `y >= height`.
    pub fn row_triples(&self, y: u32) -> Result<&[[u8; 3]], FormatError> {
        self.view().row_triples(y)
    }

    /// A copy of the frame as packed R, G, B bytes, whatever its format
    /// (see [`FrameView::to_rgb`]).
    pub fn to_rgb(&self) -> Vec<u8> {
        self.view().to_rgb()
    }

    /// The frame as algorithm code sees it (zero-copy: the pixels are the
    /// pinned slot, borrowed from this frame).
    pub fn view(&self) -> FrameView<'_> {
        FrameView {
            width: self.width(),
            height: self.height(),
            stride: self.stride(),
            format: self.format(),
            significant_bits: self.significant_bits(),
            seq: self.seq,
            capture_ns: self.capture_ns,
            pixels: self.pixels(),
        }
    }

    /// Keeps the pin beyond the consumer's borrow, counting against the
    /// bus's pins-per-consumer budget.
    pub fn into_owned(self) -> Frame<'static> {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so moving `att` out exactly once
        // transfers the pin and the Arc to the new value.
        let att = unsafe { std::ptr::read(&me.att) };
        Frame {
            att,
            slot: me.slot,
            seq: me.seq,
            capture_ns: me.capture_ns,
            publish_ns: me.publish_ns,
            pinned_ns: me.pinned_ns,
            ptr: me.ptr,
            len: me.len,
            _borrow: PhantomData,
        }
    }
}

impl std::fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("seq", &self.seq)
            .field("slot", &self.slot)
            .field("width", &self.width())
            .field("height", &self.height())
            .field("stride", &self.stride())
            .field("format", &self.format())
            .finish()
    }
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        // In a forked child the pin is the parent's: leave it alone.
        if !self.att.in_owner_process() {
            return;
        }
        pin::release(&self.att.control.slots()[self.slot as usize], self.att.bit);
        self.att.held.fetch_sub(1, Ordering::Relaxed);
    }
}
