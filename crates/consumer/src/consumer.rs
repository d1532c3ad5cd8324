//! [`Consumer`]: attaches to a bus, waits on its trigger pipe, and hands out
//! the newest frame, pinned, never the same one twice. When the producer
//! goes away it waits for the next one and attaches again by itself.

use std::sync::Arc;
use std::time::Duration;

use shm_layout::pin::{self, PinOutcome};
use shm_layout::sync::Ordering;
use shm_layout::window::RateWindow;
use shm_layout::{BusName, ConsumerState};

use crate::attach::{Attachment, BusInfo, Registration};
use crate::error::ConsumerError;
use crate::frame::Frame;
use crate::sys::{self, Drained, Readiness};
use crate::trust::Trust;

/// How often a waiting consumer checks that its producer still runs, and
/// how often a detached one looks for a new producer.
pub const LIVENESS_INTERVAL: Duration = Duration::from_millis(50);

/// How to attach.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The bus name.
    pub bus: BusName,
    /// A short name shown by `inspect` (16 bytes kept).
    pub name: String,
    /// Frame rate limit; `None` = every frame the consumer can keep up with.
    pub max_fps: Option<f64>,
    /// Users (uids) besides this process's own whose buses it may use (see
    /// [`crate::Trust`]; `FRAMEBUS_TRUST_OWNERS` adds more).
    pub trusted_owners: Vec<u32>,
}

impl ConsumerConfig {
    /// Attach to `bus` with no rate limit, named after the process.
    pub fn new(bus: BusName) -> Self {
        Self {
            bus,
            name: String::from("consumer"),
            max_fps: None,
            trusted_owners: Vec::new(),
        }
    }
}

/// A consumer of one bus.
pub struct Consumer {
    config: ConsumerConfig,
    att: Option<Arc<Attachment>>,
    /// Whether the producer has connected to the current attachment's FIFO
    /// (before that, a read of 0 bytes just means "no writer yet").
    connected: bool,
    last_seq: u64,
    last_instance: u64,
    /// When the next frame is due under `max_fps` (0 = now).
    next_due_ns: u64,
    reattached: u64,
    frames: u64,
    /// Frames skipped between frames taken (sequence gaps), over every
    /// attachment.
    skipped: u64,
    /// The recent takes, whose rate and latencies go to the entry.
    window: RateWindow,
    /// The instance whose producer was last seen gone: never registered on
    /// again, so a consumer re-attaches exactly once per new producer.
    gone_instance: Option<u64>,
    /// The periodic check found the object shorter than its layout.
    truncated: bool,
    /// In a forked child every call fails: the registration is the
    /// parent's.
    fork: sys::ForkGuard,
}

impl Consumer {
    /// Attaches to a running bus: validates its header, claims a consumer
    /// entry and creates the trigger FIFO. Fails at once if the bus does not
    /// exist or is unusable ([`Consumer::attach_wait`] waits instead).
    pub fn attach(config: ConsumerConfig) -> Result<Self, ConsumerError> {
        let mut c = Self::detached(config);
        c.try_register()?;
        Ok(c)
    }

    /// Like [`Consumer::attach`], but waits up to `timeout` for a producer
    /// to appear while the error is transient (no bus yet, bus full).
    pub fn attach_wait(config: ConsumerConfig, timeout: Duration) -> Result<Self, ConsumerError> {
        let mut c = Self::detached(config);
        let deadline = sys::monotonic_ns() + timeout.as_nanos() as u64;
        loop {
            match c.try_register() {
                Ok(()) => return Ok(c),
                Err(e) if e.is_transient() && sys::monotonic_ns() < deadline => {
                    std::thread::sleep(LIVENESS_INTERVAL);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn detached(config: ConsumerConfig) -> Self {
        Self {
            config,
            att: None,
            connected: false,
            last_seq: 0,
            last_instance: 0,
            next_due_ns: 0,
            reattached: 0,
            frames: 0,
            skipped: 0,
            window: RateWindow::new(),
            gone_instance: None,
            truncated: false,
            fork: sys::ForkGuard::new(),
        }
    }

    fn try_register(&mut self) -> Result<(), ConsumerError> {
        let max_fps_milli = self.config.max_fps.map_or(0, |f| {
            (f * 1000.0).round().clamp(0.0, u32::MAX as f64) as u32
        });
        let trust = Trust::new(&self.config.trusted_owners)?;
        let att = Attachment::register(&Registration {
            trust: &trust,
            bus: &self.config.bus,
            name: &self.config.name,
            max_fps_milli,
            gone_instance: self.gone_instance,
        })?;
        let instance = att.header.instance_id;
        if self.last_instance != 0 {
            self.reattached += 1;
            tracing::info!(bus = %self.config.bus, entry = att.index, "re-attached");
        }
        if instance != self.last_instance {
            // A new producer numbers frames from 1 again.
            self.last_seq = 0;
        }
        self.last_instance = instance;
        self.connected = false;
        // The new entry's figures start afresh.
        self.window.clear();
        self.att = Some(Arc::new(att));
        Ok(())
    }

    /// Geometry and identity of the current attachment, `None` while
    /// waiting for a producer.
    pub fn info(&self) -> Option<BusInfo> {
        self.att.as_ref().map(|a| a.bus_info())
    }

    /// How many times this consumer attached again after losing its
    /// producer.
    pub fn reattached(&self) -> u64 {
        self.reattached
    }

    /// Triggers the producer coalesced for the current attachment (its
    /// pipe was full because this consumer was busy or rate-limited).
    pub fn coalesced(&self) -> u64 {
        self.att.as_ref().map_or(0, |a| {
            a.control.consumers()[a.index as usize]
                .coalesced
                .load(Ordering::Relaxed)
        })
    }

    /// Frames handed out so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames skipped so far: the sum, over the frames handed out, of the
    /// sequence gap to the previous one taken from the same producer
    /// (`seq - last_seq - 1`). A consumer that keeps up skips none; one
    /// that takes every third frame skips two per frame. The first frame
    /// from a producer counts no gap. Also in the consumer's entry, per
    /// attachment (`inspect` shows it).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Waits for a frame newer than the last one handed out and pins it.
    /// `Ok(None)` if `timeout` passes first (`None` = wait forever). The
    /// frame borrows the consumer, so only one exists at a time.
    pub fn next_frame(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Frame<'_>>, ConsumerError> {
        self.next(timeout)
    }

    /// Like [`Consumer::next_frame`], but the frame may be kept while more
    /// are taken, up to the bus's pins-per-consumer budget; past it, this
    /// returns [`ConsumerError::PinBudgetExhausted`] instead of pinning.
    pub fn next_frame_owned(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Frame<'static>>, ConsumerError> {
        self.next(timeout)
    }

    fn next<'a>(&mut self, timeout: Option<Duration>) -> Result<Option<Frame<'a>>, ConsumerError> {
        if self.fork.in_child() {
            return Err(ConsumerError::Forked {
                bus: self.config.bus.to_string(),
            });
        }
        let deadline = timeout.map(|t| sys::monotonic_ns().saturating_add(t.as_nanos() as u64));
        let remaining = |now: u64| deadline.map(|d| d.saturating_sub(now));
        // The first round always looks for a frame, so a zero timeout is a
        // non-blocking poll rather than an immediate `None`.
        let mut first = true;
        loop {
            let now = sys::monotonic_ns();
            if !std::mem::take(&mut first) && deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            if std::mem::take(&mut self.truncated) {
                return Err(ConsumerError::BusTruncated {
                    bus: self.config.bus.to_string(),
                });
            }
            let Some(att) = self.att.clone() else {
                match self.try_register() {
                    Ok(()) => continue,
                    Err(e) if e.is_transient() => {
                        let nap = remaining(now).map_or(LIVENESS_INTERVAL, |r| {
                            Duration::from_nanos(r).min(LIVENESS_INTERVAL)
                        });
                        std::thread::sleep(nap);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            // Rate limit: frames are due on a fixed schedule of 1/max_fps
            // (`next_due`); the window opens a quarter period early so a
            // consumer whose limit equals the camera's rate takes each frame
            // as it arrives instead of sleeping past it. The schedule, not
            // the take time, advances, so the average never exceeds max_fps.
            // Triggers that arrive meanwhile are drained; the newest wins.
            if let Some(period) = self.period_ns() {
                let earliest = self.next_due_ns.saturating_sub(period / 4);
                if now < earliest {
                    let mut nap = (earliest - now).min(LIVENESS_INTERVAL.as_nanos() as u64);
                    if let Some(r) = remaining(now) {
                        nap = nap.min(r);
                    }
                    std::thread::sleep(Duration::from_nanos(nap));
                    self.detach_if_dead(&att);
                    continue;
                }
            }
            if att.truncated(false) {
                self.lost_to_truncation(&att);
                continue;
            }
            if !self.connected && att.entry_owner().state() == Some(ConsumerState::Connected) {
                self.connected = true;
            }
            let drained = att
                .pipe_drain()
                .map_err(ConsumerError::os("cannot read the trigger FIFO"))?;
            if drained.no_writer() && self.connected {
                self.lost_pipe(&att);
                continue;
            }
            if let Some(frame) = self.take_newest(&att)? {
                return Ok(Some(frame));
            }
            let mut wait = LIVENESS_INTERVAL;
            if let Some(r) = remaining(now) {
                wait = wait.min(Duration::from_nanos(r));
            }
            match att
                .pipe_wait(wait)
                .map_err(ConsumerError::os("cannot poll the trigger FIFO"))?
            {
                Readiness::Readable => {}
                Readiness::HungUp if self.connected => self.lost_pipe(&att),
                Readiness::HungUp | Readiness::Timeout => {
                    if !self.detach_if_dead(&att) && !self.connected {
                        // Not yet connected: poll returns HUP at once on a
                        // FIFO without writers on some kernels; don't spin.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
    }

    fn period_ns(&self) -> Option<u64> {
        self.config
            .max_fps
            .filter(|f| *f > 0.0)
            .map(|f| (1e9 / f) as u64)
    }

    fn detach(&mut self, why: &str) {
        if self.att.take().is_some() {
            tracing::info!(bus = %self.config.bus, "{why}; waiting for the next producer");
        }
        self.connected = false;
    }

    /// Detaches for good from an instance whose producer is gone: it is
    /// never registered on again, so the next attachment is to a new
    /// producer (exactly one re-attachment per restart).
    fn producer_gone(&mut self, att: &Attachment, why: &str) {
        self.gone_instance = Some(att.header.instance_id);
        self.detach(why);
    }

    /// The bus object was truncated under us: detach for good from this
    /// instance; the next round of `next` reports `BusTruncated` once.
    fn lost_to_truncation(&mut self, att: &Attachment) {
        self.truncated = true;
        tracing::warn!(bus = %self.config.bus, "BusTruncated: the bus object was truncated while mapped");
        self.producer_gone(att, "the bus object was truncated");
    }

    /// The producer closed our trigger pipe: it evicted us (our entry is no
    /// longer ours: register again on the same bus), or it stopped or died
    /// (a live producer closes the pipe of a registered consumer only when
    /// it shuts down) — even if its liveness token has not been dropped yet
    /// by the exiting kernel.
    fn lost_pipe(&mut self, att: &Attachment) {
        if att.truncated(true) {
            // The producer re-creates a bus that was truncated: say why.
            self.lost_to_truncation(att);
        } else if att.registered() {
            self.producer_gone(att, "the producer closed the trigger pipe");
        } else {
            self.detach("the producer dropped this consumer's registration");
        }
    }

    /// The periodic check while no trigger comes: detaches if the producer
    /// is gone (token free or state not Running) or dropped our
    /// registration. Returns whether it detached.
    fn detach_if_dead(&mut self, att: &Attachment) -> bool {
        if att.truncated(true) {
            self.lost_to_truncation(att);
            return true;
        }
        if !att.producer_running() {
            self.producer_gone(att, "the producer is gone");
            true
        } else if !att.registered() {
            self.detach("the producer dropped this consumer's registration");
            true
        } else {
            false
        }
    }

    /// Pins the newest frame if it is newer than the last one handed out.
    fn take_newest<'a>(
        &mut self,
        att: &Arc<Attachment>,
    ) -> Result<Option<Frame<'a>>, ConsumerError> {
        let slots = att.control.slots();
        // A few rounds: each failed one means the producer just moved on.
        for _ in 0..64 {
            let Some((seq, slot)) = att.control.dynamic().latest() else {
                return Ok(None);
            };
            if seq <= self.last_seq {
                return Ok(None);
            }
            let Some(entry) = slots.get(slot as usize) else {
                tracing::debug!(slot, "header names a slot out of range; ignoring");
                return Ok(None);
            };
            if !att.registered() {
                // Evicted by the producer: pin nothing more with this bit.
                self.detach("the producer dropped this consumer's registration");
                return Ok(None);
            }
            let held = att.held.load(Ordering::Relaxed);
            if held >= att.layout().pins_per_consumer {
                return Err(ConsumerError::PinBudgetExhausted { held });
            }
            match pin::try_pin(entry, att.bit) {
                PinOutcome::WriterBusy => continue,
                PinOutcome::AlreadyHeld => return Ok(None),
                PinOutcome::Pinned => {}
            }
            // The slot's own seq names the frame it holds (it may be newer
            // than `latest` said). 0 = being replaced; <= last = not new.
            let got = entry.seq.load(Ordering::Relaxed);
            if got == 0 || got <= self.last_seq {
                pin::release(entry, att.bit);
                continue;
            }
            let pinned_ns = sys::monotonic_ns();
            let frame = Frame::new(Arc::clone(att), slot, got, pinned_ns);
            let gap = if self.last_seq == 0 {
                0
            } else {
                got - self.last_seq - 1
            };
            self.last_seq = got;
            self.skipped += gap;
            if let Some(period) = self.period_ns() {
                let behind = self.next_due_ns == 0 || pinned_ns > self.next_due_ns + period;
                let base = if behind { pinned_ns } else { self.next_due_ns };
                self.next_due_ns = base + period;
            }
            self.frames += 1;
            let me = &att.control.consumers()[att.index as usize];
            me.frames.fetch_add(1, Ordering::Relaxed);
            me.last_seq.store(got, Ordering::Relaxed);
            me.last_latency_ns
                .store(frame.latency_ns(), Ordering::Relaxed);
            if gap > 0 {
                me.skipped.fetch_add(gap, Ordering::Relaxed);
            }
            if let Some(figures) = self.window.record(pinned_ns, frame.latency_ns()) {
                me.store_window(&figures);
            }
            return Ok(Some(frame));
        }
        Ok(None)
    }
}

impl Attachment {
    fn pipe_drain(&self) -> std::io::Result<Drained> {
        self.pipe.drain_checked(self.layout().slot_count)
    }

    fn pipe_wait(&self, timeout: Duration) -> std::io::Result<Readiness> {
        self.pipe.wait(timeout)
    }
}
