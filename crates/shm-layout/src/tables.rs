//! The slot table (one 64-byte line per entry) and the consumer table (two
//! 64-byte lines per entry), made only of atomics, so any process may hold
//! a `&` reference to them.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// One gray slot's control line. `pins` is the pin word of
/// [`crate::pin`]; `seq`, `capture_ns` and `publish_ns` are written by the
/// producer only while it holds the writer bit.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct SlotEntry {
    /// Bit `i` (0..=62): consumer entry `i` holds this slot. Bit 63: the
    /// producer is writing it.
    pub pins: AtomicU64,
    /// Sequence number of the frame in the slot (0 = never written).
    pub seq: AtomicU64,
    /// Capture time, `CLOCK_MONOTONIC` nanoseconds.
    pub capture_ns: AtomicU64,
    /// Time the frame was complete in the slot (taken just before the writer
    /// bit is dropped), `CLOCK_MONOTONIC` nanoseconds.
    pub publish_ns: AtomicU64,
    /// Zero.
    pub _reserved: [AtomicU64; 4],
}

/// Consumer entry states, the low 8 bits of [`ConsumerEntry::owner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConsumerState {
    /// Unused; may be claimed.
    Free = 0,
    /// Claimed by a consumer that is creating its FIFO.
    Claimed = 1,
    /// The consumer's FIFO is open for reading; the producer may connect.
    Ready = 2,
    /// The producer holds the FIFO's write end and sends triggers.
    Connected = 3,
    /// The producer is reclaiming a dead or misbehaving consumer's entry.
    Reclaiming = 4,
}

impl ConsumerState {
    /// Decodes a state byte; `None` for anything unknown.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Free,
            1 => Self::Claimed,
            2 => Self::Ready,
            3 => Self::Connected,
            4 => Self::Reclaiming,
            _ => return None,
        })
    }

    /// Lower-case name, as `inspect` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Claimed => "claimed",
            Self::Ready => "ready",
            Self::Connected => "connected",
            Self::Reclaiming => "reclaiming",
        }
    }
}

/// The consumer entry's owner word: `pid << 32 | generation << 8 | state`.
/// Every claim bumps the 24-bit generation, so a stale compare-exchange by
/// the producer can never hit a later owner of the same entry (no ABA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner(pub u64);

impl Owner {
    /// Builds an owner word.
    pub fn new(pid: u32, generation: u32, state: ConsumerState) -> Self {
        Self((u64::from(pid) << 32) | (u64::from(generation & 0xFF_FFFF) << 8) | state as u64)
    }
    /// The owning process id (0 when free).
    pub fn pid(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// The claim generation.
    pub fn generation(self) -> u32 {
        ((self.0 >> 8) & 0xFF_FFFF) as u32
    }
    /// The raw state byte.
    pub fn state_byte(self) -> u8 {
        self.0 as u8
    }
    /// The decoded state; `None` if the byte is unknown (a corrupt entry).
    pub fn state(self) -> Option<ConsumerState> {
        ConsumerState::from_u8(self.state_byte())
    }
    /// The same owner in another state.
    pub fn with_state(self, state: ConsumerState) -> Self {
        Self((self.0 & !0xFF) | state as u64)
    }
    /// The free word that keeps this owner's generation, so the next claim
    /// bumps it again.
    pub fn freed(self) -> Self {
        Self::new(0, self.generation(), ConsumerState::Free)
    }
}

/// Longest consumer name stored in the table, in bytes.
pub const CONSUMER_NAME_LEN: usize = 16;

/// Size of one consumer-table entry: two cache lines (the first holds the
/// owner word, counters and name; the second the rates the consumer
/// measured over its recent window).
pub const CONSUMER_ENTRY_SIZE: u64 = 128;

/// One consumer's entry in the consumer table (two 64-byte lines).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct ConsumerEntry {
    /// An [`Owner`] word.
    pub owner: AtomicU64,
    /// Frames this consumer has processed (consumer-written).
    pub frames: AtomicU64,
    /// Triggers the producer dropped because this consumer's pipe was full
    /// (producer-written).
    pub coalesced: AtomicU64,
    /// Publish-to-pin latency of the last frame, nanoseconds (consumer-written).
    pub last_latency_ns: AtomicU64,
    /// Sequence number of the last frame taken (consumer-written).
    pub last_seq: AtomicU64,
    /// The consumer's `--max-fps` in millihertz, 0 = unlimited (consumer-written).
    pub max_fps_milli: AtomicU32,
    /// Zero.
    pub _reserved: AtomicU32,
    /// UTF-8 name, NUL-padded, little-endian words (consumer-written).
    pub name: [AtomicU64; 2],
    /// Frames skipped between the frames this consumer took: the sum of
    /// `seq - last_seq - 1` over its takes (consumer-written).
    pub skipped: AtomicU64,
    /// Frames per second it took over its recent window, millihertz
    /// (consumer-written).
    pub window_fps_milli: AtomicU32,
    /// Length of that window, milliseconds (0 = no window measured yet).
    pub window_ms: AtomicU32,
    /// Median publish-to-pin latency over the window, nanoseconds.
    pub latency_p50_ns: AtomicU64,
    /// 99th percentile publish-to-pin latency over the window, nanoseconds.
    pub latency_p99_ns: AtomicU64,
    /// `CLOCK_MONOTONIC` nanoseconds when the window figures were written
    /// (0 = never).
    pub window_updated_ns: AtomicU64,
    /// Zero.
    pub _reserved2: [AtomicU64; 3],
}

/// What a consumer measured over its recent window, as stored in its
/// [`ConsumerEntry`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowFigures {
    /// Frames per second, millihertz.
    pub fps_milli: u32,
    /// Window length, milliseconds.
    pub window_ms: u32,
    /// Median latency, nanoseconds.
    pub latency_p50_ns: u64,
    /// 99th percentile latency, nanoseconds.
    pub latency_p99_ns: u64,
    /// When they were measured, `CLOCK_MONOTONIC` nanoseconds.
    pub updated_ns: u64,
}

impl ConsumerEntry {
    /// The current owner word.
    pub fn owner(&self) -> Owner {
        Owner(self.owner.load(Ordering::Acquire))
    }

    /// Stores a name, cut to [`CONSUMER_NAME_LEN`] bytes at a char boundary.
    pub fn set_name(&self, name: &str) {
        let mut bytes = [0u8; CONSUMER_NAME_LEN];
        let mut end = name.len().min(CONSUMER_NAME_LEN);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        for (word, chunk) in self.name.iter().zip(bytes.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
    }

    /// Reads the name back; invalid UTF-8 (a foreign writer) is replaced.
    pub fn name(&self) -> String {
        let mut bytes = Vec::with_capacity(CONSUMER_NAME_LEN);
        for word in &self.name {
            bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }

    /// Clears the per-consumer figures (on a new claim).
    pub fn reset_figures(&self) {
        for f in [
            &self.frames,
            &self.coalesced,
            &self.last_latency_ns,
            &self.last_seq,
            &self.skipped,
            &self.latency_p50_ns,
            &self.latency_p99_ns,
            &self.window_updated_ns,
        ] {
            f.store(0, Ordering::Relaxed);
        }
        for f in [&self.max_fps_milli, &self.window_fps_milli, &self.window_ms] {
            f.store(0, Ordering::Relaxed);
        }
    }

    /// Stores the window figures (consumer side). Relaxed, field by field:
    /// a reader may see a mix of two windows, which is fine for figures
    /// meant for people.
    pub fn store_window(&self, w: &WindowFigures) {
        self.window_fps_milli.store(w.fps_milli, Ordering::Relaxed);
        self.window_ms.store(w.window_ms, Ordering::Relaxed);
        self.latency_p50_ns
            .store(w.latency_p50_ns, Ordering::Relaxed);
        self.latency_p99_ns
            .store(w.latency_p99_ns, Ordering::Relaxed);
        self.window_updated_ns
            .store(w.updated_ns, Ordering::Relaxed);
    }

    /// Reads the window figures back.
    pub fn window(&self) -> WindowFigures {
        WindowFigures {
            fps_milli: self.window_fps_milli.load(Ordering::Relaxed),
            window_ms: self.window_ms.load(Ordering::Relaxed),
            latency_p50_ns: self.latency_p50_ns.load(Ordering::Relaxed),
            latency_p99_ns: self.latency_p99_ns.load(Ordering::Relaxed),
            updated_ns: self.window_updated_ns.load(Ordering::Relaxed),
        }
    }
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<SlotEntry>() == 64);
    assert!(offset_of!(SlotEntry, pins) == 0);
    assert!(offset_of!(SlotEntry, seq) == 8);
    assert!(offset_of!(SlotEntry, capture_ns) == 16);
    assert!(offset_of!(SlotEntry, publish_ns) == 24);
    assert!(size_of::<ConsumerEntry>() == CONSUMER_ENTRY_SIZE as usize);
    assert!(offset_of!(ConsumerEntry, owner) == 0);
    assert!(offset_of!(ConsumerEntry, frames) == 8);
    assert!(offset_of!(ConsumerEntry, coalesced) == 16);
    assert!(offset_of!(ConsumerEntry, last_latency_ns) == 24);
    assert!(offset_of!(ConsumerEntry, last_seq) == 32);
    assert!(offset_of!(ConsumerEntry, max_fps_milli) == 40);
    assert!(offset_of!(ConsumerEntry, name) == 48);
    assert!(offset_of!(ConsumerEntry, skipped) == 64);
    assert!(offset_of!(ConsumerEntry, window_fps_milli) == 72);
    assert!(offset_of!(ConsumerEntry, window_ms) == 76);
    assert!(offset_of!(ConsumerEntry, latency_p50_ns) == 80);
    assert!(offset_of!(ConsumerEntry, latency_p99_ns) == 88);
    assert!(offset_of!(ConsumerEntry, window_updated_ns) == 96);
    assert!(offset_of!(ConsumerEntry, _reserved2) == 104);
};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn owner_packs() {
        let o = Owner::new(4242, 7, ConsumerState::Ready);
        assert_eq!(
            (o.pid(), o.generation(), o.state()),
            (4242, 7, Some(ConsumerState::Ready))
        );
        let c = o.with_state(ConsumerState::Connected);
        assert_eq!((c.pid(), c.generation()), (4242, 7));
        assert_eq!(c.freed(), Owner::new(0, 7, ConsumerState::Free));
        assert_eq!(Owner(0x99).state(), None);
    }

    #[test]
    fn names_round_trip_and_truncate() {
        let e = ConsumerEntry::default();
        e.set_name("verify");
        assert_eq!(e.name(), "verify");
        e.set_name("a-very-long-consumer-name");
        assert_eq!(e.name(), "a-very-long-cons");
        e.set_name("ééééééééé"); // 18 bytes: cut at a char boundary
        assert_eq!(e.name(), "éééééééé");
    }
}
