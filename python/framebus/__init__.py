"""framebus: a zero-copy numpy consumer of a framebus camera frame bus.

A framebus producer (``framebus produce --bus cam0``) writes gray frames into
POSIX shared memory slots; any number of consumers, each at its own rate, pin
the newest frame and read it in place. This package is the consumer side for
Python, built from the Rust consumer crate (the protocol is not re-implemented
here)::

    import framebus

    with framebus.Consumer("cam0", max_fps=15) as bus:
        for frame in bus:              # blocks until a new frame (Ctrl-C works)
            img = frame.array          # (H, W) uint8, zero-copy, read-only
            print(frame.seq, frame.timestamp_ns, img.mean())

``frame.array`` is a view of the shared slot itself: the slot stays pinned
(the producer leaves it alone) while the frame is not released or any view of
it is alive, so a view never changes under you. The loop releases the previous
frame when it advances, but the previous ``img`` keeps its slot pinned until
the next assignment replaces it: the loop above holds two frames for a moment,
which the producer's default ``--pins-per-consumer 2`` allows. Holding more
frames than that budget raises :class:`PinBudgetExceeded` (its message says
which array to ``del``) rather than ever showing a rewritten slot. ``frame.copy()`` and ``frame.to_rgb()`` are the
only calls that copy pixels.

A consumer belongs to the process that created it: in a ``fork()``-ed child
every call on an inherited consumer raises :class:`ForkedConsumerError`, so a
child must create its own :class:`Consumer`.
"""

from ._errors import (
    BusBusy,
    BusFull,
    BusTruncated,
    UntrustedBus,
    BusNotFound,
    BusNotRunning,
    ConsumerClosed,
    ForkedConsumerError,
    FrameReleasedError,
    FramebusError,
    FramebusOSError,
    InvalidBusName,
    LayoutError,
    PinBudgetExceeded,
    ProducerClosed,
    ForkedProducerError,
)
from ._framebus import (
    Consumer,
    Frame,
    FramePin,
    Producer,
    SlotBuffer,
    __version__,
    inspect,
)

__all__ = [
    "Consumer",
    "Producer",
    "SlotBuffer",
    "BusBusy",
    "ProducerClosed",
    "ForkedProducerError",
    "Frame",
    "FramePin",
    "inspect",
    "__version__",
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
]
