//! The consumer table's state machine: every change of an owner word, and
//! the decisions built on liveness tokens — written once, over atomics, and
//! model-checked with `loom` as it is.
//!
//! Each entry has a liveness token that the OS keeps for its owner (an
//! open-file-description lock on Linux, see `framebus-platform`). The rules
//! that make "dead" mean dead:
//! - a consumer takes entry `i`'s token **before** it claims the entry, and
//!   lets it go only **after** it has freed the entry (or after the producer
//!   has taken it over): so whenever an owner word is not Free, its owner
//!   holds the token until it has let go of the entry;
//! - the producer reads the owner word **before** it tests the token: a
//!   token found free then means that word's owner is dead or has left —
//!   and if it left, the word changed and the producer's compare-exchange
//!   from it fails;
//! - the producer clears an entry's pin bits only once its token is free
//!   ([`reap`]), or when the owner broke the protocol ([`evict_and_strip`]:
//!   more pins than its budget, a state only the producer may set). An
//!   entry is freed only after its bits are cleared.
//!
//! Orderings: every owner-word change is a compare-exchange, AcqRel; see
//! doc/PROTOCOL.md for the argument.

use crate::pin::{self, consumer_bit, WRITER};
use crate::sync::Ordering;
use crate::tables::{ConsumerEntry, ConsumerState, Owner, SlotEntry};

/// The consumer's side of the liveness tokens: take and let go of entry
/// `index`'s token.
pub trait HoldTokens {
    /// Takes entry `index`'s token for this owner; `false` if another owner
    /// holds it (or it cannot be taken).
    fn try_hold(&self, index: u32) -> bool;
    /// Lets entry `index`'s token go.
    fn release(&self, index: u32);
}

/// The producer's side: whether entry `index`'s token is held by someone.
/// An implementation that cannot tell must answer `true` (alive): a wrong
/// "alive" only delays a reclaim; a wrong "dead" would rewrite a frame a
/// live process holds.
pub trait TestTokens {
    /// Whether entry `index`'s owner still holds its token.
    fn held(&self, index: u32) -> bool;
}

/// Consumer: claims the first free entry whose token it can take: token
/// first, then the compare-exchange from the Free word (generation kept)
/// to Claimed by `pid` with the generation bumped. A failed claim lets the
/// token go again.
pub fn claim(
    entries: &[ConsumerEntry],
    pid: u32,
    tokens: &impl HoldTokens,
) -> Option<(u32, Owner)> {
    claim_with(entries, pid, tokens, false)
}

/// [`claim`] with the token taken after the claim when `token_last`; exists
/// so the loom model can show that this order is caught (a negative
/// control). Never use it otherwise.
#[doc(hidden)]
pub fn claim_with(
    entries: &[ConsumerEntry],
    pid: u32,
    tokens: &impl HoldTokens,
    token_last: bool,
) -> Option<(u32, Owner)> {
    for (i, entry) in entries.iter().enumerate() {
        let index = i as u32;
        let cur = entry.owner();
        if cur.state() != Some(ConsumerState::Free) {
            continue;
        }
        if !token_last && !tokens.try_hold(index) {
            continue;
        }
        let claimed = Owner::new(
            pid,
            cur.generation().wrapping_add(1),
            ConsumerState::Claimed,
        );
        // AcqRel: Acquire sees the producer's reclaim (bits cleared) before
        // we use the entry's bit.
        if entry
            .owner
            .compare_exchange(cur.0, claimed.0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            if token_last && !tokens.try_hold(index) {
                continue;
            }
            return Some((index, claimed));
        }
        if !token_last {
            tokens.release(index);
        }
    }
    None
}

/// Consumer: announces that its FIFO is open (Claimed → Ready). Release:
/// its name, figures and FIFO are in place before the producer sees Ready.
/// `None` if the producer took the entry over meanwhile.
pub fn mark_ready(entry: &ConsumerEntry, claimed: Owner) -> Option<Owner> {
    let ready = claimed.with_state(ConsumerState::Ready);
    entry
        .owner
        .compare_exchange(claimed.0, ready.0, Ordering::AcqRel, Ordering::Relaxed)
        .ok()
        .map(|_| ready)
}

/// Whether the entry still belongs to `mine` (same pid and generation) in
/// a state the producer leaves to its owner (Ready or Connected).
pub fn still_registered(entry: &ConsumerEntry, mine: Owner) -> bool {
    let cur = entry.owner();
    same_owner(cur, mine)
        && matches!(
            cur.state(),
            Some(ConsumerState::Ready | ConsumerState::Connected)
        )
}

fn same_owner(a: Owner, b: Owner) -> bool {
    a.pid() == b.pid() && a.generation() == b.generation()
}

/// Consumer: leaves entry `index` (holding no pin any more): frees it if it
/// is still `mine` in a state its owner may leave (Claimed, Ready,
/// Connected), then lets the token go. An entry the producer is reclaiming
/// stays for the producer to free once the token is gone. Returns whether
/// this call freed the entry.
pub fn leave(entry: &ConsumerEntry, index: u32, mine: Owner, tokens: &impl HoldTokens) -> bool {
    leave_with(entry, index, mine, tokens, false)
}

/// [`leave`] with the token let go first when `token_first`: the negative
/// control of the loom model. Never use it otherwise.
#[doc(hidden)]
pub fn leave_with(
    entry: &ConsumerEntry,
    index: u32,
    mine: Owner,
    tokens: &impl HoldTokens,
    token_first: bool,
) -> bool {
    if token_first {
        tokens.release(index);
    }
    let mut cur = entry.owner();
    let freed = loop {
        let leavable = matches!(
            cur.state(),
            Some(ConsumerState::Claimed | ConsumerState::Ready | ConsumerState::Connected)
        );
        if !same_owner(cur, mine) || !leavable {
            break false;
        }
        // Release (in the CAS): our releases of pins happen-before a new
        // claimant's use of the bit. A failure means the producer moved the
        // word meanwhile (connected it, say): look again.
        match entry.owner.compare_exchange(
            cur.0,
            cur.freed().0,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => break true,
            Err(now) => cur = Owner(now),
        }
    };
    if !token_first {
        tokens.release(index);
    }
    freed
}

/// Producer: Ready → Connected on the exact word (after opening the FIFO).
/// `None` if the consumer left or re-registered meanwhile.
pub fn connect(entry: &ConsumerEntry, ready: Owner) -> Option<Owner> {
    let connected = ready.with_state(ConsumerState::Connected);
    entry
        .owner
        .compare_exchange(ready.0, connected.0, Ordering::AcqRel, Ordering::Relaxed)
        .ok()
        .map(|_| connected)
}

/// Producer: stops serving the entry's owner (its FIFO is gone or unusable):
/// `observed` → Reclaiming, so nobody claims the entry. Its pin bits stay
/// until its token is free ([`reap`]): a live owner's frames are never
/// rewritten. `false` if the entry changed since `observed`.
pub fn evict(entry: &ConsumerEntry, observed: Owner) -> bool {
    observed.state() == Some(ConsumerState::Reclaiming)
        || entry
            .owner
            .compare_exchange(
                observed.0,
                observed.with_state(ConsumerState::Reclaiming).0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
}

/// Producer: evicts an owner that broke the protocol (more pins than its
/// budget, a state only the producer sets) and clears its pin bits at once.
/// Returns the slots cleared, `None` if the entry changed since `observed`.
pub fn evict_and_strip(
    slots: &[SlotEntry],
    entry: &ConsumerEntry,
    index: u32,
    observed: Owner,
) -> Option<u32> {
    evict(entry, observed).then(|| pin::reclaim(slots, consumer_bit(index)))
}

/// What [`reap`] did with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    /// The entry is free.
    Free,
    /// Its owner holds its token: left alone.
    Alive,
    /// The entry changed hands while it was looked at: left alone.
    Changed,
    /// Its owner was gone: its pin bits cleared (`cleared` slots) and the
    /// entry freed. `owner` is the word it had.
    Freed {
        /// The owner word the entry had.
        owner: Owner,
        /// Slots whose pin it held.
        cleared: u32,
    },
}

/// Producer: the liveness pass for entry `index`: if its owner's token is
/// free, the owner is gone — mark the entry Reclaiming (unless it is
/// already), clear its pin bit from every slot, then free it (generation
/// kept, so the next claim bumps it).
pub fn reap(
    slots: &[SlotEntry],
    entries: &[ConsumerEntry],
    index: u32,
    tokens: &impl TestTokens,
) -> Reaped {
    reap_with(slots, entries, index, tokens, ReapOrder::Real)
}

/// Broken variants of [`reap`], for the loom model's negative controls.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReapOrder {
    /// The real order.
    Real,
    /// Test the token before reading the owner word.
    TokenBeforeOwner,
    /// Free the entry before clearing its bits.
    FreeBeforeClear,
    /// Ignore the token (the pid-era behaviour of reclaiming at once).
    IgnoreToken,
}

/// [`reap`] with a chosen order; exists for the loom model's negative
/// controls. Never use anything but [`ReapOrder::Real`] otherwise.
#[doc(hidden)]
pub fn reap_with(
    slots: &[SlotEntry],
    entries: &[ConsumerEntry],
    index: u32,
    tokens: &impl TestTokens,
    order: ReapOrder,
) -> Reaped {
    let entry = &entries[index as usize];
    let early_test = (order == ReapOrder::TokenBeforeOwner).then(|| tokens.held(index));
    let owner = entry.owner();
    if owner.state() == Some(ConsumerState::Free) {
        return Reaped::Free;
    }
    let held = match order {
        ReapOrder::IgnoreToken => false,
        ReapOrder::TokenBeforeOwner => early_test.unwrap_or(true),
        _ => tokens.held(index),
    };
    if held {
        return Reaped::Alive;
    }
    let reclaiming = owner.with_state(ConsumerState::Reclaiming);
    if !evict(entry, owner) {
        return Reaped::Changed;
    }
    let bit = consumer_bit(index);
    let free = |w: Owner| {
        // Release (in the CAS): the cleared bits are visible before the
        // entry is free.
        entry
            .owner
            .compare_exchange(w.0, w.freed().0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    };
    if order == ReapOrder::FreeBeforeClear {
        free(reclaiming);
        let cleared = pin::reclaim(slots, bit);
        return Reaped::Freed { owner, cleared };
    }
    let cleared = pin::reclaim(slots, bit);
    if !free(reclaiming) {
        return Reaped::Changed;
    }
    Reaped::Freed { owner, cleared }
}

/// The entries one count of [`enforce_budgets`] saw over their budget,
/// each with the slots it was seen holding. Pass it to the next count;
/// forget it (`OverBudget::default()`) once the producer found a free slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverBudget(Vec<(u32, Vec<u32>)>);

impl OverBudget {
    /// Whether no entry was seen over its budget.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries seen over budget, as a bit set.
    pub fn entries(&self) -> u64 {
        self.0.iter().fold(0, |acc, (i, _)| acc | consumer_bit(*i))
    }

    fn slots_of(&self, index: u32) -> Option<&[u32]> {
        self.0
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, s)| s.as_slice())
    }
}

/// What [`enforce_budgets`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetReport {
    /// Entries seen over budget by this count; pass it to the next call,
    /// which evicts those it sees over budget holding the very same slots.
    pub over: OverBudget,
    /// Entries evicted (their pins cleared) by this call.
    pub evicted: u64,
    /// Slots whose writer bit or bits of nonexistent entries were cleared.
    pub stray_slots: u32,
    /// Free entries whose stray bits were cleared.
    pub stray_entries: u64,
}

/// Producer, when its passes found no free slot (and so publishes nothing
/// until it finds one): clears writer bits (the producer holds none between
/// publishes) and bits no entry of this bus can own, clears the bits of
/// Free entries (a Free entry holds nothing), and evicts-and-strips an
/// entry seen holding more than `budget` slots in two counts in a row
/// **holding the same slots** (`previous` from the last count of this same
/// wait for a free slot).
///
/// Why a consumer within its budget is never evicted, although a count
/// reads the slots one by one while the consumer moves its pins: a count
/// can see a slot before the consumer releases it and another after the
/// consumer pins it. Pins are AcqRel and the count's loads Acquire, so a
/// later count sees every release that came before a pin an earlier count
/// saw; and while the producer waits, `latest` does not move, so an honest
/// consumer can only pin the newest slot (once: it never takes a frame
/// twice), never a slot it let go. Two counts seeing the same set of more
/// than `budget` slots therefore prove that the consumer held them all at
/// once. An owner within its budget keeps its pins, whatever its state:
/// only its token's release ([`reap`]) clears them.
pub fn enforce_budgets(
    slots: &[SlotEntry],
    entries: &[ConsumerEntry],
    budget: u32,
    previous: &OverBudget,
) -> BudgetReport {
    enforce_budgets_with(slots, entries, budget, previous, BudgetVariant::Real)
}

/// Broken variants of [`enforce_budgets`], for the loom model's negative
/// controls.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetVariant {
    /// The real rule.
    Real,
    /// A consumer holding exactly its budget counts as over it.
    OffByOne,
    /// Two counts over budget evict, whatever slots each saw.
    AnySlots,
    /// The count's loads are Relaxed.
    RelaxedCount,
}

/// [`enforce_budgets`] with a broken `variant`: the loom model's negative
/// controls. Never use anything but [`BudgetVariant::Real`] otherwise.
#[doc(hidden)]
pub fn enforce_budgets_with(
    slots: &[SlotEntry],
    entries: &[ConsumerEntry],
    budget: u32,
    previous: &OverBudget,
    variant: BudgetVariant,
) -> BudgetReport {
    let n = entries.len() as u32;
    let mut report = BudgetReport::default();
    let stray = !WRITER & !(if n >= 64 { u64::MAX } else { (1u64 << n) - 1 });
    for s in slots {
        if pin::pins(s) & (WRITER | stray) != 0 {
            s.pins.fetch_and(!(WRITER | stray), Ordering::Release);
            report.stray_slots += 1;
        }
    }
    let count_order = if variant == BudgetVariant::RelaxedCount {
        Ordering::Relaxed
    } else {
        Ordering::Acquire
    };
    for (i, entry) in entries.iter().enumerate() {
        let index = i as u32;
        let bit = consumer_bit(index);
        // Acquire: a pin seen here brings every release its consumer made
        // before it into view of the counts that follow.
        let held_slots: Vec<u32> = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.pins.load(count_order) & bit != 0)
            .map(|(k, _)| k as u32)
            .collect();
        let held = held_slots.len() as u32;
        if held == 0 {
            continue;
        }
        let owner = entry.owner();
        if owner.state() == Some(ConsumerState::Free) {
            // Lock the free entry against claims while its stray bits go.
            let locked = owner.with_state(ConsumerState::Reclaiming);
            if entry
                .owner
                .compare_exchange(owner.0, locked.0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                pin::reclaim(slots, bit);
                let _ = entry.owner.compare_exchange(
                    locked.0,
                    owner.0,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                report.stray_entries |= bit;
            }
            continue;
        }
        let over = if variant == BudgetVariant::OffByOne {
            held >= budget
        } else {
            held > budget
        };
        if !over {
            continue;
        }
        let confirmed = match previous.slots_of(index) {
            Some(before) => variant == BudgetVariant::AnySlots || before == held_slots.as_slice(),
            None => false,
        };
        if confirmed {
            if evict_and_strip(slots, entry, index, owner).is_some() {
                report.evicted |= bit;
            }
        } else {
            report.over.0.push((index, held_slots));
        }
    }
    report
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Tokens as a bit set: bit i = entry i's token is held (by someone).
    #[derive(Default)]
    struct Bits(Cell<u64>);
    impl HoldTokens for Bits {
        fn try_hold(&self, i: u32) -> bool {
            let b = 1 << i;
            let free = self.0.get() & b == 0;
            self.0.set(self.0.get() | b);
            free
        }
        fn release(&self, i: u32) {
            self.0.set(self.0.get() & !(1 << i));
        }
    }
    impl TestTokens for Bits {
        fn held(&self, i: u32) -> bool {
            self.0.get() & (1 << i) != 0
        }
    }

    fn tables(slots: usize, entries: usize) -> (Vec<SlotEntry>, Vec<ConsumerEntry>) {
        (
            (0..slots).map(|_| SlotEntry::default()).collect(),
            (0..entries).map(|_| ConsumerEntry::default()).collect(),
        )
    }

    #[test]
    fn claim_takes_the_token_first_and_skips_held_tokens() {
        let (_, e) = tables(1, 3);
        let tokens = Bits::default();
        tokens.try_hold(0); // someone (a lingering fork) holds entry 0's token
        let (i, o) = claim(&e, 42, &tokens).unwrap();
        assert_eq!(
            (i, o.pid(), o.generation(), o.state()),
            (1, 42, 1, Some(ConsumerState::Claimed))
        );
        assert!(tokens.held(1));
        assert_eq!(e[0].owner().state(), Some(ConsumerState::Free));
        let (j, _) = claim(&e, 43, &tokens).unwrap();
        assert_eq!(j, 2);
        assert_eq!(claim(&e, 44, &tokens), None, "every token or entry taken");
    }

    #[test]
    fn a_live_owner_is_never_reaped_and_a_dead_one_is_freed_after_its_bits() {
        let (s, e) = tables(4, 2);
        let tokens = Bits::default();
        let (i, claimed) = claim(&e, 7, &tokens).unwrap();
        let ready = mark_ready(&e[i as usize], claimed).unwrap();
        assert!(still_registered(&e[i as usize], ready));
        pin::try_pin(&s[2], consumer_bit(i));
        // Evicted (its FIFO broke) but alive: bits stay.
        assert!(evict(&e[i as usize], ready));
        assert!(!still_registered(&e[i as usize], ready));
        assert_eq!(reap(&s, &e, i, &tokens), Reaped::Alive);
        assert_eq!(pin::pins(&s[2]), consumer_bit(i));
        // It lets its token go: now it is reaped.
        assert!(
            !leave(&e[i as usize], i, ready, &tokens),
            "the producer frees a reclaiming entry"
        );
        let r = reap(&s, &e, i, &tokens);
        assert_eq!(
            r,
            Reaped::Freed {
                owner: ready.with_state(ConsumerState::Reclaiming),
                cleared: 1
            }
        );
        assert_eq!(pin::pins(&s[2]), 0);
        assert_eq!(e[i as usize].owner(), Owner::new(0, 1, ConsumerState::Free));
        assert_eq!(reap(&s, &e, i, &tokens), Reaped::Free);
    }

    #[test]
    fn leaving_frees_then_lets_the_token_go() {
        let (_, e) = tables(1, 1);
        let tokens = Bits::default();
        let (i, claimed) = claim(&e, 9, &tokens).unwrap();
        let ready = mark_ready(&e[0], claimed).unwrap();
        let connected = connect(&e[0], ready).unwrap();
        assert!(
            still_registered(&e[0], ready),
            "pid and generation decide, not the state"
        );
        assert!(leave(&e[0], i, connected, &tokens));
        assert!(!tokens.held(0));
        assert_eq!(e[0].owner().state(), Some(ConsumerState::Free));
        // A stale owner (older generation) never frees a newer one.
        let (_, newer) = claim(&e, 9, &tokens).unwrap();
        assert!(!leave(&e[0], 0, connected, &tokens));
        assert_eq!(e[0].owner(), newer);
    }

    #[test]
    fn budgets_evict_only_owners_over_budget_twice_and_clear_strays() {
        let (s, e) = tables(6, 3);
        let tokens = Bits::default();
        let (a, ca) = claim(&e, 1, &tokens).unwrap();
        let (b, cb) = claim(&e, 2, &tokens).unwrap();
        mark_ready(&e[a as usize], ca).unwrap();
        mark_ready(&e[b as usize], cb).unwrap();
        // a holds exactly its budget of 2; b holds 3; entry 2 is Free with a bit.
        for k in [0, 1] {
            pin::try_pin(&s[k], consumer_bit(a));
        }
        for k in [2, 3, 4] {
            pin::try_pin(&s[k], consumer_bit(b));
        }
        pin::try_pin(&s[5], consumer_bit(2));
        s[5].pins.fetch_or(WRITER | (1 << 40), Ordering::Relaxed);
        let first = enforce_budgets(&s, &e, 2, &OverBudget::default());
        assert_eq!(first.over.entries(), consumer_bit(b));
        assert_eq!(first.evicted, 0);
        assert_eq!(first.stray_slots, 1);
        assert_eq!(first.stray_entries, consumer_bit(2));
        assert_eq!(pin::pins(&s[5]), 0);
        assert_eq!(
            e[2].owner().state(),
            Some(ConsumerState::Free),
            "unlocked again"
        );
        // Seen over budget on other slots before: not yet.
        let elsewhere = OverBudget(vec![(b, vec![2, 3, 5])]);
        assert_eq!(enforce_budgets(&s, &e, 2, &elsewhere).evicted, 0);
        let second = enforce_budgets(&s, &e, 2, &first.over);
        assert_eq!(second.evicted, consumer_bit(b));
        assert_eq!(
            e[b as usize].owner().state(),
            Some(ConsumerState::Reclaiming)
        );
        assert!((2..5).all(|k| pin::pins(&s[k]) == 0), "b's pins stripped");
        assert!(
            (0..2).all(|k| pin::pins(&s[k]) == consumer_bit(a)),
            "a keeps its budget"
        );
        assert_eq!(e[a as usize].owner().state(), Some(ConsumerState::Ready));
    }
}
