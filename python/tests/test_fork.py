"""fork(): a consumer belongs to the process that attached it.

A child made by ``os.fork()`` inherits a copy of the parent's consumer, its
frames and their numpy views. Every call on that inherited consumer raises
``framebus.ForkedConsumerError``, and nothing the child does with its copies,
nor its exit, touches the parent's registration, pins or views. A child that
wants frames creates its own ``framebus.Consumer``: a fresh registration,
which the producer reclaims once the child is gone.

A producer belongs to its process the same way: in a forked child
``publish``, ``slot()`` and ``housekeeping()`` raise
``framebus.ForkedProducerError``, its getters answer without blocking, and
closing or dropping it there leaves the parent's bus, lock, FIFOs and
consumers alone.

The child reports to the parent (this pytest process) through a pipe and
leaves with ``os._exit``; every wait is bounded and the child is killed and
reaped even when a test fails.
"""

import gc
import json
import os
import select
import signal
import threading
import time
import traceback

import numpy as np
import pytest

import framebus
from fb_oracle import expected_frame_in, first_mismatch

# Generous bounds for events, never expectations about speed.
REPORT_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0
RECLAIM_TIMEOUT = 60.0
FRAME_TIMEOUT = 10.0


class ForkedChild:
    """Runs ``body(send, wait_go)`` in a child made by ``os.fork()``.

    In the child, ``send(obj)`` writes ``obj`` as one JSON line to the
    parent and ``wait_go(timeout)`` blocks until the parent calls ``go()``
    (or goes away). The child always ends with ``os._exit``: 0 if ``body``
    returned, 2 if it raised (the traceback is sent to the parent first), so
    it never runs pytest's code. The parent reads reports with ``recv``,
    waits for the exit with ``wait_exit`` (a pidfd, no polling) and must call
    ``kill()`` in a ``finally``.
    """

    def __init__(self, body):
        up_r, up_w = os.pipe()  # child -> parent: JSON lines
        down_r, down_w = os.pipe()  # parent -> child: "go"
        pid = os.fork()
        if pid == 0:  # the child
            code = 2
            try:
                os.close(up_r)
                os.close(down_w)
                body(lambda obj: _send(up_w, obj), lambda timeout: _wait_go(down_r, timeout))
                code = 0
            except BaseException as e:  # noqa: BLE001 - everything goes to the parent
                try:
                    _send(up_w, {"child_error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                os._exit(code)
        os.close(up_w)
        os.close(down_r)
        self.pid = pid
        self._up = up_r
        self._down = down_w
        self._buf = b""
        self._pidfd = os.pidfd_open(pid)
        self.status = None  # the exit code once reaped

    def recv(self, timeout: float = REPORT_TIMEOUT):
        """The child's next JSON report (bounded)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no report from child {self.pid} within {timeout} s")
            ready, _, _ = select.select([self._up], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._up, 65536)
            if not chunk:
                code = self.wait_exit(EXIT_TIMEOUT)
                raise AssertionError(f"child {self.pid} exited ({code}) without a report")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        report = json.loads(line)
        if "child_error" in report:
            raise AssertionError(f"the child failed: {report['child_error']}\n{report['traceback']}")
        return report

    def go(self):
        """Lets a child blocked in ``wait_go`` continue."""
        os.write(self._down, b"g")

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Waits (bounded) for the child to exit; its exit code."""
        if self.status is None:
            ready, _, _ = select.select([self._pidfd], [], [], timeout)
            if not ready:
                raise AssertionError(f"child {self.pid} still running after {timeout} s")
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def kill(self):
        """Kills and reaps the child if it is still there; closes the pipes."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)
        for fd in (self._up, self._down, self._pidfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._up = self._down = self._pidfd = -1


def _send(fd: int, obj) -> None:
    data = (json.dumps(obj) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def _wait_go(fd: int, timeout: float) -> None:
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        raise TimeoutError(f"the parent did not say go within {timeout} s")
    os.read(fd, 1)  # b"g", or b"" if the parent is gone: leave either way


def _entry(snap: dict, index: int):
    """The consumer entry ``index`` of an inspect snapshot, or None."""
    return next((c for c in snap["consumers"] if c["index"] == index), None)


def _assert_holds(snap: dict, index: int, pid: int, slot: int, what: str):
    """Entry ``index`` is ``pid``'s, connected, and pins ``slot``."""
    e = _entry(snap, index)
    assert e is not None, f"{what}: entry {index} is not listed: {snap['consumers']}"
    assert e["pid"] == pid, (what, e)
    assert e["state"] == "connected", (what, e)
    assert slot in e["pinned_slots"], (what, e)
    assert snap["slots"][slot]["pins"] & (1 << index), (what, snap["slots"][slot])


def _wait_connected(bus, index: int, pid: int):
    """Waits (bounded) until the producer has connected to entry ``index``
    (opened its FIFO; the entry is ``ready`` until then)."""
    return bus.wait_for(
        lambda s: any(e["index"] == index and e["pid"] == pid and e["state"] == "connected" for e in s["consumers"]),
        30,
        f"entry {index} of pid {pid} to be connected",
    )


def _take_new_frames(c, after_seq: int, count: int):
    """``count`` frames from ``c``, each newer than the last and exactly the
    fake camera's pattern, each released before the next is taken."""
    seqs = []
    last = after_seq
    for _ in range(count):
        frame = c.next_frame(timeout=FRAME_TIMEOUT)
        assert frame is not None, f"no frame within {FRAME_TIMEOUT} s after seq {last}"
        with frame:
            assert frame.seq > last, (frame.seq, last)
            assert first_mismatch(frame.array, frame.seq) is None, frame.seq
            last = frame.seq
        seqs.append(last)
    return seqs


# Every way to use a consumer; each must refuse in a forked child.
_CONSUMER_CALLS = {
    "next_frame(timeout=0)": lambda c: c.next_frame(timeout=0),
    "next_frame(timeout=0.5)": lambda c: c.next_frame(timeout=0.5),
    "next_frame()": lambda c: c.next_frame(),
    "next(consumer)": lambda c: next(c),
    "for frame in consumer": lambda c: [f for _, f in zip(range(1), c)],
}


@pytest.mark.parametrize("child_drops_its_copies", [False, True], ids=["exit", "drop-then-exit"])
def test_a_forked_child_cannot_use_the_parents_consumer_and_leaves_it_alone(bus, child_drops_its_copies):
    bus.produce(size="160x120", fps=200, pins=2)
    with framebus.Consumer(bus.name, name="py-fork-parent") as c:
        entry = c.info["entry"]
        slot_count = c.info["slot_count"]
        frame = c.next_frame(timeout=FRAME_TIMEOUT)
        assert frame is not None
        view = frame.array
        saved = view.copy()
        seq, slot = frame.seq, frame.slot
        assert first_mismatch(view, seq) is None
        _wait_connected(bus, entry, os.getpid())
        _assert_holds(framebus.inspect(bus.name), entry, os.getpid(), slot, "before the fork")

        def child(send, wait_go):
            nonlocal view, frame
            results = {}
            for label, call in _CONSUMER_CALLS.items():
                try:
                    call(c)
                except framebus.ForkedConsumerError as e:
                    results[label] = {"refused": True, "message": str(e), "bus": getattr(e, "bus", None)}
                except BaseException as e:  # noqa: BLE001 - reported, the parent asserts
                    results[label] = {"refused": False, "raised": f"{type(e).__module__}.{type(e).__name__}: {e}"}
                else:
                    results[label] = {"refused": False, "raised": "nothing"}
            # The child's copies show the parent's slot (the parent holds it).
            copy_intact = bool(np.array_equal(view, saved))
            if child_drops_its_copies:
                # Dropping the copies, and closing the consumer, must leave
                # the parent's pin and registration alone.
                del view
                frame.release()
                del frame
                c.close()
            send({"pid": os.getpid(), "calls": results, "copy_intact": copy_intact})

        kid = ForkedChild(child)
        try:
            report = kid.recv()
            assert kid.wait_exit() == 0
        finally:
            kid.kill()

        assert report["pid"] == kid.pid
        assert report["copy_intact"]
        for label, r in report["calls"].items():
            assert r["refused"], f"{label} in the forked child: expected ForkedConsumerError, got {r['raised']}"
            assert "fork" in r["message"].lower(), (label, r["message"])
            assert bus.name in r["message"], (label, r["message"])
            assert r["bus"] == bus.name, (label, r)

        # The parent is undisturbed: its registration, its pin and its view.
        assert not c.closed
        assert frame.pinned
        assert np.array_equal(view, saved)
        snap = framebus.inspect(bus.name)
        _assert_holds(snap, entry, os.getpid(), slot, "after the child exited")
        # The kernel still sees the parent's liveness token held (the child
        # shared its open file description and closed its copy on exit).
        assert _entry(bus.inspect(), entry)["alive"]
        assert kid.pid not in [e["pid"] for e in snap["consumers"]], snap["consumers"]

        # The producer goes round every other slot several times; the pinned
        # one keeps its frame, and the parent keeps receiving new ones.
        published = snap["producer"]["frames_published"]
        bus.wait_for(
            lambda s: s["producer"]["frames_published"] >= published + 4 * slot_count,
            30,
            "the producer to go round the slots",
        )
        seqs = _take_new_frames(c, seq, 5)
        assert len(set(seqs)) == 5, seqs
        assert np.array_equal(view, saved), "the held view changed"
        assert first_mismatch(view, seq) is None
        _assert_holds(framebus.inspect(bus.name), entry, os.getpid(), slot, "after new frames")

        del view
        frame.release()


def test_a_child_with_its_own_consumer_gets_frames_and_its_entry_is_reclaimed(bus):
    bus.produce(size="160x120", fps=200, pins=2)
    with framebus.Consumer(bus.name, name="py-fork-parent") as c:
        entry = c.info["entry"]
        frame = c.next_frame(timeout=FRAME_TIMEOUT)
        assert frame is not None
        view = frame.array
        saved = view.copy()
        seq, slot = frame.seq, frame.slot
        _wait_connected(bus, entry, os.getpid())

        def child(send, wait_go):
            # The child's own registration. Deliberately not closed: the
            # child exits (os._exit) registered and holding a pin, and the
            # producer must reclaim both.
            own = framebus.Consumer(bus.name, name="py-fork-child")
            seqs = _take_new_frames(own, 0, 5)
            held = own.next_frame(timeout=FRAME_TIMEOUT)
            held_view = held.array
            send(
                {
                    "pid": os.getpid(),
                    "entry": own.info["entry"],
                    "seqs": seqs,
                    "frames": own.frames,
                    "held_slot": held.slot,
                    "held_ok": first_mismatch(held_view, held.seq) is None,
                }
            )
            wait_go(REPORT_TIMEOUT)

        kid = ForkedChild(child)
        try:
            r = kid.recv()
            assert r["pid"] == kid.pid
            assert r["entry"] != entry, "the child's consumer must be a fresh registration"
            assert r["frames"] == 6 and r["held_ok"], r
            assert r["seqs"] == sorted(set(r["seqs"])) and len(r["seqs"]) == 5, r

            _wait_connected(bus, r["entry"], kid.pid)
            snap = framebus.inspect(bus.name)
            _assert_holds(snap, r["entry"], kid.pid, r["held_slot"], "the child's own consumer")
            assert _entry(snap, r["entry"])["name"] == "py-fork-child"
            _assert_holds(snap, entry, os.getpid(), slot, "the parent, beside the child")

            kid.go()
            assert kid.wait_exit() == 0
        finally:
            kid.kill()

        child_bit = 1 << r["entry"]
        snap = bus.wait_for(
            lambda s: _entry(s, r["entry"]) is None and not any(x["pins"] & child_bit for x in s["slots"]),
            RECLAIM_TIMEOUT,
            f"the exited child's entry {r['entry']} and its pin to be reclaimed",
        )
        assert kid.pid not in [e["pid"] for e in snap["consumers"]], snap["consumers"]

        # The parent was never disturbed.
        _assert_holds(snap, entry, os.getpid(), slot, "after the child's entry was reclaimed")
        assert np.array_equal(view, saved)
        _take_new_frames(c, seq, 3)
        assert np.array_equal(view, saved)
        del view
        frame.release()


# --- The producer -----------------------------------------------------------

PW, PH = 160, 120


def _publish_taken(producer, seq: int, consumers):
    """Publishes the pattern frame ``seq`` and waits (bounded) until every
    consumer process of ``consumers`` (pid: Proc) has taken it, or exited
    (after its last frame): frames go out in lock-step with the consumers,
    so none is skipped or left unread."""
    assert producer.publish(expected_frame_in(seq, PW, PH)) == seq
    deadline = time.monotonic() + FRAME_TIMEOUT
    while True:
        taken = {e["pid"]: e["last_seq"] for e in framebus.inspect(producer.bus)["consumers"]}
        if all(taken.get(pid, 0) >= seq or proc.popen.poll() is not None for pid, proc in consumers.items()):
            return
        assert time.monotonic() < deadline, f"frame {seq} not taken within {FRAME_TIMEOUT} s: {taken}"
        time.sleep(0.002)


def _attached_pid(proc) -> int:
    """The pid on a consumer's ``attached ...`` line (Rust: ``attached bus=B
    entry=N pid=P``; tests/consumer_proc.py: ``attached pid=P entry=N``)."""
    line = proc.wait_line(lambda l: l.startswith("attached "), 20, "the consumer's attached line")
    return int(dict(kv.split("=", 1) for kv in line.split()[1:])["pid"])


# Every way to publish with a producer; each must refuse in a forked child.
_PRODUCER_CALLS = {
    "publish(array)": lambda p: p.publish(expected_frame_in(999, PW, PH)),
    "with slot()": lambda p: p.slot().__enter__(),
    "housekeeping()": lambda p: p.housekeeping(),
}


@pytest.mark.parametrize("child_ends_with", ["close", "gc"])
def test_a_forked_child_cannot_publish_and_leaves_the_parents_bus_alone(bus, child_ends_with):
    """A child fork()ed from a process with a live ``framebus.Producer``:
    publishing from the child raises ``framebus.ForkedProducerError``, and
    the child closing its copy (``close()``) or letting it be garbage
    collected, then exiting, does nothing to the parent's bus: the object,
    the lock and the FIFOs stay, a second producer is still refused, and the
    parent goes on publishing to its Rust and Python consumers, which never
    lose a frame (0 bad frames, no re-attach)."""
    total = 20
    before_fork = 5
    # Not a with-block: the with statement would keep a reference, and the
    # "gc" child must drop the last one.
    producer = framebus.Producer(bus.name, PW, PH, fps=100, max_consumers=4)
    try:
        rust = bus.rust_consumer("--algo", "verify", "--frames", str(total), "--json", "--wait", "10")
        py = bus.py_consumer("--frames", str(total), "--duration", "120")
        consumers = {_attached_pid(rust): rust, _attached_pid(py): py}
        for seq in range(1, before_fork + 1):
            _publish_taken(producer, seq, consumers)
        snap = framebus.inspect(bus.name)
        trigger_dir = snap["trigger_dir"]
        fifos = sorted(os.listdir(trigger_dir))
        assert len(fifos) >= 2, fifos
        lock = f"/dev/shm/.framebus-lock.{bus.name}"

        def child(send, wait_go):
            nonlocal producer
            results = {}
            for label, call in _PRODUCER_CALLS.items():
                try:
                    call(producer)
                except framebus.ForkedProducerError as e:
                    results[label] = {"refused": True, "message": str(e), "bus": getattr(e, "bus", None)}
                except BaseException as e:  # noqa: BLE001 - reported, the parent asserts
                    results[label] = {"refused": False, "raised": f"{type(e).__module__}.{type(e).__name__}: {e}"}
                else:
                    results[label] = {"refused": False, "raised": "nothing"}
            if child_ends_with == "close":
                producer.close()
                producer.close()  # idempotent
            del producer
            gc.collect()
            send({"pid": os.getpid(), "calls": results})
            # The exit code tells the parent too: 0 only if every call refused.
            if not all(r["refused"] for r in results.values()):
                raise AssertionError(f"a call was not refused: {results}")

        kid = ForkedChild(child)
        try:
            report = kid.recv()
            assert kid.wait_exit() == 0
        finally:
            kid.kill()

        assert report["pid"] == kid.pid
        for label, r in report["calls"].items():
            assert r["refused"], f"{label} in the forked child: expected ForkedProducerError, got {r['raised']}"
            assert "fork" in r["message"].lower(), (label, r["message"])
            assert bus.name in r["message"], (label, r["message"])
            assert r["bus"] == bus.name, (label, r)

        # The bus is the parent's as before: object, lock, FIFOs, state.
        assert bus.shm_path.exists()
        assert os.path.exists(lock)
        assert sorted(os.listdir(trigger_dir)) == fifos
        assert not producer.closed
        snap = framebus.inspect(bus.name)
        assert snap["producer"]["pid"] == os.getpid()
        assert snap["producer"]["alive"] and snap["producer"]["state"] == "running", snap["producer"]
        assert snap["producer"]["frames_published"] == before_fork
        assert {e["pid"] for e in snap["consumers"]} == set(consumers), snap["consumers"]
        # The lock is still held: no second producer.
        with pytest.raises(framebus.BusBusy) as e:
            framebus.Producer(bus.name, PW, PH)
        assert e.value.pid == os.getpid()

        # The parent goes on publishing; both consumers get every frame.
        for seq in range(before_fork + 1, total + 1):
            _publish_taken(producer, seq, consumers)
        assert rust.wait_exit(30) == 0, rust.describe()
        assert py.wait_exit(30) == 0, py.describe()
    finally:
        producer.close()
    r, p = rust.last_json(), py.last_json()
    assert (r["frames"], r["bad_frames"], r["reattached"], r["skipped"]) == (total, 0, 0, 0), r
    assert (p["frames"], p["bad_frames"]) == (total, 0), p
    assert not bus.shm_path.exists()


def test_a_child_forked_while_another_thread_publishes_never_blocks(bus):
    """A thread of the parent publishes without pause (the producer's lock
    is held most of the time) while the main thread forks, again and again.
    In each child, whatever the lock's state at the fork: the getters and
    ``repr`` answer, publish and ``slot()`` raise ForkedProducerError, and
    ``close()`` and garbage collection return, all without blocking (the
    thread holding the lock does not exist in the child). The parent's bus
    keeps going."""
    forks = 20
    child_timeout = 20.0  # the child does a few calls: a generous bound
    # Frames big enough that each publish holds the lock for a while (the
    # copy), so that most forks happen while it is held.
    w, h = 1280, 960
    producer = framebus.Producer(bus.name, w, h, max_consumers=2)
    stop = threading.Event()
    errors = []

    def publish_forever():
        frame = expected_frame_in(1, w, h)
        try:
            while not stop.is_set():
                producer.publish(frame)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    publisher = threading.Thread(target=publish_forever, name="publisher")
    publisher.start()
    try:
        deadline = time.monotonic() + FRAME_TIMEOUT
        while producer.frames == 0:
            assert time.monotonic() < deadline and not errors, f"nothing published: {errors}"
            time.sleep(0.001)
        for i in range(forks):
            # No call on the producer between the forks: one that waited
            # for the lock here would make the fork find it free.

            def child(send, wait_go):
                nonlocal producer
                report = {
                    "repr": repr(producer),
                    "closed": producer.closed,
                    "frames": producer.frames,
                    "publish_ns_total": producer.publish_ns_total,
                }
                for label, call in _PRODUCER_CALLS.items():
                    try:
                        call(producer)
                        report[label] = "nothing raised"
                    except framebus.ForkedProducerError:
                        report[label] = "refused"
                producer.close()
                del producer
                gc.collect()
                send(report)

            kid = ForkedChild(child)
            try:
                r = kid.recv(child_timeout)
                assert kid.wait_exit(child_timeout) == 0
            finally:
                kid.kill()
            assert r["repr"].startswith(f"<framebus.Producer bus={bus.name!r}".replace("'", '"')), r
            assert r["closed"] is False and r["frames"] > 0, (i, r)
            assert all(r[label] == "refused" for label in _PRODUCER_CALLS), (i, r)
        assert not errors, errors
        assert publisher.is_alive()
        published = producer.frames
        assert published > 0
        with framebus.Consumer(bus.name) as c:
            seq = published
            for _ in range(3):  # new frames keep coming
                frame = c.next_frame(timeout=FRAME_TIMEOUT)
                assert frame is not None and frame.seq >= seq
                assert first_mismatch(frame.array, 1) is None
                seq = frame.seq + 1
                frame.release()
    finally:
        stop.set()
        publisher.join(timeout=30)
        producer.close()
    assert not errors, errors
    assert not bus.shm_path.exists()


def test_a_slot_block_left_in_a_forked_child_publishes_nothing(bus):
    """Fork inside ``with producer.slot() as buf:``: the child leaving the
    block raises ForkedProducerError and neither publishes the slot nor
    gives it back (the parent is still writing it); the parent's block then
    publishes it as usual."""
    with framebus.Producer(bus.name, PW, PH, max_consumers=2) as producer, \
            framebus.Consumer(bus.name) as c:
        assert producer.publish(expected_frame_in(1, PW, PH)) == 1
        with c.next_frame(timeout=FRAME_TIMEOUT) as f:
            assert f.seq == 1
        block = producer.slot()
        buf = block.__enter__()
        buf[...] = expected_frame_in(2, PW, PH)
        writing = [s["index"] for s in framebus.inspect(bus.name)["slots"] if s["writing"]]
        assert len(writing) == 1, writing

        def child(send, wait_go):
            nonlocal buf, block
            report = {}
            try:
                block.__exit__(None, None, None)
                report["exit"] = "nothing raised"
            except framebus.ForkedProducerError as e:
                report["exit"] = "refused"
                report["message"] = str(e)
            report["read_only"] = not buf.flags.writeable
            del buf, block
            gc.collect()
            send(report)

        kid = ForkedChild(child)
        try:
            r = kid.recv()
            assert kid.wait_exit() == 0
        finally:
            kid.kill()
        assert r["exit"] == "refused" and bus.name in r["message"], r
        assert r["read_only"], r
        # Nothing was published or given back from the child.
        snap = framebus.inspect(bus.name)
        assert snap["producer"]["frames_published"] == 1
        assert snap["latest"]["seq"] == 1
        assert [s["index"] for s in snap["slots"] if s["writing"]] == writing
        assert buf.flags.writeable
        # The parent's block publishes it.
        assert block.__exit__(None, None, None) is False
        del buf
        with c.next_frame(timeout=FRAME_TIMEOUT) as f:
            assert f.seq == 2 and f.slot == writing[0]
            assert first_mismatch(f.array, 2) is None
        assert producer.frames == 2
