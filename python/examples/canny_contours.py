"""Edge detection on a framebus bus, at this consumer's own rate.

Runs OpenCV's Canny edge detector on each frame and counts the external
contours of the edge map. OpenCV reads the shared slot in place: ``frame.array``
is a zero-copy, read-only view, and Canny only writes its own output image.
The consumer takes at most ``--max-fps`` frames per second, always the newest,
without slowing the producer or any other consumer.

    framebus produce --bus cam0 --size 1280x720 --fps 30     # another terminal
    pip install opencv-python-headless
    python examples/canny_contours.py --bus cam0 --max-fps 10

Ctrl-C stops it.
"""

import argparse
import sys
import time

import cv2

import framebus


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bus", default="cam0", help="bus name (default cam0)")
    ap.add_argument("--max-fps", type=float, default=10.0, help="frames per second at most (default 10)")
    ap.add_argument("--low", type=int, default=50, help="Canny lower threshold")
    ap.add_argument("--high", type=int, default=150, help="Canny upper threshold")
    ap.add_argument("--frames", type=int, help="stop after this many frames")
    ap.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the bus to appear")
    args = ap.parse_args()

    try:
        bus = framebus.Consumer(args.bus, max_fps=args.max_fps, name="canny", wait=args.wait)
    except framebus.FramebusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    done = 0
    started = time.monotonic()
    try:
        with bus:
            for frame in bus:  # blocks until the next frame; the previous one is released
                t0 = time.perf_counter()
                edges = cv2.Canny(frame.array, args.low, args.high)  # reads the slot in place
                contours, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                work_ms = (time.perf_counter() - t0) * 1e3
                done += 1
                print(
                    f"frame {frame.seq:>7}  {frame.width}x{frame.height}  {len(contours):>5} contours  "
                    f"canny+contours {work_ms:6.2f} ms  publish->pin {frame.latency_ns / 1e3:7.0f} us",
                    flush=True,
                )
                if args.frames and done >= args.frames:
                    break
    except KeyboardInterrupt:
        pass
    except framebus.FramebusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    print(f"{done} frames in {seconds:.1f} s ({done / max(seconds, 1e-9):.1f} fps)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
