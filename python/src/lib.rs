//! `framebus._framebus`: the Python binding of the framebus consumer.
//!
//! The protocol is implemented once, in `framebus-consumer`; this module only
//! adapts it to Python:
//!
//! * [`Consumer`] wraps the Rust consumer. A blocking wait releases the GIL
//!   and runs in slices of [`WAIT_SLICE`], checking for signals between
//!   slices, so Ctrl-C interrupts a waiting consumer promptly.
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
//! Errors are raised as the exception classes of `framebus._errors` (all
//! derived from `framebus.FramebusError`), with the Rust `Display` text of
//! the error as message: the same text the CLI prints.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use framebus_consumer::{
    BusInfo, Consumer as RustConsumer, ConsumerConfig, ConsumerError, Frame as RustFrame,
};
use numpy::ndarray::{Array2, Array3, ArrayView2, ShapeBuilder};
use numpy::npyffi::{self, NPY_ARRAY_WRITEABLE};
use numpy::{PyArray2, PyArray3, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::IntoPyObjectExt;
use shm_layout::BusName;

/// Longest stretch a blocking call spends without the GIL before it checks
/// for signals (Ctrl-C) and for `close()` from another thread.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// How long a thread that finds the consumer busy (another thread waits on
/// it) sleeps, GIL released, before it tries again.
const LOCK_RETRY: Duration = Duration::from_millis(2);

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// `framebus._errors`, imported once.
static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// An instance of exception class `class` of `framebus._errors` with
/// `message` and extra attributes. If the module itself cannot be loaded
/// (a broken installation), that import error is what gets raised.
fn framebus_error<'py>(
    py: Python<'py>,
    class: &str,
    message: String,
    attrs: &[(&str, Bound<'py, PyAny>)],
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module = ERRORS
            .get_or_try_init(py, || py.import("framebus._errors").map(Bound::unbind))?
            .bind(py);
        let exc = module.getattr(class)?.call1((message,))?;
        for (name, value) in attrs {
            exc.setattr(*name, value)?;
        }
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|e| e)
}

/// The Python exception for a consumer error; its message is the error's
/// `Display`, exactly as the CLI prints it.
fn consumer_error(py: Python<'_>, e: ConsumerError) -> PyErr {
    let message = e.to_string();
    let build = || -> PyResult<PyErr> {
        Ok(match &e {
            ConsumerError::BusName(b) => framebus_error(
                py,
                "InvalidBusName",
                message.clone(),
                &[("bus", b.name.as_str().into_bound_py_any(py)?)],
            ),
            ConsumerError::BusNotFound { bus } => framebus_error(
                py,
                "BusNotFound",
                message.clone(),
                &[("bus", bus.as_str().into_bound_py_any(py)?)],
            ),
            ConsumerError::NotRunning { bus, pid } => framebus_error(
                py,
                "BusNotRunning",
                message.clone(),
                &[
                    ("bus", bus.as_str().into_bound_py_any(py)?),
                    ("pid", pid.into_bound_py_any(py)?),
                ],
            ),
            ConsumerError::Layout { bus, .. } => framebus_error(
                py,
                "LayoutError",
                message.clone(),
                &[("bus", bus.as_str().into_bound_py_any(py)?)],
            ),
            ConsumerError::BusFull { bus, max } => framebus_error(
                py,
                "BusFull",
                message.clone(),
                &[
                    ("bus", bus.as_str().into_bound_py_any(py)?),
                    ("max_consumers", max.into_bound_py_any(py)?),
                ],
            ),
            ConsumerError::PinBudgetExhausted { held } => framebus_error(
                py,
                "PinBudgetExceeded",
                message.clone(),
                &[("held", held.into_bound_py_any(py)?)],
            ),
            ConsumerError::Forked { bus } => framebus_error(
                py,
                "ForkedConsumerError",
                message.clone(),
                &[("bus", bus.as_str().into_bound_py_any(py)?)],
            ),
            ConsumerError::BusTruncated { bus } => framebus_error(
                py,
                "BusTruncated",
                message.clone(),
                &[("bus", bus.as_str().into_bound_py_any(py)?)],
            ),
            ConsumerError::Untrusted { owner, mode, .. } => framebus_error(
                py,
                "UntrustedBus",
                message.clone(),
                &[
                    ("owner", owner.into_bound_py_any(py)?),
                    ("mode", mode.into_bound_py_any(py)?),
                ],
            ),
            ConsumerError::FifoPathOccupied { .. } => {
                framebus_error(py, "FramebusOSError", message.clone(), &[])
            }
            ConsumerError::Os { source, .. } => {
                let errno = source.raw_os_error().into_bound_py_any(py)?;
                framebus_error(py, "FramebusOSError", message.clone(), &[("errno", errno)])
            }
            // Algorithm errors (not reachable from Python) and any variant
            // added later.
            _ => framebus_error(py, "FramebusError", message.clone(), &[]),
        })
    };
    build().unwrap_or_else(|err| err)
}

fn released_error(py: Python<'_>, seq: u64) -> PyErr {
    framebus_error(
        py,
        "FrameReleasedError",
        format!(
            "frame {seq} was released (the iterator advanced, its with-block ended, or release() \
             was called): its slot may hold another frame now, so it has no pixels to show; \
             keep the array you took before the release, or call frame.copy() while it is pinned"
        ),
        &[],
    )
}

fn closed_error(py: Python<'_>, bus: &str) -> PyErr {
    framebus_error(
        py,
        "ConsumerClosed",
        format!("the consumer of bus {bus:?} is closed; create a new framebus.Consumer"),
        &[],
    )
}

/// Seconds from Python (`None` = no limit) as a `Duration`, refusing
/// negative, NaN and absurd values with a ValueError.
fn seconds(what: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(s) => Duration::try_from_secs_f64(s).map(Some).map_err(|_| {
            PyValueError::new_err(format!(
                "{what} must be a number of seconds >= 0 (or None), got {s}"
            ))
        }),
    }
}

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

/// A new read-only numpy view `(height, width)` of `pin`'s slot, row stride
/// `stride` bytes, whose `.base` is `pin`.
fn pinned_view<'py>(pin: &Bound<'py, FramePin>) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let frame = &pin.get().frame;
    let (width, height, stride) = (
        frame.width() as usize,
        frame.height() as usize,
        frame.stride() as usize,
    );
    // Checked construction: ndarray verifies that every (row, col) of the
    // strided shape lies inside `pixels()` (stride * height bytes).
    let view = ArrayView2::from_shape((height, width).strides((stride, 1)), frame.pixels())
        .map_err(|e| {
            framebus_error(
                pin.py(),
                "FramebusError",
                format!(
                    "frame geometry {width}x{height} stride {stride} does not fit its slot: {e}"
                ),
                &[],
            )
        })?;
    // SAFETY: `borrow_from_array` requires the memory `view` describes to stay
    // valid for as long as `container` (here the FramePin, which numpy stores
    // as the array's base and so keeps alive as long as the array and every
    // array derived from it) lives. It does: the FramePin owns the
    // `Frame<'static>`, which owns an `Arc` of the attachment that keeps the
    // pixel mapping mapped, and whose pin bit keeps the producer from writing
    // the slot until the FramePin is dropped (doc/PROTOCOL.md §7, §9). The
    // memory is mapped read-only and no `&mut` to it exists in this process.
    // (A fork()ed child inherits the mapping, so its copy of a view still
    // points at mapped memory; the pin stays the parent's, see `Drop`.)
    let array = unsafe { PyArray2::<u8>::borrow_from_array(&view, pin.clone().into_any()) };
    // SAFETY: `array` was created just above and no other code has seen it
    // yet, so clearing its WRITEABLE flag cannot invalidate any reference or
    // borrow; the GIL is held (we have `pin.py()`). This is what
    // `PyReadwriteArray::make_nonwriteable` does, without the borrow tracking.
    // With the flag clear numpy refuses every write, and refuses to set it
    // again, because the base (a FramePin) exports no writable buffer.
    unsafe {
        (*npyffi::_PyArray_GET_ITEM_DATA(array.as_array_ptr())).flags &= !NPY_ARRAY_WRITEABLE;
    }
    Ok(array)
}

/// The frame's rows, without padding, in one new contiguous buffer.
fn compact_gray(frame: &RustFrame<'_>) -> Vec<u8> {
    let (width, height) = (frame.width() as usize, frame.height() as usize);
    // The validated layout has stride >= width >= 1; max(1) only keeps
    // `chunks` from ever seeing 0.
    let stride = (frame.stride() as usize).max(1);
    let mut out = Vec::with_capacity(width * height);
    for row in frame.pixels().chunks(stride).take(height) {
        out.extend_from_slice(&row[..width.min(row.len())]);
    }
    out
}

/// Gray rows (`width` bytes each) to packed RGB, 3 bytes per pixel.
fn gray_rows_to_rgb<'a>(
    rows: impl Iterator<Item = &'a [u8]>,
    width: usize,
    height: usize,
) -> Vec<u8> {
    let mut out = vec![0u8; width * height * 3];
    for (dst, src) in out.chunks_exact_mut((width * 3).max(1)).zip(rows) {
        for (px, &g) in dst.chunks_exact_mut(3).zip(src) {
            px.copy_from_slice(&[g, g, g]);
        }
    }
    out
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
            slot: f.slot(),
            instance_id: f.instance_id(),
        }
    }
}

enum Backing {
    /// Pinned in shared memory; views are zero-copy.
    Pinned(Py<FramePin>),
    /// A private copy (from `Frame.copy()`), no pin.
    Copied(Py<PyArray2<u8>>),
    /// Released: no pixels any more.
    Released,
}

/// One gray frame from the bus.
///
/// ``frame.array`` is a zero-copy, read-only numpy view ``(height, width)``
/// ``uint8`` of the shared slot (row stride ``frame.stride`` bytes). The slot
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
struct SharedBacking(Arc<Mutex<Backing>>);

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
    fn release(&self) {
        let old = std::mem::replace(&mut *self.lock(), Backing::Released);
        drop(old);
    }

    /// Whether the consumer may forget it: released, or its `Frame` is gone
    /// (then the pin went with it, or goes with the last view).
    fn finished(&self) -> bool {
        Arc::strong_count(&self.0) == 1 || matches!(&*self.lock(), Backing::Released)
    }
}

impl Frame {
    fn new_pinned(
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

    fn copied(&self, py: Python<'_>, array: Bound<'_, PyArray2<u8>>) -> PyResult<Py<Frame>> {
        let meta = Meta {
            stride: self.meta.width,
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
    Copied(Py<PyArray2<u8>>),
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
    /// The pixels as a numpy array ``(height, width)`` of ``uint8``.
    ///
    /// Zero-copy: a read-only view of the shared slot (``writeable`` is
    /// False; rows are ``stride`` bytes apart, so the array is not
    /// C-contiguous when ``stride > width``). Its ``.base`` is the
    /// ``FramePin`` that holds the slot, so the slot stays pinned as long as
    /// this array or anything derived from it lives. Each access returns a
    /// new view of the same memory. Raises ``FrameReleasedError`` once the
    /// frame is released. For a frame made by ``copy()`` it is the copy's
    /// own (writeable) array.
    #[getter]
    fn array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<u8>>> {
        match self.source(py)? {
            Source::Pinned(pin) => pinned_view(pin.bind(py)),
            Source::Copied(arr) => Ok(arr.into_bound(py)),
        }
    }

    /// A new frame holding a private, contiguous copy of the pixels: it holds
    /// no pin and stays valid for ever (its ``array`` is writeable). Copies
    /// ``width * height`` bytes, without the GIL.
    fn copy(&self, py: Python<'_>) -> PyResult<Py<Frame>> {
        let (w, h) = (self.meta.width as usize, self.meta.height as usize);
        let array = match self.source(py)? {
            Source::Pinned(pin) => {
                let data = py.detach(|| compact_gray(&pin.get().frame));
                let a = Array2::from_shape_vec((h, w), data).map_err(|e| shape_error(py, e))?;
                PyArray2::from_owned_array(py, a)
            }
            Source::Copied(arr) => {
                let arr = arr.into_bound(py);
                let a = arr.try_readonly()?.as_array().to_owned();
                PyArray2::from_owned_array(py, a)
            }
        };
        self.copied(py, array)
    }

    /// The frame as a new RGB array ``(height, width, 3)`` of ``uint8``
    /// (the gray value in all three channels). Copies ``3 * width * height``
    /// bytes, without the GIL for a pinned frame.
    fn to_rgb<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let (w, h) = (self.meta.width as usize, self.meta.height as usize);
        let data = match self.source(py)? {
            Source::Pinned(pin) => py.detach(|| {
                let f = &pin.get().frame;
                let stride = (f.stride() as usize).max(1);
                let rows = f
                    .pixels()
                    .chunks(stride)
                    .take(h)
                    .map(|r| &r[..w.min(r.len())]);
                gray_rows_to_rgb(rows, w, h)
            }),
            Source::Copied(arr) => {
                let arr = arr.into_bound(py);
                let ro = arr.try_readonly()?;
                let view = ro.as_array();
                let rows: Vec<Vec<u8>> = view.rows().into_iter().map(|r| r.to_vec()).collect();
                gray_rows_to_rgb(rows.iter().map(Vec::as_slice), w, h)
            }
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

    /// Bytes from one row to the next in ``array`` (>= width; equal to width
    /// for a copy).
    #[getter]
    fn stride(&self) -> u32 {
        self.meta.stride
    }

    /// ``(height, width)``, the shape of ``array``.
    #[getter]
    fn shape(&self) -> (u32, u32) {
        (self.meta.height, self.meta.width)
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
            "<framebus.Frame seq={} {}x{} stride={} {state}>",
            self.meta.seq, self.meta.width, self.meta.height, self.meta.stride
        )
    }
}

// ---------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------

struct Inner {
    /// `None` once closed.
    consumer: Option<RustConsumer>,
    /// The frame the iterator handed out last; released when it advances.
    current: Option<SharedBacking>,
    /// Every frame handed out and not yet finished, released by `close`.
    handed: Vec<SharedBacking>,
}

impl Inner {
    /// Releases every frame handed out and leaves the bus (a frame that a
    /// view still shows keeps its own pin and mapping until the view goes).
    fn close(&mut self) {
        self.current = None;
        for b in std::mem::take(&mut self.handed) {
            b.release();
        }
        drop(self.consumer.take());
    }

    /// Records a frame handed out, forgetting the finished ones.
    fn hand_out(&mut self, b: SharedBacking) {
        self.handed.retain(|h| !h.finished());
        self.handed.push(b);
    }
}

/// Figures cached after every wait, for readers that find the consumer busy.
#[derive(Default)]
struct Figures {
    frames: AtomicU64,
    coalesced: AtomicU64,
    reattached: AtomicU64,
    skipped: AtomicU64,
}

impl Figures {
    fn update(&self, c: &RustConsumer) {
        self.frames.store(c.frames(), Ordering::Relaxed);
        self.coalesced.store(c.coalesced(), Ordering::Relaxed);
        self.reattached.store(c.reattached(), Ordering::Relaxed);
        self.skipped.store(c.skipped(), Ordering::Relaxed);
    }
}

/// A consumer of one framebus bus.
///
/// ``Consumer(bus, *, max_fps=None, name=None, wait=None)`` attaches to the
/// running producer of ``bus`` and registers (``wait``: seconds to wait for
/// the bus to appear, default: fail at once). Use it as a context manager
/// and iterate over it::
///
///     with framebus.Consumer("cam0", max_fps=15) as bus:
///         for frame in bus:          # blocks; the previous frame is released
///             img = frame.array      # zero-copy, read-only (H, W) uint8
///
/// It always hands out the newest frame, never the same one twice, at most
/// ``max_fps`` per second (``0`` or ``None``: no limit). If the producer stops or restarts, it waits and
/// re-attaches by itself. Waits release the GIL; Ctrl-C interrupts them.
#[pyclass(frozen, module = "framebus", name = "Consumer")]
pub struct Consumer {
    bus: String,
    inner: Mutex<Inner>,
    /// Set by `close()`; a thread waiting on the consumer closes it after
    /// its current wait slice.
    closed: AtomicBool,
    figures: Figures,
    info: Mutex<Option<BusInfo>>,
    /// The process that attached. A fork()ed child must neither use the
    /// registration (it is the parent's entry and pin bit) nor leave it.
    pid: u32,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // In a fork()ed child: forget the parent's registration instead
            // of leaving the bus on its behalf.
            let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
            std::mem::forget(inner.consumer.take());
        }
    }
}

impl Consumer {
    /// Locks the consumer, waiting (GIL released, signals checked) while
    /// another thread uses it.
    fn lock<'a>(&'a self, py: Python<'_>) -> PyResult<MutexGuard<'a, Inner>> {
        loop {
            match self.inner.try_lock() {
                Ok(g) => return Ok(g),
                // A panic in another thread left the lock poisoned; the state
                // is still a valid consumer (or None).
                Err(TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                Err(TryLockError::WouldBlock) => {
                    py.detach(|| std::thread::sleep(LOCK_RETRY));
                    py.check_signals()?;
                }
            }
        }
    }

    /// Refuses use from a fork()ed child.
    fn check_process(&self, py: Python<'_>) -> PyResult<()> {
        if std::process::id() == self.pid {
            return Ok(());
        }
        // The same refusal the Rust consumer gives in a forked child.
        Err(consumer_error(
            py,
            ConsumerError::Forked {
                bus: self.bus.clone(),
            },
        ))
    }

    fn cache(&self, c: &RustConsumer) {
        self.figures.update(c);
        *self.info.lock().unwrap_or_else(PoisonError::into_inner) = c.info();
    }

    /// Waits up to `timeout` (None = for ever) for a new frame. With
    /// `iterate`, first releases the iterator's previous frame and records
    /// the new one as the iterator's. `Ok(None)`: timed out, or (iterate)
    /// the consumer was closed.
    fn wait_frame(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
        iterate: bool,
    ) -> PyResult<Option<Py<Frame>>> {
        self.check_process(py)?;
        // A deadline past what `Instant` can represent is no deadline.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut guard = self.lock(py)?;
        if iterate {
            if let Some(previous) = guard.current.take() {
                previous.release();
            }
        }
        loop {
            if self.closed.load(Ordering::Acquire) {
                guard.close();
            }
            let Some(consumer) = guard.consumer.as_mut() else {
                return if iterate {
                    Ok(None)
                } else {
                    Err(closed_error(py, &self.bus))
                };
            };
            // At least 1 ms, so that timeout=0 still takes a frame that is
            // already there (the Rust call returns at once when its deadline
            // has passed).
            let slice = deadline.map_or(WAIT_SLICE, |d| {
                d.saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), WAIT_SLICE)
            });
            let got = py.detach(|| consumer.next_frame_owned(Some(slice)));
            self.cache(consumer);
            match got {
                Ok(Some(frame)) => {
                    let (obj, backing) = Frame::new_pinned(py, frame)?;
                    if iterate {
                        guard.current = Some(backing.clone());
                    }
                    guard.hand_out(backing);
                    return Ok(Some(obj));
                }
                Ok(None) => {}
                Err(e) => return Err(consumer_error(py, e)),
            }
            // Signal handlers run here (KeyboardInterrupt propagates); one
            // that calls close() finds the lock taken and sets `closed`.
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }
}

#[pymethods]
impl Consumer {
    #[new]
    #[pyo3(signature = (bus, *, max_fps=None, name=None, wait=None))]
    fn new(
        py: Python<'_>,
        bus: &str,
        max_fps: Option<f64>,
        name: Option<String>,
        wait: Option<f64>,
    ) -> PyResult<Self> {
        let bus_name = BusName::new(bus).map_err(|e| consumer_error(py, e.into()))?;
        if let Some(f) = max_fps {
            if !(f.is_finite() && f >= 0.0) {
                return Err(PyValueError::new_err(format!(
                    "max_fps must be a number of frames per second >= 0 (0 or None: no limit), got {f}"
                )));
            }
        }
        // Zero means no limit, as everywhere in framebus.
        let max_fps = max_fps.filter(|&f| f > 0.0);
        let wait = seconds("wait", wait)?;
        let config = ConsumerConfig {
            name: name.unwrap_or_else(|| "python".to_owned()),
            max_fps,
            ..ConsumerConfig::new(bus_name)
        };
        let deadline = wait.map(|w| Instant::now().checked_add(w));
        let consumer = loop {
            let attempt = config.clone();
            match py.detach(move || RustConsumer::attach(attempt)) {
                Ok(c) => break c,
                Err(e)
                    if e.is_transient()
                        && deadline.is_some_and(|d| d.is_none_or(|d| Instant::now() < d)) =>
                {
                    py.detach(|| std::thread::sleep(WAIT_SLICE));
                    py.check_signals()?;
                }
                Err(e) => return Err(consumer_error(py, e)),
            }
        };
        let this = Self {
            bus: bus.to_owned(),
            inner: Mutex::new(Inner {
                consumer: None,
                current: None,
                handed: Vec::new(),
            }),
            closed: AtomicBool::new(false),
            figures: Figures::default(),
            info: Mutex::new(None),
            pid: std::process::id(),
        };
        this.cache(&consumer);
        this.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .consumer = Some(consumer);
        Ok(this)
    }

    /// Waits for a frame newer than the last one handed out, pins it and
    /// returns it; ``None`` if ``timeout`` seconds pass first (``None``: wait
    /// for ever).
    ///
    /// The frame stays pinned until it is released (``frame.release()``,
    /// ``with bus.next_frame() as frame:``, or closing the consumer) or
    /// garbage-collected, and no view of it is alive. Holding more frames
    /// than the producer's ``--pins-per-consumer`` allows raises
    /// ``PinBudgetExceeded`` (the consumer stays usable).
    #[pyo3(signature = (timeout=None))]
    fn next_frame(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<Frame>>> {
        let timeout = seconds("timeout", timeout)?;
        self.wait_frame(py, timeout, false)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Releases the frame the loop handed out last, then waits for the next
    /// one. Stops when the consumer is closed.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<Frame>>> {
        self.wait_frame(py, None, true)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the consumer (see ``close()``); exceptions propagate.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    /// Releases every frame this consumer handed out (their ``array`` raises
    /// ``FrameReleasedError`` from now on) and leaves the bus. A frame that a
    /// numpy view still shows keeps its slot pinned, and the registration,
    /// until the last such view goes.
    /// Safe to call from another thread or a signal handler while a thread
    /// waits on the consumer (that wait ends within 50 ms: the loop stops,
    /// ``next_frame`` raises ``ConsumerClosed``). Idempotent.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut guard = match self.inner.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // A thread is waiting: it sees `closed` after its slice.
            Err(TryLockError::WouldBlock) => return,
        };
        if std::process::id() != self.pid {
            // A fork()ed child: the registration is the parent's.
            std::mem::forget(guard.consumer.take());
        }
        guard.close();
    }

    /// Whether ``close()`` has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The bus name.
    #[getter]
    fn bus(&self) -> &str {
        &self.bus
    }

    /// Frames handed out so far.
    #[getter]
    fn frames(&self) -> u64 {
        match self.inner.try_lock() {
            Ok(g) => g.consumer.as_ref().map_or_else(
                || self.figures.frames.load(Ordering::Relaxed),
                RustConsumer::frames,
            ),
            Err(_) => self.figures.frames.load(Ordering::Relaxed),
        }
    }

    /// Triggers the producer dropped because this consumer was busy or
    /// rate-limited (for the current producer instance).
    #[getter]
    fn coalesced(&self) -> u64 {
        match self.inner.try_lock() {
            Ok(g) => g.consumer.as_ref().map_or_else(
                || self.figures.coalesced.load(Ordering::Relaxed),
                RustConsumer::coalesced,
            ),
            Err(_) => self.figures.coalesced.load(Ordering::Relaxed),
        }
    }

    /// Frames skipped between the frames handed out: the sequence gaps
    /// (``seq - previous seq - 1``) summed, 0 for a consumer that keeps up.
    #[getter]
    fn skipped(&self) -> u64 {
        match self.inner.try_lock() {
            Ok(g) => g.consumer.as_ref().map_or_else(
                || self.figures.skipped.load(Ordering::Relaxed),
                RustConsumer::skipped,
            ),
            Err(_) => self.figures.skipped.load(Ordering::Relaxed),
        }
    }

    /// How many times the consumer re-attached after losing its producer.
    #[getter]
    fn reattached(&self) -> u64 {
        match self.inner.try_lock() {
            Ok(g) => g.consumer.as_ref().map_or_else(
                || self.figures.reattached.load(Ordering::Relaxed),
                RustConsumer::reattached,
            ),
            Err(_) => self.figures.reattached.load(Ordering::Relaxed),
        }
    }

    /// The bus this consumer is attached to, as a dict (``width``,
    /// ``height``, ``stride``, ``slot_count``, ``max_consumers``,
    /// ``pins_per_consumer``, ``instance_id``, ``producer_pid``, ``entry``),
    /// or ``None`` while it waits for a producer or once it is closed.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        if self.closed() {
            return Ok(None);
        }
        let info = match self.inner.try_lock() {
            Ok(g) => g.consumer.as_ref().and_then(RustConsumer::info),
            Err(_) => *self.info.lock().unwrap_or_else(PoisonError::into_inner),
        };
        let Some(i) = info else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("width", i.layout.width)?;
        d.set_item("height", i.layout.height)?;
        d.set_item("stride", i.layout.stride)?;
        d.set_item("slot_count", i.layout.slot_count)?;
        d.set_item("max_consumers", i.layout.max_consumers)?;
        d.set_item("pins_per_consumer", i.layout.pins_per_consumer)?;
        d.set_item("instance_id", i.instance_id)?;
        d.set_item("producer_pid", i.producer_pid)?;
        d.set_item("entry", i.entry)?;
        Ok(Some(d))
    }

    fn __repr__(&self) -> String {
        format!(
            "<framebus.Consumer bus={:?} frames={}{}>",
            self.bus,
            self.figures.frames.load(Ordering::Relaxed),
            if self.closed() { " closed" } else { "" }
        )
    }
}

// ---------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------

/// A snapshot of bus ``bus`` read straight from shared memory, without
/// registering: the same figures as ``framebus inspect --bus BUS --json``
/// (``producer``, ``geometry``, ``latest``, ``slots``, ``consumers``).
#[pyfunction]
fn inspect<'py>(py: Python<'py>, bus: &str) -> PyResult<Bound<'py, PyDict>> {
    let bus_name = BusName::new(bus).map_err(|e| consumer_error(py, e.into()))?;
    let s = py
        .detach(|| framebus_consumer::inspect(&bus_name))
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
    geometry.set_item("pixel_format", "gray8")?;
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
    if !s.producer_alive {
        d.set_item("clean", format!("framebus clean --bus {}", s.bus))?;
    }
    Ok(d)
}

/// The native part of the ``framebus`` package; import ``framebus`` instead.
#[pymodule]
fn _framebus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Consumer>()?;
    m.add_class::<Frame>()?;
    m.add_class::<FramePin>()?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
