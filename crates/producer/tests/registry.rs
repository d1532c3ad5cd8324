#![cfg(unix)]
// FIFOs, Unix permissions and libc: the Windows pipes are tested by crates/platform and tests/windows.rs
//! The producer's reclaim, liveness, budget and fan-out code
//! (`registry.rs`) driven through a real [`Producer`] on a real shared memory
//! object, with real consumers (`framebus-consumer`), raw peers that act on
//! the tables themselves (a hostile or half-written consumer, with real
//! liveness tokens: each peer opens the object itself, so its tokens are
//! its own open file description's), and a consumer in a child process
//! that is killed.
//!
//! Every wait is for an event (an entry's state, a counter, a liveness pass
//! seen through the heartbeat), bounded by a generous hang guard.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::Duration;

use framebus_consumer::{Consumer, ConsumerConfig};
use framebus_platform::{self as platform, GuardedMap, TokenId};
use framebus_producer::{trigger_message, Captured, Producer, ProducerConfig};
use shm_layout::entry::{self, HoldTokens};
use shm_layout::naming::fifo_file_name;
use shm_layout::pin::{self, consumer_bit};
use shm_layout::sync::Ordering;
use shm_layout::view::read_header;
use shm_layout::{BusName, ConsumerState, ControlView, Owner};

/// Hang guard for every wait below: far beyond what any event takes.
const GUARD: Duration = Duration::from_secs(20);

static ENV: Once = Once::new();
/// Tests holding a [`TestBus`]: the last one out removes the runtime
/// directory.
static ACTIVE: Mutex<usize> = Mutex::new(0);

/// A private runtime directory for this test binary, set before any bus.
fn runtime_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/framebus-regtest-{}", std::process::id()))
}

/// A bus for one test; on drop (even after a failure) its object and lock
/// file are removed.
struct TestBus {
    name: BusName,
}

impl TestBus {
    fn new(tag: &str) -> Self {
        ENV.call_once(|| {
            std::env::set_var("FRAMEBUS_RUNTIME_DIR", runtime_dir());
        });
        {
            use std::os::unix::fs::DirBuilderExt;
            let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
            if *active == 0 {
                let _ = std::fs::DirBuilder::new().mode(0o700).create(runtime_dir());
            }
            *active += 1;
        }
        let name = BusName::new(&format!("reg-{tag}-{}", std::process::id())).unwrap();
        Self { name }
    }

    fn producer(&self, max_consumers: u32, pins: u32) -> Producer {
        let mut config = ProducerConfig::new(self.name.clone());
        config.max_consumers = max_consumers;
        config.pins_per_consumer = pins;
        Producer::create(config, 64, 8).unwrap()
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.name.shm_name()));
        let _ = std::fs::remove_file(format!("/dev/shm/.framebus-lock.{}", self.name));
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        *active -= 1;
        if *active == 0 {
            let _ = std::fs::remove_dir_all(runtime_dir());
        }
    }
}

/// Publishes one frame (its bytes are its sequence number's low byte) and
/// returns `(seq, slot)`.
fn publish(p: &mut Producer, peer: &Peer) -> (u64, u32) {
    let seq = p
        .publish(|seq, w| {
            w.data().fill(seq as u8);
            Ok(Captured { capture_ns: 1 })
        })
        .unwrap();
    let (latest, slot) = peer.view.dynamic().latest().unwrap();
    assert_eq!(latest, seq);
    (seq, slot)
}

/// Calls `housekeeping` until `done` holds; panics after [`GUARD`].
fn until(p: &mut Producer, what: &str, mut done: impl FnMut(&mut Producer) -> bool) {
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        p.housekeeping();
        if done(p) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "hang guard: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs housekeeping until `n` liveness passes have run (each refreshes the
/// heartbeat; nothing is published meanwhile).
fn liveness_passes(p: &mut Producer, peer: &Peer, n: u32) {
    for _ in 0..n {
        let before = peer.view.dynamic().heartbeat_ns.load(Ordering::Relaxed);
        until(p, "a liveness pass", |_| {
            peer.view.dynamic().heartbeat_ns.load(Ordering::Relaxed) != before
        });
    }
}

/// A raw participant: its own open and mapping of the bus, acting on the
/// tables directly, holding tokens through its own open file description.
struct Peer {
    view: ControlView,
    _map: GuardedMap,
    fd: OwnedFd,
}

impl Peer {
    fn open(bus: &BusName) -> Self {
        let (fd, size) = platform::open_shm(&bus.shm_name()).unwrap().unwrap();
        let map = platform::map_rw(&fd, size).unwrap();
        // SAFETY: the mapping is `map.len()` readable bytes, page-aligned,
        // and lives in `self` as long as the view.
        let (_, layout) = unsafe { read_header(map.as_ptr(), map.len(), size) }.unwrap();
        // SAFETY: as above; the whole object is mapped read-write.
        let view = unsafe { ControlView::new(map.as_ptr(), layout) };
        Self {
            view,
            _map: map,
            fd,
        }
    }

    fn owner(&self, i: u32) -> Owner {
        self.view.consumers()[i as usize].owner()
    }

    fn state(&self, i: u32) -> Option<ConsumerState> {
        self.owner(i).state()
    }

    fn pins(&self, slot: u32) -> u64 {
        pin::pins(&self.view.slots()[slot as usize])
    }

    fn pin(&self, slot: u32, entry: u32) {
        let _ = pin::try_pin(&self.view.slots()[slot as usize], consumer_bit(entry));
        assert_ne!(self.pins(slot) & consumer_bit(entry), 0);
    }

    fn connected(&self) -> u32 {
        self.view
            .dynamic()
            .connected_consumers
            .load(Ordering::Relaxed)
    }

    /// Claims an entry the way a consumer does (token first).
    fn claim(&self) -> (u32, Owner) {
        entry::claim(self.view.consumers(), platform::my_pid(), self).unwrap()
    }
}

impl HoldTokens for Peer {
    fn try_hold(&self, index: u32) -> bool {
        platform::try_hold_token(&self.fd, TokenId::Consumer(index)).unwrap()
    }
    fn release(&self, index: u32) {
        platform::release_token(&self.fd, TokenId::Consumer(index)).unwrap();
    }
}

/// A consumer made of a peer's claim and a FIFO this test reads itself, so
/// every trigger the producer sends can be counted.
struct FifoConsumer {
    index: u32,
    fifo: File,
}

impl FifoConsumer {
    fn register(peer: &Peer, dir: &std::path::Path) -> Self {
        let (index, claimed) = peer.claim();
        let path = dir.join(fifo_file_name(index as usize, claimed.generation()));
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        entry::mark_ready(&peer.view.consumers()[index as usize], claimed).unwrap();
        Self { index, fifo }
    }

    /// Every byte waiting in the FIFO.
    fn drain(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.fifo.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }
}

/// Every connected consumer gets exactly one trigger per frame, naming that
/// frame's sequence number and slot, whichever consumer the rotation
/// starts with; the connected counter is exact.
#[test]
fn fan_out_reaches_every_consumer_once_per_frame() {
    let bus = TestBus::new("fanout");
    let mut p = bus.producer(6, 1);
    let peer = Peer::open(&bus.name);
    let dir = p.trigger_dir();
    let mut cs: Vec<FifoConsumer> = (0..5)
        .map(|_| FifoConsumer::register(&peer, &dir))
        .collect();
    until(&mut p, "five connected", |_| {
        (0..5).all(|i| peer.state(i) == Some(ConsumerState::Connected))
    });
    assert_eq!(peer.connected(), 5);
    for _ in 0..13 {
        let (seq, slot) = publish(&mut p, &peer);
        // The message as doc/PROTOCOL.md defines it, spelled out here
        // rather than taken from the encoder under test: seq (u64), slot
        // (u32), flags 0 (u32), little-endian.
        let mut want = seq.to_le_bytes().to_vec();
        want.extend_from_slice(&slot.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(trigger_message(seq, slot).as_slice(), want.as_slice());
        for c in &mut cs {
            assert_eq!(c.drain(), want, "entry {} for frame {seq}", c.index);
        }
    }
    assert_eq!(p.stats().reclaimed, 0);
    assert_eq!(peer.connected(), 5);
    // Shutting down closes every write end (each reader sees EOF) and
    // removes the FIFOs with the trigger directory.
    let dir = p.trigger_dir();
    drop(p);
    assert!(!dir.exists());
    for c in &mut cs {
        let mut buf = [0u8; 16];
        assert_eq!(
            c.fifo.read(&mut buf).unwrap(),
            0,
            "EOF for entry {}",
            c.index
        );
    }
}

/// Consumers that leave cleanly are forgotten (the connected counter drops
/// by one each) but are not reclaims.
#[test]
fn clean_leaves_are_counted_as_disconnects_not_reclaims() {
    let bus = TestBus::new("leave");
    let mut p = bus.producer(4, 1);
    let peer = Peer::open(&bus.name);
    let mut cs: Vec<Consumer> = (0..3)
        .map(|k| {
            let mut cfg = ConsumerConfig::new(bus.name.clone());
            cfg.name = format!("c{k}");
            Consumer::attach(cfg).unwrap()
        })
        .collect();
    until(&mut p, "three connected", |_| peer.connected() == 3);
    let (seq, _) = publish(&mut p, &peer);
    for c in &mut cs {
        let f = c.next_frame(Some(GUARD)).unwrap().expect("a frame");
        assert_eq!(f.seq(), seq);
        assert!(f.pixels().iter().all(|&b| b == seq as u8));
    }
    drop(cs.pop());
    until(&mut p, "two connected", |_| peer.connected() == 2);
    drop(cs.pop());
    until(&mut p, "one connected", |_| peer.connected() == 1);
    liveness_passes(&mut p, &peer, 2);
    assert_eq!(peer.connected(), 1);
    assert_eq!(p.stats().reclaimed, 0, "leaving is not being reclaimed");
}

/// A consumer whose FIFO broke is evicted (no more triggers) but keeps its
/// pin for as long as it holds its token — the producer never rewrites
/// the frame — and its entry is freed, once, when the token goes.
#[test]
fn an_evicted_entry_is_freed_only_once_its_token_is_free() {
    let bus = TestBus::new("evict");
    let mut p = bus.producer(2, 1);
    let peer = Peer::open(&bus.name);
    let (seq, slot) = publish(&mut p, &peer);
    let (i, claimed) = peer.claim();
    peer.pin(slot, i);
    // Ready, but no FIFO: the producer cannot connect and evicts it.
    let ready = entry::mark_ready(&peer.view.consumers()[i as usize], claimed).unwrap();
    until(&mut p, "evicted", |_| {
        peer.state(i) == Some(ConsumerState::Reclaiming)
    });
    assert_eq!(
        peer.owner(i),
        ready.with_state(ConsumerState::Reclaiming),
        "pid and generation kept while it waits"
    );
    // Liveness passes and many frames later, its frame is untouched.
    liveness_passes(&mut p, &peer, 3);
    for _ in 0..10 {
        publish(&mut p, &peer);
    }
    liveness_passes(&mut p, &peer, 2);
    assert_eq!(peer.state(i), Some(ConsumerState::Reclaiming));
    assert_eq!(peer.pins(slot), consumer_bit(i));
    let entry_slot = &peer.view.slots()[slot as usize];
    assert_eq!(entry_slot.seq.load(Ordering::Relaxed), seq);
    assert_eq!(p.stats().reclaimed, 0);
    assert_eq!(peer.connected(), 0);
    // It lets go of the entry (it cannot free a Reclaiming entry itself),
    // releasing its token: the producer frees it, after clearing its pin.
    assert!(!entry::leave(
        &peer.view.consumers()[i as usize],
        i,
        ready,
        &peer
    ));
    until(&mut p, "freed", |_| {
        peer.state(i) == Some(ConsumerState::Free)
    });
    assert_eq!(
        peer.owner(i),
        Owner::new(0, ready.generation(), ConsumerState::Free)
    );
    assert_eq!(peer.pins(slot), 0);
    assert_eq!(p.stats().reclaimed, 1);
    liveness_passes(&mut p, &peer, 2);
    assert_eq!(p.stats().reclaimed, 1, "counted once");
}

/// When no slot is free, a consumer over its budget (seen twice on the same
/// slots) is evicted and its pins cleared; one holding exactly its budget
/// keeps its frame and its connection. The evicted consumer is counted
/// once, although its entry is freed later, when its token goes.
#[test]
fn budgets_evict_the_consumer_over_budget_and_spare_the_one_at_it() {
    let bus = TestBus::new("budget");
    // 2 consumers x 1 pin: 4 slots.
    let mut p = bus.producer(2, 1);
    let peer = Peer::open(&bus.name);
    let mut a = Consumer::attach(ConsumerConfig::new(bus.name.clone())).unwrap();
    let a_index = a.info().unwrap().entry;
    until(&mut p, "a connected", |_| peer.connected() == 1);
    let (seq1, _) = publish(&mut p, &peer);
    let held = a.next_frame_owned(Some(GUARD)).unwrap().expect("a frame");
    assert_eq!(held.seq(), seq1);
    let a_slot = held.slot();
    // The hostile peer claims the other entry and pins two slots.
    let (b, _) = peer.claim();
    let (_, x) = publish(&mut p, &peer);
    peer.pin(x, b);
    let (_, y) = publish(&mut p, &peer);
    peer.pin(y, b);
    let (_, z) = publish(&mut p, &peer);
    let mut taken = [a_slot, x, y, z];
    taken.sort_unstable();
    assert_eq!(taken, [0, 1, 2, 3], "every slot is pinned or the newest");
    assert_eq!(p.stats().reclaimed, 0);
    // The next publish finds no free slot until the peer is stripped.
    let (_, w) = publish(&mut p, &peer);
    assert!(w == x || w == y);
    assert_eq!(p.stats().reclaimed, 1);
    assert_eq!(peer.state(b), Some(ConsumerState::Reclaiming));
    for s in [x, y] {
        assert_eq!(peer.pins(s) & consumer_bit(b), 0);
    }
    // The consumer at its budget keeps its pin, its frame and its entry.
    assert_eq!(peer.pins(a_slot), consumer_bit(a_index));
    assert_eq!(held.seq(), seq1);
    assert!(held.pixels().iter().all(|&v| v == seq1 as u8));
    assert_eq!(peer.state(a_index), Some(ConsumerState::Connected));
    drop(held);
    // More frames reach `a`.
    let (seq, _) = publish(&mut p, &peer);
    assert_eq!(a.next_frame(Some(GUARD)).unwrap().unwrap().seq(), seq);
    // The peer lets its token go: its entry is freed, not counted again.
    peer.release(b);
    until(&mut p, "b freed", |_| {
        peer.state(b) == Some(ConsumerState::Free)
    });
    liveness_passes(&mut p, &peer, 2);
    assert_eq!(p.stats().reclaimed, 1);
    assert_eq!(peer.connected(), 1);
}

/// Only the producer sets Connected: an entry that claims it (or holds a
/// state byte nobody defines) is evicted and its pins are cleared at once,
/// although its owner holds its token.
#[test]
fn a_forged_state_is_stripped_at_once() {
    let bus = TestBus::new("forged");
    let mut p = bus.producer(3, 1);
    let peer = Peer::open(&bus.name);
    let (_, slot) = publish(&mut p, &peer);
    let entries = peer.view.consumers();
    let (i, claimed) = peer.claim();
    peer.pin(slot, i);
    let forged = claimed.with_state(ConsumerState::Connected);
    entries[i as usize].owner.store(forged.0, Ordering::Release);
    let (j, claimed_j) = peer.claim();
    peer.pin(slot, j);
    let junk = Owner(claimed_j.0 & !0xFF | 0x77);
    entries[j as usize].owner.store(junk.0, Ordering::Release);
    until(&mut p, "both stripped", |_| {
        peer.state(i) == Some(ConsumerState::Reclaiming)
            && peer.owner(j) == junk.with_state(ConsumerState::Reclaiming)
    });
    assert_eq!(peer.pins(slot), 0, "pins cleared at once");
    assert_eq!(p.stats().reclaimed, 2);
    assert_eq!(peer.connected(), 0);
    // Tokens still held: the entries wait; released: freed, not recounted.
    liveness_passes(&mut p, &peer, 2);
    assert_eq!(peer.state(i), Some(ConsumerState::Reclaiming));
    peer.release(i);
    peer.release(j);
    until(&mut p, "both freed", |_| {
        peer.state(i) == Some(ConsumerState::Free) && peer.state(j) == Some(ConsumerState::Free)
    });
    liveness_passes(&mut p, &peer, 1);
    assert_eq!(p.stats().reclaimed, 2);
    // The same entries owned anew by consumers that die (Ready without a
    // FIFO, token let go): each is counted again, once.
    let (a, ca) = peer.claim();
    let (b, cb) = peer.claim();
    let mut ab = [a, b];
    ab.sort_unstable();
    assert_eq!(ab, {
        let mut ij = [i, j];
        ij.sort_unstable();
        ij
    });
    entry::mark_ready(&entries[a as usize], ca).unwrap();
    entry::mark_ready(&entries[b as usize], cb).unwrap();
    peer.release(a);
    peer.release(b);
    until(&mut p, "both reclaimed again", |p| p.stats().reclaimed == 4);
    liveness_passes(&mut p, &peer, 1);
    assert_eq!(p.stats().reclaimed, 4);
    assert_eq!(peer.state(a), Some(ConsumerState::Free));
    assert_eq!(peer.state(b), Some(ConsumerState::Free));
}

/// The 24-bit claim generation wraps to 0: a consumer claiming an entry
/// whose generation is 2^24 - 1 gets generation 0, its FIFO is named after
/// it, and it is served.
#[test]
fn the_claim_generation_wraps() {
    let bus = TestBus::new("wrap");
    let mut p = bus.producer(1, 1);
    let peer = Peer::open(&bus.name);
    let last = Owner::new(0, 0xFF_FFFF, ConsumerState::Free);
    peer.view.consumers()[0]
        .owner
        .store(last.0, Ordering::Release);
    let mut c = Consumer::attach(ConsumerConfig::new(bus.name.clone())).unwrap();
    let info = c.info().unwrap();
    assert_eq!((info.entry, info.generation), (0, 0));
    assert!(p.trigger_dir().join("consumer-0-0.fifo").exists());
    until(&mut p, "connected", |_| peer.connected() == 1);
    for _ in 0..3 {
        let (seq, _) = publish(&mut p, &peer);
        assert_eq!(c.next_frame(Some(GUARD)).unwrap().unwrap().seq(), seq);
    }
    drop(c);
    until(&mut p, "left", |_| peer.connected() == 0);
    assert_eq!(peer.owner(0), Owner::new(0, 0, ConsumerState::Free));
    assert_eq!(p.stats().reclaimed, 0);
}

/// `max_consumers = 63`, the most a pin word allows: 63 consumers attach,
/// every one is connected and gets the frame; a 64th finds the bus full.
#[test]
fn sixty_three_consumers_end_to_end() {
    let bus = TestBus::new("full");
    let mut p = bus.producer(63, 1);
    let peer = Peer::open(&bus.name);
    let mut cs: Vec<Consumer> = (0..63)
        .map(|_| Consumer::attach(ConsumerConfig::new(bus.name.clone())).unwrap())
        .collect();
    let mut entries: Vec<u32> = cs.iter().map(|c| c.info().unwrap().entry).collect();
    entries.sort_unstable();
    assert_eq!(entries, (0..63).collect::<Vec<_>>());
    assert!(Consumer::attach(ConsumerConfig::new(bus.name.clone())).is_err());
    until(&mut p, "63 connected", |_| peer.connected() == 63);
    for _ in 0..2 {
        let (seq, _) = publish(&mut p, &peer);
        for c in &mut cs {
            assert_eq!(c.next_frame(Some(GUARD)).unwrap().unwrap().seq(), seq);
        }
    }
    // Entry 62's pin bit is the highest a consumer has (bit 63 is the
    // writer's): a consumer there holds a frame the producer never takes.
    let c62 = cs
        .iter_mut()
        .find(|c| c.info().unwrap().entry == 62)
        .unwrap();
    let held = c62.next_frame_owned(Some(Duration::ZERO)).unwrap();
    assert!(held.is_none(), "no new frame yet");
    let (seq, slot) = publish(&mut p, &peer);
    let held = c62.next_frame_owned(Some(GUARD)).unwrap().unwrap();
    assert_eq!((held.seq(), held.slot()), (seq, slot));
    assert_eq!(peer.pins(slot) & consumer_bit(62), consumer_bit(62));
    for _ in 0..2 * 65 {
        publish(&mut p, &peer);
    }
    assert_eq!(held.seq(), seq);
    assert!(held.pixels().iter().all(|&v| v == seq as u8));
    assert_eq!(p.stats().reclaimed, 0);
}

/// A consumer process killed while it holds a frame: its token goes with
/// it, and the producer reclaims its entry and pin, counted once.
#[test]
fn a_killed_consumer_process_is_reclaimed() {
    let bus = TestBus::new("kill");
    let mut p = bus.producer(2, 1);
    let peer = Peer::open(&bus.name);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_consumer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REGTEST_CHILD_BUS", bus.name.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Publish until the child says it holds a frame.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        while out.read_line(&mut line).unwrap_or(0) > 0 {
            // libtest may have printed the test's name on the same line.
            if let Some((_, rest)) = line.trim().split_once("HOLDING ") {
                let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                let _ = tx.send((v[0] as u32, v[1], v[2] as u32));
                return;
            }
            line.clear();
        }
    });
    let deadline = std::time::Instant::now() + GUARD;
    let (entry_index, seq, slot) = loop {
        if let Ok(h) = rx.try_recv() {
            break h;
        }
        assert!(std::time::Instant::now() < deadline, "hang guard: child");
        publish(&mut p, &peer);
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        peer.pins(slot) & consumer_bit(entry_index),
        consumer_bit(entry_index)
    );
    assert_eq!(
        peer.view.slots()[slot as usize].seq.load(Ordering::Relaxed),
        seq
    );
    let fifo = p.trigger_dir().join(fifo_file_name(
        entry_index as usize,
        peer.owner(entry_index).generation(),
    ));
    assert!(fifo.exists());
    child.kill().unwrap();
    child.wait().unwrap();
    until(&mut p, "reclaimed", |_| {
        peer.state(entry_index) == Some(ConsumerState::Free)
    });
    assert_eq!(peer.pins(slot) & consumer_bit(entry_index), 0);
    assert!(!fifo.exists(), "the dead consumer's FIFO is removed");
    assert_eq!(p.stats().reclaimed, 1);
    assert_eq!(peer.connected(), 0);
    liveness_passes(&mut p, &peer, 2);
    assert_eq!(p.stats().reclaimed, 1);
}

/// Not a test on its own: the child process of
/// `a_killed_consumer_process_is_reclaimed`, which runs it with
/// `--ignored`.
#[test]
#[ignore = "the child process of a_killed_consumer_process_is_reclaimed"]
fn child_process_consumer() {
    let bus = std::env::var_os("REGTEST_CHILD_BUS").expect("run by its parent test");
    let bus = BusName::new(bus.to_str().unwrap()).unwrap();
    let mut c = Consumer::attach_wait(ConsumerConfig::new(bus), GUARD).unwrap();
    let entry = c.info().unwrap().entry;
    let f = c.next_frame_owned(Some(GUARD)).unwrap().expect("a frame");
    println!("HOLDING {entry} {} {}", f.seq(), f.slot());
    // Hold the frame until killed (or the parent goes away).
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    drop(f);
}

/// A `latest` word scribbled by a consumer (a slot out of range, a
/// sequence number from nowhere) stops nothing: the producer keeps
/// publishing into free slots, and its next publish writes the truth.
#[test]
fn a_corrupt_latest_written_by_a_consumer_is_survived() {
    let bus = TestBus::new("latest");
    let mut p = bus.producer(2, 1);
    let peer = Peer::open(&bus.name);
    let mut c = Consumer::attach(ConsumerConfig::new(bus.name.clone())).unwrap();
    until(&mut p, "connected", |_| peer.connected() == 1);
    let (seq, _) = publish(&mut p, &peer);
    assert_eq!(c.next_frame(Some(GUARD)).unwrap().unwrap().seq(), seq);
    let slots = peer.view.layout().slot_count;
    for junk in [
        shm_layout::header::pack_latest(1 << 40, 0xFFFF),
        shm_layout::header::pack_latest(3, slots),
        u64::MAX,
    ] {
        peer.view.dynamic().latest.store(junk, Ordering::Release);
        for _ in 0..2 * slots {
            let (seq, slot) = publish(&mut p, &peer);
            assert!(slot < slots);
            let f = c.next_frame(Some(GUARD)).unwrap().unwrap();
            assert_eq!((f.seq(), f.slot()), (seq, slot));
            assert!(f.pixels().iter().all(|&v| v == seq as u8));
        }
    }
    assert_eq!(p.stats().reclaimed, 0);
}

/// A stale bus object (no producer holds its lock) shorter than a header
/// is taken over: the new producer's bus is whole and serves consumers.
#[test]
fn a_stale_object_shorter_than_its_header_is_taken_over() {
    let bus = TestBus::new("short");
    let path = format!("/dev/shm{}", bus.name.shm_name());
    {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.set_len(100).unwrap();
    }
    let mut p = bus.producer(2, 1);
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(size, p.layout().total_size);
    let peer = Peer::open(&bus.name);
    let mut c = Consumer::attach(ConsumerConfig::new(bus.name.clone())).unwrap();
    until(&mut p, "connected", |_| peer.connected() == 1);
    let (seq, _) = publish(&mut p, &peer);
    assert_eq!(c.next_frame(Some(GUARD)).unwrap().unwrap().seq(), seq);
}

/// Two producers racing to take over the same stale object: exactly one
/// gets the bus, the other is refused with BusBusy, and the winner's bus
/// works.
#[test]
fn two_producers_racing_over_a_stale_object() {
    let bus = TestBus::new("race");
    let path = format!("/dev/shm{}", bus.name.shm_name());
    // The object of a producer that died: a whole bus, magic and all, that
    // no process holds the lock of.
    let stale = {
        let p = bus.producer(2, 1);
        let bytes = std::fs::read(&path).unwrap();
        drop(p);
        bytes
    };
    let plant = || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(&stale)
            .unwrap();
    };
    plant();
    for round in 0..5 {
        let barrier = std::sync::Barrier::new(2);
        let name = bus.name.clone();
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut config = ProducerConfig::new(name.clone());
                        config.max_consumers = 2;
                        barrier.wait();
                        Producer::create(config, 64, 8)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let (mut won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
        assert_eq!(
            (won.len(), lost.len()),
            (1, 1),
            "round {round}: {:?}",
            lost.iter()
                .map(|r| r.as_ref().err().map(|e| e.to_string()))
                .collect::<Vec<_>>()
        );
        match &lost[0] {
            Err(framebus_producer::ProducerError::BusBusy { .. }) => {}
            other => panic!("round {round}: the loser got {:?}", other.as_ref().err()),
        }
        let mut p = won.pop().unwrap().unwrap();
        let peer = Peer::open(&bus.name);
        let mut c = Consumer::attach(ConsumerConfig::new(bus.name.clone())).unwrap();
        until(&mut p, "connected", |_| peer.connected() == 1);
        let (seq, _) = publish(&mut p, &peer);
        assert_eq!(c.next_frame(Some(GUARD)).unwrap().unwrap().seq(), seq);
        drop(c);
        drop(peer);
        drop(p);
        plant();
    }
}

/// A producer killed in the middle of writing the debug BGR slot (seqlock
/// odd, half the words new): a reader gets a named error, never a torn
/// frame and never a hang; the next producer takes the bus over and its
/// BGR frames read whole.
#[test]
fn a_bgr_writer_killed_mid_write() {
    let bus = TestBus::new("bgr");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_bgr_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REGTEST_CHILD_BUS", bus.name.to_string())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(9), "the child dies mid-write");
    // What the dead writer left: an odd seqlock.
    let peer = Peer::open(&bus.name);
    assert_eq!(
        peer.view.bgr_seqlock().seqlock.load(Ordering::Relaxed) % 2,
        1
    );
    drop(peer);
    match framebus_consumer::read_bgr(&bus.name, Duration::from_millis(300)) {
        Err(framebus_consumer::BgrError::ProducerGone { .. })
        | Err(framebus_consumer::BgrError::Consumer(
            framebus_consumer::ConsumerError::NotRunning { .. },
        )) => {}
        Err(e) => panic!("a dead writer's slot: {e}"),
        Ok(f) => panic!("a frame was read from a half-written slot: seq {}", f.seq),
    }
    // A new producer takes over; its BGR frames read whole.
    let mut config = ProducerConfig::new(bus.name.clone());
    config.debug_bgr = true;
    let mut p = Producer::create(config, 64, 8).unwrap();
    let seq = p.publish(fill_with_bgr).unwrap();
    let f = framebus_consumer::read_bgr(&bus.name, GUARD).unwrap();
    assert_eq!(f.seq, seq);
    assert!((0..8).all(|y| f.row(y).iter().all(|&v| v == seq as u8)));
}

/// Fills the gray slot and the BGR slot with the frame's seq.
fn fill_with_bgr(
    seq: u64,
    w: &mut framebus_producer::SlotWriter<'_>,
) -> Result<Captured, framebus_producer::SourceError> {
    w.data().fill(seq as u8);
    let (width, height) = (w.width() as usize, w.height() as usize);
    let bgr = vec![seq as u8; 3 * width * height];
    w.debug_bgr()
        .expect("debug BGR on")
        .write(&bgr, 3 * width, 1)?;
    Ok(Captured { capture_ns: 1 })
}

/// Not a test on its own: the child process of `a_bgr_writer_killed_mid_write`:
/// a producer with the debug BGR slot that publishes a frame, then dies in
/// the state a kill during the next BGR write leaves (seqlock odd, half the
/// slot's words rewritten), without any cleanup.
#[test]
#[ignore = "the child process of a_bgr_writer_killed_mid_write"]
fn child_process_bgr_writer() {
    let bus = std::env::var_os("REGTEST_CHILD_BUS").expect("run by its parent test");
    let bus = BusName::new(bus.to_str().unwrap()).unwrap();
    let mut config = ProducerConfig::new(bus.clone());
    config.debug_bgr = true;
    let mut p = Producer::create(config, 64, 8).unwrap();
    p.publish(fill_with_bgr).unwrap();
    let peer = Peer::open(&bus);
    let lock = peer.view.bgr_seqlock();
    lock.seqlock.fetch_add(1, Ordering::Release);
    let l = *peer.view.layout();
    let half = l.bgr_len() / 2 / 8;
    // SAFETY: the peer maps the whole object; the BGR slot's first `half`
    // words lie inside it at the page-aligned bgr_offset, and every process
    // accesses them only atomically.
    let words = unsafe {
        std::slice::from_raw_parts(
            peer._map.as_ptr().add(l.bgr_offset as usize) as *const std::sync::atomic::AtomicU64,
            half,
        )
    };
    for w in words {
        w.store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    }
    // Killed here: no destructor runs (the producer's lock and tokens go
    // with the process, the object stays).
    std::process::exit(9);
}
