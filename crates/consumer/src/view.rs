//! [`FrameView`]: what algorithm code sees of a frame — geometry, identity,
//! timestamps and the pixel bytes — whatever carried it (a pinned shared
//! memory slot, or a buffer read from a pipe in `framebus bench --transport
//! pipe`).

/// A borrowed gray frame: `height` rows of `width` pixels, `stride` bytes
/// apart, in `pixels`.
#[derive(Debug, Clone, Copy)]
pub struct FrameView<'a> {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in rows.
    pub height: u32,
    /// Bytes from one row to the next (>= width).
    pub stride: u32,
    /// The frame's sequence number.
    pub seq: u64,
    /// Capture time, `CLOCK_MONOTONIC` nanoseconds.
    pub capture_ns: u64,
    /// All pixel bytes (`stride * height`; bytes past `width` are padding).
    pub pixels: &'a [u8],
}

impl<'a> FrameView<'a> {
    /// Row `y` without its padding (`width` bytes).
    ///
    /// # Panics
    /// If `y >= height`.
    pub fn row(&self, y: u32) -> &'a [u8] {
        assert!(y < self.height, "row {y} out of {} rows", self.height);
        let start = y as usize * self.stride as usize;
        &self.pixels[start..start + self.width as usize]
    }
}
