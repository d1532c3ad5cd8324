//! The producer's side of the consumer table: connecting to consumers'
//! trigger FIFOs as they appear, fanning triggers out, and reclaiming the
//! entries (and pins) of consumers that died or misbehave. Every field a
//! consumer writes is untrusted input here.
//!
//! A reclaimed entry's pin bits are cleared at once, but the entry itself is
//! freed (its bit made reusable) only once its process is gone: a live
//! process that was evicted may still release "its" bit later, and that must
//! never touch a new owner's pins.

use std::fs::File;
use std::path::PathBuf;

use shm_layout::naming::fifo_file_name;
use shm_layout::pin::{self, consumer_bit, WRITER};
use shm_layout::sync::Ordering;
use shm_layout::{ConsumerState, ControlView, Owner};

use crate::sys::{self, FifoOpen, TriggerWrite};

/// Size of one trigger message: `seq: u64, slot: u32, flags: u32`, LE.
pub const TRIGGER_LEN: usize = 16;

/// Builds a trigger message.
pub fn trigger_message(seq: u64, slot: u32) -> [u8; TRIGGER_LEN] {
    let mut msg = [0u8; TRIGGER_LEN];
    msg[..8].copy_from_slice(&seq.to_le_bytes());
    msg[8..12].copy_from_slice(&slot.to_le_bytes());
    msg
}

struct Connection {
    owner: Owner,
    pipe: File,
}

pub(crate) struct Registry {
    dir: PathBuf,
    conns: Vec<Option<Connection>>,
    reclaimed: u64,
    /// Where the next fan-out starts: rotated every frame so no consumer is
    /// always the last one woken.
    fan_start: usize,
    /// Entries found over budget by the previous `enforce_budgets` count.
    over_budget: u64,
    /// The group the bus is shared with, if any: its members' FIFOs are
    /// accepted.
    group: Option<u32>,
}

impl Registry {
    pub(crate) fn new(dir: PathBuf, max_consumers: u32, group: Option<u32>) -> Self {
        Self {
            dir,
            conns: (0..max_consumers).map(|_| None).collect(),
            reclaimed: 0,
            fan_start: 0,
            over_budget: 0,
            group,
        }
    }

    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Consumers reclaimed so far.
    pub(crate) fn reclaimed(&self) -> u64 {
        self.reclaimed
    }

    fn fifo_path(&self, index: usize) -> PathBuf {
        self.dir.join(fifo_file_name(index))
    }

    /// Connected consumers.
    pub(crate) fn connected(&self) -> u32 {
        self.conns.iter().filter(|c| c.is_some()).count() as u32
    }

    /// One pass over the consumer table: connect to consumers that became
    /// ready, forget those that left, evict entries in impossible states.
    /// O(max_consumers) atomic loads; opens a FIFO only for a new consumer.
    pub(crate) fn sync(&mut self, control: &ControlView) {
        for i in 0..self.conns.len() {
            let owner = control.consumers()[i].owner();
            let ours = self.conns[i].as_ref().map(|c| c.owner);
            match owner.state() {
                Some(ConsumerState::Free | ConsumerState::Claimed) => {
                    if ours.is_some() {
                        // It left (cleanly) or the entry was claimed anew.
                        self.conns[i] = None;
                    }
                }
                Some(ConsumerState::Ready) => {
                    self.conns[i] = None;
                    self.connect(control, i, owner);
                }
                Some(ConsumerState::Connected) if ours == Some(owner) => {}
                // Waiting for its process to exit (see check_liveness).
                Some(ConsumerState::Reclaiming) => self.conns[i] = None,
                Some(ConsumerState::Connected) | None => {
                    // Only this producer sets Connected; the entry was
                    // written by someone else.
                    self.reclaim(
                        control,
                        i,
                        owner,
                        "its entry holds a state this producer never set",
                    );
                }
            }
        }
        control
            .dynamic()
            .connected_consumers
            .store(self.connected(), Ordering::Relaxed);
    }

    fn connect(&mut self, control: &ControlView, i: usize, owner: Owner) {
        let path = self.fifo_path(i);
        match sys::open_fifo_writer(&path, self.group) {
            FifoOpen::Open(pipe) => {
                let connected = owner.with_state(ConsumerState::Connected);
                // AcqRel: Acquire sees the consumer's setup (name, figures);
                // the CAS fails if the consumer left meanwhile.
                if control.consumers()[i]
                    .owner
                    .compare_exchange(owner.0, connected.0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    tracing::debug!(entry = i, pid = owner.pid(), "consumer connected");
                    self.conns[i] = Some(Connection {
                        owner: connected,
                        pipe,
                    });
                }
            }
            // A Ready consumer opened its FIFO before it said so: no reader
            // now means it closed it (it left or died).
            FifoOpen::NoReader => self.reclaim(control, i, owner, "its trigger FIFO has no reader"),
            FifoOpen::Foreign(what) => self.reclaim(
                control,
                i,
                owner,
                &format!("its trigger FIFO is unusable: {what}"),
            ),
            FifoOpen::Failed(e) => tracing::debug!(
                entry = i,
                "cannot open a consumer's FIFO yet ({e}); will retry"
            ),
        }
    }

    /// Sends one trigger to every connected consumer: non-blocking, so a
    /// slow, stopped or dead consumer costs one failed write.
    pub(crate) fn trigger(&mut self, control: &ControlView, msg: &[u8; TRIGGER_LEN]) {
        let n = self.conns.len();
        self.fan_start = (self.fan_start + 1) % n;
        for k in 0..n {
            let i = (self.fan_start + k) % n;
            let Some(conn) = self.conns[i].as_mut() else {
                continue;
            };
            match sys::write_trigger(&mut conn.pipe, msg) {
                TriggerWrite::Sent => {}
                TriggerWrite::Full => {
                    control.consumers()[i]
                        .coalesced
                        .fetch_add(1, Ordering::Relaxed);
                }
                TriggerWrite::Gone => {
                    let owner = conn.owner;
                    self.reclaim(control, i, owner, "its trigger FIFO has no reader");
                }
            }
        }
    }

    /// Reclaims the entries of dead processes, and frees reclaimed entries
    /// whose process has exited since.
    pub(crate) fn check_liveness(&mut self, control: &ControlView) {
        for i in 0..self.conns.len() {
            let entry = &control.consumers()[i];
            let owner = entry.owner();
            match owner.state() {
                Some(ConsumerState::Free) => {}
                Some(ConsumerState::Reclaiming) if !sys::pid_alive(owner.pid()) => {
                    // Its bits were cleared when it was reclaimed; any it
                    // set again since die with it now.
                    pin::reclaim(control.slots(), consumer_bit(i as u32));
                    let _ = entry.owner.compare_exchange(
                        owner.0,
                        owner.freed().0,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
                Some(ConsumerState::Reclaiming) => {}
                _ if !sys::pid_alive(owner.pid()) => {
                    self.reclaim(control, i, owner, "its process is gone")
                }
                _ => {}
            }
        }
    }

    /// Reclaims entry `i` if its owner word is still `observed`: marks it
    /// Reclaiming (so no consumer claims it), clears its pin bit from every
    /// slot, removes its FIFO, and frees the entry if its process is gone
    /// (else `check_liveness` frees it once the process exits).
    pub(crate) fn reclaim(&mut self, control: &ControlView, i: usize, observed: Owner, why: &str) {
        self.conns[i] = None;
        let entry = &control.consumers()[i];
        let reclaiming = observed.with_state(ConsumerState::Reclaiming);
        // The CAS fails if the entry changed hands since `observed`: then the
        // new owner's bit must not be touched. The generation makes it ABA-proof.
        if entry
            .owner
            .compare_exchange(
                observed.0,
                reclaiming.0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        let cleared = pin::reclaim(control.slots(), consumer_bit(i as u32));
        sys::remove_fifo(&self.fifo_path(i));
        if !sys::pid_alive(observed.pid()) {
            // Release (in the CAS): the cleared bits are visible before the
            // entry is free.
            let _ = entry.owner.compare_exchange(
                reclaiming.0,
                observed.freed().0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        self.reclaimed += 1;
        tracing::info!(
            entry = i,
            pid = observed.pid(),
            pins = cleared,
            "reclaimed consumer: {why}"
        );
    }

    /// Called when passes found no free slot: clears writer bits this
    /// producer does not hold (it holds none between publishes) and bits of
    /// entries that do not exist or are free, and evicts consumers found
    /// over their pin budget by two counts in a row (one count can see a
    /// moving consumer twice).
    pub(crate) fn enforce_budgets(&mut self, control: &ControlView, budget: u32) {
        let slots = control.slots();
        let n = self.conns.len() as u32;
        let stray = !WRITER & !((1u64 << n) - 1);
        for s in slots {
            let p = pin::pins(s);
            if p & (WRITER | stray) != 0 {
                tracing::warn!(
                    pins = p,
                    "clearing pin bits no consumer of this bus can own"
                );
                s.pins.fetch_and(!(WRITER | stray), Ordering::Release);
            }
        }
        let mut over = 0u64;
        for i in 0..self.conns.len() {
            let bit = consumer_bit(i as u32);
            let held = slots.iter().filter(|s| pin::pins(s) & bit != 0).count() as u32;
            if held == 0 {
                continue;
            }
            let entry = &control.consumers()[i];
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
                }
            } else if owner.state() == Some(ConsumerState::Reclaiming) {
                // Evicted but alive: it has no right to any slot.
                pin::reclaim(slots, bit);
            } else if held > budget {
                over |= bit;
                if self.over_budget & bit != 0 {
                    let why = format!("it held {held} frames, more than its budget of {budget}");
                    self.reclaim(control, i, owner, &why);
                }
            }
        }
        self.over_budget = over;
    }

    /// Closes every write end (consumers see EOF) and removes the FIFOs.
    pub(crate) fn shutdown(&mut self) {
        for c in &mut self.conns {
            *c = None;
        }
        sys::remove_trigger_dir(&self.dir);
    }
}
