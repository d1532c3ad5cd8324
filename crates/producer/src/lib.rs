//! The framebus producer: creates a bus, writes each frame once into a free
//! slot, publishes it and triggers every consumer without ever waiting on
//! one.
//!
//! The built-in fake camera, paced at 30 fps until Ctrl-C:
//!
//! ```no_run
//! use framebus_producer::{run, FakeSource, FrameSource, Producer, ProducerConfig, RunOptions};
//! use shm_layout::BusName;
//!
//! let mut source = FakeSource::new(640, 480);
//! let (w, h) = source.size();
//! let mut producer = Producer::create(ProducerConfig::new(BusName::new("cam0")?), w, h)?;
//! let stop = framebus_producer::stop_on_signals()?;
//! run(&mut producer, &mut source, RunOptions { fps: Some(30.0), ..Default::default() }, &stop)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Your own camera
//!
//! Implement [`FrameSource`]: `size` says the frame size, `fill` writes one
//! frame straight into the slot the producer holds for it (rows
//! [`SlotWriter::stride`] bytes apart, pixels in [`SlotWriter::format`]) and
//! says when it was captured. [`run_source`] creates the bus in the format
//! of [`ProducerConfig::format`] (here 12-bit values in a gray16 bus),
//! paces, keeps consumers connected and removes the bus at the end. The
//! full program is `examples/custom_source.rs`.
//!
//! ```no_run
//! use framebus_producer::{
//!     run_source, stop_on_signals, Captured, FrameSource, ProducerConfig, RunOptions,
//!     SlotWriter, SourceError,
//! };
//! use shm_layout::{BusName, PixelFormat};
//!
//! struct Mono12 { frame: u64 }
//!
//! impl FrameSource for Mono12 {
//!     fn size(&self) -> (u32, u32) { (640, 480) }
//!
//!     fn fill(&mut self, _seq: u64, slot: &mut SlotWriter<'_>) -> Result<Captured, SourceError> {
//!         let (w, stride) = (slot.width() as usize, slot.stride() as usize);
//!         for (y, row) in slot.data().chunks_mut(stride).take(480).enumerate() {
//!             for (x, px) in row[..2 * w].chunks_exact_mut(2).enumerate() {
//!                 let v = ((x + y) as u64 + self.frame) % 4096; // a 12-bit value
//!                 px.copy_from_slice(&(v as u16).to_le_bytes());
//!             }
//!         }
//!         self.frame += 1;
//!         Ok(Captured { capture_ns: 0 /* the camera's CLOCK_MONOTONIC time */ })
//!     }
//! }
//!
//! let config = ProducerConfig::new(BusName::new("mono12")?).with_format(PixelFormat::Gray16, 12);
//! let stop = stop_on_signals()?;
//! let opts = RunOptions { fps: Some(60.0), ..Default::default() };
//! run_source(config, &mut Mono12 { frame: 0 }, opts, &stop, |p| println!("bus {:?}", p.layout()))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A program that is handed frames rather than asked for them (a vendor
//! SDK's callback) calls [`Producer::publish`] with a closure per frame, or
//! [`Producer::begin`], writes through [`Producer::writer`], and ends with
//! [`Producer::commit`] or [`Producer::abort`]; it then calls
//! [`Producer::housekeeping`] about every [`HOUSEKEEPING_INTERVAL`] while
//! no frame comes.
#![warn(missing_docs)]

mod bgr;
mod bus;
mod clean;
mod error;
mod fake;
mod open;
#[cfg(feature = "opencv")]
mod opencv_source;
mod producer;
mod registry;
mod run;
mod source;
use framebus_platform as sys;

pub use bgr::BgrWriter;
pub use clean::{buses_on_machine, clean, CleanOutcome};
pub use error::ProducerError;
pub use fake::FakeSource;
/// The monotonic clock of every framebus timestamp, in nanoseconds
/// (`CLOCK_MONOTONIC` on Linux, `QueryPerformanceCounter` on Windows).
pub use framebus_platform::monotonic_ns;
pub use open::{open_source, SourceOptions, OPENCV_ENABLED};
/// The OpenCV bindings this crate was built with (feature `opencv`), so a
/// program uses the very same version (tests write videos with it).
#[cfg(feature = "opencv")]
pub use opencv;
#[cfg(feature = "opencv")]
pub use opencv_source::{CameraRequest, OpenCvSource};
pub use producer::{
    stop_on_signals, PendingFrame, Producer, ProducerConfig, ProducerStats, HOUSEKEEPING_INTERVAL,
};
pub use registry::{trigger_message, TRIGGER_LEN};
pub use run::{run, run_source, RunOptions};
pub use source::{Captured, FrameSource, SlotWriter, SourceError, SourceSpec, SourceTimings};
