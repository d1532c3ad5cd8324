//! [`RateWindow`]: the rate and latency percentiles of a recent window of
//! events, as a consumer stores them in its consumer entry and the producer
//! its publish rate in the header (doc/LAYOUT.md §5.2, §7). Pure arithmetic:
//! the caller passes `CLOCK_MONOTONIC` times.

use std::collections::VecDeque;

use crate::tables::WindowFigures;

/// Events older than this leave the window (but the newest two always
/// stay, so a slow consumer's rate is still measured).
pub const WINDOW_NS: u64 = 2_000_000_000;
/// Most events kept in a window.
pub const WINDOW_CAP: usize = 256;
/// The figures are worth storing again at most this often.
pub const STORE_EVERY_NS: u64 = 100_000_000;

/// The recent events (time, latency) of one process.
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    events: VecDeque<(u64, u64)>,
    last_store_ns: u64,
}

impl RateWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every event (a new attachment).
    pub fn clear(&mut self) {
        self.events.clear();
        self.last_store_ns = 0;
    }

    /// Records an event at `now_ns` with its latency (0 if none), and
    /// returns the window's figures when they are due to be stored again
    /// (the first time, and then every [`STORE_EVERY_NS`]).
    pub fn record(&mut self, now_ns: u64, latency_ns: u64) -> Option<WindowFigures> {
        self.events.push_back((now_ns, latency_ns));
        while self.events.len() > WINDOW_CAP
            || (self.events.len() > 2
                && self
                    .events
                    .front()
                    .is_some_and(|&(t, _)| now_ns.saturating_sub(t) > WINDOW_NS))
        {
            self.events.pop_front();
        }
        let due = self.last_store_ns == 0
            || self.events.len() == 2
            || now_ns.saturating_sub(self.last_store_ns) >= STORE_EVERY_NS;
        if !due {
            return None;
        }
        self.last_store_ns = now_ns;
        Some(self.figures(now_ns))
    }

    /// The figures of the events now in the window: the rate counts
    /// intervals ((events - 1) over the time from the first to the last).
    pub fn figures(&self, now_ns: u64) -> WindowFigures {
        let n = self.events.len();
        let (first, last) = match (self.events.front(), self.events.back()) {
            (Some(f), Some(l)) => (f.0, l.0),
            _ => return WindowFigures::default(),
        };
        let span = last.saturating_sub(first);
        let fps_milli = if n >= 2 && span > 0 {
            ((n as u64 - 1) as f64 * 1e12 / span as f64)
                .round()
                .min(f64::from(u32::MAX)) as u32
        } else {
            0
        };
        let mut lat: Vec<u64> = self.events.iter().map(|&(_, l)| l).collect();
        lat.sort_unstable();
        WindowFigures {
            fps_milli,
            window_ms: (span / 1_000_000).min(u64::from(u32::MAX)) as u32,
            latency_p50_ns: nearest_rank(&lat, 50),
            latency_p99_ns: nearest_rank(&lat, 99),
            updated_ns: now_ns,
        }
    }
}

/// The nearest-rank percentile `p` of sorted values (0 when empty).
fn nearest_rank(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as u64 * p).div_ceil(100).max(1) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn rate_counts_intervals_and_percentiles_rank() {
        let mut w = RateWindow::new();
        // 11 events 100 ms apart: 10 intervals in 1 s = 10 fps.
        for i in 0..11u64 {
            w.record(1_000 * MS + i * 100 * MS, (i + 1) * 1000);
        }
        let f = w.figures(2_000 * MS);
        assert_eq!(f.fps_milli, 10_000);
        assert_eq!(f.window_ms, 1000);
        assert_eq!(f.latency_p50_ns, 6000);
        assert_eq!(f.latency_p99_ns, 11_000);
    }

    #[test]
    fn old_events_leave_but_two_stay() {
        let mut w = RateWindow::new();
        for i in 0..40u64 {
            w.record(MS + i * 100 * MS, 1);
        }
        // Window of 2 s at 10 fps: 21 events, 20 intervals.
        assert_eq!(w.events.len(), 21);
        assert_eq!(w.figures(0).fps_milli, 10_000);
        let mut slow = RateWindow::new();
        slow.record(MS, 1);
        slow.record(MS + 5_000 * MS, 1); // 0.2 fps: still measured
        slow.record(MS + 10_000 * MS, 1);
        assert_eq!(slow.figures(0).fps_milli, 200);
    }

    #[test]
    fn stores_are_throttled() {
        let mut w = RateWindow::new();
        assert!(w.record(MS, 1).is_some(), "first");
        assert!(w.record(2 * MS, 1).is_some(), "first rate");
        assert!(w.record(3 * MS, 1).is_none());
        assert!(w.record(2 * MS + STORE_EVERY_NS, 1).is_some());
    }

    /// A fast stream keeps exactly the newest `WINDOW_CAP` events: 300
    /// events 1 ms apart (all within `WINDOW_NS`) with latencies 1 to 300
    /// leave events 45 to 300 (256 of them, 255 ms).
    #[test]
    fn the_window_keeps_the_newest_cap_events() {
        let mut w = RateWindow::new();
        for i in 1..=300u64 {
            w.record(1_000 * MS + i * MS, i);
        }
        assert_eq!(w.events.len(), WINDOW_CAP);
        assert_eq!(w.events.front(), Some(&(1_045 * MS, 45)));
        assert_eq!(
            w.figures(1_300 * MS),
            WindowFigures {
                fps_milli: 1_000_000,
                window_ms: 255,
                // Ranks ceil(256 * 0.50) = 128 and ceil(256 * 0.99) = 254.
                latency_p50_ns: 45 + 127,
                latency_p99_ns: 45 + 253,
                updated_ns: 1_300 * MS,
            }
        );
    }

    /// Events at the same instant span no time: no rate (not an infinite
    /// one), but their latencies count.
    #[test]
    fn events_at_one_instant_have_no_rate() {
        let mut w = RateWindow::new();
        w.record(5 * MS, 10);
        w.record(5 * MS, 30);
        w.record(5 * MS, 20);
        assert_eq!(
            w.figures(6 * MS),
            WindowFigures {
                fps_milli: 0,
                window_ms: 0,
                latency_p50_ns: 20,
                latency_p99_ns: 30,
                updated_ns: 6 * MS,
            }
        );
        let one = {
            let mut w = RateWindow::new();
            w.record(5 * MS, 10);
            w.figures(5 * MS)
        };
        assert_eq!(
            (one.fps_milli, one.latency_p50_ns, one.latency_p99_ns),
            (0, 10, 10)
        );
        assert_eq!(RateWindow::new().figures(7), WindowFigures::default());
    }

    /// `clear` forgets the events and the store throttle: the next event
    /// is stored at once, with figures of its own.
    #[test]
    fn clear_starts_a_new_window() {
        let mut w = RateWindow::new();
        for i in 0..3u64 {
            w.record(1_000 * MS + i * 100 * MS, 5);
        }
        w.clear();
        assert_eq!(
            w.record(1_250 * MS, 7),
            Some(WindowFigures {
                fps_milli: 0,
                window_ms: 0,
                latency_p50_ns: 7,
                latency_p99_ns: 7,
                updated_ns: 1_250 * MS,
            })
        );
    }
}
