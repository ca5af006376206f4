"""im2col/col2im and pooling windows: pure functions on NCHW arrays.

The only module that plays with strides. Every function takes the window as explicit
arguments: kernel (kh, kw), stride (sh, sw) and padding ((top, bottom), (left, right)).
Output size per axis is floor((H + top + bottom − kh)/sh) + 1; callers that want the
lecture's exact fit check it first (`cnnlab.shapes.window`).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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


def windows(x: np.ndarray, kh: int, kw: int, stride=1, padding=0, value: float = 0.0) -> np.ndarray:
    """Read-only view (N, C, H_out, W_out, kh, kw) of every window of the padded input."""
    (sh, sw), pads = _pairs(stride, padding)
    h_out, w_out = out_size(x.shape[2], x.shape[3], kh, kw, stride, padding)
    view = sliding_window_view(pad(x, pads, value), (kh, kw), axis=(2, 3))
    return view[:, :, : (h_out - 1) * sh + 1 : sh, : (w_out - 1) * sw + 1 : sw]


def im2col(x: np.ndarray, kh: int, kw: int, stride=1, padding=0) -> np.ndarray:
    """Rows of windows: (N·H_out·W_out, C·kh·kw), row (n, i, j), column (c, u, v).

    The column order matches weight.reshape(K, C·kh·kw), so a convolution is one GEMM.
    """
    n, c = x.shape[:2]
    view = windows(x, kh, kw, stride, padding)
    h_out, w_out = view.shape[2:4]
    return view.transpose(0, 2, 3, 1, 4, 5).reshape(n * h_out * w_out, c * kh * kw)


def col2im(cols: np.ndarray, x_shape, kh: int, kw: int, stride=1, padding=0) -> np.ndarray:
    """The adjoint of im2col: adds every row's entries back to the pixels they came from.

    One strided add per kernel offset (kh·kw of them), never np.add.at over pixels.
    """
    (sh, sw), ((pt, pb), (pl, pr)) = _pairs(stride, padding)
    n, c, h, w = x_shape
    h_out, w_out = out_size(h, w, kh, kw, stride, padding)
    blocks = cols.reshape(n, h_out, w_out, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    return _scatter_offsets(blocks, (n, c, h, w), stride, ((pt, pb), (pl, pr)))


def _scatter_offsets(blocks: np.ndarray, x_shape, stride, padding) -> np.ndarray:
    """blocks (N, C, kh, kw, H_out, W_out) → x-shaped sum over offsets (u, v) of the
    block placed at rows u, u+S, ... and columns v, v+S, ... of the padded input."""
    (sh, sw), ((pt, pb), (pl, pr)) = _pairs(stride, padding)
    n, c, h, w = x_shape
    kh, kw, h_out, w_out = blocks.shape[2:]
    dx = np.zeros((n, c, h + pt + pb, w + pl + pr), dtype=blocks.dtype)
    for u in range(kh):
        for v in range(kw):
            dx[:, :, u : u + (h_out - 1) * sh + 1 : sh, v : v + (w_out - 1) * sw + 1 : sw] += blocks[
                :, :, u, v
            ]
    return dx[:, :, pt : pt + h, pl : pl + w]


def maxpool_forward(x: np.ndarray, kh: int, kw: int, stride, padding) -> tuple[np.ndarray, np.ndarray]:
    """Max over each window (padding is −∞, as in PyTorch) and the argmax offset u·kw + v."""
    view = windows(x, kh, kw, stride, padding, value=-np.inf)
    flat = view.reshape(*view.shape[:4], kh * kw)
    arg = flat.argmax(axis=-1)
    y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return y, arg.astype(np.min_scalar_type(kh * kw))


def maxpool_backward(dy: np.ndarray, arg: np.ndarray, x_shape, kh: int, kw: int, stride, padding):
    """Routes each dy to the argmax of its window; overlapping windows add up."""
    offsets = np.arange(kh * kw, dtype=arg.dtype).reshape(kh, kw, 1, 1)
    blocks = np.where(arg[:, :, None, None] == offsets, dy[:, :, None, None], 0).astype(dy.dtype)
    return _scatter_offsets(blocks, x_shape, stride, padding)


def avgpool_forward(x: np.ndarray, kh: int, kw: int, stride, padding) -> np.ndarray:
    """Mean over each window; zero padding counts in the mean (PyTorch's count_include_pad)."""
    view = windows(x, kh, kw, stride, padding)
    return view.sum(axis=(-2, -1), dtype=x.dtype) / x.dtype.type(kh * kw)


def avgpool_backward(dy: np.ndarray, x_shape, kh: int, kw: int, stride, padding) -> np.ndarray:
    share = dy / dy.dtype.type(kh * kw)
    blocks = np.broadcast_to(share[:, :, None, None], (*dy.shape[:2], kh, kw, *dy.shape[2:]))
    return _scatter_offsets(blocks, x_shape, stride, padding)
