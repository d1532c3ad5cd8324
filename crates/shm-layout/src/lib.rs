//! The framebus binary contract.
//!
//! A bus is one shared memory object laid out as: a header page
//! ([`header`]), a slot table and a consumer table ([`tables`]), the debug
//! BGR slot, and `slot_count` frame slots (called gray slots for history;
//! their pixel format is in the header, [`format`]), each section page-aligned
//! ([`layout`]). [`view`] validates raw memory before anything else touches
//! it; [`pin`] is the lock-free protocol by which the producer writes slots
//! and consumers pin them, and [`unpinned`] how a reader without a consumer
//! entry copies the newest frame; [`naming`] derives every OS name from a bus name;
//! [`pattern`] is the fake camera's self-checking test pattern.
//!
//! This crate makes no OS calls: it is atomics, pointer arithmetic and pure
//! functions, shared by the producer and consumer crates and model-checked
//! with `loom` (`RUSTFLAGS="--cfg loom" cargo test -p shm-layout --release`).
#![warn(missing_docs)]

pub mod entry;
pub mod error;
pub mod format;
pub mod header;
pub mod layout;
pub mod naming;
pub mod pattern;
pub mod pin;
pub mod seqlock;
pub mod sync;
pub mod tables;
pub mod trigger;
pub mod unpinned;
#[cfg(not(loom))]
pub mod view;
pub mod window;

pub use error::LayoutError;
pub use format::PixelFormat;
pub use header::{HeaderDynamic, HeaderFixed, ProducerState};
pub use layout::{Layout, LayoutRequest};
pub use naming::{BusName, BusNameError};
pub use tables::{ConsumerEntry, ConsumerState, Owner, SlotEntry, WindowFigures};
#[cfg(not(loom))]
pub use view::ControlView;
