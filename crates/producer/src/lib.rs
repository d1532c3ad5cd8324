//! The framebus producer: creates a bus, writes each frame once into a free
//! slot, publishes it and triggers every consumer without ever waiting on
//! one.
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
mod source;
use framebus_platform as sys;

pub use bgr::BgrWriter;
pub use clean::{buses_on_machine, clean, CleanOutcome};
pub use error::ProducerError;
pub use fake::FakeSource;
pub use open::{open_source, SourceOptions, OPENCV_ENABLED};
/// The OpenCV bindings this crate was built with (feature `opencv`), so a
/// program uses the very same version (tests write videos with it).
#[cfg(feature = "opencv")]
pub use opencv;
#[cfg(feature = "opencv")]
pub use opencv_source::{CameraRequest, OpenCvSource};
pub use producer::{
    run, run_source, stop_on_signals, Producer, ProducerConfig, ProducerStats, RunOptions,
    HOUSEKEEPING_INTERVAL,
};
pub use registry::{trigger_message, TRIGGER_LEN};
pub use source::{Captured, FrameSource, SlotWriter, SourceError, SourceSpec, SourceTimings};
