"""Test oracle: the fake camera's pattern, re-derived in numpy.

Frame ``seq`` has, at column x of row y, the byte
``(x + row_offset(seq, y)) mod 256``, where ``row_offset`` is the low byte of
``splitmix64(seq * 0x1_0000_0001 ^ y)`` (64-bit wrapping arithmetic), as
doc/LAYOUT.md and shm_layout::pattern define it. This is an independent
implementation to check frames against; it is not part of the protocol.
"""

import numpy as np

_M64 = (1 << 64) - 1


def _splitmix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def row_offsets(seq: int, height: int) -> np.ndarray:
    """``row_offset(seq, y)`` for every row y, as uint8."""
    base = np.uint64((seq * 0x1_0000_0001) & _M64)
    ys = np.arange(height, dtype=np.uint64)
    return (_splitmix64(base ^ ys) & np.uint64(0xFF)).astype(np.uint8)


def expected_frame(seq: int, width: int, height: int) -> np.ndarray:
    """The (height, width) uint8 frame the fake camera makes for ``seq``."""
    offs = row_offsets(seq, height).astype(np.uint16)
    xs = np.arange(width, dtype=np.uint16)
    return ((xs[None, :] + offs[:, None]) & 0xFF).astype(np.uint8)


def first_mismatch(img: np.ndarray, seq: int):
    """None if ``img`` is exactly frame ``seq``, else (row, col, found, expected)."""
    want = expected_frame(seq, img.shape[1], img.shape[0])
    bad = np.argwhere(img != want)
    if bad.size == 0:
        return None
    y, x = (int(v) for v in bad[0])
    return (y, x, int(img[y, x]), int(want[y, x]))
