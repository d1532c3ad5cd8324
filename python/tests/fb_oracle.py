"""Test oracle: the fake camera's pattern, re-derived in numpy.

Frame ``seq`` of ``width`` x ``height`` is drawn in this order, later on top
(doc/LAYOUT.md §9 and shm_layout::pattern define it; this is an independent
implementation to check frames against, not part of the protocol):

1. bars in rows ``y < height * 2 // 3``: over the columns right of the check
   strip (``span`` of them), column ``strip + i`` shows
   ``BAR_LEVELS[((i + 2 * seq) % span) * 8 // span]``; the other rows a ramp,
   ``min(255, i * 256 // span)``;
2. a square of side ``min(max(1, height // 4), span)`` at level 255, left
   column ``strip + bounce(3 * seq, span - side)``, top row
   ``bounce(2 * seq, height - side)``;
3. ``seq`` in decimal in a 3x5 font scaled by ``s = max(1, height // 64)``:
   a level-0 box from ``(strip + s, s)``, ``(4 * digits + 1) * s`` wide and
   ``7 * s`` high, glyph pixels at level 255, digit ``i``'s column ``c`` of
   glyph row ``r`` (0-4) covering columns ``strip + s + (1 + 4 i + c) s`` and
   rows ``s + (1 + r) s``, ``s`` of each;
4. the check strip: the first ``strip = min(16, width)`` columns of row y hold
   ``(x + row_offset(seq, y)) mod 256``, where ``row_offset`` is the low byte
   of ``splitmix64(seq * 0x1_0000_0001 ^ y)`` (64-bit wrapping arithmetic).
"""

import numpy as np

_M64 = (1 << 64) - 1
STRIP = 16
BAR_LEVELS = np.array([235, 206, 177, 148, 119, 90, 61, 32], dtype=np.uint8)
FONT = [
    "111101101101111",
    "010110010010111",
    "111001111100111",
    "111001111001111",
    "101101111001001",
    "111100111001111",
    "111100111101111",
    "111001001001001",
    "111101111101111",
    "111101111001111",
]


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


def _bounce(t: int, span: int) -> int:
    if span == 0:
        return 0
    m = t % (2 * span)
    return m if m <= span else 2 * span - m


def expected_frame(seq: int, width: int, height: int) -> np.ndarray:
    """The (height, width) uint8 frame the fake camera makes for ``seq``."""
    img = np.zeros((height, width), dtype=np.uint8)
    strip = min(STRIP, width)
    span = width - strip
    if span > 0:
        i = np.arange(span)
        bars = BAR_LEVELS[((i + (2 * seq) % span) % span) * 8 // span]
        ramp = np.minimum(255, i * 256 // span).astype(np.uint8)
        bar_rows = height * 2 // 3
        img[:bar_rows, strip:] = bars
        img[bar_rows:, strip:] = ramp
        side = min(max(1, height // 4), span)
        sx = strip + _bounce((3 * seq) & _M64, span - side)
        sy = _bounce((2 * seq) & _M64, max(0, height - side))
        img[sy : sy + side, sx : sx + side] = 255
        s = max(1, height // 64)
        digits = str(seq)
        bx, by = strip + s, s
        img[by : by + 7 * s, bx : bx + (4 * len(digits) + 1) * s] = 0
        for n, d in enumerate(digits):
            glyph = FONT[int(d)]
            for r in range(5):
                for c in range(3):
                    if glyph[3 * r + c] == "1":
                        x = bx + (1 + 4 * n + c) * s
                        y = by + (1 + r) * s
                        img[y : y + s, x : x + s] = 255
    offs = row_offsets(seq, height).astype(np.uint16)
    xs = np.arange(strip, dtype=np.uint16)
    img[:, :strip] = ((xs[None, :] + offs[:, None]) & 0xFF).astype(np.uint8)
    return img


def encode(gray: np.ndarray, fmt: str, bits=None) -> np.ndarray:
    """The gray8 frame ``gray`` in pixel format ``fmt`` (doc/LAYOUT.md §9):
    gray16 ``(v * 257) >> (16 - bits)``; bgr8/rgb8 the colour
    ``(R, G, B) = (v, 255 - v, (v + 128) mod 256)`` in their byte order."""
    v = gray.astype(np.uint32)
    if fmt == "gray8":
        return gray
    if fmt == "gray16":
        return ((v * 257) >> (16 - (bits or 16))).astype(np.uint16)
    r, g, b = v, 255 - v, (v + 128) & 0xFF
    channels = (b, g, r) if fmt == "bgr8" else (r, g, b)
    return np.stack(channels, axis=-1).astype(np.uint8)


def expected_frame_in(seq: int, width: int, height: int, fmt: str = "gray8", bits=None) -> np.ndarray:
    """Frame ``seq`` as a producer of format ``fmt`` makes it: ``(H, W)``
    uint8 or uint16, or ``(H, W, 3)`` uint8."""
    return encode(expected_frame(seq, width, height), fmt, bits)


def first_mismatch(img: np.ndarray, seq: int, fmt: str = "gray8", bits=None):
    """None if ``img`` is exactly frame ``seq`` in ``fmt``, else
    (row, col, found, expected) of the first wrong value."""
    want = expected_frame_in(seq, img.shape[1], img.shape[0], fmt, bits)
    if img.shape != want.shape or img.dtype != want.dtype:
        return (0, 0, f"{img.shape} {img.dtype}", f"{want.shape} {want.dtype}")
    bad = np.argwhere(img != want)
    if bad.size == 0:
        return None
    y, x = (int(v) for v in bad[0][:2])
    return (y, x, img[y, x].tolist(), want[y, x].tolist())
