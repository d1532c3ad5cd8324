"""The exceptions framebus raises.

Every error derives from :class:`FramebusError`. The message of an error that
comes from the bus protocol is the text the ``framebus`` CLI prints for it.
"""

__all__ = [
    "FramebusError",
    "InvalidBusName",
    "BusNotFound",
    "BusNotRunning",
    "LayoutError",
    "BusFull",
    "PinBudgetExceeded",
    "FrameReleasedError",
    "ConsumerClosed",
    "FramebusOSError",
    "ForkedConsumerError",
    "BusTruncated",
    "UntrustedBus",
    "BusBusy",
    "ProducerClosed",
    "ForkedProducerError",
]


class FramebusError(Exception):
    """Base class of every framebus error."""


class InvalidBusName(FramebusError, ValueError):
    """The bus name is malformed: use 1 to 64 characters of ``A-Z a-z 0-9 _ . -``,
    not starting with ``.`` or ``-``. Attribute ``bus``: the rejected name."""


class BusNotFound(FramebusError):
    """No bus of that name exists (no ``/dev/shm/framebus.<bus>``): start a
    producer first, or pass ``wait=`` to :class:`framebus.Consumer`.
    Attribute ``bus``."""


class BusNotRunning(FramebusError):
    """The bus exists but its producer is gone or stopping.
    Attributes ``bus`` and ``pid`` (the producer's)."""


class LayoutError(FramebusError):
    """The shared memory object is not a usable bus: foreign, truncated,
    corrupt, or written by another layout version. Attribute ``bus``."""


class BusFull(FramebusError):
    """Every consumer entry of the bus is taken.
    Attributes ``bus`` and ``max_consumers``."""


class PinBudgetExceeded(FramebusError):
    """Taking another frame would pin more frames than the producer's
    ``--pins-per-consumer`` allows this consumer (2 unless the producer was
    started with another value).

    A frame stays pinned while it is not released *or* any numpy array taken
    from it (``img = frame.array``, a slice, ``np.asarray`` of it) is alive.
    ``for frame in bus: img = frame.array`` holds two frames for a moment
    (the previous ``img`` lives until it is reassigned), which the default
    budget allows; keeping arrays in a list, or frames from ``next_frame()``
    without ``release()``, needs a larger budget. Attribute ``held``: frames
    held (= the budget). The consumer stays usable: ``del`` an array (or
    release a frame) and ask again.

    The message says this in Python terms; ``protocol_message`` keeps the
    library's own text."""

    def __init__(self, message="", *args):
        super().__init__(message, *args)
        self.protocol_message = message

    def __str__(self):
        held = getattr(self, "held", None)
        if not isinstance(held, int):
            return self.protocol_message
        return (
            f"this consumer already holds {held} frame(s), the producer's --pins-per-consumer "
            f"budget: a frame stays pinned while any numpy array taken from it (img = "
            f"frame.array, or a slice of it) is alive, or it is not released. Let go of one "
            f"before taking another: `del img` (keep frame.copy() if you need the pixels "
            f"longer) or frame.release(); or start the producer with --pins-per-consumer "
            f"{held + 1}"
        )


class FrameReleasedError(FramebusError):
    """The frame was released (the loop advanced, its with-block ended, or
    ``release()`` was called): it has no pixels to show any more. Views taken
    before the release stay valid."""


class ConsumerClosed(FramebusError):
    """The consumer was closed."""


class ForkedConsumerError(FramebusError):
    """The consumer was used in a forked child (``os.fork``,
    ``multiprocessing`` with the fork start method) of the process that
    attached it: its registration and pins belong to the parent. Create a new
    :class:`framebus.Consumer` in the child. Attribute ``bus``."""


class BusTruncated(FramebusError):
    """Another process truncated the bus object while it was mapped. This
    process survives (the mapping now shows zero pages). Attribute ``bus``.

    From a :class:`framebus.Consumer`: frames taken before are invalid. The
    error is raised once; the next ``next_frame`` waits for the producer to
    re-create the bus and attaches to it.

    From a :class:`framebus.Producer` (``publish``, or the end of a
    ``slot()`` block, which then publishes nothing): raised at once if the
    call touched a page past the new end, else once the producer's
    housekeeping (every 50 ms) has seen the object's size, and by every
    later ``publish`` or ``slot()``: the producer does not re-create the
    bus. ``close()`` (or the end of its ``with`` block) still works and
    removes the truncated bus object, its lock and trigger directory;
    create a new ``Producer`` of the same name to go on (as after any
    producer restart, consumers attach to it by themselves).

    Surviving relies on framebus's SIGBUS handler: if ``faulthandler`` is
    enabled after framebus first mapped a bus, it replaces that handler and
    a truncation kills the process. Enable it at start-up
    (``python -X faulthandler``) instead."""


class UntrustedBus(FramebusError, PermissionError):
    """The bus object or its trigger directory belongs to a user this
    process does not trust, or everyone may write it. ``owner`` and ``mode``
    say what was found; trust an owner with ``FRAMEBUS_TRUST_OWNERS=<uid>``."""


class BusBusy(FramebusError):
    """Another live producer owns the bus (``framebus.Producer`` refuses to
    start a second one). Attributes ``bus`` and ``pid`` (0 if unknown)."""


class ProducerClosed(FramebusError):
    """The producer was closed (its ``with`` block ended, or ``close()``);
    the bus is gone. Create a new :class:`framebus.Producer`."""


class ForkedProducerError(FramebusError):
    """The producer was used in a forked child of the process that created
    it: the bus belongs to the parent. Raised by ``publish``, ``slot()``
    and ``housekeeping()`` in the child; ``close()`` and garbage collection
    there do nothing to the parent's bus. Create a new
    :class:`framebus.Producer` (on another bus) in the child to publish from
    it. Attribute ``bus``."""


class FramebusOSError(FramebusError, OSError):
    """An operating system call failed (shared memory, FIFO, poll).
    ``errno`` is set when the OS gave one."""


# Shown as framebus.<Name> in tracebacks and reprs.
for _cls in (
    FramebusError,
    InvalidBusName,
    BusNotFound,
    BusNotRunning,
    LayoutError,
    BusFull,
    PinBudgetExceeded,
    FrameReleasedError,
    ConsumerClosed,
    FramebusOSError,
    ForkedConsumerError,
    BusTruncated,
    UntrustedBus,
    BusBusy,
    ProducerClosed,
    ForkedProducerError,
):
    _cls.__module__ = "framebus"
del _cls
