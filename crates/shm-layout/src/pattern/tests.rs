//! Unit tests of `pattern.rs`.
use super::*;

fn frame(seq: u64, width: u32, height: u32) -> Vec<u8> {
    let mut buf = vec![0u8; (width * height) as usize];
    Pattern::new(width).fill(seq, &mut buf, width as usize, height);
    buf
}

/// FNV-1a, to freeze whole frames in a few bytes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn fill_then_verify() {
    let p = Pattern::new(100);
    let mut buf = vec![0u8; 128 * 10];
    p.fill(42, &mut buf, 128, 10);
    assert_eq!(p.verify(42, &buf, 128, 10), Ok(()));
    assert_eq!(buf[3 * 128 + 5], 5u8.wrapping_add(row_offset(42, 3)));
    assert!(p.verify(43, &buf, 128, 10).is_err());
}

/// Pixel values worked out by hand from the definition (and by the
/// independent numpy oracle, python/tests/fb_oracle.py), and whole
/// frames frozen by hash: a change to the hash, the strip, the bars,
/// the ramp, the square, the font or the layout fails here.
#[test]
fn known_answers() {
    // The hash: doc/LAYOUT.md's worked values.
    assert_eq!(splitmix64(0x1_0000_0001), 0x2043_91a6_fd59_956f);
    assert_eq!(row_offset(1, 0), 111);
    assert_eq!(row_offset(5, 0), 214);
    assert_eq!(row_offset(42, 3), 126);

    // 64x48, frame 1: strip columns 0-15, picture columns 16-63
    // (span 48, bars 6 columns wide), 32 bar rows, square side 12,
    // font scale 1 (box at x 17..22, y 1..8 for the one digit "1").
    let f = frame(1, 64, 48);
    let px = |x: usize, y: usize| f[y * 64 + x];
    assert_eq!(px(0, 0), 111); // strip: row_offset(1, 0)
    assert_eq!(px(15, 0), 126);
    // Bars scrolled by 2: column 16+i shows bar (i + 2) / 6.
    assert_eq!(px(16, 20), 235); // (0 + 2) / 6 = bar 0
    assert_eq!(px(20, 20), 206); // (4 + 2) / 6 = bar 1
    assert_eq!(px(63, 20), 235); // (47 + 2) mod 48 = 1 -> bar 0
                                 // Ramp rows (y >= 32): column 16+i is i * 256 / 48.
    assert_eq!(px(16, 40), 0);
    assert_eq!(px(40, 40), 128); // i = 24
    assert_eq!(px(63, 40), 250); // i = 47: 12032 / 48
                                 // Square: x = 16 + bounce(3, 36) = 19, y = bounce(2, 36) = 2, side 12,
                                 // drawn over the bars, under the number's box.
    assert_eq!(px(19 + 11, 2 + 11), 255);
    assert_eq!(px(19 + 12, 2 + 11), 177); // just right of it: i = 15, bar 17 / 6 = 2
                                          // The number "1": box level 0 at (17, 1); the glyph's top row is
                                          // 010, so (18, 2) is box, (19, 2) is glyph.
    assert_eq!(px(17, 1), 0);
    assert_eq!(px(18, 2), 0);
    assert_eq!(px(19, 2), 255);

    // Whole frames, frozen (the numpy oracle makes the same bytes).
    assert_eq!(fnv1a(&frame(1, 64, 48)), 0x12b1_286b_b7b5_1d38);
    assert_eq!(fnv1a(&frame(123_456, 640, 480)), 0x125d_0f63_005f_47d5);
    assert_eq!(fnv1a(&frame(98_765, 1920, 1080)), 0x002f_ab1f_a87b_91c9);
    assert_eq!(fnv1a(&frame(7, 5, 3)), 0x73af_7eb9_be09_7197);
    assert_eq!(fnv1a(&frame(3, 17, 3)), 0x6228_51b1_7671_48c4);
}

#[test]
fn moves_between_frames() {
    let (a, b) = (frame(10, 320, 240), frame(11, 320, 240));
    // Outside the strip the picture differs (bars scroll, square moves).
    let differ =
        (0..240).filter(|y| a[y * 320 + 16..(y + 1) * 320] != b[y * 320 + 16..(y + 1) * 320]);
    assert!(differ.count() > 100);
}

#[test]
fn detects_a_torn_frame() {
    let p = Pattern::new(64);
    let (mut a, mut b) = (vec![0u8; 64 * 50], vec![0u8; 64 * 50]);
    p.fill(7, &mut a, 64, 50);
    p.fill(8, &mut b, 64, 50);
    a[64 * 25..].copy_from_slice(&b[64 * 25..]);
    let err = p.verify(7, &a, 64, 50).unwrap_err();
    assert!(err.row >= 25);
}

#[test]
fn a_single_wrong_byte_anywhere_is_caught() {
    let (w, h) = (100u32, 60u32);
    let p = Pattern::new(w);
    let good = frame(77, w, h);
    for i in (0..good.len()).step_by(37) {
        let mut bad = good.clone();
        bad[i] ^= 1;
        let err = p.verify(77, &bad, w as usize, h).unwrap_err();
        assert_eq!(
            (err.row as usize, err.col as usize),
            (i / w as usize, i % w as usize)
        );
    }
}

#[test]
fn tiny_and_odd_sizes_do_not_panic() {
    for (w, h) in [(1, 1), (2, 1), (16, 4), (17, 3), (5, 200), (300, 2)] {
        for seq in [1, 9, 12_345_678_901] {
            let p = Pattern::new(w);
            let mut buf = vec![0u8; (w * h) as usize];
            p.fill(seq, &mut buf, w as usize, h);
            assert_eq!(
                p.verify(seq, &buf, w as usize, h),
                Ok(()),
                "{w}x{h} seq {seq}"
            );
        }
    }
}

#[test]
fn short_buffer_is_a_mismatch_not_a_panic() {
    let p = Pattern::new(64);
    assert!(p.verify(1, &[0u8; 10], 64, 2).is_err());
}

fn frame_in(seq: u64, width: u32, height: u32, format: PixelFormat, bits: u8) -> Vec<u8> {
    let p = Pattern::with_format(width, format, bits);
    let stride = (width * format.bytes_per_pixel()) as usize;
    let mut buf = vec![0u8; stride * height as usize];
    p.fill(seq, &mut buf, stride, height);
    buf
}

/// Every format is the gray8 frame with each level encoded: checked
/// pixel by pixel against `encode_level`, with known values.
#[test]
fn every_format_encodes_the_gray_frame() {
    use crate::format::ALL_FORMATS;
    let (w, h) = (64u32, 48u32);
    let gray = frame(1, w, h);
    for format in ALL_FORMATS {
        for bits in [0u8, 10, 12] {
            if format != PixelFormat::Gray16 && bits != 0 {
                continue;
            }
            let bpp = format.bytes_per_pixel() as usize;
            let got = frame_in(1, w, h, format, bits);
            for (i, &v) in gray.iter().enumerate() {
                let want = encode_level(format, bits, v);
                assert_eq!(
                    &got[i * bpp..(i + 1) * bpp],
                    &want[..bpp],
                    "{format} {bits} px {i}"
                );
            }
        }
    }
    assert_eq!(encode_level(PixelFormat::Gray16, 0, 255), [0xFF, 0xFF, 0]);
    assert_eq!(encode_level(PixelFormat::Gray16, 12, 255), [0xFF, 0x0F, 0]);
    assert_eq!(encode_level(PixelFormat::Gray16, 12, 111), [0xF6, 0x06, 0]); // 111*257>>4 = 1782
    assert_eq!(encode_level(PixelFormat::Bgr8, 0, 111), [239, 144, 111]);
    assert_eq!(encode_level(PixelFormat::Rgb8, 0, 111), [111, 144, 239]);
    // Gray8 is unchanged by the formats (its frozen hashes above hold);
    // the others are frozen here too.
    assert_eq!(frame_in(1, 64, 48, PixelFormat::Gray8, 0), frame(1, 64, 48));
    for (format, bits, hash) in [
        (PixelFormat::Gray16, 12, 0x7efa_844b_b761_1d89u64),
        (PixelFormat::Gray16, 16, 0xd99e_4929_fc56_c53d),
        (PixelFormat::Bgr8, 8, 0x07da_27e2_254b_25c1),
        (PixelFormat::Rgb8, 8, 0x6724_1ebf_98c1_44c1),
    ] {
        let got = fnv1a(&frame_in(123_456, 640, 480, format, bits));
        assert_eq!(got, hash, "{format} {bits}");
    }
}

#[test]
fn every_format_verifies_and_catches_every_wrong_byte() {
    use crate::format::ALL_FORMATS;
    let (w, h) = (40u32, 30u32);
    for format in ALL_FORMATS {
        let p = Pattern::with_format(w, format, 12);
        let bpp = format.bytes_per_pixel() as usize;
        let stride = (w as usize * bpp).next_multiple_of(64);
        let mut good = vec![0u8; stride * h as usize];
        p.fill(9, &mut good, stride, h);
        assert_eq!(p.verify(9, &good, stride, h), Ok(()), "{format}");
        assert!(p.verify(10, &good, stride, h).is_err(), "{format}");
        for y in (0..h as usize).step_by(7) {
            for b in (0..w as usize * bpp).step_by(5) {
                let mut bad = good.clone();
                bad[y * stride + b] ^= 1;
                let err = p.verify(9, &bad, stride, h).unwrap_err();
                assert_eq!(
                    (err.row as usize, err.col as usize),
                    (y, b / bpp),
                    "{format}"
                );
                assert_ne!(err.found, err.expected);
            }
        }
        assert!(p.verify(9, &good[..10], stride, h).is_err());
    }
}

#[test]
fn encode_level_known_answers() {
    // Gray16: (200 * 257) >> (16 - bits) = 51400 >> (16 - bits); 0 and any
    // count above 16 mean all 16 bits.
    for bits in [0, 16, 17, 255] {
        assert_eq!(
            encode_level(PixelFormat::Gray16, bits, 200),
            [0xC8, 0xC8, 0],
            "{bits}"
        );
    }
    assert_eq!(encode_level(PixelFormat::Gray16, 12, 200), [0x8C, 0x0C, 0]);
    assert_eq!(encode_level(PixelFormat::Gray16, 1, 200), [1, 0, 0]);
    assert_eq!(encode_level(PixelFormat::Gray16, 15, 255), [0xFF, 0x7F, 0]);
    assert_eq!(encode_level(PixelFormat::Gray8, 8, 200), [200, 0, 0]);
    // (R, G, B) = (v, 255 - v, (v + 128) mod 256).
    assert_eq!(encode_level(PixelFormat::Rgb8, 8, 200), [200, 55, 72]);
    assert_eq!(encode_level(PixelFormat::Bgr8, 8, 200), [72, 55, 200]);
}

#[test]
fn a_pattern_reports_its_format_and_significant_bits() {
    let cases = [
        (PixelFormat::Gray8, 0, 8),
        (PixelFormat::Gray8, 5, 8), // invalid for 8 bits: the container's
        (PixelFormat::Gray16, 0, 16),
        (PixelFormat::Gray16, 12, 12),
        (PixelFormat::Gray16, 1, 1),
        (PixelFormat::Gray16, 17, 16),
        (PixelFormat::Bgr8, 0, 8),
        (PixelFormat::Rgb8, 8, 8),
    ];
    for (format, asked, bits) in cases {
        let p = Pattern::with_format(32, format, asked);
        assert_eq!(p.format(), format, "{format} {asked}");
        assert_eq!(p.significant_bits(), bits, "{format} {asked}");
    }
    assert_eq!(Pattern::new(32).format(), PixelFormat::Gray8);
    assert_eq!(Pattern::new(32).significant_bits(), 8);
}

/// One pixel wide, a multi-byte frame's check strip is that one pixel:
/// a wrong byte of it is reported at its row, column 0.
#[test]
fn a_one_pixel_wide_multi_byte_frame_reports_its_wrong_byte() {
    for format in [PixelFormat::Gray16, PixelFormat::Bgr8, PixelFormat::Rgb8] {
        let p = Pattern::with_format(1, format, 0);
        let bpp = format.bytes_per_pixel() as usize;
        let (stride, h) = (8, 3);
        let mut buf = vec![0u8; stride * h];
        p.fill(5, &mut buf, stride, h as u32);
        assert_eq!(p.verify(5, &buf, stride, h as u32), Ok(()), "{format}");
        for b in 0..bpp {
            let mut bad = buf.clone();
            bad[stride + b] ^= 0x10;
            let err = p.verify(5, &bad, stride, h as u32).unwrap_err();
            assert_eq!((err.row, err.col), (1, 0), "{format} byte {b}");
            assert_eq!(err.found, bad[stride + b], "{format} byte {b}");
            assert_eq!(err.expected, buf[stride + b], "{format} byte {b}");
        }
    }
}

/// A pattern 0 pixels wide draws and checks nothing, for any frame number
/// (its rows' check strips are empty).
#[test]
fn a_zero_width_pattern_has_no_bytes() {
    let p = Pattern::new(0);
    let mut buf = [7u8; 24];
    for seq in [1, 2, 3, 1_000_003] {
        p.fill(seq, &mut buf, 8, 3);
        assert_eq!(buf, [7u8; 24], "seq {seq}");
        assert_eq!(p.verify(seq, &buf, 8, 3), Ok(()), "seq {seq}");
    }
}
