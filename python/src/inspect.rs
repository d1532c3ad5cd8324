//! `framebus.inspect(bus)`: a bus's header and tables as a dict, read
//! without registering (what `framebus inspect --json` prints).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;
use shm_layout::BusName;

use crate::errors::consumer_error;

/// A snapshot of bus ``bus`` read straight from shared memory, without
/// registering: the same figures as ``framebus inspect --bus BUS --json``
/// (``producer``, ``geometry``, ``latest``, ``slots``, ``consumers``,
/// ``bridges``), field for field, with the same types.
#[pyfunction]
pub(crate) fn inspect<'py>(py: Python<'py>, bus: &str) -> PyResult<Bound<'py, PyDict>> {
    let bus_name = BusName::new(bus).map_err(|e| consumer_error(py, e.into()))?;
    let (s, bridges) = py
        .detach(|| {
            framebus_consumer::inspect(&bus_name).map(|s| {
                // Counters of `framebus bridge` ends on this bus: the files
                // `framebus inspect` reads (beside the trigger directories).
                (s, framebus_bridge::stats::read_stats(&bus_name))
            })
        })
        .map_err(|e| consumer_error(py, e))?;
    let d = PyDict::new(py);
    d.set_item("bus", &s.bus)?;
    d.set_item("instance_id", format!("{:016x}", s.instance_id))?;
    let producer = PyDict::new(py);
    producer.set_item("pid", s.producer_pid)?;
    producer.set_item("alive", s.producer_alive)?;
    producer.set_item("state", &s.producer_state)?;
    producer.set_item("frames_published", s.frames_published)?;
    producer.set_item("heartbeat_age_ms", s.heartbeat_age_ms)?;
    producer.set_item("last_publish_us", s.last_publish_us)?;
    producer.set_item("publish_fps", s.publish_fps)?;
    d.set_item("producer", producer)?;
    let geometry = PyDict::new(py);
    geometry.set_item("width", s.width)?;
    geometry.set_item("height", s.height)?;
    geometry.set_item("stride", s.stride)?;
    geometry.set_item("pixel_format", s.format.name())?;
    geometry.set_item("pixel_format_code", s.format.code())?;
    geometry.set_item("channels", s.format.channels())?;
    geometry.set_item("bytes_per_pixel", s.format.bytes_per_pixel())?;
    geometry.set_item("significant_bits", s.significant_bits)?;
    geometry.set_item("slot_count", s.slot_count)?;
    geometry.set_item("max_consumers", s.max_consumers)?;
    geometry.set_item("pins_per_consumer", s.pins_per_consumer)?;
    geometry.set_item("nominal_fps", s.nominal_fps)?;
    geometry.set_item("total_size", s.total_size)?;
    d.set_item("geometry", geometry)?;
    d.set_item("trigger_dir", &s.trigger_dir)?;
    match s.latest {
        Some((seq, slot)) => {
            let latest = PyDict::new(py);
            latest.set_item("seq", seq)?;
            latest.set_item("slot", slot)?;
            d.set_item("latest", latest)?;
        }
        None => d.set_item("latest", py.None())?,
    }
    let slots = PyList::empty(py);
    for x in &s.slots {
        let e = PyDict::new(py);
        e.set_item("index", x.index)?;
        e.set_item("seq", x.seq)?;
        e.set_item("pins", x.pins)?;
        e.set_item("writing", x.writing)?;
        e.set_item("latest", x.latest)?;
        slots.append(e)?;
    }
    d.set_item("slots", slots)?;
    let consumers = PyList::empty(py);
    for c in &s.consumers {
        let e = PyDict::new(py);
        e.set_item("index", c.index)?;
        e.set_item("state", &c.state)?;
        e.set_item("alive", c.alive)?;
        e.set_item("pid", c.pid)?;
        e.set_item("generation", c.generation)?;
        e.set_item("name", &c.name)?;
        e.set_item("frames", c.frames)?;
        e.set_item("coalesced", c.coalesced)?;
        e.set_item("last_latency_us", c.last_latency_ns as f64 / 1e3)?;
        e.set_item("last_seq", c.last_seq)?;
        e.set_item("max_fps", c.max_fps)?;
        e.set_item("pinned_slots", c.pinned_slots.clone())?;
        e.set_item("skipped", c.skipped)?;
        e.set_item("fps", c.fps)?;
        e.set_item("window_ms", c.window_ms)?;
        e.set_item("latency_p50_us", c.latency_p50_ns as f64 / 1e3)?;
        e.set_item("latency_p99_us", c.latency_p99_ns as f64 / 1e3)?;
        e.set_item("window_age_ms", c.window_age_ms)?;
        consumers.append(e)?;
    }
    d.set_item("consumers", consumers)?;
    let list = PyList::empty(py);
    for b in &bridges {
        list.append(bridge(py, b)?)?;
    }
    d.set_item("bridges", list)?;
    if !s.producer_alive {
        d.set_item("clean", format!("framebus clean --bus {}", s.bus))?;
    }
    Ok(d)
}

/// One bridge's stats as `framebus inspect --json` prints them: every field
/// of its stats file (serialised the same way), `alive` and `age_ms`.
fn bridge<'py>(py: Python<'py>, b: &framebus_bridge::StatsReport) -> PyResult<Bound<'py, PyAny>> {
    let mut v = serde_json::to_value(&b.stats).map_err(|e| {
        pyo3::exceptions::PyValueError::new_err(format!("bridge stats {}: {e}", b.path.display()))
    })?;
    if let Some(o) = v.as_object_mut() {
        o.insert("alive".into(), Value::from(b.alive));
        o.insert("age_ms".into(), Value::from(b.age_ms));
    }
    json_to_py(py, &v)
}

/// A JSON value as the Python object `json.loads` would make of its text:
/// integers stay `int`, other numbers become `float`.
fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else {
                // Every JSON number is one of the three.
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, item) in map {
                d.set_item(k, json_to_py(py, item)?)?;
            }
            d.into_any()
        }
    })
}
