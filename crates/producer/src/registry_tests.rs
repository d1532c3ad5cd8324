//! Unit tests of the fan-out's rotation, which no process can observe from
//! outside (every consumer gets every trigger; only who is woken first
//! changes): a `Registry` with socket pairs for trigger pipes over a control
//! part in memory.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use shm_layout::{ConsumerState, Layout, LayoutRequest, Owner};

use super::*;

/// One page of memory, page-aligned like a mapping.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page([u64; 512]);

/// A zeroed, page-aligned control part for `layout`.
struct Control {
    pages: Vec<Page>,
    layout: Layout,
}

impl Control {
    fn new(max_consumers: u32) -> Self {
        let layout = Layout::compute(LayoutRequest {
            width: 8,
            height: 2,
            max_consumers,
            pins_per_consumer: 1,
            format: shm_layout::PixelFormat::Gray8,
            significant_bits: 0,
        })
        .unwrap();
        let pages = vec![Page([0; 512]); layout.control_len() as usize / 4096];
        Self { pages, layout }
    }

    fn view(&self) -> ControlView {
        // SAFETY: `pages` holds `control_len` page-aligned bytes, all zero
        // (a valid value of every atomic the view hands out), and outlives
        // the view (both live for the whole test).
        unsafe { ControlView::new(self.pages.as_ptr().cast(), self.layout) }
    }
}

/// A file standing in for the bus object, whose tokens a registry tests.
fn token_file(tag: &str) -> (PathBuf, File) {
    let path = std::env::temp_dir().join(format!("framebus-registry-{tag}-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.set_len(4096).unwrap();
    (path, f)
}

fn registry(n: u32, bus: File) -> (Registry, Vec<Option<UnixStream>>) {
    let dir = std::env::temp_dir().join(format!("framebus-registry-none-{}", std::process::id()));
    let mut reg = Registry::new(OwnedFd::from(bus), dir, n, None);
    let mut readers = Vec::new();
    for i in 0..n as usize {
        let (w, r) = UnixStream::pair().unwrap();
        w.set_nonblocking(true).unwrap();
        r.set_nonblocking(true).unwrap();
        reg.conns[i] = Some(Connection {
            owner: Owner::new(100 + i as u32, 1, ConsumerState::Connected),
            pipe: File::from(OwnedFd::from(w)),
        });
        readers.push(Some(r));
    }
    (reg, readers)
}

fn drain(r: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn the_fan_out_starts_one_consumer_later_every_frame() {
    let control = Control::new(3);
    let view = control.view();
    let (path, bus) = token_file("rotation");
    let (mut reg, mut readers) = registry(3, bus);
    let _ = std::fs::remove_file(path);
    // A gap: entry 1 is not connected; the others still get every trigger.
    reg.conns[1] = None;
    readers[1] = None;
    for (k, want_start) in [1, 2, 0, 1, 2].into_iter().enumerate() {
        let msg = trigger_message(k as u64 + 1, 0);
        reg.trigger(&view, &msg);
        assert_eq!(reg.fan_start, want_start, "after frame {}", k + 1);
        for r in readers.iter_mut().flatten() {
            assert_eq!(drain(r), msg);
        }
    }
    assert_eq!(reg.connected(), 2);
}

#[test]
fn a_full_pipe_is_coalesced_and_a_gone_one_evicted() {
    let control = Control::new(2);
    let view = control.view();
    let entry0 = Owner::new(100, 1, ConsumerState::Connected);
    view.consumers()[0].owner.store(entry0.0, Ordering::Relaxed);
    let (path, bus) = token_file("evict");
    // Entry 0's owner is alive: another open of the object holds its token.
    let holder = File::options().read(true).write(true).open(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(sys::try_hold_token(&holder, TokenId::Consumer(0)).unwrap());
    let (mut reg, mut readers) = registry(2, bus);
    // Entry 0's reader is gone: its first trigger evicts it.
    readers[0] = None;
    // Entry 1's pipe fills up: its triggers are counted as coalesced.
    let msg = trigger_message(1, 0);
    let mut full = 0;
    while full == 0 {
        reg.trigger(&view, &msg);
        full = view.consumers()[1].coalesced.load(Ordering::Relaxed);
        assert!(reg.conns[1].is_some());
    }
    assert_eq!(full, 1);
    assert!(reg.conns[0].is_none(), "evicted");
    assert_eq!(
        view.consumers()[0].owner(),
        entry0.with_state(ConsumerState::Reclaiming),
        "its token is held: the entry waits"
    );
    assert_eq!(reg.reclaimed(), 0);
    reg.check_liveness(&view);
    assert_eq!(reg.reclaimed(), 0);
    // Its token goes: the liveness pass frees the entry, once.
    drop(holder);
    reg.check_liveness(&view);
    assert_eq!(view.consumers()[0].owner(), entry0.freed());
    assert_eq!(reg.reclaimed(), 1);
    reg.check_liveness(&view);
    assert_eq!(reg.reclaimed(), 1);
    reg.trigger(&view, &msg);
    assert_eq!(view.consumers()[1].coalesced.load(Ordering::Relaxed), 2);
    let got = drain(readers[1].as_mut().unwrap());
    assert_eq!(got.len() % TRIGGER_LEN, 0);
    assert!(!got.is_empty());
}

/// The counts of one wait for a free slot are forgotten once a slot is
/// found: a consumer seen over budget in an earlier wait needs two counts
/// of the next one to be evicted.
#[test]
fn a_free_slot_forgets_the_counts_of_the_wait() {
    let control = Control::new(2);
    let view = control.view();
    let owner = Owner::new(100, 1, ConsumerState::Connected);
    view.consumers()[0].owner.store(owner.0, Ordering::Relaxed);
    for slot in &view.slots()[0..2] {
        shm_layout::pin::try_pin(slot, 1);
    }
    let (path, bus) = token_file("budget");
    let _ = std::fs::remove_file(path);
    let (mut reg, _readers) = registry(2, bus);
    reg.enforce_budgets(&view, 1);
    assert!(!reg.over_budget.is_empty(), "seen over budget once");
    reg.free_slot_found();
    assert!(reg.over_budget.is_empty());
    reg.enforce_budgets(&view, 1);
    assert_eq!(
        reg.reclaimed(),
        0,
        "one count of the new wait is not enough"
    );
    assert_eq!(view.consumers()[0].owner(), owner);
    reg.enforce_budgets(&view, 1);
    assert_eq!(reg.reclaimed(), 1, "two counts on the same slots evict");
    assert_eq!(
        view.consumers()[0].owner(),
        owner.with_state(ConsumerState::Reclaiming)
    );
}
