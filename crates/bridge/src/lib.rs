//! framebus bridge: carries a bus to other hosts over zenoh.
//!
//! `bridge out` attaches to a local bus as an ordinary consumer and
//! publishes each frame it takes (a small versioned header, then the
//! pixels, raw or lz4) under a zenoh key; `bridge in` subscribes to the key
//! and republishes every frame as the producer of a local bus, so remote
//! consumers run unchanged. Newest-frame semantics hold end to end: a slow
//! link or a slow far side drops old frames and never stalls the camera
//! host.
//!
//! Without the `zenoh` feature the crate holds what needs no network: the
//! payload format ([`payload`]), the stats files `framebus inspect` reads
//! ([`stats`]) and the far side's producing logic ([`republish`]).
//!
//! ```no_run
//! # #[cfg(feature = "zenoh")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use framebus_bridge::net::{run_in, InOptions, NetOptions};
//! use framebus_producer::ProducerConfig;
//! use shm_layout::BusName;
//!
//! let opts = InOptions {
//!     key: "framebus/cam0".into(),
//!     producer: ProducerConfig::new(BusName::new("cam0-remote")?),
//!     net: NetOptions { connect: vec!["tcp/192.168.1.10:7447".into()], ..Default::default() },
//!     duration: None,
//! };
//! let stop = framebus_producer::stop_on_signals()?;
//! let stats = run_in(&opts, &stop, |event| println!("{event:?}"))?;
//! println!("{} frames published", stats.frames_published);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "zenoh"))]
//! # fn main() {}
//! ```
#![warn(missing_docs)]

mod error;
#[cfg(feature = "zenoh")]
pub mod net;
pub mod payload;
pub mod republish;
pub mod stats;

pub use error::{BridgeError, NetError};
pub use payload::{Compression, FrameHeader, PayloadError};
pub use republish::{Outcome, Republisher};
pub use stats::{BridgeStats, Role, StatsReport};

/// Whether this build carries frames over the network (feature `zenoh`).
pub const NETWORK_ENABLED: bool = cfg!(feature = "zenoh");
