"""Adaptive average pooling: the output size is given, the windows follow from it (PyTorch's rule).

Windows, per axis, of an input of size H pooled to H_out (the same for W):
    start_i = ⌊i·H/H_out⌋      end_i = ⌈(i + 1)·H/H_out⌉      (i = 0 … H_out − 1; end exclusive)
Neighbouring windows may overlap by a row when H_out does not divide H, and repeat rows when
H_out > H. Forward and backward, per plane x (H, W) with A_h[i, start_i:end_i] = 1/(end_i − start_i):
    y = A_h · x · A_wᵀ                   dx = A_hᵀ · dy · A_w
Two GEMMs on all the planes at once. When H_out divides H and W_out divides W every window is
the same F×F block (F = H/H_out, a plain average pooling with stride F), and the fast path is a
reshape and a mean (tested equal to the matrices).
"""

from __future__ import annotations

import numpy as np


def adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of the `out` windows over an axis of `size`: ⌊i·size/out⌋, ⌈(i + 1)·size/out⌉."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def adaptive_matrix(size: int, out: int, dtype) -> np.ndarray:
    """A (out, size): row i holds 1/(end_i − start_i) over window i and zeros elsewhere."""
    start, end = adaptive_windows(size, out)
    cols = np.arange(size)
    inside = (cols >= start[:, None]) & (cols < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


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
    """y (N, C, H_out, W_out) from x (N, C, H, W); `fast=False` forces the matrices."""
    h, w = x.shape[2:]
    planes, restore = _planes(x)
    p = planes.shape[0]
    if fast and divides(h, w, h_out, w_out):
        blocks = planes.reshape(p, h_out, h // h_out, w_out, w // w_out)
        y = blocks.sum(axis=(2, 4))
        y /= x.dtype.type((h // h_out) * (w // w_out))
        return restore(y)
    a_h, a_w = adaptive_matrix(h, h_out, x.dtype), adaptive_matrix(w, w_out, x.dtype)
    rows = planes.reshape(p * h, w) @ a_w.T  # (P·H, W_out): every row of every plane at once
    y = np.tensordot(a_h, rows.reshape(p, h, w_out), axes=(1, 1))  # (H_out, P, W_out)
    return restore(np.ascontiguousarray(y.transpose(1, 0, 2)))


def adaptive_avgpool_backward(dy: np.ndarray, h: int, w: int, *, fast: bool = True) -> np.ndarray:
    """dx (N, C, H, W) from dy (N, C, H_out, W_out); the same path as the forward took."""
    h_out, w_out = dy.shape[2:]
    planes, restore = _planes(dy)
    p = planes.shape[0]
    if fast and divides(h, w, h_out, w_out):
        kh, kw = h // h_out, w // w_out
        share = planes / dy.dtype.type(kh * kw)
        dx = np.broadcast_to(share[:, :, None, :, None], (p, h_out, kh, w_out, kw))
        return restore(dx.reshape(p, h, w))
    a_h, a_w = adaptive_matrix(h, h_out, dy.dtype), adaptive_matrix(w, w_out, dy.dtype)
    rows = planes.reshape(p * h_out, w_out) @ a_w  # (P·H_out, W)
    dx = np.tensordot(a_h.T, rows.reshape(p, h_out, w), axes=(1, 1))  # (H, P, W)
    return restore(np.ascontiguousarray(dx.transpose(1, 0, 2)))
