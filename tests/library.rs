//! Library-level integration tests: a `Producer` and `Consumer`s in one
//! process, on real POSIX shared memory and real trigger FIFOs.
//!
//! Ground rules of this file:
//! - every test owns a bus named `lib-<tag>-<pid>` and a [`TestBus`] guard
//!   that removes `/dev/shm/framebus.<bus>` and the bus's trigger directory
//!   on drop, even when the test panics;
//! - the trigger root is private to this test process: `FRAMEBUS_RUNTIME_DIR` is
//!   set once per binary to `/tmp/framebus-libtests-<pid>` (0700), removed
//!   when the last running test ends;
//! - the producer is driven explicitly (`publish`, `housekeeping`); every wait
//!   has a timeout, and a watchdog ends the process if a test hangs.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use framebus_consumer::{inspect, Consumer, ConsumerConfig, ConsumerError, Frame};
use framebus_producer::{FakeSource, FrameSource, Producer, ProducerConfig, ProducerError};
use shm_layout::pattern::Pattern;
use shm_layout::BusName;

const WIDTH: u32 = 100; // not a multiple of 64: stride (128) != width
const HEIGHT: u32 = 40;
/// A test that runs longer than this is hung: the watchdog ends the process.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- harness

static ENV_INIT: Once = Once::new();
/// Tests currently holding a [`TestBus`]; the last one out removes the
/// private runtime directory, the first one in (re)creates it.
static ACTIVE: Mutex<usize> = Mutex::new(0);

/// `/tmp/framebus-libtests-<pid>`: this process's `FRAMEBUS_RUNTIME_DIR`.
fn runtime_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/framebus-libtests-{}", std::process::id()))
}

/// The root of this process's trigger directories (`$FRAMEBUS_RUNTIME_DIR/framebus`).
fn trigger_root() -> PathBuf {
    shm_layout::naming::runtime_root(runtime_dir().to_str(), 0)
}

fn create_private_dir(path: &Path) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot create {}: {e}", path.display()),
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

/// Removes every shared memory object of this process's test buses.
fn remove_all_test_objects() {
    let suffix = format!("-{}", std::process::id());
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name.starts_with("framebus.lib-") || name.starts_with(".framebus-lock.lib-");
            if ours && name.ends_with(&suffix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// One test's bus: its name, and cleanup of everything the bus may leave
/// behind when dropped (also while unwinding from a failed assertion).
/// Declare it first in a test so it drops after producers and consumers.
struct TestBus {
    bus: BusName,
    shm_path: PathBuf,
    trigger_dir: PathBuf,
    /// Dropping the sender disarms the watchdog.
    _watchdog: mpsc::Sender<()>,
}

impl TestBus {
    fn new(tag: &str) -> Self {
        ENV_INIT.call_once(|| {
            // Set once, before any test of this binary touches a bus (every
            // test starts here and `call_once` blocks the others meanwhile).
            std::env::set_var("FRAMEBUS_RUNTIME_DIR", runtime_dir());
        });
        {
            let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
            if *active == 0 {
                create_private_dir(&runtime_dir());
            }
            *active += 1;
        }
        let bus = BusName::new(&format!("lib-{tag}-{}", std::process::id())).expect("bus name");
        let shm_path = PathBuf::from(format!("/dev/shm{}", bus.shm_name()));
        let trigger_dir = bus.trigger_dir(&trigger_root());
        let (tx, rx) = mpsc::channel::<()>();
        let what = bus.to_string();
        std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(TEST_TIMEOUT) {
                // Straight to the process's stderr: the harness captures
                // `eprintln!` of a test's threads and would lose it on exit.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "test on bus {what} still running after {TEST_TIMEOUT:?}: hung; exiting"
                );
                remove_all_test_objects();
                let _ = std::fs::remove_dir_all(runtime_dir());
                std::process::exit(101);
            }
        });
        Self {
            bus,
            shm_path,
            trigger_dir,
            _watchdog: tx,
        }
    }

    fn name(&self) -> BusName {
        self.bus.clone()
    }

    fn producer_config(&self) -> ProducerConfig {
        ProducerConfig::new(self.name())
    }

    fn consumer_config(&self, name: &str) -> ConsumerConfig {
        ConsumerConfig {
            name: name.to_owned(),
            ..ConsumerConfig::new(self.name())
        }
    }

    /// After every producer and consumer of the bus is dropped: the library
    /// itself removed the shared memory object and the trigger directory.
    fn assert_cleaned_up(&self) {
        assert!(
            !self.shm_path.exists(),
            "{} left behind",
            self.shm_path.display()
        );
        assert!(
            !self.trigger_dir.exists(),
            "{} left behind",
            self.trigger_dir.display()
        );
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.shm_path);
        let _ = std::fs::remove_file(format!("/dev/shm/.framebus-lock.{}", self.bus));
        let _ = std::fs::remove_dir_all(&self.trigger_dir);
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        *active -= 1;
        if *active == 0 {
            let _ = std::fs::remove_dir_all(runtime_dir());
        }
    }
}

fn fake() -> FakeSource {
    FakeSource::new(WIDTH, HEIGHT)
}

fn create_producer(config: ProducerConfig) -> Producer {
    Producer::create(config, WIDTH, HEIGHT).expect("create producer")
}

/// Publishes the fake source's next frame; returns its seq.
fn publish(producer: &mut Producer, source: &mut FakeSource) -> u64 {
    producer
        .publish(|seq, slot| source.fill(seq, slot))
        .expect("publish")
}

/// Checks that `frame` has the producer's geometry and holds, byte for byte,
/// the fake pattern of frame `seq`.
fn assert_frame(frame: &Frame<'_>, seq: u64, stride: u32) {
    assert_eq!(frame.seq(), seq, "frame seq");
    assert_eq!((frame.width(), frame.height()), (WIDTH, HEIGHT));
    assert_eq!(frame.stride(), stride);
    assert_eq!(frame.pixels().len(), stride as usize * HEIGHT as usize);
    assert_eq!(
        Pattern::new(frame.width()).verify(
            seq,
            frame.pixels(),
            frame.stride() as usize,
            frame.height()
        ),
        Ok(()),
        "frame {seq} does not hold its pattern (torn or overwritten)"
    );
}

fn attach(tb: &TestBus, name: &str) -> Consumer {
    Consumer::attach(tb.consumer_config(name)).expect("attach")
}

const WAIT: Duration = Duration::from_secs(2);
const SHORT: Duration = Duration::from_millis(200);

// ------------------------------------------------------------------ tests

/// A consumer attaching after a frame was published gets that frame at once, and never twice.
#[test]
fn late_joiner_gets_the_newest_frame_without_a_trigger() {
    let tb = TestBus::new("late");
    let mut source = fake();
    let mut producer = create_producer(tb.producer_config());
    let stride = producer.layout().stride;
    assert!(stride >= WIDTH);
    assert_eq!(publish(&mut producer, &mut source), 1);

    let mut consumer = attach(&tb, "late");
    {
        let frame = consumer
            .next_frame(Some(WAIT))
            .expect("next_frame")
            .expect("the late joiner gets the frame published before it attached");
        assert_frame(&frame, 1, stride);
        assert_eq!(frame.instance_id(), producer.instance_id());
    }
    // No new frame: the same seq is never handed out twice.
    {
        let again = consumer.next_frame(Some(SHORT)).expect("next_frame");
        assert!(again.is_none(), "got {again:?} again");
    }
    assert_eq!(consumer.frames(), 1);

    drop(consumer);
    drop(producer);
    tb.assert_cleaned_up();
}

/// Frames published before the consumer asks are skipped: it gets the newest one.
#[test]
fn newest_frame_wins() {
    let tb = TestBus::new("newest");
    let mut source = fake();
    let mut producer = create_producer(tb.producer_config());
    let stride = producer.layout().stride;
    let mut consumer = attach(&tb, "newest");
    producer.housekeeping(); // connects the consumer's FIFO
    let snap = inspect(&tb.name()).expect("inspect");
    let me = consumer.info().expect("attached").entry;
    let entry = snap
        .consumers
        .iter()
        .find(|c| c.index == me)
        .expect("our entry is listed");
    assert_eq!(entry.state, "connected");
    assert_eq!(entry.name, "newest");

    for want in 1..=5 {
        assert_eq!(publish(&mut producer, &mut source), want);
    }
    {
        let frame = consumer
            .next_frame(Some(WAIT))
            .expect("next_frame")
            .expect("a frame");
        assert_frame(&frame, 5, stride);
    }
    {
        let again = consumer.next_frame(Some(SHORT)).expect("next_frame");
        assert!(again.is_none(), "the 4 older triggers gave {again:?}");
    }

    drop(consumer);
    drop(producer);
    tb.assert_cleaned_up();
}

/// With --pins-per-consumer 2 a consumer holds two frames, is refused a third, and held frames never change.
#[test]
fn pin_budget_of_two() {
    let tb = TestBus::new("pins2");
    let mut source = fake();
    // One consumer, two pins: 1 * 2 + 2 = 4 slots, so with both pins held
    // and the newest frame skipped the producer has exactly one slot left.
    let mut producer = create_producer(ProducerConfig {
        max_consumers: 1,
        pins_per_consumer: 2,
        ..tb.producer_config()
    });
    let stride = producer.layout().stride;
    assert_eq!(producer.layout().slot_count, 4);
    let mut consumer = attach(&tb, "pins2");
    producer.housekeeping();

    assert_eq!(publish(&mut producer, &mut source), 1);
    let f1 = consumer
        .next_frame_owned(Some(WAIT))
        .expect("first pin")
        .expect("frame 1");
    assert_eq!(publish(&mut producer, &mut source), 2);
    let f2 = consumer
        .next_frame_owned(Some(WAIT))
        .expect("second pin")
        .expect("frame 2");
    assert_frame(&f1, 1, stride);
    assert_frame(&f2, 2, stride);
    assert_ne!(f1.slot(), f2.slot());

    assert_eq!(publish(&mut producer, &mut source), 3);
    match consumer.next_frame_owned(Some(WAIT)) {
        Err(e @ ConsumerError::PinBudgetExhausted { held: 2 }) => {
            let msg = e.to_string();
            assert!(msg.contains("--pins-per-consumer"), "message: {msg}");
        }
        other => panic!("expected PinBudgetExhausted {{ held: 2 }}, got {other:?}"),
    }

    // The producer keeps publishing into the one free slot (each publish
    // returns its frame: it never waits for the held frames), never
    // touching the two held frames. How long a publish takes is a figure
    // for `bench`, not a test.
    for want in 4..=23 {
        assert_eq!(publish(&mut producer, &mut source), want);
    }
    assert_frame(&f1, 1, stride);
    assert_frame(&f2, 2, stride);
    let snap = inspect(&tb.name()).expect("inspect");
    let me = consumer.info().expect("attached").entry;
    let mut held = vec![f1.slot(), f2.slot()];
    held.sort_unstable();
    let entry = snap
        .consumers
        .iter()
        .find(|c| c.index == me)
        .expect("entry");
    assert_eq!(entry.pinned_slots, held);

    // Letting go of one frame makes room for the next.
    drop(f1);
    let f3 = consumer
        .next_frame_owned(Some(WAIT))
        .expect("pin after a release")
        .expect("the newest frame");
    assert_frame(&f3, 23, stride);
    assert_frame(&f2, 2, stride);
    assert_eq!(producer.stats().reclaimed, 0, "the consumer was evicted");

    drop((f2, f3));
    drop(consumer);
    drop(producer);
    tb.assert_cleaned_up();
}

/// With the default budget of two pins, a third owned frame is refused while two are held.
#[test]
fn default_pin_budget_is_two() {
    let tb = TestBus::new("pins1");
    let mut source = fake();
    let mut producer = create_producer(tb.producer_config());
    let stride = producer.layout().stride;
    assert_eq!(producer.layout().pins_per_consumer, 2);
    let mut consumer = attach(&tb, "pins1");
    producer.housekeeping();

    assert_eq!(publish(&mut producer, &mut source), 1);
    let held = consumer
        .next_frame_owned(Some(WAIT))
        .expect("first pin")
        .expect("frame 1");
    assert_eq!(publish(&mut producer, &mut source), 2);
    let second = consumer
        .next_frame_owned(Some(WAIT))
        .expect("second pin")
        .expect("frame 2");
    assert_eq!(publish(&mut producer, &mut source), 3);
    match consumer.next_frame_owned(Some(WAIT)) {
        Err(e @ ConsumerError::PinBudgetExhausted { held: 2 }) => {
            assert!(e.to_string().contains("--pins-per-consumer"), "{e}");
        }
        other => panic!("expected PinBudgetExhausted {{ held: 2 }}, got {other:?}"),
    }
    assert_frame(&held, 1, stride);
    assert_frame(&second, 2, stride);
    drop(held);
    let next = consumer
        .next_frame_owned(Some(WAIT))
        .expect("pin after release")
        .expect("frame 3");
    assert_frame(&next, 3, stride);

    drop(second);
    drop(next);
    drop(consumer);
    drop(producer);
    tb.assert_cleaned_up();
}

/// A frame held while the producer cycles 100 frames through 4 slots stays intact and pinned.
#[test]
fn held_frame_survives_producer_churn() {
    let tb = TestBus::new("churn");
    let mut source = fake();
    let mut producer = create_producer(ProducerConfig {
        max_consumers: 2,
        pins_per_consumer: 1,
        ..tb.producer_config()
    });
    let stride = producer.layout().stride;
    assert_eq!(producer.layout().slot_count, 4);
    let mut consumer = attach(&tb, "churn");
    producer.housekeeping();

    assert_eq!(publish(&mut producer, &mut source), 1);
    let held = consumer
        .next_frame_owned(Some(WAIT))
        .expect("pin")
        .expect("frame 1");
    for want in 2..=101 {
        assert_eq!(publish(&mut producer, &mut source), want);
    }
    assert_frame(&held, 1, stride);

    let snap = inspect(&tb.name()).expect("inspect");
    let me = consumer.info().expect("attached").entry;
    let bit = 1u64 << me;
    let pinned: Vec<u32> = snap
        .slots
        .iter()
        .filter(|s| s.pins & bit != 0)
        .map(|s| s.index)
        .collect();
    assert_eq!(pinned, vec![held.slot()], "slots carrying our bit");
    let slot = &snap.slots[held.slot() as usize];
    assert_eq!(slot.seq, 1, "the held slot was rewritten");
    assert!(!slot.writing && !slot.latest);
    let entry = snap
        .consumers
        .iter()
        .find(|c| c.index == me)
        .expect("entry");
    assert_eq!(entry.pinned_slots, vec![held.slot()]);
    assert_eq!(entry.state, "connected");
    assert_eq!(snap.frames_published, 101);
    assert_eq!(snap.latest.map(|(seq, _)| seq), Some(101));
    assert_eq!(producer.stats().reclaimed, 0);

    drop(held);
    drop(consumer);
    drop(producer);
    tb.assert_cleaned_up();
}

/// After a clean producer shutdown, a consumer re-attaches by itself to the next producer; old frames stay readable.
#[test]
fn consumer_reattaches_after_producer_restart() {
    let tb = TestBus::new("restart");
    let mut source = fake();
    let mut first = create_producer(tb.producer_config());
    let stride = first.layout().stride;
    let first_id = first.instance_id();
    let mut consumer = attach(&tb, "restart");
    first.housekeeping(); // connected: a later EOF means "producer gone"
    assert_eq!(publish(&mut first, &mut source), 1);
    // Kept across the restart: it must stay readable (the old mapping lives
    // as long as the frame), and must not count against the new budget.
    let old_frame = consumer
        .next_frame_owned(Some(WAIT))
        .expect("next_frame_owned")
        .expect("frame 1");
    assert_frame(&old_frame, 1, stride);
    assert_eq!(old_frame.instance_id(), first_id);
    assert_eq!(consumer.reattached(), 0);

    // The consumer waits in its own thread; the test thread restarts the
    // producer and publishes until the consumer reports a frame.
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let got = consumer.next_frame(Some(Duration::from_secs(5))).map(|f| {
            f.map(|f| {
                let ok = Pattern::new(f.width())
                    .verify(f.seq(), f.pixels(), f.stride() as usize, f.height())
                    .is_ok();
                (f.seq(), f.instance_id(), f.stride(), ok)
            })
        });
        let _ = tx.send(());
        (consumer, got)
    });

    drop(first); // clean shutdown: the consumer's pipe reads EOF
    let mut second = create_producer(tb.producer_config());
    let second_id = second.instance_id();
    assert_ne!(second_id, first_id);
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        publish(&mut second, &mut source);
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                assert!(Instant::now() < deadline, "the consumer never returned")
            }
        }
    }
    let (consumer, got) = waiter.join().expect("consumer thread");
    let (seq, instance, frame_stride, ok) = got
        .expect("next_frame across the restart")
        .expect("a frame of the new producer within 5 s");
    assert_eq!(instance, second_id, "frame from the new instance");
    assert!(seq >= 1 && seq <= second.stats().frames, "seq {seq}");
    assert_eq!(frame_stride, stride);
    assert!(
        ok,
        "frame {seq} of the new producer does not hold its pattern"
    );
    assert!(
        consumer.reattached() >= 1,
        "reattached = {}",
        consumer.reattached()
    );
    assert_eq!(consumer.info().map(|i| i.instance_id), Some(second_id));
    assert_frame(&old_frame, 1, stride);
    assert_eq!(old_frame.instance_id(), first_id);

    // Dropping the old frame ends the old registration; it must not remove
    // the FIFO the consumer now uses on the new bus.
    let info = consumer.info().expect("attached");
    let fifo = tb
        .trigger_dir
        .join(format!("consumer-{}-{}.fifo", info.entry, info.generation));
    assert!(fifo.exists(), "{} missing", fifo.display());
    drop(old_frame);
    assert!(
        fifo.exists(),
        "{} removed by the old registration",
        fifo.display()
    );

    drop(consumer);
    drop(second);
    tb.assert_cleaned_up();
}

/// A second producer on a bus whose producer is alive is refused with that producer's pid.
#[test]
fn second_producer_on_a_live_bus_is_refused() {
    let tb = TestBus::new("busy");
    let mut source = fake();
    let mut producer = create_producer(tb.producer_config());
    let stride = producer.layout().stride;
    match Producer::create(tb.producer_config(), WIDTH, HEIGHT) {
        Err(e @ ProducerError::BusBusy { pid, .. }) => {
            assert_eq!(pid, std::process::id());
            let msg = e.to_string();
            assert!(msg.contains(&pid.to_string()), "message: {msg}");
        }
        Err(e) => panic!("expected BusBusy, got {e:?}"),
        Ok(_) => panic!("a second producer was created on a live bus"),
    }
    // The refusal left the live bus intact.
    assert!(tb.shm_path.exists());
    assert!(producer.trigger_dir().is_dir());
    let mut consumer = attach(&tb, "busy");
    producer.housekeeping();
    assert_eq!(publish(&mut producer, &mut source), 1);
    {
        let frame = consumer
            .next_frame(Some(WAIT))
            .expect("next_frame")
            .expect("frame 1");
        assert_frame(&frame, 1, stride);
        assert_eq!(frame.instance_id(), producer.instance_id());
    }

    drop(consumer);
    drop(producer);
    tb.assert_cleaned_up();
}

/// A bus that does not exist is reported as BusNotFound by inspect, attach and attach_wait.
#[test]
fn missing_bus_is_not_found() {
    let tb = TestBus::new("missing");
    match inspect(&tb.name()) {
        Err(ConsumerError::BusNotFound { bus }) => assert_eq!(bus, tb.name().to_string()),
        other => panic!("inspect: expected BusNotFound, got {other:?}"),
    }
    match Consumer::attach(tb.consumer_config("missing")) {
        Err(ConsumerError::BusNotFound { .. }) => {}
        Err(e) => panic!("attach: expected BusNotFound, got {e:?}"),
        Ok(_) => panic!("attach: attached to a missing bus"),
    }
    let t0 = Instant::now();
    match Consumer::attach_wait(tb.consumer_config("missing"), Duration::from_millis(300)) {
        Err(e @ ConsumerError::BusNotFound { .. }) => {
            assert!(e.to_string().contains("does not exist"), "{e}");
        }
        Err(e) => panic!("attach_wait: expected BusNotFound, got {e:?}"),
        Ok(_) => panic!("attach_wait: attached to a missing bus"),
    }
    // It waited (rather than failing at once); how much longer than asked
    // is the scheduler's business, not this test's.
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "attach_wait(300 ms) returned after {waited:?}"
    );
    tb.assert_cleaned_up();
}

/// With --max-consumers 1 a second consumer is refused with BusFull, and admitted once the first leaves.
#[test]
fn bus_full() {
    let tb = TestBus::new("full");
    let producer = create_producer(ProducerConfig {
        max_consumers: 1,
        ..tb.producer_config()
    });
    let first = attach(&tb, "first");
    match Consumer::attach(tb.consumer_config("second")) {
        Err(e @ ConsumerError::BusFull { max: 1, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("--max-consumers"), "message: {msg}");
        }
        Err(e) => panic!("expected BusFull, got {e:?}"),
        Ok(_) => panic!("a second consumer attached to a bus of one entry"),
    }
    drop(first); // a clean leave frees the entry
    let second = attach(&tb, "second");
    assert_eq!(second.info().expect("attached").entry, 0);

    drop(second);
    drop(producer);
    tb.assert_cleaned_up();
}
