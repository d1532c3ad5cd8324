"""A Python framebus consumer that the tests run as a separate process.

Modes:
  rate  consume for --duration seconds (at most --max-fps), check every frame
        byte for byte against the fake pattern, print a JSON summary last.
  hold  take one frame, keep a numpy view of it, print ``holding ...`` and
        sleep until killed.
  loop  ``for frame in bus: print(...)`` until interrupted.
  fork  take a frame, keep a view, fork; the child drops its copies of the
        frame, view and consumer and tries to use the consumer; the parent
        then checks that its pin survived while the producer moved on, and
        prints a JSON summary.
"""

import argparse
import gc
import json
import os
import sys
import time

import numpy as np

import framebus
from fb_oracle import first_mismatch


def rate(args) -> int:
    with framebus.Consumer(args.bus, max_fps=args.max_fps, name="py-rate") as bus:
        print(f"attached pid={os.getpid()} entry={bus.info['entry']}", flush=True)
        start = time.monotonic()
        end = start + args.duration
        frames = bad = 0
        last_seq = 0
        latencies = []
        while True:
            now = time.monotonic()
            if now >= end or (args.frames and frames >= args.frames):
                break
            frame = bus.next_frame(timeout=min(0.1, end - now))
            if frame is None:
                continue
            with frame:
                img = frame.array
                mismatch = first_mismatch(img, frame.seq, frame.format, frame.significant_bits)
                if mismatch is not None or frame.seq <= last_seq:
                    bad += 1
                    print(f"bad frame seq={frame.seq} after {last_seq}: {mismatch}", file=sys.stderr)
                last_seq = frame.seq
                latencies.append(frame.latency_ns / 1e3)
                del img
            frames += 1
            if args.work_ms:
                time.sleep(args.work_ms / 1e3)  # stands for per-frame work
        seconds = time.monotonic() - start
        latencies.sort()

        def pct(p):
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0

        print(
            json.dumps(
                {
                    "frames": frames,
                    "seconds": seconds,
                    "fps": frames / seconds,
                    "bad_frames": bad,
                    "coalesced": bus.coalesced,
                    "latency_us": {"p50": pct(0.5), "p99": pct(0.99)},
                    "multiprocessing_shared_memory": "multiprocessing.shared_memory" in sys.modules,
                    "multiprocessing_resource_tracker": "multiprocessing.resource_tracker" in sys.modules,
                }
            ),
            flush=True,
        )
    return 0


def hold(args) -> int:
    bus = framebus.Consumer(args.bus, name="py-hold")
    frame = bus.next_frame(timeout=10)
    if frame is None:
        print("no frame", file=sys.stderr)
        return 1
    view = frame.array
    frame.release()  # from now on only the view holds the pin
    print(
        f"holding pid={os.getpid()} entry={bus.info['entry']} seq={frame.seq} slot={frame.slot} "
        f"first={int(view[0, 0])}",
        flush=True,
    )
    while True:
        time.sleep(3600)


def loop(args) -> int:
    with framebus.Consumer(args.bus, name="py-loop") as bus:
        print(f"attached pid={os.getpid()} entry={bus.info['entry']}", flush=True)
        for frame in bus:
            print(f"frame seq={frame.seq}", flush=True)
    return 0


def fork(args) -> int:
    bus = framebus.Consumer(args.bus, name="py-fork")
    entry = bus.info["entry"]
    slot_count = bus.info["slot_count"]
    frame = bus.next_frame(timeout=10)
    view = frame.array
    saved = view.copy()
    seq, slot = frame.seq, frame.slot
    child = os.fork()
    if child == 0:
        code = 0
        try:
            # Everything the child drops or closes must leave the parent's
            # pin and registration alone.
            del view
            frame.release()
            del frame
            gc.collect()
            try:
                bus.next_frame(timeout=1)
                code = 3
            except framebus.FramebusError as e:
                print(f"child refused: {type(e).__name__}: {e}", flush=True)
            bus.close()
            del bus
            gc.collect()
        except BaseException as e:  # noqa: BLE001 - report anything
            print(f"child failed: {e!r}", flush=True)
            code = 2
        os._exit(code)
    _, status = os.waitpid(child, 0)
    after_child = framebus.inspect(args.bus)
    pinned_after_child = bool(after_child["slots"][slot]["pins"] & (1 << entry))
    registered_after_child = os.getpid() in [c["pid"] for c in after_child["consumers"]]
    # Let the producer go round every other slot several times.
    target = after_child["producer"]["frames_published"] + 5 * slot_count
    deadline = time.monotonic() + 20
    while framebus.inspect(args.bus)["producer"]["frames_published"] < target:
        if time.monotonic() > deadline:
            print("producer did not move on", file=sys.stderr)
            return 1
        time.sleep(0.01)
    print(
        json.dumps(
            {
                "child_exit": os.waitstatus_to_exitcode(status),
                "pinned_after_child": pinned_after_child,
                "registered_after_child": registered_after_child,
                "view_unchanged": bool(np.array_equal(view, saved)),
                "view_is_its_frame": first_mismatch(view, seq) is None,
                "frame_pinned": frame.pinned,
                "next_frame_works": bus.next_frame(timeout=10) is not None,
            }
        ),
        flush=True,
    )
    bus.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bus", required=True)
    ap.add_argument("--mode", choices=["rate", "hold", "loop", "fork"], default="rate")
    ap.add_argument("--max-fps", type=float)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--frames", type=int, default=0, help="rate mode: stop after this many frames")
    ap.add_argument("--work-ms", type=float, default=0.0)
    args = ap.parse_args()
    return {"rate": rate, "hold": hold, "loop": loop, "fork": fork}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
