//! The debug BGR slot's seqlock (doc/PROTOCOL.md §16): the writer's and the
//! reader's steps over a [`BgrSeqlock`] and the slot's words, written once
//! here for the producer (`BgrWriter`), the consumer (`read_bgr`) and the
//! loom model (`tests/loom_entry.rs`), which checks them as they are.
//!
//! The slot is never pinned: a reader copies it and keeps the copy only if
//! no write overlapped it. Every word of the slot is an aligned 8-byte
//! atomic on both sides, loaded and stored Relaxed, so a copy that races
//! with a write is a discarded copy, never a data race.
//!
//! Orderings:
//! - writer: `seqlock` odd (Relaxed), `fence(Release)`, the words and the
//!   stamps (Relaxed), `seqlock` even (Release);
//! - reader: `seqlock` (Acquire; even and not 0, else no copy), the stamps
//!   and the words (Relaxed), `fence(Acquire)`, `seqlock` again (Relaxed);
//!   the copy is whole if both values are equal.
//!
//! Why: if the copy read any word stored by a later write, the writer's
//! Release fence (sequenced after its odd store) synchronises with the
//! reader's Acquire fence (sequenced after the load that read the word), so
//! the second `seqlock` load sees the odd value or a later one, and the
//! copy is discarded. If both values are equal, the first load synchronised
//! with the Release store that ended that write, so every word read is that
//! write's or later, and by the above not later.

use crate::header::BgrSeqlock;
use crate::sync::{fence, AtomicU64, Ordering};

/// Writer: starts a write; returns the odd value to pass to [`end_write`].
/// The value read is even unless an earlier write never finished (a panic
/// in between); either way the returned value is odd.
pub fn begin_write(lock: &BgrSeqlock) -> u64 {
    begin_write_with(lock, Ordering::Release)
}

/// [`begin_write`] with a chosen ordering for its fence, `Relaxed` meaning
/// no fence at all (`fence` refuses `Relaxed`); exists so the loom model can
/// show that a weaker fence is caught (a negative control). Never use it
/// otherwise.
#[doc(hidden)]
pub fn begin_write_with(lock: &BgrSeqlock, fence_order: Ordering) -> u64 {
    let begin = lock.seqlock.load(Ordering::Relaxed) | 1;
    lock.seqlock.store(begin, Ordering::Relaxed);
    // Release fence: the odd store is ordered before every store below, for
    // any reader whose Acquire fence follows a load of one of them.
    if fence_order != Ordering::Relaxed {
        fence(fence_order);
    }
    begin
}

/// Writer, between [`begin_write`] and [`end_write`]: stores `src` into the
/// first `src.len().div_ceil(8)` words of `dst`, 8 bytes per word in native
/// byte order, the last word's missing bytes zero. Relaxed stores: the
/// seqlock orders them.
///
/// # Panics
/// If `dst` has fewer words than that.
pub fn store_bytes(dst: &[AtomicU64], src: &[u8]) {
    let words = src.chunks_exact(8);
    let tail = words.remainder();
    let last = words.len();
    for (cell, chunk) in dst.iter().zip(words) {
        // A constant 8 bytes: one load.
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        cell.store(u64::from_ne_bytes(word), Ordering::Relaxed);
    }
    if !tail.is_empty() {
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        dst[last].store(u64::from_ne_bytes(word), Ordering::Relaxed);
    }
}

/// Writer: stamps the frame (`frame_seq`, `capture_ns`) and ends the write
/// that [`begin_write`] started (`begin` is its value).
pub fn end_write(lock: &BgrSeqlock, begin: u64, frame_seq: u64, capture_ns: u64) {
    end_write_with(lock, begin, frame_seq, capture_ns, Ordering::Release);
}

/// [`end_write`] with a chosen ordering for the final (even) store; exists
/// for the loom model's negative controls. Never use it otherwise.
#[doc(hidden)]
pub fn end_write_with(
    lock: &BgrSeqlock,
    begin: u64,
    frame_seq: u64,
    capture_ns: u64,
    order: Ordering,
) {
    lock.frame_seq.store(frame_seq, Ordering::Relaxed);
    lock.capture_ns.store(capture_ns, Ordering::Relaxed);
    // Release: every store of this write happens-before a reader's Acquire
    // load that sees this even value.
    lock.seqlock.store(begin + 1, order);
}

/// What one [`try_read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Nothing was ever written (the seqlock is 0); nothing was copied.
    Empty,
    /// A write is in progress (the seqlock is odd); nothing was copied.
    Writing,
    /// The copy overlapped a write: discard it and try again.
    Overlapped,
    /// The copy is one whole frame, stamped with these.
    Copied {
        /// The frame's sequence number.
        frame_seq: u64,
        /// Its capture time.
        capture_ns: u64,
    },
}

/// Reader: one attempt at copying `words` into `copy` (which must be at
/// least as long) under the seqlock. Only a [`ReadOutcome::Copied`] copy may
/// be used; the caller decides how to wait and how often to retry.
///
/// # Panics
/// If `copy` is shorter than `words`.
pub fn try_read(lock: &BgrSeqlock, words: &[AtomicU64], copy: &mut [u64]) -> ReadOutcome {
    try_read_with(lock, words, copy, Ordering::Acquire)
}

/// [`try_read`] with a chosen ordering for its fence, `Relaxed` meaning no
/// fence at all; exists for the loom model's negative controls. Never use
/// it otherwise.
#[doc(hidden)]
pub fn try_read_with(
    lock: &BgrSeqlock,
    words: &[AtomicU64],
    copy: &mut [u64],
    fence_order: Ordering,
) -> ReadOutcome {
    assert!(
        copy.len() >= words.len(),
        "the copy is shorter than the slot"
    );
    // Acquire: pairs with the writer's even Release store, so the stores of
    // the write it ended are visible to the copy below.
    let s1 = lock.seqlock.load(Ordering::Acquire);
    if s1 == 0 {
        return ReadOutcome::Empty;
    }
    if s1 % 2 == 1 {
        return ReadOutcome::Writing;
    }
    let frame_seq = lock.frame_seq.load(Ordering::Relaxed);
    let capture_ns = lock.capture_ns.load(Ordering::Relaxed);
    for (w, cell) in copy.iter_mut().zip(words) {
        *w = cell.load(Ordering::Relaxed);
    }
    // Acquire fence: if the copy saw any store of a later write, the
    // writer's Release fence after its odd store synchronises with this
    // fence, so the load below sees the odd value or later.
    if fence_order != Ordering::Relaxed {
        fence(fence_order);
    }
    let s2 = lock.seqlock.load(Ordering::Relaxed);
    if s2 == s1 {
        ReadOutcome::Copied {
            frame_seq,
            capture_ns,
        }
    } else {
        ReadOutcome::Overlapped
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_write_then_a_read_round_trips() {
        let lock = BgrSeqlock::default();
        let words: Vec<AtomicU64> = (0..3).map(|_| AtomicU64::new(u64::MAX)).collect();
        let mut copy = [0u64; 3];
        assert_eq!(try_read(&lock, &words, &mut copy), ReadOutcome::Empty);
        let begin = begin_write(&lock);
        assert_eq!(begin, 1);
        assert_eq!(try_read(&lock, &words, &mut copy), ReadOutcome::Writing);
        let src: Vec<u8> = (1..=11).collect();
        store_bytes(&words, &src);
        end_write(&lock, begin, 7, 99);
        assert_eq!(
            try_read(&lock, &words, &mut copy),
            ReadOutcome::Copied {
                frame_seq: 7,
                capture_ns: 99
            }
        );
        let bytes: Vec<u8> = copy.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(&bytes[..11], &src[..]);
        assert_eq!(&bytes[11..16], &[0; 5], "the tail word is zero-padded");
        assert_eq!(copy[2], u64::MAX, "words past the bytes are untouched");
        assert_eq!(begin_write(&lock), 3);
    }

    #[test]
    fn an_unfinished_write_still_begins_odd() {
        let lock = BgrSeqlock::default();
        lock.seqlock.store(5, Ordering::Relaxed); // a writer panicked mid-write
        assert_eq!(begin_write(&lock), 5);
        end_write(&lock, 5, 1, 1);
        assert_eq!(lock.seqlock.load(Ordering::Relaxed), 6);
    }

    /// The negative controls' "no fence" (`Relaxed`) still writes and reads
    /// (`fence` itself refuses `Relaxed`), and a fenced read of a fenceless
    /// write agrees.
    #[test]
    fn the_fenceless_variants_write_and_read() {
        let lock = BgrSeqlock::default();
        let words: Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(0)).collect();
        let mut copy = [0u64; 2];
        let begin = begin_write_with(&lock, Ordering::Relaxed);
        assert_eq!(begin, 1);
        assert_eq!(
            try_read_with(&lock, &words, &mut copy, Ordering::Relaxed),
            ReadOutcome::Writing
        );
        store_bytes(&words, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        end_write(&lock, begin, 4, 40);
        let copied = ReadOutcome::Copied {
            frame_seq: 4,
            capture_ns: 40,
        };
        assert_eq!(
            try_read_with(&lock, &words, &mut copy, Ordering::Relaxed),
            copied
        );
        assert_eq!(
            copy,
            [
                u64::from_ne_bytes([1, 2, 3, 4, 5, 6, 7, 8]),
                u64::from_ne_bytes([9, 0, 0, 0, 0, 0, 0, 0])
            ]
        );
        assert_eq!(
            try_read_with(&lock, &words, &mut copy, Ordering::Acquire),
            copied
        );
    }
}
