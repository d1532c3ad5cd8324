//! `framebus.Consumer`: [`Consumer`] wraps the Rust consumer
//! (`framebus-consumer`). A blocking wait releases the GIL and runs in
//! slices of [`WAIT_SLICE`], checking for signals (Ctrl-C) and for
//! `close()` from another thread between slices.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use framebus_consumer::{BusInfo, Consumer as RustConsumer, ConsumerConfig, ConsumerError};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use shm_layout::BusName;

use crate::errors::{closed_error, consumer_error};
use crate::frame::{Frame, SharedBacking};

/// Longest stretch a blocking call spends without the GIL before it checks
/// for signals (Ctrl-C) and for `close()` from another thread.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// How long a thread that finds the consumer busy (another thread waits on
/// it) sleeps, GIL released, before it tries again.
const LOCK_RETRY: Duration = Duration::from_millis(2);

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
