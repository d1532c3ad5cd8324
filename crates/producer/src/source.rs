//! Where frames come from: the [`FrameSource`] trait the producer pulls from,
//! and [`SourceSpec`], the `--source` a user names.

use std::path::PathBuf;

use shm_layout::PixelFormat;

use crate::bgr::BgrWriter;
pub use crate::error::SourceError;

/// A frame slot the producer holds for writing: `height` rows of `width`
/// pixels of [`SlotWriter::format`], `stride` bytes apart. The source
/// writes the frame straight into it (no intermediate buffer).
pub struct SlotWriter<'a> {
    pub(crate) data: &'a mut [u8],
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) stride: u32,
    pub(crate) format: PixelFormat,
    pub(crate) significant_bits: u8,
    /// The debug BGR slot, only when the bus was created with
    /// `ProducerConfig::debug_bgr`.
    pub(crate) bgr: Option<BgrWriter<'a>>,
}

impl<'a> SlotWriter<'a> {
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
    /// Bytes from one row to the next (>= width * bytes per pixel).
    pub fn stride(&self) -> u32 {
        self.stride
    }
    /// The bus's pixel format: what the source must write (gray8: one
    /// byte a pixel; gray16: a little-endian u16; bgr8/rgb8: three bytes).
    pub fn format(&self) -> PixelFormat {
        self.format
    }
    /// Significant bits per value (gray16: 1..=16, values not shifted up;
    /// 8 for the 8-bit formats).
    pub fn significant_bits(&self) -> u8 {
        self.significant_bits
    }
    /// Bytes of one row without padding (`width * bytes_per_pixel`).
    pub fn row_bytes(&self) -> usize {
        self.width as usize * self.format.bytes_per_pixel() as usize
    }
    /// The debug BGR slot, if the bus has one (the producer was started
    /// with `--debug-bgr`): a source that has the colour frame copies it in
    /// with [`BgrWriter::write`]. `None` otherwise, and then the BGR slot
    /// costs nothing.
    pub fn debug_bgr(&mut self) -> Option<&mut BgrWriter<'a>> {
        self.bgr.as_mut()
    }
}

/// What a source reports about a frame it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    /// When the frame was captured, `CLOCK_MONOTONIC` nanoseconds.
    pub capture_ns: u64,
}

/// Where a source's time went, summed over the frames it delivered (zero
/// for what a source does not measure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceTimings {
    /// Frames these totals cover.
    pub frames: u64,
    /// Nanoseconds spent waiting for and decoding frames (camera read,
    /// video decode).
    pub decode_ns_total: u64,
    /// Nanoseconds spent converting to gray straight into the slot.
    pub convert_ns_total: u64,
    /// Nanoseconds spent copying colour frames into the debug BGR slot.
    pub bgr_ns_total: u64,
}

/// A camera, a file, or a generator of frames.
pub trait FrameSource {
    /// Frame width and height in pixels. Fixed, except that a source whose
    /// frames change size returns [`SourceError::GeometryChanged`] from
    /// [`FrameSource::fill`] and reports the new size from then on.
    fn size(&self) -> (u32, u32);

    /// The source's own frame rate, if it has one (a camera, a file), in
    /// frames per second. The producer paces to it unless told otherwise.
    fn native_fps(&self) -> Option<f64> {
        None
    }

    /// Writes frame `seq` into `slot`. May block until the frame exists
    /// (a camera). Called only with a slot of exactly [`FrameSource::size`].
    fn fill(&mut self, seq: u64, slot: &mut SlotWriter<'_>) -> Result<Captured, SourceError>;

    /// Where the source's time went so far (decode, conversion, BGR copy).
    fn timings(&self) -> SourceTimings {
        SourceTimings::default()
    }
}

/// A `--source` value: which kind of source, and its argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The built-in fake camera (`fake`).
    Fake,
    /// An OpenCV `VideoCapture` on camera `INDEX` (`camera:INDEX`, i.e.
    /// `/dev/videoINDEX` on Linux).
    Camera(u32),
    /// A video file OpenCV can decode (`video:PATH`).
    Video(PathBuf),
}

impl SourceSpec {
    /// Parses `fake`, `camera:INDEX` or `video:PATH`.
    pub fn parse(spec: &str) -> Result<Self, SourceError> {
        let bad = |why: &str| SourceError::BadSpec {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        if spec == "fake" {
            return Ok(Self::Fake);
        }
        if let Some(index) = spec.strip_prefix("camera:") {
            return index
                .parse::<u32>()
                .ok()
                .filter(|&i| i < 1024)
                .map(Self::Camera)
                .ok_or_else(|| bad("the camera index must be a number from 0 to 1023"));
        }
        if let Some(path) = spec.strip_prefix("video:") {
            if path.is_empty() {
                return Err(bad("the video path is empty"));
            }
            return Ok(Self::Video(PathBuf::from(path)));
        }
        Err(bad("not a known kind of source"))
    }

    /// Whether this source needs the `opencv` feature.
    pub fn needs_opencv(&self) -> bool {
        !matches!(self, Self::Fake)
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fake => f.write_str("fake"),
            Self::Camera(i) => write!(f, "camera:{i}"),
            Self::Video(p) => write!(f, "video:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_specs() {
        assert_eq!(SourceSpec::parse("fake").unwrap(), SourceSpec::Fake);
        assert_eq!(
            SourceSpec::parse("camera:2").unwrap(),
            SourceSpec::Camera(2)
        );
        assert_eq!(
            SourceSpec::parse("video:/tmp/a b.avi").unwrap(),
            SourceSpec::Video(PathBuf::from("/tmp/a b.avi"))
        );
        for bad in [
            "",
            "camera",
            "camera:",
            "camera:-1",
            "camera:x",
            "video:",
            "rtsp://x",
            "Fake",
        ] {
            let e = SourceSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("camera:INDEX"), "{bad:?}: {e}");
        }
        assert_eq!(SourceSpec::Camera(3).to_string(), "camera:3");
        assert!(!SourceSpec::Fake.needs_opencv());
        assert!(SourceSpec::Camera(0).needs_opencv());
    }
}
