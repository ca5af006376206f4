"""2×2 max pooling with stride 2, no padding and even H and W: the fast path of pool.py's
maxpool_forward and maxpool_backward, equal to them bit for bit (ties included).

Forward:   y[n, c, i, j] = max(x[n, c, 2i, 2j], x[n, c, 2i, 2j + 1], x[n, c, 2i + 1, 2j],
                               x[n, c, 2i + 1, 2j + 1])
Backward:  dx gets dy[n, c, i, j] at the window's first maximum, in the order (0,0), (0,1),
           (1,0), (1,1) (PyTorch's rule for ties), found again from two bool masks:
               right  = x[.., 2j + 1] > x[.., 2j]   per row of the window
               bottom = the bottom row's maximum > the top row's
Shape: x (N, C, H, W) → y (N, C, H/2, W/2); the masks hold 3/4 of x's element count in bytes.

With Numba (kernels.compiled) both run as one compiled pass over each plane instead
(pool_planes, unpool_planes): the forward reads x once and writes y and one byte per window
(which of its four entries is the first maximum, 1/4 of x's element count in bytes), the
backward writes dx once. The same values, ties and NaN included (tests/test_kernels.py).
"""

from __future__ import annotations

import functools

import numpy as np

from cnnlab.kernels import compiled
from cnnlab.kernels.geometry import _pairs
from cnnlab.runtime.threads import map_chunks, spans


@functools.cache
def loops():
    """The compiled passes (pool_planes, unpool_planes), on the first call."""
    return compiled.compile_loops(pool_planes, unpool_planes)


def pool_planes(x, y, code, p0, p1):
    """Planes p0:p1 of x (P, H, W): y (P, H/2, W/2) the windows' maxima, as np.maximum takes
    them (NaN wins, then the larger, the first of equals), and code (P, H/2, W/2) uint8 where the
    first maximum sits: 2·bottom + right, bottom = the bottom row's maximum is strictly larger
    than the top's, right = that row's right entry is strictly larger than its left. Compiled by
    loops(). Indexed (p, row, column) with the code chosen by a select, not a branch: a loop
    that took each window's rows as views and branched on the code ran at 15.7 ns a window,
    this one at 2.7 (one thread, 4096 planes of 28 × 28, AMD EPYC Zen 3), the same bits."""
    h2, w2 = y.shape[1], y.shape[2]
    for p in range(p0, p1):
        for i in range(h2):
            for j in range(w2):
                a, b = x[p, 2 * i, 2 * j], x[p, 2 * i, 2 * j + 1]
                c, d = x[p, 2 * i + 1, 2 * j], x[p, 2 * i + 1, 2 * j + 1]
                upper = a if a >= b or a != a else b
                lower = c if c >= d or c != c else d
                y[p, i, j] = upper if upper >= lower or upper != upper else lower
                code[p, i, j] = (2 + (d > c)) if lower > upper else (b > a)


def unpool_planes(dy, code, dx, p0, p1):
    """Planes p0:p1: each dy (P, H/2, W/2) to its window's first maximum in dx (P, H, W) (code,
    pool_planes), the other three entries dy·0, as the NumPy path's masks make them (dy·1 = dy
    and dy·0·0 = dy·0, so each entry is dy or dy·0, ±0, NaN and ±inf alike). Compiled by
    loops(). Row by row of dx, each entry chosen by a select: a loop that wrote both rows of
    each window and multiplied dy by 0/1 factors ran at 11.4 ns a window, this one at 2.5–3.5
    in float32 (one thread, 4096 planes of 28 × 28, AMD EPYC Zen 3; float64 11–14 against 11)."""
    h2, w2 = dy.shape[1], dy.shape[2]
    for p in range(p0, p1):
        for i in range(h2):
            for r in range(2):
                for j in range(w2):
                    g = dy[p, i, j]
                    zero = g * 0.0
                    k = code[p, i, j] - 2 * r  # 0 or 1: the window's first maximum in row r
                    dx[p, 2 * i + r, 2 * j] = g if k == 0 else zero
                    dx[p, 2 * i + r, 2 * j + 1] = g if k == 1 else zero


def _planes(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """x's memory as a C-contiguous array whose last two axes are (H, W), and the axis order that
    turns it back into x; None when no such order exists (the caller copies)."""
    for order in ((0, 1, 2, 3), (1, 0, 2, 3)):
        base = x.transpose(order)
        if base.flags.c_contiguous:
            return base, order
    return None


def maxpool2x2_applies(x: np.ndarray, kh: int, kw: int, stride, padding) -> bool:
    """The fast path's conditions: 2×2 windows, stride 2, no padding, even height and width."""
    (sh, sw), pads = _pairs(stride, padding)
    return (kh, kw, sh, sw) == (2, 2, 2, 2) and pads == ((0, 0), (0, 0)) and \
        x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0


def maxpool2x2_forward(x: np.ndarray, masks: bool = False):
    """2×2/2 max pooling in a few passes over memory, each a NumPy loop over long runs.

    With W even, the left and right entries of every window are the even and odd elements of
    x's flat memory: one copy splits them into two contiguous halves (faster than ufuncs on
    stride-2 views), their maximum gives each row pair's column maxima, and the top and bottom
    rows of each pair then give y. With masks=True it also returns where the first maximum sits
    (PyTorch's tie rule, window order (0,0), (0,1), (1,0), (1,1)): right = the right entry is
    strictly larger than the left; bottom = the bottom row's maximum is strictly larger than the
    top's. These bool arrays (3/4 of x's element count in bytes) are all that backward needs.
    Returns y in x's memory order ((N, C, H, W), or an (N, C, H, W) view of (C, N, H, W)).
    """
    found = _planes(x)
    base, order = found if found else (np.ascontiguousarray(x), (0, 1, 2, 3))
    a, b, h, w = base.shape
    y = np.empty((a, b, h // 2, w // 2), x.dtype)
    if compiled.HAVE_NUMBA:
        code = np.empty((a * b, h // 2, w // 2), np.uint8)
        pool = loops()[0]
        planes = base.reshape(a * b, h, w)
        map_chunks(lambda span: pool(planes, y.reshape(a * b, h // 2, w // 2), code, *span),
                   spans(a * b, base.size))
        y = y.transpose(np.argsort(order))
        return (y, (code, None, base.shape, order)) if masks else y
    right = np.empty(a * b * h * w // 2, bool) if masks else None
    bottom = np.empty((a * b * h // 2, w // 2), bool) if masks else None

    def part(span):  # base[a0:a1]; cnnlab's threads split the first axis
        a0, a1 = span
        left, rgt = np.ascontiguousarray(base[a0:a1].reshape(-1, 2).T)  # two contiguous halves
        cols = np.maximum(left, rgt).reshape(-1, 2, w // 2)  # (row pair, top/bottom, j)
        top, bot = cols[:, 0], cols[:, 1]
        np.maximum(top, bot, out=y[a0:a1].reshape(-1, w // 2))
        if masks:
            np.greater(rgt, left, out=right[a0 * b * h * w // 2 : a1 * b * h * w // 2])
            np.greater(bot, top, out=bottom[a0 * b * h // 2 : a1 * b * h // 2])

    map_chunks(part, spans(a, base.size))
    y = y.transpose(np.argsort(order))
    return (y, (right, bottom, base.shape, order)) if masks else y


def maxpool2x2_backward(dy: np.ndarray, masks) -> np.ndarray:
    """Routes each dy to its window's first maximum with the masks of maxpool2x2_forward."""
    right, bottom, shape, order = masks
    a, b, h, w = shape
    if bottom is None:  # the compiled forward's codes, in `right`
        d = np.ascontiguousarray(dy.transpose(order)).reshape(a * b, h // 2, w // 2)
        dx = np.empty((a * b, h, w), dy.dtype)
        unpool = loops()[1]
        map_chunks(lambda span: unpool(d, right, dx, *span), spans(a * b, dx.size))
        return dx.reshape(shape).transpose(np.argsort(order))
    d = dy.transpose(order).reshape(a * b * h // 2, w // 2)  # a copy only if dy's layout differs
    dx = np.empty(a * b * h * w, dy.dtype)

    def part(span):
        a0, a1 = span
        r0, r1 = a0 * b * h // 2, a1 * b * h // 2
        rows, down = d[r0:r1], bottom[r0:r1]
        dcols = np.empty((r1 - r0, 2, w // 2), dy.dtype)
        np.multiply(rows, ~down, out=dcols[:, 0])  # ×0 or ×1: exact
        np.multiply(rows, down, out=dcols[:, 1])
        dcols = dcols.reshape(-1)
        seg, rgt = dx[2 * r0 * w : 2 * r1 * w], right[r0 * w : r1 * w]
        np.multiply(dcols, ~rgt, out=seg[0::2])  # straight into the interleaved result
        np.multiply(dcols, rgt, out=seg[1::2])

    map_chunks(part, spans(a, dx.size))
    return dx.reshape(shape).transpose(np.argsort(order))
