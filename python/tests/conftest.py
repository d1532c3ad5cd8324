"""Harness: a unique bus and a private FRAMEBUS_RUNTIME_DIR per test, real
``framebus`` processes, every wait bounded, and cleanup (processes, the
shared memory object) even when a test fails."""

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
FRAMEBUS_BIN = Path(
    os.environ.get("FRAMEBUS_BIN", str(PYTHON_DIR.parent / "target" / "release" / "framebus"))
)
CONSUMER_SCRIPT = HERE / "consumer_proc.py"

_counter = itertools.count()


class Proc:
    """A child process whose stdout lines are collected by a thread (stderr
    goes to a file, shown when a test fails)."""

    def __init__(self, args, stderr_path: Path, env=None):
        self.args = [str(a) for a in args]
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        self.popen = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self.lines = []
        self._queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)  # EOF

    @property
    def pid(self):
        return self.popen.pid

    def wait_line(self, predicate, timeout: float, what: str) -> str:
        """The next stdout line for which ``predicate`` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; {self.describe()}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.popen.wait(timeout=5)
                raise AssertionError(f"process exited before {what}; {self.describe()}")
            if predicate(line):
                return line

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"process still running after {timeout} s; {self.describe()}")
        self._reader.join(timeout=5)
        return code

    def last_json(self):
        """The last stdout line, parsed as JSON (after the process exited)."""
        assert self.lines, f"no stdout; {self.describe()}"
        return json.loads(self.lines[-1])

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def describe(self) -> str:
        return (
            f"command {' '.join(self.args)!r}, exit {self.popen.poll()}, "
            f"stdout {self.lines[-10:]!r}, stderr {self.stderr_text()[-2000:]!r}"
        )

    def kill(self):
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGCONT)  # in case a test stopped it
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.popen.kill()
                self.popen.wait(timeout=5)
        # The process is gone: its stdout ends, and the reader thread with
        # it. Closing the pipe under a reader still in readline() would
        # make it fail (an unhandled thread exception warning).
        self._reader.join(timeout=5)
        self._stderr.close()
        if self.popen.stdout:
            self.popen.stdout.close()


class Bus:
    """One test's bus: its name, its runtime dir, the processes started.
    ``cleanup()`` kills them and removes ``/dev/shm/framebus.<bus>``."""

    def __init__(self, name: str, runtime_dir: Path, tmp: Path):
        self.name = name
        self.runtime_dir = runtime_dir
        self.tmp = tmp
        self.procs = []

    @property
    def shm_path(self) -> Path:
        return Path(f"/dev/shm/framebus.{self.name}")

    def spawn(self, args, label: str) -> Proc:
        n = len(self.procs)
        p = Proc(args, self.tmp / f"{n:02d}-{label}.stderr")
        self.procs.append(p)
        return p

    def produce(self, size="320x240", fps=60, pins=1, max_consumers=8, extra=(), wait_ready=True) -> Proc:
        """Starts a producer and (unless told not to) waits for its
        ``ready bus=NAME`` line."""
        p = self.spawn(
            [
                FRAMEBUS_BIN,
                "produce",
                "--bus",
                self.name,
                "--size",
                size,
                "--fps",
                str(fps),
                "--pins-per-consumer",
                str(pins),
                "--max-consumers",
                str(max_consumers),
                *extra,
            ],
            "producer",
        )
        if wait_ready:
            p.wait_line(lambda l: l == f"ready bus={self.name}", 20, "the producer's ready line")
        return p

    def rust_consumer(self, *args) -> Proc:
        return self.spawn([FRAMEBUS_BIN, "consume", "--bus", self.name, *args], "rust-consumer")

    def py_consumer(self, *args) -> Proc:
        return self.spawn([sys.executable, CONSUMER_SCRIPT, "--bus", self.name, *args], "py-consumer")

    def cli(self, *args, timeout=20):
        """Runs ``framebus ARGS`` to completion: (exit code, stdout, stderr)."""
        r = subprocess.run(
            [str(FRAMEBUS_BIN), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return r.returncode, r.stdout, r.stderr

    def inspect(self) -> dict:
        """``framebus inspect --bus NAME --json``."""
        code, out, err = self.cli("inspect", "--bus", self.name, "--json")
        assert code == 0, f"inspect failed ({code}): {err}"
        return json.loads(out)

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 0.01):
        """Polls ``predicate(self.inspect())`` until it holds (bounded);
        returns the snapshot that satisfied it."""
        deadline = time.monotonic() + timeout
        snap = None
        while time.monotonic() < deadline:
            snap = self.inspect()
            if predicate(snap):
                return snap
            time.sleep(poll)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; last inspect: {snap}")

    def cleanup(self):
        for p in reversed(self.procs):
            p.kill()
        # The bus and the producer's lock object beside it.
        for path in (self.shm_path, Path(f"/dev/shm/.framebus-lock.{self.name}")):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


@pytest.fixture(scope="session", autouse=True)
def _framebus_binary():
    if not FRAMEBUS_BIN.is_file():
        pytest.fail(
            f"framebus binary not found at {FRAMEBUS_BIN}: run `cargo build --release` at the "
            "repository root or set FRAMEBUS_BIN"
        )


@pytest.fixture
def bus(request, tmp_path, monkeypatch):
    """A unique bus name and a private FRAMEBUS_RUNTIME_DIR, set in os.environ so
    that every process the test starts, and the framebus consumer in this
    process (which reads it when it attaches), use it."""
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir(mode=0o700)
    monkeypatch.setenv("FRAMEBUS_RUNTIME_DIR", str(runtime_dir))
    monkeypatch.setenv("RUST_LOG", "info")
    test = "".join(c if c.isalnum() else "-" for c in request.node.name)[:30].strip("-")
    name = f"py-{test}-{os.getpid()}-{next(_counter)}"
    b = Bus(name, runtime_dir, tmp_path)
    try:
        yield b
    finally:
        b.cleanup()
