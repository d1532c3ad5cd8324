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
//! `doc/LAYOUT.md` §9 gives the same definition in Python;
//! `python/tests/fb_oracle.py` is an independent implementation. Filling
//! and checking are memcpy/memset runs per row (no per-pixel arithmetic).

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
    /// Column of the first wrong byte.
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
    /// A pattern for frames `width` pixels wide.
    pub fn new(width: u32) -> Self {
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
    /// rows). Bytes past `width` in each row are left as they are.
    ///
    /// # Panics
    /// If `dst` is shorter than `stride * (height - 1) + width` or `stride < width`.
    pub fn fill(&self, seq: u64, dst: &mut [u8], stride: usize, height: u32) {
        assert!(stride >= self.width);
        let f = self.frame(seq, height);
        for (y, row) in dst.chunks_mut(stride).take(f.height).enumerate() {
            self.draw_row(&f, y, &mut row[..self.width]);
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
}
