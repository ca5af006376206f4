"""The wide path: stride-1 convolution over whole padded rows, batch chunk by chunk.

With stride 1, when each output row is computed over the whole padded width Wp instead of
W_out, the entries that kernel offset (u, v) sees for every output of a plane are one
contiguous run of the padded plane, starting at u·Wp + v: im2col is one long copy per
(channel, sample, offset) instead of one short copy per output row. The last Wp − W_out
columns of each output row are junk (windows hanging over the right edge) and are dropped.

Forward, with X_wide = im2col_wide(x_pad) (C·kh·kw, N·H_out·Wp) and W_mat (K, C·kh·kw):
    Y_mat = (W_mat · X_wide without the junk columns) + b
Backward, with dY_wide = dy over whole padded rows, zeros facing the junk columns:
    dW_mat = dY_wide · X_wideᵀ     db = Σ_{n,i,j} dy[n, :, i, j]
    dx by "col2im":  col2im_wide(W_matᵀ · dY_wide), the padding cropped
    dx by "flip":    dx[n, c] = Σ_k dy_pad[n, k] ⋆ w[k, c, ::-1, ::-1]  (⋆: correlation), dy padded
                     by kernel − 1 − padding: the forward's im2col_wide and GEMM, K and C swapped
Applies when the stride is 1 and the padding is at most kernel − 1 on every side
(conv_wide_applies).
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels import planes
from cnnlab.kernels.chunks import _chunk, _spans, conv_backward_chunks
from cnnlab.kernels.geometry import Padding, _pairs
from cnnlab.runtime.threads import map_chunks


def conv_wide_applies(kh: int, kw: int, stride, padding) -> bool:
    """The stride-1 fast path's conditions: stride 1, padding at most kernel − 1 on each side."""
    (sh, sw), ((pt, pb), (pl, pr)) = _pairs(stride, padding)
    return sh == sw == 1 and max(pt, pb) <= kh - 1 and max(pl, pr) <= kw - 1


def wide_planes(x: np.ndarray, padding: Padding) -> np.ndarray:
    """x (N, C, H, W) as zero-padded (C, N, H + top + bottom + 1, W + left + right) memory.

    The extra zero row at the bottom of each plane lets im2col_wide read every window as one
    contiguous run of a plane (see there) without running into the next plane.
    """
    (pt, pb), (pl, pr) = padding
    n, c, h, w = x.shape
    xp = np.empty((c, n, h + pt + pb + 1, w + pl + pr), x.dtype)
    fill_wide_planes(xp, x, padding)
    return xp


def fill_wide_planes(xp: np.ndarray, x: np.ndarray, padding: Padding, n0: int = 0,
                     n1: int | None = None) -> None:
    """Samples n0:n1 of x (N, C, H, W) into their planes of xp, wide_planes memory (C, N, Hp + 1,
    Wp): the values inside, zeros around. The direct path fills its chunks this way, each on its
    own thread."""
    (pt, _), (pl, _) = padding
    h, w = x.shape[2:]
    part = xp[:, n0:n1]
    if planes.fill(part, x[n0:n1].transpose(1, 0, 2, 3), pt, pl):
        return
    part[:, :, :pt] = 0
    part[:, :, pt + h :] = 0
    part[:, :, pt : pt + h, :pl] = 0
    part[:, :, pt : pt + h, pl + w :] = 0
    part[:, :, pt : pt + h, pl : pl + w] = x[n0:n1].transpose(1, 0, 2, 3)


def im2col_wide(xp: np.ndarray, kh: int, kw: int, h_out: int, n0: int = 0,
                n1: int | None = None) -> np.ndarray:
    """Stride-1 im2col over whole padded rows, for samples n0:n1 of wide_planes memory:
    (C·kh·kw, n·h_out·Wp), row (c, u, v), column (n, i, j) for j < Wp (the padded width).

    With stride 1 the entries a kernel offset (u, v) sees for every output (i, j) of a plane
    are one contiguous run of that plane, starting at u·Wp + v, if each output row is taken
    over the whole padded width Wp instead of W_out: one long copy per (channel, sample,
    offset) instead of one short copy per output row. The last Wp − W_out columns of each
    output row are junk (windows hanging over the right edge); callers drop them.
    """
    c, _, hp, wp = xp.shape
    planes = xp[:, n0:n1].reshape(c, -1, hp * wp)
    run = h_out * wp
    cols = np.empty((c, kh, kw, planes.shape[1], run), xp.dtype)
    for u in range(kh):
        for v in range(kw):
            start = u * wp + v
            cols[:, u, v] = planes[:, :, start : start + run]
    return cols.reshape(c * kh * kw, -1)


def col2im_wide(cols: np.ndarray, shape, kh: int, kw: int, dtype=None) -> np.ndarray:
    """The adjoint of im2col_wide: planes of shape (C, n, Hp, Wp) (wide_planes memory, in
    `dtype`, cols' by default), each kernel offset's block of cols (C·kh·kw, n·H_out·Wp) added
    to its contiguous run, kh·kw adds in all; H_out = Hp − kh. Junk columns must be zero in
    cols to add nothing."""
    c, n, hp, wp = shape
    run = (hp - kh) * wp
    blocks = cols.reshape(c, kh, kw, n, run)
    planes = np.zeros((c, n, hp * wp), cols.dtype if dtype is None else dtype)
    for u in range(kh):
        for v in range(kw):
            planes[:, :, u * wp + v : u * wp + v + run] += blocks[:, u, v]
    return planes.reshape(shape)


def conv_forward_wide(x: np.ndarray, w_mat: np.ndarray, bias: np.ndarray | None, kh: int,
                      kw: int, padding: Padding, epilogue=None) -> tuple[np.ndarray, np.ndarray]:
    """Stride-1 convolution of x (N, C, H, W) with w_mat (K, C·kh·kw), batch chunk by chunk:
    im2col_wide, one GEMM, the junk columns dropped and the bias added while copying into y,
    all in cache.
    Returns y as an (N, K, H_out, W_out) view of (K, N, H_out, W_out) memory, and the padded
    input (wide_planes) that backward needs. epilogue: as conv_forward_direct's."""
    xp = wide_planes(x, padding)
    c, n, hp, wp = xp.shape
    k = w_mat.shape[0]
    h_out, w_out = hp - kh, wp - kw + 1
    y = np.empty((k, n, h_out, w_out), x.dtype)
    shift = np.zeros((k, 1, 1, 1), x.dtype) if bias is None else bias.reshape(k, 1, 1, 1)

    def chunk(span):
        n0, n1 = span
        part = (w_mat @ im2col_wide(xp, kh, kw, h_out, n0, n1)).reshape(k, n1 - n0, h_out, wp)
        np.add(part[..., :w_out], shift, out=y[:, n0:n1])  # junk dropped, bias added, in cache
        if epilogue is not None:
            epilogue(y[:, n0:n1])

    map_chunks(chunk, _spans(n, _chunk(c * kh * kw, h_out * wp)))
    return y.transpose(1, 0, 2, 3), xp


def conv_backward_wide(dy: np.ndarray, xp: np.ndarray, weight: np.ndarray, padding: Padding,
                       input_grad: bool = True, dx_by: str | None = None, bias_grad: bool = True):
    """Gradients of conv_forward_wide: (dW, db, dx), dx None when input_grad is False and db
    None when bias_grad is False.

    dW = dY · X_colᵀ summed over chunks, X_col recomputed chunk by chunk from the padded input
    (in cache, so about as fast as keeping it, and far lighter); dy is laid out over whole
    padded rows too, zeros facing the junk columns, so they add nothing (an infinite input would
    add NaN there, not ±inf). dx one of two ways (dx_by; by default the one with fewer column
    rows, see _dx_by):
    - "col2im": dX_col = W_matᵀ · dY chunk by chunk, then col2im_wide into the padded planes
      (zero dy on the junk columns gives zero dX_col there, so their runs add nothing); C·kh·kw
      column rows.
    - "flip": _dx_by_flip, the "full" correlation of dy with the flipped kernel; K·kh·kw column
      rows, no adds.
    Both need padding ≤ kernel − 1 on every side (conv_wide_applies).
    """
    k, c, kh, kw = weight.shape
    n, _, h_out, w_out = dy.shape
    _, _, hp, wp = xp.shape
    (pt, pb), (pl, pr) = padding
    h, w = hp - 1 - pt - pb, wp - pl - pr
    dx_by = dx_by or _dx_by(k, c)
    if dx_by not in ("col2im", "flip"):
        raise ValueError(f"conv_backward_wide: dx_by must be 'col2im', 'flip' or None. Received: {dx_by!r}")
    by_col2im = input_grad and dx_by == "col2im"
    w_t = weight.reshape(k, -1).T if by_col2im else None
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None

    def part(i, span, dy_chunk):
        n0, n1 = span
        dy_wide = np.zeros((k, n1 - n0, h_out, wp), dy.dtype)  # zeros face the junk columns
        dy_wide[..., :w_out] = dy_chunk
        dy_mat = dy_wide.reshape(k, -1)
        dw_part = dy_mat @ im2col_wide(xp, kh, kw, h_out, n0, n1).T
        if by_col2im:
            planes = col2im_wide(w_t @ dy_mat, (c, n1 - n0, hp, wp), kh, kw, dy.dtype)
            dx[:, n0:n1] = planes[:, :, pt : pt + h, pl : pl + w]
        return dw_part

    spans = _spans(n, _chunk(c * kh * kw, h_out * wp))
    dw, db = conv_backward_chunks(dy, spans, part, bias_grad)
    if input_grad and not by_col2im:
        _dx_by_flip(dy, weight, padding, dx)
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)


def _dx_by_flip(dy: np.ndarray, weight: np.ndarray, padding: Padding, dx: np.ndarray) -> None:
    """conv_backward_wide's dx by the flipped kernel, written into dx ((C, N, H, W) memory):

        dx[n, c, i, j] = Σ_{k,u,v} dy_pad[n, k, i + u, j + v] · w[k, c, kh − 1 − u, kw − 1 − v]

    with dy padded by kh − 1 − top rows above, kh − 1 − bottom below (likewise for columns): a
    stride-1 convolution of dy with the kernel flipped in both axes and its K and C axes swapped,
    by the same wide im2col and GEMM as the forward, chunk by chunk."""
    k, c, kh, kw = weight.shape
    _, n, h, w = dx.shape
    (pt, pb), (pl, pr) = padding
    dyp = wide_planes(dy, ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr)))
    wq = dyp.shape[3]
    flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(c, -1)

    def chunk(span):
        n0, n1 = span
        part = flipped @ im2col_wide(dyp, kh, kw, h, n0, n1)
        dx[:, n0:n1] = part.reshape(c, n1 - n0, h, wq)[..., :w]

    map_chunks(chunk, _spans(n, _chunk(k * kh * kw, h * wq)))


def _dx_by(k: int, c: int) -> str:
    """conv_backward_wide's default way to dx: col2im builds C·kh·kw column rows, the flipped
    kernel K·kh·kw; the fewer the lighter."""
    return "col2im" if k > c else "flip"
