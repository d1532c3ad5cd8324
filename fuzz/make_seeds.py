#!/usr/bin/env python3
"""Writes the seeds of the consumer_table and trigger_stream fuzz targets
(fuzz/seeds/<target>/); see the input formats at the top of each target."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FREE, CLAIMED, READY, CONNECTED, RECLAIMING = 0, 1, 2, 3, 4
WRITER = 1 << 63


def owner(pid, gen, state):
    return (pid << 32) | (gen << 8) | state


def slot(pins, seq=0):
    return struct.pack("<8Q", pins, seq, 1000 * seq, 1000 * seq + 5, 0, 0, 0, 0)


def entry(own, name=b"", frames=0):
    return struct.pack("<5QII", own, frames, 0, 0, frames, 0, 0) + name.ljust(16, b"\0")[:16]


def table(geometry, oracle, slots, entries, ops=b""):
    """geometry: consumers [1,2,3,4,5,8,16,63][g & 7], pins 1 + (g >> 3) % 3."""
    return bytes([geometry]) + struct.pack("<Q", oracle) + b"".join(slots) + b"".join(entries) + ops


def word(v):
    return struct.pack("<Q", v)


CONSUMER_TABLE = {
    # 2 consumers x 1 pin, 4 slots: both alive, one connected, one ready
    # (connect it, reap it: alive).
    "healthy-2x1": table(
        1, 0b11,
        [slot(1, 7), slot(2, 6), slot(0, 5), slot(0)],
        [entry(owner(100, 1, CONNECTED), b"verify", 7), entry(owner(101, 3, READY), b"view")],
        bytes([2 | 1 << 3, 0, 0 | 1 << 3]),
    ),
    # Entry 1's token is free: it died holding two slots.
    "dead-holder-2x1": table(
        1, 0b01,
        [slot(1, 7), slot(2, 6), slot(2, 5), slot(0)],
        [entry(owner(100, 1, CONNECTED), b"a"), entry(owner(101, 2, CONNECTED), b"b")],
        bytes([0 | 1 << 3, 0]),
    ),
    # 3 consumers x 2 pins, 8 slots: a writer bit and bit 40 left behind, a
    # Free entry holding a slot, entry 1 over its budget (two counts).
    "strays-over-budget-3x2": table(
        2 | 1 << 3, 0b111,
        [slot(WRITER | 1 << 40, 1), slot(2, 2), slot(2, 3), slot(2, 4), slot(4, 5), slot(1, 6), slot(0), slot(0)],
        [entry(owner(200, 5, READY), b"ok"), entry(owner(201, 1, CONNECTED), b"greedy"), entry(owner(0, 9, FREE))],
        bytes([1, 1]),
    ),
    # A corrupt state byte, a name of invalid UTF-8 and terminal escapes,
    # hostile stores and forged owner words between the producer's steps.
    "hostile-4x3": table(
        3 | 2 << 3, 0b1010,
        [slot(0b1111, 1)] + [slot(0)] * 13,
        [
            entry(owner(300, 1, 0x99), b"\xff\xfe\x1b[31m\x07bad"),
            entry(owner(301, 2, RECLAIMING), b"x"),
            entry(owner(302, 3, CLAIMED)),
            entry(owner(303, 4, READY), "é".encode() * 8),
        ],
        bytes([7, 1]) + word(WRITER | 0xF)
        + bytes([5 | 2 << 3]) + word(owner(302, 3, CLAIMED))
        + bytes([3 | 3 << 3]) + word(owner(1, 1, READY))
        + bytes([4, 6 | 1 << 3, 7, 3]) + word(0)
        + bytes([0, 0 | 1 << 3, 0 | 2 << 3, 0 | 3 << 3, 1, 1]),
    ),
    # 63 consumers: every bit of a pin word but the writer's is a consumer's.
    "max-63x1": table(
        7, (1 << 63) - 1,
        [slot((1 << 63) - 1, 1), slot(WRITER, 2)] + [slot(0)] * 63,
        [entry(owner(400 + i, 1, CONNECTED)) for i in range(63)],
        bytes([1, 1]),
    ),
}


def trigger(seq, slot_, flags=0):
    return struct.pack("<QII", seq, slot_, flags)


def chunk(b):
    return bytes([len(b)]) + b


FINISH = bytes([255])
THREE = trigger(1, 0) + trigger(2, 1) + trigger(3, 2)

TRIGGER_STREAM = {
    # byte 0: odd = slot count byte >> 1, even = no slot check; then
    # [len][len bytes] chunks, 255 = finish.
    "three-whole": bytes([0]) + chunk(THREE) + FINISH,
    "split-slots9": bytes([9 << 1 | 1]) + chunk(THREE[:5]) + chunk(THREE[5:21]) + chunk(b"") + chunk(THREE[21:]) + FINISH,
    "malformed-slots4": bytes([4 << 1 | 1]) + chunk(trigger(4, 1, 1) + trigger(5, 9) + trigger(6, 3)) + FINISH,
    "hostile-prefix": bytes([0]) + chunk(b"\xaa\xbb\xcc") + chunk(trigger(7, 0) + trigger(8, 1)) + FINISH + chunk(trigger(9, 2)) + FINISH,
}

for target, seeds in (("consumer_table", CONSUMER_TABLE), ("trigger_stream", TRIGGER_STREAM)):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
