"""Publish a camera (or video file) onto a framebus bus from Python, with
OpenCV's ``cv2.VideoCapture``::

    python3 publish_opencv.py --bus cam0 --source 0            # /dev/video0
    python3 publish_opencv.py --bus cam0 --source clip.mp4 --format rgb8

Consumers then attach as usual (``framebus consume --bus cam0``, or
``framebus.Consumer("cam0")``). OpenCV delivers BGR frames: ``bgr8`` publishes
them as they are (one copy, into the slot), ``rgb8`` and ``gray8`` convert
straight into the slot with ``cv2.cvtColor(..., dst=buf)`` (zero extra copy).
Ctrl-C stops it; the bus is removed when the ``with`` block ends.
"""

import argparse
import sys

import framebus

try:
    import cv2
except ImportError:  # the example needs OpenCV; framebus itself does not
    sys.exit("this example needs OpenCV for Python: pip install opencv-python-headless")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bus", required=True)
    ap.add_argument("--source", default="0", help="camera index or video file")
    ap.add_argument("--format", choices=["bgr8", "rgb8", "gray8"], default="bgr8")
    args = ap.parse_args()

    cap = cv2.VideoCapture(int(args.source) if args.source.isdigit() else args.source)
    ok, frame = cap.read()
    if not ok:
        sys.exit(f"cannot read a frame from {args.source!r}")
    height, width = frame.shape[:2]
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    convert = {"rgb8": cv2.COLOR_BGR2RGB, "gray8": cv2.COLOR_BGR2GRAY}.get(args.format)

    with framebus.Producer(args.bus, width, height, format=args.format, fps=fps) as producer:
        print(f"publishing {width}x{height} {args.format} on bus {args.bus}", flush=True)
        try:
            while ok:
                if frame.shape[:2] != (height, width):
                    sys.exit("the source changed frame size; restart the producer")
                if convert is None:
                    producer.publish(frame)  # one copy, into the slot
                else:
                    with producer.slot() as buf:  # cvtColor writes into the slot itself
                        cv2.cvtColor(frame, convert, dst=buf)
                ok, frame = cap.read()
        except KeyboardInterrupt:
            pass
        print(f"published {producer.frames} frames", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
