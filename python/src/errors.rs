//! The mapping of Rust errors to Python exceptions: the exception classes
//! of `framebus._errors` (all derived from `framebus.FramebusError`), built
//! with the Rust `Display` text of the error as message, the same text the
//! CLI prints, and the error's fields as attributes.

use framebus_consumer::ConsumerError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::IntoPyObjectExt;

/// `framebus._errors`, imported once.
static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// An instance of exception class `class` of `framebus._errors` with
/// `message` and extra attributes. If the module itself cannot be loaded
/// (a broken installation), that import error is what gets raised.
pub(crate) fn framebus_error<'py>(
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
pub(crate) fn consumer_error(py: Python<'_>, e: ConsumerError) -> PyErr {
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

pub(crate) fn released_error(py: Python<'_>, seq: u64) -> PyErr {
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

pub(crate) fn closed_error(py: Python<'_>, bus: &str) -> PyErr {
    framebus_error(
        py,
        "ConsumerClosed",
        format!("the consumer of bus {bus:?} is closed; create a new framebus.Consumer"),
        &[],
    )
}
