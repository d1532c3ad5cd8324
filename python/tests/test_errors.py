"""Every failure is a framebus exception with the CLI's message."""

import os
import time

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
    ):
        assert issubclass(cls, framebus.FramebusError), cls
        assert cls.__module__ == "framebus"
        assert cls.__doc__
    assert issubclass(framebus.InvalidBusName, ValueError)
    assert issubclass(framebus.FramebusOSError, OSError)


def test_public_api_is_documented():
    for obj in (framebus, framebus.Consumer, framebus.Frame, framebus.FramePin, framebus.inspect):
        assert obj.__doc__, obj
    for name in ("next_frame", "close"):
        assert getattr(framebus.Consumer, name).__doc__, name
    for name in ("array", "copy", "to_rgb", "release", "seq", "timestamp_ns", "stride"):
        assert getattr(framebus.Frame, name).__doc__, name
