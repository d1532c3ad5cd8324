"""Measure the Python producer's publish cost against the Rust producer's,
for frames of the same size and format, in one run, per format::

    python examples/measure_producer.py --framebus target/release/framebus \\
        --size 1920x1080 --frames 300

For each format it runs, one after the other, with one Rust ``consume
--algo mean`` consumer attached:

* ``rust``: ``framebus produce --format F --fps 0 --frames N --json``: the
  Rust fake camera draws each frame straight into its slot; ``publish_us``
  is its mean publish time (slot choice, drawing, triggers), ``fill_us`` the
  drawing alone;
* ``python_publish``: ``framebus.Producer(...).publish(array)`` of frames
  pre-drawn in numpy (16 distinct ones, cycled; the cost of a copy does
  not depend on the pixel values): ``call_us`` is the whole Python call (checks,
  one copy into the slot, GIL released, triggers), ``inside_us`` the part
  inside the Rust producer;
* ``python_slot``: ``with producer.slot() as buf: buf[...] = array`` (the
  copy done by numpy into the slot).

Prints one JSON object per format. Nothing is paced: each frame is
published as soon as the previous one is.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import framebus

FORMATS = ["gray8", "gray16", "bgr8", "rgb8"]


def encode(gray, fmt):
    v = gray.astype(np.uint32)
    if fmt == "gray8":
        return gray
    if fmt == "gray16":
        return (v * 257).astype(np.uint16)
    r, g, b = v, 255 - v, (v + 128) & 0xFF
    return np.stack((b, g, r) if fmt == "bgr8" else (r, g, b), axis=-1).astype(np.uint8)


def frames_for(width, height, count):
    """``count`` distinct gray frames (a moving ramp)."""
    base = (np.arange(width, dtype=np.uint32)[None, :] + np.arange(height, dtype=np.uint32)[:, None])
    return [((base + 7 * i) & 0xFF).astype(np.uint8) for i in range(count)]


def consumer(exe, bus):
    p = subprocess.Popen(
        [exe, "consume", "--bus", bus, "--algo", "mean", "--wait", "10", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    return p


def wait_attached(bus, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if framebus.inspect(bus)["consumers"]:
                return
        except framebus.FramebusError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"no consumer attached to {bus} within {timeout} s")


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def rust_run(exe, bus, fmt, size, frames):
    c = consumer(exe, bus)
    out = subprocess.run(
        [exe, "produce", "--bus", bus, "--size", size, "--format", fmt, "--fps", "0",
         "--frames", str(frames), "--json", "--max-consumers", "2"],
        capture_output=True, text=True, timeout=600,
    )
    stop(c)
    if out.returncode != 0:
        raise SystemExit(f"framebus produce failed: {out.stderr}")
    s = json.loads(out.stdout.strip().splitlines()[-1])
    return {"publish_us": s["publish_us_mean"], "fill_us": s["fill_us_mean"], "frames": s["frames"]}


def python_run(exe, bus, fmt, width, height, arrays, use_slot):
    with framebus.Producer(bus, width, height, format=fmt, max_consumers=2) as p:
        c = consumer(exe, bus)
        wait_attached(bus)
        calls = []
        for a in arrays:
            t0 = time.perf_counter_ns()
            if use_slot:
                with p.slot() as buf:
                    buf[...] = a
                del buf
            else:
                p.publish(a)
            calls.append((time.perf_counter_ns() - t0) / 1e3)
        inside = p.publish_ns_total / max(1, p.frames) / 1e3
    stop(c)
    return {
        "call_us": sum(calls) / len(calls),
        "call_p50_us": pct(calls, 0.5),
        "call_p99_us": pct(calls, 0.99),
        "inside_us": inside,
        "frames": len(calls),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--framebus", required=True, help="path of the framebus binary")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--formats", default=",".join(FORMATS))
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    grays = frames_for(width, height, 16)
    bus = f"measure-producer-{os.getpid()}"
    for fmt in args.formats.split(","):
        arrays = [encode(grays[i % len(grays)], fmt) for i in range(args.frames)]
        row = {
            "format": fmt,
            "size": args.size,
            "rust": rust_run(args.framebus, bus, fmt, args.size, args.frames),
            "python_publish": python_run(args.framebus, bus, fmt, width, height, arrays, False),
            "python_slot": python_run(args.framebus, bus, fmt, width, height, arrays, True),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
