"""fork(): a consumer belongs to the process that attached it.

A child made by ``os.fork()`` inherits a copy of the parent's consumer, its
frames and their numpy views. Every call on that inherited consumer raises
``framebus.ForkedConsumerError``, and nothing the child does with its copies,
nor its exit, touches the parent's registration, pins or views. A child that
wants frames creates its own ``framebus.Consumer``: a fresh registration,
which the producer reclaims once the child is gone.

The child reports to the parent (this pytest process) through a pipe and
leaves with ``os._exit``; every wait is bounded and the child is killed and
reaped even when a test fails.
"""

import json
import os
import select
import signal
import time
import traceback

import numpy as np
import pytest

import framebus
from fb_oracle import first_mismatch

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
