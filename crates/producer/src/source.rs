//! Where frames come from: the [`FrameSource`] trait the producer pulls from.

/// A gray slot the producer holds for writing: `height` rows of `width`
/// pixels, `stride` bytes apart. The source writes the frame straight into
/// it (no intermediate buffer).
pub struct SlotWriter<'a> {
    pub(crate) data: &'a mut [u8],
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) stride: u32,
}

impl SlotWriter<'_> {
    /// The slot's bytes (`stride * height`).
    pub fn data(&mut self) -> &mut [u8] {
        self.data
    }
    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Frame height in rows.
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Bytes from one row to the next.
    pub fn stride(&self) -> u32 {
        self.stride
    }
}

/// What a source reports about a frame it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    /// When the frame was captured, `CLOCK_MONOTONIC` nanoseconds.
    pub capture_ns: u64,
}

/// Why a source produced no frame.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source has no more frames (end of a file, `--frames` reached).
    #[error("the frame source ended")]
    Ended,
    /// The source failed; the message says how and what to do.
    #[error("frame source failed: {0}")]
    Failed(String),
}

/// A camera, a file, or a generator of frames.
pub trait FrameSource {
    /// Frame width and height in pixels; fixed for the source's life.
    fn size(&self) -> (u32, u32);

    /// The source's own frame rate, if it has one (a camera, a file), in
    /// frames per second. The producer paces to it unless told otherwise.
    fn native_fps(&self) -> Option<f64> {
        None
    }

    /// Writes frame `seq` into `slot`. May block until the frame exists
    /// (a camera). Called only with a slot of exactly [`FrameSource::size`].
    fn fill(&mut self, seq: u64, slot: &mut SlotWriter<'_>) -> Result<Captured, SourceError>;
}
