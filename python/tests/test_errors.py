"""Every failure is a framebus exception with the CLI's message."""

import os
import time

import numpy as np
import pytest

import framebus


@pytest.mark.parametrize("name", ["bad/name", "", ".hidden", "-x", "a b", "x" * 65, "é"])
def test_invalid_bus_name(bus, name):
    with pytest.raises(framebus.InvalidBusName) as e:
        framebus.Consumer(name)
    assert isinstance(e.value, framebus.FramebusError)
    assert isinstance(e.value, ValueError)
    assert e.value.bus == name
    assert str(e.value).startswith("invalid bus name ")
    # The CLI prints the same text.
    code, _, err = bus.cli("inspect", f"--bus={name}")
    assert code != 0
    assert str(e.value) in err, err
    with pytest.raises(framebus.InvalidBusName):
        framebus.inspect(name)


def test_missing_bus(bus):
    with pytest.raises(framebus.BusNotFound) as e:
        framebus.Consumer(bus.name)
    assert isinstance(e.value, framebus.FramebusError)
    assert e.value.bus == bus.name
    assert f"/dev/shm/framebus.{bus.name} does not exist" in str(e.value)
    code, _, err = bus.cli("consume", "--bus", bus.name)
    assert code != 0
    assert str(e.value) in err, err
    with pytest.raises(framebus.BusNotFound):
        framebus.inspect(bus.name)


def test_wait_for_a_missing_bus(bus):
    t0 = time.monotonic()
    with pytest.raises(framebus.BusNotFound):
        framebus.Consumer(bus.name, wait=0.3)
    # It waited rather than failing at once (how much longer than asked is
    # the scheduler's business).
    assert time.monotonic() - t0 >= 0.25


def test_wait_attaches_when_the_producer_comes(bus):
    producer = bus.produce(size="64x32", fps=100, wait_ready=False)
    # Attach while the producer may still be starting: wait= bridges the gap.
    with framebus.Consumer(bus.name, wait=20) as c:
        assert c.next_frame(timeout=10) is not None
    producer.wait_line(lambda l: l.startswith("ready"), 5, "ready")


def test_foreign_object_is_a_layout_error(bus):
    with open(bus.shm_path, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(b"not a framebus bus".ljust(8192, b"x"))
    with pytest.raises(framebus.LayoutError) as e:
        framebus.Consumer(bus.name)
    assert isinstance(e.value, framebus.FramebusError)
    assert "not a framebus bus" in str(e.value)
    code, _, err = bus.cli("consume", "--bus", bus.name)
    assert code != 0
    assert str(e.value) in err, err


def test_bus_full(bus):
    bus.produce(size="64x32", fps=50, max_consumers=1)
    with framebus.Consumer(bus.name) as c:
        assert c.next_frame(timeout=10) is not None
        with pytest.raises(framebus.BusFull) as e:
            framebus.Consumer(bus.name)
        assert e.value.max_consumers == 1
        assert "all 1 consumer entries" in str(e.value)


@pytest.mark.parametrize("kwargs", [{"max_fps": -5}, {"max_fps": float("nan")}, {"wait": -1}])
def test_bad_arguments_are_value_errors(bus, kwargs):
    with pytest.raises(ValueError):
        framebus.Consumer(bus.name, **kwargs)


def test_max_fps_zero_means_no_limit(bus):
    # As everywhere in framebus: 0 is "no limit", the same as None.
    bus.produce(size="64x32", fps=200)
    with framebus.Consumer(bus.name, max_fps=0, name="zero") as c:
        for _ in range(5):
            with c.next_frame(timeout=10) as frame:
                assert frame.seq > 0
        entry = [e for e in framebus.inspect(bus.name)["consumers"] if e["name"] == "zero"]
        assert entry and entry[0]["max_fps"] == 0, entry
        assert c.skipped >= 0


def test_skipped_is_exactly_the_sequence_gaps(bus):
    """``Consumer.skipped`` is the sum, over the frames taken, of
    ``seq - previous seq - 1`` (the first frame counts no gap;
    doc/LAYOUT.md §7, ``skipped`` of a consumer entry). A Python producer in
    this process decides exactly what is published between two takes; the
    consumer's entry (``inspect``) counts the same."""
    W, H = 64, 32
    with framebus.Producer(bus.name, W, H, max_consumers=2) as p, \
            framebus.Consumer(bus.name, name="skips") as c:

        def publish(count):
            return [p.publish(np.full((H, W), p.frames & 0xFF, np.uint8)) for _ in range(count)]

        def take_newest(expected_seq):
            frame = c.next_frame(timeout=10)
            assert frame is not None, f"no frame {expected_seq}"
            with frame:
                assert frame.seq == expected_seq, "the consumer takes the newest frame"
                assert int(frame.array[0, 0]) == (expected_seq - 1) & 0xFF
            return frame.seq

        def entry():
            es = [e for e in framebus.inspect(bus.name)["consumers"] if e["name"] == "skips"]
            assert len(es) == 1, es
            return es[0]

        # Three frames before the first take: the first take counts no gap.
        assert publish(3) == [1, 2, 3]
        take_newest(3)
        assert (c.frames, c.skipped) == (1, 0)
        # One frame, taken: no gap.
        publish(1)
        k = take_newest(4)
        assert (c.frames, c.skipped) == (2, 0)
        # Frame k taken; the producer publishes 5 more while the consumer
        # waits; the newest (k + 5) is taken: k+1 .. k+4 were skipped.
        assert publish(5) == [k + 1, k + 2, k + 3, k + 4, k + 5]
        take_newest(k + 5)
        assert (c.frames, c.skipped) == (3, 4)
        # No new frame: nothing taken, nothing skipped.
        assert c.next_frame(timeout=0) is None
        assert c.skipped == 4
        publish(1)
        take_newest(k + 6)
        assert (c.frames, c.skipped) == (4, 4)
        # Twenty more: 19 skipped, 23 in all.
        publish(20)
        take_newest(k + 26)
        assert (c.frames, c.skipped) == (5, 23)
        e = entry()
        assert (e["frames"], e["skipped"], e["last_seq"]) == (5, 23, k + 26), e


def test_bad_timeout(bus):
    bus.produce(size="64x32", fps=50)
    with framebus.Consumer(bus.name) as c:
        with pytest.raises(ValueError):
            c.next_frame(timeout=-1)
        with pytest.raises(TypeError):
            c.next_frame(timeout="soon")
        with pytest.raises(ValueError):
            c.next_frame(timeout=float("nan"))
        # Huge timeouts are just long ones.
        with c.next_frame(timeout=1e12) as frame:
            assert frame.seq > 0


def test_exception_hierarchy():
    for cls in (
        framebus.InvalidBusName,
        framebus.BusNotFound,
        framebus.BusNotRunning,
        framebus.LayoutError,
        framebus.BusFull,
        framebus.PinBudgetExceeded,
        framebus.FrameReleasedError,
        framebus.ConsumerClosed,
        framebus.FramebusOSError,
        framebus.ForkedConsumerError,
        framebus.BusTruncated,
        framebus.UntrustedBus,
        framebus.BusBusy,
        framebus.ProducerClosed,
        framebus.ForkedProducerError,
    ):
        assert issubclass(cls, framebus.FramebusError), cls
        assert cls.__module__ == "framebus"
        assert cls.__doc__
        assert cls.__name__ in framebus.__all__, cls
        assert cls.__name__ in framebus._errors.__all__, cls
    assert issubclass(framebus.InvalidBusName, ValueError)
    assert issubclass(framebus.FramebusOSError, OSError)


def test_public_api_is_documented():
    for obj in (framebus, framebus.Consumer, framebus.Frame, framebus.FramePin, framebus.inspect):
        assert obj.__doc__, obj
    for name in ("next_frame", "close"):
        assert getattr(framebus.Consumer, name).__doc__, name
    for name in ("array", "copy", "to_rgb", "release", "seq", "timestamp_ns", "stride"):
        assert getattr(framebus.Frame, name).__doc__, name
