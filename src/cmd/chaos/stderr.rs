//! What chaos reads from its consumers' stderr: each line classified
//! (a bad frame, a fork check's verdict), and the counters kept from them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the consumers' stderr readers keep.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) bad: AtomicU64,
    pub(super) forks: AtomicU64,
    pub(super) fork_failures: AtomicU64,
}

/// What a line a verify consumer wrote to stderr tells chaos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StderrLine {
    /// The consumer saw a frame whose pixels were not the ones published.
    BadFrame,
    /// A fork check (`consume --fork-check-on-usr1`) passed.
    ForkPassed,
    /// A fork check failed.
    ForkFailed,
    /// Anything else (log lines).
    Other,
}

impl StderrLine {
    /// Classifies one stderr line of a verify consumer: "bad frame"
    /// anywhere in it (it is a log line with a prefix), the fork check's
    /// verdict at its start.
    pub(super) fn classify(line: &str) -> Self {
        if line.contains("bad frame") {
            Self::BadFrame
        } else if line.starts_with("fork check passed") {
            Self::ForkPassed
        } else if line.starts_with("fork check failed") {
            Self::ForkFailed
        } else {
            Self::Other
        }
    }
}

impl Counters {
    /// Counts a line of kind `kind`; returns whether it finished a fork
    /// check (passed or failed).
    pub(super) fn count(&self, kind: StderrLine) -> bool {
        match kind {
            StderrLine::BadFrame => {
                self.bad.fetch_add(1, Ordering::Relaxed);
                false
            }
            StderrLine::ForkPassed => {
                self.forks.fetch_add(1, Ordering::Relaxed);
                true
            }
            StderrLine::ForkFailed => {
                self.forks.fetch_add(1, Ordering::Relaxed);
                self.fork_failures.fetch_add(1, Ordering::Relaxed);
                true
            }
            StderrLine::Other => false,
        }
    }
}
