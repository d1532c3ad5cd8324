//! Everything the kernel does for framebus, behind one interface: the bus
//! object (create, open, map, size, unlink), trigger pipes (the consumer's
//! reader, the producer's non-blocking writer), liveness tokens, the
//! producer's bus lock, trigger directories, clocks, fork detection and stop
//! signals.
//!
//! One module per OS implements it: `src/linux/` and `src/windows/`. `shm-layout` stays free of OS calls, and the producer and
//! consumer crates call only this crate for them, so a port implements this
//! crate's functions and nothing else.
//!
//! ## Liveness tokens
//!
//! Who is alive is the kernel's word, never a pid number: each owner (the
//! producer, each consumer entry) holds a [`token`] that the kernel drops
//! exactly when the owner's last descriptor of the bus object closes, and
//! that anyone may test without taking it. Pids stay in the tables for
//! people to read.
#![warn(missing_docs)]

mod token_id;
mod trigger_types;
pub use token_id::TokenId;
pub use trigger_types::{DrainCounts, Drained, FifoError, FifoOpen, Readiness, TriggerWrite};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

#[cfg(not(any(target_os = "linux", windows)))]
compile_error!("framebus-platform supports Linux and Windows (see src/linux/ for the interface a port implements)");
