//! The producer's side of a slot table and consumer table that hostile
//! consumers wrote: a control part laid out by `Layout::compute` (16x8,
//! 1 to 63 consumers, 1 to 3 pins each) whose table bytes come from the
//! fuzzer, viewed through the real `ControlView`; then a fuzzer-chosen
//! sequence of the producer's operations (`entry::reap` with a
//! fuzzer-chosen token oracle, `enforce_budgets`, `connect`, `evict`,
//! `evict_and_strip`, and hostile stores between them), then a final sweep
//! that reaps every entry and enforces budgets twice. After every step every
//! consumer-table reader runs (owner decoding, names, state strings).
//!
//! Asserted of the real code (single-threaded, so every compare-exchange
//! that should succeed does):
//! - no panic, no out-of-bounds access (the target is built with ASan);
//! - `reap` never clears a bit of an entry whose token is held, never
//!   touches another entry's bits, and an entry it frees has none of its
//!   bits left and is Free with its generation kept;
//! - after `enforce_budgets` no slot has the writer bit or a bit of an
//!   entry the bus does not have, no Free entry holds a bit, an entry within
//!   its budget keeps its pins and owner word, one seen over budget on the
//!   same slots by two counts in a row is stripped and Reclaiming, one seen
//!   once is not;
//! - `evict` never touches pins; `connect`/`evict` change the owner word
//!   exactly as documented.
//!
//! Input: byte 0 geometry, bytes 1..9 token oracle (bit i: entry i's token
//! is held), then the slot table and consumer table
//! bytes (missing bytes are 0), then operations.
//!
//! ```sh
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run consumer_table corpus/consumer_table seeds/consumer_table
//! ```
#![no_main]

use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use shm_layout::entry::{self, OverBudget, Reaped, TestTokens};
use shm_layout::pin::{self, WRITER};
use shm_layout::sync::Ordering;
use shm_layout::tables::CONSUMER_NAME_LEN;
use shm_layout::{ConsumerState, ControlView, Layout, LayoutRequest, Owner};

/// A page of memory, page-aligned like a mapping.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page([u8; 4096]);

/// The token oracle: bit i set = entry i's token is held.
struct Oracle(Cell<u64>);

impl TestTokens for Oracle {
    fn held(&self, index: u32) -> bool {
        assert!(index < 63, "token asked for entry {index}");
        self.0.get() & (1 << index) != 0
    }
}

const CONSUMERS: [u32; 8] = [1, 2, 3, 4, 5, 8, 16, 63];

/// Reads little-endian u64s (missing bytes 0) off the front of a slice.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn word(&mut self) -> u64 {
        let mut w = [0u8; 8];
        let n = self.0.len().min(8);
        w[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(w)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// Most slots: 63 consumers x 3 pins + 2.
const MAX_SLOTS: usize = 191;

/// A copy of every slot's pin word, without allocating.
#[derive(Clone, Copy)]
struct Pins {
    words: [u64; MAX_SLOTS],
    len: usize,
}

impl std::ops::Deref for Pins {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        &self.words[..self.len]
    }
}

impl PartialEq for Pins {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Pins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x?}", &**self)
    }
}

fn pins_of(view: &ControlView) -> Pins {
    let mut out = Pins {
        words: [0; MAX_SLOTS],
        len: view.slots().len(),
    };
    for (o, s) in out.words.iter_mut().zip(view.slots()) {
        *o = pin::pins(s);
    }
    out
}

fn owners_of(view: &ControlView) -> Vec<Owner> {
    view.consumers().iter().map(|c| c.owner()).collect()
}

fn held_count(pins: &[u64], bit: u64) -> u32 {
    pins.iter().filter(|&&p| p & bit != 0).count() as u32
}

/// Every reader of the consumer table, as `inspect` and the producer use
/// them.
fn read_all(view: &ControlView) {
    for c in view.consumers() {
        let o = c.owner();
        let (pid, generation, byte) = (o.pid(), o.generation(), o.state_byte());
        assert!(generation <= 0xFF_FFFF);
        match o.state() {
            Some(s) => {
                assert_eq!(s as u8, byte);
                assert_eq!(ConsumerState::from_u8(byte), Some(s));
                assert!(!s.as_str().is_empty());
                // The three fields cover the whole word.
                assert_eq!(Owner::new(pid, generation, s), o);
                assert_eq!(o.with_state(s), o);
            }
            None => assert!(byte > ConsumerState::Reclaiming as u8),
        }
        let freed = o.freed();
        assert_eq!(
            (freed.pid(), freed.generation(), freed.state()),
            (0, generation, Some(ConsumerState::Free))
        );
        let name = c.name();
        assert!(!name.contains('\0'));
        // Each of the 16 bytes is at most one U+FFFD (3 bytes) after repair.
        assert!(name.len() <= 3 * CONSUMER_NAME_LEN);
        std::hint::black_box((
            name,
            c.frames.load(Ordering::Relaxed),
            c.coalesced.load(Ordering::Relaxed),
            c.last_latency_ns.load(Ordering::Relaxed),
            c.last_seq.load(Ordering::Relaxed),
            c.max_fps_milli.load(Ordering::Relaxed),
        ));
    }
    for s in view.slots() {
        std::hint::black_box(pin::readers(pin::pins(s)));
    }
}

fn check_reap(view: &ControlView, i: u32, tokens: &Oracle) {
    let bit = 1u64 << i;
    let before = pins_of(view);
    let owner_before = view.consumers()[i as usize].owner();
    let held = tokens.held(i);
    let r = entry::reap(view.slots(), view.consumers(), i, tokens);
    let after = pins_of(view);
    let owner_after = view.consumers()[i as usize].owner();
    for (b, a) in before.iter().zip(after.iter()) {
        assert_eq!(b & !bit, a & !bit, "reap of entry {i} touched another bit");
    }
    if held {
        assert_eq!(
            before, after,
            "reap cleared a bit of entry {i} whose token is held"
        );
    }
    match r {
        Reaped::Free => {
            assert_eq!(owner_before.state(), Some(ConsumerState::Free));
            assert_eq!((before, owner_before), (after, owner_after));
        }
        Reaped::Alive => {
            assert!(held);
            assert_eq!(owner_before, owner_after);
        }
        Reaped::Changed => panic!("reap saw a change with nobody else running"),
        Reaped::Freed { owner, cleared } => {
            assert!(!held, "reap freed entry {i} whose token is held");
            assert_eq!(owner.0, owner_before.0);
            assert_eq!(cleared, held_count(&before, bit));
            assert_eq!(held_count(&after, bit), 0, "freed entry {i} keeps a bit");
            assert_eq!(
                owner_after,
                Owner::new(0, owner_before.generation(), ConsumerState::Free)
            );
        }
    }
}

/// One count's `OverBudget`, and what the target expects it to hold:
/// each entry seen over budget with the slots it was seen holding.
#[derive(Default)]
struct Counted {
    real: OverBudget,
    model: Vec<(u32, Vec<u32>)>,
}

fn check_budgets(view: &ControlView, budget: u32, previous: &Counted) -> Counted {
    let n = view.consumers().len() as u32;
    let pins_before = pins_of(view);
    let owners_before = owners_of(view);
    let rep = entry::enforce_budgets(view.slots(), view.consumers(), budget, &previous.real);
    let pins_after = pins_of(view);
    let owners_after = owners_of(view);
    let bus_bits = if n >= 63 { !WRITER } else { (1u64 << n) - 1 };
    let strays = pins_before.iter().filter(|&&p| p & !bus_bits != 0).count() as u32;
    assert_eq!(rep.stray_slots, strays);
    for (k, &p) in pins_after.iter().enumerate() {
        assert_eq!(p & WRITER, 0, "slot {k} keeps the writer bit");
        assert_eq!(
            p & !bus_bits,
            0,
            "slot {k} keeps a bit >= max_consumers ({p:#x})"
        );
    }
    let mut model = Vec::new();
    let mut over = 0u64;
    for i in 0..n {
        let bit = 1u64 << i;
        let held_slots: Vec<u32> = (0..pins_before.len() as u32)
            .filter(|&k| pins_before[k as usize] & bit != 0)
            .collect();
        let held = held_slots.len() as u32;
        let (ob, oa) = (owners_before[i as usize], owners_after[i as usize]);
        let kept = pins_before
            .iter()
            .zip(pins_after.iter())
            .all(|(b, a)| b & bit == a & bit);
        if held == 0 {
            assert!(kept && ob == oa && (rep.evicted | rep.stray_entries) & bit == 0);
        } else if ob.state() == Some(ConsumerState::Free) {
            assert_eq!(
                held_count(&pins_after, bit),
                0,
                "Free entry {i} keeps a bit"
            );
            assert_eq!(ob, oa, "Free entry {i} not unlocked again");
            assert!(rep.stray_entries & bit != 0);
        } else if held > budget {
            let confirmed = previous
                .model
                .iter()
                .any(|(j, s)| *j == i && *s == held_slots);
            if confirmed {
                assert!(
                    rep.evicted & bit != 0,
                    "entry {i} over budget twice on the same slots not evicted"
                );
                assert_eq!(held_count(&pins_after, bit), 0);
                assert_eq!(oa, ob.with_state(ConsumerState::Reclaiming));
            } else {
                assert!(
                    rep.evicted & bit == 0,
                    "entry {i} evicted after one count on these slots"
                );
                assert!(kept && ob == oa);
                model.push((i, held_slots));
                over |= bit;
            }
        } else {
            assert!(kept, "entry {i} within its budget lost a pin");
            assert_eq!(ob, oa);
            assert_eq!(rep.evicted & bit, 0);
        }
    }
    assert_eq!(rep.over.entries(), over);
    Counted {
        real: rep.over,
        model,
    }
}

fn check_connect(view: &ControlView, i: usize, ready: Owner) {
    let e = &view.consumers()[i];
    let cur = e.owner();
    let pins = pins_of(view);
    let r = entry::connect(e, ready);
    assert_eq!(pins, pins_of(view), "connect touched a pin");
    if ready == cur {
        let connected = ready.with_state(ConsumerState::Connected);
        assert_eq!(r, Some(connected));
        assert_eq!(e.owner(), connected);
    } else {
        assert_eq!(r, None);
        assert_eq!(e.owner(), cur);
    }
}

fn check_evict(view: &ControlView, i: usize, observed: Owner) {
    let e = &view.consumers()[i];
    let cur = e.owner();
    let pins = pins_of(view);
    let ok = entry::evict(e, observed);
    assert_eq!(pins, pins_of(view), "evict touched a pin");
    let already = observed.state() == Some(ConsumerState::Reclaiming);
    assert_eq!(ok, already || observed == cur);
    if observed == cur && !already {
        assert_eq!(e.owner(), cur.with_state(ConsumerState::Reclaiming));
    } else {
        assert_eq!(e.owner(), cur);
    }
}

fn check_strip(view: &ControlView, i: u32) {
    let bit = 1u64 << i;
    let before = pins_of(view);
    let e = &view.consumers()[i as usize];
    let cur = e.owner();
    let r = entry::evict_and_strip(view.slots(), e, i, cur);
    let after = pins_of(view);
    assert_eq!(r, Some(held_count(&before, bit)));
    assert_eq!(held_count(&after, bit), 0);
    for (b, a) in before.iter().zip(after.iter()) {
        assert_eq!(b & !bit, a & !bit, "strip of entry {i} touched another bit");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let geometry = input.byte().unwrap_or(0);
    let layout = Layout::compute(LayoutRequest {
        width: 16,
        height: 8,
        max_consumers: CONSUMERS[usize::from(geometry & 7)],
        pins_per_consumer: 1 + u32::from(geometry >> 3) % 3,
        format: shm_layout::PixelFormat::Gray8,
        significant_bits: 0,
    })
    .expect("a small geometry lays out");
    let tokens = Oracle(Cell::new(input.word()));
    let mut counted = Counted::default();

    let len = layout.control_len() as usize;
    let mut pages = vec![Page([0; 4096]); len.div_ceil(4096)];
    let slot_bytes = layout.slot_count as usize * 64;
    let consumer_bytes =
        layout.max_consumers as usize * shm_layout::tables::CONSUMER_ENTRY_SIZE as usize;
    {
        // The tables' bytes, as hostile processes left them.
        let mem: &mut [u8] = bytemuck_pages(&mut pages);
        let st = layout.slot_table_offset as usize;
        let ct = layout.consumer_table_offset as usize;
        let s = input.bytes(slot_bytes);
        mem[st..st + s.len()].copy_from_slice(s);
        let c = input.bytes(consumer_bytes);
        mem[ct..ct + c.len()].copy_from_slice(c);
    }
    // SAFETY: `pages` is a page-aligned allocation of at least
    // control_len() bytes (rounded up to whole pages), readable and
    // writable; it is not touched through `pages` again while `view` lives,
    // and it is dropped only at the end of this closure, after `view`.
    let view = unsafe { ControlView::new(pages.as_mut_ptr() as *const u8, layout) };
    assert_eq!(view.slots().len(), layout.slot_count as usize);
    assert!(view.slots().len() <= MAX_SLOTS);
    assert_eq!(view.consumers().len(), layout.max_consumers as usize);
    let n = layout.max_consumers;
    let budget = layout.pins_per_consumer;
    read_all(&view);

    // Operations, at most 64.
    for _ in 0..64 {
        let Some(op) = input.byte() else { break };
        let i = u32::from(op >> 3) % n;
        let e = &view.consumers()[i as usize];
        match op & 7 {
            0 => check_reap(&view, i, &tokens),
            1 => counted = check_budgets(&view, budget, &counted),
            2 => check_connect(&view, i as usize, e.owner()),
            3 => {
                let w = Owner(input.word());
                check_connect(&view, i as usize, w);
            }
            4 => check_evict(&view, i as usize, e.owner()),
            5 => {
                let w = Owner(input.word());
                check_evict(&view, i as usize, w);
            }
            6 => check_strip(&view, i),
            _ => {
                // A hostile store between the producer's steps, or the
                // tokens changing hands.
                let target = input.byte().unwrap_or(0);
                let v = input.word();
                match target & 3 {
                    0 => e.owner.store(v, Ordering::Relaxed),
                    1 => {
                        let k = usize::from(target >> 2) % view.slots().len();
                        view.slots()[k].pins.store(v, Ordering::Relaxed);
                    }
                    2 => e.name[usize::from(target >> 2) & 1].store(v, Ordering::Relaxed),
                    _ => tokens.0.set(v),
                }
                read_all(&view);
            }
        }
    }

    // The final sweep: the producer's liveness pass, then budgets twice.
    for i in 0..n {
        check_reap(&view, i, &tokens);
    }
    read_all(&view);
    counted = check_budgets(&view, budget, &counted);
    check_budgets(&view, budget, &counted);
    read_all(&view);
    // Nothing over budget is left standing after two counts.
    let pins = pins_of(&view);
    for i in 0..n {
        assert!(
            held_count(&pins, 1 << i) <= budget,
            "entry {i} over budget after two counts"
        );
    }
});

/// The pages as bytes.
fn bytemuck_pages(pages: &mut [Page]) -> &mut [u8] {
    let len = std::mem::size_of_val(pages);
    // SAFETY: `Page` is `repr(C)` around a byte array with no padding, so
    // `pages` is `len` initialised bytes; the returned slice borrows
    // `pages` mutably, so nothing else reads or writes them meanwhile.
    unsafe { std::slice::from_raw_parts_mut(pages.as_mut_ptr() as *mut u8, len) }
}
