//! [`Frame`] and [`FramePin`]: a frame handed to Python and the owner of
//! its pin, the `.base` of every zero-copy numpy view of it, shaped by the
//! bus's pixel format.

use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use framebus_consumer::{Frame as RustFrame, FrameView};
use numpy::ndarray::{Array2, Array3, ArrayView, ArrayView2, ArrayView3, Dimension, ShapeBuilder};
use numpy::npyffi::{self, NPY_ARRAY_WRITEABLE};
use numpy::{Element, PyArray, PyArray2, PyArray3, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shm_layout::PixelFormat;

use crate::errors::{framebus_error, released_error};

// ---------------------------------------------------------------------------
// FramePin: the owner of one pin, the base object of every view
// ---------------------------------------------------------------------------

/// The owner of one pinned frame: the `.base` of every numpy view of it.
///
/// While this object lives, the producer does not write the frame's slot.
/// Python holds it only through `Frame` (until released) and through numpy
/// arrays, so the pin lasts exactly as long as the longest of those. You never
/// create one yourself.
#[pyclass(frozen, module = "framebus", name = "FramePin")]
pub struct FramePin {
    /// Dropped (pin released) in `Drop`, only in the process that pinned it.
    frame: ManuallyDrop<RustFrame<'static>>,
    /// The process that pinned it.
    pid: u32,
}

impl FramePin {
    fn new(frame: RustFrame<'static>) -> Self {
        Self {
            frame: ManuallyDrop::new(frame),
            pid: std::process::id(),
        }
    }
}

impl Drop for FramePin {
    fn drop(&mut self) {
        if std::process::id() == self.pid {
            // SAFETY: `frame` is dropped exactly once, here, in the owner's
            // own destructor, and nothing can use it afterwards.
            unsafe { ManuallyDrop::drop(&mut self.frame) };
        }
        // Else this is a copy in a fork()ed child: the pin is a bit of the
        // parent's consumer entry and protects the parent's views, so the
        // child must not release it. Leaving `frame` undropped forgets it.
    }
}

#[pymethods]
impl FramePin {
    /// The sequence number of the pinned frame.
    #[getter]
    fn seq(&self) -> u64 {
        self.frame.seq()
    }

    fn __repr__(&self) -> String {
        format!(
            "<framebus.FramePin seq={} slot={} {}x{}>",
            self.frame.seq(),
            self.frame.slot(),
            self.frame.width(),
            self.frame.height()
        )
    }
}

/// A new read-only numpy view of `pin`'s slot, whose `.base` is `pin`:
/// `(height, width)` `uint8` (gray8), `(height, width)` `uint16` (gray16) or
/// `(height, width, 3)` `uint8` (bgr8, rgb8), rows `stride` bytes apart.
fn pinned_view<'py>(pin: &Bound<'py, FramePin>) -> PyResult<Bound<'py, PyAny>> {
    let frame = &pin.get().frame;
    let (width, height, stride) = (
        frame.width() as usize,
        frame.height() as usize,
        frame.stride() as usize,
    );
    let geometry_error = |e: numpy::ndarray::ShapeError| {
        framebus_error(
            pin.py(),
            "FramebusError",
            format!(
                "frame geometry {width}x{height} {} stride {stride} does not fit its slot: {e}",
                frame.format()
            ),
            &[],
        )
    };
    // Checked construction: ndarray verifies that every index of the
    // strided shape lies inside the slice it is given.
    match frame.format() {
        PixelFormat::Gray8 => {
            let view = ArrayView2::from_shape((height, width).strides((stride, 1)), frame.pixels())
                .map_err(geometry_error)?;
            borrow_readonly(view, pin)
        }
        PixelFormat::Gray16 => {
            // Alignment checked once, here (the slot is page-aligned and a
            // validated gray16 stride is even, so this does not fail).
            let rows = frame
                .as_u16()
                .map_err(|e| framebus_error(pin.py(), "FramebusError", e.to_string(), &[]))?;
            let view =
                ArrayView2::from_shape((height, width).strides((rows.step(), 1)), rows.all())
                    .map_err(geometry_error)?;
            borrow_readonly(view, pin)
        }
        PixelFormat::Bgr8 | PixelFormat::Rgb8 => {
            let view =
                ArrayView3::from_shape((height, width, 3).strides((stride, 3, 1)), frame.pixels())
                    .map_err(geometry_error)?;
            borrow_readonly(view, pin)
        }
    }
}

/// `view` (of memory inside `pin`'s slot) as a read-only numpy array whose
/// `.base` is `pin`.
fn borrow_readonly<'py, T: Element, D: Dimension>(
    view: ArrayView<'_, T, D>,
    pin: &Bound<'py, FramePin>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `borrow_from_array` requires the memory `view` describes to stay
    // valid for as long as `container` (here the FramePin, which numpy stores
    // as the array's base and so keeps alive as long as the array and every
    // array derived from it) lives. It does: `view` lies inside the pinned
    // slot (pinned_view built it from `pixels()` or its u16 cast), the
    // FramePin owns the `Frame<'static>`, which owns an `Arc` of the
    // attachment that keeps the pixel mapping mapped, and whose pin bit keeps
    // the producer from writing the slot until the FramePin is dropped
    // (doc/PROTOCOL.md §7, §9). The memory is mapped read-only and no `&mut`
    // to it exists in this process. (A fork()ed child inherits the mapping,
    // so its copy of a view still points at mapped memory; the pin stays the
    // parent's, see `Drop`.)
    let array = unsafe { PyArray::<T, D>::borrow_from_array(&view, pin.clone().into_any()) };
    // SAFETY: `array` was created just above and no other code has seen it
    // yet, so clearing its WRITEABLE flag cannot invalidate any reference or
    // borrow; the GIL is held (we have `pin.py()`). This is what
    // `PyReadwriteArray::make_nonwriteable` does, without the borrow tracking.
    // With the flag clear numpy refuses every write, and refuses to set it
    // again, because the base (a FramePin) exports no writable buffer.
    unsafe {
        (*npyffi::_PyArray_GET_ITEM_DATA(array.as_array_ptr())).flags &= !NPY_ARRAY_WRITEABLE;
    }
    Ok(array.into_any())
}

/// The frame's rows, without padding, in one new contiguous buffer
/// (`width * bytes_per_pixel` bytes a row).
fn compact(frame: &RustFrame<'_>) -> Vec<u8> {
    let view = frame.view();
    let mut out = Vec::with_capacity(view.row_bytes() * view.height as usize);
    for y in 0..view.height {
        out.extend_from_slice(view.row(y));
    }
    out
}

/// A new contiguous numpy array of `data` (compact rows) shaped as `meta`'s
/// format says.
fn owned_array<'py>(py: Python<'py>, meta: &Meta, data: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
    let (w, h) = (meta.width as usize, meta.height as usize);
    Ok(match meta.format {
        PixelFormat::Gray8 => {
            let a = Array2::from_shape_vec((h, w), data).map_err(|e| shape_error(py, e))?;
            PyArray2::from_owned_array(py, a).into_any()
        }
        PixelFormat::Gray16 => {
            let values = data
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            let a = Array2::from_shape_vec((h, w), values).map_err(|e| shape_error(py, e))?;
            PyArray2::from_owned_array(py, a).into_any()
        }
        PixelFormat::Bgr8 | PixelFormat::Rgb8 => {
            let a = Array3::from_shape_vec((h, w, 3), data).map_err(|e| shape_error(py, e))?;
            PyArray3::from_owned_array(py, a).into_any()
        }
    })
}

/// The compact bytes of a copy's array (made by `owned_array`; the caller
/// may have written into it, but not reshaped it).
fn copy_bytes(py: Python<'_>, meta: &Meta, array: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let not_contiguous = || {
        framebus_error(
            py,
            "FramebusError",
            "the copy's array is not contiguous".to_owned(),
            &[],
        )
    };
    Ok(match meta.format {
        PixelFormat::Gray8 => {
            let a = array.cast::<PyArray2<u8>>()?.try_readonly()?;
            a.as_slice().map_err(|_| not_contiguous())?.to_vec()
        }
        PixelFormat::Gray16 => {
            let a = array.cast::<PyArray2<u16>>()?.try_readonly()?;
            let values = a.as_slice().map_err(|_| not_contiguous())?;
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        PixelFormat::Bgr8 | PixelFormat::Rgb8 => {
            let a = array.cast::<PyArray3<u8>>()?.try_readonly()?;
            a.as_slice().map_err(|_| not_contiguous())?.to_vec()
        }
    })
}

/// Packed RGB `(height, width, 3)` of compact rows in `meta`'s format.
fn rgb_of(meta: &Meta, compact: &[u8]) -> Vec<u8> {
    FrameView {
        width: meta.width,
        height: meta.height,
        stride: meta.width * meta.format.bytes_per_pixel(),
        format: meta.format,
        significant_bits: meta.significant_bits,
        seq: meta.seq,
        capture_ns: meta.capture_ns,
        pixels: compact,
    }
    .to_rgb()
}

// ---------------------------------------------------------------------------
// Frame: what Python code holds
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Meta {
    seq: u64,
    capture_ns: u64,
    publish_ns: u64,
    latency_ns: u64,
    width: u32,
    height: u32,
    stride: u32,
    format: PixelFormat,
    significant_bits: u8,
    slot: u32,
    instance_id: u64,
}

impl Meta {
    fn of(f: &RustFrame<'_>) -> Self {
        Self {
            seq: f.seq(),
            capture_ns: f.capture_ns(),
            publish_ns: f.publish_ns(),
            latency_ns: f.latency_ns(),
            width: f.width(),
            height: f.height(),
            stride: f.stride(),
            format: f.format(),
            significant_bits: f.significant_bits(),
            slot: f.slot(),
            instance_id: f.instance_id(),
        }
    }
}

enum Backing {
    /// Pinned in shared memory; views are zero-copy.
    Pinned(Py<FramePin>),
    /// A private copy (from `Frame.copy()`), no pin: a contiguous array
    /// shaped as the format says.
    Copied(Py<PyAny>),
    /// Released: no pixels any more.
    Released,
}

/// One frame from the bus.
///
/// ``frame.array`` is a zero-copy, read-only numpy view of the shared slot,
/// shaped by the bus's pixel format (``frame.format``): ``(height, width)``
/// ``uint8`` for gray8, ``(height, width)`` ``uint16`` for gray16,
/// ``(height, width, 3)`` ``uint8`` for bgr8 and rgb8 (row stride
/// ``frame.stride`` bytes). The slot
/// stays pinned -- the producer does not touch it -- while the frame is not
/// released *or* any view of it is alive: a view never changes under you.
///
/// The frame is released when the ``for frame in bus`` loop advances, when
/// its ``with frame:`` block ends, by ``frame.release()``, or when its
/// consumer is closed (its ``with`` block ends); after that
/// ``frame.array`` raises ``FrameReleasedError`` (views taken before stay
/// valid and keep the slot pinned until they are gone).
///
/// ``copy()`` and ``to_rgb()`` are the only calls that copy pixels.
#[pyclass(frozen, module = "framebus", name = "Frame")]
pub struct Frame {
    meta: Meta,
    /// Shared with the consumer that handed the frame out, which releases
    /// it when the iterator advances past it or the consumer closes.
    backing: SharedBacking,
}

/// A frame's backing, shared between the `Frame` and its consumer.
#[derive(Clone)]
pub(crate) struct SharedBacking(Arc<Mutex<Backing>>);

impl SharedBacking {
    fn new(b: Backing) -> Self {
        Self(Arc::new(Mutex::new(b)))
    }

    fn lock(&self) -> MutexGuard<'_, Backing> {
        // Only ever held for a few field moves, never across Python code;
        // a poisoned lock still holds a valid `Backing`.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the reference to the pin (or copy). The reference is dropped
    /// after the lock is released: a last decref runs destructors.
    pub(crate) fn release(&self) {
        let old = std::mem::replace(&mut *self.lock(), Backing::Released);
        drop(old);
    }

    /// Whether the consumer may forget it: released, or its `Frame` is gone
    /// (then the pin went with it, or goes with the last view).
    pub(crate) fn finished(&self) -> bool {
        Arc::strong_count(&self.0) == 1 || matches!(&*self.lock(), Backing::Released)
    }
}

impl Frame {
    pub(crate) fn new_pinned(
        py: Python<'_>,
        frame: RustFrame<'static>,
    ) -> PyResult<(Py<Frame>, SharedBacking)> {
        let meta = Meta::of(&frame);
        let pin = Py::new(py, FramePin::new(frame))?;
        let backing = SharedBacking::new(Backing::Pinned(pin));
        let obj = Py::new(
            py,
            Frame {
                meta,
                backing: backing.clone(),
            },
        )?;
        Ok((obj, backing))
    }

    fn backing(&self) -> MutexGuard<'_, Backing> {
        self.backing.lock()
    }

    fn do_release(&self) {
        self.backing.release();
    }

    /// A new strong reference to whatever backs the frame.
    fn source(&self, py: Python<'_>) -> PyResult<Source> {
        match &*self.backing() {
            Backing::Pinned(pin) => Ok(Source::Pinned(pin.clone_ref(py))),
            Backing::Copied(arr) => Ok(Source::Copied(arr.clone_ref(py))),
            Backing::Released => Err(released_error(py, self.meta.seq)),
        }
    }

    fn copied(&self, py: Python<'_>, array: Bound<'_, PyAny>) -> PyResult<Py<Frame>> {
        let meta = Meta {
            stride: self.meta.width * self.meta.format.bytes_per_pixel(),
            ..self.meta
        };
        Py::new(
            py,
            Frame {
                meta,
                backing: SharedBacking::new(Backing::Copied(array.unbind())),
            },
        )
    }
}

impl Drop for Frame {
    /// A frame that Python garbage-collects lets go of its pin at once (the
    /// consumer's record of it shares the backing, so it must be emptied).
    fn drop(&mut self) {
        self.backing.release();
    }
}

enum Source {
    Pinned(Py<FramePin>),
    Copied(Py<PyAny>),
}

fn shape_error(py: Python<'_>, e: numpy::ndarray::ShapeError) -> PyErr {
    framebus_error(
        py,
        "FramebusError",
        format!("cannot shape a frame copy: {e}"),
        &[],
    )
}

#[pymethods]
impl Frame {
    /// The pixels as a numpy array: ``(height, width)`` ``uint8`` (gray8),
    /// ``(height, width)`` ``uint16`` (gray16), ``(height, width, 3)``
    /// ``uint8`` (bgr8: B, G, R; rgb8: R, G, B).
    ///
    /// Zero-copy: a read-only view of the shared slot (``writeable`` is
    /// False; rows are ``stride`` bytes apart, so the array is not
    /// C-contiguous when the rows are padded). Its ``.base`` is the
    /// ``FramePin`` that holds the slot, so the slot stays pinned as long as
    /// this array or anything derived from it lives. Each access returns a
    /// new view of the same memory. Raises ``FrameReleasedError`` once the
    /// frame is released. For a frame made by ``copy()`` it is the copy's
    /// own (writeable) array.
    #[getter]
    fn array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.source(py)? {
            Source::Pinned(pin) => pinned_view(pin.bind(py)),
            Source::Copied(arr) => Ok(arr.into_bound(py)),
        }
    }

    /// A new frame holding a private, contiguous copy of the pixels: it holds
    /// no pin and stays valid for ever (its ``array`` is writeable). Copies
    /// ``width * height * bytes_per_pixel`` bytes, without the GIL.
    fn copy(&self, py: Python<'_>) -> PyResult<Py<Frame>> {
        let data = match self.source(py)? {
            Source::Pinned(pin) => py.detach(|| compact(&pin.get().frame)),
            Source::Copied(arr) => copy_bytes(py, &self.meta, arr.bind(py))?,
        };
        let array = owned_array(py, &self.meta, data)?;
        self.copied(py, array)
    }

    /// The frame as a new RGB array ``(height, width, 3)`` of ``uint8``,
    /// whatever the format: gray in all three channels (gray16 scaled to 8
    /// bits from its significant bits), bgr8 reordered, rgb8 copied. Copies,
    /// without the GIL for a pinned frame.
    fn to_rgb<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let (w, h) = (self.meta.width as usize, self.meta.height as usize);
        let data = match self.source(py)? {
            Source::Pinned(pin) => py.detach(|| pin.get().frame.to_rgb()),
            Source::Copied(arr) => rgb_of(&self.meta, &copy_bytes(py, &self.meta, arr.bind(py))?),
        };
        let a = Array3::from_shape_vec((h, w, 3), data).map_err(|e| shape_error(py, e))?;
        Ok(PyArray3::from_owned_array(py, a))
    }

    /// Lets go of the frame: ``frame.array`` raises ``FrameReleasedError``
    /// from now on. The slot is unpinned at once if no view of the frame is
    /// alive, else when the last view goes. Idempotent.
    fn release(&self) {
        self.do_release();
    }

    /// Whether the frame still holds its slot pinned (False once released,
    /// and for a copy).
    #[getter]
    fn pinned(&self) -> bool {
        matches!(&*self.backing(), Backing::Pinned(_))
    }

    /// Whether ``release()`` has run (explicitly, by the iterator or by a
    /// with-block).
    #[getter]
    fn released(&self) -> bool {
        matches!(&*self.backing(), Backing::Released)
    }

    /// The frame's sequence number (1, 2, ... for each producer instance).
    #[getter]
    fn seq(&self) -> u64 {
        self.meta.seq
    }

    /// Capture time, ``CLOCK_MONOTONIC`` nanoseconds (comparable with
    /// ``time.monotonic_ns()``).
    #[getter]
    fn timestamp_ns(&self) -> u64 {
        self.meta.capture_ns
    }

    /// Publish time, ``CLOCK_MONOTONIC`` nanoseconds.
    #[getter]
    fn publish_ns(&self) -> u64 {
        self.meta.publish_ns
    }

    /// Nanoseconds from publish to this consumer's pin.
    #[getter]
    fn latency_ns(&self) -> u64 {
        self.meta.latency_ns
    }

    /// Width in pixels.
    #[getter]
    fn width(&self) -> u32 {
        self.meta.width
    }

    /// Height in rows.
    #[getter]
    fn height(&self) -> u32 {
        self.meta.height
    }

    /// Bytes from one row to the next in ``array`` (>= width *
    /// bytes_per_pixel; equal to it for a copy).
    #[getter]
    fn stride(&self) -> u32 {
        self.meta.stride
    }

    /// The shape of ``array``: ``(height, width)`` for gray8 and gray16,
    /// ``(height, width, 3)`` for bgr8 and rgb8.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (h, w) = (self.meta.height, self.meta.width);
        if self.meta.format.channels() == 3 {
            PyTuple::new(py, [h, w, 3])
        } else {
            PyTuple::new(py, [h, w])
        }
    }

    /// The pixel format: ``"gray8"``, ``"gray16"``, ``"bgr8"`` or ``"rgb8"``.
    #[getter]
    fn format(&self) -> &'static str {
        self.meta.format.name()
    }

    /// Significant bits per value: 8 for 8-bit formats; for gray16 1..=16
    /// (e.g. 12 for a mono12 camera: values 0..=4095).
    #[getter]
    fn significant_bits(&self) -> u8 {
        self.meta.significant_bits
    }

    /// The slot the frame was read from.
    #[getter]
    fn slot(&self) -> u32 {
        self.meta.slot
    }

    /// The producer instance the frame came from (changes when the producer
    /// restarts).
    #[getter]
    fn instance_id(&self) -> u64 {
        self.meta.instance_id
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Releases the frame (see ``release()``); exceptions propagate.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.do_release();
        false
    }

    fn __repr__(&self) -> String {
        let state = match &*self.backing() {
            Backing::Pinned(_) => "pinned",
            Backing::Copied(_) => "copy",
            Backing::Released => "released",
        };
        format!(
            "<framebus.Frame seq={} {}x{} {} stride={} {state}>",
            self.meta.seq, self.meta.width, self.meta.height, self.meta.format, self.meta.stride
        )
    }
}
