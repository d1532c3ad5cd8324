//! Everything that can stop a bridge, each with what to do about it.

use std::path::PathBuf;

use framebus_consumer::ConsumerError;
use framebus_producer::ProducerError;

/// A boxed error from the network layer (zenoh's own error type).
pub type NetError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a bridge could not start or had to stop. Bad payloads are not
/// errors: they are dropped and counted ([`crate::payload::PayloadError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// Another live producer owns the local bus `bridge in` should produce.
    #[error("bus {bus:?} is already produced on this host by process {pid}: `bridge in` must be the bus's only producer; stop that producer or pick another --bus")]
    BusBusy {
        /// The bus name.
        bus: String,
        /// The live producer's pid.
        pid: u32,
    },
    /// The key expression is not a valid single zenoh key.
    #[error("bad --key {key:?}: {why}")]
    BadKey {
        /// What was given.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// An endpoint is malformed or of a transport this build lacks.
    #[error("bad endpoint {endpoint:?}: {why}; write it as tcp/HOST:PORT, e.g. tcp/192.168.1.10:7447 or tcp/[::]:7447")]
    BadEndpoint {
        /// What was given.
        endpoint: String,
        /// What is wrong with it.
        why: String,
    },
    /// Neither an endpoint nor a config file says where the other end is.
    #[error("no endpoint: give --listen tcp/ADDR:PORT on one host and --connect tcp/HOST:PORT on the other (or a --config file with endpoints)")]
    NoEndpoint,
    /// The zenoh config file is unreadable or invalid.
    #[error("cannot use zenoh config file {path}: {source}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What zenoh said.
        source: NetError,
    },
    /// A zenoh operation failed (opening the session, listening...).
    #[error("{what}: {source}")]
    Net {
        /// What was being done.
        what: String,
        /// What zenoh said.
        source: NetError,
    },
    /// The local bus could not be produced.
    #[error(transparent)]
    Producer(ProducerError),
    /// The local bus could not be read.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
}

impl From<ProducerError> for BridgeError {
    fn from(e: ProducerError) -> Self {
        match e {
            // A holder without a bus object (pid 0: a producer starting or
            // stopping, `framebus clean`) keeps the producer's own message.
            ProducerError::BusBusy { bus, pid } if pid != 0 => Self::BusBusy { bus, pid },
            e => Self::Producer(e),
        }
    }
}
