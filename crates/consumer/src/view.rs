//! [`FrameView`]: what algorithm code sees of a frame — geometry, pixel
//! format, identity, timestamps and the pixel bytes — whatever carried it (a
//! pinned shared memory slot, or a buffer read from a pipe in `framebus
//! bench --transport pipe`) — and its typed views: `u16` rows for gray16,
//! pixel triples for bgr8 and rgb8.

use shm_layout::PixelFormat;

/// Why a typed view of a frame is not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The frame is in another pixel format than the view asked for.
    #[error("the frame is {found}, not {wanted}: check `format()` before asking for a typed view")]
    WrongFormat {
        /// The format(s) the view needs, in words.
        wanted: &'static str,
        /// The frame's format.
        found: PixelFormat,
    },
    /// The pixel bytes are not aligned for `u16` values, or the stride is
    /// odd (a slot from a validated bus never is; a hand-made view may be).
    #[error("the gray16 pixels are not 2-byte aligned (address {addr:#x}, stride {stride}): they cannot be viewed as u16")]
    Misaligned {
        /// The address of the first pixel byte.
        addr: usize,
        /// The row stride in bytes.
        stride: u32,
    },
}

/// A borrowed frame: `height` rows of `width` pixels of `format`, `stride`
/// bytes apart, in `pixels`.
#[derive(Debug, Clone, Copy)]
pub struct FrameView<'a> {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in rows.
    pub height: u32,
    /// Bytes from one row to the next (>= width * bytes per pixel).
    pub stride: u32,
    /// The pixel format.
    pub format: PixelFormat,
    /// Significant bits per value (8 for 8-bit formats; 1..=16 for gray16).
    pub significant_bits: u8,
    /// The frame's sequence number.
    pub seq: u64,
    /// Capture time, `CLOCK_MONOTONIC` nanoseconds.
    pub capture_ns: u64,
    /// All pixel bytes (`stride * height`; bytes past `width * bytes per
    /// pixel` in a row are padding).
    pub pixels: &'a [u8],
}

/// The rows of a gray16 frame as `u16` values: alignment was checked once
/// when it was made ([`FrameView::as_u16`]), so rows are plain sub-slices.
#[derive(Debug, Clone, Copy)]
pub struct U16Rows<'a> {
    values: &'a [u16],
    width: usize,
    /// Stride in `u16` values.
    step: usize,
    height: usize,
}

impl<'a> U16Rows<'a> {
    /// Row `y` without its padding (`width` values).
    ///
    /// # Panics
    /// If `y >= height`.
    pub fn row(&self, y: u32) -> &'a [u16] {
        let y = y as usize;
        assert!(y < self.height, "row {y} out of {} rows", self.height);
        &self.values[y * self.step..y * self.step + self.width]
    }

    /// Every row, top to bottom, without padding.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u16]> + 'a {
        let (values, width, step) = (self.values, self.width, self.step);
        (0..self.height).map(move |y| &values[y * step..y * step + width])
    }

    /// All values including row padding (`stride / 2` per row).
    pub fn all(&self) -> &'a [u16] {
        self.values
    }

    /// Values from one row to the next (`stride / 2`).
    pub fn step(&self) -> usize {
        self.step
    }
}

impl<'a> FrameView<'a> {
    /// Bytes of one row without padding (`width * bytes_per_pixel`).
    pub fn row_bytes(&self) -> usize {
        self.width as usize * self.format.bytes_per_pixel() as usize
    }

    /// Row `y`'s bytes without padding (`width * bytes_per_pixel` bytes).
    ///
    /// # Panics
    /// If `y >= height`.
    pub fn row(&self, y: u32) -> &'a [u8] {
        assert!(y < self.height, "row {y} out of {} rows", self.height);
        let start = y as usize * self.stride as usize;
        &self.pixels[start..start + self.row_bytes()]
    }

    /// A gray16 frame's values, rows `stride / 2` values apart. The
    /// alignment (of the pixels and of the stride) is checked here, once;
    /// rows are then taken from [`U16Rows`] without further checks. The
    /// values are little-endian in memory, which is native on the targets
    /// framebus supports (doc/LAYOUT.md §1).
    pub fn as_u16(&self) -> Result<U16Rows<'a>, FormatError> {
        if self.format != PixelFormat::Gray16 {
            return Err(FormatError::WrongFormat {
                wanted: "gray16",
                found: self.format,
            });
        }
        let misaligned = FormatError::Misaligned {
            addr: self.pixels.as_ptr() as usize,
            stride: self.stride,
        };
        if self.stride % 2 != 0 {
            return Err(misaligned);
        }
        // A whole number of u16 values: a trailing odd byte (never in a
        // slot, whose length is stride * height) is left out.
        let even = &self.pixels[..self.pixels.len() & !1];
        let values: &[u16] = bytemuck::try_cast_slice(even).map_err(|_| misaligned)?;
        Ok(U16Rows {
            values,
            width: self.width as usize,
            step: self.stride as usize / 2,
            height: self.height as usize,
        })
    }

    /// Row `y` of a colour frame (bgr8 or rgb8) as pixel triples, in the
    /// frame's byte order ([`FrameView::format`] says which).
    ///
    /// # Panics
    /// If `y >= height`.
    pub fn row_triples(&self, y: u32) -> Result<&'a [[u8; 3]], FormatError> {
        if self.format.channels() != 3 {
            return Err(FormatError::WrongFormat {
                wanted: "bgr8 or rgb8",
                found: self.format,
            });
        }
        // [u8; 3] has alignment 1: the cast cannot fail on a row of
        // `3 * width` bytes.
        Ok(bytemuck::cast_slice(self.row(y)))
    }

    /// The frame as tightly packed R, G, B bytes (`width * height * 3`),
    /// whatever its format: gray is repeated on all three channels (gray16
    /// scaled to 8 bits from its significant bits), bgr8 is reordered.
    pub fn to_rgb(&self) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = Vec::with_capacity(w * h * 3);
        match self.format {
            PixelFormat::Gray8 => {
                for y in 0..self.height {
                    out.extend(self.row(y).iter().flat_map(|&v| [v, v, v]));
                }
            }
            PixelFormat::Gray16 => {
                let shift = self.significant_bits.clamp(8, 16) - 8;
                for y in 0..self.height {
                    let row = self.row(y).chunks_exact(2);
                    out.extend(row.flat_map(|b| {
                        let v = (u16::from_le_bytes([b[0], b[1]]) >> shift).min(255) as u8;
                        [v, v, v]
                    }));
                }
            }
            PixelFormat::Rgb8 => {
                for y in 0..self.height {
                    out.extend_from_slice(self.row(y));
                }
            }
            PixelFormat::Bgr8 => {
                for y in 0..self.height {
                    out.extend(self.row(y).chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(format: PixelFormat, pixels: &[u8], stride: u32) -> FrameView<'_> {
        FrameView {
            width: 2,
            height: 2,
            stride,
            format,
            significant_bits: format.container_bits(),
            seq: 1,
            capture_ns: 0,
            pixels,
        }
    }

    #[test]
    fn typed_views_by_format() {
        // gray16, stride 6 (one u16 of padding per row).
        let words: [u16; 6] = [1, 0x0203, 9, 0xFFFF, 5, 9];
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        let v = view(PixelFormat::Gray16, bytes, 6);
        let rows = v.as_u16().unwrap();
        assert_eq!(rows.row(0), &[1, 0x0203]);
        assert_eq!(rows.row(1), &[0xFFFF, 5]);
        assert_eq!(rows.iter().count(), 2);
        assert_eq!(v.row(1), &[0xFF, 0xFF, 5, 0]);
        assert_eq!(v.to_rgb(), [0, 0, 0, 2, 2, 2, 255, 255, 255, 0, 0, 0]);
        assert!(matches!(
            v.row_triples(0),
            Err(FormatError::WrongFormat { .. })
        ));
        // Misaligned: the same values one byte further on.
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(bytes);
        let v = view(PixelFormat::Gray16, &shifted[1..], 6);
        assert!(matches!(v.as_u16(), Err(FormatError::Misaligned { .. })));
        assert!(matches!(
            view(PixelFormat::Gray16, bytes, 5).as_u16(),
            Err(FormatError::Misaligned { .. })
        ));

        // bgr8 and rgb8: the same colours, one reordered by to_rgb.
        let bgr = [3, 2, 1, 6, 5, 4, 0, 0, 9, 8, 7, 12, 11, 10, 0, 0];
        let v = view(PixelFormat::Bgr8, &bgr, 8);
        assert_eq!(v.row_triples(1).unwrap(), &[[9, 8, 7], [12, 11, 10]]);
        assert_eq!(v.to_rgb(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let rgb = [1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0];
        assert_eq!(view(PixelFormat::Rgb8, &rgb, 8).to_rgb(), v.to_rgb());
        assert!(matches!(
            v.as_u16(),
            Err(FormatError::WrongFormat {
                found: PixelFormat::Bgr8,
                ..
            })
        ));
        // gray8
        let g = view(PixelFormat::Gray8, &[1, 2, 0, 3, 4, 0], 3);
        assert_eq!(g.row(1), &[3, 4]);
        assert_eq!(g.to_rgb(), [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
    }

    #[test]
    fn gray16_to_rgb_scales_from_significant_bits() {
        let words: [u16; 4] = [4095, 2048, 0, 16];
        let v = FrameView {
            significant_bits: 12,
            ..view(PixelFormat::Gray16, bytemuck::cast_slice(&words), 4)
        };
        assert_eq!(v.to_rgb(), [255, 255, 255, 128, 128, 128, 0, 0, 0, 1, 1, 1]);
    }
}
