//! The consumer table's state machine (`shm_layout::entry`) where another
//! party moves between a read and a compare-exchange: token oracles that act
//! at the very moment they are asked, so each race happens deterministically.
#![cfg(not(loom))]

use std::cell::Cell;

use shm_layout::entry::{self, HoldTokens, Reaped, TestTokens};
use shm_layout::pin::{self, consumer_bit};
use shm_layout::sync::Ordering;
use shm_layout::{ConsumerEntry, ConsumerState, Owner, SlotEntry};

fn tables(slots: usize, entries: usize) -> (Vec<SlotEntry>, Vec<ConsumerEntry>) {
    (
        (0..slots).map(|_| SlotEntry::default()).collect(),
        (0..entries).map(|_| ConsumerEntry::default()).collect(),
    )
}

/// Tokens as a bit set (bit i: entry i's token is held by someone), with
/// a hook run when a token is taken or tested.
struct Tokens<'a> {
    held: &'a Cell<u64>,
    on_take: &'a dyn Fn(u32),
    on_test: &'a dyn Fn(u32),
}

impl<'a> Tokens<'a> {
    fn new(held: &'a Cell<u64>, on_take: &'a dyn Fn(u32), on_test: &'a dyn Fn(u32)) -> Self {
        Self {
            held,
            on_take,
            on_test,
        }
    }
    fn is_held(&self, i: u32) -> bool {
        self.held.get() & (1 << i) != 0
    }
}

impl HoldTokens for Tokens<'_> {
    fn try_hold(&self, i: u32) -> bool {
        (self.on_take)(i);
        let free = !self.is_held(i);
        self.held.set(self.held.get() | 1 << i);
        free
    }
    fn release(&self, i: u32) {
        self.held.set(self.held.get() & !(1 << i));
    }
}

impl TestTokens for Tokens<'_> {
    fn held(&self, i: u32) -> bool {
        (self.on_test)(i);
        self.is_held(i)
    }
}

const NOTHING: &dyn Fn(u32) = &|_| {};

/// Another consumer claims entry 0 between our read of its Free word and
/// our compare-exchange: we let its token go again and claim entry 1.
#[test]
fn a_claim_that_loses_the_race_lets_the_token_go() {
    let (_, e) = tables(1, 2);
    let rival = Owner::new(99, 1, ConsumerState::Claimed);
    let race = |i: u32| {
        if i == 0 {
            e[0].owner.store(rival.0, Ordering::Release);
        }
    };
    let held = Cell::new(0);
    let tokens = Tokens::new(&held, &race, NOTHING);
    let (i, mine) = entry::claim(&e, 7, &tokens).unwrap();
    assert_eq!((i, mine), (1, Owner::new(7, 1, ConsumerState::Claimed)));
    assert!(!tokens.is_held(0), "the token of the lost entry is let go");
    assert!(tokens.is_held(1));
    assert_eq!(e[0].owner(), rival);
}

/// The negative control of the loom model (token taken after the claim)
/// behaves as that model says: an entry whose token someone else holds is
/// left Claimed without a token, and the claim goes on to the next entry.
#[test]
fn the_token_last_control_leaves_a_claimed_entry_without_its_token() {
    let (_, e) = tables(1, 2);
    let held = Cell::new(1); // a lingering holder of entry 0's token
    let tokens = Tokens::new(&held, NOTHING, NOTHING);
    let (i, _) = entry::claim_with(&e, 7, &tokens, true).unwrap();
    assert_eq!(i, 1);
    assert_eq!(e[0].owner(), Owner::new(7, 1, ConsumerState::Claimed));
    // And without a race, it takes the token after the claim.
    let (_, e) = tables(1, 1);
    let held = Cell::new(0);
    let tokens = Tokens::new(&held, NOTHING, NOTHING);
    assert_eq!(
        entry::claim_with(&e, 8, &tokens, true).map(|(i, _)| i),
        Some(0)
    );
    assert!(tokens.is_held(0));
}

/// The producer connects the entry between the consumer's read of its
/// Ready word and its compare-exchange to Free: the consumer looks again
/// and frees the Connected entry (it never leaves one without a token).
#[test]
fn a_leave_that_races_a_connect_looks_again() {
    let (_, e) = tables(1, 1);
    let held = Cell::new(0);
    let tokens = Tokens::new(&held, NOTHING, NOTHING);
    let (i, claimed) = entry::claim(&e, 7, &tokens).unwrap();
    let ready = entry::mark_ready(&e[0], claimed).unwrap();
    // The Connected word appears just before the consumer's CAS: simulate
    // by connecting first and leaving with the Ready word it remembers.
    entry::connect(&e[0], ready).unwrap();
    assert!(entry::leave(&e[0], i, ready, &tokens));
    assert_eq!(e[0].owner(), Owner::new(0, 1, ConsumerState::Free));
    assert!(!tokens.is_held(0));
}

/// A consumer claims a freed entry while the producer reaps it: the
/// producer's test of the token sees the new owner's token... or the entry
/// changed under it; either way the new owner keeps its entry and bits.
#[test]
fn a_reap_never_frees_an_entry_claimed_again_meanwhile() {
    let (s, e) = tables(3, 1);
    let first = Owner::new(5, 3, ConsumerState::Ready);
    e[0].owner.store(first.0, Ordering::Release);
    // Between the producer's read of the owner word and its token test,
    // the owner leaves and a new consumer claims the entry (token first)
    // and pins a slot.
    let newcomer = Owner::new(6, 4, ConsumerState::Claimed);
    let held = Cell::new(0);
    let race = |i: u32| {
        assert_eq!(i, 0);
        if e[0].owner() == first {
            held.set(1); // the newcomer's token, taken before its claim
            e[0].owner.store(newcomer.0, Ordering::Release);
            pin::try_pin(&s[1], consumer_bit(0));
        }
    };
    let tokens = Tokens::new(&held, NOTHING, &race);
    assert_eq!(entry::reap(&s, &e, 0, &tokens), Reaped::Alive);
    assert_eq!(e[0].owner(), newcomer);
    assert_eq!(pin::pins(&s[1]), consumer_bit(0));

    // The same race, but the newcomer's token is not held yet when tested
    // (a broken claimer): the producer's compare-exchange from the old
    // word fails and nothing is cleared.
    let (s, e) = tables(3, 1);
    e[0].owner.store(first.0, Ordering::Release);
    let race = |_: u32| {
        if e[0].owner() == first {
            e[0].owner.store(newcomer.0, Ordering::Release);
            pin::try_pin(&s[1], consumer_bit(0));
        }
    };
    let held = Cell::new(0);
    let tokens = Tokens::new(&held, NOTHING, &race);
    assert_eq!(entry::reap(&s, &e, 0, &tokens), Reaped::Changed);
    assert_eq!(e[0].owner(), newcomer);
    assert_eq!(pin::pins(&s[1]), consumer_bit(0));
}

/// Evicting from a word the entry no longer has fails; evicting an entry
/// already Reclaiming succeeds without a write.
#[test]
fn evict_is_a_compare_exchange_on_the_observed_word() {
    let (s, e) = tables(2, 1);
    let o = Owner::new(5, 2, ConsumerState::Connected);
    e[0].owner.store(o.0, Ordering::Release);
    pin::try_pin(&s[0], consumer_bit(0));
    let stale = Owner::new(5, 1, ConsumerState::Connected);
    assert!(!entry::evict(&e[0], stale));
    assert_eq!(entry::evict_and_strip(&s, &e[0], 0, stale), None);
    assert_eq!(e[0].owner(), o);
    assert_eq!(pin::pins(&s[0]), 1, "a failed eviction strips nothing");
    assert!(entry::evict(&e[0], o));
    let r = o.with_state(ConsumerState::Reclaiming);
    assert_eq!(e[0].owner(), r);
    assert!(entry::evict(&e[0], r), "already reclaiming");
    assert_eq!(entry::evict_and_strip(&s, &e[0], 0, r), Some(1));
    assert_eq!(pin::pins(&s[0]), 0);
    assert_eq!(e[0].owner(), r);
}

/// A Free entry holding stray bits is locked while they are cleared and
/// unlocked after; an entry claimed meanwhile keeps its word.
#[test]
fn stray_bits_of_free_entries_are_cleared_under_a_lock() {
    let (s, e) = tables(4, 2);
    let free_gen = Owner::new(0, 9, ConsumerState::Free);
    e[1].owner.store(free_gen.0, Ordering::Release);
    pin::try_pin(&s[0], consumer_bit(1));
    pin::try_pin(&s[2], consumer_bit(1));
    let r = entry::enforce_budgets(&s, &e, 1, &Default::default());
    assert_eq!(r.stray_entries, consumer_bit(1));
    assert_eq!(r.stray_slots, 0);
    assert_eq!(r.evicted, 0);
    assert!(r.over.is_empty());
    assert_eq!(e[1].owner(), free_gen, "unlocked, generation kept");
    assert_eq!((pin::pins(&s[0]), pin::pins(&s[2])), (0, 0));
}

/// The budget count: exactly the budget is within it, one more is over;
/// only the same slots seen twice evict; OverBudget reports its entries.
#[test]
fn budget_counts_at_the_edge() {
    let (s, e) = tables(8, 3);
    for (i, state) in [(0, ConsumerState::Connected), (1, ConsumerState::Ready)] {
        e[i].owner
            .store(Owner::new(10 + i as u32, 1, state).0, Ordering::Release);
    }
    for slot in &s[0..3] {
        pin::try_pin(slot, consumer_bit(0)); // exactly a budget of 3
    }
    for slot in &s[3..7] {
        pin::try_pin(slot, consumer_bit(1)); // 4: one over
    }
    let first = entry::enforce_budgets(&s, &e, 3, &Default::default());
    assert_eq!(first.over.entries(), consumer_bit(1));
    assert!(!first.over.is_empty());
    assert_eq!(first.evicted, 0);
    // Entry 1 moves one pin: not the same slots, not evicted.
    pin::release(&s[6], consumer_bit(1));
    pin::try_pin(&s[7], consumer_bit(1));
    let second = entry::enforce_budgets(&s, &e, 3, &first.over);
    assert_eq!(second.evicted, 0);
    assert_eq!(second.over.entries(), consumer_bit(1));
    let third = entry::enforce_budgets(&s, &e, 3, &second.over);
    assert_eq!(third.evicted, consumer_bit(1));
    assert!(third.over.is_empty());
    assert!((0..3).all(|k| pin::pins(&s[k]) == consumer_bit(0)));
    assert!((3..8).all(|k| pin::pins(&s[k]) == 0));
    assert_eq!(e[0].owner().state(), Some(ConsumerState::Connected));
    assert_eq!(e[1].owner().state(), Some(ConsumerState::Reclaiming));
}

/// The broken reap orders of the loom model's negative controls behave as
/// that model says: ignoring the token frees a live owner's entry and
/// clears its bits; testing the token before reading the owner word acts
/// on a stale answer.
#[test]
fn the_reap_controls_behave_as_the_loom_model_says() {
    use shm_layout::entry::{reap_with, ReapOrder};
    let (s, e) = tables(2, 1);
    let live = Owner::new(5, 2, ConsumerState::Connected);
    e[0].owner.store(live.0, Ordering::Release);
    pin::try_pin(&s[0], consumer_bit(0));
    let held = Cell::new(1);
    let tokens = Tokens::new(&held, NOTHING, NOTHING);
    assert_eq!(
        reap_with(&s, &e, 0, &tokens, ReapOrder::Real),
        Reaped::Alive
    );
    assert_eq!(
        reap_with(&s, &e, 0, &tokens, ReapOrder::IgnoreToken),
        Reaped::Freed {
            owner: live,
            cleared: 1
        },
        "the pid-era hazard: a live owner's frame taken"
    );
    assert_eq!(pin::pins(&s[0]), 0);

    // The token is held when first tested and let go right after: the real
    // order tests once, after reading the owner, and sees it free; the
    // control acts on its early answer.
    let (s, e) = tables(2, 1);
    e[0].owner.store(live.0, Ordering::Release);
    let held = Cell::new(1);
    let let_go = |_: u32| held.set(0);
    let tokens = Tokens::new(&held, NOTHING, &let_go);
    // `held` runs the hook first, so the first answer is already "free":
    // set it up so that the first test answers "held".
    let answers = Cell::new(0u32);
    let first_held = |_: u32| {
        answers.set(answers.get() + 1);
        held.set(if answers.get() == 1 { 1 } else { 0 });
    };
    let tokens_early = Tokens::new(&held, NOTHING, &first_held);
    assert_eq!(
        reap_with(&s, &e, 0, &tokens_early, ReapOrder::TokenBeforeOwner),
        Reaped::Alive
    );
    assert_eq!(answers.get(), 1, "the control tests the token once, first");
    assert_eq!(
        reap_with(&s, &e, 0, &tokens, ReapOrder::Real),
        Reaped::Freed {
            owner: live,
            cleared: 0
        }
    );
}

/// The off-by-one negative control evicts a consumer holding exactly its
/// budget (seen twice on the same slots), which the real rule never does.
#[test]
fn the_off_by_one_budget_control_evicts_at_the_budget() {
    use shm_layout::entry::{enforce_budgets_with, BudgetVariant};
    let (s, e) = tables(4, 1);
    e[0].owner.store(
        Owner::new(3, 1, ConsumerState::Connected).0,
        Ordering::Release,
    );
    pin::try_pin(&s[1], consumer_bit(0));
    let none = Default::default();
    let real = enforce_budgets_with(&s, &e, 1, &none, BudgetVariant::Real);
    assert!(real.over.is_empty());
    let first = enforce_budgets_with(&s, &e, 1, &none, BudgetVariant::OffByOne);
    assert_eq!(first.over.entries(), consumer_bit(0));
    let second = enforce_budgets_with(&s, &e, 1, &first.over, BudgetVariant::OffByOne);
    assert_eq!(second.evicted, consumer_bit(0));
    assert_eq!(pin::pins(&s[1]), 0);
}

/// `pin::readers` counts the consumer bits of a pin word, never the
/// writer's.
#[test]
fn readers_count_consumer_bits_only() {
    use shm_layout::pin::{readers, WRITER};
    assert_eq!(readers(0), 0);
    assert_eq!(readers(WRITER), 0);
    assert_eq!(readers(0b101), 2);
    assert_eq!(readers(WRITER | (1 << 62) | 1), 2);
    assert_eq!(readers(!WRITER), 63);
}
