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

mod bus;
mod clean;
mod error;
mod fake;
mod producer;
mod registry;
mod source;
mod sys;

pub use clean::{buses_on_machine, clean, CleanOutcome};
pub use error::ProducerError;
pub use fake::FakeSource;
pub use producer::{
    run, stop_on_signals, Producer, ProducerConfig, ProducerStats, RunOptions,
    HOUSEKEEPING_INTERVAL,
};
pub use registry::{trigger_message, TRIGGER_LEN};
pub use source::{Captured, FrameSource, SlotWriter, SourceError};
