//! The live figures `top` and `view` show: every bus the caller may read
//! (the enumeration `list` uses), each read from shared memory with
//! `inspect` — the rates the producer and the consumers keep in the bus
//! (doc/LAYOUT.md §5.2, §7), no other IPC.

use framebus_consumer::{inspect, BusSnapshot, ConsumerError, ConsumerSnapshot};
use serde_json::{json, Value};
use shm_layout::{BusName, LayoutError};

/// A producer whose heartbeat is older than this is `stopped`.
pub const STOPPED_AFTER_MS: f64 = 2000.0;

/// Inspects `bus`; `None` for what is not a readable bus: gone since it
/// was listed, another user's, or not a framebus object (logged).
pub fn read(bus: &BusName) -> Option<BusSnapshot> {
    match inspect(bus) {
        Ok(snap) => Some(snap),
        Err(ConsumerError::BusNotFound { .. }) => None,
        Err(ConsumerError::Os { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            None
        }
        Err(ConsumerError::Layout {
            source: LayoutError::NotReady,
            ..
        }) => None,
        Err(e) => {
            tracing::warn!("{bus}: left out: {e}");
            None
        }
    }
}

/// `bus` alone (an error if it cannot be read), or every readable bus.
pub fn read_buses(bus: Option<&BusName>) -> anyhow::Result<Vec<BusSnapshot>> {
    match bus {
        Some(b) => {
            let s = inspect(b).map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "cannot read bus {b}; see the buses there are with: framebus list"
                ))
            })?;
            Ok(vec![s])
        }
        None => Ok(framebus_producer::buses_on_machine()
            .iter()
            .filter_map(read)
            .collect()),
    }
}

/// `alive`, `stopped`, `stale` or `starting`, as `list` says it.
pub fn bus_state(s: &BusSnapshot) -> &'static str {
    if !s.producer_alive {
        "stale"
    } else if s.producer_state == "starting" {
        "starting"
    } else if s.producer_state == "stopping" || s.heartbeat_age_ms > STOPPED_AFTER_MS {
        "stopped"
    } else {
        "alive"
    }
}

/// The state of a consumer entry as `top` shows it: its entry state, or
/// `dead` when its owner no longer holds the entry's token.
pub fn consumer_state(c: &ConsumerSnapshot) -> String {
    if c.alive {
        c.state.clone()
    } else {
        "dead".to_owned()
    }
}

/// One consumer's live figures as JSON (rates "no limit" = 0).
pub fn consumer_json(c: &ConsumerSnapshot) -> Value {
    json!({
        "index": c.index,
        "name": c.name,
        "pid": c.pid,
        "state": c.state,
        "alive": c.alive,
        "fps": c.fps,
        "max_fps": c.max_fps,
        "frames": c.frames,
        "skipped": c.skipped,
        "coalesced": c.coalesced,
        "latency_p50_us": c.latency_p50_ns as f64 / 1e3,
        "latency_p99_us": c.latency_p99_ns as f64 / 1e3,
        "window_age_ms": c.window_age_ms,
        "pins": c.pinned_slots.len(),
        "pinned_slots": c.pinned_slots,
    })
}

/// One bus's live figures as JSON: producer, geometry, consumers.
pub fn bus_json(s: &BusSnapshot) -> Value {
    let state = bus_state(s);
    let mut v = json!({
        "bus": s.bus,
        "state": state,
        "producer_pid": s.producer_pid,
        "width": s.width,
        "height": s.height,
        "pixel_format": s.format.name(),
        "nominal_fps": s.nominal_fps,
        "publish_fps": s.publish_fps,
        "frames_published": s.frames_published,
        "heartbeat_age_ms": s.heartbeat_age_ms,
        "last_publish_us": s.last_publish_us,
        "max_consumers": s.max_consumers,
        "consumers": s.consumers.iter().map(consumer_json).collect::<Vec<_>>(),
    });
    if state == "stale" {
        v["clean"] = json!(format!("framebus clean --bus {}", s.bus));
    }
    v
}
