//! Checking and copying the numpy arrays `Producer.publish` takes.

use numpy::ndarray::{ArrayView2, ArrayView3, Axis};
use shm_layout::PixelFormat;

/// The array shape and dtype name a format takes.
pub(crate) fn expected(format: PixelFormat, width: u32, height: u32) -> (Vec<usize>, &'static str) {
    let (h, w) = (height as usize, width as usize);
    match format {
        PixelFormat::Gray8 => (vec![h, w], "uint8"),
        PixelFormat::Gray16 => (vec![h, w], "uint16"),
        PixelFormat::Bgr8 | PixelFormat::Rgb8 => (vec![h, w, 3], "uint8"),
    }
}

pub(crate) fn shape_text(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// Copies `src` rows (any strides) into the slot bytes `dst`, rows
/// `stride` bytes apart.
pub(crate) fn copy_rows_u8(src: ArrayView2<'_, u8>, dst: &mut [u8], stride: usize) {
    let w = src.ncols();
    for (row, out) in src.rows().into_iter().zip(dst.chunks_mut(stride)) {
        let out = &mut out[..w];
        match row.as_slice() {
            Some(s) => out.copy_from_slice(s),
            None => out.iter_mut().zip(row.iter()).for_each(|(d, s)| *d = *s),
        }
    }
}

pub(crate) fn copy_rows_u16(src: ArrayView2<'_, u16>, dst: &mut [u8], stride: usize) {
    let w = src.ncols();
    for (row, out) in src.rows().into_iter().zip(dst.chunks_mut(stride)) {
        let out = &mut out[..2 * w];
        match row.as_slice() {
            // Little-endian in the slot = native on supported targets.
            Some(s) => out.copy_from_slice(bytemuck::cast_slice(s)),
            None => {
                for (d, v) in out.chunks_exact_mut(2).zip(row.iter()) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
}

pub(crate) fn copy_rows_rgb(src: ArrayView3<'_, u8>, dst: &mut [u8], stride: usize) {
    let w = src.len_of(Axis(1));
    for (row, out) in src.outer_iter().zip(dst.chunks_mut(stride)) {
        let out = &mut out[..3 * w];
        match row.as_slice() {
            Some(s) => out.copy_from_slice(s),
            None => out.iter_mut().zip(row.iter()).for_each(|(d, s)| *d = *s),
        }
    }
}
