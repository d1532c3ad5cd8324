"""A bus object truncated while a Python consumer maps it (to half, to one
page, to nothing) never crashes the interpreter: the consumer raises
``framebus.BusTruncated`` once and then takes frames of the bus the
producer re-creates; a view taken before shows zeros, never a fault."""

import os
import time

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
