//! Everything that can go wrong for a consumer, each with what to do.

use std::io;
use std::path::PathBuf;

use shm_layout::{BusNameError, LayoutError};

/// Why a consumer could not attach or deliver a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The bus name is malformed.
    #[error(transparent)]
    BusName(#[from] BusNameError),
    /// No shared memory object has the bus's name.
    #[error("no bus named {bus:?}: /dev/shm/framebus.{bus} does not exist; start a producer first (framebus produce --bus {bus})")]
    BusNotFound {
        /// The bus name.
        bus: String,
    },
    /// The bus exists but its producer is gone or stopping.
    #[error("bus {bus:?} has no running producer (process {pid} is gone or stopping); start a producer (framebus produce --bus {bus})")]
    NotRunning {
        /// The bus name.
        bus: String,
        /// The producer pid in the header.
        pid: u32,
    },
    /// The object is not a usable bus.
    #[error("bus {bus:?}: {source}")]
    Layout {
        /// The bus name.
        bus: String,
        /// What validation found.
        source: LayoutError,
    },
    /// Every consumer entry is taken.
    #[error("all {max} consumer entries of bus {bus:?} are taken; stop a consumer or restart the producer with a larger --max-consumers")]
    BusFull {
        /// The bus name.
        bus: String,
        /// Its consumer entries.
        max: u32,
    },
    /// The consumer already holds as many frames as the bus allows.
    #[error("this consumer already holds {held} frame(s), its budget on this bus; drop a frame before taking another, or restart the producer with --pins-per-consumer {}", held + 1)]
    PinBudgetExhausted {
        /// Frames held (= the budget).
        held: u32,
    },
    /// The FIFO path is taken by something else.
    #[error("cannot create the trigger FIFO {path}: {what} is in the way; remove it")]
    FifoPathOccupied {
        /// The path.
        path: PathBuf,
        /// What is there.
        what: &'static str,
    },
    /// Any other OS call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// The consumer was used in a forked child of the process that attached
    /// it: its registration, pins and trigger pipe belong to the parent.
    #[error("this consumer of bus {bus:?} belongs to the process that attached it, and this is a forked child of it; attach a new consumer in the child")]
    Forked {
        /// The bus name.
        bus: String,
    },
    /// The bus object or its trigger directory belongs to someone this
    /// process does not trust, or everyone may write it.
    #[error("refusing {path}: {why} (owner uid {owner}, mode {mode:04o}); a bus is used only if this user or a trusted one owns it — to trust its owner, set FRAMEBUS_TRUST_OWNERS={owner} (or the library's ConsumerConfig::trusted_owners)")]
    Untrusted {
        /// The object or directory.
        path: String,
        /// Its owner.
        owner: u32,
        /// Its mode bits.
        mode: u32,
        /// What is wrong.
        why: &'static str,
    },
    /// `FRAMEBUS_TRUST_OWNERS` holds something that is not a uid.
    #[error("FRAMEBUS_TRUST_OWNERS holds {item:?}, which is not a numeric uid; list uids separated by commas (see `id -u USER`)")]
    BadTrustList {
        /// The offending item.
        item: String,
    },
    /// The bus object was truncated while this consumer had it mapped
    /// (another process with write access shrank it). The process survives:
    /// the mapping now shows zero pages, frames held from it are garbage,
    /// and the next call waits for the next producer.
    #[error("bus {bus:?} was truncated while mapped (another process shrank /dev/shm/framebus.{bus}); frames held from it are invalid; waiting for the producer to re-create the bus")]
    BusTruncated {
        /// The bus name.
        bus: String,
    },
    /// An algorithm failed.
    #[error("algorithm {name} failed: {message}")]
    Algorithm {
        /// The algorithm's name.
        name: String,
        /// Its message.
        message: String,
    },
}

impl ConsumerError {
    pub(crate) fn os(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Os { what, source }
    }

    /// Whether waiting may cure this error (no bus yet, producer gone, bus
    /// being initialised or full): what a re-attaching consumer retries on.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::BusNotFound { .. }
                | Self::NotRunning { .. }
                | Self::BusFull { .. }
                | Self::Layout {
                    source: LayoutError::NotReady
                        | LayoutError::TooSmall { .. }
                        | LayoutError::Truncated { .. },
                    ..
                }
        )
    }
}
