//! The bridge's payload: one zenoh sample per frame, a fixed 64-byte
//! little-endian header followed by the pixels (raw or lz4-compressed).
//!
//! | offset | size | field |
//! | ---: | ---: | --- |
//! | 0 | 4 | magic `FBBR` (`46 42 42 52`) |
//! | 4 | 2 | version, 2 |
//! | 6 | 2 | header length, 64 |
//! | 8 | 8 | instance id of the bus the frame was read from |
//! | 16 | 8 | seq (1 ..= 2^48 - 1) |
//! | 24 | 8 | capture time, `CLOCK_MONOTONIC` ns of the camera host |
//! | 32 | 8 | publish time on the camera host's bus, same clock |
//! | 40 | 4 | width in pixels (1 ..= 16384) |
//! | 44 | 4 | height in rows (1 ..= 16384) |
//! | 48 | 4 | stride: bytes from one row to the next in the pixel data (width × bytes per pixel ..= that rounded up to 64) |
//! | 52 | 1 | pixel format: 1 = gray8, 2 = gray16, 3 = bgr8, 4 = rgb8 (the bus's codes) |
//! | 53 | 1 | significant bits per value: 8 for gray8, bgr8, rgb8; 1 ..= 16 for gray16 |
//! | 54 | 1 | compression: 0 = none, 1 = lz4 block |
//! | 55 | 1 | flags, 0 |
//! | 56 | 8 | pixel data length in bytes (what follows the header) |
//!
//! The pixel data is `stride * height` bytes, rows `stride` apart, raw or
//! as one lz4 block (no frame format, no size prefix) that decompresses to
//! exactly `stride * height` bytes. A row is `width` pixels of the
//! format's bytes per pixel (1 for gray8, 2 for gray16 little-endian, 3 for
//! bgr8 and rgb8). `doc/BRIDGE.md` describes the same.
//!
//! Version 1 (framebus before it carried every pixel format) had a 2-byte
//! format field at 52 that could only be gray8. The versions do not mix: a
//! receiver of either version drops the other's samples as
//! [`PayloadError::UnsupportedVersion`] (counted and logged, never read as
//! pixels).
//!
//! Decoding never trusts the sender: every field is checked against the
//! sample's real length before a byte of pixels is read, and a bad payload
//! is a [`PayloadError`], never a panic.
//!
//! The code is split by concern: `header.rs` writes and checks the 64
//! header bytes ([`FrameHeader`]), `encode.rs` turns a frame into a payload
//! ([`encode_frame`]), `decode.rs` reads a payload's pixels into a frame
//! ([`read_pixels`], [`decode_into`]). This file holds the format's
//! constants, its [`Compression`] codes and [`PayloadError`].

use shm_layout::PixelFormat;

mod decode;
mod encode;
mod header;
#[cfg(test)]
mod test_frames;

pub use decode::{decode_into, read_pixels};
pub use encode::{encode_frame, FrameMeta};
pub use header::FrameHeader;

/// The payload's magic number, the ASCII bytes `FBBR`.
pub const MAGIC: [u8; 4] = *b"FBBR";
/// The payload format version this crate writes and reads.
pub const VERSION: u16 = 2;
/// Length of the header in bytes.
pub const HEADER_LEN: usize = 64;
/// Largest width and height accepted (as `framebus produce --size`).
pub const MAX_DIMENSION: u32 = 16384;

/// Rows may be padded up to the next multiple of this many bytes (a
/// sender's stride is at most `width` rounded up to it), so a header cannot
/// make a receiver allocate much more than the frame it describes.
pub const MAX_ROW_PADDING: u32 = 64;
/// Sequence numbers must stay below this (the bus packs them in 48 bits).
pub const SEQ_LIMIT: u64 = 1 << 48;

/// How the pixel data is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Raw rows.
    None,
    /// One lz4 block (`lz4_flex::block`), decompressing to `stride * height`.
    Lz4,
}

impl Compression {
    /// The code stored at offset 54.
    pub fn code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Lz4 => 1,
        }
    }

    /// The compression with this code, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::None),
            1 => Some(Self::Lz4),
            _ => None,
        }
    }

    /// `none` or `lz4`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Shorter than the header.
    #[error("payload of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Not a framebus bridge payload.
    #[error("not a framebus bridge payload: magic {found:02x?}, expected {MAGIC:02x?} (\"FBBR\"); is something else publishing on this key?")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A payload of another version of the format.
    #[error("bridge payload version {found}, this framebus reads version {VERSION}: run the same framebus version on both hosts")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The header length field is not 64.
    #[error("bridge payload header length {found}, expected {HEADER_LEN}")]
    BadHeaderLen {
        /// The length found.
        found: u16,
    },
    /// Width, height or stride out of range.
    #[error("bad frame geometry {width}x{height} {format} with stride {stride} (1..={MAX_DIMENSION} each; width x bytes per pixel <= stride <= that rounded up to {MAX_ROW_PADDING})")]
    BadGeometry {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Stride.
        stride: u32,
        /// The pixel format (its bytes per pixel make the row length).
        format: PixelFormat,
    },
    /// A pixel format code this version does not know.
    #[error("unknown pixel format code {0} (1 = gray8, 2 = gray16, 3 = bgr8, 4 = rgb8)")]
    UnknownFormat(u8),
    /// A significant bit count the pixel format cannot have.
    #[error("{bits} significant bits for {format} frames (8 for gray8, bgr8 and rgb8; 1 to 16 for gray16)")]
    BadSignificantBits {
        /// The pixel format.
        format: PixelFormat,
        /// The bit count found.
        bits: u8,
    },
    /// A compression this version does not know.
    #[error("unknown compression {0} (0 = none, 1 = lz4)")]
    UnknownCompression(u8),
    /// Flags this version does not know.
    #[error("unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// A sequence number of 0 or too large for a bus.
    #[error("bad sequence number {0} (1 ..= 2^48 - 1)")]
    BadSeq(u64),
    /// The pixel data length field disagrees with the payload's real length.
    #[error("header says {declared} bytes of pixel data but {actual} follow it")]
    LengthMismatch {
        /// The length in the header.
        declared: u64,
        /// The bytes that really follow the header.
        actual: u64,
    },
    /// Raw pixel data of the wrong size for the geometry.
    #[error("raw pixel data of {len} bytes for a {width}x{height} frame with stride {stride} (needs stride x height = {need})")]
    WrongRawSize {
        /// Bytes of pixel data.
        len: u64,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Stride.
        stride: u32,
        /// `stride * height`.
        need: u64,
    },
    /// The lz4 block is corrupt or does not decompress to `stride * height`.
    #[error("lz4 pixel data does not decompress to {need} bytes: {why}")]
    Decompress {
        /// `stride * height`.
        need: u64,
        /// What the decoder said.
        why: String,
    },
    /// The payload could not be read (a short read of the sample).
    #[error("cannot read the pixel data: {0}")]
    Read(String),
    /// The frame does not fit the destination (a bug in the caller).
    #[error(
        "a {width}x{height} frame does not fit a destination of {len} bytes with stride {stride}"
    )]
    DestinationTooSmall {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Destination stride.
        stride: usize,
        /// Destination length.
        len: usize,
    },
}
