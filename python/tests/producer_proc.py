"""A Python framebus producer that the tests run as a separate process, so
that a fatal signal (SIGBUS: exit status -7) kills this process, not pytest.

Modes:
  serve     create the bus, print ``ready bus=NAME pid=P``, publish pattern
            frames (seq n is the fake camera's frame n) about every 5 ms
            until killed or --frames were published.
  truncate  create the bus, publish one frame, print ``published seq=1``,
            wait for the file --go to appear (the parent truncates the bus
            object, then creates it), then publish until a publish raises;
            print a JSON report of what was raised and of what close() did.
  slot      as ``truncate``, but the truncation happens while a
            ``with producer.slot() as buf:`` block is open; the block then
            writes ``buf`` (touching the truncated pages) and ends.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import framebus
from fb_oracle import expected_frame_in

W, H = 320, 240
GO_TIMEOUT = 30.0
RAISE_TIMEOUT = 30.0


def _wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.002)


def _error(e: BaseException) -> dict:
    return {
        "class": type(e).__name__,
        "module": type(e).__module__,
        "framebus_error": isinstance(e, framebus.FramebusError),
        "message": str(e),
        "bus": getattr(e, "bus", None),
    }


def serve(args) -> int:
    with framebus.Producer(args.bus, W, H, fps=200, max_consumers=4) as p:
        print(f"ready bus={args.bus} pid={os.getpid()}", flush=True)
        n = 0
        while not args.frames or n < args.frames:
            n += 1
            p.publish(expected_frame_in(n, W, H))
            time.sleep(0.005)  # pacing, like a camera
    return 0


def _after(p, args, report: dict) -> int:
    """What the producer does once publishing raised: more publishes,
    slot(), close(), and whether the bus can be created again."""
    shm = Path(f"/dev/shm/framebus.{args.bus}")
    lock = Path(f"/dev/shm/.framebus-lock.{args.bus}")
    trigger_dir = Path(report["trigger_dir"])
    frame = expected_frame_in(2, W, H)
    try:
        p.publish(frame)
        report["publish_again"] = None
    except BaseException as e:  # noqa: BLE001 - reported
        report["publish_again"] = _error(e)
    buf = None
    try:
        with p.slot() as buf:
            buf[...] = 1
        report["slot_again"] = None
    except BaseException as e:  # noqa: BLE001 - reported
        report["slot_again"] = _error(e)
    # A view of a slot keeps the mapping, and with it the bus's lock, past
    # close() (README): none is kept here.
    del buf
    report["bus_exists_before_close"] = shm.exists()
    try:
        p.close()
        report["close"] = None
    except BaseException as e:  # noqa: BLE001 - reported
        report["close"] = _error(e)
    report["closed"] = p.closed
    report["bus_exists_after_close"] = shm.exists()
    report["lock_exists_after_close"] = lock.exists()
    report["trigger_dir_exists_after_close"] = trigger_dir.exists()
    try:
        p.publish(frame)
        report["publish_after_close"] = None
    except BaseException as e:  # noqa: BLE001 - reported
        report["publish_after_close"] = _error(e)
    # A new producer of the same name: a fresh bus.
    try:
        with framebus.Producer(args.bus, W, H) as again:
            report["new_producer_seq"] = again.publish(expected_frame_in(1, W, H))
            report["new_bus_size"] = os.stat(shm).st_size
    except BaseException as e:  # noqa: BLE001 - reported
        report["new_producer_seq"] = _error(e)
    print(json.dumps(report), flush=True)
    return 0


def truncate(args) -> int:
    p = framebus.Producer(args.bus, W, H, max_consumers=4)
    report = {"trigger_dir": framebus.inspect(args.bus)["trigger_dir"]}
    p.publish(expected_frame_in(1, W, H))
    print("published seq=1", flush=True)
    _wait_for_file(Path(args.go), GO_TIMEOUT)
    # Publish until a publish raises (bounded): the first publish may still
    # succeed if nothing it touched lies past the new end and the
    # housekeeping thread has not looked at the object's size yet.
    deadline = time.monotonic() + RAISE_TIMEOUT
    published_after = 0
    n = 1
    while True:
        if time.monotonic() > deadline:
            print(json.dumps({"timeout": f"no publish raised within {RAISE_TIMEOUT} s"}), flush=True)
            return 1
        n += 1
        try:
            p.publish(expected_frame_in(n, W, H))
        except BaseException as e:  # noqa: BLE001 - reported
            report["raised"] = _error(e)
            break
        published_after += 1
    report["published_after_truncation"] = published_after
    return _after(p, args, report)


def slot(args) -> int:
    p = framebus.Producer(args.bus, W, H, max_consumers=4)
    report = {"trigger_dir": framebus.inspect(args.bus)["trigger_dir"]}
    p.publish(expected_frame_in(1, W, H))
    try:
        with p.slot() as buf:
            print("slot open", flush=True)
            _wait_for_file(Path(args.go), GO_TIMEOUT)
            # Every page of the slot, now past the object's end (or not).
            buf[...] = expected_frame_in(2, W, H)
            report["sum_after_write"] = int(buf.sum())
        report["raised"] = None
    except BaseException as e:  # noqa: BLE001 - reported
        report["raised"] = _error(e)
    del buf
    return _after(p, args, report)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bus", required=True)
    ap.add_argument("--mode", choices=["serve", "truncate", "slot"], default="serve")
    ap.add_argument("--frames", type=int, default=0, help="serve: stop after this many frames")
    ap.add_argument("--go", help="truncate/slot: the file whose appearance says the bus was truncated")
    args = ap.parse_args()
    return {"serve": serve, "truncate": truncate, "slot": slot}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
