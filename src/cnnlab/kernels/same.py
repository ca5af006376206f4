"""The "same" path: convolutions whose output is (H/S_h, W/S_w), by phase split and shifted
runs, without a padded copy, batch chunk by chunk.

Output (i, j) at kernel offset (u, v) reads input (S·i + u − top, S·j + v − left). Split the
input into its S_h·S_w phases (rows r, r + S, …), each as large as the output: every offset then
reads one phase (r_u, r_v) shifted by (q_u, q_v) (_phase), and in flat memory a shift is the
constant s = q_u·W_out + q_v. So im2col_same is one long copy per channel and kernel offset, and
col2im_same one long add; the entries a shift carries across a row or plane edge are exactly
those whose pixel lies in the padding, and are zeroed (_outside).

Forward, with X_col = im2col_same(x) (C·kh·kw, N·H_out·W_out), equal to the plain im2col:
    Y_mat = W_mat · X_col + b
Backward, with dY_mat = dy as (K, N·H_out·W_out):
    dW_mat = dY_mat · X_colᵀ     db = Σ_columns dY_mat     dx = col2im_same(W_matᵀ · dY_mat)
Applies when the stride divides H and W and the output is (H/S_h, W/S_w) (conv_same_applies).
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.chunks import _chunk, _spans, conv_backward_chunks
from cnnlab.kernels.geometry import _pairs, out_size
from cnnlab.runtime.threads import map_chunks


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
                      kw: int, stride, padding, epilogue=None) -> tuple[np.ndarray, np.ndarray]:
    """"Same"-size convolution (conv_same_applies) of x (N, C, H, W) with w_mat (K, C·kh·kw),
    batch chunk by chunk (_chunk): im2col_same, one GEMM straight into y, the bias added, all
    in cache.
    Returns y as an (N, K, H_out, W_out) view of (K, N, H_out, W_out) memory, and x as
    (C, N, H, W) memory (no copy when x is what a convolution handed on), which backward needs.
    epilogue: as conv_forward_direct's."""
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
        if epilogue is not None:
            epilogue(y[:, n0:n1])

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
    h_out, w_out = dy.shape[2:]
    w_t = weight.reshape(k, -1).T
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None

    def part(i, span, dy_chunk):
        n0, n1 = span
        dy_mat = dy_chunk.reshape(k, -1)
        dw_part = dy_mat @ im2col_same(xc[:, n0:n1], kh, kw, stride, padding).T
        if input_grad:
            col2im_same(w_t @ dy_mat, dx[:, n0:n1], kh, kw, stride, padding)
        return dw_part

    spans = _spans(n, _chunk(c * kh * kw, h_out * w_out))
    dw, db = conv_backward_chunks(dy, spans, part, bias_grad)
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)
