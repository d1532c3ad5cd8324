"""framebus.Producer: a Python producer (the Rust producer underneath)
feeding Rust and Python consumer processes in every pixel format, the
zero-copy ``slot()`` form, and clear errors for wrong arrays."""

import os
import signal
import sys
import time

import numpy as np
import pytest

import framebus
from conftest import PYTHON_DIR
from fb_oracle import expected_frame_in, first_mismatch

PRODUCER_SCRIPT = PYTHON_DIR / "tests" / "producer_proc.py"

W, H = 160, 120

FORMATS = [
    ("gray8", None),
    ("gray16", None),
    ("gray16", 12),
    ("bgr8", None),
    ("rgb8", None),
]


def _publish_until(producer, procs, fmt, bits, deadline_s=60.0):
    """Publishes pattern frames (seq 1, 2, ...: frame n is the pattern of
    seq n) about every 5 ms until every process in ``procs`` exited;
    returns the number published. Bounded."""
    deadline = time.monotonic() + deadline_s
    n = 0
    while any(p.popen.poll() is None for p in procs):
        assert time.monotonic() < deadline, "consumers did not finish: " + "; ".join(
            p.describe() for p in procs
        )
        n += 1
        seq = producer.publish(expected_frame_in(n, W, H, fmt, bits))
        assert seq == n
        time.sleep(0.005)  # pacing, like a camera; not a synchronisation
    return n


@pytest.mark.parametrize("fmt,bits", FORMATS, ids=[f"{f}-{b or 'full'}" for f, b in FORMATS])
def test_python_producer_feeds_rust_and_python_consumers(bus, fmt, bits):
    with framebus.Producer(
        bus.name, W, H, format=fmt, fps=200, max_consumers=4, pins_per_consumer=2,
        significant_bits=bits,
    ) as producer:
        assert producer.format == fmt
        assert producer.significant_bits == (bits or (16 if fmt == "gray16" else 8))
        geometry = framebus.inspect(bus.name)["geometry"]
        assert geometry["pixel_format"] == fmt
        assert geometry["significant_bits"] == producer.significant_bits
        rust = bus.rust_consumer("--algo", "verify", "--frames", "30", "--json", "--wait", "10")
        py = bus.py_consumer("--frames", "30", "--duration", "60")
        published = _publish_until(producer, [rust, py], fmt, bits)
        assert rust.wait_exit(10) == 0, rust.describe()
        assert py.wait_exit(10) == 0, py.describe()
    r, p = rust.last_json(), py.last_json()
    assert r["bad_frames"] == 0 and r["frames"] == 30, r
    assert p["bad_frames"] == 0 and p["frames"] == 30, p
    assert published >= 30
    # Closing removed the bus.
    assert not bus.shm_path.exists()


def test_slot_publishes_in_place_and_an_exception_publishes_nothing(bus):
    fmt = "bgr8"
    with framebus.Producer(bus.name, W, H, format=fmt, max_consumers=2) as producer, \
            framebus.Consumer(bus.name) as consumer:
        assert producer.shape == (H, W, 3) and producer.dtype == "uint8"
        with producer.slot() as buf:
            assert buf.shape == (H, W, 3) and buf.dtype == np.uint8 and buf.flags.writeable
            buf[...] = expected_frame_in(1, W, H, fmt)
        # Published when the block ended; the view is read-only from now on.
        assert not buf.flags.writeable
        with pytest.raises(ValueError):
            buf[0, 0, 0] = 1
        del buf
        frame = consumer.next_frame(timeout=10)
        assert frame is not None and frame.seq == 1 and frame.format == fmt
        np.testing.assert_array_equal(frame.array, expected_frame_in(1, W, H, fmt))
        frame.release()

        # An exception inside the block: nothing is published.
        with pytest.raises(RuntimeError, match="camera timeout"):
            with producer.slot() as buf:
                buf[...] = 7  # garbage that must never be seen
                raise RuntimeError("camera timeout")
        del buf
        snap = framebus.inspect(bus.name)
        assert snap["producer"]["frames_published"] == 1
        assert snap["latest"]["seq"] == 1
        assert not any(s["writing"] for s in snap["slots"]), snap["slots"]
        assert producer.frames == 1

        # Every slot is usable again: more frames than slots, each in place.
        slots = len(snap["slots"])
        for n in range(2, slots + 4):
            with producer.slot() as buf:
                buf[...] = expected_frame_in(n, W, H, fmt)
            del buf
            frame = consumer.next_frame(timeout=10)
            assert frame is not None and frame.seq == n
            np.testing.assert_array_equal(frame.array, expected_frame_in(n, W, H, fmt))
            frame.release()
        snap = framebus.inspect(bus.name)
        assert snap["producer"]["frames_published"] == slots + 3
        assert all(s["seq"] > 1 for s in snap["slots"]), snap["slots"]


def test_slot_gray16_with_capture_timestamp(bus):
    with framebus.Producer(bus.name, W, H, format="gray16", significant_bits=12) as producer, \
            framebus.Consumer(bus.name) as consumer:
        ts = time.monotonic_ns() - 1_000_000
        with producer.slot(timestamp_ns=ts) as buf:
            assert buf.dtype == np.uint16 and buf.shape == (H, W)
            buf[...] = expected_frame_in(1, W, H, "gray16", 12)
        del buf
        frame = consumer.next_frame(timeout=10)
        assert frame.timestamp_ns == ts
        assert frame.array.dtype == np.uint16 and frame.array.max() <= 4095
        np.testing.assert_array_equal(frame.array, expected_frame_in(1, W, H, "gray16", 12))
        rgb = frame.to_rgb()
        assert rgb.shape == (H, W, 3)
        np.testing.assert_array_equal(rgb[..., 0], (frame.array >> 4).astype(np.uint8))
        # publish() takes a timestamp too.
        seq = producer.publish(expected_frame_in(2, W, H, "gray16", 12), timestamp_ns=ts + 5)
        frame = consumer.next_frame(timeout=10)
        assert (frame.seq, frame.timestamp_ns) == (seq, ts + 5)


def test_wrong_shape_or_dtype_is_a_clear_error(bus):
    with framebus.Producer(bus.name, W, H, format="gray16") as producer:
        with pytest.raises(ValueError, match=r"gray16 bus of 160x120 takes a \(120, 160\) uint16 array; got a \(120, 160\) uint8"):
            producer.publish(np.zeros((H, W), np.uint8))
        with pytest.raises(ValueError, match=r"got a \(120, 160, 3\) uint16"):
            producer.publish(np.zeros((H, W, 3), np.uint16))
        with pytest.raises(ValueError, match=r"got a \(160, 120\) uint16"):
            producer.publish(np.zeros((W, H), np.uint16))
        with pytest.raises(TypeError, match="not a numpy array"):
            producer.publish([[0] * W] * H)
        # Non-contiguous input of the right shape is fine (copied row by row).
        big = np.arange(2 * H * 2 * W, dtype=np.uint16).reshape(2 * H, 2 * W)
        assert producer.publish(big[::2, ::2]) == 1
        assert framebus.inspect(bus.name)["producer"]["frames_published"] == 1
    with pytest.raises(ValueError, match="unknown pixel format"):
        framebus.Producer(bus.name, W, H, format="yuv422")
    with pytest.raises(ValueError, match="significant_bits applies"):
        framebus.Producer(bus.name, W, H, format="bgr8", significant_bits=12)


def test_a_slot_view_outliving_close_stays_readable(bus):
    p = framebus.Producer(bus.name, W, H)
    with p.slot() as buf:
        buf[...] = 5
    p.close()
    assert not bus.shm_path.exists()
    assert int(buf[0, 0]) == 5  # the mapping lives as long as the view
    del buf  # the last view: the Rust producer goes, and its lock with it
    with framebus.Producer(bus.name, W, H) as again:
        assert again.publish(np.zeros((H, W), np.uint8)) == 1


def test_second_producer_is_refused_and_close_cleans_up(bus):
    p = framebus.Producer(bus.name, W, H)
    with pytest.raises(framebus.BusBusy):
        framebus.Producer(bus.name, W, H)
    assert bus.shm_path.exists()
    p.close()
    assert p.closed and not bus.shm_path.exists()
    with pytest.raises(framebus.ProducerClosed):
        p.publish(np.zeros((H, W), np.uint8))
    # The bus can be created again at once.
    with framebus.Producer(bus.name, W, H, format="rgb8") as again:
        assert again.publish(np.zeros((H, W, 3), np.uint8)) == 1


def test_sdk_callback_example_publishes_mono12(bus):
    """python/examples/sdk_callback_12bit.py: a callback on the camera's own
    thread publishes 12-bit frames that a Rust and a Python consumer read."""
    example = bus.spawn(
        [sys.executable, PYTHON_DIR / "examples" / "sdk_callback_12bit.py",
         "--bus", bus.name, "--size", "64x48", "--fps", "100", "--seconds", "30"],
        "example",
    )
    example.wait_line(lambda l: l.startswith("publishing 64x48 mono12"), 20, "the example's start")
    assert framebus.inspect(bus.name)["geometry"]["significant_bits"] == 12
    rust = bus.rust_consumer("--algo", "mean", "--frames", "5", "--json")
    assert rust.wait_exit(20) == 0, rust.describe()
    assert rust.last_json()["frames"] == 5
    with framebus.Consumer(bus.name) as consumer:
        frame = consumer.next_frame(timeout=10)
        assert frame.format == "gray16" and frame.significant_bits == 12
        assert frame.array.dtype == np.uint16 and int(frame.array.max()) <= 4095
        frame.release()


@pytest.mark.parametrize("fmt", ["gray8", "gray16", "bgr8", "rgb8"])
def test_typed_arrays_from_a_rust_producer(bus, fmt):
    """A Rust producer process in each format: ``frame.array`` has the
    format's shape and dtype, read-only and zero-copy; ``copy()`` and
    ``to_rgb()`` agree with the oracle."""
    bus.produce(size=f"{W}x{H}", fps=100, extra=("--format", fmt))
    shape = (H, W, 3) if fmt in ("bgr8", "rgb8") else (H, W)
    dtype = np.uint16 if fmt == "gray16" else np.uint8
    with framebus.Consumer(bus.name) as consumer:
        frame = consumer.next_frame(timeout=10)
        assert frame.format == fmt and frame.shape == shape
        a = frame.array
        assert a.shape == shape and a.dtype == dtype and not a.flags.writeable
        assert isinstance(a.base, framebus.FramePin)
        want = expected_frame_in(frame.seq, W, H, fmt)
        np.testing.assert_array_equal(a, want)
        c = frame.copy()
        np.testing.assert_array_equal(c.array, want)
        assert c.array.flags.writeable and c.array.dtype == dtype
        gray = expected_frame_in(frame.seq, W, H, "gray8").astype(np.uint32)
        if fmt in ("bgr8", "rgb8"):
            rgb = expected_frame_in(frame.seq, W, H, "rgb8")
        elif fmt == "gray16":
            rgb = np.repeat(((gray * 257) >> 8).astype(np.uint8)[..., None], 3, axis=2)
        else:
            rgb = np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
        np.testing.assert_array_equal(frame.to_rgb(), rgb)
        np.testing.assert_array_equal(c.to_rgb(), rgb)
        del a
        frame.release()


def _start_previous_producer(bus, kind):
    """A producer process of ``kind`` ("rust": ``framebus produce``;
    "python": tests/producer_proc.py) on ``bus``, ready, 320x240 gray8."""
    if kind == "rust":
        return bus.produce(size="320x240", fps=100, pins=2, max_consumers=4)
    p = bus.spawn([sys.executable, PRODUCER_SCRIPT, "--bus", bus.name, "--mode", "serve"], "py-producer")
    p.wait_line(lambda l: l.startswith(f"ready bus={bus.name} "), 20, "the Python producer's ready line")
    return p


@pytest.mark.parametrize("previous", ["rust", "python"])
def test_python_producer_takes_over_the_bus_of_a_sigkilled_producer(bus, previous):
    """As ``framebus produce`` does: a bus whose producer died (SIGKILL: no
    cleanup, the object, the lock object and the FIFOs stay) is stale, and a
    new Python producer takes it over; a consumer of the dead bus re-attaches
    to the new one by itself, and new consumers read correct frames."""
    old = _start_previous_producer(bus, previous)
    with framebus.Consumer(bus.name, name="py-survivor") as c:
        first = c.next_frame(timeout=10)
        assert first is not None and first_mismatch(first.array, first.seq) is None
        old_instance = first.instance_id
        first.release()
        snap = framebus.inspect(bus.name)
        assert snap["producer"]["pid"] == old.pid and snap["producer"]["alive"], snap["producer"]

        os.kill(old.pid, signal.SIGKILL)
        assert old.wait_exit(10) == -signal.SIGKILL
        # Stale: the object and the lock object are left behind, nobody
        # holds the producer's liveness token.
        assert bus.shm_path.exists()
        assert os.path.exists(f"/dev/shm/.framebus-lock.{bus.name}")
        snap = framebus.inspect(bus.name)
        assert snap["producer"]["pid"] == old.pid and not snap["producer"]["alive"], snap["producer"]

        with framebus.Producer(bus.name, 320, 240, max_consumers=4) as p:
            snap = framebus.inspect(bus.name)
            assert snap["producer"]["pid"] == os.getpid(), snap["producer"]
            assert snap["producer"]["alive"] and snap["producer"]["state"] == "running", snap["producer"]
            assert int(snap["instance_id"], 16) != old_instance
            assert snap["producer"]["frames_published"] == 0
            # The consumer of the dead bus re-attaches to the new one (it
            # waits for frames; publish until it has one, bounded).
            deadline = time.monotonic() + 30
            got = None
            n = 0
            while got is None:
                assert time.monotonic() < deadline, "the old consumer did not re-attach"
                n += 1
                assert p.publish(expected_frame_in(n, 320, 240)) == n
                got = c.next_frame(timeout=0.05)
            with got:
                assert got.instance_id != old_instance
                assert 1 <= got.seq <= n
                assert first_mismatch(got.array, got.seq) is None
            assert c.reattached >= 1
            # A Rust consumer started now reads the new bus, frame for frame.
            rust = bus.rust_consumer("--algo", "verify", "--frames", "10", "--json", "--wait", "10")
            # (Its first frame may be the newest one already there.)
            _publish_until_from(p, [rust], n + 1)
            assert rust.wait_exit(10) == 0, rust.describe()
            r = rust.last_json()
            assert r["frames"] == 10 and r["bad_frames"] == 0, r
        # Closing the new producer removes everything.
        assert not bus.shm_path.exists()
        assert not os.path.exists(f"/dev/shm/.framebus-lock.{bus.name}")


def _publish_until_from(producer, procs, first_seq, deadline_s=60.0):
    """Like ``_publish_until`` for gray8 320x240, numbering from ``first_seq``."""
    deadline = time.monotonic() + deadline_s
    n = first_seq - 1
    while any(p.popen.poll() is None for p in procs):
        assert time.monotonic() < deadline, "; ".join(p.describe() for p in procs)
        n += 1
        assert producer.publish(expected_frame_in(n, 320, 240)) == n
        time.sleep(0.005)  # pacing, like a camera; not a synchronisation


@pytest.mark.parametrize("live", ["rust", "python"])
def test_python_producer_is_refused_on_a_bus_whose_producer_lives(bus, live):
    """A live producer (a ``framebus produce`` process or a Python one)
    keeps its bus: a Python producer on the same name raises
    ``framebus.BusBusy`` naming that producer's pid, and nothing of the live
    bus changes: it goes on publishing to its consumers."""
    owner = _start_previous_producer(bus, live)
    before = framebus.inspect(bus.name)
    with pytest.raises(framebus.BusBusy) as e:
        framebus.Producer(bus.name, 320, 240)
    assert isinstance(e.value, framebus.FramebusError)
    assert e.value.bus == bus.name
    assert e.value.pid == owner.pid
    assert str(e.value) == (
        f'bus "{bus.name}" is already produced by process {owner.pid}: '
        "stop that producer first or pick another --bus"
    )
    # The CLI refuses with the same words.
    code, _, err = bus.cli("produce", "--bus", bus.name, "--size", "64x32")
    assert code != 0 and str(e.value) in err, err
    # The live bus is untouched and keeps serving frames.
    after = framebus.inspect(bus.name)
    assert after["instance_id"] == before["instance_id"]
    assert after["producer"]["pid"] == owner.pid and after["producer"]["alive"]
    rust = bus.rust_consumer("--algo", "verify", "--frames", "10", "--json", "--wait", "10")
    assert rust.wait_exit(30) == 0, rust.describe()
    r = rust.last_json()
    assert r["frames"] == 10 and r["bad_frames"] == 0 and r["reattached"] == 0, r
    assert owner.popen.poll() is None, owner.describe()


def test_rust_producer_is_refused_on_a_python_producers_bus(bus):
    with framebus.Producer(bus.name, 64, 32) as p:
        code, _, err = bus.cli("produce", "--bus", bus.name, "--size", "64x32")
        assert code != 0
        assert f"is already produced by process {os.getpid()}" in err, err
        assert p.publish(np.zeros((32, 64), np.uint8)) == 1
        assert framebus.inspect(bus.name)["producer"]["pid"] == os.getpid()
