"""In-process tests: frames are the fake pattern, views are zero-copy and
read-only, pins live exactly as long as frames and views, budgets raise."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import framebus
from fb_oracle import expected_frame, first_mismatch


def stride_for(width: int) -> int:
    return (width + 63) // 64 * 64


def data_ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def mapping_of(ptr: int):
    """(path, perms) of the mapping of this process that holds address ptr."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= ptr < hi:
                return (parts[5] if len(parts) > 5 else ""), parts[1]
    return None, None


def held_slots(snap: dict, entry: int):
    return [s["index"] for s in snap["slots"] if s["pins"] & (1 << entry)]


@pytest.mark.parametrize("size", ["320x240", "100x50"])
def test_frames_match_the_pattern_and_are_views_of_the_slot(bus, size):
    width, height = (int(v) for v in size.split("x"))
    bus.produce(size=size, fps=120, pins=2)
    with framebus.Consumer(bus.name) as c:
        info = c.info
        assert (info["width"], info["height"], info["stride"]) == (width, height, stride_for(width))
        last_seq = 0
        for n, frame in enumerate(c):
            img = frame.array
            assert frame.seq > last_seq
            last_seq = frame.seq
            assert (frame.width, frame.height, frame.stride) == (width, height, stride_for(width))
            assert frame.shape == (height, width) == img.shape
            assert img.dtype == np.uint8
            assert img.strides == (frame.stride, 1)
            assert img.flags.c_contiguous == (frame.stride == width)
            # Byte for byte the frame its seq names.
            assert first_mismatch(img, frame.seq) is None
            # Zero-copy: every view is the same memory, the shared slot itself,
            # mapped read-only from /dev/shm, and its base owns the pin.
            again = frame.array
            assert again is not img
            assert data_ptr(again) == data_ptr(img)
            assert np.shares_memory(again, img)
            assert isinstance(img.base, framebus.FramePin)
            assert again.base is img.base
            assert img.base.seq == frame.seq
            path, perms = mapping_of(data_ptr(img))
            assert path == str(bus.shm_path), (path, perms)
            assert perms.startswith("r-") and "w" not in perms, perms
            # Read-only, and it cannot be made writeable.
            assert not img.flags.writeable
            with pytest.raises(ValueError):
                img[0, 0] = 1
            with pytest.raises(ValueError):
                img.flags.writeable = True
            with pytest.raises(ValueError):
                np.add(img, 1, out=img)
            if n == 39:
                break
    assert c.frames >= 40


def test_idiomatic_loop_with_two_pins(bus):
    """``for frame in bus: img = frame.array`` keeps the previous img alive
    while the next frame is taken: 2 pins. Each img stays its frame."""
    bus.produce(size="160x120", fps=200, pins=2)
    with framebus.Consumer(bus.name) as c:
        entry = c.info["entry"]
        prev = prev_img = None
        for n, frame in enumerate(c):
            if prev is not None:
                # The loop released the previous frame when it advanced...
                assert prev.released and not prev.pinned
                with pytest.raises(framebus.FrameReleasedError):
                    prev.array
                # ...but the view taken from it still shows exactly its frame.
                assert first_mismatch(prev_img, prev.seq) is None
            img = frame.array
            assert first_mismatch(img, frame.seq) is None
            if n % 10 == 0:
                assert len(held_slots(bus.inspect(), entry)) <= 2
            prev, prev_img = frame, img
            if n == 50:
                break


def test_loop_with_one_pin_when_no_view_outlives_the_iteration(bus):
    bus.produce(size="160x120", fps=200, pins=1)
    with framebus.Consumer(bus.name) as c:
        for n, frame in enumerate(c):
            assert first_mismatch(frame.array, frame.seq) is None
            img = frame.array
            assert img.sum() >= 0
            del img  # the budget-1 idiom
            if n == 30:
                break


def test_a_kept_view_on_one_pin_raises_instead_of_changing(bus):
    bus.produce(size="160x120", fps=200, pins=1)
    with framebus.Consumer(bus.name) as c:
        it = iter(c)
        frame = next(it)
        img = frame.array
        saved = img.copy()
        with pytest.raises(framebus.PinBudgetExceeded) as e:
            next(it)
        assert isinstance(e.value, framebus.FramebusError)
        assert e.value.held == 1
        # The message says what to do in Python terms.
        msg = str(e.value)
        assert msg.startswith("this consumer already holds 1 frame(s)"), msg
        assert "del img" in msg and "--pins-per-consumer 2" in msg, msg
        assert "drop a frame" not in msg, msg
        # The producer moved on meanwhile; the view did not change.
        first = frame.seq
        bus.wait_for(lambda s: s["producer"]["frames_published"] > first + 100, 10, "100 more frames")
        assert np.array_equal(img, saved)
        assert first_mismatch(img, first) is None
        del img
        nxt = next(it)  # usable again once the view is gone
        assert nxt.seq > first + 100
        assert first_mismatch(nxt.array, nxt.seq) is None


def test_views_kept_across_many_frames_stay_identical(bus):
    bus.produce(size="64x32", fps=500, pins=2)
    with framebus.Consumer(bus.name) as c:
        slot_count = c.info["slot_count"]
        first = c.next_frame(timeout=10)
        keep = first.array
        saved = keep.copy()
        seq0 = first.seq
        first.release()  # only the view holds the pin now
        taken = 0
        for frame in c:
            assert first_mismatch(frame.array, frame.seq) is None
            assert np.array_equal(keep, saved)
            taken += 1
            if taken == 150:
                break
        frame.release()  # the loop's last frame (else it stays pinned until close)
        snap = bus.inspect()
        # Every other slot was rewritten several times meanwhile.
        assert snap["producer"]["frames_published"] - seq0 > 5 * slot_count
        assert np.array_equal(keep, saved)
        assert first_mismatch(keep, seq0) is None

        # Frames held with next_frame count too: a third one is refused.
        del keep  # frees the first frame's pin
        a = c.next_frame(timeout=10)
        b = c.next_frame(timeout=10)
        assert a is not None and b is not None
        ka, kb = a.array, b.array
        with pytest.raises(framebus.PinBudgetExceeded):
            c.next_frame(timeout=10)
        target = snap["producer"]["frames_published"] + 5 * slot_count
        bus.wait_for(lambda s: s["producer"]["frames_published"] > target, 10, "more frames")
        assert first_mismatch(ka, a.seq) is None
        assert first_mismatch(kb, b.seq) is None
        del ka
        a.release()
        assert c.next_frame(timeout=10) is not None


def test_release_keeps_the_pin_while_a_view_lives(bus):
    bus.produce(size="160x120", fps=100, pins=2)
    with framebus.Consumer(bus.name) as c:
        entry = c.info["entry"]
        frame = c.next_frame(timeout=10)
        view = frame.array[10:20, 5:50]  # a view of a view: still keeps the pin
        assert frame.slot in held_slots(bus.inspect(), entry)
        frame.release()
        assert frame.released
        with pytest.raises(framebus.FrameReleasedError):
            frame.array
        with pytest.raises(framebus.FrameReleasedError):
            frame.copy()
        assert frame.slot in held_slots(bus.inspect(), entry)
        assert np.array_equal(view, expected_frame(frame.seq, 160, 120)[10:20, 5:50])
        del view
        assert frame.slot not in held_slots(bus.inspect(), entry)

        # Without views, release() unpins at once; so does dropping the frame.
        frame = c.next_frame(timeout=10)
        frame.release()
        assert held_slots(bus.inspect(), entry) == []
        frame = c.next_frame(timeout=10)
        assert held_slots(bus.inspect(), entry) == [frame.slot]
        del frame
        assert held_slots(bus.inspect(), entry) == []


def test_frame_context_manager_copy_and_rgb(bus):
    bus.produce(size="100x50", fps=100, pins=2)
    with framebus.Consumer(bus.name) as c:
        with c.next_frame(timeout=10) as frame:
            assert frame.pinned
            view = frame.array
            copy = frame.copy()
            rgb = frame.to_rgb()
        assert frame.released
        with pytest.raises(framebus.FrameReleasedError):
            frame.to_rgb()
        want = expected_frame(frame.seq, 100, 50)
        # The copy is a frame of its own: contiguous, private, writeable.
        assert copy.seq == frame.seq and copy.timestamp_ns == frame.timestamp_ns
        assert not copy.pinned and not copy.released
        assert copy.stride == 100
        carr = copy.array
        assert carr.flags.c_contiguous and carr.flags.writeable
        assert not np.shares_memory(carr, view)
        assert np.array_equal(carr, want)
        assert np.array_equal(copy.copy().array, want)
        assert rgb.shape == (50, 100, 3) and rgb.dtype == np.uint8
        assert rgb.flags.c_contiguous and not np.shares_memory(rgb, view)
        for ch in range(3):
            assert np.array_equal(rgb[:, :, ch], want)
        assert np.array_equal(copy.to_rgb(), rgb)
        # Timestamps are CLOCK_MONOTONIC, like time.monotonic_ns().
        now = time.monotonic_ns()
        assert frame.timestamp_ns <= frame.publish_ns <= now
        assert now - frame.timestamp_ns < 60e9
        copy.release()
        with pytest.raises(framebus.FrameReleasedError):
            copy.array


def test_close_ends_the_loop_and_refuses_more(bus):
    bus.produce(size="64x32", fps=100)
    with framebus.Consumer(bus.name) as c:
        frame = c.next_frame(timeout=10)
        assert frame is not None
    assert c.closed and c.info is None
    # Closing released the frames it handed out (a view would keep its pin).
    assert frame.released
    with pytest.raises(framebus.FrameReleasedError):
        frame.array
    with pytest.raises(framebus.ConsumerClosed):
        c.next_frame(timeout=1)
    assert list(c) == []
    # Leaving unregistered the consumer.
    bus.wait_for(lambda s: s["consumers"] == [], 5, "the consumer entry to be freed")


def test_close_from_another_thread_stops_a_waiting_loop(bus):
    producer = bus.produce(size="64x32", fps=100)
    c = framebus.Consumer(bus.name)
    got = []
    first = threading.Event()

    def run():
        for frame in c:
            got.append(frame.seq)
            first.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert first.wait(10), "no frame"
    os.kill(producer.pid, signal.SIGSTOP)  # no more frames: the loop waits
    c.close()
    t.join(timeout=2)
    assert not t.is_alive(), "the loop did not stop after close()"
    os.kill(producer.pid, signal.SIGCONT)


def _wait_stopped(pid, timeout=20):
    """Waits (bounded) until process ``pid`` is stopped (state T)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not stop within {timeout} s")


def test_waits_release_the_gil_and_time_out(bus):
    producer = bus.produce(size="64x32", fps=100)
    with framebus.Consumer(bus.name) as c:
        assert c.next_frame(timeout=10) is not None
        os.kill(producer.pid, signal.SIGSTOP)
        # kill() returns before the process stops: wait until it has
        # stopped, then take any frame it published meanwhile; from then on
        # no frame can come, whatever the window.
        _wait_stopped(producer.pid)
        while c.next_frame(timeout=0) is not None:
            pass
        # A timed-out wait returns None, and not before its timeout.
        t0 = time.monotonic()
        assert c.next_frame(timeout=0.3) is None
        assert time.monotonic() - t0 >= 0.25
        # While a thread waits, this one runs: the wait does not hold the
        # GIL. The waiter can only end with a frame, and a frame comes only
        # after this thread has done its work and resumed the producer; if
        # the wait held the GIL, this thread would run only once the wait
        # had timed out (30 s, a hang guard) and the waiter got None.
        started = threading.Event()
        result = []

        def wait():
            started.set()
            result.append(c.next_frame(timeout=30))

        t = threading.Thread(target=wait)
        t.start()
        assert started.wait(30)
        for _ in range(200):
            sum(range(1000))
        assert t.is_alive(), "the waiter returned before any frame came"
        os.kill(producer.pid, signal.SIGCONT)
        t.join(timeout=30)
        assert not t.is_alive()
        assert len(result) == 1 and result[0] is not None, result


def test_producer_restart_reattaches(bus):
    producer = bus.produce(size="64x32", fps=100)
    with framebus.Consumer(bus.name) as c:
        f1 = c.next_frame(timeout=10)
        inst1 = f1.instance_id
        f1.release()
        producer.popen.send_signal(signal.SIGTERM)
        assert producer.wait_exit(10) == 0
        bus.produce(size="64x32", fps=100)
        f2 = c.next_frame(timeout=10)
        assert f2 is not None and f2.instance_id != inst1
        assert first_mismatch(f2.array, f2.seq) is None
        assert c.reattached == 1


def assert_same_shape(mine, cli, path="inspect"):
    """``mine`` has exactly ``cli``'s fields, recursively, each of the same
    type (``int`` is not ``float``, ``None`` is only ``None``): what
    ``json.loads`` makes of ``inspect --json``."""
    assert type(mine) is type(cli), f"{path}: {type(mine).__name__} in Python, {type(cli).__name__} in the CLI"
    if isinstance(cli, dict):
        assert mine.keys() == cli.keys(), (
            f"{path}: only in Python {sorted(mine.keys() - cli.keys())}, "
            f"only in the CLI {sorted(cli.keys() - mine.keys())}"
        )
        for k in cli:
            assert_same_shape(mine[k], cli[k], f"{path}[{k!r}]")
    elif isinstance(cli, list):
        assert len(mine) == len(cli), f"{path}: {len(mine)} items in Python, {len(cli)} in the CLI"
        for i, (a, b) in enumerate(zip(mine, cli)):
            assert_same_shape(a, b, f"{path}[{i}]")


def write_bridge_stats(bus, role, pid, alive):
    """A stats file of a ``framebus bridge`` end on ``bus`` where ``inspect``
    looks for them (crates/bridge/src/stats.rs): every field, as a bridge
    writes it. ``alive``: this process holds the bridge's liveness token
    (an OFD lock on byte 0 of the lock file beside it); returns its
    descriptor (close it to let the token go), else None."""
    import fcntl
    import json
    import struct

    d = bus.runtime_dir / "framebus" / ".bridge"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{bus.name}.{role}.{pid}.json"
    now_ms = int(time.time() * 1000)
    stats = {
        "role": role, "bus": bus.name, "key": f"framebus/{bus.name}", "pid": pid,
        "endpoints": ["listen tcp/127.0.0.1:7447"], "peers": 1, "compression": "lz4",
        "frames_sent": 10, "bytes_sent": 5000, "frames_skipped": 1, "frames_unmatched": 0,
        "send_errors": 0, "frames_received": 0, "bytes_received": 0, "frames_published": 0,
        "frames_lost": 0, "dropped_overrun": 0, "dropped_invalid": 0, "dropped_stale": 0,
        "buses_created": 0, "last_seq": 42, "fps": 12.5, "bytes_per_s": 2048.0,
        "last_error": None if alive else "peer went away",
        "started_unix_ms": now_ms - 5000,
        "updated_unix_ms": now_ms - (0 if alive else 1000),  # no tie in the order
    }
    (d / name).write_text(json.dumps(stats))
    if not alive:
        return None
    fd = os.open(d / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    flock = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, flock)
    return fd


def test_inspect_matches_the_cli(bus):
    bus.produce(size="100x50", fps=50, pins=2)
    token = write_bridge_stats(bus, "out", 4242, alive=True)
    write_bridge_stats(bus, "in", 4343, alive=False)
    try:
        with framebus.Consumer(bus.name, name="inspected") as c:
            frame = c.next_frame(timeout=10)
            mine = framebus.inspect(bus.name)
            cli = bus.inspect()
            # Field for field, with the same types.
            assert_same_shape(mine, cli)
            assert mine["geometry"] == cli["geometry"]
            assert mine["instance_id"] == cli["instance_id"]
            assert mine["producer"]["pid"] == cli["producer"]["pid"]
            me = [e for e in mine["consumers"] if e["pid"] == os.getpid()]
            assert len(me) == 1 and me[0]["name"] == "inspected"
            assert me[0]["index"] == c.info["entry"]
            assert me[0]["pinned_slots"] == [frame.slot]
            # The bridges: both files, the same values (but their age).
            assert len(cli["bridges"]) == 2, cli["bridges"]

            def ageless(bridges):
                return sorted(({k: v for k, v in b.items() if k != "age_ms"} for b in bridges),
                              key=lambda b: b["role"])

            assert ageless(mine["bridges"]) == ageless(cli["bridges"])
            alive = {b["role"]: b["alive"] for b in mine["bridges"]}
            assert alive == {"out": True, "in": False}
    finally:
        os.close(token)
