//! The fake camera's self-checking test pattern. The frame with sequence
//! number `seq` has, at column `x` of row `y`, the byte
//! `(x + row_offset(seq, y)) mod 256`, where `row_offset` is the low byte of
//! a SplitMix64 hash of `seq` and `y`. It is a pure function of `seq`, so any
//! consumer can check every byte of a frame; two different frames agree on a
//! row with probability 1/256, so a torn or stale frame is caught on its
//! first wrong row. Filling and checking are one `memcpy`/`memcmp` per row
//! out of a precomputed ramp: no per-pixel arithmetic.

/// SplitMix64's output function.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value added to row `y` of frame `seq`.
pub fn row_offset(seq: u64, y: u32) -> u8 {
    splitmix64(seq.wrapping_mul(0x1_0000_0001) ^ u64::from(y)) as u8
}

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
    ramp: Vec<u8>,
}

impl Pattern {
    /// A pattern for frames `width` pixels wide.
    pub fn new(width: u32) -> Self {
        let width = width as usize;
        let ramp = (0..width + 256).map(|i| i as u8).collect();
        Self { width, ramp }
    }

    fn row(&self, seq: u64, y: u32) -> &[u8] {
        let off = row_offset(seq, y) as usize;
        &self.ramp[off..off + self.width]
    }

    /// Writes frame `seq` into `dst` (rows `stride` bytes apart, `height`
    /// rows). Bytes past `width` in each row are left as they are.
    ///
    /// # Panics
    /// If `dst` is shorter than `stride * (height - 1) + width` or `stride < width`.
    pub fn fill(&self, seq: u64, dst: &mut [u8], stride: usize, height: u32) {
        assert!(stride >= self.width);
        for (y, row) in dst.chunks_mut(stride).take(height as usize).enumerate() {
            row[..self.width].copy_from_slice(self.row(seq, y as u32));
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
        for y in 0..height {
            let start = y as usize * stride;
            let got = src.get(start..start + self.width).unwrap_or(&[]);
            let want = self.row(seq, y);
            if got != want {
                let col = got
                    .iter()
                    .zip(want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len());
                return Err(PatternMismatch {
                    row: y,
                    col: col as u32,
                    found: got.get(col).copied().unwrap_or(0),
                    expected: want[col.min(want.len() - 1)],
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_verify() {
        let p = Pattern::new(100);
        let mut buf = vec![0u8; 128 * 10];
        p.fill(42, &mut buf, 128, 10);
        assert_eq!(p.verify(42, &buf, 128, 10), Ok(()));
        assert_eq!(buf[3 * 128 + 5], 5u8.wrapping_add(row_offset(42, 3)));
        assert!(p.verify(43, &buf, 128, 10).is_err());
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
    fn short_buffer_is_a_mismatch_not_a_panic() {
        let p = Pattern::new(64);
        assert!(p.verify(1, &[0u8; 10], 64, 2).is_err());
    }
}
