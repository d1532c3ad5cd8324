//! The 64-byte header: [`FrameHeader`], written by
//! [`FrameHeader::encode`] and checked field by field by
//! [`FrameHeader::decode`].

use shm_layout::PixelFormat;

use super::{
    Compression, PayloadError, HEADER_LEN, MAGIC, MAX_DIMENSION, MAX_ROW_PADDING, SEQ_LIMIT,
    VERSION,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::decode_into;
    use crate::payload::test_frames::{encode, frame, frame_in, meta, meta_in};

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
}
