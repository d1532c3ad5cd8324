//! Decoding a payload's pixels into a frame, raw or lz4, never trusting
//! the sender ([`read_pixels`], [`decode_into`]).

use std::io::Read;

use super::{Compression, FrameHeader, PayloadError, HEADER_LEN};

/// The most an lz4 block can expand: each byte of a block yields at most
/// 255 bytes of output. A header that claims more is refused before any
/// memory is set aside for it.
const LZ4_MAX_RATIO: u64 = 255;

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
    use crate::payload::test_frames::{encode, frame, frame_in, meta, meta_in};
    use crate::payload::FrameMeta;
    use shm_layout::pattern::Pattern;
    use shm_layout::PixelFormat;

    /// (format, significant bits) of every case the bridge carries.
    const FORMATS: [(PixelFormat, u8); 5] = [
        (PixelFormat::Gray8, 8),
        (PixelFormat::Gray16, 16),
        (PixelFormat::Gray16, 12),
        (PixelFormat::Bgr8, 8),
        (PixelFormat::Rgb8, 8),
    ];

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
