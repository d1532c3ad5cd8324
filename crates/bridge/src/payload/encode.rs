//! Encoding a frame into a payload: the rows packed, raw or as one lz4
//! block, behind the header ([`encode_frame`]).

use shm_layout::PixelFormat;

use super::{Compression, FrameHeader, HEADER_LEN};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::test_frames::{encode, frame, meta};

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
}
