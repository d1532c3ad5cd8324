//! The fake camera's self-checking test pattern: a picture worth looking at
//! (scrolling bars, a bouncing square, the frame number drawn in digits, a
//! left-to-right ramp) that is still a pure function of `seq`, so any
//! consumer can check every byte of a frame.
//!
//! Frame `seq` of `width` x `height`, drawn in this order, later on top:
//!
//! 1. **Bars** (rows `y < height * 2 / 3`): eight vertical bars of levels
//!    [`BAR_LEVELS`] across the columns right of the check strip, scrolling
//!    left by 2 columns per frame. **Ramp** (the other rows): a static
//!    left-to-right ramp from 0 to 255 (it shows which way is right).
//! 2. **Square**: side `max(1, height / 4)`, level 255, bouncing between
//!    the edges (3 columns and 2 rows per frame).
//! 3. **Frame number**: `seq` in decimal, in a 3x5 font scaled by
//!    `max(1, height / 64)`, level 255 on a level-0 box, near the top left.
//! 4. **Check strip**: the first `min(16, width)` columns of row `y` hold
//!    `(x + row_offset(seq, y)) mod 256`, `row_offset` being the low byte
//!    of a SplitMix64 hash of `seq` and `y`. Two different frames agree on
//!    a row's strip with probability 1/256, so a torn or stale frame is
//!    caught on its first wrong row even where the picture does not move.
//!
//! That is the gray8 frame. Every other format draws the same picture: each
//! gray level `v` becomes one pixel by [`encode_level`] — gray16
//! `(v * 257) >> (16 - significant_bits)` (so a 12-bit frame spans 0..=4095),
//! bgr8 and rgb8 the colour `(R, G, B) = (v, 255 - v, (v + 128) mod 256)` in
//! their byte order — so the check strip still catches a torn row, and every
//! byte of a frame is still a pure function of `seq`.
//!
//! `doc/LAYOUT.md` §9 gives the same definition in Python;
//! `python/tests/fb_oracle.py` is an independent implementation. Filling
//! and checking are memcpy/memset runs per row (no per-pixel arithmetic).

use crate::format::PixelFormat;

/// The bytes of the pixel that gray level `v` becomes in `format` with
/// `significant_bits` (0 = the whole container); only the first
/// `format.bytes_per_pixel()` bytes of the result are used.
pub fn encode_level(format: PixelFormat, significant_bits: u8, v: u8) -> [u8; 3] {
    let (r, g, b) = (v, 255 - v, v.wrapping_add(128));
    match format {
        PixelFormat::Gray8 => [v, 0, 0],
        PixelFormat::Gray16 => {
            let bits = if significant_bits == 0 || significant_bits > 16 {
                16
            } else {
                significant_bits
            };
            let [lo, hi] = ((u32::from(v) * 257) >> (16 - bits)).to_le_bytes()[..2] else {
                unreachable!("a u32 has four bytes")
            };
            [lo, hi, 0]
        }
        PixelFormat::Bgr8 => [b, g, r],
        PixelFormat::Rgb8 => [r, g, b],
    }
}

/// SplitMix64's output function.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value added to the check strip of row `y` of frame `seq`.
pub fn row_offset(seq: u64, y: u32) -> u8 {
    splitmix64(seq.wrapping_mul(0x1_0000_0001) ^ u64::from(y)) as u8
}

/// Width of the check strip (fewer columns if the frame is narrower).
pub const STRIP: u32 = 16;

/// The bars' levels, left to right.
pub const BAR_LEVELS: [u8; 8] = [235, 206, 177, 148, 119, 90, 61, 32];

/// Columns the bars scroll left per frame.
const BAR_STEP: u64 = 2;
/// Columns and rows the square moves per frame.
const SQUARE_STEP: (u64, u64) = (3, 2);

/// The 3x5 digits 0-9: five rows of three bits, top row in the high bits,
/// the left column in each row's high bit.
const FONT: [u16; 10] = [
    0b111_101_101_101_111, // 0
    0b010_110_010_010_111, // 1
    0b111_001_111_100_111, // 2
    0b111_001_111_001_111, // 3
    0b101_101_111_001_001, // 4
    0b111_100_111_001_111, // 5
    0b111_100_111_101_111, // 6
    0b111_001_001_001_001, // 7
    0b111_101_111_101_111, // 8
    0b111_101_111_001_111, // 9
];

/// Where a frame first differs from its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternMismatch {
    /// Row of the first wrong byte.
    pub row: u32,
    /// Pixel column of the first wrong byte (for a multi-byte format, the
    /// pixel the byte belongs to).
    pub col: u32,
    /// The byte found.
    pub found: u8,
    /// The byte expected.
    pub expected: u8,
}

/// A pattern generator and checker for one frame width.
#[derive(Debug, Clone)]
pub struct Pattern {
    width: usize,
    /// Bytes 0, 1, .., 255, 0, .. (`STRIP + 256` of them): the check strip.
    strip_ramp: Vec<u8>,
    /// The bars over the picture's columns, twice over, so that a scrolled
    /// row is one slice of it.
    bars: Vec<u8>,
    /// The ramp rows' picture columns.
    ramp: Vec<u8>,
    /// The pixel format frames are drawn in.
    format: PixelFormat,
    /// Its significant bits (the container's when the format is 8-bit).
    significant_bits: u8,
    /// The gray16 pixel of each gray level (zeros unless gray16).
    lut16: [[u8; 2]; 256],
    /// The bgr8/rgb8 pixel of each gray level (zeros unless colour).
    lut3: [[u8; 3]; 256],
}

/// What is drawn where in one frame (everything but the per-row strip).
struct Frame {
    seq: u64,
    height: usize,
    /// Rows of bars (the rest are ramp rows).
    bar_rows: usize,
    /// How far the bars have scrolled.
    shift: usize,
    /// The square's left column, top row and side.
    square: (usize, usize, usize),
    /// The number's digits, its box's top-left corner and font scale.
    digits: Vec<u8>,
    text_at: (usize, usize),
    scale: usize,
}

/// Position along a back-and-forth path over `0..=span`.
fn bounce(t: u64, span: usize) -> usize {
    let span = span as u64;
    if span == 0 {
        return 0;
    }
    let m = t % (2 * span);
    (if m <= span { m } else { 2 * span - m }) as usize
}

impl Pattern {
    /// A gray8 pattern for frames `width` pixels wide.
    pub fn new(width: u32) -> Self {
        Self::with_format(width, PixelFormat::Gray8, 0)
    }

    /// A pattern for frames `width` pixels wide in `format`, with
    /// `significant_bits` for gray16 (0 = 16; ignored for 8-bit formats).
    pub fn with_format(width: u32, format: PixelFormat, significant_bits: u8) -> Self {
        let significant_bits = format
            .check_significant_bits(significant_bits)
            .unwrap_or(format.container_bits());
        let mut lut16 = [[0u8; 2]; 256];
        let mut lut3 = [[0u8; 3]; 256];
        for v in 0..=255u8 {
            let [a, b, c] = encode_level(format, significant_bits, v);
            lut16[v as usize] = [a, b];
            lut3[v as usize] = [a, b, c];
        }
        let width = width as usize;
        let strip = width.min(STRIP as usize);
        let span = width - strip;
        let strip_ramp = (0..strip + 256).map(|i| i as u8).collect();
        let bar = |i: usize| BAR_LEVELS[i * BAR_LEVELS.len() / span.max(1)];
        let bars = (0..2 * span).map(|i| bar(i % span)).collect();
        let ramp = (0..span)
            .map(|i| (i * 256 / span.max(1)).min(255) as u8)
            .collect();
        Self {
            width,
            strip_ramp,
            bars,
            ramp,
            format,
            significant_bits,
            lut16,
            lut3,
        }
    }

    /// The format frames are drawn in.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The significant bits recorded for it.
    pub fn significant_bits(&self) -> u8 {
        self.significant_bits
    }

    /// Bytes of one row without padding (`width * bytes_per_pixel`).
    fn row_bytes(&self) -> usize {
        self.width * self.format.bytes_per_pixel() as usize
    }

    /// Expands a gray row into `out` (`row_bytes()` bytes) in the format
    /// (fixed-size copies from a 256-entry table: no per-pixel arithmetic).
    fn expand(&self, gray: &[u8], out: &mut [u8]) {
        match self.format {
            PixelFormat::Gray8 => out.copy_from_slice(gray),
            PixelFormat::Gray16 => {
                for (&v, px) in gray.iter().zip(out.chunks_exact_mut(2)) {
                    px.copy_from_slice(&self.lut16[v as usize]);
                }
            }
            PixelFormat::Bgr8 | PixelFormat::Rgb8 => {
                for (&v, px) in gray.iter().zip(out.chunks_exact_mut(3)) {
                    px.copy_from_slice(&self.lut3[v as usize]);
                }
            }
        }
    }

    fn strip(&self) -> usize {
        self.width.min(STRIP as usize)
    }

    fn frame(&self, seq: u64, height: u32) -> Frame {
        let height = height as usize;
        let strip = self.strip();
        let span = self.width - strip;
        let side = (height / 4).max(1).min(span.max(1));
        let square = (
            strip + bounce(seq.wrapping_mul(SQUARE_STEP.0), span.saturating_sub(side)),
            bounce(seq.wrapping_mul(SQUARE_STEP.1), height.saturating_sub(side)),
            side,
        );
        let scale = (height / 64).max(1);
        Frame {
            seq,
            height,
            bar_rows: height * 2 / 3,
            shift: if span == 0 {
                0
            } else {
                (seq.wrapping_mul(BAR_STEP) % span as u64) as usize
            },
            square,
            digits: seq.to_string().bytes().map(|b| b - b'0').collect(),
            text_at: (strip + scale, scale),
            scale,
        }
    }

    /// Writes row `y` of `f` into `row` (exactly `width` bytes).
    fn draw_row(&self, f: &Frame, y: usize, row: &mut [u8]) {
        let strip = self.strip();
        let span = self.width - strip;
        // 1. Bars or ramp.
        let picture = &mut row[strip..];
        if y < f.bar_rows {
            picture.copy_from_slice(&self.bars[f.shift..f.shift + span]);
        } else {
            picture.copy_from_slice(&self.ramp);
        }
        // 2. The square.
        let (sx, sy, side) = f.square;
        if span > 0 && (sy..sy + side).contains(&y) {
            row[sx..(sx + side).min(self.width)].fill(255);
        }
        // 3. The frame number: a level-0 box one font pixel wider than the
        //    glyphs all round, 255 for the glyphs' pixels.
        let s = f.scale;
        let (bx, by) = f.text_at;
        let box_w = (f.digits.len() * 4 + 1) * s;
        if span > 0 && (by..by + 7 * s).contains(&y) {
            row[bx.min(self.width)..(bx + box_w).min(self.width)].fill(0);
            let glyph_row = (y - by) / s;
            if (1..=5).contains(&glyph_row) {
                let shift = 3 * (5 - glyph_row);
                for (i, &d) in f.digits.iter().enumerate() {
                    let bits = (FONT[d as usize] >> shift) & 0b111;
                    for c in 0..3 {
                        if bits & (0b100 >> c) != 0 {
                            let x = bx + (1 + 4 * i + c) * s;
                            row[x.min(self.width)..(x + s).min(self.width)].fill(255);
                        }
                    }
                }
            }
        }
        // 4. The check strip.
        let off = row_offset(f.seq, y as u32) as usize;
        row[..strip].copy_from_slice(&self.strip_ramp[off..off + strip]);
    }

    /// Writes frame `seq` into `dst` (rows `stride` bytes apart, `height`
    /// rows). Bytes past `width * bytes_per_pixel` in each row are left as
    /// they are.
    ///
    /// # Panics
    /// If `dst` is shorter than `stride * (height - 1) + width *
    /// bytes_per_pixel` or `stride < width * bytes_per_pixel`.
    pub fn fill(&self, seq: u64, dst: &mut [u8], stride: usize, height: u32) {
        let row_bytes = self.row_bytes();
        assert!(stride >= row_bytes);
        let f = self.frame(seq, height);
        if self.format == PixelFormat::Gray8 {
            for (y, row) in dst.chunks_mut(stride).take(f.height).enumerate() {
                self.draw_row(&f, y, &mut row[..self.width]);
            }
            return;
        }
        let mut gray = vec![0u8; self.width];
        for (y, row) in dst.chunks_mut(stride).take(f.height).enumerate() {
            self.draw_row(&f, y, &mut gray);
            self.expand(&gray, &mut row[..row_bytes]);
        }
    }

    /// Checks that `src` holds exactly frame `seq`.
    pub fn verify(
        &self,
        seq: u64,
        src: &[u8],
        stride: usize,
        height: u32,
    ) -> Result<(), PatternMismatch> {
        if self.format != PixelFormat::Gray8 {
            return self.verify_expanded(seq, src, stride, height);
        }
        let f = self.frame(seq, height);
        let mut want = vec![0u8; self.width];
        for y in 0..f.height {
            let start = y * stride;
            let got = src.get(start..start + self.width).unwrap_or(&[]);
            // The strip first: it tells a torn or stale row at once.
            let off = row_offset(seq, y as u32) as usize;
            let strip = &self.strip_ramp[off..off + self.strip()];
            self.draw_row(&f, y, &mut want);
            if got != want.as_slice() {
                let first_strip_miss = got.iter().zip(strip).position(|(a, b)| a != b);
                let col = first_strip_miss
                    .or_else(|| got.iter().zip(&want).position(|(a, b)| a != b))
                    .unwrap_or(got.len());
                return Err(PatternMismatch {
                    row: y as u32,
                    col: col as u32,
                    found: got.get(col).copied().unwrap_or(0),
                    expected: want[col.min(want.len().saturating_sub(1))],
                });
            }
        }
        Ok(())
    }

    /// [`Pattern::verify`] for the formats drawn through the LUT: the whole
    /// row of `width * bytes_per_pixel` bytes, the strip's bytes first.
    fn verify_expanded(
        &self,
        seq: u64,
        src: &[u8],
        stride: usize,
        height: u32,
    ) -> Result<(), PatternMismatch> {
        let bpp = self.format.bytes_per_pixel() as usize;
        let row_bytes = self.row_bytes();
        let strip_bytes = self.strip() * bpp;
        let f = self.frame(seq, height);
        let mut gray = vec![0u8; self.width];
        let mut want = vec![0u8; row_bytes];
        for y in 0..f.height {
            let start = y * stride;
            let got = src.get(start..start + row_bytes).unwrap_or(&[]);
            self.draw_row(&f, y, &mut gray);
            self.expand(&gray, &mut want);
            if got != want.as_slice() {
                let first_miss = |a: &[u8], b: &[u8]| a.iter().zip(b).position(|(x, y)| x != y);
                let byte = first_miss(&got[..got.len().min(strip_bytes)], &want[..strip_bytes])
                    .or_else(|| first_miss(got, &want))
                    .unwrap_or(got.len());
                return Err(PatternMismatch {
                    row: y as u32,
                    col: (byte / bpp) as u32,
                    found: got.get(byte).copied().unwrap_or(0),
                    expected: want[byte.min(want.len().saturating_sub(1))],
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
}
