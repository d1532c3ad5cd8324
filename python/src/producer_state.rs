//! The state of a `framebus.Producer`, which both its Python methods
//! (`producer.rs`) and the zero-copy slots it hands out (`slot.rs`) use:
//!
//! * [`Producer`] itself: the bus's geometry, the [`SharedCore`] (the Rust
//!   producer and the slot a `SlotBuffer` holds, behind a mutex that the
//!   housekeeping thread and every `SlotBuffer` share), the [`Figures`] the
//!   getters show, and the process that created it;
//! * the checks both make before touching the core ([`Producer::in_child`],
//!   [`Producer::check_process`]) and the errors both raise
//!   ([`producer_error`], [`Producer::closed_error`],
//!   [`Producer::forked_error`]);
//! * shutdown ([`Producer::finish_close`], also on drop): the Rust producer
//!   goes with the last holder of the core, so that a slot's numpy view
//!   never outlives the mapping.
//!
//! The Python face (``Producer(...)``, ``publish``, ``slot()``, the getters)
//! is `producer.rs`'s `#[pymethods]`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use framebus_producer::{PendingFrame, Producer as RustProducer, ProducerError, ProducerStats};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use shm_layout::PixelFormat;

use crate::errors::framebus_error;

/// The monotonic clock of capture times, in nanoseconds (`CLOCK_MONOTONIC`
/// on Linux; the same clock every framebus process uses).
pub(crate) fn monotonic_ns() -> u64 {
    framebus_producer::monotonic_ns()
}

/// The Python exception for a producer error; its message is the error's
/// `Display`, as the CLI prints it.
pub(crate) fn producer_error(py: Python<'_>, e: ProducerError) -> PyErr {
    let message = e.to_string();
    let build = || -> PyResult<PyErr> {
        Ok(match &e {
            ProducerError::BusBusy { bus, pid } => framebus_error(
                py,
                "BusBusy",
                message.clone(),
                &[
                    ("bus", bus.as_str().into_bound_py_any(py)?),
                    ("pid", pid.into_bound_py_any(py)?),
                ],
            ),
            ProducerError::Layout(_) => PyValueError::new_err(message.clone()),
            ProducerError::Forked { bus } => framebus_error(
                py,
                "ForkedProducerError",
                message.clone(),
                &[("bus", bus.as_str().into_bound_py_any(py)?)],
            ),
            ProducerError::BusTruncated { bus } => framebus_error(
                py,
                "BusTruncated",
                message.clone(),
                &[("bus", bus.as_str().into_bound_py_any(py)?)],
            ),
            ProducerError::Os { source, .. } => {
                let errno = source.raw_os_error().into_bound_py_any(py)?;
                framebus_error(py, "FramebusOSError", message.clone(), &[("errno", errno)])
            }
            _ => framebus_error(py, "FramebusError", message.clone(), &[]),
        })
    };
    build().unwrap_or_else(|err| err)
}

/// The Rust producer and the slot `slot()` holds, if any.
pub(crate) struct Core {
    /// `None` once closed and no `SlotBuffer` view needed the mapping any
    /// more: dropping it releases the bus's lock and unmaps it.
    pub(crate) producer: Option<RustProducer>,
    /// The slot a `SlotBuffer` holds between its `__enter__` and `__exit__`.
    pub(crate) pending: Option<PendingFrame>,
    /// `close()` ran: the bus is shut down (its mapping lives on until the
    /// last `SlotBuffer` view lets go of this core).
    pub(crate) closed: bool,
}

impl Core {
    /// The producer, unless closed.
    pub(crate) fn live(&mut self) -> Option<&mut RustProducer> {
        if self.closed {
            None
        } else {
            self.producer.as_mut()
        }
    }
}

/// What the getters (`closed`, `frames`, `publish_ns_total`, `repr`) show,
/// kept outside the core's mutex and updated by whoever changes it: a
/// getter never waits for a publish in another thread, and never blocks in
/// a forked child, where the mutex may have been held at the fork by a
/// thread (the housekeeping one, or a Python thread publishing) that does
/// not exist there.
#[derive(Default)]
pub(crate) struct Figures {
    pub(crate) closed: AtomicBool,
    pub(crate) frames: AtomicU64,
    pub(crate) publish_ns_total: AtomicU64,
}

impl Figures {
    /// Called with the core locked, after a publish.
    pub(crate) fn record(&self, stats: &ProducerStats) {
        self.frames.store(stats.frames, Ordering::Relaxed);
        self.publish_ns_total
            .store(stats.publish_ns_total, Ordering::Relaxed);
    }
}

pub(crate) type SharedCore = Arc<Mutex<Core>>;

pub(crate) fn lock(core: &SharedCore) -> MutexGuard<'_, Core> {
    // Never held across Python code; a poisoned lock still holds a valid
    // producer (a panic inside the Rust producer is a bug, not a state).
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Publishes frames onto a bus from Python.
///
/// ``Producer(bus, width, height, format="gray8", fps=0.0, max_consumers=8,
/// pins_per_consumer=2, significant_bits=None)`` creates the bus (taking
/// over a stale one, refusing one whose producer lives: :class:`BusBusy`).
/// ``format`` is ``"gray8"``, ``"gray16"``, ``"bgr8"`` or ``"rgb8"``;
/// ``significant_bits`` (gray16 only, e.g. 12 for a mono12 camera) is
/// recorded in the header; ``fps`` is the nominal rate written there (you
/// pace the loop). Use it as a context manager: the bus is removed when the
/// block ends (or by ``close()``), and consumers see the producer stop.
///
/// Frames go in with ``publish(array)`` (one copy) or, zero-copy, with
/// ``with producer.slot() as buf:`` (fill ``buf`` in place; published when
/// the block ends, discarded if it raises).
#[pyclass(frozen, module = "framebus", name = "Producer")]
pub struct Producer {
    pub(crate) core: SharedCore,
    pub(crate) bus: String,
    pub(crate) format: PixelFormat,
    pub(crate) significant_bits: u8,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) stride: u32,
    /// Stops the housekeeping thread.
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) thread: Mutex<Option<JoinHandle<()>>>,
    /// The process that created it (a forked child has no housekeeping
    /// thread to join).
    pub(crate) pid: u32,
    /// What the getters show.
    pub(crate) figures: Figures,
}

impl Producer {
    /// Whether this is a forked child of the process that created the
    /// producer. There, nothing may lock the core: its mutex may be held
    /// for ever by a thread of the parent's that was not copied.
    pub(crate) fn in_child(&self) -> bool {
        std::process::id() != self.pid
    }

    pub(crate) fn forked_error(&self, py: Python<'_>) -> PyErr {
        let build = || -> PyResult<PyErr> {
            Ok(framebus_error(
                py,
                "ForkedProducerError",
                format!(
                    "the producer of bus {:?} belongs to the process that created it, not to this forked child; create a new framebus.Producer here",
                    self.bus
                ),
                &[("bus", self.bus.as_str().into_bound_py_any(py)?)],
            ))
        };
        build().unwrap_or_else(|e| e)
    }

    pub(crate) fn check_process(&self, py: Python<'_>) -> PyResult<()> {
        if self.in_child() {
            return Err(self.forked_error(py));
        }
        Ok(())
    }

    pub(crate) fn closed_error(&self, py: Python<'_>) -> PyErr {
        framebus_error(
            py,
            "ProducerClosed",
            format!(
                "the producer of bus {:?} is closed; create a new framebus.Producer",
                self.bus
            ),
            &[],
        )
    }

    /// `close()`, and what dropping the producer does: stops the
    /// housekeeping thread, discards a slot still held, shuts the bus down
    /// and drops the Rust producer unless a slot's view still needs its
    /// mapping. In a forked child it only lets go of the thread.
    pub(crate) fn finish_close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            if self.in_child() {
                // In a forked child the thread does not exist: forget its
                // handle (not even detached).
                std::mem::forget(h);
            } else {
                h.thread().unpark();
                // The thread never needs the GIL; it ends within one
                // housekeeping interval.
                let _ = h.join();
            }
        }
        if self.in_child() {
            return;
        }
        let mut core = lock(&self.core);
        let pending = core.pending.take();
        if let Some(producer) = core.producer.as_mut() {
            if let Some(p) = pending {
                producer.abort(p);
            }
            producer.shutdown();
            self.figures.record(&producer.stats());
        }
        core.closed = true;
        self.figures.closed.store(true, Ordering::Release);
        // Only this object holds the core (the housekeeping thread ended,
        // no `slot()` view lives): drop the Rust producer now, releasing the
        // bus's lock, so the bus can be created again at once. Otherwise it
        // goes with the last view of a slot, which needs the mapping.
        if Arc::strong_count(&self.core) == 1 {
            core.producer = None;
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.finish_close();
    }
}
