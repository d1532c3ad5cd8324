//! A read-only snapshot of a bus — header, every slot, every claimed
//! consumer entry — read straight from shared memory, with no registration
//! and no IPC. What `framebus inspect` prints.

use shm_layout::pin::{self, WRITER};
use shm_layout::sync::Ordering;
use shm_layout::{BusName, ConsumerState};

use crate::attach::MappedBus;
use crate::error::ConsumerError;
use crate::sys::{self, TokenId};

/// Whether a liveness token is held; `true` if the kernel cannot tell (as
/// the producer judges it).
fn token_held(fd: &sys::BusHandle, id: TokenId) -> bool {
    sys::token_held(fd, id).unwrap_or(true)
}

/// One slot as seen at snapshot time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSnapshot {
    /// Slot index.
    pub index: u32,
    /// Sequence number of its frame (0 = empty or being written).
    pub seq: u64,
    /// Its pin word: bit i = consumer entry i, bit 63 = the writer.
    pub pins: u64,
    /// Whether the producer is writing it.
    pub writing: bool,
    /// Whether it holds the newest frame.
    pub latest: bool,
}

/// One claimed consumer entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerSnapshot {
    /// Entry index (= its pin bit).
    pub index: u32,
    /// State name (`claimed`, `ready`, `connected`, `reclaiming`, or
    /// `invalid(N)`).
    pub state: String,
    /// Owning pid, in the owner's own pid namespace (for people: liveness
    /// is `alive`).
    pub pid: u32,
    /// Claim generation of the entry (names its FIFO:
    /// `consumer-<index>-<generation>.fifo`).
    pub generation: u32,
    /// Its name.
    pub name: String,
    /// Frames processed.
    pub frames: u64,
    /// Triggers the producer coalesced for it.
    pub coalesced: u64,
    /// Last publish-to-pin latency, nanoseconds.
    pub last_latency_ns: u64,
    /// Last seq taken.
    pub last_seq: u64,
    /// Frames skipped between the frames it took (sequence gaps summed).
    pub skipped: u64,
    /// Frames per second it took over its recent window (0 = not yet
    /// measured).
    pub fps: f64,
    /// Length of that window, milliseconds.
    pub window_ms: u32,
    /// Median publish-to-pin latency over the window, nanoseconds.
    pub latency_p50_ns: u64,
    /// 99th percentile latency over the window, nanoseconds.
    pub latency_p99_ns: u64,
    /// Milliseconds since it last stored its window figures (`None` =
    /// never): a consumer that stopped taking frames keeps its last rate.
    pub window_age_ms: Option<f64>,
    /// Its rate limit in frames per second (0 = none).
    pub max_fps: f64,
    /// Whether its owner holds the entry's liveness token (has the bus
    /// open): the kernel's word, whatever pid namespace it runs in.
    pub alive: bool,
    /// Slots it holds pinned.
    pub pinned_slots: Vec<u32>,
}

/// Everything `inspect` shows about a bus.
#[derive(Debug, Clone, PartialEq)]
pub struct BusSnapshot {
    /// Bus name.
    pub bus: String,
    /// Producer instance id.
    pub instance_id: u64,
    /// Producer pid (in the producer's own pid namespace; for people).
    pub producer_pid: u32,
    /// Whether the producer holds its liveness token: it has the bus open,
    /// in whatever pid namespace it runs.
    pub producer_alive: bool,
    /// Producer state name.
    pub producer_state: String,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Row stride in bytes.
    pub stride: u32,
    /// Pixel format of the frames.
    pub format: shm_layout::PixelFormat,
    /// Significant bits per value (8, or 1..=16 for gray16).
    pub significant_bits: u8,
    /// Frame slots.
    pub slot_count: u32,
    /// Consumer entries.
    pub max_consumers: u32,
    /// Pins per consumer.
    pub pins_per_consumer: u32,
    /// Nominal fps (0 = unpaced).
    pub nominal_fps: f64,
    /// Size of the object.
    pub total_size: u64,
    /// The directory of the consumers' trigger FIFOs.
    pub trigger_dir: String,
    /// Frames published.
    pub frames_published: u64,
    /// Newest frame `(seq, slot)`.
    pub latest: Option<(u64, u32)>,
    /// Milliseconds since the producer's last heartbeat.
    pub heartbeat_age_ms: f64,
    /// Duration of the last publish, microseconds.
    pub last_publish_us: f64,
    /// Frames per second the producer published over its recent window
    /// (0 before its first two frames).
    pub publish_fps: f64,
    /// Every slot.
    pub slots: Vec<SlotSnapshot>,
    /// Every entry that is not free.
    pub consumers: Vec<ConsumerSnapshot>,
}

/// Reads a snapshot of `bus`.
pub fn inspect(bus: &BusName) -> Result<BusSnapshot, ConsumerError> {
    let mapped = MappedBus::open(bus)?;
    let c = &mapped.control;
    let h = &mapped.header;
    let d = c.dynamic();
    let latest = d.latest();
    let slots: Vec<SlotSnapshot> = c
        .slots()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let pins = pin::pins(s);
            SlotSnapshot {
                index: i as u32,
                seq: s.seq.load(Ordering::Relaxed),
                pins,
                writing: pins & WRITER != 0,
                latest: latest.is_some_and(|(_, slot)| slot as usize == i),
            }
        })
        .collect();
    let consumers = c
        .consumers()
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let owner = e.owner();
            let state = match owner.state() {
                Some(ConsumerState::Free) => return None,
                Some(s) => s.as_str().to_owned(),
                None => format!("invalid({})", owner.state_byte()),
            };
            let bit = 1u64 << i;
            let window = e.window();
            Some(ConsumerSnapshot {
                index: i as u32,
                state,
                pid: owner.pid(),
                generation: owner.generation(),
                name: e.name(),
                frames: e.frames.load(Ordering::Relaxed),
                coalesced: e.coalesced.load(Ordering::Relaxed),
                last_latency_ns: e.last_latency_ns.load(Ordering::Relaxed),
                last_seq: e.last_seq.load(Ordering::Relaxed),
                skipped: e.skipped.load(Ordering::Relaxed),
                fps: f64::from(window.fps_milli) / 1000.0,
                window_ms: window.window_ms,
                latency_p50_ns: window.latency_p50_ns,
                latency_p99_ns: window.latency_p99_ns,
                window_age_ms: (window.updated_ns != 0)
                    .then(|| sys::monotonic_ns().saturating_sub(window.updated_ns) as f64 / 1e6),
                max_fps: f64::from(e.max_fps_milli.load(Ordering::Relaxed)) / 1000.0,
                alive: token_held(&mapped.fd, TokenId::Consumer(i as u32)),
                pinned_slots: slots
                    .iter()
                    .filter(|s| s.pins & bit != 0)
                    .map(|s| s.index)
                    .collect(),
            })
        })
        .collect();
    if mapped.truncated() {
        // What was read after the fault is zeros, not the bus.
        return Err(ConsumerError::BusTruncated {
            bus: bus.to_string(),
        });
    }
    let now = sys::monotonic_ns();
    Ok(BusSnapshot {
        bus: bus.to_string(),
        instance_id: h.instance_id,
        producer_pid: h.producer_pid,
        producer_alive: token_held(&mapped.fd, TokenId::Producer),
        producer_state: d
            .state()
            .map_or_else(|| "invalid".to_owned(), |s| s.as_str().to_owned()),
        width: h.width,
        height: h.height,
        stride: h.stride,
        format: mapped.control.layout().format,
        significant_bits: mapped.control.layout().significant_bits,
        slot_count: h.slot_count,
        max_consumers: h.max_consumers,
        pins_per_consumer: h.pins_per_consumer,
        nominal_fps: f64::from(h.fps_milli) / 1000.0,
        total_size: h.total_size,
        trigger_dir: mapped.trigger_dir.display().to_string(),
        frames_published: d.frames_published.load(Ordering::Relaxed),
        latest,
        heartbeat_age_ms: now.saturating_sub(d.heartbeat_ns.load(Ordering::Relaxed)) as f64 / 1e6,
        last_publish_us: d.last_publish_ns.load(Ordering::Relaxed) as f64 / 1e3,
        publish_fps: f64::from(d.publish_fps_milli.load(Ordering::Relaxed)) / 1000.0,
        slots,
        consumers,
    })
}
