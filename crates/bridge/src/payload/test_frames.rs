//! Test frames for the payload tests: metadata, patterned pixels and
//! their encoding.

use shm_layout::pattern::Pattern;
use shm_layout::PixelFormat;

use super::{encode_frame, Compression, FrameMeta};

pub(super) fn meta(width: u32, height: u32) -> FrameMeta {
    meta_in(width, height, PixelFormat::Gray8, 8)
}

pub(super) fn meta_in(width: u32, height: u32, format: PixelFormat, bits: u8) -> FrameMeta {
    FrameMeta {
        source_instance: 0x1122_3344_5566_7788,
        seq: 42,
        capture_ns: 1_000,
        publish_ns: 2_000,
        width,
        height,
        format,
        significant_bits: bits,
    }
}

pub(super) fn frame(width: u32, height: u32, stride: usize, seq: u64) -> Vec<u8> {
    frame_in(width, height, stride, seq, PixelFormat::Gray8, 8)
}

pub(super) fn frame_in(
    width: u32,
    height: u32,
    stride: usize,
    seq: u64,
    format: PixelFormat,
    bits: u8,
) -> Vec<u8> {
    let mut px = vec![0xEEu8; stride * height as usize];
    Pattern::with_format(width, format, bits).fill(seq, &mut px, stride, height);
    px
}

pub(super) fn encode(m: &FrameMeta, px: &[u8], stride: usize, c: Compression) -> Vec<u8> {
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    encode_frame(m, px, stride, c, &mut scratch, &mut out);
    out
}
