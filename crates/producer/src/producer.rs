//! [`Producer`]: creates a bus and publishes frames into it.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use shm_layout::header::{pack_latest, FLAG_DEBUG_BGR};
use shm_layout::layout::{Layout, LayoutRequest};
use shm_layout::pin;
use shm_layout::sync::Ordering;
use shm_layout::window::RateWindow;
use shm_layout::{BusName, PixelFormat, ProducerState};

use crate::bgr::BgrWriter;
use crate::bus::BusMemory;
use crate::error::ProducerError;
use crate::registry::{trigger_message, Registry};
use crate::source::{Captured, SlotWriter, SourceError};
use crate::sys;

/// How often, at most, consumer processes are checked for liveness and the
/// heartbeat refreshed when no frame is published.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(50);

/// How to create a bus.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The bus name.
    pub bus: BusName,
    /// Consumer entries (1..=63).
    pub max_consumers: u32,
    /// Frames each consumer may hold at once (1..=8). The default, 2, lets
    /// a consumer's loop keep the previous frame while it takes the next
    /// (a Python `img = frame.array` loop does); 1 saves one slot per
    /// consumer.
    pub pins_per_consumer: u32,
    /// Nominal frame rate written into the header (0 = unpaced).
    pub nominal_fps: f64,
    /// Mode of the shared memory object: 0o600 (default, owner only) or
    /// 0o660 (shared with `group`).
    pub mode: u32,
    /// The group to share the bus with (gid): the object gets this group,
    /// the trigger directory becomes setgid and sticky 3770 in it, and FIFOs of its
    /// members are accepted. `None` = owner only.
    pub group: Option<u32>,
    /// Whether the debug BGR slot is written.
    pub debug_bgr: bool,
    /// The frame slots' pixel format (default gray8).
    pub format: PixelFormat,
    /// Significant bits per value for gray16 (10 or 12 for a mono10/12
    /// camera); 0 = the whole container (16 for gray16, 8 otherwise).
    pub significant_bits: u8,
}

impl ProducerConfig {
    /// Defaults: 8 consumers, 2 pins each (as `framebus produce`), unpaced,
    /// owner-only, gray8.
    pub fn new(bus: BusName) -> Self {
        Self {
            bus,
            max_consumers: 8,
            pins_per_consumer: 2,
            nominal_fps: 0.0,
            mode: 0o600,
            group: None,
            debug_bgr: false,
            format: PixelFormat::Gray8,
            significant_bits: 0,
        }
    }

    /// The same configuration with frames in `format` (and, for gray16,
    /// `significant_bits`; 0 = 16).
    pub fn with_format(self, format: PixelFormat, significant_bits: u8) -> Self {
        Self {
            format,
            significant_bits,
            ..self
        }
    }
}

/// Figures of a producer's life so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProducerStats {
    /// Frames published.
    pub frames: u64,
    /// Consumers reclaimed (dead or evicted).
    pub reclaimed: u64,
    /// Total nanoseconds spent publishing (slot choice, fill, triggers).
    pub publish_ns_total: u64,
    /// Nanoseconds spent filling slots (the source's share).
    pub fill_ns_total: u64,
}

/// A slot taken for writing by [`Producer::begin`], to be ended by
/// [`Producer::commit`] or [`Producer::abort`].
#[derive(Debug)]
#[must_use = "a pending frame holds its slot until it is committed or aborted"]
pub struct PendingFrame {
    /// The producer instance that took the slot.
    instance_id: u64,
    slot: u32,
    seq: u64,
    start_ns: u64,
    fill_start_ns: u64,
}

impl PendingFrame {
    /// The sequence number the frame gets if it is committed.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The slot it is written into.
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

/// The producer of one bus. Dropping it shuts the bus down cleanly.
pub struct Producer {
    /// The bus's producer lock (see `sys::lock_bus`); released on drop.
    _lock: sys::BusLock,
    config: ProducerConfig,
    mem: BusMemory,
    registry: Registry,
    instance_id: u64,
    seq: u64,
    next_slot: usize,
    last_housekeeping_ns: u64,
    stats: ProducerStats,
    /// Recent publishes, whose rate goes to the header.
    window: RateWindow,
    closed: bool,
    /// The bus object was found shorter than its layout.
    truncated: bool,
    /// In a forked child, the bus is the parent's: nothing is published
    /// or shut down from here.
    fork: sys::ForkGuard,
}

impl Producer {
    /// Creates the bus for frames of `width` x `height` in
    /// `config.format`: the shared memory object (taking over a stale one;
    /// refusing a live producer's) and the trigger directory.
    pub fn create(config: ProducerConfig, width: u32, height: u32) -> Result<Self, ProducerError> {
        let layout = Layout::compute(LayoutRequest {
            width,
            height,
            max_consumers: config.max_consumers,
            pins_per_consumer: config.pins_per_consumer,
            format: config.format,
            significant_bits: config.significant_bits,
        })?;
        let root = sys::runtime_root();
        let dir = config.bus.trigger_dir(&root);
        // One producer per bus: the lock is held until this process exits,
        // so a bus object found without a lock holder is stale.
        let lock = sys::lock_bus(&config.bus)
            .map_err(ProducerError::os(format!("cannot lock bus {}", config.bus)))?
            .ok_or_else(|| ProducerError::BusBusy {
                bus: config.bus.to_string(),
                pid: live_producer_pid(&config.bus),
            })?;
        let pid = sys::my_pid();
        let created = sys::realtime_ns();
        let instance_id =
            shm_layout::pattern::splitmix64(created ^ (u64::from(pid) << 32) ^ sys::monotonic_ns());
        let fps_milli = (config.nominal_fps.max(0.0) * 1000.0)
            .round()
            .min(f64::from(u32::MAX)) as u32;
        let flags = if config.debug_bgr { FLAG_DEBUG_BGR } else { 0 };
        let header = layout.header(instance_id, pid, fps_milli, flags, created);
        let mem = BusMemory::create(&config.bus, header, config.mode, config.group, &dir)?;
        let now = sys::monotonic_ns();
        let dynamic = mem.control().dynamic();
        dynamic.heartbeat_ns.store(now, Ordering::Relaxed);
        dynamic
            .producer_state
            .store(ProducerState::Running as u32, Ordering::Release);
        tracing::info!(bus = %config.bus, width, height, format = %layout.format, slots = layout.slot_count, bytes = layout.total_size, "bus created");
        if let Some(blocked) = config
            .group
            .and_then(|g| sys::untraversable_by_group(&root, g))
        {
            tracing::warn!(
                "members of group {} cannot reach the trigger directory {}: {} does not let them through; \
                 start the producer with FRAMEBUS_RUNTIME_DIR set to a directory they can traverse (or unset, for /dev/shm/framebus-<uid>)",
                config.group.unwrap_or_default(),
                dir.display(),
                blocked.display()
            );
        }
        let bus_fd = mem
            .fd()
            .try_clone()
            .map_err(ProducerError::os("cannot duplicate the bus descriptor"))?;
        let registry = Registry::new(bus_fd, dir, config.max_consumers, config.group);
        Ok(Self {
            _lock: lock,
            config,
            mem,
            registry,
            instance_id,
            seq: 0,
            next_slot: 0,
            last_housekeeping_ns: now,
            stats: ProducerStats::default(),
            window: RateWindow::new(),
            closed: false,
            truncated: false,
            fork: sys::ForkGuard::new(),
        })
    }

    /// The bus's validated layout (geometry, slot count, offsets).
    pub fn layout(&self) -> &Layout {
        self.mem.layout()
    }

    /// The id of this producer's instance of the bus.
    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// The configuration the bus was created with.
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// The trigger directory.
    pub fn trigger_dir(&self) -> PathBuf {
        self.registry.dir().to_path_buf()
    }

    /// Figures so far.
    pub fn stats(&self) -> ProducerStats {
        ProducerStats {
            reclaimed: self.registry.reclaimed(),
            ..self.stats
        }
    }

    /// Connects new consumers, checks liveness and refreshes the heartbeat
    /// if [`HOUSEKEEPING_INTERVAL`] has passed. [`Producer::publish`] calls
    /// it; call it yourself while no frames are published.
    pub fn housekeeping(&mut self) {
        if self.fork.in_child() {
            return;
        }
        let now = sys::monotonic_ns();
        self.registry.sync(self.mem.control());
        if now.saturating_sub(self.last_housekeeping_ns) >= HOUSEKEEPING_INTERVAL.as_nanos() as u64
        {
            self.last_housekeeping_ns = now;
            if self.mem.truncated(true) {
                self.truncated = true;
            }
            self.registry.check_liveness(self.mem.control());
            self.mem
                .control()
                .dynamic()
                .heartbeat_ns
                .store(now, Ordering::Relaxed);
        }
    }

    /// Publishes one frame: takes a free slot, lets `fill` write the frame
    /// into it, publishes it as the newest and triggers every consumer.
    /// Returns the frame's sequence number. If `fill` fails, nothing is
    /// published and the slot is marked empty.
    pub fn publish<F>(&mut self, fill: F) -> Result<u64, ProducerError>
    where
        F: FnOnce(u64, &mut SlotWriter<'_>) -> Result<Captured, SourceError>,
    {
        let pending = self.begin()?;
        let seq = pending.seq;
        let filled = fill(seq, &mut self.writer(&pending));
        match filled {
            Ok(captured) => self.commit(pending, captured),
            Err(e) => {
                self.abort(pending);
                Err(e.into())
            }
        }
    }

    /// The first half of [`Producer::publish`], for a caller that fills the
    /// slot across calls of its own (the Python binding's `with
    /// producer.slot() as buf:`): takes a free slot for writing. Then write
    /// the frame through [`Producer::writer`] and end with exactly one of
    /// [`Producer::commit`] (publish it) or [`Producer::abort`] (publish
    /// nothing; the slot is free again). Until then the slot is held: a
    /// `PendingFrame` dropped without either keeps its slot out of use for
    /// the bus's life.
    pub fn begin(&mut self) -> Result<PendingFrame, ProducerError> {
        if self.fork.in_child() {
            return Err(ProducerError::Forked {
                bus: self.config.bus.to_string(),
            });
        }
        let start_ns = sys::monotonic_ns();
        self.housekeeping();
        self.check_truncated()?;
        let slot = self.acquire_slot()?;
        let seq = self.seq + 1;
        let entry = &self.mem.control().slots()[slot as usize];
        // The slot's old frame is being overwritten: seq 0 = "no frame", so
        // a consumer that pins it by a stale `latest` never trusts it, and a
        // reader copying it without a pin (`snapshot` on a full bus) sees
        // the rewrite: the fence orders seq 0 before every pixel stored
        // from here on (shm_layout::unpinned, doc/PROTOCOL.md §19).
        shm_layout::unpinned::mark_rewriting(entry);
        Ok(PendingFrame {
            instance_id: self.instance_id,
            slot,
            seq,
            start_ns,
            fill_start_ns: sys::monotonic_ns(),
        })
    }

    /// The writer of a slot taken by [`Producer::begin`] (and not yet
    /// committed or aborted: the `PendingFrame` is consumed by those).
    ///
    /// # Panics
    /// If `pending` was taken from another producer.
    pub fn writer(&mut self, pending: &PendingFrame) -> SlotWriter<'_> {
        self.check_pending(pending);
        let (slot, seq) = (pending.slot, pending.seq);
        let layout = *self.mem.layout();
        let seqlock: *const shm_layout::header::BgrSeqlock = self.mem.control().bgr_seqlock();
        // SAFETY: the seqlock is atomics in the control part of the
        // mapping, which stays mapped as long as `self` (and so as the
        // returned writer, which borrows `self`); a raw pointer keeps the
        // shared borrow of `self.mem` from overlapping the slot's `&mut`.
        let seqlock = unsafe { &*seqlock };
        let bgr_base = self.mem.bgr_slot_ptr();
        // SAFETY: `pending` is this producer's (checked above) and came from
        // `begin`, which took the slot's writer bit; `commit` and `abort`,
        // which drop the bit, consume the `PendingFrame`, so they have not
        // run. `&mut self` makes this the only slice of the slot.
        let data = unsafe { self.mem.gray_slot_mut(slot) };
        let bgr = self.config.debug_bgr.then(|| {
            // SAFETY: the BGR slot is `bgr_len` bytes at a page-aligned
            // offset of the mapping, which lives as long as `self`; its
            // stride is `roundup(3 * width, 64)` (Layout::compute, this
            // producer's own layout), a multiple of 8 and >= 3 * width.
            // Only this producer writes it, and only through this writer,
            // which borrows the producer mutably; readers only copy it.
            unsafe {
                BgrWriter::new(
                    seqlock,
                    bgr_base,
                    layout.width,
                    layout.height,
                    layout.bgr_stride,
                    seq,
                )
            }
        });
        SlotWriter {
            data,
            width: layout.width,
            height: layout.height,
            stride: layout.stride,
            format: layout.format,
            significant_bits: layout.significant_bits,
            bgr,
        }
    }

    /// Publishes the frame written into a slot taken by
    /// [`Producer::begin`], captured at `captured`, as the newest, and
    /// triggers every consumer. Returns its sequence number.
    ///
    /// # Panics
    /// If `pending` was taken from another producer.
    pub fn commit(
        &mut self,
        pending: PendingFrame,
        captured: Captured,
    ) -> Result<u64, ProducerError> {
        self.check_pending(&pending);
        let PendingFrame {
            slot,
            seq,
            start_ns: start,
            fill_start_ns: fill_start,
            ..
        } = pending;
        let fill_end = sys::monotonic_ns();
        let control = self.mem.control();
        let entry = &control.slots()[slot as usize];
        if self.mem.truncated(false) {
            // The frame went to zero pages nobody else sees.
            pin::end_write(entry);
            self.truncated = true;
            self.check_truncated()?;
        }
        self.seq = seq;
        entry.seq.store(seq, Ordering::Relaxed);
        entry
            .capture_ns
            .store(captured.capture_ns, Ordering::Relaxed);
        entry.publish_ns.store(fill_end, Ordering::Relaxed);
        // Release (inside end_write): pixels and metadata before any pin.
        pin::end_write(entry);
        let dynamic = control.dynamic();
        // Release: a consumer that sees this `latest` sees the slot's seq.
        dynamic
            .latest
            .store(pack_latest(seq, slot), Ordering::Release);
        dynamic.frames_published.fetch_add(1, Ordering::Relaxed);
        dynamic.heartbeat_ns.store(fill_end, Ordering::Relaxed);
        self.registry.trigger(control, &trigger_message(seq, slot));
        let end = sys::monotonic_ns();
        dynamic
            .last_publish_ns
            .store(end - start, Ordering::Relaxed);
        if let Some(figures) = self.window.record(fill_end, 0) {
            dynamic
                .publish_fps_milli
                .store(figures.fps_milli, Ordering::Relaxed);
        }
        self.stats.frames += 1;
        self.stats.publish_ns_total += end - start;
        self.stats.fill_ns_total += fill_end - fill_start;
        Ok(seq)
    }

    /// Gives back a slot taken by [`Producer::begin`] without publishing
    /// anything: its seq stays 0 (no frame), so no consumer ever trusts what
    /// was written, and the slot is free for the next frame.
    ///
    /// # Panics
    /// If `pending` was taken from another producer.
    pub fn abort(&mut self, pending: PendingFrame) {
        self.check_pending(&pending);
        let entry = &self.mem.control().slots()[pending.slot as usize];
        pin::end_write(entry);
    }

    /// A `PendingFrame` from another producer would name a slot this one
    /// does not hold: a programming error, refused loudly.
    fn check_pending(&self, pending: &PendingFrame) {
        assert_eq!(
            pending.instance_id, self.instance_id,
            "a PendingFrame of another producer was passed to producer of bus {}",
            self.config.bus
        );
    }

    /// Resets the figures [`Producer::stats`] returns (after a warm-up).
    pub(crate) fn reset_stats(&mut self) {
        self.stats = ProducerStats::default();
    }

    /// Frames this bus published, from its header.
    pub(crate) fn frames_published(&self) -> u64 {
        self.mem
            .control()
            .dynamic()
            .frames_published
            .load(Ordering::Relaxed)
    }

    /// `BusTruncated` once the object was found truncated: another process
    /// shrank it under the mapping (the producer survives: faults in the
    /// mapping are repaired with zero pages). Drop this producer and create
    /// the bus again ([`run_source`] does).
    fn check_truncated(&self) -> Result<(), ProducerError> {
        if self.truncated || self.mem.truncated(false) {
            return Err(ProducerError::BusTruncated {
                bus: self.config.bus.to_string(),
            });
        }
        Ok(())
    }

    /// Numbers the next published frame `seq` instead of the last one + 1,
    /// so a program that republishes another bus's frames (`framebus bridge
    /// in`) keeps their numbers; the gap shows the frames it never got.
    /// Numbers never go back: a `seq` at or below the next number is
    /// ignored. So is one at or above 2^47: sequence numbers have 48 bits
    /// (`latest` packs them), and the half left over cannot be used up by
    /// publishing (4 million years at 1000 fps), so no skip can make the
    /// numbers overflow.
    pub fn skip_to_seq(&mut self, seq: u64) {
        if seq > self.seq + 1 && seq < 1 << 47 {
            self.seq = seq - 1;
        }
    }

    /// Takes a slot that is neither the newest frame nor pinned. One pass
    /// suffices while consumers respect their budget; if a pass fails
    /// (consumers moved pins during it) it rescans, and every 16 failed
    /// passes it clears bits no consumer can own and evicts consumers over
    /// their budget, so a hostile writer cannot starve the producer; if even
    /// that yields no slot for a second, it gives up with a named error.
    fn acquire_slot(&mut self) -> Result<u32, ProducerError> {
        let slot_count = self.mem.layout().slot_count as usize;
        let mut passes = 0u32;
        let mut since = None;
        loop {
            let control = self.mem.control();
            let latest = control.dynamic().latest().map(|(_, slot)| slot);
            if let Some(slot) = pin::acquire_free_slot(control.slots(), latest, self.next_slot) {
                self.next_slot = (slot as usize + 1) % slot_count;
                self.registry.free_slot_found();
                return Ok(slot);
            }
            passes += 1;
            if passes % 16 == 0 {
                tracing::debug!(passes, "no free slot in 16 passes; enforcing pin budgets");
                self.registry
                    .enforce_budgets(self.mem.control(), self.config.pins_per_consumer);
                let started = *since.get_or_insert_with(sys::monotonic_ns);
                if sys::monotonic_ns() - started > 1_000_000_000 {
                    return Err(ProducerError::SlotTableCorrupt {
                        bus: self.config.bus.to_string(),
                    });
                }
            }
            std::hint::spin_loop();
        }
    }

    /// Stops the bus: state Stopping, every trigger pipe closed (consumers
    /// see EOF), FIFOs and the shared memory object removed. Also done on
    /// drop. In a forked child it does nothing: the bus is the parent's
    /// (the child's copies of the descriptors just close).
    pub fn shutdown(&mut self) {
        if self.closed || self.fork.in_child() {
            return;
        }
        self.closed = true;
        self.mem
            .control()
            .dynamic()
            .producer_state
            .store(ProducerState::Stopping as u32, Ordering::Release);
        self.registry.shutdown();
        self.mem.unlink();
        tracing::info!(bus = %self.config.bus, frames = self.stats.frames, "bus removed");
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The pid in the header of the bus's current object (0 if unreadable), to
/// name the producer that holds the bus.
pub(crate) fn live_producer_pid(bus: &BusName) -> u32 {
    let Ok(Some((fd, _))) = sys::open_shm_read(&bus.shm_name()) else {
        return 0;
    };
    let mut pid = [0u8; 4];
    match sys::read_at(&fd, &mut pid, 32) {
        Ok(4) => u32::from_le_bytes(pid),
        _ => 0,
    }
}

/// Installs SIGINT and SIGTERM handlers that set the returned flag (for
/// [`run`](crate::run)'s `stop`), so the bus is removed cleanly on Ctrl-C or `kill`.
pub fn stop_on_signals() -> Result<std::sync::Arc<AtomicBool>, ProducerError> {
    sys::stop_flag().map_err(ProducerError::os("cannot install SIGINT/SIGTERM handlers"))
}
