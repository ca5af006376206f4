"""Adaptive average pooling: the output size is given, the windows follow from it (PyTorch's rule).

Windows, per axis, of an input of size H pooled to H_out (the same for W):
    start_i = ⌊i·H/H_out⌋      end_i = ⌈(i + 1)·H/H_out⌉      (i = 0 … H_out − 1; end exclusive)
Neighbouring windows may overlap by a row when H_out does not divide H, and repeat rows when
H_out > H. The mean over a window is separable: sum along W, then along H, then divide once
    y[i, j] = (Σ_{u ∈ window i} Σ_{v ∈ window j} x[u, v]) / (|window i|·|window j|)
Backward: g = dy/(|window i|·|window j|) goes to every value of window (i, j); overlaps add.
Along an axis the forward is a loop over the offsets k below the widest window, each a gather
of x[start_i + k] for every window i; the backward likewise gathers, for every input row u,
g of the windows first_u … last_u that cover it. Memory stays of the input's and output's size
whatever the sizes (a dense averaging matrix would be H_out × H). When H_out divides H and
W_out divides W every window is the same F×F block (a plain AvgPool2D(F)), and the fast path
is a reshape and a sum (tested equal to the gathers).
"""

from __future__ import annotations

import numpy as np


def adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of the `out` windows over an axis of `size`: ⌊i·size/out⌋, ⌈(i + 1)·size/out⌉."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _gather_sum(a: np.ndarray, first: np.ndarray, last: np.ndarray, width: int) -> np.ndarray:
    """s[..., i] = Σ_{t = first_i … last_i} a[..., t] along a's last axis: one gather per
    offset k ≤ the widest run, the values past a run's end masked out."""
    out = np.zeros((*a.shape[:-1], first.size), a.dtype)
    for k in range(int((last - first).max()) + 1):
        inside = first + k <= last
        taken = np.take(a, np.minimum(first + k, width - 1), axis=-1)
        out += taken if inside.all() else taken * inside
    return out


def _sum_windows(a: np.ndarray, size: int, out: int) -> np.ndarray:
    """Σ of a's last axis (of `size`) over each of the `out` windows."""
    start, end = adaptive_windows(size, out)
    return _gather_sum(a, start, end - 1, size)


def _spread_windows(g: np.ndarray, size: int, out: int) -> np.ndarray:
    """The adjoint of _sum_windows: row u gets the sum of g over the windows that cover it,
    first_u (the first window ending after u) to last_u (the last one starting at or before u)."""
    start, end = adaptive_windows(size, out)
    rows = np.arange(size)
    first = np.searchsorted(end, rows, side="right")
    last = np.searchsorted(start, rows, side="right") - 1
    return _gather_sum(g, first, last, out)


def _counts(h: int, w: int, h_out: int, w_out: int, dtype) -> np.ndarray:
    """|window i|·|window j|, (H_out, W_out), in `dtype`."""
    (hs, he), (ws, we) = adaptive_windows(h, h_out), adaptive_windows(w, w_out)
    return np.outer(he - hs, we - ws).astype(dtype)


def _planes(x: np.ndarray):
    """x (N, C, H, W) as (P, H, W) planes in x's own memory order (no copy for NCHW memory or
    an (N, C, H, W) view of (C, N, H, W) memory, the layout convolutions hand on), and a function
    that gives a (P, h, w) result back as (N, C, h, w) in that same order."""
    n, c = x.shape[:2]
    moved = x.transpose(1, 0, 2, 3)
    if moved.flags.c_contiguous and not x.flags.c_contiguous:
        return (moved.reshape(c * n, *x.shape[2:]),
                lambda y: y.reshape(c, n, *y.shape[1:]).transpose(1, 0, 2, 3))
    return (np.ascontiguousarray(x).reshape(n * c, *x.shape[2:]),
            lambda y: y.reshape(n, c, *y.shape[1:]))


def divides(h: int, w: int, h_out: int, w_out: int) -> bool:
    """Every window the same block: the reshape-and-mean fast path applies."""
    return h % h_out == 0 and w % w_out == 0


def adaptive_avgpool_forward(x: np.ndarray, h_out: int, w_out: int, *,
                             fast: bool = True) -> np.ndarray:
    """y (N, C, H_out, W_out) from x (N, C, H, W); `fast=False` forces the gathers."""
    h, w = x.shape[2:]
    planes, restore = _planes(x)
    p = planes.shape[0]
    if fast and divides(h, w, h_out, w_out):
        y = planes.reshape(p, h_out, h // h_out, w_out, w // w_out).sum(axis=(2, 4))
    else:
        rows = _sum_windows(planes, w, w_out)  # (P, H, W_out)
        y = _sum_windows(rows.transpose(0, 2, 1), h, h_out).transpose(0, 2, 1)  # (P, H_out, W_out)
    y = np.divide(y, _counts(h, w, h_out, w_out, x.dtype), order="C")
    return restore(y)


def adaptive_avgpool_backward(dy: np.ndarray, h: int, w: int, *, fast: bool = True) -> np.ndarray:
    """dx (N, C, H, W) from dy (N, C, H_out, W_out); the same path as the forward took."""
    h_out, w_out = dy.shape[2:]
    planes, restore = _planes(dy)
    g = planes / _counts(h, w, h_out, w_out, dy.dtype)
    if fast and divides(h, w, h_out, w_out):
        dx = np.repeat(np.repeat(g, h // h_out, axis=1), w // w_out, axis=2)  # each g on its block
    else:
        cols = _spread_windows(g.transpose(0, 2, 1), h, h_out).transpose(0, 2, 1)  # (P, H, W_out)
        dx = np.ascontiguousarray(_spread_windows(cols, w, w_out))  # (P, H, W)
    return restore(dx)
