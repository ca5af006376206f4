"""What every kernel path shares: the window's arguments, the output size, padding, and the
strided view of one kernel offset.

Every kernel takes the window as explicit arguments: kernel (kh, kw), stride (sh, sw) and
padding ((top, bottom), (left, right)) (an int or a pair is accepted where a caller passes one;
_pairs spells it out). The paths work one kernel offset (u, v) at a time: the strided view
x[:, :, u::sh, v::sw] holds what every window sees at that offset, so loops run over kh·kw
offsets, never over pixels.

Output size per axis:
    H_out = floor((H + top + bottom − kh)/sh) + 1
Callers that want the lecture's exact fit check it first (`cnnlab.shapes.window`).
"""

from __future__ import annotations

import numpy as np

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]


def _pairs(stride, padding) -> tuple[Pair, Padding]:
    """(sh, sw) and ((top, bottom), (left, right)) from an int or pair stride and an int, pair
    or pair-of-pairs padding."""
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    if np.isscalar(padding):
        padding = (padding, padding)
    (pt, pb), (pl, pr) = ((p, p) if np.isscalar(p) else p for p in padding)
    return (int(sh), int(sw)), ((int(pt), int(pb)), (int(pl), int(pr)))


def dilated(kh: int, kw: int, dilation) -> tuple[Pair, Pair]:
    """((dh, dw), (kh', kw')): the dilation as a pair, and the extents a dilated kernel spans,
    k' = d·(k − 1) + 1 (the kernel itself for d = 1). Offset u of a dilated kernel reads
    x[:, :, u·dh + i·sh, …]: the window's taps dh rows apart."""
    dh, dw = (dilation, dilation) if np.isscalar(dilation) else dilation
    return (int(dh), int(dw)), (int(dh) * (kh - 1) + 1, int(dw) * (kw - 1) + 1)


def out_size(h: int, w: int, kh: int, kw: int, stride, padding) -> Pair:
    """(H_out, W_out), H_out = floor((H + top + bottom − kh)/sh) + 1."""
    (sh, sw), ((pt, pb), (pl, pr)) = _pairs(stride, padding)
    return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1


def pad(x: np.ndarray, padding: Padding, value: float = 0.0) -> np.ndarray:
    """x (N, C, H, W) with `value` rows and columns around each plane; x itself when there is
    no padding."""
    (pt, pb), (pl, pr) = padding
    if pt == pb == pl == pr == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def _offset_view(x: np.ndarray, u: int, v: int, sh: int, sw: int, h_out: int, w_out: int):
    """The entries every window takes at kernel offset (u, v): x[:, :, u + i·sh, v + j·sw]."""
    return x[:, :, u : u + (h_out - 1) * sh + 1 : sh, v : v + (w_out - 1) * sw + 1 : sw]
