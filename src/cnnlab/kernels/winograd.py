"""The Winograd path: 3×3 stride-1 convolutions with padding 1 as F(2×2, 3×3) (Lavin and Gray,
2016), the transforms in compiled loops (Numba), the products in the BLAS, batch chunk by chunk.

Cut the padded input into 4×4 tiles d at stride 2 (tile t = (n, i, j) starts at row 2i, column
2j of the padded plane); each 2×2 block of the output is then

    Y = Aᵀ·[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]·A          g: a 3×3 filter, ⊙: elementwise

with the constant matrices G (4×3), Bᵀ (4×4), Aᵀ (2×4) below, all of 0, ±1 and ±½. Summed over
channels, each of the 16 positions e of the 4×4 tile becomes one matrix product:

    forward   V[e] = (Bᵀ·d·B)[e]  (C, T)    U[e] = (G·g·Gᵀ)[e]  (K, C)    M[e] = U[e] · V[e]
              y tile = Aᵀ·M·A + b                                          (16 GEMMs (K, C, T))
    backward  dM = A·dY·Aᵀ per output tile     dU[e] = dM[e] · V[e]ᵀ     dW = Gᵀ·dU·G
              dV[e] = U[e]ᵀ · dM[e]            dx = Σ_tiles B·dV·Bᵀ at the tile's place

(the backward is the forward's adjoint, term by term). Per tile and channel pair that is 16
multiply-adds where the direct convolution needs 36, 2.25× fewer, and the transforms read the
input once and write 16/4 = 4× its size (im2col writes 9×). The transforms are exact in
floating point but for the rounding of their additions; the error against the direct sums is
bounded in tests/test_winograd.py (float32: ≤ 1e-4 relative to the output's scale).

Tiles past an odd height or width read zeros and their extra outputs are dropped. Chunks of
samples go to cnnlab's threads (map_chunks) and the chunks' dU are added in chunk order, so a
result is bit-identical for a given thread count. Without Numba the layers take the NumPy
paths (conv_winograd_applies is False).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from cnnlab.kernels import compiled
from cnnlab.kernels.chunks import _spans, conv_backward_chunks
from cnnlab.kernels.geometry import _pairs
from cnnlab.runtime.threads import map_chunks

#: G: the filter transform U = G·g·Gᵀ (Bᵀ and Aᵀ are written out in the loops below)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])

#: transformed values a chunk holds (16 positions × (C + K) × tiles), 4 MiB of float32: the
#: size first tried, kept; a sweep of 2¹⁷…2²¹ (bench/direct.py --wchunk) on a variant with the
#: padding inside the input transform found no size the fastest on every layer
CHUNK_VALUES = 1 << 20

#: the padding the path computes: 1 on every side
PAD = ((1, 1), (1, 1))


@functools.cache
def loops():
    """The compiled transforms (input_tiles, output_tiles, grad_tiles, input_tiles_adjoint),
    Numba imported and the loops compiled or loaded from its disk cache on the first call."""
    return compiled.compile_loops(input_tiles, output_tiles, grad_tiles, input_tiles_adjoint)


def conv_winograd_applies(kh: int, kw: int, stride, padding) -> bool:
    """The Winograd path's conditions: Numba installed, a 3×3 kernel, stride 1, padding 1 on
    every side (the layer checks groups, dilation and the channel counts)."""
    (sh, sw), pad = _pairs(stride, padding)
    return compiled.HAVE_NUMBA and (kh, kw) == (3, 3) and (sh, sw) == (1, 1) and pad == PAD


def input_tiles(xp, v, tiles):
    """v[4a + b, c·T + t] = (Bᵀ·d·B)[a, b] for every tile t = (n·th + i)·tw + j of xp's
    samples, d = xp[c, n, 2i : 2i + 4, 2j : 2j + 4]; Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0],
    [0, −1, 1, 0], [0, 1, 0, −1]]. xp (C, m, 2·th + 2, 2·tw + 2), v (16, ≥ C·T) (_planes),
    T = tiles = m·th·tw. Compiled by loops()."""
    cs, m, hp, wq = xp.shape
    th, tw = (hp - 2) // 2, (wq - 2) // 2
    for c in range(cs):
        for n in range(m):
            for i in range(th):
                r0, r1, r2, r3 = xp[c, n, 2 * i], xp[c, n, 2 * i + 1], xp[c, n, 2 * i + 2], \
                    xp[c, n, 2 * i + 3]
                t0 = c * tiles + (n * th + i) * tw
                for j in range(tw):
                    q, t = 2 * j, t0 + j
                    a0, a1, a2, a3 = r0[q] - r2[q], r0[q + 1] - r2[q + 1], r0[q + 2] - r2[q + 2], \
                        r0[q + 3] - r2[q + 3]
                    b0, b1, b2, b3 = r1[q] + r2[q], r1[q + 1] + r2[q + 1], r1[q + 2] + r2[q + 2], \
                        r1[q + 3] + r2[q + 3]
                    c0, c1, c2, c3 = r2[q] - r1[q], r2[q + 1] - r1[q + 1], r2[q + 2] - r1[q + 2], \
                        r2[q + 3] - r1[q + 3]
                    d0, d1, d2, d3 = r1[q] - r3[q], r1[q + 1] - r3[q + 1], r1[q + 2] - r3[q + 2], \
                        r1[q + 3] - r3[q + 3]
                    v[0, t], v[1, t], v[2, t], v[3, t] = a0 - a2, a1 + a2, a2 - a1, a1 - a3
                    v[4, t], v[5, t], v[6, t], v[7, t] = b0 - b2, b1 + b2, b2 - b1, b1 - b3
                    v[8, t], v[9, t], v[10, t], v[11, t] = c0 - c2, c1 + c2, c2 - c1, c1 - c3
                    v[12, t], v[13, t], v[14, t], v[15, t] = d0 - d2, d1 + d2, d2 - d1, \
                        d1 - d3


def output_tiles(mm, tiles, y, bias, n0):
    """y[k, n0 + n, 2i + a, 2j + b] = (Aᵀ·M·A)[a, b] + bias[k], M[a', b'] = mm[4a' + b', k·T + t]
    for tile t = (n·th + i)·tw + j; Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]. mm (16, ≥ K·T),
    T = tiles = m·th·tw;
    y (K, N, ≥ 2·th − 1, ≥ 2·tw − 1), C-contiguous: the values past an odd height or width are
    not written. Compiled by loops()."""
    ks, hy, wy = y.shape[0], y.shape[2], y.shape[3]
    th, tw = (hy + 1) // 2, (wy + 1) // 2
    m = tiles // (th * tw)
    spare = np.empty((2, 2 * tw), y.dtype)  # the rows and columns past an odd size land here
    for k in range(ks):
        bk = bias[k]
        for n in range(m):
            for i in range(th):
                y0 = spare[0] if wy % 2 else y[k, n0 + n, 2 * i]
                y1 = spare[1] if wy % 2 or 2 * i + 1 == hy else y[k, n0 + n, 2 * i + 1]
                t0 = k * tiles + (n * th + i) * tw
                for j in range(tw):
                    t = t0 + j
                    z0 = mm[0, t] + mm[4, t] + mm[8, t]
                    z1 = mm[1, t] + mm[5, t] + mm[9, t]
                    z2 = mm[2, t] + mm[6, t] + mm[10, t]
                    z3 = mm[3, t] + mm[7, t] + mm[11, t]
                    s0 = mm[4, t] - mm[8, t] - mm[12, t]
                    s1 = mm[5, t] - mm[9, t] - mm[13, t]
                    s2 = mm[6, t] - mm[10, t] - mm[14, t]
                    s3 = mm[7, t] - mm[11, t] - mm[15, t]
                    y0[2 * j], y0[2 * j + 1] = z0 + z1 + z2 + bk, z1 - z2 - z3 + bk
                    y1[2 * j], y1[2 * j + 1] = s0 + s1 + s2 + bk, s1 - s2 - s3 + bk
                if wy % 2:  # the spare rows' values inside the output
                    y[k, n0 + n, 2 * i, :] = spare[0, :wy]
                    if 2 * i + 1 < hy:
                        y[k, n0 + n, 2 * i + 1, :] = spare[1, :wy]


def grad_tiles(dy, dm, tiles, n0):
    """dm[4a + b, k·T + t] = (A·dY·Aᵀ)[a, b], dY = dy[k, n0 + n, 2i : 2i + 2, 2j : 2j + 2] for
    tile t = (n·th + i)·tw + j: the adjoint of output_tiles. dy (K, N, 2·th, 2·tw)
    C-contiguous (zeros past an odd size), dm (16, ≥ K·T), T = tiles = m·th·tw. Compiled by
    loops()."""
    ks, th, tw = dy.shape[0], dy.shape[2] // 2, dy.shape[3] // 2
    m = tiles // (th * tw)
    for k in range(ks):
        for n in range(m):
            for i in range(th):
                y0, y1 = dy[k, n0 + n, 2 * i], dy[k, n0 + n, 2 * i + 1]
                t0 = k * tiles + (n * th + i) * tw
                for j in range(tw):
                    t = t0 + j
                    p, q, r, s = y0[2 * j], y0[2 * j + 1], y1[2 * j], y1[2 * j + 1]
                    # rows of A·dY: (y0, y0 + y1, y0 − y1, −y1), then the same on columns
                    e0, e1, f0, f1 = p + r, q + s, p - r, q - s
                    dm[0, t], dm[1, t], dm[2, t], dm[3, t] = p, p + q, p - q, -q
                    dm[4, t], dm[5, t], dm[6, t], dm[7, t] = e0, e0 + e1, e0 - e1, -e1
                    dm[8, t], dm[9, t], dm[10, t], dm[11, t] = f0, f0 + f1, f0 - f1, -f1
                    dm[12, t], dm[13, t], dm[14, t], dm[15, t] = -r, -r - s, s - r, s


def input_tiles_adjoint(dv, tiles, dxp):
    """dxp = Σ_tiles B·dV·Bᵀ, each tile's 4×4 added at (2i, 2j) of its plane, dV[a, b] =
    dv[4a + b, c·T + t]: the adjoint of input_tiles. dv (16, ≥ C·T), T = tiles = m·th·tw;
    dxp (C, m, 2·th + 2, 2·tw + 2) is overwritten. Compiled by loops()."""
    cs, m, hp, wq = dxp.shape
    th, tw = (hp - 2) // 2, (wq - 2) // 2
    dxp[:] = 0
    for c in range(cs):
        for n in range(m):
            for i in range(th):
                r0, r1, r2, r3 = dxp[c, n, 2 * i], dxp[c, n, 2 * i + 1], dxp[c, n, 2 * i + 2], \
                    dxp[c, n, 2 * i + 3]
                t0 = c * tiles + (n * th + i) * tw
                for j in range(tw):
                    q, t = 2 * j, t0 + j
                    # rows of B·dV: (M0, M1 − M2 + M3, −M0 + M1 + M2, −M3), one column b each
                    a0, a1, a2, a3 = dv[0, t], dv[1, t], dv[2, t], dv[3, t]
                    b0, b1, b2, b3 = dv[4, t], dv[5, t], dv[6, t], dv[7, t]
                    c0, c1, c2, c3 = dv[8, t], dv[9, t], dv[10, t], dv[11, t]
                    d0, d1, d2, d3 = dv[12, t], dv[13, t], dv[14, t], dv[15, t]
                    x0, x1, x2, x3 = a0, a1, a2, a3
                    r0[q], r0[q + 1] = r0[q] + x0, r0[q + 1] + x1 - x2 + x3
                    r0[q + 2], r0[q + 3] = r0[q + 2] + x1 + x2 - x0, r0[q + 3] - x3
                    x0, x1, x2, x3 = b0 - c0 + d0, b1 - c1 + d1, b2 - c2 + d2, b3 - c3 + d3
                    r1[q], r1[q + 1] = r1[q] + x0, r1[q + 1] + x1 - x2 + x3
                    r1[q + 2], r1[q + 3] = r1[q + 2] + x1 + x2 - x0, r1[q + 3] - x3
                    x0, x1, x2, x3 = b0 + c0 - a0, b1 + c1 - a1, b2 + c2 - a2, b3 + c3 - a3
                    r2[q], r2[q + 1] = r2[q] + x0, r2[q + 1] + x1 - x2 + x3
                    r2[q + 2], r2[q + 3] = r2[q + 2] + x1 + x2 - x0, r2[q + 3] - x3
                    r3[q], r3[q + 1] = r3[q] - d0, r3[q + 1] - d1 + d2 - d3
                    r3[q + 2], r3[q + 3] = r3[q + 2] - d1 - d2 + d0, r3[q + 3] + d3


def filter_tiles(weight: np.ndarray, dtype) -> np.ndarray:
    """U[4a + b, k, c] = (G·g·Gᵀ)[a, b] of each filter g = weight[k, c] (K, C, 3, 3), computed
    in float64: (16, K, C), C-contiguous."""
    u = np.einsum("ai,kcij,bj->abkc", G, weight.astype(np.float64), G)
    return np.ascontiguousarray(u.reshape(16, *weight.shape[:2]), dtype)


def filter_grad(du: np.ndarray) -> np.ndarray:
    """dW[k, c] = Gᵀ·dU·G, the adjoint of filter_tiles, from du (16, K, C): (K, C, 3, 3)."""
    d = du.reshape(4, 4, *du.shape[1:]).astype(np.float64)
    return np.einsum("ai,abkc,bj->kcij", G, d, G).astype(du.dtype)


def _tiles(h: int, w: int) -> tuple[int, int]:
    return -(-h // 2), -(-w // 2)


def _chunk_spans(n: int, channels: int, tiles: int) -> list[tuple[int, int]]:
    return _spans(n, max(1, CHUNK_VALUES // (16 * channels * tiles)))


def _planes(rows: int, tiles: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """16 planes of rows × tiles values: the (16, L) memory the loops take, and its (16, rows,
    tiles) view for the products. L is rows·tiles rounded up to an odd number of 64-byte lines:
    with planes a multiple of 4 KiB apart (16 channels of 28×28 tiles, 64 of 7×7), the 16
    streams a transform writes fall in the same cache sets, and it ran 4–14× slower."""
    line = 64 // np.dtype(dtype).itemsize
    lines = -(-rows * tiles // line)
    lines += 1 - lines % 2
    memory = np.empty((16, lines * line), dtype)
    return memory, memory[:, : rows * tiles].reshape(16, rows, tiles)


def _padded(xc: np.ndarray, n0: int, n1: int, th: int, tw: int) -> np.ndarray:
    """Samples n0:n1 of xc (C, N, H, W) zero-padded to (C, m, 2·th + 2, 2·tw + 2): 1 above and
    left, 1 or 2 below and right."""
    c, _, h, w = xc.shape
    xp = np.empty((c, n1 - n0, 2 * th + 2, 2 * tw + 2), xc.dtype)
    xp[:, :, 0] = 0
    xp[:, :, h + 1 :] = 0
    xp[:, :, 1 : h + 1, 0] = 0
    xp[:, :, 1 : h + 1, w + 1 :] = 0
    xp[:, :, 1 : h + 1, 1 : w + 1] = xc[:, n0:n1]
    return xp


class Kept(NamedTuple):
    """What conv_forward_winograd(keep_tiles=True) leaves for backward: x as (C, N, H, W) memory,
    the chunks, and each chunk's V memory (_planes), which backward then reads instead of
    transforming the input again."""

    xc: np.ndarray
    spans: list[tuple[int, int]]
    planes: list[np.ndarray]


def conv_forward_winograd(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                          keep_tiles: bool = False,
                          epilogue=None) -> tuple[np.ndarray, np.ndarray | Kept]:
    """y = x ⋆ weight + bias for a 3×3 kernel, stride 1, padding 1 (conv_winograd_applies).
    Returns y as an (N, K, H, W) view of (K, N, H, W) memory, and what backward needs: x as
    (C, N, H, W) memory (no copy when x is what a convolution handed on), or with keep_tiles a
    Kept that also holds the transformed input V (16·C values per tile, 4× x's size for even
    H and W), so that backward skips its padded copy and input transform, the same bits.
    Shape: x (N, C, H, W), weight (K, C, 3, 3). epilogue: as conv_forward_direct's."""
    xc = np.ascontiguousarray(x.transpose(1, 0, 2, 3))
    c, n, h, w = xc.shape
    k = weight.shape[0]
    th, tw = _tiles(h, w)
    u = filter_tiles(weight, x.dtype)
    b = np.zeros(k, x.dtype) if bias is None else bias.astype(x.dtype, copy=False)
    fwd, out, _, _ = loops()
    y = np.empty((k, n, h, w), x.dtype)
    spans = _chunk_spans(n, c + k, th * tw)
    planes = [None] * len(spans) if keep_tiles else None

    def chunk(i):
        n0, n1 = spans[i]
        tiles = (n1 - n0) * th * tw
        v, v3 = _planes(c, tiles, x.dtype)
        fwd(_padded(xc, n0, n1, th, tw), v, tiles)
        mm, mm3 = _planes(k, tiles, x.dtype)
        np.matmul(u, v3, out=mm3)
        out(mm, tiles, y, b, n0)
        if epilogue is not None:
            epilogue(y[:, n0:n1])
        if keep_tiles:
            planes[i] = v

    map_chunks(chunk, range(len(spans)))
    return y.transpose(1, 0, 2, 3), Kept(xc, spans, planes) if keep_tiles else xc


def conv_backward_winograd(dy: np.ndarray, saved: np.ndarray | Kept, weight: np.ndarray,
                           input_grad: bool = True, bias_grad: bool = True):
    """Gradients of conv_forward_winograd from what it saved: (dW, db, dx), dx None when
    input_grad is False and db None when bias_grad is False. Per chunk: V (kept, or recomputed
    from xc), dM from dy, dU = dM·Vᵀ (added over the chunks in order), and dx from dV = Uᵀ·dM."""
    kept = saved if isinstance(saved, Kept) else None
    xc = saved if kept is None else kept.xc
    k, c = weight.shape[:2]
    _, n, h, w = xc.shape
    th, tw = _tiles(h, w)
    u_t = filter_tiles(weight, dy.dtype).transpose(0, 2, 1).copy() if input_grad else None
    fwd, _, grad, adjoint = loops()
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None
    dy_k = np.ascontiguousarray(dy.transpose(1, 0, 2, 3))  # free for what conv layers hand on
    dyp = dy_k
    if (h, w) != (2 * th, 2 * tw):  # odd: dy padded with zeros to whole tiles
        dyp = np.zeros((k, n, 2 * th, 2 * tw), dy.dtype)
        dyp[:, :, :h, :w] = dy_k
    spans = _chunk_spans(n, c + k, th * tw)
    if kept is not None and kept.spans != spans:  # another thread count since the forward
        kept = None

    def part(i, span, dy_chunk):
        n0, n1 = span
        tiles = (n1 - n0) * th * tw
        if kept is None:
            xp = _padded(xc, n0, n1, th, tw)
            v, v3 = _planes(c, tiles, dy.dtype)
            fwd(xp, v, tiles)
        else:
            v, xp = kept.planes[i], None
            v3 = v[:, : c * tiles].reshape(16, c, tiles)
        dm, dm3 = _planes(k, tiles, dy.dtype)
        grad(dyp, dm, tiles, n0)
        du = np.matmul(dm3, v3.transpose(0, 2, 1))
        if input_grad:
            np.matmul(u_t, dm3, out=v3)  # dV, in V's memory
            if xp is None:
                xp = np.empty((c, n1 - n0, 2 * th + 2, 2 * tw + 2), dy.dtype)
            adjoint(v, tiles, xp)  # dx, in the padded input's memory (overwritten)
            dx[:, n0:n1] = xp[:, :, 1 : h + 1, 1 : w + 1]
        return du

    du, db = conv_backward_chunks(dy_k.transpose(1, 0, 2, 3), spans, part, bias_grad)
    return filter_grad(du), db, None if dx is None else dx.transpose(1, 0, 2, 3)
