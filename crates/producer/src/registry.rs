//! The producer's side of the consumer table: connecting to consumers'
//! trigger FIFOs as they appear, fanning triggers out, and reclaiming the
//! entries (and pins) of consumers that are gone. Every field a consumer
//! writes is untrusted input here.
//!
//! Who is gone is the kernel's word: an entry's liveness token
//! (`framebus_platform::token_held`), never a pid. An entry whose FIFO
//! broke is evicted (no more triggers, nobody may claim it) but keeps its
//! pin bits until its token is free, so a frame a live process holds is
//! never rewritten; only a consumer that breaks the protocol (more pins
//! than its budget, a state only the producer sets) loses its pins at once.
//! The state machine itself is `shm_layout::entry`.

use std::fs::File;
use std::path::PathBuf;

use shm_layout::entry::{self, OverBudget, Reaped, TestTokens};
use shm_layout::naming::fifo_file_name;
use shm_layout::sync::Ordering;
use shm_layout::{ConsumerState, ControlView, Owner};

use crate::sys::{self, FifoOpen, TokenId, TriggerWrite};

/// Size of one trigger message: `seq: u64, slot: u32, flags: u32`, LE
/// (defined, with its decoder, in [`shm_layout::trigger`]).
pub use shm_layout::trigger::TRIGGER_LEN;

/// Builds a trigger message ([`shm_layout::trigger::encode`]).
pub fn trigger_message(seq: u64, slot: u32) -> [u8; TRIGGER_LEN] {
    shm_layout::trigger::encode(seq, slot)
}

struct Connection {
    owner: Owner,
    pipe: File,
}

/// Consumer tokens tested through the producer's open of the bus object.
pub(crate) struct BusTokens<'a>(pub(crate) sys::BusRef<'a>);

impl TestTokens for BusTokens<'_> {
    fn held(&self, index: u32) -> bool {
        match sys::token_held(self.0, TokenId::Consumer(index)) {
            Ok(held) => held,
            Err(e) => {
                // Cannot tell: alive is the safe answer (a reclaim waits).
                tracing::warn!(
                    entry = index,
                    "cannot test a consumer's liveness token: {e}"
                );
                true
            }
        }
    }
}

pub(crate) struct Registry {
    /// The producer's open of the bus object (a duplicate: the same open
    /// file description), through which consumer tokens are tested.
    bus: sys::BusHandle,
    dir: PathBuf,
    conns: Vec<Option<Connection>>,
    reclaimed: u64,
    /// Entries evicted for breaking the protocol and counted in `reclaimed`
    /// then: freeing them later (when their token goes) is not counted
    /// again.
    counted: u64,
    /// Where the next fan-out starts: rotated every frame so no consumer is
    /// always the last one woken.
    fan_start: usize,
    /// Entries the previous `enforce_budgets` count of the current wait for
    /// a free slot saw over their budget, with their slots.
    over_budget: OverBudget,
    /// The group the bus is shared with, if any: its members' FIFOs are
    /// accepted.
    group: Option<u32>,
    /// Stray pin bits cleared since the last warning about them, and when
    /// that warning was (a process scribbling the slot table must not
    /// flood the log: one line a second at most).
    strays: StrayLog,
}

/// Stray pin bits cleared, for a warning at most once a second.
#[derive(Debug, Default)]
struct StrayLog {
    slots: u64,
    entries: u64,
    last_warned_ns: Option<u64>,
}

impl StrayLog {
    /// Counts `slots` and `entries` cleared at `now_ns`; returns the totals
    /// to warn about when a second has passed since the last warning.
    fn add(&mut self, slots: u32, entries: u64, now_ns: u64) -> Option<(u64, u64)> {
        self.slots += u64::from(slots);
        self.entries |= entries;
        let due = self
            .last_warned_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= 1_000_000_000);
        if !due {
            return None;
        }
        self.last_warned_ns = Some(now_ns);
        let out = (self.slots, self.entries);
        self.slots = 0;
        self.entries = 0;
        Some(out)
    }
}

impl Registry {
    pub(crate) fn new(
        bus: sys::BusHandle,
        dir: PathBuf,
        max_consumers: u32,
        group: Option<u32>,
    ) -> Self {
        Self {
            bus,
            dir,
            conns: (0..max_consumers).map(|_| None).collect(),
            reclaimed: 0,
            counted: 0,
            fan_start: 0,
            over_budget: OverBudget::default(),
            group,
            strays: StrayLog::default(),
        }
    }

    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Consumers reclaimed so far.
    pub(crate) fn reclaimed(&self) -> u64 {
        self.reclaimed
    }

    fn fifo_path(&self, index: usize, owner: Owner) -> PathBuf {
        self.dir.join(fifo_file_name(index, owner.generation()))
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
                // Waiting for its token to go (see check_liveness).
                Some(ConsumerState::Reclaiming) => self.conns[i] = None,
                Some(ConsumerState::Connected) | None => {
                    // Only this producer sets Connected: the entry was
                    // written by someone else, who broke the protocol.
                    self.strip(
                        control,
                        i,
                        owner,
                        "its entry holds a state this producer never set",
                    );
                }
            }
        }
        self.show_connected(control);
    }

    /// Writes the connected count into the header (informational).
    fn show_connected(&self, control: &ControlView) {
        control
            .dynamic()
            .connected_consumers
            .store(self.connected(), Ordering::Relaxed);
    }

    fn connect(&mut self, control: &ControlView, i: usize, owner: Owner) {
        let path = self.fifo_path(i, owner);
        match sys::open_fifo_writer(&path, self.group) {
            FifoOpen::Open(pipe) => {
                // AcqRel: Acquire sees the consumer's setup (name, figures);
                // the CAS fails if the consumer left meanwhile.
                if let Some(connected) = entry::connect(&control.consumers()[i], owner) {
                    tracing::debug!(entry = i, pid = owner.pid(), "consumer connected");
                    self.conns[i] = Some(Connection {
                        owner: connected,
                        pipe,
                    });
                }
            }
            // A Ready consumer opened its FIFO before it said so: no reader
            // now means it closed it (it left or died).
            FifoOpen::NoReader => self.evict(control, i, owner, "its trigger FIFO has no reader"),
            FifoOpen::Foreign(what) => self.evict(
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
                    self.evict(control, i, owner, "its trigger FIFO has no reader");
                }
            }
        }
    }

    /// The liveness pass: every entry whose owner's token is free is
    /// reclaimed — pins cleared, FIFO removed, entry freed. One token test
    /// (one syscall) per entry that is not Free.
    pub(crate) fn check_liveness(&mut self, control: &ControlView) {
        for i in 0..self.conns.len() {
            self.reap(control, i);
        }
        // A consumer reclaimed now is no longer connected: say so now, not
        // at the next pass.
        self.show_connected(control);
    }

    fn reap(&mut self, control: &ControlView, i: usize) -> Reaped {
        let reaped = entry::reap(
            control.slots(),
            control.consumers(),
            i as u32,
            &BusTokens(sys::bus_ref(&self.bus)),
        );
        if let Reaped::Freed { owner, cleared } = reaped {
            self.conns[i] = None;
            sys::remove_fifo(&self.fifo_path(i, owner));
            if self.counted & (1 << i) == 0 {
                self.reclaimed += 1;
            }
            self.counted &= !(1 << i);
            tracing::info!(
                entry = i,
                pid = owner.pid(),
                pins = cleared,
                "reclaimed consumer: its process is gone"
            );
        }
        reaped
    }

    /// Stops serving entry `i` (its FIFO broke): Reclaiming, no more
    /// triggers. Its pins stay until its token is free — tested at once, so
    /// a consumer that died is reclaimed now, one that lives (or is just
    /// leaving) keeps its frames until it lets go.
    fn evict(&mut self, control: &ControlView, i: usize, observed: Owner, why: &str) {
        self.conns[i] = None;
        if !entry::evict(&control.consumers()[i], observed) {
            return;
        }
        tracing::info!(entry = i, pid = observed.pid(), "evicted consumer: {why}");
        // A dead consumer's token is usually gone already: reclaim it now;
        // else the liveness pass does once it is.
        self.reap(control, i);
    }

    /// Evicts entry `i` for breaking the protocol and clears its pins now.
    fn strip(&mut self, control: &ControlView, i: usize, observed: Owner, why: &str) {
        self.conns[i] = None;
        if let Some(cleared) =
            entry::evict_and_strip(control.slots(), &control.consumers()[i], i as u32, observed)
        {
            self.reclaimed += 1;
            self.counted |= 1 << i;
            tracing::warn!(
                entry = i,
                pid = observed.pid(),
                pins = cleared,
                "evicted consumer and cleared its pins: {why}"
            );
        }
    }

    /// Called when passes found no free slot: see
    /// [`shm_layout::entry::enforce_budgets`].
    pub(crate) fn enforce_budgets(&mut self, control: &ControlView, budget: u32) {
        let report = entry::enforce_budgets(
            control.slots(),
            control.consumers(),
            budget,
            &self.over_budget,
        );
        if report.stray_slots > 0 || report.stray_entries != 0 {
            if let Some((slots, entries)) = self.strays.add(
                report.stray_slots,
                report.stray_entries,
                sys::monotonic_ns(),
            ) {
                tracing::warn!(
                    slots,
                    entries = format_args!("{entries:#x}"),
                    "cleared pin bits no consumer of this bus can own (counted since the last such warning; at most one a second)"
                );
            }
        }
        for i in 0..self.conns.len() {
            if report.evicted & (1 << i) != 0 {
                self.conns[i] = None;
                self.reclaimed += 1;
                self.counted |= 1 << i;
                tracing::warn!(
                    entry = i,
                    budget,
                    "evicted consumer and cleared its pins: it held more frames than its budget"
                );
            }
        }
        self.over_budget = report.over;
    }

    /// The producer found a free slot: counts of a later wait start afresh
    /// (`latest` moves between waits, so an honest consumer's pins may too).
    pub(crate) fn free_slot_found(&mut self) {
        if !self.over_budget.is_empty() {
            self.over_budget = OverBudget::default();
        }
    }

    /// Closes every write end (consumers see EOF) and removes the FIFOs.
    pub(crate) fn shutdown(&mut self) {
        for c in &mut self.conns {
            *c = None;
        }
        sys::remove_trigger_dir(&self.dir);
    }
}

#[cfg(test)]
mod stray_log_tests {
    use super::StrayLog;

    #[test]
    fn strays_are_warned_once_a_second_with_what_accumulated() {
        let mut log = StrayLog::default();
        assert_eq!(
            log.add(2, 0b1, 10),
            Some((2, 0b1)),
            "the first is told at once"
        );
        assert_eq!(log.add(3, 0b10, 500_000_000), None);
        assert_eq!(log.add(1, 0b100, 1_000_000_009), None, "not yet a second");
        assert_eq!(
            log.add(0, 0, 1_000_000_010),
            Some((4, 0b110)),
            "a second later: everything since"
        );
        assert_eq!(log.add(5, 0, 1_500_000_000), None);
    }
}

// Unix sockets stand in for FIFOs and a plain file for the bus object.
#[cfg(all(test, unix))]
#[path = "registry_tests.rs"]
mod tests;
