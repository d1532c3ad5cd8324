//! What the trigger pipes report, the same on every OS: opening a
//! consumer's pipe for writing, one trigger write, a drain, a wait.

use std::fs::File;
use std::io;
use std::path::Path;

use shm_layout::trigger::Decoder;

/// What opening a consumer's FIFO found.
#[derive(Debug)]
pub enum FifoOpen {
    /// Open for writing.
    Open(File),
    /// No reader (ENXIO) or no FIFO (ENOENT): the consumer is gone.
    NoReader,
    /// Something that is not this user's FIFO is at the path.
    Foreign(String),
    /// Opening failed for a reason that says nothing about the consumer
    /// (out of descriptors, memory...): try again later.
    Failed(io::Error),
}

/// What became of one trigger write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerWrite {
    /// Written whole.
    Sent,
    /// The pipe is full (the consumer is behind), or the write failed in a
    /// way that says nothing about the consumer.
    Full,
    /// The reader is gone (EPIPE).
    Gone,
}

/// Why a FIFO could not be created.
#[derive(Debug)]
pub enum FifoError {
    /// Something other than a FIFO is at the path.
    Occupied(&'static str),
    /// An OS call failed.
    Io(io::Error),
}

/// What one drain of the trigger pipe read: whole well-formed trigger
/// messages, and malformed ones (bad flags, or a partial message left when
/// the pipe ran dry: the producer never writes one, so another writer did).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainCounts {
    /// Well-formed trigger messages read.
    pub triggers: u64,
    /// Malformed messages read and ignored.
    pub malformed: u64,
}

/// What a drain of the trigger pipe found, with what it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Read everything there was (maybe nothing).
    Empty(DrainCounts),
    /// No writer: the producer closed its end or never opened it (after
    /// reading what was left).
    NoWriter(DrainCounts),
}

impl Drained {
    /// What the drain read.
    pub fn counts(&self) -> DrainCounts {
        match *self {
            Self::Empty(c) | Self::NoWriter(c) => c,
        }
    }

    /// Whether the pipe had no writer ([`Drained::NoWriter`]).
    pub fn no_writer(&self) -> bool {
        matches!(self, Self::NoWriter(_))
    }
}

/// What poll said about the trigger pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Triggers are waiting.
    Readable,
    /// The writer closed its end.
    HungUp,
    /// Nothing happened before the timeout.
    Timeout,
}

/// Ends a drain: finishes `decoder` over what was read, logs malformed
/// messages once, and says whether a writer was there.
pub(crate) fn finish_drain(mut decoder: Decoder, pipe: &Path, no_writer: bool) -> Drained {
    decoder.finish();
    let counts = DrainCounts {
        triggers: decoder.well_formed(),
        malformed: decoder.malformed(),
    };
    if counts.malformed > 0 {
        tracing::debug!(
            pipe = %pipe.display(),
            malformed = counts.malformed,
            triggers = counts.triggers,
            bytes = decoder.bytes_fed(),
            "ignored malformed trigger messages (first: {})",
            decoder.first_error().map_or_else(String::new, |e| e.to_string())
        );
    }
    if no_writer {
        Drained::NoWriter(counts)
    } else {
        Drained::Empty(counts)
    }
}
