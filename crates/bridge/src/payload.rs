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

use std::io::Read;

use shm_layout::PixelFormat;

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

/// The most an lz4 block can expand: each byte of a block yields at most
/// 255 bytes of output. A header that claims more is refused before any
/// memory is set aside for it.
const LZ4_MAX_RATIO: u64 = 255;
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

/// The decoded header of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Instance id of the bus the frame was read from (a new one each time
    /// the camera host's producer starts).
    pub source_instance: u64,
    /// The frame's sequence number on that bus.
    pub seq: u64,
    /// Capture time, `CLOCK_MONOTONIC` nanoseconds of the camera host.
    pub capture_ns: u64,
    /// Publish time on the camera host's bus, same clock.
    pub publish_ns: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in rows.
    pub height: u32,
    /// Bytes from one row to the next in the pixel data.
    pub stride: u32,
    /// Pixel format (stored as its bus code, [`PixelFormat::code`]).
    pub format: PixelFormat,
    /// Significant bits per value: 8 for the 8-bit formats, 1 ..= 16 for
    /// gray16.
    pub significant_bits: u8,
    /// How the pixel data is encoded.
    pub compression: Compression,
    /// Length of the pixel data that follows the header.
    pub data_len: u64,
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

impl FrameHeader {
    /// Bytes of pixels once decoded: `stride * height`.
    pub fn raw_len(&self) -> u64 {
        u64::from(self.stride) * u64::from(self.height)
    }

    /// Bytes of one row's pixels, without padding: `width * bytes per
    /// pixel`.
    pub fn row_bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.format.bytes_per_pixel())
    }

    /// The header's 64 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        b[8..16].copy_from_slice(&self.source_instance.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.capture_ns.to_le_bytes());
        b[32..40].copy_from_slice(&self.publish_ns.to_le_bytes());
        b[40..44].copy_from_slice(&self.width.to_le_bytes());
        b[44..48].copy_from_slice(&self.height.to_le_bytes());
        b[48..52].copy_from_slice(&self.stride.to_le_bytes());
        // Codes are 1..=4: they fit the byte.
        b[52] = self.format.code() as u8;
        b[53] = self.significant_bits;
        b[54] = self.compression.code();
        b[55] = 0;
        b[56..64].copy_from_slice(&self.data_len.to_le_bytes());
        b
    }

    /// Decodes and checks the header of a payload of `total_len` bytes
    /// whose first bytes are `head` (at least [`HEADER_LEN`] of them, or
    /// the whole payload if it is shorter).
    pub fn decode(head: &[u8], total_len: usize) -> Result<Self, PayloadError> {
        let b: &[u8; HEADER_LEN] = head
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .filter(|_| total_len >= HEADER_LEN)
            .ok_or(PayloadError::Truncated {
                len: total_len.min(head.len()),
            })?;
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(x)
        };
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(PayloadError::BadMagic { found: magic });
        }
        let version = u16_at(4);
        if version != VERSION {
            return Err(PayloadError::UnsupportedVersion { found: version });
        }
        let header_len = u16_at(6);
        if usize::from(header_len) != HEADER_LEN {
            return Err(PayloadError::BadHeaderLen { found: header_len });
        }
        let format =
            PixelFormat::from_code(u32::from(b[52])).ok_or(PayloadError::UnknownFormat(b[52]))?;
        let significant_bits = b[53];
        let bits_ok = if format == PixelFormat::Gray16 {
            (1..=format.container_bits()).contains(&significant_bits)
        } else {
            significant_bits == format.container_bits()
        };
        if !bits_ok {
            return Err(PayloadError::BadSignificantBits {
                format,
                bits: significant_bits,
            });
        }
        let h = Self {
            source_instance: u64_at(8),
            seq: u64_at(16),
            capture_ns: u64_at(24),
            publish_ns: u64_at(32),
            width: u32_at(40),
            height: u32_at(44),
            stride: u32_at(48),
            format,
            significant_bits,
            compression: Compression::from_code(b[54])
                .ok_or(PayloadError::UnknownCompression(b[54]))?,
            data_len: u64_at(56),
        };
        // In u64: width (<= 16384) times 3 bytes per pixel, rounded up,
        // cannot overflow, and the width is checked before it is used.
        let row = h.row_bytes();
        let dims_ok = (1..=MAX_DIMENSION).contains(&h.width)
            && (1..=MAX_DIMENSION).contains(&h.height)
            && u64::from(h.stride) >= row
            && u64::from(h.stride) <= row.next_multiple_of(u64::from(MAX_ROW_PADDING));
        if !dims_ok {
            return Err(PayloadError::BadGeometry {
                width: h.width,
                height: h.height,
                stride: h.stride,
                format: h.format,
            });
        }
        if b[55] != 0 {
            return Err(PayloadError::UnknownFlags(b[55]));
        }
        if h.seq == 0 || h.seq >= SEQ_LIMIT {
            return Err(PayloadError::BadSeq(h.seq));
        }
        let actual = (total_len - HEADER_LEN) as u64;
        if h.data_len != actual {
            return Err(PayloadError::LengthMismatch {
                declared: h.data_len,
                actual,
            });
        }
        if h.compression == Compression::None && h.data_len != h.raw_len() {
            return Err(PayloadError::WrongRawSize {
                len: h.data_len,
                width: h.width,
                height: h.height,
                stride: h.stride,
                need: h.raw_len(),
            });
        }
        Ok(h)
    }
}

/// What [`encode_frame`] needs to know about a frame besides its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Instance id of the bus the frame comes from.
    pub source_instance: u64,
    /// Its sequence number (1 ..= 2^48 - 1).
    pub seq: u64,
    /// Capture time, `CLOCK_MONOTONIC` ns.
    pub capture_ns: u64,
    /// Publish time on the bus, `CLOCK_MONOTONIC` ns.
    pub publish_ns: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in rows.
    pub height: u32,
    /// Pixel format.
    pub format: PixelFormat,
    /// Significant bits per value (1 ..= 16 for gray16, 8 otherwise; 0 =
    /// the whole container), as the bus records them.
    pub significant_bits: u8,
}

/// Encodes a frame (`height` rows of `width` pixels in `meta.format`,
/// `src_stride` bytes apart in `pixels`) into `out` (cleared first): the
/// header, then the rows packed (stride = width × bytes per pixel), raw or
/// as one lz4 block. A frame lz4 does not shrink goes raw (the header says
/// so). `scratch` is reused between calls for packing rows before
/// compression. Returns the header written.
///
/// # Panics
/// If the width or height is 0, `src_stride` is shorter than a row
/// (`width * bytes per pixel`), `pixels` is shorter than `src_stride *
/// (height - 1)` plus a row, or the significant bits do not fit the format
/// (the caller's frame is malformed: a bug; frames from a bus never are).
pub fn encode_frame(
    meta: &FrameMeta,
    pixels: &[u8],
    src_stride: usize,
    compression: Compression,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> FrameHeader {
    let bpp = meta.format.bytes_per_pixel() as usize;
    // `w` is a row's bytes from here on.
    let (w, h) = (meta.width as usize * bpp, meta.height as usize);
    assert!(
        w >= 1 && h >= 1 && src_stride >= w && pixels.len() >= src_stride * (h - 1) + w,
        "a {}x{h} {} frame with stride {src_stride} in {} bytes",
        meta.width,
        meta.format,
        pixels.len()
    );
    let significant_bits = meta
        .format
        .check_significant_bits(meta.significant_bits)
        .unwrap_or_else(|e| panic!("{} frame: {e}", meta.format));
    let packed_len = w * h;
    // The rows as one contiguous block: the frame itself when it has no
    // padding, else a packed copy.
    let packed: &[u8] = if src_stride == w {
        &pixels[..packed_len]
    } else if compression == Compression::None {
        &[] // rows are copied straight into `out` below
    } else {
        scratch.clear();
        for row in pixels.chunks(src_stride).take(h) {
            scratch.extend_from_slice(&row[..w]);
        }
        scratch
    };
    out.clear();
    out.resize(HEADER_LEN, 0);
    match compression {
        Compression::None if src_stride == w => out.extend_from_slice(packed),
        Compression::None => {
            for row in pixels.chunks(src_stride).take(h) {
                out.extend_from_slice(&row[..w]);
            }
        }
        Compression::Lz4 => {
            let max = lz4_flex::block::get_maximum_output_size(packed_len);
            out.resize(HEADER_LEN + max, 0);
            // The output is sized by the library's own bound, so this
            // cannot run out of room; should it, send the frame raw.
            match lz4_flex::block::compress_into(packed, &mut out[HEADER_LEN..]) {
                Ok(n) if n < packed_len => out.truncate(HEADER_LEN + n),
                // Incompressible (a noisy frame): raw is smaller and
                // cheaper to read at the far end.
                result => {
                    if let Err(e) = result {
                        tracing::warn!("lz4 compression failed ({e}); sending the frame raw");
                    }
                    out.truncate(HEADER_LEN);
                    out.extend_from_slice(packed);
                    let header =
                        header_for(meta, significant_bits, Compression::None, packed_len as u64);
                    out[..HEADER_LEN].copy_from_slice(&header.encode());
                    return header;
                }
            }
        }
    }
    let data_len = (out.len() - HEADER_LEN) as u64;
    let header = header_for(meta, significant_bits, compression, data_len);
    out[..HEADER_LEN].copy_from_slice(&header.encode());
    header
}

fn header_for(
    meta: &FrameMeta,
    significant_bits: u8,
    compression: Compression,
    data_len: u64,
) -> FrameHeader {
    let row_bytes = meta.width * meta.format.bytes_per_pixel();
    FrameHeader {
        source_instance: meta.source_instance,
        seq: meta.seq,
        capture_ns: meta.capture_ns,
        publish_ns: meta.publish_ns,
        width: meta.width,
        height: meta.height,
        stride: row_bytes,
        format: meta.format,
        significant_bits,
        compression,
        data_len,
    }
}

/// Reads the pixel data that follows a checked header out of `data` and
/// writes the frame into `dst` (rows `dst_stride` bytes apart; bytes past
/// the row's `width * bytes per pixel` are left alone). `scratch` is
/// reused between calls.
/// For a raw payload the rows go straight from the reader into `dst`; an
/// lz4 block is read whole, then decompressed straight into `dst` when the
/// strides agree.
pub fn read_pixels(
    header: &FrameHeader,
    data: &mut impl Read,
    scratch: &mut Vec<u8>,
    dst: &mut [u8],
    dst_stride: usize,
) -> Result<(), PayloadError> {
    // `w` is a row's bytes (a checked header's width is at most 16384).
    let (w, h, s) = (
        usize::try_from(header.row_bytes()).unwrap_or(usize::MAX),
        header.height as usize,
        header.stride as usize,
    );
    if w == 0 || h == 0 || s < w {
        return Err(PayloadError::BadGeometry {
            width: header.width,
            height: header.height,
            stride: header.stride,
            format: header.format,
        });
    }
    let dst_need = dst_stride.checked_mul(h - 1).and_then(|n| n.checked_add(w));
    if dst_stride < w || dst_need.is_none_or(|need| dst.len() < need) {
        return Err(PayloadError::DestinationTooSmall {
            width: header.width,
            height: header.height,
            stride: dst_stride,
            len: dst.len(),
        });
    }
    let read_err = |e: std::io::Error| PayloadError::Read(e.to_string());
    match header.compression {
        Compression::None => {
            let mut skip = [0u8; 256];
            for row in dst.chunks_mut(dst_stride).take(h) {
                data.read_exact(&mut row[..w]).map_err(read_err)?;
                let mut pad = s - w;
                while pad > 0 {
                    let n = pad.min(skip.len());
                    data.read_exact(&mut skip[..n]).map_err(read_err)?;
                    pad -= n;
                }
            }
            Ok(())
        }
        Compression::Lz4 => {
            let need = header.raw_len();
            let compressed_len = usize::try_from(header.data_len).map_err(|_| {
                PayloadError::Read(format!("{} bytes do not fit memory", header.data_len))
            })?;
            // Checked against the sample's real length by `decode`; read it
            // into the front of `scratch`, the decompressed frame behind it.
            scratch.clear();
            scratch.resize(compressed_len, 0);
            data.read_exact(scratch).map_err(read_err)?;
            let decompress_err = |why: String| PayloadError::Decompress { need, why };
            if need > (compressed_len as u64).saturating_mul(LZ4_MAX_RATIO) {
                return Err(decompress_err(format!(
                    "{compressed_len} compressed bytes cannot hold that many"
                )));
            }
            if s == dst_stride && dst.len() >= s * h {
                let n = lz4_flex::block::decompress_into(scratch, &mut dst[..s * h])
                    .map_err(|e| decompress_err(e.to_string()))?;
                if n as u64 != need {
                    return Err(decompress_err(format!("it holds only {n} bytes")));
                }
                return Ok(());
            }
            let raw_len = s * h;
            scratch.resize(compressed_len + raw_len, 0);
            let (compressed, raw) = scratch.split_at_mut(compressed_len);
            let n = lz4_flex::block::decompress_into(compressed, raw)
                .map_err(|e| decompress_err(e.to_string()))?;
            if n != raw_len {
                return Err(decompress_err(format!("it holds only {n} bytes")));
            }
            for (src, row) in raw.chunks(s).zip(dst.chunks_mut(dst_stride)).take(h) {
                row[..w].copy_from_slice(&src[..w]);
            }
            Ok(())
        }
    }
}

/// Decodes a whole payload held in one slice into `dst` (rows `dst_stride`
/// apart): [`FrameHeader::decode`] then [`read_pixels`].
pub fn decode_into(
    payload: &[u8],
    scratch: &mut Vec<u8>,
    dst: &mut [u8],
    dst_stride: usize,
) -> Result<FrameHeader, PayloadError> {
    let header = FrameHeader::decode(payload, payload.len())?;
    let mut data = &payload[HEADER_LEN..];
    read_pixels(&header, &mut data, scratch, dst, dst_stride)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm_layout::pattern::Pattern;

    fn meta(width: u32, height: u32) -> FrameMeta {
        meta_in(width, height, PixelFormat::Gray8, 8)
    }

    fn meta_in(width: u32, height: u32, format: PixelFormat, bits: u8) -> FrameMeta {
        FrameMeta {
            source_instance: 0x1122_3344_5566_7788,
            seq: 42,
            capture_ns: 1_000,
            publish_ns: 2_000,
            width,
            height,
            format,
            significant_bits: bits,
        }
    }

    fn frame(width: u32, height: u32, stride: usize, seq: u64) -> Vec<u8> {
        frame_in(width, height, stride, seq, PixelFormat::Gray8, 8)
    }

    fn frame_in(
        width: u32,
        height: u32,
        stride: usize,
        seq: u64,
        format: PixelFormat,
        bits: u8,
    ) -> Vec<u8> {
        let mut px = vec![0xEEu8; stride * height as usize];
        Pattern::with_format(width, format, bits).fill(seq, &mut px, stride, height);
        px
    }

    /// (format, significant bits) of every case the bridge carries.
    const FORMATS: [(PixelFormat, u8); 5] = [
        (PixelFormat::Gray8, 8),
        (PixelFormat::Gray16, 16),
        (PixelFormat::Gray16, 12),
        (PixelFormat::Bgr8, 8),
        (PixelFormat::Rgb8, 8),
    ];

    fn encode(m: &FrameMeta, px: &[u8], stride: usize, c: Compression) -> Vec<u8> {
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        encode_frame(m, px, stride, c, &mut scratch, &mut out);
        out
    }

    #[test]
    fn header_layout_is_byte_exact() {
        let m = meta(640, 480);
        let out = encode(&m, &frame(640, 480, 640, 42), 640, Compression::None);
        assert_eq!(&out[0..4], b"FBBR");
        assert_eq!(&out[4..6], &[2, 0]);
        assert_eq!(&out[6..8], &[64, 0]);
        assert_eq!(&out[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&out[16..24], &42u64.to_le_bytes());
        assert_eq!(&out[24..32], &1_000u64.to_le_bytes());
        assert_eq!(&out[32..40], &2_000u64.to_le_bytes());
        assert_eq!(&out[40..44], &640u32.to_le_bytes());
        assert_eq!(&out[44..48], &480u32.to_le_bytes());
        assert_eq!(&out[48..52], &640u32.to_le_bytes());
        assert_eq!(out[52], 1, "gray8");
        assert_eq!(out[53], 8, "significant bits");
        assert_eq!(out[54], 0);
        assert_eq!(out[55], 0);
        assert_eq!(&out[56..64], &(640u64 * 480).to_le_bytes());
        assert_eq!(out.len(), 64 + 640 * 480);
        // gray16 of a 12-bit camera, 161 px wide: rows of 322 bytes.
        let m = meta_in(161, 3, PixelFormat::Gray16, 12);
        let px = frame_in(161, 3, 384, 42, PixelFormat::Gray16, 12);
        let out = encode(&m, &px, 384, Compression::None);
        assert_eq!(&out[40..44], &161u32.to_le_bytes());
        assert_eq!(&out[48..52], &322u32.to_le_bytes());
        assert_eq!((out[52], out[53]), (2, 12));
        assert_eq!(&out[56..64], &(322u64 * 3).to_le_bytes());
        // bgr8 and rgb8: three bytes a pixel, codes 3 and 4.
        for (format, code) in [(PixelFormat::Bgr8, 3), (PixelFormat::Rgb8, 4)] {
            let px = frame_in(10, 2, 30, 42, format, 8);
            let out = encode(&meta_in(10, 2, format, 8), &px, 30, Compression::None);
            assert_eq!(&out[48..52], &30u32.to_le_bytes(), "{format}");
            assert_eq!((out[52], out[53]), (code, 8), "{format}");
            assert_eq!(out.len(), 64 + 60, "{format}");
        }
        // A bits value of 0 means the whole container.
        let m = meta_in(4, 1, PixelFormat::Gray16, 0);
        let out = encode(&m, &[0u8; 8], 8, Compression::None);
        assert_eq!(out[53], 16);
    }

    /// A version 1 payload (framebus before it carried every format) and
    /// one of a later version are refused by their version field, before
    /// any other field is read; and the message says what to do.
    #[test]
    fn other_versions_are_refused_by_their_version() {
        let mut p = encode(&meta(32, 8), &frame(32, 8, 32, 42), 32, Compression::None);
        // Version 1 had a 2-byte format code 1 at offset 52.
        p[4..6].copy_from_slice(&1u16.to_le_bytes());
        p[52..54].copy_from_slice(&1u16.to_le_bytes());
        let e = FrameHeader::decode(&p, p.len()).unwrap_err();
        assert_eq!(e, PayloadError::UnsupportedVersion { found: 1 });
        assert!(
            e.to_string()
                .contains("run the same framebus version on both hosts"),
            "{e}"
        );
        p[4..6].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(
            FrameHeader::decode(&p, p.len()),
            Err(PayloadError::UnsupportedVersion { found: 3 })
        );
    }

    /// Every format, raw and lz4, from padded and packed rows into padded
    /// and packed rows: the far side gets the pattern byte for byte, with
    /// the format and significant bits it was sent with.
    #[test]
    fn every_format_round_trips_raw_and_lz4() {
        for (format, bits) in FORMATS {
            let bpp = format.bytes_per_pixel() as usize;
            for (w, h) in [(161u32, 7u32), (64, 4), (1, 1)] {
                let row = w as usize * bpp;
                let padded = row.next_multiple_of(64);
                for (src_stride, dst_stride) in [(row, row), (padded, row), (row, padded)] {
                    let px = frame_in(w, h, src_stride, 9, format, bits);
                    for c in [Compression::None, Compression::Lz4] {
                        let what =
                            format!("{format}/{bits} {w}x{h} {src_stride}->{dst_stride} {c}");
                        let m = FrameMeta {
                            seq: 9,
                            ..meta_in(w, h, format, bits)
                        };
                        let payload = encode(&m, &px, src_stride, c);
                        let mut dst = vec![0u8; dst_stride * h as usize];
                        let header = decode_into(&payload, &mut Vec::new(), &mut dst, dst_stride)
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert_eq!(header.format, format, "{what}");
                        assert_eq!(header.significant_bits, bits, "{what}");
                        assert_eq!(header.stride as usize, row, "{what}");
                        assert_eq!(header.row_bytes(), row as u64, "{what}");
                        assert!(
                            header.compression == c || header.data_len == (row * h as usize) as u64,
                            "{what}: {header:?}"
                        );
                        assert_eq!(
                            Pattern::with_format(w, format, bits).verify(9, &dst, dst_stride, h),
                            Ok(()),
                            "{what}"
                        );
                    }
                }
            }
        }
        // The 640x480 pattern compresses in every format.
        for (format, bits) in FORMATS {
            let row = 640 * format.bytes_per_pixel() as usize;
            let px = frame_in(640, 480, row, 1, format, bits);
            let payload = encode(&meta_in(640, 480, format, bits), &px, row, Compression::Lz4);
            assert_eq!(payload[54], Compression::Lz4.code(), "{format}");
            assert!(
                payload.len() < px.len() / 4,
                "{format}: {} bytes",
                payload.len()
            );
        }
    }

    /// Each format field a peer can get wrong is refused with its own
    /// error: the format code, the significant bits, a stride too short
    /// for the format's pixels, and pixel data of the wrong size for
    /// width x height x bytes per pixel (raw or lz4).
    #[test]
    fn malformed_format_fields_are_refused() {
        let good = encode(
            &meta_in(32, 8, PixelFormat::Gray16, 12),
            &frame_in(32, 8, 64, 42, PixelFormat::Gray16, 12),
            64,
            Compression::None,
        );
        let patched = |at: usize, bytes: &[u8]| {
            let mut p = good.clone();
            p[at..at + bytes.len()].copy_from_slice(bytes);
            FrameHeader::decode(&p, p.len())
        };
        assert!(patched(0, &[]).is_ok());
        for code in [0u8, 5, 255] {
            let e = patched(52, &[code]).unwrap_err();
            assert_eq!(e, PayloadError::UnknownFormat(code));
            assert!(e.to_string().contains("2 = gray16, 3 = bgr8"), "{e}");
        }
        for bits in [0u8, 17, 255] {
            assert_eq!(
                patched(53, &[bits]),
                Err(PayloadError::BadSignificantBits {
                    format: PixelFormat::Gray16,
                    bits
                })
            );
        }
        assert!(patched(53, &[1]).is_ok() && patched(53, &[16]).is_ok());
        // 8-bit formats have exactly 8 significant bits.
        for (format, code) in [
            (PixelFormat::Gray8, 1u8),
            (PixelFormat::Bgr8, 3),
            (PixelFormat::Rgb8, 4),
        ] {
            for bits in [0u8, 7, 12, 16] {
                let e = patched(52, &[code, bits]).unwrap_err();
                assert_eq!(e, PayloadError::BadSignificantBits { format, bits });
                assert!(e.to_string().contains("1 to 16 for gray16"), "{e}");
            }
        }
        // A stride shorter than width x bytes per pixel.
        assert_eq!(
            patched(48, &63u32.to_le_bytes()),
            Err(PayloadError::BadGeometry {
                width: 32,
                height: 8,
                stride: 63,
                format: PixelFormat::Gray16
            })
        );
        // bgr8 32 px wide needs 96-byte rows: the gray16 stride (64) is
        // short.
        assert!(matches!(
            patched(52, &[3, 8]),
            Err(PayloadError::BadGeometry {
                stride: 64,
                format: PixelFormat::Bgr8,
                ..
            })
        ));
        // ... and bgr8 rows padded past 96 bytes rounded up to 64.
        let mut p = good.clone();
        p[48..52].copy_from_slice(&129u32.to_le_bytes());
        p[52..54].copy_from_slice(&[3, 8]);
        assert!(matches!(
            FrameHeader::decode(&p, p.len()),
            Err(PayloadError::BadGeometry { stride: 129, .. })
        ));
        p[48..52].copy_from_slice(&128u32.to_le_bytes());
        assert!(matches!(
            FrameHeader::decode(&p, p.len()),
            Err(PayloadError::WrongRawSize { need: 1024, .. })
        ));
        // A bgr8 header (stride 96, right for 32 px) over the gray16
        // frame's 512 bytes: the data does not fill 96 x 8.
        let mut p = good.clone();
        p[48..52].copy_from_slice(&96u32.to_le_bytes());
        p[52..54].copy_from_slice(&[3, 8]);
        assert_eq!(
            FrameHeader::decode(&p, p.len()),
            Err(PayloadError::WrongRawSize {
                len: 512,
                width: 32,
                height: 8,
                stride: 96,
                need: 768
            })
        );
        // The same as lz4: a gray8 frame's block claimed as gray16
        // decompresses to half of what the header needs.
        let gray8 = encode(&meta(64, 8), &frame(64, 8, 64, 5), 64, Compression::Lz4);
        assert_eq!(gray8[54], Compression::Lz4.code(), "the pattern compresses");
        let mut p = gray8.clone();
        p[48..52].copy_from_slice(&128u32.to_le_bytes());
        p[52..54].copy_from_slice(&[2, 16]);
        let mut dst = vec![0u8; 128 * 8];
        assert!(matches!(
            decode_into(&p, &mut Vec::new(), &mut dst, 128),
            Err(PayloadError::Decompress { need: 1024, .. })
        ));
    }

    #[test]
    fn round_trips_raw_and_lz4_with_any_strides() {
        for (w, h, src_stride, dst_stride) in [
            (64, 4, 64, 64),
            (100, 7, 128, 128),
            (100, 7, 100, 128),
            (100, 7, 128, 100),
            (1, 1, 1, 1),
        ] {
            let px = frame(w, h, src_stride, 9);
            for c in [Compression::None, Compression::Lz4] {
                let payload = encode(&meta(w, h), &px, src_stride, c);
                let mut dst = vec![0u8; dst_stride * h as usize];
                let header = decode_into(&payload, &mut Vec::new(), &mut dst, dst_stride)
                    .unwrap_or_else(|e| panic!("{w}x{h} {src_stride}->{dst_stride} {c}: {e}"));
                // lz4 falls back to raw when it does not shrink the frame.
                assert!(
                    header.compression == c || header.data_len == u64::from(w * h),
                    "{header:?}"
                );
                assert_eq!(header.stride, w);
                assert_eq!(
                    Pattern::new(w).verify(9, &dst, dst_stride, h),
                    Ok(()),
                    "{w}x{h} {src_stride}->{dst_stride} {c}"
                );
            }
        }
    }

    #[test]
    fn lz4_shrinks_the_test_pattern_and_noise_goes_raw() {
        let px = frame(640, 480, 640, 1);
        let payload = encode(&meta(640, 480), &px, 640, Compression::Lz4);
        assert!(payload.len() < px.len() / 4, "{} bytes", payload.len());
        let noise: Vec<u8> = (0..64 * 8u64)
            .map(|i| shm_layout::pattern::splitmix64(i) as u8)
            .collect();
        let payload = encode(&meta(64, 8), &noise, 64, Compression::Lz4);
        let header = FrameHeader::decode(&payload, payload.len()).unwrap();
        assert_eq!(header.compression, Compression::None);
        assert_eq!(&payload[HEADER_LEN..], &noise[..]);
    }

    #[test]
    fn truncated_payloads_are_rejected() {
        let good = encode(&meta(32, 8), &frame(32, 8, 32, 42), 32, Compression::None);
        for len in [0, 1, 4, 63] {
            assert_eq!(
                FrameHeader::decode(&good[..len], len),
                Err(PayloadError::Truncated { len })
            );
        }
        for len in [64, 65, good.len() - 1] {
            let mut dst = vec![0u8; 32 * 8];
            let e = decode_into(&good[..len], &mut Vec::new(), &mut dst, 32).unwrap_err();
            assert!(
                matches!(e, PayloadError::LengthMismatch { declared: 256, .. }),
                "{len}: {e}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(
            FrameHeader::decode(&longer, longer.len()),
            Err(PayloadError::LengthMismatch {
                declared: 256,
                actual: 257
            })
        ));
    }

    #[test]
    fn foreign_payloads_are_rejected() {
        let hello = b"hello from another publisher on this key, not a frame at all......";
        assert_eq!(
            FrameHeader::decode(hello, hello.len()),
            Err(PayloadError::BadMagic { found: *b"hell" })
        );
        let good = encode(&meta(32, 8), &frame(32, 8, 32, 42), 32, Compression::Lz4);
        let patched = |at: usize, bytes: &[u8]| {
            let mut p = good.clone();
            p[at..at + bytes.len()].copy_from_slice(bytes);
            FrameHeader::decode(&p, p.len())
        };
        assert_eq!(
            patched(4, &(VERSION + 1).to_le_bytes()),
            Err(PayloadError::UnsupportedVersion { found: VERSION + 1 })
        );
        assert_eq!(
            patched(6, &[80, 0]),
            Err(PayloadError::BadHeaderLen { found: 80 })
        );
        assert!(matches!(
            patched(40, &0u32.to_le_bytes()),
            Err(PayloadError::BadGeometry { width: 0, .. })
        ));
        assert!(matches!(
            patched(44, &20000u32.to_le_bytes()),
            Err(PayloadError::BadGeometry { height: 20000, .. })
        ));
        assert!(matches!(
            patched(48, &31u32.to_le_bytes()),
            Err(PayloadError::BadGeometry { stride: 31, .. })
        ));
        assert_eq!(patched(52, &[9]), Err(PayloadError::UnknownFormat(9)));
        assert_eq!(patched(54, &[7]), Err(PayloadError::UnknownCompression(7)));
        assert_eq!(patched(55, &[1]), Err(PayloadError::UnknownFlags(1)));
        assert_eq!(
            patched(16, &0u64.to_le_bytes()),
            Err(PayloadError::BadSeq(0))
        );
        assert_eq!(
            patched(16, &SEQ_LIMIT.to_le_bytes()),
            Err(PayloadError::BadSeq(SEQ_LIMIT))
        );
    }

    #[test]
    fn raw_data_must_match_the_geometry() {
        let mut p = encode(&meta(32, 8), &frame(32, 8, 32, 42), 32, Compression::None);
        // Claim 16 rows while sending 8: the length field still matches
        // the sample, but not the geometry.
        p[44..48].copy_from_slice(&16u32.to_le_bytes());
        assert_eq!(
            FrameHeader::decode(&p, p.len()),
            Err(PayloadError::WrongRawSize {
                len: 256,
                width: 32,
                height: 16,
                stride: 32,
                need: 512
            })
        );
    }

    #[test]
    fn a_small_payload_cannot_claim_a_huge_frame() {
        // Rows padded far beyond the width: refused by the header check.
        let mut p = encode(&meta(1, 1), &frame(1, 1, 1, 42), 1, Compression::Lz4);
        p[44..48].copy_from_slice(&16384u32.to_le_bytes());
        p[48..52].copy_from_slice(&65536u32.to_le_bytes());
        assert!(matches!(
            FrameHeader::decode(&p, p.len()),
            Err(PayloadError::BadGeometry { stride: 65536, .. })
        ));
        // A 4096x4096 frame (16 MiB) from a few dozen lz4 bytes: more
        // than lz4 can expand to, refused before scratch grows for it.
        let mut p = encode(&meta(64, 8), &frame(64, 8, 64, 5), 64, Compression::Lz4);
        let compressed = p.len() - HEADER_LEN;
        assert!(
            compressed * 255 < 4096 * 4096,
            "the test needs a small block"
        );
        for at in [40, 44, 48] {
            p[at..at + 4].copy_from_slice(&4096u32.to_le_bytes());
        }
        let header = FrameHeader::decode(&p, p.len()).expect("the header itself is well-formed");
        let (mut scratch, mut dst) = (Vec::new(), vec![0u8; 4096 * 4096]);
        let mut data = &p[HEADER_LEN..];
        let err = read_pixels(&header, &mut data, &mut scratch, &mut dst, 4096);
        assert!(
            matches!(err, Err(PayloadError::Decompress { .. })),
            "{err:?}"
        );
        assert!(
            scratch.capacity() < 1 << 20,
            "scratch grew to {}",
            scratch.capacity()
        );
    }

    #[test]
    fn corrupt_lz4_is_an_error_not_a_panic() {
        let good = encode(&meta(64, 8), &frame(64, 8, 64, 5), 64, Compression::Lz4);
        assert_eq!(good[54], Compression::Lz4.code(), "the pattern compresses");
        let mut dst = vec![0u8; 64 * 8];
        // Every single-byte corruption of the data, and garbage of every
        // length: an error or a frame of the right size, never a panic.
        for at in HEADER_LEN..good.len() {
            for byte in [0x00, 0xFF, 0x5A] {
                let mut p = good.clone();
                p[at] = byte;
                if let Ok(h) = decode_into(&p, &mut Vec::new(), &mut dst, 64) {
                    assert_eq!(h.seq, 42);
                }
            }
        }
        for len in 0..200usize {
            let mut p = good[..HEADER_LEN].to_vec();
            p.extend((0..len).map(|i| (i * 37 % 251) as u8));
            p[56..64].copy_from_slice(&(len as u64).to_le_bytes());
            let r = decode_into(&p, &mut Vec::new(), &mut dst, 64);
            if let Err(e) = r {
                assert!(
                    matches!(e, PayloadError::Decompress { need: 512, .. }),
                    "{e}"
                );
            }
        }
        // Data that decompresses to fewer bytes than the frame needs.
        let small = lz4_flex::block::compress(&[7u8; 100]);
        let mut p = good[..HEADER_LEN].to_vec();
        p.extend_from_slice(&small);
        p[56..64].copy_from_slice(&(small.len() as u64).to_le_bytes());
        assert!(matches!(
            decode_into(&p, &mut Vec::new(), &mut dst, 64),
            Err(PayloadError::Decompress { need: 512, .. })
        ));
    }

    #[test]
    fn a_short_destination_is_an_error() {
        let p = encode(&meta(32, 8), &frame(32, 8, 32, 42), 32, Compression::None);
        let mut dst = vec![0u8; 32 * 7];
        assert!(matches!(
            decode_into(&p, &mut Vec::new(), &mut dst, 32),
            Err(PayloadError::DestinationTooSmall { .. })
        ));
    }
}
