//! The report of a chaos run and its printing.

use serde::Serialize;

/// What `chaos` reports.
#[derive(Debug, Default, Serialize)]
pub(super) struct ChaosReport {
    pub(super) seed: u64,
    pub(super) seconds: f64,
    pub(super) frames_published: u64,
    pub(super) frames_verified: u64,
    pub(super) bad_frames: u64,
    pub(super) consumer_kills: u64,
    pub(super) kills_while_pinned: u64,
    pub(super) stops: u64,
    pub(super) producer_restarts: u64,
    pub(super) reclaims_timed: u64,
    pub(super) worst_reclaim_ms: f64,
    pub(super) unreclaimed: u64,
    pub(super) worst_publish_gap_ms: f64,
    pub(super) reattach_failures: u64,
    /// Each re-attach failure: the consumer, the producer instance and the
    /// deadline it missed.
    pub(super) reattach_failed: Vec<String>,
    /// `--reattach-timeout`: seconds after a producer restart by which every
    /// running consumer must show a frame of the new producer.
    pub(super) reattach_timeout_s: f64,
    /// The longest a consumer took to show a frame of a restarted producer
    /// (as seen between the run's events: an upper bound).
    pub(super) worst_reattach_ms: f64,
    /// The kills whose entries were never reclaimed: name, entry, generation.
    pub(super) unreclaimed_entries: Vec<String>,
    /// `--reclaim-timeout`: seconds the run waits after its last event for
    /// the reclaims still pending; an entry still held when the run stops is
    /// unreclaimed.
    pub(super) reclaim_timeout_s: f64,
    pub(super) namespaces: bool,
    pub(super) forks_requested: u64,
    pub(super) forks: u64,
    pub(super) fork_failures: u64,
    pub(super) leftovers: Vec<String>,
}

impl ChaosReport {
    /// Whether the run failed: a bad frame, a consumer that did not
    /// re-attach, a pin never reclaimed, a failed fork check (or none at
    /// all although `forks_wanted`), something left behind, or no frame
    /// verified at all.
    pub(super) fn failed(&self, forks_wanted: bool) -> bool {
        self.bad_frames > 0
            || self.reattach_failures > 0
            || self.unreclaimed > 0
            || self.fork_failures > 0
            || (forks_wanted && self.forks == 0)
            || !self.leftovers.is_empty()
            || self.frames_verified == 0
    }
}

/// Prints the report as a table.
pub(super) fn print_report(r: &ChaosReport) {
    let rows = vec![
        vec!["seconds".to_owned(), format!("{:.1}", r.seconds)],
        vec!["frames published".into(), r.frames_published.to_string()],
        vec!["frames verified".into(), r.frames_verified.to_string()],
        vec!["bad frames".into(), r.bad_frames.to_string()],
        vec![
            "consumer kills (while pinned)".into(),
            format!("{} ({})", r.consumer_kills, r.kills_while_pinned),
        ],
        vec!["consumer stops".into(), r.stops.to_string()],
        vec!["producer restarts".into(), r.producer_restarts.to_string()],
        vec![
            "worst reclaim after kill".into(),
            format!(
                "{:.1} ms over {} timed",
                r.worst_reclaim_ms, r.reclaims_timed
            ),
        ],
        vec![
            "pins never reclaimed".into(),
            format!(
                "{} (deadline {} s after the last event)",
                r.unreclaimed, r.reclaim_timeout_s
            ),
        ],
        vec![
            "worst publish gap".into(),
            format!("{:.1} ms", r.worst_publish_gap_ms),
        ],
        vec![
            "worst re-attach after restart".into(),
            format!("{:.1} ms", r.worst_reattach_ms),
        ],
        vec![
            "re-attach failures".into(),
            format!(
                "{} (deadline {} s after each restart)",
                r.reattach_failures, r.reattach_timeout_s
            ),
        ],
        vec![
            "forks (failed)".into(),
            format!(
                "{} of {} asked ({})",
                r.forks, r.forks_requested, r.fork_failures
            ),
        ],
        vec!["namespaces".into(), r.namespaces.to_string()],
        vec![
            "leftovers".into(),
            if r.leftovers.is_empty() {
                "none".into()
            } else {
                r.leftovers.join(", ")
            },
        ],
        vec!["seed".into(), r.seed.to_string()],
    ];
    print!("{}", crate::report::table(&["chaos", "result"], &rows));
}

#[cfg(test)]
mod tests {
    use super::ChaosReport;

    /// A clean run: frames verified, nothing else.
    fn clean() -> ChaosReport {
        ChaosReport {
            frames_verified: 1,
            forks: 1,
            ..ChaosReport::default()
        }
    }

    #[test]
    fn a_clean_report_passes() {
        assert!(!clean().failed(false));
        assert!(!clean().failed(true));
    }

    #[test]
    fn each_failure_alone_fails_the_run() {
        type Spoil = fn(&mut ChaosReport);
        let cases: [(&str, Spoil); 7] = [
            ("bad frame", |r| r.bad_frames = 1),
            ("re-attach failure", |r| r.reattach_failures = 1),
            ("unreclaimed", |r| r.unreclaimed = 1),
            ("fork failure", |r| r.fork_failures = 1),
            ("leftover", |r| {
                r.leftovers.push("/dev/shm/framebus.x".into())
            }),
            ("nothing verified", |r| r.frames_verified = 0),
            ("no fork although asked", |r| r.forks = 0),
        ];
        for (what, spoil) in cases {
            let mut r = clean();
            spoil(&mut r);
            assert!(r.failed(true), "{what}");
        }
    }

    #[test]
    fn no_fork_fails_only_when_forks_were_asked() {
        let r = ChaosReport {
            forks: 0,
            ..clean()
        };
        assert!(!r.failed(false));
        assert!(r.failed(true));
    }
}
