//! The monitor: reads the bus every millisecond while chaos runs, times
//! the reclaims of killed consumers' entries, the gaps between publishes,
//! and judges re-attachments after producer restarts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framebus_consumer::{inspect, BusSnapshot};
use shm_layout::BusName;

use super::procs::Consumer;
use super::report::ChaosReport;
#[cfg(test)]
use super::stderr::{Counters, StderrLine};

/// A kill whose reclaim the monitor times: the entry (index, generation)
/// the victim owned.
pub(super) struct PendingReclaim {
    pub(super) index: u32,
    pub(super) generation: u32,
    pub(super) name: String,
    pub(super) instance: u64,
    pub(super) at: Instant,
}

/// Where a killed consumer's reclaim stands in one snapshot of the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReclaimState {
    /// The snapshot is of another producer instance (a restart intervened):
    /// the reclaim is not timed.
    OtherInstance,
    /// The victim's entry is still in the table, or its bit still on a
    /// slot while nobody else owns the index.
    Pending,
    /// The entry left the table and its bits are cleared (or belong to the
    /// index's new owner).
    Reclaimed,
}

impl PendingReclaim {
    /// Judges this reclaim against a snapshot of the bus.
    pub(super) fn state_in(&self, s: &BusSnapshot) -> ReclaimState {
        if self.instance != s.instance_id {
            return ReclaimState::OtherInstance;
        }
        // Done once the victim's (index, generation) has left the table
        // and its bit is on no slot — unless the index has a new owner,
        // whose pins those bits are (an entry is freed only after its bits
        // are cleared).
        let bit = 1u64 << self.index;
        let pinned = s.slots.iter().any(|x| x.pins & bit != 0);
        let owned = s
            .consumers
            .iter()
            .any(|c| c.index == self.index && c.generation == self.generation);
        let reused = s
            .consumers
            .iter()
            .any(|c| c.index == self.index && c.generation != self.generation);
        if owned || (pinned && !reused) {
            ReclaimState::Pending
        } else {
            ReclaimState::Reclaimed
        }
    }
}

/// What the monitor has seen so far.
#[derive(Default)]
pub(super) struct Monitor {
    pub(super) latest: Option<BusSnapshot>,
    pub(super) last_publish: Option<(u64, Instant)>,
    pub(super) worst_gap: Duration,
    pub(super) pending: Vec<PendingReclaim>,
    pub(super) worst_reclaim: Duration,
    pub(super) reclaims: u64,
    /// Last frame count seen per consumer name (for consumers that die).
    pub(super) frames_by_name: HashMap<String, u64>,
    /// Frames published, per producer instance.
    pub(super) published: HashMap<u64, u64>,
}

impl Monitor {
    /// Takes in one snapshot `s` read at `now`; `restarting` says that chaos
    /// is restarting the producer (no publish gap is measured across it).
    pub(super) fn observe(&mut self, s: BusSnapshot, now: Instant, restarting: bool) {
        let alive = s.producer_alive && s.producer_state == "running";
        match self.last_publish {
            Some((n, t)) if s.frames_published == n && alive && !restarting => {
                self.worst_gap = self.worst_gap.max(now - t);
            }
            Some((n, _)) if s.frames_published == n => {}
            _ => self.last_publish = Some((s.frames_published, now)),
        }
        if restarting {
            self.last_publish = None;
        }
        for c in &s.consumers {
            self.frames_by_name.insert(c.name.clone(), c.frames);
        }
        self.published.insert(s.instance_id, s.frames_published);
        for p in std::mem::take(&mut self.pending) {
            match p.state_in(&s) {
                ReclaimState::OtherInstance => {}
                ReclaimState::Pending => self.pending.push(p),
                ReclaimState::Reclaimed => {
                    self.reclaims += 1;
                    self.worst_reclaim = self.worst_reclaim.max(now - p.at);
                }
            }
        }
        self.latest = Some(s);
    }

    /// Writes what the monitor measured into the report (at the end of the
    /// run, `now`): frames published, reclaim figures, the entries never
    /// reclaimed (also printed), the worst publish gap.
    pub(super) fn finish(&self, report: &mut ChaosReport, now: Instant) {
        report.frames_published = self.published.values().sum();
        report.worst_reclaim_ms = self.worst_reclaim.as_secs_f64() * 1e3;
        report.reclaims_timed = self.reclaims;
        report.unreclaimed = self.pending.len() as u64;
        report.worst_publish_gap_ms = self.worst_gap.as_secs_f64() * 1e3;
        for p in &self.pending {
            let what = format!(
                "{} (entry {} generation {}, killed {:.1} s before the end)",
                p.name,
                p.index,
                p.generation,
                now.saturating_duration_since(p.at).as_secs_f64()
            );
            eprintln!("chaos: never reclaimed: {what}");
            report.unreclaimed_entries.push(what);
        }
    }
}

/// Reads the bus every millisecond into `state` until `stop`.
pub(super) fn monitor_loop(
    bus: BusName,
    state: Arc<Mutex<Monitor>>,
    restarting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let snap = inspect(&bus).ok();
        let now = Instant::now();
        let Ok(mut m) = state.lock() else { return };
        if let Some(s) = snap {
            m.observe(s, now, restarting.load(Ordering::Relaxed));
        }
        drop(m);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A re-attachment check: every listed consumer (by name) must show frames
/// on the new producer's instance before the deadline.
pub(super) struct ReattachCheck {
    pub(super) deadline: Instant,
    pub(super) instance: u64,
    pub(super) names: Vec<String>,
}

/// A re-attachment check passes once every listed consumer shows frames on
/// the new instance; it fails if its deadline passes first (or at the end)
/// while that consumer is still running (a killed one is not expected back:
/// its replacement has another name).
pub(super) fn judge_reattach(
    checks: &mut Vec<ReattachCheck>,
    snapshot: &dyn Fn() -> Option<BusSnapshot>,
    consumers: &[Consumer],
    report: &mut ChaosReport,
    final_call: bool,
) {
    let Some(s) = snapshot() else { return };
    let running = |n: &str| consumers.iter().any(|c| c.name == n);
    let deadlines: Vec<(u64, Instant)> = checks.iter().map(|c| (c.instance, c.deadline)).collect();
    let now = Instant::now();
    // How long the consumers that show frames now took (measured from the
    // check's start, its deadline less the timeout; an upper bound, as the
    // run looks only between its events).
    let timeout = Duration::from_secs_f64(report.reattach_timeout_s);
    for check in checks.iter().filter(|c| c.instance == s.instance_id) {
        let took =
            now.saturating_duration_since(check.deadline.checked_sub(timeout).unwrap_or(now));
        for n in &check.names {
            if s.consumers.iter().any(|c| &c.name == n && c.frames > 0) {
                report.worst_reattach_ms = report.worst_reattach_ms.max(took.as_secs_f64() * 1e3);
            }
        }
    }
    for (n, instance) in judge_reattach_in(checks, &s, &running, now, final_call) {
        let deadline = deadlines
            .iter()
            .find(|(i, _)| *i == instance)
            .map(|(_, d)| *d);
        // Which deadline was missed: the check's own, or the end of the run
        // (the final call) before it.
        let what = match deadline {
            Some(d) if now < d => format!(
                "consumer {n} showed no frame of producer instance {instance:#x} by the end of the run ({:.1} s before its re-attach deadline)",
                (d - now).as_secs_f64()
            ),
            _ => format!(
                "consumer {n} showed no frame of producer instance {instance:#x} within the re-attach deadline (--reattach-timeout {} s after the restart)",
                report.reattach_timeout_s
            ),
        };
        eprintln!("chaos: {what}");
        report.reattach_failed.push(what);
        report.reattach_failures += 1;
    }
}

/// [`judge_reattach`] against the snapshot `s` at `now`, `running` telling
/// whether a consumer of that name still runs: drops the checks that are
/// settled and returns the failures, (consumer name, producer instance).
pub(super) fn judge_reattach_in(
    checks: &mut Vec<ReattachCheck>,
    s: &BusSnapshot,
    running: &dyn Fn(&str) -> bool,
    now: Instant,
    final_call: bool,
) -> Vec<(String, u64)> {
    let mut failed = Vec::new();
    checks.retain_mut(|check| {
        if s.instance_id != check.instance {
            return false; // superseded by another restart
        }
        check
            .names
            .retain(|n| !s.consumers.iter().any(|c| &c.name == n && c.frames > 0));
        if check.names.is_empty() {
            return false;
        }
        if final_call || now >= check.deadline {
            for n in &check.names {
                if running(n) {
                    failed.push((n.clone(), check.instance));
                }
            }
            return false;
        }
        true
    });
    failed
}

#[cfg(test)]
mod tests;
