//! The writer side of the debug BGR slot's seqlock (doc/CAMERA.md,
//! doc/PROTOCOL.md "Debug BGR slot seqlock").
//!
//! The BGR slot is never pinned: readers copy it and retry if the producer
//! wrote meanwhile. Every byte of it is written and read as part of a
//! relaxed `AtomicU64`, so a reader that races with the writer reads stale
//! or new words, never undefined memory, and the fences of
//! [`shm_layout::seqlock`] make a copy that the seqlock accepts one whole
//! frame. Only the producer writes it.

use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;

use shm_layout::header::BgrSeqlock;
use shm_layout::seqlock;

use crate::error::SourceError;

/// The debug BGR slot of the frame being published, handed to a source
/// through [`crate::SlotWriter::debug_bgr`]: `height` rows of `3 * width`
/// bytes (B, G, R per pixel), `stride` bytes apart.
pub struct BgrWriter<'a> {
    lock: &'a BgrSeqlock,
    /// First byte of the BGR slot: 8-byte aligned (page aligned, in fact).
    base: *mut u8,
    width: u32,
    height: u32,
    stride: u32,
    /// The sequence number of the frame being published.
    seq: u64,
    _slot: PhantomData<&'a mut [u8]>,
}

impl<'a> BgrWriter<'a> {
    /// Wraps the BGR slot at `base` (`stride * height` bytes).
    ///
    /// # Safety
    /// `base` must be 8-byte aligned and valid for writes of
    /// `stride * height` bytes for `'a`; only this producer
    /// writes that memory (other processes only read it), and nothing in
    /// this process reads or writes it while the writer lives except
    /// through this writer. `stride` must be a multiple of 8 and at least
    /// `3 * width`.
    pub(crate) unsafe fn new(
        lock: &'a BgrSeqlock,
        base: *mut u8,
        width: u32,
        height: u32,
        stride: u32,
        seq: u64,
    ) -> Self {
        debug_assert!(base as usize % 8 == 0);
        debug_assert!(stride % 8 == 0 && u64::from(stride) >= 3 * u64::from(width));
        Self {
            lock,
            base,
            width,
            height,
            stride,
            seq,
            _slot: PhantomData,
        }
    }

    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Frame height in rows.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes from one BGR row to the next in the slot.
    pub fn stride(&self) -> u32 {
        self.stride
    }

    /// The sequence number the BGR frame is stamped with (that of the gray
    /// frame being published).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Copies one BGR frame into the slot under the seqlock, stamped with
    /// this frame's seq and `capture_ns`. `src` holds `height` rows of
    /// `3 * width` bytes, `src_stride` bytes apart.
    ///
    /// Writer protocol ([`shm_layout::seqlock`]): `seqlock` odd (Relaxed),
    /// `fence(Release)`, the pixels and stamps as relaxed atomic stores,
    /// `seqlock` even (Release). A reader that saw any of these stores sees
    /// the odd value or a later one when it re-checks, and discards its copy.
    pub fn write(
        &mut self,
        src: &[u8],
        src_stride: usize,
        capture_ns: u64,
    ) -> Result<(), SourceError> {
        let row_len = 3 * self.width as usize;
        let rows = self.height as usize;
        let needed = src_stride
            .checked_mul(rows - 1)
            .and_then(|n| n.checked_add(row_len));
        if src_stride < row_len || needed.is_none_or(|n| src.len() < n) {
            return Err(SourceError::Failed(format!(
                "a BGR frame of {} bytes with rows {src_stride} bytes apart does not hold {}x{} pixels",
                src.len(),
                self.width,
                self.height
            )));
        }
        let begin = seqlock::begin_write(self.lock);
        let row_words = row_len.div_ceil(8);
        for y in 0..rows {
            let row = &src[y * src_stride..y * src_stride + row_len];
            // SAFETY: row y starts at y * stride < stride * height, inside
            // the slot (`new`'s contract), and is 8-aligned because base and
            // stride are. Its first ceil(3w / 8) words lie inside the row's
            // `stride` bytes (stride is a multiple of 8 and >= 3w, so
            // >= 8 * ceil(3w / 8)). A shared `&[AtomicU64]` over them is
            // sound although other processes read them: the slot is only
            // ever accessed atomically, by every process, and nothing in
            // this process forms a plain reference to it (`new`'s contract).
            let dst = unsafe {
                std::slice::from_raw_parts(
                    self.base.add(y * self.stride as usize) as *const AtomicU64,
                    row_words,
                )
            };
            seqlock::store_bytes(dst, row);
        }
        seqlock::end_write(self.lock, begin, self.seq, capture_ns);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn writes_rows_and_bumps_the_seqlock_by_two() {
        let lock = BgrSeqlock::default();
        let (w, h, stride) = (3u32, 2u32, 16u32);
        let mut slot = vec![0u64; (stride * h / 8) as usize];
        // SAFETY: `slot` is 8-aligned, stride * h bytes, used only here.
        let mut writer =
            unsafe { BgrWriter::new(&lock, slot.as_mut_ptr().cast(), w, h, stride, 7) };
        let src: Vec<u8> = (0..20u8).collect(); // rows 10 bytes apart
        writer.write(&src, 10, 99).unwrap();
        assert_eq!(lock.seqlock.load(Ordering::Relaxed), 2);
        assert_eq!(lock.frame_seq.load(Ordering::Relaxed), 7);
        assert_eq!(lock.capture_ns.load(Ordering::Relaxed), 99);
        let bytes: Vec<u8> = slot.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(&bytes[0..9], &src[0..9]);
        assert_eq!(&bytes[16..25], &src[10..19]);
        writer.write(&src, 10, 100).unwrap();
        assert_eq!(lock.seqlock.load(Ordering::Relaxed), 4);
        assert!(writer.write(&src[..15], 10, 1).is_err(), "too short");
        assert!(writer.write(&src, 8, 1).is_err(), "rows overlap");
        assert_eq!(
            lock.seqlock.load(Ordering::Relaxed),
            4,
            "a refused write leaves the seqlock alone"
        );
    }
}
