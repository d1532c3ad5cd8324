"""A vendor-SDK-style producer: the "camera" calls back from its own thread
with each new 12-bit frame (as pypylon, Vimba or Spinnaker do), and the
callback publishes it onto a ``gray16`` bus whose header records 12
significant bits, with the camera's own capture timestamp::

    python3 sdk_callback_12bit.py --bus mono12 --size 1280x1024 --fps 60

A consumer reads ``frame.array`` as ``(H, W) uint16`` with values 0..4095
(``frame.significant_bits == 12``). The synthetic camera below stands for the
SDK: replace ``SyntheticMono12Camera`` with yours and keep the callback.
Ctrl-C stops it.
"""

import argparse
import sys
import threading
import time

import numpy as np

import framebus


class SyntheticMono12Camera:
    """Calls ``on_frame(image, timestamp_ns)`` from its own thread, at
    ``fps``, with a (H, W) uint16 image of 12-bit values: a moving diagonal
    gradient, like a vendor SDK's grab loop with a registered callback."""

    def __init__(self, width, height, fps):
        self.width, self.height, self.period = width, height, 1.0 / fps
        self._stop = threading.Event()
        self._thread = None
        y, x = np.mgrid[0:height, 0:width]
        self._base = ((x + y) * 4095 // (width + height)).astype(np.uint16)

    def start(self, on_frame):
        def grab_loop():
            n = 0
            next_t = time.monotonic()
            while not self._stop.is_set():
                image = (self._base + np.uint16(16 * n)) & np.uint16(0x0FFF)  # 12 bits
                on_frame(image, time.monotonic_ns())
                n += 1
                next_t += self.period
                self._stop.wait(max(0.0, next_t - time.monotonic()))

        self._thread = threading.Thread(target=grab_loop, name="camera-grab", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bus", required=True)
    ap.add_argument("--size", default="1280x1024")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0 = until Ctrl-C)")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with framebus.Producer(
        args.bus, width, height, format="gray16", significant_bits=12, fps=args.fps
    ) as producer:
        errors = []

        def on_frame(image, timestamp_ns):
            # Called on the SDK's thread: one copy into a free slot, with the
            # camera's capture time. Never raise into the SDK.
            try:
                producer.publish(image, timestamp_ns=timestamp_ns)
            except framebus.FramebusError as e:
                errors.append(e)

        camera = SyntheticMono12Camera(width, height, args.fps)
        camera.start(on_frame)
        print(f"publishing {width}x{height} mono12 on bus {args.bus}", flush=True)
        try:
            deadline = time.monotonic() + args.seconds if args.seconds else None
            while not errors and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            camera.stop()
        if errors:
            print(f"publishing failed: {errors[0]}", file=sys.stderr)
            return 1
        print(f"published {producer.frames} frames", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
