//! The pin protocol: how the producer takes a slot for writing and how
//! consumers pin and release frames, over one `AtomicU64` per slot.
//!
//! Bit `i` (0..=62) of a slot's pin word means "consumer entry `i` holds this
//! slot"; bit 63 ([`WRITER`]) means "the producer is writing it". Because each
//! holder owns a distinct bit, releasing and reclaiming are idempotent
//! `fetch_and`s: a crashed consumer's pins are cleared without knowing how
//! many it held, and clearing twice is harmless (a counter would underflow).
//!
//! Memory orderings (argued in full in doc/PROTOCOL.md):
//! - [`end_write`] is a Release RMW; a consumer's successful [`try_pin`] is an
//!   Acquire RMW on the same word, so everything the producer wrote into the
//!   slot happens-before everything the consumer reads from it.
//! - [`release`] is a Release RMW; the producer's [`try_begin_write`] is an
//!   Acquire CAS that can only succeed once every pin bit is clear, so every
//!   consumer read of the slot happens-before the producer's next write.
//! - All RMWs on one word are totally ordered, so a pin and a writer
//!   acquisition can never both succeed over each other: the CAS demands 0,
//!   and a pin that finds [`WRITER`] set backs out before reading.

use crate::sync::Ordering;
use crate::tables::SlotEntry;

/// The producer's bit in a pin word.
pub const WRITER: u64 = 1 << 63;

/// The pin bit of consumer entry `index` (0..=62).
pub fn consumer_bit(index: u32) -> u64 {
    debug_assert!(index < 63);
    1 << index
}

/// Number of consumers holding a slot, given its pin word (the "in use"
/// counter of the reference design).
pub fn readers(pins: u64) -> u32 {
    (pins & !WRITER).count_ones()
}

/// Result of [`try_pin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// The slot is pinned for this consumer; its contents are stable until
    /// [`release`].
    Pinned,
    /// The producer is writing the slot; nothing was changed. Reload the
    /// newest frame and try again.
    WriterBusy,
    /// This consumer already holds the slot; nothing was changed.
    AlreadyHeld,
}

/// Producer: takes `slot` for writing if nobody holds it. Acquire on success
/// pairs with the Release of the last [`release`] or [`reclaim`].
pub fn try_begin_write(slot: &SlotEntry) -> bool {
    slot.pins
        .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

/// Producer: finishes writing `slot`. Release publishes the pixels and the
/// slot's `seq`/timestamps to every later pin.
pub fn end_write(slot: &SlotEntry) {
    end_write_with(slot, Ordering::Release);
}

/// [`end_write`] with a chosen ordering; exists so the loom model can show
/// that a weaker ordering is caught (its negative control).
#[doc(hidden)]
pub fn end_write_with(slot: &SlotEntry, order: Ordering) {
    slot.pins.fetch_and(!WRITER, order);
}

/// Consumer: pins `slot` with `bit`. Acquire pairs with [`end_write`];
/// Release makes this consumer's earlier releases visible to a producer
/// that sees this pin (its pin-budget counts rely on it:
/// `entry::enforce_budgets`).
pub fn try_pin(slot: &SlotEntry, bit: u64) -> PinOutcome {
    try_pin_with(slot, bit, Ordering::AcqRel)
}

/// [`try_pin`] with a chosen ordering for the pinning RMW; exists so the loom
/// model can show that a weaker ordering is caught (its negative control).
#[doc(hidden)]
pub fn try_pin_with(slot: &SlotEntry, bit: u64, order: Ordering) -> PinOutcome {
    let old = slot.pins.fetch_or(bit, order);
    if old & bit != 0 {
        // Our bit was already set: we hold this slot from an earlier pin, and
        // the OR changed nothing.
        return PinOutcome::AlreadyHeld;
    }
    if old & WRITER != 0 {
        // The producer owns the slot: back out without touching the pixels.
        // Relaxed: we read nothing, so there is nothing to order.
        slot.pins.fetch_and(!bit, Ordering::Relaxed);
        return PinOutcome::WriterBusy;
    }
    PinOutcome::Pinned
}

/// Consumer: lets go of `slot`. Release orders all reads of the frame before
/// the producer's next [`try_begin_write`] of it.
pub fn release(slot: &SlotEntry, bit: u64) {
    slot.pins.fetch_and(!bit, Ordering::Release);
}

/// Producer: clears a dead consumer's `bit` from every slot. Idempotent.
/// Returns how many slots had the bit set.
pub fn reclaim(slots: &[SlotEntry], bit: u64) -> u32 {
    debug_assert_eq!(bit & WRITER, 0);
    let mut cleared = 0;
    for slot in slots {
        // Release: like a release by the consumer itself.
        if slot.pins.fetch_and(!bit, Ordering::Release) & bit != 0 {
            cleared += 1;
        }
    }
    cleared
}

/// Producer: one pass over the slots, starting at `start`, that takes the
/// first slot that is neither the newest frame (`latest`) nor held by anyone.
/// Returns its index, or `None` if every slot looked busy during the pass
/// (which cannot happen while consumers hold at most their budget and stay
/// put; callers retry if consumers moved their pins during the pass).
pub fn acquire_free_slot(slots: &[SlotEntry], latest: Option<u32>, start: usize) -> Option<u32> {
    let n = slots.len();
    (0..n)
        .map(|k| (start + k) % n)
        .filter(|&i| Some(i as u32) != latest)
        .find(|&i| try_begin_write(&slots[i]))
        .map(|i| i as u32)
}

/// Reads a slot's pin word (for inspection; never a basis for a decision).
pub fn pins(slot: &SlotEntry) -> u64 {
    slot.pins.load(Ordering::Relaxed)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn table(n: usize) -> Vec<SlotEntry> {
        (0..n).map(|_| SlotEntry::default()).collect()
    }

    #[test]
    fn pin_blocks_writer_and_writer_blocks_pin() {
        let s = SlotEntry::default();
        assert_eq!(try_pin(&s, consumer_bit(3)), PinOutcome::Pinned);
        assert!(!try_begin_write(&s));
        assert_eq!(try_pin(&s, consumer_bit(3)), PinOutcome::AlreadyHeld);
        release(&s, consumer_bit(3));
        assert!(try_begin_write(&s));
        assert_eq!(try_pin(&s, consumer_bit(0)), PinOutcome::WriterBusy);
        assert_eq!(pins(&s), WRITER, "a refused pin leaves no bit behind");
        end_write(&s);
        assert_eq!(pins(&s), 0);
    }

    #[test]
    fn reclaim_is_idempotent() {
        let t = table(4);
        for s in &t[..3] {
            assert_eq!(try_pin(s, consumer_bit(5)), PinOutcome::Pinned);
            assert_eq!(try_pin(s, consumer_bit(6)), PinOutcome::Pinned);
        }
        assert_eq!(reclaim(&t, consumer_bit(5)), 3);
        assert_eq!(reclaim(&t, consumer_bit(5)), 0);
        assert!(t[..3].iter().all(|s| pins(s) == consumer_bit(6)));
        assert_eq!(readers(pins(&t[0])), 1);
    }

    #[test]
    fn full_budget_leaves_a_free_slot() {
        // 3 consumers x 2 pins + 2 slots; every consumer holds 2 slots,
        // the newest frame is in another: the producer still finds one.
        let (consumers, k) = (3u32, 2u32);
        let t = table((consumers * k + 2) as usize);
        for c in 0..consumers {
            for j in 0..k {
                assert_eq!(
                    try_pin(&t[(c * k + j) as usize], consumer_bit(c)),
                    PinOutcome::Pinned
                );
            }
        }
        let latest = Some(consumers * k);
        let got = acquire_free_slot(&t, latest, 0).unwrap();
        assert_eq!(got, consumers * k + 1);
        assert_eq!(
            acquire_free_slot(&t, latest, 0),
            None,
            "the only free slot is now taken"
        );
    }
}
