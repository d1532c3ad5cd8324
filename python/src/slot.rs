//! [`SlotBuffer`]: `with producer.slot() as buf:`, the zero-copy way to
//! publish from Python: `__enter__` takes a free slot (`Producer::begin`)
//! and returns a writable numpy view of it, `__exit__` publishes it
//! (`commit`) or, on an exception, gives it back unpublished (`abort`).

use std::sync::{Arc, Mutex, PoisonError};

use framebus_producer::Captured;
use numpy::ndarray::{ArrayViewMut, Dimension, ShapeBuilder};
use numpy::npyffi::{self, NPY_ARRAY_WRITEABLE};
use numpy::{Element, PyArray, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shm_layout::PixelFormat;

use crate::errors::framebus_error;
use crate::producer_state::{lock, monotonic_ns, producer_error, Producer, SharedCore};

enum SlotState {
    /// Not entered yet.
    Fresh,
    /// Entered: the producer holds a slot; `array` is the writable view.
    Open(Py<PyAny>),
    /// Exited (published or discarded).
    Done,
}

/// The context manager ``Producer.slot()`` returns; its ``__enter__`` gives
/// the writable numpy view of a free slot, its ``__exit__`` publishes it
/// (or discards it if the block raised). It is the view's ``.base`` and
/// keeps the bus's mapping alive as long as any view of it lives.
#[pyclass(frozen, module = "framebus", name = "SlotBuffer")]
pub struct SlotBuffer {
    producer: Py<Producer>,
    /// The producer's core: while this lives (and so while any view of the
    /// slot does: this object is their base), the Rust producer and its
    /// mapping are not dropped, even after `close()`.
    _core: SharedCore,
    timestamp_ns: Option<u64>,
    state: Mutex<SlotState>,
}

impl Drop for SlotBuffer {
    /// The last view of a slot of a closed producer: drop the Rust producer
    /// now (releasing the bus's lock) instead of when the `Producer` goes.
    fn drop(&mut self) {
        if self.producer.get().in_child() {
            // A forked child's copy: the core is the parent's (and its mutex
            // may be held by a thread the child does not have).
            return;
        }
        let mut c = lock(&self._core);
        // Ours and the `Producer`'s (if it still exists): no other view.
        if c.closed && Arc::strong_count(&self._core) <= 2 {
            c.producer = None;
        }
    }
}

/// A writable numpy array over `view` whose base is `owner`.
fn writable_view<'py, T: Element, D: Dimension>(
    view: ArrayViewMut<'_, T, D>,
    owner: &Bound<'py, SlotBuffer>,
) -> Bound<'py, PyAny> {
    // SAFETY: `borrow_from_array` needs the memory to stay valid as long as
    // the container (`owner`, the array's base) lives. It does: `owner`
    // holds an `Arc` of the core that owns the Rust producer and so the
    // mapping (close() shuts the bus down, and drops the producer only when
    // no other `Arc` of the core exists; else the last one drops it). The slot
    // is held for writing (`begin`) until `__exit__`; nothing else in this
    // process writes it, and consumers map pixels read-only and never read
    // a slot held for writing.
    let array =
        unsafe { PyArray::<T, D>::borrow_from_array(&view.view(), owner.clone().into_any()) };
    array.into_any()
}

impl SlotBuffer {
    pub(crate) fn new(producer: Py<Producer>, core: SharedCore, timestamp_ns: Option<u64>) -> Self {
        Self {
            producer,
            _core: core,
            timestamp_ns,
            state: Mutex::new(SlotState::Fresh),
        }
    }
}

#[pymethods]
impl SlotBuffer {
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.get();
        let producer = me.producer.get();
        producer.check_process(py)?;
        let mut state = me.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*state, SlotState::Fresh) {
            return Err(framebus_error(
                py,
                "FramebusError",
                "this slot() was already used: call producer.slot() for each frame".to_owned(),
                &[],
            ));
        }
        let (ptr, len) = {
            let mut c = lock(&producer.core);
            if c.pending.is_some() {
                return Err(framebus_error(
                    py,
                    "FramebusError",
                    "another `with producer.slot()` block is open: one slot at a time".to_owned(),
                    &[],
                ));
            }
            let Some(rust) = c.live() else {
                return Err(producer.closed_error(py));
            };
            let pending = rust.begin().map_err(|e| producer_error(py, e))?;
            let (ptr, len) = {
                let mut w = rust.writer(&pending);
                let d = w.data();
                (d.as_mut_ptr(), d.len())
            };
            c.pending = Some(pending);
            (ptr, len)
        };
        // SAFETY: `ptr..ptr + len` is the slot just taken for writing (see
        // `writable_view`); it stays mapped while `slf` lives, and no Rust
        // reference to it exists after the writer above was dropped.
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        let (w, h, stride) = (
            producer.width as usize,
            producer.height as usize,
            producer.stride as usize,
        );
        let bad = |e: numpy::ndarray::ShapeError| {
            PyValueError::new_err(format!("the slot cannot be shaped: {e}"))
        };
        let array = match producer.format {
            PixelFormat::Gray8 => writable_view(
                ArrayViewMut::from_shape((h, w).strides((stride, 1)), bytes).map_err(bad)?,
                slf,
            ),
            PixelFormat::Gray16 => {
                let values: &mut [u16] = bytemuck::try_cast_slice_mut(bytes).map_err(|e| {
                    PyValueError::new_err(format!("the gray16 slot is not u16-aligned: {e}"))
                })?;
                writable_view(
                    ArrayViewMut::from_shape((h, w).strides((stride / 2, 1)), values)
                        .map_err(bad)?,
                    slf,
                )
            }
            PixelFormat::Bgr8 | PixelFormat::Rgb8 => writable_view(
                ArrayViewMut::from_shape((h, w, 3).strides((stride, 3, 1)), bytes).map_err(bad)?,
                slf,
            ),
        };
        *state = SlotState::Open(array.clone().unbind());
        Ok(array)
    }

    /// Publishes the slot if the block ended normally, discards it if it
    /// raised (nothing published; the slot is free again). The view becomes
    /// read-only. Exceptions propagate. In a forked child (a block entered
    /// before the fork) nothing is published or discarded, the slot stays
    /// the parent's: a block that ended normally raises
    /// ``ForkedProducerError``.
    #[pyo3(signature = (exc_type, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let producer = self.producer.get();
        let old = std::mem::replace(
            &mut *self.state.lock().unwrap_or_else(PoisonError::into_inner),
            SlotState::Done,
        );
        let SlotState::Open(array) = old else {
            return Ok(false);
        };
        // Read-only from now on: the slot is about to be published or reused.
        let array = array.bind(py);
        if let Ok(a) = array.cast::<PyUntypedArray>() {
            // SAFETY: the GIL is held; clearing WRITEABLE only makes numpy
            // refuse later writes through this array object.
            unsafe {
                (*npyffi::_PyArray_GET_ITEM_DATA(a.as_array_ptr())).flags &= !NPY_ARRAY_WRITEABLE;
            }
        }
        let raised = exc_type.is_some_and(|t| !t.is_none());
        if producer.in_child() {
            // A block entered before a fork and left in the child: the slot
            // is the parent's, which still holds it for writing; neither
            // publish it nor give it back from here.
            return if raised {
                Ok(false)
            } else {
                Err(producer.forked_error(py))
            };
        }
        let capture_ns = self.timestamp_ns.unwrap_or_else(monotonic_ns);
        let mut c = lock(&producer.core);
        let pending = c.pending.take();
        let (Some(pending), Some(rust)) = (pending, c.live()) else {
            // close() ran inside the block and discarded the slot.
            return if raised {
                Ok(false)
            } else {
                Err(producer.closed_error(py))
            };
        };
        if raised {
            rust.abort(pending);
            return Ok(false);
        }
        let committed = rust.commit(pending, Captured { capture_ns });
        producer.figures.record(&rust.stats());
        committed.map_err(|e| producer_error(py, e))?;
        Ok(false)
    }
}
