"""im2col/col2im and pooling: pure functions on NCHW arrays.

The only module that plays with strides. Every function takes the window as explicit
arguments: kernel (kh, kw), stride (sh, sw) and padding ((top, bottom), (left, right)), and
works one kernel offset (u, v) at a time: the strided view x[:, :, u::sh, v::sw] holds what
every window sees at that offset, so loops run over kh·kw offsets, never over pixels.
Output size per axis is floor((H + top + bottom − kh)/sh) + 1; callers that want the
lecture's exact fit check it first (`cnnlab.shapes.window`).
"""

from __future__ import annotations

import numpy as np

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]


def _pairs(stride, padding) -> tuple[Pair, Padding]:
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    if np.isscalar(padding):
        padding = (padding, padding)
    (pt, pb), (pl, pr) = ((p, p) if np.isscalar(p) else p for p in padding)
    return (int(sh), int(sw)), ((int(pt), int(pb)), (int(pl), int(pr)))


def out_size(h: int, w: int, kh: int, kw: int, stride, padding) -> Pair:
    (sh, sw), ((pt, pb), (pl, pr)) = _pairs(stride, padding)
    return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1


def pad(x: np.ndarray, padding: Padding, value: float = 0.0) -> np.ndarray:
    (pt, pb), (pl, pr) = padding
    if pt == pb == pl == pr == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def _offset_view(x: np.ndarray, u: int, v: int, sh: int, sw: int, h_out: int, w_out: int):
    """The entries every window takes at kernel offset (u, v): x[:, :, u + i·sh, v + j·sw]."""
    return x[:, :, u : u + (h_out - 1) * sh + 1 : sh, v : v + (w_out - 1) * sw + 1 : sw]


def im2col(x: np.ndarray, kh: int, kw: int, stride=1, padding=0) -> np.ndarray:
    """Columns of windows: (C·kh·kw, N·H_out·W_out); row (c, u, v), column (n, i, j).

    The row order matches weight.reshape(K, C·kh·kw), so a convolution is one GEMM,
    W_mat · X_col. Built one kernel offset at a time from x in (C, N, H, W) order: each copy
    reads and writes whole rows of the image, which is several times faster than gathering
    windows pixel by pixel.
    """
    (sh, sw), pads = _pairs(stride, padding)
    n, c = x.shape[:2]
    h_out, w_out = out_size(x.shape[2], x.shape[3], kh, kw, stride, padding)
    xp = pad(np.ascontiguousarray(x.transpose(1, 0, 2, 3)), pads)
    cols = np.empty((c, kh, kw, n, h_out, w_out), dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            cols[:, u, v] = _offset_view(xp, u, v, sh, sw, h_out, w_out)
    return cols.reshape(c * kh * kw, n * h_out * w_out)


def col2im(cols: np.ndarray, x_shape, kh: int, kw: int, stride=1, padding=0) -> np.ndarray:
    """The adjoint of im2col: adds every column's entries back to the pixels they came from.

    One strided add per kernel offset (kh·kw of them), never np.add.at over pixels. Returns an
    (N, C, H, W) view of (C, N, H, W) memory, the layout the layers pass along (see layers/conv.py).
    """
    (sh, sw), ((pt, pb), (pl, pr)) = _pairs(stride, padding)
    n, c, h, w = x_shape
    h_out, w_out = out_size(h, w, kh, kw, stride, padding)
    blocks = cols.reshape(c, kh, kw, n, h_out, w_out)
    dx = np.zeros((c, n, h + pt + pb, w + pl + pr), dtype=cols.dtype)
    for u in range(kh):
        for v in range(kw):
            _offset_view(dx, u, v, sh, sw, h_out, w_out)[...] += blocks[:, u, v]
    return dx[:, :, pt : pt + h, pl : pl + w].transpose(1, 0, 2, 3)


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


def avgpool_forward(x: np.ndarray, kh: int, kw: int, stride, padding) -> np.ndarray:
    """Mean over each window; zero padding counts in the mean (PyTorch's count_include_pad)."""
    (sh, sw), pads = _pairs(stride, padding)
    xp = pad(x, pads)
    h_out, w_out = out_size(x.shape[2], x.shape[3], kh, kw, stride, padding)
    y = _offset_view(xp, 0, 0, sh, sw, h_out, w_out).copy(order="K")
    for u in range(kh):
        for v in range(kw):
            if u or v:
                y += _offset_view(xp, u, v, sh, sw, h_out, w_out)
    y /= x.dtype.type(kh * kw)
    return y


def avgpool_backward(dy: np.ndarray, x_shape, kh: int, kw: int, stride, padding) -> np.ndarray:
    """Every position of a window gets its dy/(kh·kw); overlapping windows add up."""
    (sh, sw), ((pt, pb), (pl, pr)) = _pairs(stride, padding)
    n, c, h, w = x_shape
    share = dy / dy.dtype.type(kh * kw)
    dx = np.zeros((n, c, h + pt + pb, w + pl + pr), dtype=dy.dtype)
    for u in range(kh):
        for v in range(kw):
            _offset_view(dx, u, v, sh, sw, *dy.shape[2:])[...] += share
    return dx[:, :, pt : pt + h, pl : pl + w]
