//! Removing what a crashed producer left behind: its shared memory object
//! and its consumers' FIFOs — only when no producer holds the bus's lock.

use std::path::PathBuf;

use shm_layout::BusName;

use crate::bus::remove_stale;
use crate::error::ProducerError;
use crate::sys;

/// What [`clean`] found for one bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanOutcome {
    /// A live producer holds the bus: nothing was touched.
    Live {
        /// The pid in the bus's header (0 if unreadable).
        pid: u32,
    },
    /// The bus was stale; these were removed.
    Removed {
        /// The shared memory object removed, if there was one.
        shm: Option<String>,
        /// The pid of the producer that left it (0 if unknown).
        pid: u32,
        /// FIFOs removed.
        fifos: Vec<PathBuf>,
        /// The lock object a killed producer left, removed with the lock.
        lock: Option<String>,
    },
}

/// Removes bus `bus`'s leftovers if its producer is gone (nobody holds the
/// bus's lock). Another user's object or a foreign object is refused.
pub fn clean(bus: &BusName) -> Result<CleanOutcome, ProducerError> {
    let root = sys::runtime_root();
    // Taking the lock creates its object if it is missing, and releasing it
    // removes the object: it was a leftover only if it was there before.
    let lock_path = format!("/dev/shm{}", bus.lock_name());
    let had_lock = std::path::Path::new(&lock_path).exists();
    let Some(lock) =
        sys::lock_bus(bus).map_err(ProducerError::os(format!("cannot lock bus {bus}")))?
    else {
        return Ok(CleanOutcome::Live {
            pid: crate::producer::live_producer_pid(bus),
        });
    };
    let removed = remove_stale(bus, &bus.trigger_dir(&root))?;
    let (shm, pid) = match removed.shm {
        Some((path, _, pid)) => (Some(path), pid),
        None => (None, 0),
    };
    drop(lock);
    Ok(CleanOutcome::Removed {
        shm,
        pid,
        fifos: removed.fifos,
        lock: had_lock.then_some(lock_path),
    })
}

/// Names of every bus with an object in /dev/shm or a trigger directory of
/// this user, valid or not (invalid names are skipped).
pub fn buses_on_machine() -> Vec<BusName> {
    sys::bus_names_on_machine(&sys::runtime_root())
        .iter()
        .filter_map(|n| BusName::new(n).ok())
        .collect()
}
