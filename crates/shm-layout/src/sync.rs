//! Atomics shim: the real `std` atomics in normal builds, `loom`'s under
//! `--cfg loom`, so the pin protocol is written once and model-checked as is.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
