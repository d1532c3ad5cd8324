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
//!
//! This file is the Python face, the `#[pymethods]`; the [`Producer`]
//! struct, its core and figures, the fork and close checks and shutdown are
//! in `producer_state.rs`, which `slot.rs` uses too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use framebus_producer::{
    Captured, Producer as RustProducer, ProducerConfig, HOUSEKEEPING_INTERVAL,
};
use numpy::{
    PyArray2, PyArray3, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shm_layout::{BusName, PixelFormat};

use crate::arrays::{copy_rows_rgb, copy_rows_u16, copy_rows_u8, expected, shape_text};
use crate::errors::framebus_error;
use crate::producer_state::{lock, monotonic_ns, producer_error, Core, Figures, Producer};
use crate::slot::SlotBuffer;

impl Producer {
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
