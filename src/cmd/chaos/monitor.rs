//! The monitor: reads the bus every millisecond while chaos runs, times
//! the reclaims of killed consumers' entries, the gaps between publishes,
//! and judges re-attachments after producer restarts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framebus_consumer::{inspect, BusSnapshot};
use shm_layout::BusName;

use super::procs::Consumer;
use super::report::ChaosReport;

/// Counters the consumers' stderr readers keep.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) bad: AtomicU64,
    pub(super) forks: AtomicU64,
    pub(super) fork_failures: AtomicU64,
}

/// A kill whose reclaim the monitor times: the entry (index, generation)
/// the victim owned.
pub(super) struct PendingReclaim {
    pub(super) index: u32,
    pub(super) generation: u32,
    pub(super) name: String,
    pub(super) instance: u64,
    pub(super) at: Instant,
}

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
            let alive = s.producer_alive && s.producer_state == "running";
            match m.last_publish {
                Some((n, t))
                    if s.frames_published == n && alive && !restarting.load(Ordering::Relaxed) =>
                {
                    m.worst_gap = m.worst_gap.max(now - t);
                }
                Some((n, _)) if s.frames_published == n => {}
                _ => m.last_publish = Some((s.frames_published, now)),
            }
            if restarting.load(Ordering::Relaxed) {
                m.last_publish = None;
            }
            for c in &s.consumers {
                m.frames_by_name.insert(c.name.clone(), c.frames);
            }
            m.published.insert(s.instance_id, s.frames_published);
            let pending = std::mem::take(&mut m.pending);
            for p in pending {
                if p.instance != s.instance_id {
                    continue; // a producer restart intervened: not timed
                }
                // Done once the victim's (index, generation) has left the
                // table and its bit is on no slot — unless the index has a
                // new owner, whose pins those bits are (an entry is freed
                // only after its bits are cleared).
                let bit = 1u64 << p.index;
                let pinned = s.slots.iter().any(|x| x.pins & bit != 0);
                let owned = s
                    .consumers
                    .iter()
                    .any(|c| c.index == p.index && c.generation == p.generation);
                let reused = s
                    .consumers
                    .iter()
                    .any(|c| c.index == p.index && c.generation != p.generation);
                if owned || (pinned && !reused) {
                    m.pending.push(p);
                } else {
                    m.reclaims += 1;
                    m.worst_reclaim = m.worst_reclaim.max(now - p.at);
                }
            }
            m.latest = Some(s);
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
        if final_call || Instant::now() >= check.deadline {
            for n in &check.names {
                if consumers.iter().any(|c| &c.name == n) {
                    eprintln!(
                        "chaos: consumer {n} did not re-attach to producer instance {:#x}",
                        check.instance
                    );
                    report.reattach_failures += 1;
                }
            }
            return false;
        }
        true
    });
}
