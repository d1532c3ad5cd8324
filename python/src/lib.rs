//! `framebus._framebus`: the Python binding of framebus — the consumer, and
//! a producer (`producer.rs`, `producer_state.rs`, `slot.rs`) for
//! publishing from Python.
//!
//! The protocol is implemented once, in `framebus-consumer`; this module only
//! adapts it to Python:
//!
//! * [`Consumer`] wraps the Rust consumer. A blocking wait releases the GIL
//!   and runs in slices of `consumer::WAIT_SLICE`, checking for signals
//!   between slices, so Ctrl-C interrupts a waiting consumer promptly.
//! * [`FramePin`] owns one pinned Rust `Frame<'static>`. It is the `.base` of
//!   every numpy view of that frame, so Python's reference counting keeps the
//!   pin exactly as long as the last view: the producer cannot rewrite a slot
//!   that a live view shows.
//! * [`Frame`] is what Python code holds: the frame's metadata and a reference
//!   to its `FramePin`. `release()` (also called by the iterator when it
//!   advances, and by `with frame:`) drops that reference; the pin goes as
//!   soon as no view holds it either. A released frame refuses to hand out
//!   new views.
//!
//! * `consumer.rs` holds [`Consumer`] (and its wait loop), `errors.rs` the
//!   mapping of Rust errors to the exceptions of `framebus._errors`,
//!   `frame.rs` [`Frame`] and [`FramePin`] (arrays shaped by the pixel
//!   format), `inspect.rs` `framebus.inspect`, `arrays.rs` the producer's
//!   array checks and copies; this file only the module function.
//!
//! Errors are raised as the exception classes of `framebus._errors` (all
//! derived from `framebus.FramebusError`), with the Rust `Display` text of
//! the error as message: the same text the CLI prints.

use pyo3::prelude::*;

mod arrays;
mod consumer;
mod errors;
mod frame;
mod inspect;
mod producer;
mod producer_state;
mod slot;

use consumer::Consumer;
use frame::{Frame, FramePin};

/// The native part of the ``framebus`` package; import ``framebus`` instead.
#[pymodule]
fn _framebus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Consumer>()?;
    m.add_class::<Frame>()?;
    m.add_class::<FramePin>()?;
    m.add_class::<producer_state::Producer>()?;
    m.add_class::<slot::SlotBuffer>()?;
    m.add_function(wrap_pyfunction!(inspect::inspect, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
