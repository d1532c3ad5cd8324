#![cfg(loom)]
//! Loom models of the consumer table's state machine (`src/entry.rs`), of
//! the pin protocol around it (`src/pin.rs`) and of the debug BGR slot's
//! seqlock (`src/seqlock.rs`), run on the crate's real functions: every
//! owner-word change, reap, eviction, budget count, pin and seqlock step
//! below is a call of the crate's own code, over loom's atomics (`--cfg
//! loom` switches `shm_layout::sync`). Only three things are modelled:
//!
//! - the liveness tokens (an OFD lock per entry in the real system): a loom
//!   `AtomicBool` per entry, `try_hold` = CAS false → true (AcqRel),
//!   `release` = store false (Release), `held` = load (Acquire). The
//!   kernel's lock table is under a lock, so the real tokens are at least
//!   this strongly ordered. A modelled consumer *dies* by letting its token
//!   go without leaving (what the kernel does when its last descriptor
//!   closes);
//! - the gray slots' pixels: a `loom::cell::UnsafeCell` per slot, written
//!   row by row by the producer and read by consumers, so loom's causality
//!   checker fails a model in which a write of a slot is not ordered
//!   against a consumer's read of it;
//! - "alive" flags: plain `std` atomics, invisible to loom (which runs one
//!   model thread at a time, so they record the real schedule), set while
//!   a consumer is between its successful claim and the end of its leave,
//!   or while it holds a frame.
//!
//! What the models prove (each one for every interleaving within its
//! preemption bound):
//! - (a) `live_consumer_*`: a live consumer (claim → mark_ready → producer
//!   connect → pin → leave, or death) racing the producer's connect and
//!   `reap` passes is never reaped: its word never becomes Reclaiming or
//!   Free by the producer's hand, its pin bit is never cleared, its leave
//!   is the one that frees its entry; a dead one is reaped and its pins are
//!   cleared.
//! - (b) `evicted_live_holder_*`: a consumer that holds a pinned frame and
//!   whose entry the producer `evict`s keeps its pin while its token is
//!   held: `reap` leaves it alone, `acquire_free_slot` never hands its slot
//!   to the writer, and its reads of the frame never race the producer's
//!   writes of the other slots (causality check).
//! - (c) `entry_reuse_*`: a dead consumer's stray bits are cleared before
//!   its entry is freed, so a new owner of the same entry (the same bit)
//!   never finds one of them and never has a pin cleared by that reap.
//! - (d) `budget_*`: a consumer holding exactly its budget, standing still
//!   or moving its pins to the newest slot (the only one an honest consumer
//!   can pin while the producer waits for a free slot: `latest` does not
//!   move) while the producer counts twice (`enforce_budgets`, `over`
//!   passed on), is never evicted.
//! - (e) `seqlock_*`: a reader of the BGR slot never accepts a copy that
//!   mixes two frames (words or stamps of two writes).
//! - (f) `unpinned_*`: a reader without a consumer entry copying the newest
//!   frame (`src/unpinned.rs`, `snapshot` on a full bus) never accepts a
//!   copy that is not one whole frame, while the producer publishes
//!   through the real `acquire_free_slot`, `mark_rewriting`, `end_write`
//!   and rewrites the very slot being copied. Its pixels are loom atomics
//!   on both sides (the copy races the writer by design; only the checks
//!   decide).
//!
//! Negative controls (`control_*`): each calls one of the `#[doc(hidden)]`
//! broken variants of the real functions and must make its model fail,
//! for the intended reason: [`expect_failure`] checks the panic message
//! against the reasons the control is about and only then panics with
//! [`CAUGHT`], which is what `#[should_panic]` expects.
//!
//! Two of these models found real bugs, since fixed: a leave that lost its
//! compare-exchange to the producer's connect (`leave` now retries while
//! the word is its own), and a second budget count that read a stale pin
//! word and evicted a consumer within its budget (pins are now AcqRel, the
//! counts Acquire, and two counts must see the same slots).
//!
//! Each model runs under a preemption bound: the whole file takes a few
//! seconds on 2 cores once built (`.ci/run` runs it with `loom_model.rs`).
//! Run with:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target-loom cargo test -p shm-layout --release --test loom_entry -- --test-threads=1`
//! (add `--nocapture` to print the executions each model explored).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool as Flag, AtomicUsize as Counter, Ordering as Plain};

use loom::cell::UnsafeCell;
use loom::model::Builder;
use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;
use shm_layout::entry::{
    self, BudgetVariant, HoldTokens, OverBudget, ReapOrder, Reaped, TestTokens,
};
use shm_layout::header::{pack_latest, unpack_latest, BgrSeqlock};
use shm_layout::pin::{self, consumer_bit, PinOutcome};
use shm_layout::seqlock::{self, ReadOutcome};
use shm_layout::sync::{AtomicU64, Ordering};
use shm_layout::unpinned::{self, CopyOutcome};
use shm_layout::{ConsumerEntry, ConsumerState, Owner, SlotEntry};

// ===== harness ===========================================================

/// Rows of a model frame, written one at a time.
const ROWS: usize = 2;

/// The pid of the modelled consumer (display only: nothing decides on it).
const PID: u32 = 4242;

/// The liveness tokens, one loom `AtomicBool` per entry: true = held.
struct Tokens(Box<[AtomicBool]>);

impl Tokens {
    fn new(n: usize) -> Self {
        Self((0..n).map(|_| AtomicBool::new(false)).collect())
    }

    /// The kernel lets a dead owner's token go: nothing else happens.
    fn die(&self, index: u32) {
        self.release(index);
    }
}

impl HoldTokens for Tokens {
    fn try_hold(&self, index: u32) -> bool {
        self.0[index as usize]
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
    fn release(&self, index: u32) {
        self.0[index as usize].store(false, Ordering::Release);
    }
}

impl TestTokens for Tokens {
    fn held(&self, index: u32) -> bool {
        self.0[index as usize].load(Ordering::Acquire)
    }
}

/// The broken variants a negative control switches on; `REAL` calls the
/// real functions everywhere.
#[derive(Debug, Clone, Copy)]
struct Variant {
    /// `entry::claim_with(.., token_last)`.
    claim_token_last: bool,
    /// `entry::leave_with(.., token_first)`.
    leave_token_first: bool,
    /// `entry::reap_with(.., order)`.
    reap: ReapOrder,
    /// `entry::enforce_budgets_with(.., variant)`.
    budget: BudgetVariant,
}

const REAL: Variant = Variant {
    claim_token_last: false,
    leave_token_first: false,
    reap: ReapOrder::Real,
    budget: BudgetVariant::Real,
};

/// The shared part of a bus: the slot table with its pixels, the consumer
/// table and the tokens.
struct Bus {
    slots: Box<[SlotEntry]>,
    pixels: Box<[UnsafeCell<[u64; ROWS]>]>,
    entries: Box<[ConsumerEntry]>,
    tokens: Tokens,
    v: Variant,
}

impl Bus {
    fn new(slot_count: usize, entry_count: usize, v: Variant) -> Self {
        Self {
            slots: (0..slot_count).map(|_| SlotEntry::default()).collect(),
            pixels: (0..slot_count)
                .map(|_| UnsafeCell::new([0; ROWS]))
                .collect(),
            entries: (0..entry_count).map(|_| ConsumerEntry::default()).collect(),
            tokens: Tokens::new(entry_count),
            v,
        }
    }

    fn entry(&self, index: u32) -> &ConsumerEntry {
        &self.entries[index as usize]
    }

    fn slot(&self, slot: u32) -> &SlotEntry {
        &self.slots[slot as usize]
    }

    // ----- consumer -------------------------------------------------------

    fn claim(&self, pid: u32) -> Option<(u32, Owner)> {
        entry::claim_with(&self.entries, pid, &self.tokens, self.v.claim_token_last)
    }

    fn leave(&self, index: u32, mine: Owner) -> bool {
        entry::leave_with(
            self.entry(index),
            index,
            mine,
            &self.tokens,
            self.v.leave_token_first,
        )
    }

    /// Claim and mark Ready, with nobody racing (model setup).
    fn register(&self, pid: u32) -> (u32, Owner) {
        let (i, claimed) = self.claim(pid).expect("a free entry");
        (i, entry::mark_ready(self.entry(i), claimed).expect("ready"))
    }

    /// Reads the frame in a slot this consumer holds and checks that it is
    /// one whole frame, the one the slot's `seq` names. Returns that seq.
    fn read_frame(&self, slot: u32) -> u64 {
        // SAFETY: loom's cell hands out a raw pointer to the model's value
        // and checks that this read happens-after every write of the cell
        // and is concurrent with none: that check is what the models prove.
        let rows = self.pixels[slot as usize].with(|p| unsafe { *p });
        let seq = self.slot(slot).seq.load(Ordering::Relaxed);
        assert!(
            rows.iter().all(|&r| r == seq),
            "torn frame in slot {slot}: rows {rows:?}, slot seq {seq}"
        );
        seq
    }

    // ----- producer -------------------------------------------------------

    fn reap(&self, index: u32) -> Reaped {
        entry::reap_with(&self.slots, &self.entries, index, &self.tokens, self.v.reap)
    }

    /// One pass of the producer's table walk over entry `index`: connect it
    /// if it is Ready, then the liveness check.
    fn serve(&self, index: u32) -> Reaped {
        let observed = self.entry(index).owner();
        if observed.state() == Some(ConsumerState::Ready) {
            entry::connect(self.entry(index), observed);
        }
        self.reap(index)
    }

    /// Publishes frame `seq` into a slot that is neither `latest` nor held
    /// (one pass of `acquire_free_slot` from slot 0, the most aggressive
    /// reuse): pixels row by row, the slot's seq, `end_write`.
    fn publish(&self, seq: u64, latest: Option<u32>) -> u32 {
        let slot = pin::acquire_free_slot(&self.slots, latest, 0)
            .unwrap_or_else(|| panic!("no free slot for frame {seq}"));
        self.write(slot, seq);
        slot
    }

    /// Writes frame `seq` into `slot`, which the producer holds with the
    /// writer bit, and ends the write.
    fn write(&self, slot: u32, seq: u64) {
        for row in 0..ROWS {
            // SAFETY: as in `read_frame`: loom checks that this write is
            // ordered against every other access of the cell.
            self.pixels[slot as usize].with_mut(|p| unsafe { (*p)[row] = seq });
        }
        self.slot(slot).seq.store(seq, Ordering::Relaxed);
        pin::end_write(self.slot(slot));
    }
}

/// Runs `f` under loom with a preemption bound; prints how many executions
/// loom explored (with `--nocapture`).
fn check<F>(preemption_bound: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let executions = std::sync::Arc::new(Counter::new(0));
    let counted = executions.clone();
    let mut builder = Builder::new();
    builder.preemption_bound = Some(preemption_bound);
    builder.check(move || {
        counted.fetch_add(1, Plain::Relaxed);
        f();
    });
    eprintln!(
        "loom explored {} executions (preemption bound {preemption_bound})",
        executions.load(Plain::Relaxed)
    );
}

/// What a negative control panics with once its model failed for one of
/// the reasons it is about.
const CAUGHT: &str = "negative control caught";

/// Runs a negative control's model: it must fail, with a panic message
/// containing one of `reasons`; then panics with [`CAUGHT`] and the
/// message. A model that passes, or fails for another reason, returns or
/// panics with another message, so the `#[should_panic]` test fails.
fn expect_failure(reasons: &[&str], model: impl FnOnce()) {
    let Err(payload) = catch_unwind(AssertUnwindSafe(model)) else {
        return;
    };
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(a panic without a message)");
    assert!(
        reasons.iter().any(|r| msg.contains(r)),
        "the model failed for another reason than {reasons:?}: {msg}"
    );
    panic!("{CAUGHT}: {msg}");
}

/// Counts, across the executions of one model, how often an interesting
/// case happened, so a test can assert that loom explored it.
#[derive(Default)]
struct Coverage(Counter);

impl Coverage {
    fn hit(&self) {
        self.0.fetch_add(1, Plain::Relaxed);
    }
    fn get(&self) -> usize {
        self.0.load(Plain::Relaxed)
    }
}

// ===== (a) a live consumer is never reaped ================================

/// How the modelled consumer of (a) ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Waits until the producer has connected it, then releases its pin
    /// and leaves. The producer serves the entry until it has connected
    /// it, then makes one more pass.
    LeaveConnected,
    /// Releases its pin and leaves as soon as it is done, connected or
    /// not, while the producer makes two passes. Fails with the real code
    /// (see [`leave_racing_connect_frees_the_entry`]).
    LeaveAtOnce,
    /// Dies holding its pin: its token goes, its word and bit stay. The
    /// producer makes two passes.
    Die,
}

/// The failure messages of (a) all start with this.
const LIVE_REAPED: &str = "live consumer reaped";

/// One consumer registers (claim, mark_ready), pins slot 0, checks it is
/// still registered and still holds its pin, and ends (`end`), while the
/// producer serves its entry (connect if Ready, reap). "Live" = between
/// its successful claim and the end of its leave, or its death: a reap
/// that frees the entry meanwhile fails the model, and so do the
/// consumer's own checks (its word taken, its pin cleared, its leave not
/// the one that frees its entry). Afterwards the producer reaps once more:
/// the entry must be Free, the pin and the token gone, whatever the ending.
/// Counts executions in which the producer connected the consumer and in
/// which a reap found it alive.
fn lifecycle_model(v: Variant, end: End, seen: &std::sync::Arc<[Coverage; 2]>) {
    let bus = Arc::new(Bus::new(1, 1, v));
    let live = std::sync::Arc::new(Flag::new(false));
    let consumer = {
        let (bus, live) = (bus.clone(), live.clone());
        thread::spawn(move || {
            let (i, claimed) = bus.claim(PID).expect("the only entry is free");
            live.store(true, Plain::Relaxed);
            let e = bus.entry(i);
            let ready = entry::mark_ready(e, claimed).unwrap_or_else(|| {
                panic!(
                    "{LIVE_REAPED}: its Claimed word {claimed:?} became {:?}",
                    e.owner()
                )
            });
            let bit = consumer_bit(i);
            assert_eq!(pin::try_pin(bus.slot(0), bit), PinOutcome::Pinned);
            let registered = || {
                assert!(
                    entry::still_registered(e, ready),
                    "{LIVE_REAPED}: its Ready word {ready:?} became {:?}",
                    e.owner()
                );
            };
            registered();
            if end == End::LeaveConnected {
                while e.owner().state() != Some(ConsumerState::Connected) {
                    registered();
                    thread::yield_now();
                }
            }
            assert_ne!(
                pin::pins(bus.slot(0)) & bit,
                0,
                "{LIVE_REAPED}: its pin bit was cleared"
            );
            if end == End::Die {
                // Dead from here on: a reap may take it.
                live.store(false, Plain::Relaxed);
                bus.tokens.die(i);
                return;
            }
            pin::release(bus.slot(0), bit);
            let freed = bus.leave(i, ready);
            live.store(false, Plain::Relaxed);
            assert!(
                freed,
                "{LIVE_REAPED}: its leave did not free its entry, now {:?}",
                e.owner()
            );
        })
    };
    let producer = {
        let (bus, seen) = (bus.clone(), seen.clone());
        thread::spawn(move || {
            let pass = || {
                match bus.serve(0) {
                Reaped::Freed { owner, cleared } => assert!(
                    !live.load(Plain::Relaxed),
                    "{LIVE_REAPED}: the producer freed its entry {owner:?} and cleared {cleared} pins"
                ),
                Reaped::Alive => seen[1].hit(),
                Reaped::Free | Reaped::Changed => {}
            }
            };
            if end == End::LeaveConnected {
                // Until connected (or the entry went Free again after a
                // claim, or Reclaiming: only a broken variant gets there).
                loop {
                    pass();
                    let o = bus.entry(0).owner();
                    if o.state() == Some(ConsumerState::Connected)
                        || o.state() == Some(ConsumerState::Reclaiming)
                        || (o.state() == Some(ConsumerState::Free) && o.generation() > 0)
                    {
                        break;
                    }
                    thread::yield_now();
                }
                pass();
            } else {
                pass();
                pass();
            }
            if bus.entry(0).owner().state() == Some(ConsumerState::Connected) {
                seen[0].hit();
            }
        })
    };
    consumer.join().unwrap();
    producer.join().unwrap();
    // The consumer is gone (left or dead): one more pass frees what is left.
    bus.reap(0);
    assert_eq!(bus.entry(0).owner().state(), Some(ConsumerState::Free));
    assert_eq!(pin::pins(bus.slot(0)), 0, "pins left after the reap");
    assert!(!bus.tokens.held(0), "token left held");
}

fn lifecycle(v: Variant, end: End) -> std::sync::Arc<[Coverage; 2]> {
    let seen = std::sync::Arc::new([Coverage::default(), Coverage::default()]);
    let s = seen.clone();
    check(3, move || lifecycle_model(v, end, &s));
    seen
}

/// (a) claim → mark_ready → connect → pin → leave racing the producer's
/// passes (connect, reap) from before the claim to after the leave: the
/// live consumer is never reaped, its pin is never cleared, and its leave
/// frees its own entry. Asserted explored: the producer connecting it, and
/// reaps that found it alive.
#[test]
fn live_consumer_is_never_reaped_and_leaves() {
    let seen = lifecycle(REAL, End::LeaveConnected);
    eprintln!(
        "connected: {}, reaps alive: {}",
        seen[0].get(),
        seen[1].get()
    );
    assert!(
        seen[0].get() > 0,
        "the producer never connected the consumer"
    );
    assert!(seen[1].get() > 0, "no reap ever found the consumer alive");
}

/// (a) As above, but the consumer dies holding its pin (its token goes,
/// nothing else): never reaped while alive; once dead, a reap frees its
/// entry and clears its pin.
#[test]
fn live_consumer_is_never_reaped_and_a_dead_one_is() {
    let seen = lifecycle(REAL, End::Die);
    assert!(seen[1].get() > 0, "no reap ever found the consumer alive");
}

/// (a) A consumer that leaves while still Ready, racing the producer's
/// connect: `entry::leave` loads the word (Ready), the producer connects
/// (Ready → Connected), and the leave's compare-exchange from Ready fails;
/// it looks again and frees the Connected word (before the fix it gave up,
/// leaving a Connected entry without a token for the next liveness check to
/// reap as if its owner had died).
#[test]
fn leave_racing_connect_frees_the_entry() {
    lifecycle(REAL, End::LeaveAtOnce);
}

/// Negative control: the token taken after the claim's compare-exchange.
/// A reap between the two sees a Claimed word with a free token and
/// reclaims a consumer that goes on as if registered.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_claim_token_last_is_caught() {
    let v = Variant {
        claim_token_last: true,
        ..REAL
    };
    expect_failure(&[LIVE_REAPED], || {
        lifecycle(v, End::LeaveConnected);
    });
}

/// Negative control: the token let go before the leave's compare-exchange.
/// A reap between the two takes over the entry its owner is still leaving.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_leave_token_first_is_caught() {
    let v = Variant {
        leave_token_first: true,
        ..REAL
    };
    expect_failure(&[LIVE_REAPED], || {
        lifecycle(v, End::LeaveConnected);
    });
}

/// Negative control: the producer tests the token before it reads the
/// owner word: a token seen free before the claim is taken for the claimed
/// word's.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_reap_token_before_owner_is_caught() {
    let v = Variant {
        reap: ReapOrder::TokenBeforeOwner,
        ..REAL
    };
    expect_failure(&[LIVE_REAPED], || {
        lifecycle(v, End::LeaveConnected);
    });
}

// ===== (b) an evicted live holder keeps its frame ==========================

/// The failure message of (b) when the writer takes the holder's slot.
const SLOT_TAKEN: &str = "handed the live holder's slot to the writer";

/// Setup: frames 1 and 2 in slots 0 and 1 (3 slots); a consumer
/// registered, connected, holding slot 0 (frame 1). Then, concurrently:
/// the consumer reads its frame, checks its pin, releases it and leaves;
/// the producer evicts it (its FIFO broke), and twice reaps it and
/// publishes a frame. Counts executions in which the producer evicted the
/// consumer while it held its frame.
fn evicted_holder_model(v: Variant, evicted_holding: &std::sync::Arc<Coverage>) {
    let bus = Arc::new(Bus::new(3, 1, v));
    assert_eq!(bus.publish(1, None), 0);
    assert_eq!(bus.publish(2, Some(0)), 1);
    let (i, ready) = bus.register(PID);
    let connected = entry::connect(bus.entry(i), ready).unwrap();
    let bit = consumer_bit(i);
    assert_eq!(pin::try_pin(bus.slot(0), bit), PinOutcome::Pinned);
    // While the consumer holds slot 0.
    let holding = std::sync::Arc::new(Flag::new(true));
    let consumer = {
        let (bus, holding) = (bus.clone(), holding.clone());
        thread::spawn(move || {
            assert_eq!(bus.read_frame(0), 1);
            assert_ne!(
                pin::pins(bus.slot(0)) & bit,
                0,
                "the live holder's pin was cleared"
            );
            holding.store(false, Plain::Relaxed);
            pin::release(bus.slot(0), bit);
            // Evicted or not: the leave lets the token go either way.
            bus.leave(i, connected);
        })
    };
    let producer = {
        let (bus, evicted_holding) = (bus.clone(), evicted_holding.clone());
        thread::spawn(move || {
            if entry::evict(bus.entry(i), connected) && holding.load(Plain::Relaxed) {
                evicted_holding.hit();
            }
            let mut latest = 1;
            for seq in 3..=4 {
                bus.reap(i);
                let slot = pin::acquire_free_slot(&bus.slots, Some(latest), 0)
                    .unwrap_or_else(|| panic!("no free slot for frame {seq}"));
                assert!(
                    !(slot == 0 && holding.load(Plain::Relaxed)),
                    "{SLOT_TAKEN} (frame {seq})"
                );
                bus.write(slot, seq);
                latest = slot;
            }
        })
    };
    consumer.join().unwrap();
    producer.join().unwrap();
    bus.reap(i);
    assert_eq!(bus.entry(i).owner().state(), Some(ConsumerState::Free));
    assert!(!bus.tokens.held(i));
    assert!(bus.slots.iter().all(|s| pin::pins(s) == 0), "pins left");
}

/// (b) An evicted consumer keeps the frame it holds while its token is
/// held: the producer's reaps leave its pin, `acquire_free_slot` never
/// picks its slot, and its read of the frame is ordered against every
/// write (loom's causality check) while the producer writes the other
/// slots. Asserted explored: evictions while the frame was held.
#[test]
fn evicted_live_holder_keeps_its_frame() {
    let seen = std::sync::Arc::new(Coverage::default());
    let s = seen.clone();
    check(3, move || evicted_holder_model(REAL, &s));
    eprintln!("evicted while holding: {}", seen.get());
    assert!(seen.get() > 0, "never evicted the consumer while it held");
}

/// Negative control: reap ignoring the token (the pid-era "reclaim at
/// once"): the evicted holder's pin is cleared and the writer rewrites its
/// frame under it.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_reap_ignoring_the_token_is_caught() {
    let v = Variant {
        reap: ReapOrder::IgnoreToken,
        ..REAL
    };
    expect_failure(
        &[
            "Causality violation",
            SLOT_TAKEN,
            "the live holder's pin was cleared",
        ],
        || {
            let s = std::sync::Arc::new(Coverage::default());
            check(3, move || evicted_holder_model(v, &s));
        },
    );
}

// ===== (c) entry reuse with stray bits ====================================

/// The failure messages of (c) all start with this.
const REUSE: &str = "new owner hurt by the old one's reap";

/// Setup: 3 slots, 1 entry; a consumer D registered, holding slots 0 and 1,
/// dies (its token goes). Then, concurrently: the producer reaps D; a new
/// consumer N claims (up to 3 tries) and, once it has the entry, pins slots
/// 0 and 2. N has D's bit: neither pin may find D's bit still set, nor be
/// cleared by D's reap. Counts executions in which N got the entry.
fn reuse_model(v: Variant, reused: &std::sync::Arc<Coverage>) {
    let bus = Arc::new(Bus::new(3, 1, v));
    let (d, _) = bus.register(1);
    for slot in [0, 1] {
        assert_eq!(
            pin::try_pin(bus.slot(slot), consumer_bit(d)),
            PinOutcome::Pinned
        );
    }
    bus.tokens.die(d);
    let producer = {
        let bus = bus.clone();
        thread::spawn(move || bus.reap(d))
    };
    let newcomer = {
        let bus = bus.clone();
        thread::spawn(move || {
            for _ in 0..3 {
                if let Some((n, _)) = bus.claim(PID) {
                    for slot in [0, 2] {
                        let got = pin::try_pin(bus.slot(slot), consumer_bit(n));
                        assert_eq!(
                            got,
                            PinOutcome::Pinned,
                            "{REUSE}: pinning slot {slot} found its stray bit"
                        );
                    }
                    return Some(n);
                }
                thread::yield_now();
            }
            None
        })
    };
    let reaped = producer.join().unwrap();
    assert!(
        matches!(reaped, Reaped::Freed { .. }),
        "the dead consumer was not reaped: {reaped:?}"
    );
    if let Some(n) = newcomer.join().unwrap() {
        reused.hit();
        assert_eq!(n, d);
        for slot in [0, 2] {
            assert_ne!(
                pin::pins(bus.slot(slot)) & consumer_bit(n),
                0,
                "{REUSE}: its pin on slot {slot} was cleared"
            );
        }
        assert_eq!(pin::pins(bus.slot(1)), 0, "the dead bit left on slot 1");
    } else {
        assert!(
            bus.slots.iter().all(|s| pin::pins(s) == 0),
            "dead bits left"
        );
    }
}

/// (c) A dead consumer's entry is reused by a new owner while the producer
/// reaps it: the stray bits are gone before the new owner can claim (its
/// pins find none), and the reap never clears the new owner's pins.
/// Asserted explored: the new owner getting the entry.
#[test]
fn entry_reuse_never_loses_the_new_owners_pins() {
    let reused = std::sync::Arc::new(Coverage::default());
    let r = reused.clone();
    check(3, move || reuse_model(REAL, &r));
    eprintln!("entry reused: {}", reused.get());
    assert!(reused.get() > 0, "the new consumer never got the entry");
}

/// Negative control: the reap frees the entry before it clears the bits:
/// the new owner claims in between and finds the dead bit on its slot, or
/// has its pin cleared by the reap.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_reap_free_before_clear_is_caught() {
    let v = Variant {
        reap: ReapOrder::FreeBeforeClear,
        ..REAL
    };
    expect_failure(&[REUSE], || {
        let r = std::sync::Arc::new(Coverage::default());
        check(3, move || reuse_model(v, &r));
    });
}

// ===== (d) budgets ========================================================

/// The failure message of (d).
const EVICTED: &str = "within-budget consumer evicted";

/// How the consumer of (d) moves while the producer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moves {
    /// Holds its budget, still.
    None,
    /// Budget 2, holds slots 0 and 1, moves once to the newest slot 2:
    /// releases slot 0, pins slot 2.
    ToNewest,
    /// Budget 1, holds slot 0, moves twice: to slot 1 (a `latest` it loaded
    /// before the producer began to wait), then to the newest slot 2.
    StaleThenNewest,
}

/// 4 slots. The consumer holds exactly its budget and moves as `moves`
/// says; the producer, waiting for a free slot (so `latest` stays put),
/// counts twice, passing `over` on. Counts executions in which the first
/// count saw the consumer over its budget.
fn budget_model(v: Variant, moves: Moves, seen_over: &std::sync::Arc<Coverage>) {
    let (budget, held_first, path): (u32, &[u32], &[(u32, u32)]) = match moves {
        Moves::None => (2, &[0, 1], &[]),
        Moves::ToNewest => (2, &[0, 1], &[(0, 2)]),
        Moves::StaleThenNewest => (1, &[0], &[(0, 1), (1, 2)]),
    };
    let bus = Arc::new(Bus::new(4, 1, v));
    let (i, ready) = bus.register(PID);
    let bit = consumer_bit(i);
    for &slot in held_first {
        assert_eq!(pin::try_pin(bus.slot(slot), bit), PinOutcome::Pinned);
    }
    let consumer = {
        let bus = bus.clone();
        thread::spawn(move || {
            for &(from, to) in path {
                pin::release(bus.slot(from), bit);
                assert_eq!(pin::try_pin(bus.slot(to), bit), PinOutcome::Pinned);
            }
            if path.is_empty() {
                for _ in 0..2 {
                    assert!(
                        entry::still_registered(bus.entry(i), ready),
                        "{EVICTED}: its word became {:?}",
                        bus.entry(i).owner()
                    );
                }
            }
        })
    };
    let producer = {
        let (bus, seen_over) = (bus.clone(), seen_over.clone());
        thread::spawn(move || {
            let count = |previous: &OverBudget| {
                entry::enforce_budgets_with(&bus.slots, &bus.entries, budget, previous, v.budget)
            };
            let first = count(&OverBudget::default());
            if !first.over.is_empty() {
                seen_over.hit();
            }
            let second = count(&first.over);
            (first, second)
        })
    };
    consumer.join().unwrap();
    let (first, second) = producer.join().unwrap();
    assert_eq!(
        first.evicted | second.evicted,
        0,
        "{EVICTED}: reports {first:?}, {second:?}"
    );
    assert_eq!(bus.entry(i).owner(), ready, "{EVICTED}: its word changed");
    let mut held: Vec<u32> = held_first.to_vec();
    for &(from, to) in path {
        held.retain(|&s| s != from);
        held.push(to);
    }
    for slot in 0..4 {
        assert_eq!(
            pin::pins(bus.slot(slot)) & bit != 0,
            held.contains(&slot),
            "{EVICTED}: its pins changed (slot {slot})"
        );
    }
}

fn budget(v: Variant, moves: Moves) -> usize {
    let seen = std::sync::Arc::new(Coverage::default());
    let s = seen.clone();
    check(3, move || budget_model(v, moves, &s));
    seen.get()
}

/// (d) A consumer holding exactly its budget, racing two counts of
/// `enforce_budgets` (`over` passed on), keeps its entry and its pins.
#[test]
fn budget_never_evicts_a_consumer_within_it() {
    assert_eq!(
        budget(REAL, Moves::None),
        0,
        "a count saw the consumer over its budget"
    );
}

/// (d) As above, with the consumer moving a pin (release slot 0, pin the
/// newest slot 2) during the counts. The first count may see it twice
/// (slot 0 before the release, slot 2 after the pin): over, as designed;
/// the second count cannot see slot 0 held again, because its Acquire
/// loads follow the pin (AcqRel) the first count saw.
#[test]
fn budget_never_evicts_a_moving_consumer_within_it() {
    let seen = budget(REAL, Moves::ToNewest);
    eprintln!("first count saw it over budget: {seen}");
    assert!(seen > 0, "no count ever saw the moving consumer twice");
}

/// (d) A consumer that moves twice (a stale `latest`, then the newest) can
/// be seen over budget by both counts, but never on the same slots.
#[test]
fn budget_never_evicts_a_consumer_moving_twice() {
    let seen = budget(REAL, Moves::StaleThenNewest);
    eprintln!("first count saw it over budget: {seen}");
    assert!(seen > 0, "no count ever saw the moving consumer twice");
}

/// Negative control: a consumer holding exactly its budget counted as over
/// it: two counts evict it.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_budget_off_by_one_is_caught() {
    let v = Variant {
        budget: BudgetVariant::OffByOne,
        ..REAL
    };
    expect_failure(&[EVICTED], || {
        budget(v, Moves::None);
    });
}

/// Negative control: Relaxed counts (the bug loom found): the second count
/// reads slot 0's word from before the release and sees the same three
/// slots again.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_budget_relaxed_count_is_caught() {
    let v = Variant {
        budget: BudgetVariant::RelaxedCount,
        ..REAL
    };
    expect_failure(&[EVICTED], || {
        budget(v, Moves::ToNewest);
    });
}

/// Negative control: two counts over budget evict whatever slots they saw:
/// the consumer moving twice is seen over budget twice, on other slots.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_budget_any_slots_is_caught() {
    let v = Variant {
        budget: BudgetVariant::AnySlots,
        ..REAL
    };
    expect_failure(&[EVICTED], || {
        budget(v, Moves::StaleThenNewest);
    });
}

// ===== (e) the BGR seqlock ================================================

/// Words of the model's BGR slot.
const WORDS: usize = 2;

/// The failure message of (e).
const MIXED: &str = "accepted a copy mixing two frames";

/// Orderings of the seqlock to weaken; `Release`/`Acquire` are the real ones.
#[derive(Debug, Clone, Copy)]
struct SeqlockOrders {
    /// The writer's fence after its odd store (`Relaxed` = no fence).
    writer_fence: Ordering,
    /// The writer's final even store.
    writer_end: Ordering,
    /// The reader's fence before its second load (`Relaxed` = no fence).
    reader_fence: Ordering,
}

const SEQLOCK_REAL: SeqlockOrders = SeqlockOrders {
    writer_fence: Ordering::Release,
    writer_end: Ordering::Release,
    reader_fence: Ordering::Acquire,
};

/// The writer writes frames 1 and 2 (every word and both stamps = the
/// frame's number) while a reader makes `reads` attempts; every accepted
/// copy must be one frame. Counts accepted copies of frame 2 and copies
/// discarded as overlapped.
fn seqlock_model(o: SeqlockOrders, reads: usize, seen: &std::sync::Arc<[Coverage; 2]>) {
    struct Slot {
        lock: BgrSeqlock,
        words: Box<[AtomicU64]>,
    }
    let slot = Arc::new(Slot {
        lock: BgrSeqlock::default(),
        words: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
    });
    let reader = {
        let (slot, seen) = (slot.clone(), seen.clone());
        thread::spawn(move || {
            let mut copy = [0u64; WORDS];
            for _ in 0..reads {
                match seqlock::try_read_with(&slot.lock, &slot.words, &mut copy, o.reader_fence) {
                    ReadOutcome::Copied {
                        frame_seq,
                        capture_ns,
                    } => {
                        assert!(
                            frame_seq != 0
                                && capture_ns == frame_seq
                                && copy.iter().all(|&w| w == frame_seq),
                            "{MIXED}: words {copy:?}, frame_seq {frame_seq}, capture_ns {capture_ns}"
                        );
                        if frame_seq == 2 {
                            seen[0].hit();
                        }
                    }
                    ReadOutcome::Overlapped => seen[1].hit(),
                    ReadOutcome::Empty | ReadOutcome::Writing => {}
                }
            }
        })
    };
    let writer = thread::spawn(move || {
        for frame in 1..=2u64 {
            let begin = seqlock::begin_write_with(&slot.lock, o.writer_fence);
            let bytes: Vec<u8> = (0..WORDS).flat_map(|_| frame.to_ne_bytes()).collect();
            seqlock::store_bytes(&slot.words, &bytes);
            seqlock::end_write_with(&slot.lock, begin, frame, frame, o.writer_end);
        }
    });
    reader.join().unwrap();
    writer.join().unwrap();
}

fn seqlock_run(o: SeqlockOrders, reads: usize) -> std::sync::Arc<[Coverage; 2]> {
    let seen = std::sync::Arc::new([Coverage::default(), Coverage::default()]);
    let s = seen.clone();
    check(3, move || seqlock_model(o, reads, &s));
    seen
}

/// (e) A reader racing two writes of the BGR slot only ever accepts one
/// whole frame: words and stamps of the same write. Asserted explored:
/// accepted copies of the second frame and copies discarded as overlapped.
#[test]
fn seqlock_never_accepts_a_mixed_copy() {
    let seen = seqlock_run(SEQLOCK_REAL, 2);
    eprintln!(
        "copies of frame 2 accepted: {}, copies discarded: {}",
        seen[0].get(),
        seen[1].get()
    );
    assert!(seen[0].get() > 0, "never copied the second frame");
    assert!(seen[1].get() > 0, "no copy ever overlapped a write");
}

/// Negative control: no Release fence after the writer's odd store: a copy
/// can read a word of frame 2 and still see the seqlock unchanged.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_seqlock_writer_without_fence_is_caught() {
    let o = SeqlockOrders {
        writer_fence: Ordering::Relaxed,
        ..SEQLOCK_REAL
    };
    expect_failure(&[MIXED], || {
        seqlock_run(o, 1);
    });
}

/// Negative control: no Acquire fence before the reader's second load.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_seqlock_reader_without_fence_is_caught() {
    let o = SeqlockOrders {
        reader_fence: Ordering::Relaxed,
        ..SEQLOCK_REAL
    };
    expect_failure(&[MIXED], || {
        seqlock_run(o, 1);
    });
}

/// Negative control: the writer's final even store Relaxed: a reader that
/// sees it does not see the words of that write.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_seqlock_relaxed_end_is_caught() {
    let o = SeqlockOrders {
        writer_end: Ordering::Relaxed,
        ..SEQLOCK_REAL
    };
    expect_failure(&[MIXED], || {
        seqlock_run(o, 1);
    });
}

// ===== (f) the unpinned copy of the newest frame ==========================

/// The failure message of (f).
const TORN: &str = "accepted a copy that is not one whole frame";

/// Orderings of the unpinned copy to weaken; `Release`/`Acquire` are the
/// real ones.
#[derive(Debug, Clone, Copy)]
struct UnpinnedOrders {
    /// The producer's fence after `seq = 0` (`Relaxed` = no fence).
    writer_fence: Ordering,
    /// The reader's fence before its second `seq` load (`Relaxed` = none).
    reader_fence: Ordering,
}

const UNPINNED_REAL: UnpinnedOrders = UnpinnedOrders {
    writer_fence: Ordering::Release,
    reader_fence: Ordering::Acquire,
};

/// Two slots of `WORDS` atomic words each: frame 1 goes to slot 0, frame
/// 2 to slot 1 (slot 0 is the newest, skipped), frame 3 to slot 0 again —
/// the slot a reader that loaded `latest` after frame 1 is copying. Every
/// word and stamp of frame `n` is `n`. The reader makes `reads` attempts;
/// every accepted copy must be one frame. Counts accepted copies of a
/// frame after the first, and copies refused as rewritten.
fn unpinned_model(o: UnpinnedOrders, reads: usize, seen: &std::sync::Arc<[Coverage; 2]>) {
    struct Bus {
        slots: Box<[SlotEntry]>,
        words: Box<[Box<[AtomicU64]>]>,
        latest: AtomicU64,
    }
    let bus = Arc::new(Bus {
        slots: (0..2).map(|_| SlotEntry::default()).collect(),
        words: (0..2)
            .map(|_| (0..WORDS).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        latest: AtomicU64::new(0),
    });
    let reader = {
        let (bus, seen) = (bus.clone(), seen.clone());
        thread::spawn(move || {
            let mut copy = [0u64; WORDS];
            for _ in 0..reads {
                let words = |slot: u32| bus.words.get(slot as usize).map(|w| &w[..]);
                match unpinned::try_copy_with(
                    &bus.latest,
                    &bus.slots,
                    words,
                    &mut copy,
                    o.reader_fence,
                ) {
                    CopyOutcome::Copied {
                        seq,
                        capture_ns,
                        publish_ns,
                        ..
                    } => {
                        assert!(
                            seq != 0
                                && capture_ns == seq
                                && publish_ns == seq
                                && copy.iter().all(|&w| w == seq),
                            "{TORN}: words {copy:?}, seq {seq}, capture_ns {capture_ns}, publish_ns {publish_ns}"
                        );
                        if seq > 1 {
                            seen[0].hit();
                        }
                    }
                    CopyOutcome::Rewritten => seen[1].hit(),
                    CopyOutcome::Empty => {}
                    CopyOutcome::BadSlot { slot } => panic!("bad slot {slot}"),
                }
            }
        })
    };
    let writer = thread::spawn(move || {
        for seq in 1..=3u64 {
            // The producer is the only writer of `latest`.
            let newest = unpack_latest(bus.latest.load(Ordering::Relaxed)).map(|(_, s)| s);
            let slot = pin::acquire_free_slot(&bus.slots, newest, 0)
                .expect("a free slot: nobody pins in this model");
            let entry = &bus.slots[slot as usize];
            unpinned::mark_rewriting_with(entry, o.writer_fence);
            for w in bus.words[slot as usize].iter() {
                w.store(seq, Ordering::Relaxed);
            }
            entry.seq.store(seq, Ordering::Relaxed);
            entry.capture_ns.store(seq, Ordering::Relaxed);
            entry.publish_ns.store(seq, Ordering::Relaxed);
            pin::end_write(entry);
            bus.latest.store(pack_latest(seq, slot), Ordering::Release);
        }
    });
    reader.join().unwrap();
    writer.join().unwrap();
}

fn unpinned_run(o: UnpinnedOrders, reads: usize) -> std::sync::Arc<[Coverage; 2]> {
    let seen = std::sync::Arc::new([Coverage::default(), Coverage::default()]);
    let s = seen.clone();
    check(3, move || unpinned_model(o, reads, &s));
    seen
}

/// (f) A reader copying the newest frame without a pin, while the producer
/// rewrites the slot it copies, only ever accepts one whole frame (words
/// and stamps of one write). Asserted explored: accepted copies of a later
/// frame, and copies refused because the slot was rewritten.
#[test]
fn unpinned_copy_never_accepts_a_torn_frame() {
    let seen = unpinned_run(UNPINNED_REAL, 2);
    eprintln!(
        "copies of a later frame accepted: {}, copies refused: {}",
        seen[0].get(),
        seen[1].get()
    );
    assert!(seen[0].get() > 0, "never copied a frame after the first");
    assert!(seen[1].get() > 0, "no copy was ever refused as rewritten");
}

/// Negative control: a producer that stores `seq = 0` without the Release
/// fence before the pixels: a copy can read frame 3's words and still see
/// frame 1's seq.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_unpinned_writer_without_fence_is_caught() {
    let o = UnpinnedOrders {
        writer_fence: Ordering::Relaxed,
        ..UNPINNED_REAL
    };
    expect_failure(&[TORN], || {
        unpinned_run(o, 1);
    });
}

/// Negative control: no Acquire fence before the reader's second `seq`
/// load.
#[test]
#[should_panic(expected = "negative control caught")]
fn control_unpinned_reader_without_fence_is_caught() {
    let o = UnpinnedOrders {
        reader_fence: Ordering::Relaxed,
        ..UNPINNED_REAL
    };
    expect_failure(&[TORN], || {
        unpinned_run(o, 1);
    });
}
