#![cfg(loom)]
//! Loom model of the pin protocol (doc/PROTOCOL.md §7 "Pin and release"
//! and §9 "Why no torn frames"; the orderings are argued in `src/pin.rs`).
//!
//! The slot table is the crate's real [`SlotEntry`] (loom atomics under
//! `--cfg loom`) and every step is one of the crate's real protocol
//! functions: [`pin::acquire_free_slot`], [`pin::end_write`], [`pin::try_pin`],
//! [`pin::release`], [`pin::reclaim`], [`pack_latest`]/[`unpack_latest`].
//! Only the pixels are modelled: each slot has a `loom::cell::UnsafeCell`
//! beside its `SlotEntry`, written row by row by the producer and read by
//! consumers, so loom's causality checker fails the model if any pixel
//! access is not ordered by happens-before with every conflicting one.
//!
//! - (a) `no_torn_frame_*`: invariant 1, including a consumer whose `latest`
//!   went stale before it pinned, so only the pin word can order the pixels.
//! - (b) `free_slot_under_full_budget_*`: invariant 3 for one pass of
//!   `acquire_free_slot`; `one_pass_can_miss_*` shows why the producer must
//!   rescan when consumers move their pins during a pass (PROTOCOL.md §10).
//! - (c) `reclaim_*`: a dead consumer's bit is cleared idempotently, live
//!   bits are untouched, and the producer can write again.
//! - (d) `control_*`: negative controls. Each weakens one ordering and must
//!   fail with loom's "Causality violation". They use the stale-`latest`
//!   model: with a fresh `latest`, the Release/Acquire pair on `latest`
//!   alone orders the pixels and a weakened `end_write` or `try_pin` goes
//!   unnoticed.
//!
//! Each model runs under a preemption bound (2 cores: about a minute for the
//! file). Run with:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target-loom cargo test -p shm-layout --release --test loom_model`

use std::sync::atomic::{AtomicUsize as Counter, Ordering as CounterOrdering};

use loom::cell::UnsafeCell;
use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;
use shm_layout::header::{pack_latest, unpack_latest};
use shm_layout::pin::{self, PinOutcome, WRITER};
use shm_layout::sync::{AtomicU64, Ordering};
use shm_layout::SlotEntry;

/// Rows of a model frame. The producer writes them one at a time, so a
/// consumer that could observe a frame mid-write would see a torn frame.
const ROWS: usize = 2;

/// Orderings to weaken, for the negative controls. `None` means "call the
/// crate's real function".
#[derive(Debug, Clone, Copy, Default)]
struct Weaken {
    /// Use `pin::end_write_with(slot, o)` instead of `pin::end_write`.
    end_write: Option<Ordering>,
    /// Use `pin::try_pin_with(slot, bit, o)` instead of `pin::try_pin`.
    pin: Option<Ordering>,
    /// Replace `pin::release` by a `fetch_and` with this ordering.
    release: Option<Ordering>,
}

/// The real protocol everywhere.
const REAL: Weaken = Weaken {
    end_write: None,
    pin: None,
    release: None,
};

/// The shared part of a bus that the protocol touches: the slot table, the
/// pixels beside it, and the header's `latest` word.
struct Bus {
    slots: Box<[SlotEntry]>,
    pixels: Box<[UnsafeCell<[u64; ROWS]>]>,
    latest: AtomicU64,
    weaken: Weaken,
}

/// What a consumer got from [`Bus::take_latest`].
#[derive(Debug, Clone, Copy)]
struct Taken {
    /// The slot it now holds pinned.
    slot: u32,
    /// The sequence number `latest` named when it was loaded.
    latest_seq: u64,
    /// The sequence number of the frame actually in the slot.
    frame_seq: u64,
}

impl Bus {
    fn new(slot_count: usize, weaken: Weaken) -> Self {
        Self {
            slots: (0..slot_count).map(|_| SlotEntry::default()).collect(),
            pixels: (0..slot_count)
                .map(|_| UnsafeCell::new([0; ROWS]))
                .collect(),
            latest: AtomicU64::new(0),
            weaken,
        }
    }

    fn slot(&self, slot: u32) -> &SlotEntry {
        &self.slots[slot as usize]
    }

    // ----- producer -------------------------------------------------------

    /// Producer: one publish, as doc/PROTOCOL.md §4 describes it, with one pass of
    /// `acquire_free_slot`. Returns the slot written, or `None` if the pass
    /// found no free slot (nothing was changed then).
    ///
    /// The pass starts at slot 0: the most aggressive reuse order, so a slot
    /// is rewritten after only two frames and the models stay small.
    fn try_publish(&self, seq: u64) -> Option<u32> {
        // The producer is the only writer of `latest`: it reads back its own
        // last store.
        let latest = unpack_latest(self.latest.load(Ordering::Relaxed)).map(|(_, s)| s);
        let slot = pin::acquire_free_slot(&self.slots, latest, 0)?;
        self.write_frame(slot, seq);
        match self.weaken.end_write {
            None => pin::end_write(self.slot(slot)),
            Some(order) => pin::end_write_with(self.slot(slot), order),
        }
        self.latest.store(pack_latest(seq, slot), Ordering::Release);
        Some(slot)
    }

    /// Producer: [`Bus::try_publish`] that must find a free slot in one pass.
    fn publish(&self, seq: u64) -> u32 {
        self.try_publish(seq)
            .unwrap_or_else(|| panic!("acquire_free_slot found no free slot for frame {seq}"))
    }

    /// Producer: [`Bus::try_publish`] retried, as `acquire_free_slot`
    /// documents for consumers that move their pins during a pass (see
    /// `one_pass_can_miss_the_free_slot_while_a_consumer_moves`). Records the
    /// passes it took; more than [`MAX_PASSES`] fails the model.
    fn publish_retrying(&self, seq: u64, passes: &Passes) -> u32 {
        for pass in 1..=MAX_PASSES {
            if let Some(slot) = self.try_publish(seq) {
                passes.record(pass);
                return slot;
            }
        }
        panic!("no free slot for frame {seq} in {MAX_PASSES} passes");
    }

    /// Writes frame `seq` into `slot` (held with the writer bit): pixels row
    /// by row, then the slot's `seq` (Relaxed: `end_write` publishes it).
    fn write_frame(&self, slot: u32, seq: u64) {
        let cell = &self.pixels[slot as usize];
        for row in 0..ROWS {
            // SAFETY: loom's cell hands out a raw pointer to the model's
            // value; loom itself checks that this write is not concurrent
            // with any other access, which is what the model proves.
            cell.with_mut(|p| unsafe { (*p)[row] = seq });
        }
        self.slot(slot).seq.store(seq, Ordering::Relaxed);
    }

    // ----- consumer -------------------------------------------------------

    fn try_pin(&self, slot: u32, bit: u64) -> PinOutcome {
        match self.weaken.pin {
            None => pin::try_pin(self.slot(slot), bit),
            Some(order) => pin::try_pin_with(self.slot(slot), bit, order),
        }
    }

    fn release(&self, slot: u32, bit: u64) {
        match self.weaken.release {
            None => pin::release(self.slot(slot), bit),
            // Negative control only: `pin::release` with a weaker ordering.
            Some(order) => {
                self.slot(slot).pins.fetch_and(!bit, order);
            }
        }
    }

    /// Reads the frame in a slot this consumer holds and checks that it is
    /// one whole frame: every row equals the slot's `seq`. Returns that seq.
    fn read_frame(&self, slot: u32) -> u64 {
        // SAFETY: as in `write_frame`; loom checks this read is ordered after
        // the write of every row it could see.
        let rows = self.pixels[slot as usize].with(|p| unsafe { *p });
        let seq = self.slot(slot).seq.load(Ordering::Relaxed);
        assert_ne!(seq, 0, "pinned slot {slot}, which was never written");
        assert!(
            rows.iter().all(|&r| r == seq),
            "torn frame in slot {slot}: rows {rows:?}, slot seq {seq}"
        );
        seq
    }

    /// Consumer: loads `latest`, pins its slot and reads the frame, keeping
    /// the pin. `None` if there is no frame yet or the pin was refused.
    fn take_latest(&self, bit: u64) -> Option<Taken> {
        let (latest_seq, slot) = unpack_latest(self.latest.load(Ordering::Acquire))?;
        self.take(slot, latest_seq, bit)
    }

    /// Consumer: pins `slot`, which `latest` named as frame `latest_seq` at
    /// some earlier time, and reads it.
    fn take(&self, slot: u32, latest_seq: u64, bit: u64) -> Option<Taken> {
        match self.try_pin(slot, bit) {
            PinOutcome::Pinned => {
                let frame_seq = self.read_frame(slot);
                // The slot's seq names the frame; it can only have moved on.
                assert!(
                    frame_seq >= latest_seq,
                    "slot {slot} holds frame {frame_seq}, older than frame {latest_seq} that latest named"
                );
                Some(Taken {
                    slot,
                    latest_seq,
                    frame_seq,
                })
            }
            PinOutcome::WriterBusy => None,
            PinOutcome::AlreadyHeld => panic!("consumer pinned slot {slot} twice"),
        }
    }
}

/// Runs `f` under loom with a preemption bound; returns how many executions
/// loom explored (printed with `--nocapture`).
fn check<F>(preemption_bound: usize, f: F) -> usize
where
    F: Fn() + Sync + Send + 'static,
{
    let executions = std::sync::Arc::new(Coverage::default());
    let counted = executions.clone();
    let mut builder = Builder::new();
    builder.preemption_bound = Some(preemption_bound);
    builder.check(move || {
        counted.hit();
        f();
    });
    let n = executions.get();
    eprintln!("loom explored {n} executions (preemption bound {preemption_bound})");
    n
}

/// Counts, across all executions of one model, how often an interesting
/// interleaving happened, so each test can assert that loom really explored
/// the case it is about. Plain `std` atomics: invisible to loom, and loom
/// runs one model thread at a time, so they record the real schedule.
#[derive(Default)]
struct Coverage(Counter);

impl Coverage {
    fn hit(&self) {
        self.0.fetch_add(1, CounterOrdering::Relaxed);
    }
    fn get(&self) -> usize {
        self.0.load(CounterOrdering::Relaxed)
    }
}

// ===== (a) no torn frame ==================================================

/// Most passes of `acquire_free_slot` one publish may take in the models of
/// (a) before the model fails.
const MAX_PASSES: usize = 3;

/// The most passes any publish took, across all executions of a model.
#[derive(Default)]
struct Passes(Counter);

impl Passes {
    fn record(&self, passes: usize) {
        self.0.fetch_max(passes, CounterOrdering::Relaxed);
    }
    fn max(&self) -> usize {
        self.0.load(CounterOrdering::Relaxed)
    }
}

/// What the executions of a no-torn-frame model ran into.
#[derive(Default)]
struct Seen {
    /// Takes whose slot was rewritten after `latest` named it.
    rewritten: Coverage,
    /// Pins refused because the producer held the slot (the back-out path).
    busy: Coverage,
    /// Passes of `acquire_free_slot` per publish.
    passes: Passes,
}

impl Seen {
    fn assert_explored(&self) {
        let (rewritten, busy) = (self.rewritten.get(), self.busy.get());
        eprintln!(
            "pins of a rewritten slot: {rewritten}; pins refused (writer busy): {busy}; \
             most passes for one publish: {}",
            self.passes.max()
        );
        assert!(
            rewritten > 0,
            "the model never pinned a slot rewritten after latest was read"
        );
        assert!(busy > 0, "the model never had a pin refused by the writer");
    }
}

/// Producer publishes `frames` frames into `slot_count` slots while each of
/// `consumers` consumers takes the newest frame `rounds` times (load
/// `latest`, pin, read, release).
fn torn_frame_model(
    weaken: Weaken,
    slot_count: usize,
    frames: u64,
    consumers: u32,
    rounds: usize,
    seen: &std::sync::Arc<Seen>,
) {
    let bus = Arc::new(Bus::new(slot_count, weaken));
    let handles: Vec<_> = (0..consumers)
        .map(|c| {
            let bus = bus.clone();
            let seen = seen.clone();
            thread::spawn(move || {
                let bit = pin::consumer_bit(c);
                for _ in 0..rounds {
                    let Some((latest_seq, slot)) =
                        unpack_latest(bus.latest.load(Ordering::Acquire))
                    else {
                        continue;
                    };
                    match bus.take(slot, latest_seq, bit) {
                        Some(t) => {
                            if t.frame_seq != t.latest_seq {
                                seen.rewritten.hit();
                            }
                            bus.release(t.slot, bit);
                        }
                        None => seen.busy.hit(),
                    }
                }
            })
        })
        .collect();
    for seq in 1..=frames {
        bus.publish_retrying(seq, &seen.passes);
    }
    for h in handles {
        h.join().unwrap();
    }
}

/// Invariant 1 (no torn frames), one consumer (3 slots, 6 frames, 3 takes,
/// preemption bound 5): whatever the interleaving, a consumer that pinned a
/// slot reads one whole frame, the one the slot's `seq` names, and no
/// producer write of that slot is concurrent with the read (loom's causality
/// check). Explored (and asserted to be): takes whose `latest` went stale
/// before the pin, so the slot was rewritten in between, and pins refused
/// because the producer was writing the slot. The producer retries
/// `acquire_free_slot` (this consumer moves its pin; 2 passes suffice here).
#[test]
fn no_torn_frame_one_consumer() {
    let seen = std::sync::Arc::new(Seen::default());
    let s = seen.clone();
    check(5, move || torn_frame_model(REAL, 3, 6, 1, 3, &s));
    seen.assert_explored();
}

/// Invariant 1 with two consumers contending for the same slots (4 slots =
/// 2 consumers x 1 pin + 2, 4 frames, 2 takes each, preemption bound 3):
/// pins by two consumers on one word never let the producer in while either
/// still reads, and neither ever sees a torn frame or races a write.
#[test]
fn no_torn_frame_two_consumers() {
    let seen = std::sync::Arc::new(Seen::default());
    let s = seen.clone();
    check(3, move || torn_frame_model(REAL, 4, 4, 2, 2, &s));
    seen.assert_explored();
}

/// The case where synchronisation can only come from the pin word: the
/// consumer read `latest` = (frame 1, slot 0) earlier (here: before it was
/// spawned) and pins slot 0 without loading `latest` again, while the
/// producer publishes frames 2 and 3 and so rewrites slot 0 with frame 3.
/// Counts the executions in which the consumer read the rewritten frame.
fn stale_latest_model(weaken: Weaken, rewritten: &std::sync::Arc<Coverage>) {
    let bus = Arc::new(Bus::new(3, weaken));
    assert_eq!(bus.publish(1), 0);
    let stale = unpack_latest(bus.latest.load(Ordering::Acquire)).unwrap();
    let consumer = {
        let bus = bus.clone();
        let rewritten = rewritten.clone();
        thread::spawn(move || {
            let bit = pin::consumer_bit(0);
            let (latest_seq, slot) = stale;
            if let Some(t) = bus.take(slot, latest_seq, bit) {
                if t.frame_seq != latest_seq {
                    rewritten.hit();
                }
                bus.release(t.slot, bit);
            }
        })
    };
    bus.publish(2);
    bus.publish(3);
    consumer.join().unwrap();
}

/// Invariant 1 when `latest` gives no synchronisation: a consumer pinning a
/// slot it learnt about from a stale `latest` reads either the old frame
/// whole or the rewritten frame whole, never a mix, and never concurrently
/// with the rewrite. Proves that `end_write` (Release) / `try_pin` (Acquire)
/// on the pin word alone order the pixels, and that `release` (Release) /
/// `try_begin_write` (Acquire) order the consumer's reads before the rewrite.
#[test]
fn no_torn_frame_with_stale_latest() {
    let rewritten = std::sync::Arc::new(Coverage::default());
    let r = rewritten.clone();
    check(3, move || stale_latest_model(REAL, &r));
    eprintln!("pins of the rewritten slot: {}", rewritten.get());
    assert!(
        rewritten.get() > 0,
        "the model never pinned the slot after it was rewritten"
    );
}

// ===== (d) negative controls ==============================================

/// Negative control: `end_write` weakened to Relaxed. A consumer with a
/// stale `latest` that pins the rewritten slot no longer synchronises with
/// the rewrite, so loom must report a causality violation (a data race on
/// the pixels), not anything else.
#[test]
#[should_panic(expected = "Causality violation")]
fn control_relaxed_end_write_is_caught() {
    let weaken = Weaken {
        end_write: Some(Ordering::Relaxed),
        ..REAL
    };
    let r = std::sync::Arc::new(Coverage::default());
    check(3, move || stale_latest_model(weaken, &r));
}

/// Negative control: the pinning `fetch_or` weakened to Relaxed. As above:
/// nothing but the pin word could order the rewrite before the read.
#[test]
#[should_panic(expected = "Causality violation")]
fn control_relaxed_pin_is_caught() {
    let weaken = Weaken {
        pin: Some(Ordering::Relaxed),
        ..REAL
    };
    let r = std::sync::Arc::new(Coverage::default());
    check(3, move || stale_latest_model(weaken, &r));
}

/// Negative control: `release` weakened to Relaxed. The consumer's read of
/// frame 1 is then not ordered before the producer's rewrite of slot 0 with
/// frame 3: loom must report the read/write race.
#[test]
#[should_panic(expected = "Causality violation")]
fn control_relaxed_release_is_caught() {
    let weaken = Weaken {
        release: Some(Ordering::Relaxed),
        ..REAL
    };
    let r = std::sync::Arc::new(Coverage::default());
    check(3, move || stale_latest_model(weaken, &r));
}

/// Negative control on the general model of (a) (consumers load `latest`
/// themselves): weakening `end_write` must be caught there too, through the
/// executions in which a consumer's `latest` went stale before it pinned.
#[test]
#[should_panic(expected = "Causality violation")]
fn control_relaxed_end_write_is_caught_in_general_model() {
    let weaken = Weaken {
        end_write: Some(Ordering::Relaxed),
        ..REAL
    };
    let s = std::sync::Arc::new(Seen::default());
    check(3, move || torn_frame_model(weaken, 3, 4, 1, 2, &s));
}

// ===== (b) a free slot under full budget ==================================

/// `consumers` consumers, each pinning up to `budget` frames (taking the
/// newest frame on each of `budget + 1` attempts, never releasing), while
/// the producer publishes `frames` frames into `consumers * budget + 2`
/// slots; every publish must find a free slot in one pass. Counts publishes
/// that started with every consumer holding its full budget.
fn full_budget_model(consumers: u32, budget: usize, frames: u64, full: &std::sync::Arc<Coverage>) {
    let slot_count = consumers as usize * budget + 2;
    let bus = Arc::new(Bus::new(slot_count, REAL));
    bus.publish(1);
    // Pins held right now, across consumers (coverage bookkeeping only).
    let held = std::sync::Arc::new(Counter::new(0));
    let handles: Vec<_> = (0..consumers)
        .map(|c| {
            let bus = bus.clone();
            let held = held.clone();
            thread::spawn(move || {
                let bit = pin::consumer_bit(c);
                let mut mine = Vec::new();
                for _ in 0..=budget {
                    if mine.len() == budget {
                        break;
                    }
                    let Some((latest_seq, slot)) =
                        unpack_latest(bus.latest.load(Ordering::Acquire))
                    else {
                        continue;
                    };
                    if mine.contains(&slot) {
                        continue; // no new frame since the last pin
                    }
                    if let Some(t) = bus.take(slot, latest_seq, bit) {
                        mine.push(t.slot);
                        held.fetch_add(1, CounterOrdering::Relaxed);
                    }
                }
                mine
            })
        })
        .collect();
    for seq in 2..=frames + 1 {
        if held.load(CounterOrdering::Relaxed) == consumers as usize * budget {
            full.hit();
        }
        bus.publish(seq);
    }
    let mut total = 0;
    for (c, h) in handles.into_iter().enumerate() {
        let mine = h.join().unwrap();
        let bit = pin::consumer_bit(c as u32);
        for (i, slot) in bus.slots.iter().enumerate() {
            let holds = mine.contains(&(i as u32));
            assert_eq!(pin::pins(slot) & bit != 0, holds, "consumer {c}, slot {i}");
        }
        total += mine.len();
    }
    assert!(total <= consumers as usize * budget);
}

/// Invariant 3, 2 consumers x 1 pin (4 slots): while every consumer holds
/// (up to) its whole budget of pins, the producer's one pass of
/// `acquire_free_slot` always finds a slot that is neither pinned nor the
/// newest frame. Publishing under the full budget is asserted to be explored.
#[test]
fn free_slot_under_full_budget_two_consumers_one_pin() {
    let full = std::sync::Arc::new(Coverage::default());
    let f = full.clone();
    check(3, move || full_budget_model(2, 1, 4, &f));
    eprintln!("publishes under the full budget: {}", full.get());
    assert!(full.get() > 0, "never published under the full budget");
}

/// Invariant 3, 1 consumer x 2 pins (4 slots): as above with a consumer that
/// holds two frames at once.
#[test]
fn free_slot_under_full_budget_one_consumer_two_pins() {
    let full = std::sync::Arc::new(Coverage::default());
    let f = full.clone();
    check(4, move || full_budget_model(1, 2, 4, &f));
    eprintln!("publishes under the full budget: {}", full.get());
    assert!(full.get() > 0, "never published under the full budget");
}

/// A limit of one pass, not of invariant 3: a consumer that *moves* its one
/// pin during the producer's pass (release slot 0, then pin slot 1, which a
/// `latest` it read earlier named) can make every slot the pass looks at
/// busy at the moment it looks, although a free slot exists at every
/// instant. This test proves that such a pass returns `None` in some
/// interleaving (so callers must retry, as `acquire_free_slot` documents)
/// and that in this model a second pass then always succeeds.
///
/// Setup (3 slots, 1 consumer x 1 pin): frame 1 in slot 0, held by the
/// consumer; frame 2 in slot 1, the `latest` the consumer read. The producer
/// publishes frames 3 and 4; the consumer moves from slot 0 to slot 1.
#[test]
fn one_pass_can_miss_the_free_slot_while_a_consumer_moves() {
    let misses = std::sync::Arc::new(Coverage::default());
    let m = misses.clone();
    check(3, move || {
        let bus = Arc::new(Bus::new(3, REAL));
        let bit = pin::consumer_bit(0);
        assert_eq!(bus.publish(1), 0);
        let held = bus.take_latest(bit).unwrap();
        assert_eq!(bus.publish(2), 1);
        let (latest_seq, slot) = unpack_latest(bus.latest.load(Ordering::Acquire)).unwrap();
        let consumer = {
            let bus = bus.clone();
            thread::spawn(move || {
                bus.release(held.slot, bit);
                if let Some(t) = bus.take(slot, latest_seq, bit) {
                    bus.release(t.slot, bit);
                }
            })
        };
        for seq in 3..=4 {
            if bus.try_publish(seq).is_none() {
                m.hit();
                bus.publish(seq); // the retry
            }
        }
        consumer.join().unwrap();
    });
    eprintln!("one-pass misses: {}", misses.get());
    assert!(
        misses.get() > 0,
        "expected some interleaving in which one pass finds no free slot"
    );
}

// ===== (c) reclaim ========================================================

/// Invariant 3 after a crash: a dead consumer's bit, left on three of four
/// slots (more than its budget, as corrupt as it gets), is reclaimed twice
/// concurrently (the producer's EPIPE path racing its pid check) while a
/// live consumer reads the frame it holds, releases it and pins the newest.
/// Proves reclaim is idempotent (each dead pin is cleared by exactly one of
/// the two reclaims, the bit is gone from every slot afterwards), that it
/// never touches the live consumer's bit (the producer, which reuses slots
/// freed by the reclaim at once, never races the live consumer's reads), and
/// that the producer can then write.
#[test]
fn reclaim_is_idempotent_and_spares_live_pins() {
    check(4, || {
        const LIVE: u32 = 0;
        const DEAD: u32 = 1;
        let live = pin::consumer_bit(LIVE);
        let dead = pin::consumer_bit(DEAD);
        let bus = Arc::new(Bus::new(4, REAL));
        // Frames 1 and 2 in slots 0 and 1; the dead consumer pins slot 0.
        assert_eq!(bus.publish(1), 0);
        assert_eq!(bus.take_latest(dead).unwrap().slot, 0);
        assert_eq!(bus.publish(2), 1);
        // The live consumer holds slot 1, which the dead one pinned too.
        let held = bus.take_latest(live).unwrap();
        assert_eq!(bus.take_latest(dead).unwrap().slot, 1);
        // Frame 3 goes to slot 2; the dead consumer's bit also lingers on
        // slot 3 (it died inside a pin).
        assert_eq!(bus.publish(3), 2);
        assert_eq!(bus.try_pin(3, dead), PinOutcome::Pinned);
        // Now slots 0, 1, 3 carry the dead bit and 2 is the newest frame:
        // without a reclaim there is no free slot.

        let producer = {
            let bus = bus.clone();
            thread::spawn(move || {
                let cleared = pin::reclaim(&bus.slots, dead);
                bus.publish(4);
                bus.publish(5);
                cleared
            })
        };
        let second_reclaim = {
            let bus = bus.clone();
            thread::spawn(move || pin::reclaim(&bus.slots, dead))
        };
        let consumer = {
            let bus = bus.clone();
            thread::spawn(move || {
                assert_eq!(bus.read_frame(held.slot), held.frame_seq);
                bus.release(held.slot, live);
                bus.take_latest(live)
            })
        };

        let cleared = producer.join().unwrap() + second_reclaim.join().unwrap();
        let now = consumer.join().unwrap();
        assert_eq!(cleared, 3, "each dead pin is cleared exactly once");
        for (i, slot) in bus.slots.iter().enumerate() {
            let pins = pin::pins(slot);
            assert_eq!(pins & dead, 0, "dead bit left on slot {i}");
            assert_eq!(pins & WRITER, 0, "writer bit left on slot {i}");
            let holds = now.is_some_and(|t| t.slot as usize == i);
            assert_eq!(pins & live != 0, holds, "live bit on slot {i}");
        }
        if let Some(t) = now {
            bus.release(t.slot, live);
        }
    });
}
