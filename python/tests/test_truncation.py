"""A bus object truncated while a Python consumer maps it (to half, to one
page, to nothing) never crashes the interpreter: the consumer raises
``framebus.BusTruncated`` once and then takes frames of the bus the
producer re-creates; a view taken before shows zeros, never a fault.

Truncated under a Python producer (run in a child process, so that a SIGBUS
would show as its exit status -7 instead of killing pytest): publishing
raises ``framebus.BusTruncated`` from then on, ``close()`` removes the bus,
and a new producer creates it afresh."""

import os
import signal
import sys
import time
from pathlib import Path

import framebus
import pytest


@pytest.mark.parametrize("size", ["half", 4096, 0])
def test_truncation_raises_bus_truncated_then_recovers(bus, size):
    bus.produce(size="320x240", fps=200, pins=2)
    with framebus.Consumer(bus.name) as c:
        first = c.next_frame(timeout=20)
        old_instance = first.instance_id
        view = first.array
        total = os.stat(bus.shm_path).st_size
        length = total // 2 if size == "half" else size
        os.truncate(bus.shm_path, length)
        del first
        deadline = time.monotonic() + 30
        with pytest.raises(framebus.BusTruncated) as e:
            while time.monotonic() < deadline:
                f = c.next_frame(timeout=0.1)
                del f
        assert bus.name in str(e.value)
        # The old view is still readable (zero pages, or the old frame).
        assert view.shape == (240, 320)
        int(view.sum())
        frame = c.next_frame(timeout=20)
        assert frame is not None
        assert frame.instance_id != old_instance, "a frame of the re-created bus"


# --- Under a Python producer ---------------------------------------------------

PRODUCER_SCRIPT = Path(__file__).resolve().parent / "producer_proc.py"


def _truncate_under_producer(bus, mode, size, python_flags=()):
    """Runs tests/producer_proc.py in ``mode`` in its own process (a SIGBUS
    kills it, not pytest), truncates the bus object to ``size`` when it is
    ready, tells it so (a file appears), and returns its JSON report."""
    go = bus.tmp / "truncated"
    proc = bus.spawn(
        [sys.executable, *python_flags, PRODUCER_SCRIPT, "--bus", bus.name, "--mode", mode, "--go", go],
        f"py-producer-{mode}",
    )
    ready = "slot open" if mode == "slot" else "published seq=1"
    proc.wait_line(lambda l: l == ready, 20, f"the producer's {ready!r} line")
    total = os.stat(bus.shm_path).st_size
    os.truncate(bus.shm_path, total // 2 if size == "half" else size)
    go.touch()
    code = proc.wait_exit(60)
    assert code != -signal.SIGBUS, f"the producer died of SIGBUS; {proc.describe()}"
    assert code == 0, proc.describe()
    return proc.last_json()


def _assert_after_truncation(bus, r):
    """What a Python producer does once publish raised BusTruncated: every
    later publish and slot() raise it too; close() raises nothing, removes
    the (truncated) bus object, its lock and its trigger directory; later
    calls raise ProducerClosed; a new Producer creates the bus afresh."""
    for what in ("publish_again", "slot_again"):
        assert r[what] is not None and r[what]["class"] == "BusTruncated", (what, r)
    assert r["bus_exists_before_close"], r
    assert r["close"] is None and r["closed"], r
    assert not r["bus_exists_after_close"], r
    assert not r["lock_exists_after_close"], r
    assert not r["trigger_dir_exists_after_close"], r
    assert r["publish_after_close"]["class"] == "ProducerClosed", r
    assert r["new_producer_seq"] == 1, r
    assert r["new_bus_size"] > 0, r
    assert not bus.shm_path.exists()


@pytest.mark.parametrize(
    "size,python_flags",
    [("half", ()), (4096, ()), (0, ()), (0, ("-X", "faulthandler"))],
    ids=["half", "4096", "0", "0-faulthandler"],
)
def test_truncation_under_a_python_producer_raises_bus_truncated(bus, size, python_flags):
    """The bus object truncated while a Python producer publishes: the
    process survives (no SIGBUS), and publishing raises
    ``framebus.BusTruncated`` (at once if the publish touches a page past
    the new end, else once the producer's housekeeping, every 50 ms, has
    seen the object's size) naming the bus. Also with Python's
    faulthandler enabled at start-up (``-X faulthandler``, as pytest does):
    framebus's handler, installed after it, repairs the fault first."""
    r = _truncate_under_producer(bus, "truncate", size, python_flags)
    e = r["raised"]
    assert e["class"] == "BusTruncated" and e["module"] == "framebus" and e["framebus_error"], r
    assert e["bus"] == bus.name, r
    assert e["message"] == (
        f'bus "{bus.name}" was truncated while mapped (another process shrank '
        f"/dev/shm/framebus.{bus.name}); create the bus again"
    ), r
    _assert_after_truncation(bus, r)


@pytest.mark.parametrize("size", [4096, 0])
def test_truncation_inside_a_slot_block_raises_bus_truncated_when_it_ends(bus, size):
    """Truncated while a ``with producer.slot() as buf:`` block is open:
    writing ``buf`` (pages past the new end) does not kill the process (it
    writes zero pages nobody else sees), and the block's end raises
    ``framebus.BusTruncated`` instead of publishing."""
    r = _truncate_under_producer(bus, "slot", size)
    e = r["raised"]
    assert e is not None and e["class"] == "BusTruncated" and e["bus"] == bus.name, r
    assert r["sum_after_write"] > 0, r
    _assert_after_truncation(bus, r)
