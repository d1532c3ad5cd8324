"""Measure a Python consumer: frame rate and latency from publish to frame.

For each frame it records two latencies, both from the producer's publish
time (``CLOCK_MONOTONIC``):

* ``pin``: until the consumer pinned the frame (``frame.latency_ns``, taken
  in Rust, the figure ``framebus consume --json`` reports as ``latency_us``);
* ``python``: until the ``for`` loop handed the frame to Python code
  (``time.monotonic_ns() - frame.publish_ns``).

    framebus produce --bus bench --size 1920x1080 --fps 1000 &
    python examples/measure.py --bus bench --seconds 10 --work mean

``--work none`` takes frames and does nothing with them; ``--work mean``
computes ``frame.array.mean()`` (reads every pixel). Prints one JSON line.
"""

import argparse
import json
import sys
import time

import framebus


def pct(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bus", default="cam0")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--work", choices=["none", "mean"], default="none")
    ap.add_argument("--max-fps", type=float)
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds left out of the figures first")
    args = ap.parse_args()

    pin_us, py_us = [], []
    checksum = 0.0
    with framebus.Consumer(args.bus, max_fps=args.max_fps, name=f"py-{args.work}", wait=10) as bus:
        started = time.monotonic() + args.warmup
        end = started + args.seconds
        while time.monotonic() < end:
            frame = bus.next_frame(timeout=0.1)
            if frame is None:
                continue
            with frame:
                python_ns = time.monotonic_ns()
                if args.work == "mean":
                    checksum += float(frame.array.mean())
                if python_ns / 1e9 >= started:
                    py_us.append((python_ns - frame.publish_ns) / 1e3)
                    pin_us.append(frame.latency_ns / 1e3)
        seconds = time.monotonic() - started
        coalesced = bus.coalesced
    pin_us.sort()
    py_us.sort()
    print(
        json.dumps(
            {
                "work": args.work,
                "frames": len(pin_us),
                "seconds": round(seconds, 3),
                "fps": round(len(pin_us) / seconds, 1),
                "coalesced": coalesced,
                "pin_latency_us": {"p50": round(pct(pin_us, 0.5), 1), "p99": round(pct(pin_us, 0.99), 1)},
                "python_latency_us": {"p50": round(pct(py_us, 0.5), 1), "p99": round(pct(py_us, 0.99), 1)},
                "checksum": checksum,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
