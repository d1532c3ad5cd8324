//! The framebus consumer: attaches to a bus, blocks on its own trigger pipe,
//! pins the newest frame and hands it, zero-copy, to algorithm code.
//!
//! ```no_run
//! use framebus_consumer::{Consumer, ConsumerConfig};
//! use shm_layout::BusName;
//!
//! let mut consumer = Consumer::attach(ConsumerConfig::new(BusName::new("cam0")?))?;
//! while let Some(frame) = consumer.next_frame(None)? {
//!     let first_row: &[u8] = frame.row(0); // the shared slot itself
//!     println!("frame {} starts with {}", frame.seq(), first_row[0]);
//! } // dropping the frame releases its pin
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod algorithm;
mod attach;
mod bgr;
mod consumer;
mod copy;
mod error;
mod frame;
mod inspect;
mod trust;
use framebus_platform as sys;
mod view;

pub use algorithm::{builtin, Algorithm, AlgorithmSummary};
pub use attach::BusInfo;
pub use bgr::{read_bgr, BgrError, BgrFrame, BGR_MAX_ATTEMPTS};
pub use consumer::{Consumer, ConsumerConfig, LIVENESS_INTERVAL};
pub use copy::{copy_latest_frame, CopyError, FrameCopy, COPY_MAX_ATTEMPTS};
pub use error::ConsumerError;
pub use frame::Frame;
pub use inspect::{inspect, BusSnapshot, ConsumerSnapshot, SlotSnapshot};
pub use trust::{Trust, TRUST_OWNERS_VAR};
pub use view::{FormatError, FrameView, U16Rows};
