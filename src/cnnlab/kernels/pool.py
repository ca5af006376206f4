"""Max and average pooling over any window, one kernel offset at a time.

Forward:
    max: y[n, c, i, j] = max_{u,v} x_pad[n, c, i·sh + u, j·sw + v]             (padding −∞)
    avg: y[n, c, i, j] = (1/d[i, j]) Σ_{u,v} x_pad[n, c, i·sh + u, j·sw + v]   (padding 0)
         d = kh·kw (padding counted, PyTorch's count_include_pad=True), or
         d[i, j] = the input values window (i, j) covers (`avgpool_counts`, padding not counted)
Backward:
    max: dx gets dy[n, c, i, j] at the first (u, v) of window (i, j) where x_pad equals y
    avg: every position of window (i, j) gets dy[n, c, i, j]/d[i, j]
    overlapping windows add up.
Shape: x (N, C, H, W) → y (N, C, H_out, W_out), H_out = floor((H + top + bottom − kh)/sh) + 1.
The 2×2/2 max pooling of most networks has a faster path in pool2x2.py.
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.geometry import _offset_view, _pairs, out_size, pad


def maxpool_forward(x: np.ndarray, kh: int, kw: int, stride, padding) -> np.ndarray:
    """Max over each window (padding is −∞, as in PyTorch): a running maximum over the kh·kw
    kernel offsets, each a strided view of the input — no window copy, no argmax pass."""
    (sh, sw), pads = _pairs(stride, padding)
    xp = pad(x, pads, -np.inf)
    h_out, w_out = out_size(x.shape[2], x.shape[3], kh, kw, stride, padding)
    y = _offset_view(xp, 0, 0, sh, sw, h_out, w_out).copy(order="K")  # keeps x's memory layout
    for u in range(kh):
        for v in range(kw):
            if u or v:
                np.maximum(y, _offset_view(xp, u, v, sh, sw, h_out, w_out), out=y)
    return y


def maxpool_backward(dy: np.ndarray, x: np.ndarray, y: np.ndarray, kh: int, kw: int, stride,
                     padding) -> np.ndarray:
    """Routes each dy to the first position (in u, v order) of its window that holds the max,
    as PyTorch does; overlapping windows add up. Recomputed from x and y, so the forward
    keeps no argmax array."""
    (sh, sw), ((pt, pb), (pl, pr)) = _pairs(stride, padding)
    xp = pad(x, ((pt, pb), (pl, pr)), -np.inf)
    h_out, w_out = y.shape[2:]
    dx = np.zeros_like(xp, dtype=dy.dtype)  # zeros_like: in x's memory layout
    taken = np.zeros_like(y, dtype=bool)
    overlap = sh < kh or sw < kw
    for u in range(kh):
        for v in range(kw):
            hit = _offset_view(xp, u, v, sh, sw, h_out, w_out) == y
            hit &= ~taken
            taken |= hit
            target = _offset_view(dx, u, v, sh, sw, h_out, w_out)
            if overlap:
                target += dy * hit
            else:
                np.multiply(dy, hit, out=target)
    return dx[:, :, pt : pt + x.shape[2], pl : pl + x.shape[3]]


def avgpool_counts(h: int, w: int, kh: int, kw: int, stride, padding) -> np.ndarray:
    """(H_out, W_out): how many input values (not padding) each window covers, the divisor of
    PyTorch's count_include_pad=False. Per axis, window i covers rows max(0, i·S − P_before) to
    min(H, i·S − P_before + F) − 1, so the count is a product of the two axes' counts."""
    (sh, sw), ((pt, _), (pl, _)) = _pairs(stride, padding)
    h_out, w_out = out_size(h, w, kh, kw, stride, padding)

    def axis(size, k, s, before, n_out):
        start = np.arange(n_out) * s - before
        return np.minimum(start + k, size) - np.maximum(start, 0)

    return np.outer(axis(h, kh, sh, pt, h_out), axis(w, kw, sw, pl, w_out))


def avgpool_forward(x: np.ndarray, kh: int, kw: int, stride, padding,
                    divisor: np.ndarray | None = None) -> np.ndarray:
    """Mean over each window; zero padding counts in the mean (PyTorch's count_include_pad)
    unless `divisor` gives each window's own count (avgpool_counts, in x's dtype)."""
    (sh, sw), pads = _pairs(stride, padding)
    xp = pad(x, pads)
    h_out, w_out = out_size(x.shape[2], x.shape[3], kh, kw, stride, padding)
    y = _offset_view(xp, 0, 0, sh, sw, h_out, w_out).copy(order="K")
    for u in range(kh):
        for v in range(kw):
            if u or v:
                y += _offset_view(xp, u, v, sh, sw, h_out, w_out)
    y /= x.dtype.type(kh * kw) if divisor is None else divisor
    return y


def avgpool_backward(dy: np.ndarray, x_shape, kh: int, kw: int, stride, padding,
                     divisor: np.ndarray | None = None) -> np.ndarray:
    """Every position of a window gets its dy/(kh·kw), or dy/divisor[i, j] (the forward's
    divisor); overlapping windows add up."""
    (sh, sw), ((pt, pb), (pl, pr)) = _pairs(stride, padding)
    n, c, h, w = x_shape
    share = dy / (dy.dtype.type(kh * kw) if divisor is None else divisor)
    dx = np.zeros((n, c, h + pt + pb, w + pl + pr), dtype=dy.dtype)
    for u in range(kh):
        for v in range(kw):
            _offset_view(dx, u, v, sh, sw, *dy.shape[2:])[...] += share
    return dx[:, :, pt : pt + h, pl : pl + w]
