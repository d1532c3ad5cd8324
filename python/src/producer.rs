//! `framebus.Producer`: the Rust producer (`framebus-producer`) driven from
//! Python, so a camera SDK's frames can be published from a Python loop.
//!
//! * [`Producer`] owns the Rust `Producer` (in an `Arc<Mutex<Core>>`) and a
//!   housekeeping thread that connects new consumers, reclaims dead ones
//!   and refreshes the heartbeat every [`HOUSEKEEPING_INTERVAL`] while
//!   Python is not publishing — what `framebus produce`'s pacing loop does.
//!   Creation, takeover of a stale bus, refusal of a live one, shutdown and
//!   cleanup are the Rust producer's own.
//! * `publish(array)` checks the array's shape and dtype against the bus's
//!   format and copies it, once, into a free slot (GIL released).
//! * `slot()` is the zero-copy form: a [`SlotBuffer`] (`slot.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use framebus_producer::{
    Captured, PendingFrame, Producer as RustProducer, ProducerConfig, ProducerError, ProducerStats,
    HOUSEKEEPING_INTERVAL,
};
use numpy::{
    PyArray2, PyArray3, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::IntoPyObjectExt;
use shm_layout::{BusName, PixelFormat};

use crate::arrays::{copy_rows_rgb, copy_rows_u16, copy_rows_u8, expected, shape_text};
use crate::errors::framebus_error;
use crate::slot::SlotBuffer;

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
    closed: AtomicBool,
    frames: AtomicU64,
    publish_ns_total: AtomicU64,
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
    bus: String,
    pub(crate) format: PixelFormat,
    significant_bits: u8,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) stride: u32,
    /// Stops the housekeeping thread.
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The process that created it (a forked child has no housekeeping
    /// thread to join).
    pid: u32,
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

    /// A clear error unless `array` is a numpy array of this bus's shape and
    /// dtype.
    fn check_array(&self, array: &Bound<'_, PyAny>) -> PyResult<()> {
        let (shape, dtype) = expected(self.format, self.width, self.height);
        let what = format!(
            "a {} bus of {}x{} takes a {} {dtype} array",
            self.format,
            self.width,
            self.height,
            shape_text(&shape)
        );
        let Ok(a) = array.cast::<PyUntypedArray>() else {
            let t = array.get_type().name()?;
            return Err(PyTypeError::new_err(format!(
                "publish: {what}; got a {t}, not a numpy array"
            )));
        };
        let got_dtype = a.dtype().str()?.to_string();
        let native = match self.format {
            PixelFormat::Gray16 => a.dtype().is_equiv_to(&numpy::dtype::<u16>(array.py())),
            _ => a.dtype().is_equiv_to(&numpy::dtype::<u8>(array.py())),
        };
        if a.shape() != shape.as_slice() || !native {
            return Err(PyValueError::new_err(format!(
                "publish: {what}; got a {} {got_dtype} array{}",
                shape_text(a.shape()),
                if native {
                    ""
                } else {
                    " (convert it with .astype(...), or create the producer with the format the camera delivers)"
                }
            )));
        }
        Ok(())
    }

    fn finish_close(&self) {
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

#[pymethods]
impl Producer {
    #[new]
    #[pyo3(signature = (bus, width, height, format = "gray8", fps = 0.0, max_consumers = 8, pins_per_consumer = 2, significant_bits = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        bus: &str,
        width: u32,
        height: u32,
        format: &str,
        fps: f64,
        max_consumers: u32,
        pins_per_consumer: u32,
        significant_bits: Option<u8>,
    ) -> PyResult<Self> {
        let name = BusName::new(bus)
            .map_err(|e| framebus_error(py, "InvalidBusName", e.to_string(), &[]))?;
        let pixel: PixelFormat =
            format
                .parse()
                .map_err(|e: shm_layout::format::UnknownPixelFormat| {
                    PyValueError::new_err(e.to_string())
                })?;
        if significant_bits.is_some() && pixel != PixelFormat::Gray16 {
            return Err(PyValueError::new_err(format!(
                "significant_bits applies to format=\"gray16\" only ({pixel} has 8)"
            )));
        }
        if !(fps >= 0.0 && fps.is_finite()) {
            return Err(PyValueError::new_err(format!(
                "fps must be 0 (unpaced) or a positive rate, got {fps}"
            )));
        }
        let config = ProducerConfig {
            max_consumers,
            pins_per_consumer,
            nominal_fps: fps,
            ..ProducerConfig::new(name).with_format(pixel, significant_bits.unwrap_or(0))
        };
        let producer = py
            .detach(|| RustProducer::create(config, width, height))
            .map_err(|e| producer_error(py, e))?;
        let layout = *producer.layout();
        let core = Arc::new(Mutex::new(Core {
            producer: Some(producer),
            pending: None,
            closed: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (core, stop) = (Arc::clone(&core), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("framebus-producer-housekeeping".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        {
                            if let Some(p) = lock(&core).live() {
                                p.housekeeping();
                            }
                        }
                        std::thread::park_timeout(HOUSEKEEPING_INTERVAL / 2);
                    }
                })
                .map_err(|e| {
                    framebus_error(
                        py,
                        "FramebusOSError",
                        format!("cannot start the producer's housekeeping thread: {e}"),
                        &[],
                    )
                })?
        };
        Ok(Self {
            core,
            bus: bus.to_owned(),
            format: layout.format,
            significant_bits: layout.significant_bits,
            width: layout.width,
            height: layout.height,
            stride: layout.stride,
            stop,
            thread: Mutex::new(Some(thread)),
            pid: std::process::id(),
            figures: Figures::default(),
        })
    }

    /// Publishes ``array`` as the next frame: checks its shape and dtype
    /// (``(height, width)`` ``uint8`` for gray8, ``uint16`` for gray16,
    /// ``(height, width, 3)`` ``uint8`` for bgr8/rgb8; any strides), copies
    /// it once into a free slot (GIL released) and triggers every consumer.
    /// ``timestamp_ns`` is the capture time (``CLOCK_MONOTONIC``, as
    /// ``time.monotonic_ns()``); by default, now. Returns the frame's
    /// sequence number.
    #[pyo3(signature = (array, timestamp_ns = None))]
    fn publish(
        &self,
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        timestamp_ns: Option<u64>,
    ) -> PyResult<u64> {
        self.check_process(py)?;
        self.check_array(array)?;
        let stride = self.stride as usize;
        let core = &self.core;
        let figures = &self.figures;
        let closed = || self.closed_error(py);
        let publish_with = |fill: &mut (dyn FnMut(&mut [u8]) + Send)| {
            let mut c = lock(core);
            if c.pending.is_some() {
                return Ok(Some(Err(())));
            }
            let Some(producer) = c.live() else {
                return Ok(None);
            };
            let seq = producer.publish(|_, w| {
                fill(w.data());
                Ok(Captured {
                    capture_ns: timestamp_ns.unwrap_or_else(monotonic_ns),
                })
            })?;
            figures.record(&producer.stats());
            Ok(Some(Ok(seq)))
        };
        let result = match self.format {
            PixelFormat::Gray8 => {
                let a = array.cast::<PyArray2<u8>>()?.try_readonly()?;
                let v = a.as_array();
                py.detach(|| publish_with(&mut |d| copy_rows_u8(v, d, stride)))
            }
            PixelFormat::Gray16 => {
                let a = array.cast::<PyArray2<u16>>()?.try_readonly()?;
                let v = a.as_array();
                py.detach(|| publish_with(&mut |d| copy_rows_u16(v, d, stride)))
            }
            PixelFormat::Bgr8 | PixelFormat::Rgb8 => {
                let a = array.cast::<PyArray3<u8>>()?.try_readonly()?;
                let v = a.as_array();
                py.detach(|| publish_with(&mut |d| copy_rows_rgb(v, d, stride)))
            }
        };
        match result.map_err(|e| producer_error(py, e))? {
            None => Err(closed()),
            Some(Err(())) => Err(framebus_error(
                py,
                "FramebusError",
                "publish() inside a `with producer.slot()` block: the slot block publishes its own frame when it ends".to_owned(),
                &[],
            )),
            Some(Ok(seq)) => Ok(seq),
        }
    }

    /// The zero-copy form of ``publish``::
    ///
    ///     with producer.slot() as buf:   # a free slot, writable, in place
    ///         camera.read_into(buf)      # fill it
    ///     # published here; if the block raised, nothing is published
    ///
    /// ``buf`` is a writable numpy view of the slot, shaped like
    /// ``publish``'s array (rows ``stride`` bytes apart). Do not keep ``buf``
    /// or views of it past the block: it becomes read-only when the block
    /// ends, and the slot is reused for later frames. ``timestamp_ns`` is the
    /// capture time (default: when the block ends).
    #[pyo3(signature = (timestamp_ns = None))]
    fn slot(slf: Py<Self>, timestamp_ns: Option<u64>) -> SlotBuffer {
        let core = Arc::clone(&slf.get().core);
        SlotBuffer::new(slf, core, timestamp_ns)
    }

    /// Connects new consumers, reclaims dead ones and refreshes the
    /// heartbeat now (a background thread already does it every 25 ms).
    fn housekeeping(&self, py: Python<'_>) -> PyResult<()> {
        self.check_process(py)?;
        match lock(&self.core).live() {
            Some(p) => {
                p.housekeeping();
                Ok(())
            }
            None => Err(self.closed_error(py)),
        }
    }

    /// Shuts the bus down: consumers see the producer stop, the shared
    /// memory object and the trigger directory are removed. Idempotent. A
    /// ``slot()`` block still open is discarded.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.finish_close());
    }

    /// Whether ``close()`` ran (in a forked child: whether it had run in
    /// the parent at the fork; a child's ``close()`` does nothing).
    #[getter]
    fn closed(&self) -> bool {
        self.figures.closed.load(Ordering::Acquire)
    }

    /// The bus name.
    #[getter]
    fn bus(&self) -> &str {
        &self.bus
    }

    /// The pixel format: ``"gray8"``, ``"gray16"``, ``"bgr8"`` or ``"rgb8"``.
    #[getter]
    fn format(&self) -> &'static str {
        self.format.name()
    }

    /// Significant bits per value (8, or 1..=16 for gray16).
    #[getter]
    fn significant_bits(&self) -> u8 {
        self.significant_bits
    }

    /// Width in pixels.
    #[getter]
    fn width(&self) -> u32 {
        self.width
    }

    /// Height in rows.
    #[getter]
    fn height(&self) -> u32 {
        self.height
    }

    /// Bytes from one slot row to the next.
    #[getter]
    fn stride(&self) -> u32 {
        self.stride
    }

    /// The shape ``publish`` takes: ``(height, width)`` or
    /// ``(height, width, 3)``.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, expected(self.format, self.width, self.height).0)
    }

    /// The dtype name ``publish`` takes: ``"uint8"`` or ``"uint16"``.
    #[getter]
    fn dtype(&self) -> &'static str {
        expected(self.format, self.width, self.height).1
    }

    /// Frames published so far.
    #[getter]
    fn frames(&self) -> u64 {
        self.figures.frames.load(Ordering::Relaxed)
    }

    /// Nanoseconds spent inside the Rust producer's publish (slot choice,
    /// copy, triggers), summed over ``frames``.
    #[getter]
    fn publish_ns_total(&self) -> u64 {
        self.figures.publish_ns_total.load(Ordering::Relaxed)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the producer; exceptions propagate.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<framebus.Producer bus={:?} {}x{} {}{}>",
            self.bus,
            self.width,
            self.height,
            self.format,
            if self.closed() { " closed" } else { "" }
        )
    }
}
