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
mod tests;
