//! The built-in fake camera: any size, any pixel format, frames generated
//! straight into the slot from the self-checking pattern of
//! `shm_layout::pattern`.

use shm_layout::pattern::Pattern;

use crate::source::{Captured, FrameSource, SlotWriter, SourceError};
use crate::sys;

/// A fake camera whose frame `seq` is [`Pattern`]'s frame `seq` in the
/// slot's pixel format, so a consumer can check every byte (`framebus
/// consume --algo verify`).
#[derive(Debug, Clone)]
pub struct FakeSource {
    width: u32,
    height: u32,
    pattern: Pattern,
}

impl FakeSource {
    /// A fake camera of `width` x `height` pixels.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pattern: Pattern::new(width),
        }
    }
}

impl FrameSource for FakeSource {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn fill(&mut self, seq: u64, slot: &mut SlotWriter<'_>) -> Result<Captured, SourceError> {
        let capture_ns = sys::monotonic_ns();
        // The bus decides the format: draw in it (the pattern is made once
        // per format, not per frame).
        if (self.pattern.format(), self.pattern.significant_bits())
            != (slot.format(), slot.significant_bits())
        {
            self.pattern = Pattern::with_format(self.width, slot.format(), slot.significant_bits());
        }
        let (stride, height) = (slot.stride() as usize, slot.height());
        self.pattern.fill(seq, slot.data(), stride, height);
        Ok(Captured { capture_ns })
    }
}
