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

from cnnlab.threads import map_chunks, num_threads, spans, total

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


def conv_forward_cols(x: np.ndarray, w_mat: np.ndarray, bias: np.ndarray | None, kh: int, kw: int,
                      stride, padding) -> tuple[np.ndarray, tuple]:
    """Any convolution of x (N, C, H, W) with w_mat (K, C·kh·kw), batch chunk by chunk (_spans,
    split over cnnlab's threads): im2col, one GEMM straight into y, the bias added.
    Returns y as an (N, K, H_out, W_out) view of (K, N, H_out, W_out) memory, and the chunks
    and their columns, which backward needs."""
    n, c = x.shape[:2]
    h_out, w_out = out_size(x.shape[2], x.shape[3], kh, kw, stride, padding)
    k = w_mat.shape[0]
    y = np.empty((k, n, h_out, w_out), x.dtype)

    def chunk(span):
        n0, n1 = span
        cols = im2col(x[n0:n1], kh, kw, stride, padding)
        part = y[:, n0:n1].reshape(k, -1)  # a view: each filter's rows n0:n1 are contiguous
        np.matmul(w_mat, cols, out=part)
        if bias is not None:
            part += bias[:, None]
        return cols

    chunks = _spans(n, _chunk(c * kh * kw, h_out * w_out))
    return y.transpose(1, 0, 2, 3), (chunks, map_chunks(chunk, chunks))


def conv_backward_cols(dy: np.ndarray, saved: tuple, weight: np.ndarray, x_shape, stride, padding,
                       input_grad: bool = True, bias_grad: bool = True):
    """Gradients of conv_forward_cols: (dW, db, dx), dx None when input_grad is False and db
    None when bias_grad is False. Per chunk dW += dY · X_colᵀ and dx = col2im(W_matᵀ · dY)."""
    chunks, cols = saved
    k, c, kh, kw = weight.shape
    n, _, h, w = x_shape
    w_mat = weight.reshape(k, -1)
    dy_k = np.ascontiguousarray(dy.transpose(1, 0, 2, 3))  # free for what conv layers hand on
    db = dy_k.reshape(k, -1).sum(axis=1) if bias_grad else None  # a pass over dy: only if wanted
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None

    def chunk(i):
        n0, n1 = chunks[i]
        dy_mat = dy_k[:, n0:n1].reshape(k, -1)
        if input_grad:
            part = col2im(w_mat.T @ dy_mat, (n1 - n0, c, h, w), kh, kw, stride, padding)
            dx[:, n0:n1] = part.transpose(1, 0, 2, 3)
        return dy_mat @ cols[i].T

    dw = total(map_chunks(chunk, range(len(chunks))))
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)


# ---------------------------------------------------------------- 2×2/2 max pooling, fast path
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


# ---------------------------------------------------------------- stride-1 convolution, fast path
def wide_planes(x: np.ndarray, padding: Padding) -> np.ndarray:
    """x (N, C, H, W) as zero-padded (C, N, H + top + bottom + 1, W + left + right) memory.

    The extra zero row at the bottom of each plane lets im2col_wide read every window as one
    contiguous run of a plane (see there) without running into the next plane.
    """
    (pt, pb), (pl, pr) = padding
    n, c, h, w = x.shape
    xp = np.empty((c, n, h + pt + pb + 1, w + pl + pr), x.dtype)
    xp[:, :, :pt] = 0
    xp[:, :, pt + h :] = 0
    xp[:, :, pt : pt + h, :pl] = 0
    xp[:, :, pt : pt + h, pl + w :] = 0
    xp[:, :, pt : pt + h, pl : pl + w] = x.transpose(1, 0, 2, 3)
    return xp


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


def _chunk(rows: int, per_sample: int) -> int:
    """Samples per im2col chunk: about 2²⁰ column entries (4 MiB in float32), so a step never
    holds the whole batch's columns and a chunk is still in cache (L3 here) when the GEMM reads
    it. Measured on a ResNet-8 training step (bench/speed.py's machine): 2¹⁸ entries 408 ms,
    2¹⁹ 383, 2²⁰ 393, 2²² 381, whole batch 441; and for the "same" path's layers, forward +
    backward, 2¹⁹–2²¹ within 10% of each other, 2¹⁸ and 2²² slower. Not smaller: every chunk is
    a BLAS call, and many small calls are slow when another process competes for the cores."""
    return max(1, (1 << 20) // max(1, rows * per_sample))


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    """The batch's chunks (n0, n1) of at most `step` samples, as many as a multiple of cnnlab's
    threads and of equal size (±1), so that the threads get equal work (cnnlab.threads): 128
    samples at step 37 on 2 threads make 4 chunks of 32, not 37, 37, 37 and 17."""
    t = num_threads()
    count = -(-max(1, -(-n // max(1, step))) // t) * t  # chunks needed, up to a multiple of t
    step = max(1, -(-n // count))
    return [(n0, min(n, n0 + step)) for n0 in range(0, n, step)]


def conv_forward_wide(x: np.ndarray, w_mat: np.ndarray, bias: np.ndarray | None, kh: int,
                      kw: int, padding: Padding) -> tuple[np.ndarray, np.ndarray]:
    """Stride-1 convolution of x (N, C, H, W) with w_mat (K, C·kh·kw), batch chunk by chunk:
    im2col_wide, one GEMM, the junk columns dropped and the bias added while copying into y,
    all in cache.
    Returns y as an (N, K, H_out, W_out) view of (K, N, H_out, W_out) memory, and the padded
    input (wide_planes) that backward needs."""
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
    - "col2im": dX_col = W_matᵀ · dY chunk by chunk, then kh·kw adds of contiguous runs into the
      padded planes, the adjoint of im2col_wide (zero dy on the junk columns gives zero dX_col
      there, so their runs add nothing); C·kh·kw column rows.
    - "flip": the "full" correlation of dy with the kernel flipped in both axes and its K and C
      axes swapped: the same wide im2col and GEMM as the forward; K·kh·kw column rows, no adds.
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
    dy_k = np.ascontiguousarray(dy.transpose(1, 0, 2, 3))  # free for what conv layers hand on
    db = dy_k.reshape(k, -1).sum(axis=1) if bias_grad else None  # a pass over dy: only if wanted
    w_t = weight.reshape(k, -1).T if by_col2im else None
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None
    run = h_out * wp

    def chunk(span):
        n0, n1 = span
        dy_wide = np.zeros((k, n1 - n0, h_out, wp), dy.dtype)  # zeros face the junk columns
        dy_wide[..., :w_out] = dy_k[:, n0:n1]
        dy_mat = dy_wide.reshape(k, -1)
        part = dy_mat @ im2col_wide(xp, kh, kw, h_out, n0, n1).T
        if by_col2im:
            blocks = (w_t @ dy_mat).reshape(c, kh, kw, n1 - n0, run)
            planes = np.zeros((c, n1 - n0, hp * wp), dy.dtype)
            for u in range(kh):
                for v in range(kw):
                    planes[:, :, u * wp + v : u * wp + v + run] += blocks[:, u, v]
            dx[:, n0:n1] = planes.reshape(c, n1 - n0, hp, wp)[:, :, pt : pt + h, pl : pl + w]
        return part

    dw = total(map_chunks(chunk, _spans(n, _chunk(c * kh * kw, run))))
    if not input_grad:
        return dw.reshape(weight.shape), db, None
    if not by_col2im:
        dyp = wide_planes(dy, ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr)))
        wq = dyp.shape[3]
        flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(c, -1)

        def flip_chunk(span):
            n0, n1 = span
            part = flipped @ im2col_wide(dyp, kh, kw, h, n0, n1)
            dx[:, n0:n1] = part.reshape(c, n1 - n0, h, wq)[..., :w]

        map_chunks(flip_chunk, _spans(n, _chunk(k * kh * kw, h * wq)))
    return dw.reshape(weight.shape), db, dx.transpose(1, 0, 2, 3)


def _dx_by(k: int, c: int) -> str:
    """conv_backward_wide's default way to dx: col2im builds C·kh·kw column rows, the flipped
    kernel K·kh·kw; the fewer the lighter."""
    return "col2im" if k > c else "flip"


# ------------------------------------------------------ "same"-size convolution, fast path
def conv_same_applies(h: int, w: int, kh: int, kw: int, stride, padding) -> bool:
    """The "same" fast path's conditions: the stride divides H and W and the output is
    (H/S_h, W/S_w), the size "same" padding gives (for stride 1: top + bottom = kh − 1 and
    left + right = kw − 1)."""
    (sh, sw), _ = _pairs(stride, padding)
    return h % sh == 0 and w % sw == 0 and \
        out_size(h, w, kh, kw, stride, padding) == (h // sh, w // sw)


def _phase(u: int, before: int, s: int) -> tuple[int, int]:
    """Kernel offset u of a window that starts `before` padding rows early, at stride s: input
    row s·i + u − before = s·(i + q) + r, so the offset reads phase r (rows r, r + s, …) shifted
    by q rows. Returns (r, q)."""
    q, r = divmod(u - before, s)
    return r, q


def _outside(cols: np.ndarray, shifts_u, shifts_v) -> None:
    """Zeroes the entries of cols ((C, kh, kw, n, H_out, W_out)) whose input pixel lies in the
    padding: at a row shift q the first −q rows (q < 0) or last q rows (q > 0) of every plane,
    and likewise for columns. One strided fill per kernel row and per kernel column."""
    h, w = cols.shape[4:]
    for u, q in enumerate(shifts_u):
        if q < 0:
            cols[:, u, :, :, : -q] = 0
        elif q > 0:
            cols[:, u, :, :, max(0, h - q):] = 0
    for v, q in enumerate(shifts_v):
        if q < 0:
            cols[:, :, v, ..., : -q] = 0
        elif q > 0:
            cols[:, :, v, ..., max(0, w - q):] = 0


def _same_geometry(shape, kh, kw, stride, padding):
    """Per kernel row and column its (phase, shift), and the output size."""
    (sh, sw), ((pt, _), (pl, _)) = _pairs(stride, padding)
    h, w = shape[-2:]
    rows = [_phase(u, pt, sh) for u in range(kh)]
    cols = [_phase(v, pl, sw) for v in range(kw)]
    return (sh, sw), rows, cols, h // sh, w // sw


def im2col_same(xc: np.ndarray, kh: int, kw: int, stride, padding) -> np.ndarray:
    """im2col of a "same"-size convolution (conv_same_applies) from xc in (C, n, H, W) memory,
    without a padded copy: (C·kh·kw, n·H_out·W_out), row (c, u, v), column (n, i, j), equal to
    im2col.

    Output (i, j) at kernel offset (u, v) reads input (S·i + u − top, S·j + v − left). Split
    the input into its S_h·S_w phases (rows r, r + S, …; one strided copy, none at stride 1),
    each an (n, H/S, W/S) array as large as the output: the offset then reads one phase (r_u,
    r_v) shifted by (q_u, q_v) (_phase), and in flat memory a shift is a constant
    s = q_u·W_out + q_v. So each offset's block is one contiguous run of each channel's phase
    memory (one long copy per channel); the entries that the shift took across a row or plane
    edge are exactly those whose pixel lies in the padding, and get zeroed (_outside).
    """
    (sh, sw), rows, cols_, h_out, w_out = _same_geometry(xc.shape, kh, kw, stride, padding)
    c, n = xc.shape[:2]
    phases = {(ru, rv): np.ascontiguousarray(xc[:, :, ru::sh, rv::sw]).reshape(c, -1)
              for ru, _ in rows for rv, _ in cols_}  # only the phases the kernel reads
    size = n * h_out * w_out
    cols = np.empty((c, kh, kw, size), xc.dtype)
    for u, (ru, qu) in enumerate(rows):
        for v, (rv, qv) in enumerate(cols_):
            # the |s| entries at an end that the run leaves unwritten all have their pixel in
            # the padding (past the last plane's last row, or before the first's first), so
            # _outside zeroes them with the rest
            s, src, block = qu * w_out + qv, phases[ru, rv], cols[:, u, v]
            if s >= 0:
                block[:, : max(0, size - s)] = src[:, s:]
            else:
                block[:, min(size, -s):] = src[:, : max(0, size + s)]
    _outside(cols.reshape(c, kh, kw, n, h_out, w_out), [q for _, q in rows], [q for _, q in cols_])
    return cols.reshape(c * kh * kw, size)


def col2im_same(cols: np.ndarray, out: np.ndarray, kh: int, kw: int, stride, padding) -> None:
    """The adjoint of im2col_same, written into out ((C, n, H, W), any strides whose planes are
    contiguous): the blocks zeroed where their pixel lies in the padding (in place: cols is
    scratch), then each added to its phase's memory shifted by s, one long add per channel; a
    phase starts as a copy of its first block with s = 0 (nothing in the padding), or zeros. At
    stride 1 the one phase is out itself; otherwise each phase is copied into its rows and
    columns of out, and the phases no offset reads (a stride larger than the kernel) get zeros.
    """
    (sh, sw), rows, cols_, h_out, w_out = _same_geometry(out.shape, kh, kw, stride, padding)
    c, n = out.shape[:2]
    size = n * h_out * w_out
    blocks = cols.reshape(c, kh, kw, size)
    _outside(blocks.reshape(c, kh, kw, n, h_out, w_out), [q for _, q in rows], [q for _, q in cols_])
    if (sh, sw) == (1, 1):
        flat = out.reshape(c, size)
        if not np.may_share_memory(flat, out):  # the adds would land in a copy
            raise ValueError("col2im_same: out's (n, H, W) values per channel must be contiguous")
    phases: dict[tuple[int, int], np.ndarray] = {}
    offsets = [((ru, rv), qu * w_out + qv, (u, v)) for u, (ru, qu) in enumerate(rows)
               for v, (rv, qv) in enumerate(cols_)]
    for phase, s, (u, v) in sorted(offsets, key=lambda o: (o[0], o[1] != 0)):  # s = 0 first
        block, dst = blocks[:, u, v], phases.get(phase)
        if dst is None:  # the phase's first block: copied when it has no shift, else zeros first
            dst = phases[phase] = flat if (sh, sw) == (1, 1) else np.empty((c, size), out.dtype)
            if s == 0:
                dst[...] = block
                continue
            dst[...] = 0
        if s >= 0:
            dst[:, s:] += block[:, : max(0, size - s)]
        else:
            dst[:, : max(0, size + s)] += block[:, min(size, -s):]
    if (sh, sw) != (1, 1):
        for ru in range(sh):
            for rv in range(sw):
                dst = out[:, :, ru::sh, rv::sw]
                if (ru, rv) in phases:
                    dst[...] = phases[ru, rv].reshape(dst.shape)
                else:
                    dst[...] = 0


def conv_forward_same(x: np.ndarray, w_mat: np.ndarray, bias: np.ndarray | None, kh: int,
                      kw: int, stride, padding) -> tuple[np.ndarray, np.ndarray]:
    """"Same"-size convolution (conv_same_applies) of x (N, C, H, W) with w_mat (K, C·kh·kw),
    batch chunk by chunk (_chunk): im2col_same, one GEMM straight into y, the bias added, all
    in cache.
    Returns y as an (N, K, H_out, W_out) view of (K, N, H_out, W_out) memory, and x as
    (C, N, H, W) memory (no copy when x is what a convolution handed on), which backward needs."""
    (sh, sw), _ = _pairs(stride, padding)
    xc = np.ascontiguousarray(x.transpose(1, 0, 2, 3))
    c, n, h, w = xc.shape
    k = w_mat.shape[0]
    h_out, w_out = h // sh, w // sw
    y = np.empty((k, n, h_out, w_out), x.dtype)

    def chunk(span):
        n0, n1 = span
        part = y[:, n0:n1].reshape(k, -1)  # a view: each filter's rows n0:n1 are contiguous
        np.matmul(w_mat, im2col_same(xc[:, n0:n1], kh, kw, stride, padding), out=part)
        if bias is not None:
            part += bias[:, None]

    map_chunks(chunk, _spans(n, _chunk(c * kh * kw, h_out * w_out)))
    return y.transpose(1, 0, 2, 3), xc


def conv_backward_same(dy: np.ndarray, xc: np.ndarray, weight: np.ndarray, stride, padding,
                       input_grad: bool = True, bias_grad: bool = True):
    """Gradients of conv_forward_same: (dW, db, dx), dx None when input_grad is False and db
    None when bias_grad is False.

    Chunk by chunk: X_col recomputed from xc (in cache, so about as fast as keeping it, and far
    lighter), dW += dY · X_colᵀ, and dx by col2im_same of W_matᵀ · dY straight into dx."""
    k, c, kh, kw = weight.shape
    _, n, h, w = xc.shape
    dy_k = np.ascontiguousarray(dy.transpose(1, 0, 2, 3))  # free for what conv layers hand on
    h_out, w_out = dy_k.shape[2:]
    db = dy_k.reshape(k, -1).sum(axis=1) if bias_grad else None  # a pass over dy: only if wanted
    w_t = weight.reshape(k, -1).T
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None

    def chunk(span):
        n0, n1 = span
        dy_mat = dy_k[:, n0:n1].reshape(k, -1)
        part = dy_mat @ im2col_same(xc[:, n0:n1], kh, kw, stride, padding).T
        if input_grad:
            col2im_same(w_t @ dy_mat, dx[:, n0:n1], kh, kw, stride, padding)
        return part

    dw = total(map_chunks(chunk, _spans(n, _chunk(c * kh * kw, h_out * w_out))))
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)


def conv_wide_applies(kh: int, kw: int, stride, padding) -> bool:
    """The stride-1 fast path's conditions: stride 1, padding at most kernel − 1 on each side."""
    (sh, sw), ((pt, pb), (pl, pr)) = _pairs(stride, padding)
    return sh == sw == 1 and max(pt, pb) <= kh - 1 and max(pl, pr) <= kw - 1
