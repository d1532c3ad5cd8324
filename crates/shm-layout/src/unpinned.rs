//! Copying the newest frame without a pin (doc/PROTOCOL.md §19): how a
//! reader that holds no consumer entry — `framebus snapshot` on a bus whose
//! every entry is taken — gets one whole frame out of a slot the producer
//! may rewrite under it, and the producer's step that makes this possible.
//!
//! The slot's `seq` is the marker. The producer, holding the writer bit,
//! stores `seq = 0` and then issues a Release fence ([`mark_rewriting`])
//! **before** it writes any pixel of the new frame; it stores the new seq
//! (never equal to an earlier one of the same bus instance) only when the
//! frame is complete. The reader ([`try_copy`]):
//!
//! 1. loads `latest` (Acquire) → frame `L` in slot `s`;
//! 2. loads `s`'s `seq` (Relaxed); not `L` → the slot is already being
//!    rewritten: no copy ([`CopyOutcome::Rewritten`]);
//! 3. loads `capture_ns`, `publish_ns` and the pixel words (Relaxed
//!    atomic loads into private memory: never a `&[u8]` over the slot);
//! 4. `fence(Acquire)`;
//! 5. loads `seq` again (Relaxed): `L` → the copy is frame `L`, whole;
//!    anything else → discard it.
//!
//! Why it is whole. Step 1 synchronises with the producer's Release store
//! of `latest`, which follows its `end_write` of frame `L`: every store of
//! frame `L` (pixels, stamps, `seq = L`) happens-before the copy, so each
//! load of step 3 returns frame `L`'s value or a later one. A later value
//! can only come from a later write of slot `s`, and the producer
//! publishes one frame at a time, so that write began after frame `L` was
//! published, with `seq = 0` and the Release fence, both sequenced before
//! its first pixel or stamp store. If a load of step 3 read such a store,
//! that fence synchronises with the reader's Acquire fence (step 4), so
//! `seq = 0` happens-before step 5, which therefore reads 0 or a later
//! value — the new frame's seq or a newer write's 0 — never `L`, since
//! seqs only grow. So step 5 reads `L` only if every load of step 3 read
//! frame `L`.
//!
//! The pixels of the real slot are written by the producer with plain
//! stores (the source fills a `&mut [u8]`), in another process. The
//! reader's side is all atomic loads, so the reader's process has no data
//! race whatever the producer does. That the producer's plain stores are
//! ordered after its `seq = 0` store is what the Release fence guarantees
//! at the machine level on the supported targets (a compiler barrier plus
//! `dmb ish` on aarch64; x86-64 keeps stores in order): the same argument
//! as for every seqlock over non-atomic data. The loom model
//! (`tests/loom_entry.rs`, (f)) checks the protocol with atomic pixels on
//! both sides, including a producer without the fence (a negative
//! control).

use crate::header::unpack_latest;
use crate::sync::{fence, AtomicU64, Ordering};
use crate::tables::SlotEntry;

/// Producer, right after taking `slot` for writing (the writer bit) and
/// before writing any of its pixels or stamps: marks its old frame as going
/// away (`seq = 0`), and fences, so that a reader copying the slot without
/// a pin detects any of the new frame's stores it reads (module docs).
pub fn mark_rewriting(slot: &SlotEntry) {
    mark_rewriting_with(slot, Ordering::Release);
}

/// [`mark_rewriting`] with a chosen ordering for its fence, `Relaxed`
/// meaning no fence at all (`fence` refuses `Relaxed`); exists so the loom
/// model can show that a producer without the fence is caught (a negative
/// control). Never use it otherwise.
#[doc(hidden)]
pub fn mark_rewriting_with(slot: &SlotEntry, fence_order: Ordering) {
    // Relaxed: a consumer that pins the slot sees it through end_write's
    // Release; an unpinned reader through the fence below.
    slot.seq.store(0, Ordering::Relaxed);
    // Release fence: `seq = 0` is ordered before every later store of this
    // write, for any reader whose Acquire fence follows a load of one.
    if fence_order != Ordering::Relaxed {
        fence(fence_order);
    }
}

/// What one [`try_copy`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOutcome {
    /// No frame was published yet (`latest` is 0); nothing was copied.
    Empty,
    /// `latest` names a slot outside the table (the shared memory was
    /// scribbled on); nothing was copied.
    BadSlot {
        /// The slot index `latest` holds.
        slot: u32,
    },
    /// The slot was being rewritten before or during the copy: discard the
    /// copy and try again.
    Rewritten,
    /// The copy is one whole frame: this one.
    Copied {
        /// The frame's sequence number.
        seq: u64,
        /// The slot it was copied from.
        slot: u32,
        /// Its capture time (`CLOCK_MONOTONIC` ns).
        capture_ns: u64,
        /// Its publish time (`CLOCK_MONOTONIC` ns).
        publish_ns: u64,
    },
}

/// Reader without a pin: one attempt at copying the newest frame. `latest`
/// is the header's `latest` word, `slots` the slot table, `words(slot)` the
/// slot's pixels as 8-byte words (`None` if the slot has none: treated like
/// [`CopyOutcome::BadSlot`]; called once, after the first check of the
/// slot's `seq` and before the copy); the first
/// `min(words.len(), copy.len())` words are copied into `copy`. Only a [`CopyOutcome::Copied`] copy may be
/// used; the caller decides how to wait and how often to retry.
pub fn try_copy<'a>(
    latest: &AtomicU64,
    slots: &[SlotEntry],
    words: impl FnOnce(u32) -> Option<&'a [AtomicU64]>,
    copy: &mut [u64],
) -> CopyOutcome {
    try_copy_with(latest, slots, words, copy, Ordering::Acquire)
}

/// [`try_copy`] with a chosen ordering for its fence, `Relaxed` meaning no
/// fence at all; exists for the loom model's negative controls. Never use
/// it otherwise.
#[doc(hidden)]
pub fn try_copy_with<'a>(
    latest: &AtomicU64,
    slots: &[SlotEntry],
    words: impl FnOnce(u32) -> Option<&'a [AtomicU64]>,
    copy: &mut [u64],
    fence_order: Ordering,
) -> CopyOutcome {
    // Acquire: pairs with the producer's Release store of `latest`, which
    // follows the end of frame L's write.
    let Some((seq, slot)) = unpack_latest(latest.load(Ordering::Acquire)) else {
        return CopyOutcome::Empty;
    };
    let Some(entry) = slots.get(slot as usize) else {
        return CopyOutcome::BadSlot { slot };
    };
    if entry.seq.load(Ordering::Relaxed) != seq {
        // Already being rewritten (0), or rewritten (a newer seq).
        return CopyOutcome::Rewritten;
    }
    let Some(cells) = words(slot) else {
        return CopyOutcome::BadSlot { slot };
    };
    let capture_ns = entry.capture_ns.load(Ordering::Relaxed);
    let publish_ns = entry.publish_ns.load(Ordering::Relaxed);
    for (w, cell) in copy.iter_mut().zip(cells) {
        *w = cell.load(Ordering::Relaxed);
    }
    // Acquire fence: if the copy read any store of a later write, the
    // producer's Release fence after its `seq = 0` synchronises with this
    // fence, and the load below sees 0 or a later seq.
    if fence_order != Ordering::Relaxed {
        fence(fence_order);
    }
    if entry.seq.load(Ordering::Relaxed) == seq {
        CopyOutcome::Copied {
            seq,
            slot,
            capture_ns,
            publish_ns,
        }
    } else {
        CopyOutcome::Rewritten
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::header::pack_latest;
    use crate::pin;

    /// One slot of `n` words and its table entry, published as frame `seq`
    /// with every word equal to `seq`.
    struct Slot {
        entry: [SlotEntry; 1],
        words: Vec<AtomicU64>,
        latest: AtomicU64,
    }

    impl Slot {
        fn new(n: usize) -> Self {
            Self {
                entry: [SlotEntry::default()],
                words: (0..n).map(|_| AtomicU64::new(0)).collect(),
                latest: AtomicU64::new(0),
            }
        }

        /// The producer's whole write of frame `seq`, as `Producer` does it.
        fn publish(&self, seq: u64) {
            self.begin();
            self.fill(seq);
            self.end(seq);
        }

        fn begin(&self) {
            assert!(pin::try_begin_write(&self.entry[0]));
            mark_rewriting(&self.entry[0]);
        }

        fn fill(&self, seq: u64) {
            for w in &self.words {
                w.store(seq, Ordering::Relaxed);
            }
        }

        fn end(&self, seq: u64) {
            let e = &self.entry[0];
            e.seq.store(seq, Ordering::Relaxed);
            e.capture_ns.store(seq * 10, Ordering::Relaxed);
            e.publish_ns.store(seq * 10 + 1, Ordering::Relaxed);
            pin::end_write(e);
            self.latest.store(pack_latest(seq, 0), Ordering::Release);
        }

        /// `try_copy` that runs `mid` between its first check of the
        /// slot's `seq` and the copy (`words` is called there): a producer
        /// acting between the two checks.
        fn copy_with(&self, copy: &mut [u64], mid: impl FnOnce()) -> CopyOutcome {
            try_copy(
                &self.latest,
                &self.entry,
                |_| {
                    mid();
                    Some(&self.words[..])
                },
                copy,
            )
        }
    }

    #[test]
    fn a_published_frame_copies_whole() {
        let s = Slot::new(3);
        let mut copy = [0u64; 3];
        assert_eq!(s.copy_with(&mut copy, || ()), CopyOutcome::Empty);
        s.publish(7);
        assert_eq!(
            s.copy_with(&mut copy, || ()),
            CopyOutcome::Copied {
                seq: 7,
                slot: 0,
                capture_ns: 70,
                publish_ns: 71
            }
        );
        assert_eq!(copy, [7; 3]);
    }

    #[test]
    fn a_slot_being_rewritten_is_refused() {
        let s = Slot::new(2);
        let mut copy = [0u64; 2];
        s.publish(1);
        // The producer took the slot again (a stale `latest` still names
        // it): seq 0 says so, whether or not pixels changed yet.
        s.begin();
        assert_eq!(s.copy_with(&mut copy, || ()), CopyOutcome::Rewritten);
        s.fill(2);
        assert_eq!(s.copy_with(&mut copy, || ()), CopyOutcome::Rewritten);
        s.end(2);
        assert!(matches!(
            s.copy_with(&mut copy, || ()),
            CopyOutcome::Copied { seq: 2, .. }
        ));
        assert_eq!(copy, [2; 2]);
    }

    /// A whole rewrite between the two checks: the copy is all of the new
    /// frame, but not the frame `latest` named; refused.
    #[test]
    fn a_rewrite_between_the_checks_is_detected() {
        let s = Slot::new(4);
        let mut copy = [0u64; 4];
        s.publish(1);
        let outcome = s.copy_with(&mut copy, || s.publish(2));
        assert_eq!(copy, [2; 4], "the copy read the new frame");
        assert_eq!(outcome, CopyOutcome::Rewritten);
    }

    /// A torn copy: the producer is half-way through the next frame when
    /// the words are loaded (two words new, two old); refused.
    #[test]
    fn a_torn_copy_is_detected() {
        let s = Slot::new(4);
        let mut copy = [0u64; 4];
        s.publish(1);
        let outcome = s.copy_with(&mut copy, || {
            s.begin();
            for w in &s.words[..2] {
                w.store(2, Ordering::Relaxed);
            }
        });
        assert_eq!(copy, [2, 2, 1, 1], "the copy is torn");
        assert_eq!(outcome, CopyOutcome::Rewritten);
        // Finished, the next attempt copies the new frame whole.
        s.fill(2);
        s.end(2);
        assert!(matches!(
            s.copy_with(&mut copy, || ()),
            CopyOutcome::Copied { seq: 2, .. }
        ));
        assert_eq!(copy, [2; 4]);
    }

    #[test]
    fn a_scribbled_latest_is_refused() {
        let s = Slot::new(1);
        s.publish(1);
        s.latest.store(pack_latest(1, 5), Ordering::Release);
        let mut copy = [0u64; 1];
        assert_eq!(
            try_copy(&s.latest, &s.entry, |_| Some(&s.words[..]), &mut copy),
            CopyOutcome::BadSlot { slot: 5 }
        );
        s.latest.store(pack_latest(1, 0), Ordering::Release);
        assert_eq!(
            try_copy(&s.latest, &s.entry, |_| None, &mut copy),
            CopyOutcome::BadSlot { slot: 0 }
        );
    }

    /// The loom model's negative controls call the `_with` forms with
    /// `Relaxed` ("no fence"): they must still mark and copy (and never
    /// hand `Relaxed` to `fence`, which panics).
    #[test]
    fn the_fenceless_variants_still_mark_and_copy() {
        let s = Slot::new(3);
        s.publish(5);
        let mut copy = [0u64; 3];
        let got = try_copy_with(
            &s.latest,
            &s.entry,
            |_| Some(&s.words[..]),
            &mut copy,
            Ordering::Relaxed,
        );
        assert!(matches!(got, CopyOutcome::Copied { seq: 5, .. }), "{got:?}");
        assert_eq!(copy, [5; 3]);
        assert!(pin::try_begin_write(&s.entry[0]));
        mark_rewriting_with(&s.entry[0], Ordering::Relaxed);
        assert_eq!(
            s.entry[0].seq.load(Ordering::Relaxed),
            0,
            "marked as being rewritten"
        );
    }
}
