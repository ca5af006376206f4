"""The direct path: 3×3 stride-1 convolutions with padding 1, tap by tap in compiled loops
(Numba), batch chunk by chunk. No column matrix is ever built: each output value is
accumulated from the nine shifted runs of the padded input planes, in cache.

Layout (the wide path's, wide.py): the input zero-padded as (C, N, H + 3, W + 2) memory, one
flat run of N·(H + 3)·Wp values per channel, Wp = W + 2. With stride 1, the input that kernel
offset (u, v) sees for output position p (= n·plane + i·Wp + j) is the value at p + u·Wp + v,
so one loop over p does a whole chunk of samples at once; the positions with j ≥ W or i ≥ H
are junk (windows over the padding) and are dropped, as on the wide path.

    forward      y_wide[k, p] = Σ_c Σ_{u,v} w[k, c, u, v] · x_pad[c, p + u·Wp + v]
    dx           dx_wide[c, p] = Σ_k Σ_{u,v} w[k, c, 2 − u, 2 − v] · dy_pad[k, p + u·Wp + v]
                 (the same loop on dy padded by 1 like x, the kernel flipped, K and C swapped)
    dW           dW[k, c, u, v] = Σ_p dy_pad[k, p + Wp + 1] · x_pad[c, p + u·Wp + v]
                 (dy_pad is zero on the padding, so the junk positions add nothing; an
                 infinite input adds NaN there, not ±inf, as on the wide path), two filters
                 at a time from 4 input channels on

The loops run on NumPy arrays, compiled once by Numba (nogil, cached on disk), called from
cnnlab's threads one chunk each (cnnlab.runtime.threads.map_chunks): the chunks' weight
gradients are added in chunk order (chunks.conv_backward_chunks), so a result is bit-identical
for a given thread count. The loops let the compiler reassociate the sums (to vectorize them),
so the last bits differ from the NumPy paths' GEMMs: tests/test_direct.py bounds the
difference. Without Numba the layers take the NumPy paths (conv_direct_applies is False).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from cnnlab.kernels import compiled, simd
from cnnlab.kernels.chunks import _spans, conv_backward_chunks
from cnnlab.kernels.geometry import _pairs
from cnnlab.kernels.wide import fill_wide_planes
from cnnlab.runtime.threads import map_chunks

#: input plus output values a chunk holds (samples × planes), about 1 MiB of float32, so a
#: chunk's working set stays in L2 (bench/direct.py --chunk: of 2¹⁶, 2¹⁸ and 2²⁰, 2¹⁸ was the
#: fastest or within 3% on the layers that take the path, but for 56×56 maps)
CHUNK_VALUES = 1 << 18

#: dW takes filters in pairs (weight_grad3x3_pairs) from this many input channels on; first
#: layers (1–3 channels, where dW is under 1% of a step) keep the one-filter loop, so the
#: recipes measured with it (fast, strong, long) keep their bits
FIRST_LAYER_CHANNELS = 4

#: the padding the path computes: 1 on every side
PAD = ((1, 1), (1, 1))


@functools.cache
def loops():
    """The compiled loops (correlate3x3, weight_grad3x3, weight_grad3x3_pairs): Numba imported,
    and the loops compiled or loaded from its disk cache, on the first call
    (kernels.compiled.compile_loops)."""
    return compiled.compile_loops(correlate3x3, weight_grad3x3, weight_grad3x3_pairs)


def conv_direct_applies(kh: int, kw: int, stride, padding) -> bool:
    """The direct path's conditions: Numba installed, a 3×3 kernel, stride 1, padding 1 on
    every side (the layer checks groups and dilation)."""
    (sh, sw), pad = _pairs(stride, padding)
    return compiled.HAVE_NUMBA and (kh, kw) == (3, 3) and (sh, sw) == (1, 1) and pad == PAD


def correlate3x3(xs, w, out, start, count, wp):
    """out[k, p] = Σ_c Σ_{u,v} w[k, c, u, v] · xs[c, start + p + u·wp + v] for p < count, two
    filters at a time (each input value read once for both); compiled by loops().

    xs (C, L) and out (K, ≥ count) C-contiguous, w (K, C, 3, 3) with K even; xs must hold
    start + count + 2·wp + 2 values per row."""
    for k in range(0, w.shape[0], 2):
        o = out[k, :count]
        q = out[k + 1, :count]
        o[:] = 0
        q[:] = 0
        for c in range(xs.shape[0]):
            x = xs[c, start:]
            a0, a1, a2 = x[0:], x[1:], x[2:]
            b0, b1, b2 = x[wp:], x[wp + 1:], x[wp + 2:]
            c0, c1, c2 = x[2 * wp:], x[2 * wp + 1:], x[2 * wp + 2:]
            f, g = w[k, c], w[k + 1, c]
            f00, f01, f02, f10, f11, f12, f20, f21, f22 = (
                f[0, 0], f[0, 1], f[0, 2], f[1, 0], f[1, 1], f[1, 2], f[2, 0], f[2, 1], f[2, 2])
            g00, g01, g02, g10, g11, g12, g20, g21, g22 = (
                g[0, 0], g[0, 1], g[0, 2], g[1, 0], g[1, 1], g[1, 2], g[2, 0], g[2, 1], g[2, 2])
            for j in range(count):
                x00, x01, x02 = a0[j], a1[j], a2[j]
                x10, x11, x12 = b0[j], b1[j], b2[j]
                x20, x21, x22 = c0[j], c1[j], c2[j]
                o[j] += (f00 * x00 + f01 * x01 + f02 * x02 + f10 * x10 + f11 * x11
                         + f12 * x12 + f20 * x20 + f21 * x21 + f22 * x22)
                q[j] += (g00 * x00 + g01 * x01 + g02 * x02 + g10 * x10 + g11 * x11
                         + g12 * x12 + g20 * x20 + g21 * x21 + g22 * x22)


def weight_grad3x3(dys, xs, dw, start, count, wp):
    """dw[k, c, u, v] = Σ_{p < count} dys[k, wp + 1 + p] · xs[c, start + p + u·wp + v].

    dys (K, L) is dy padded by 1 like x (wide_planes memory of the chunk's samples), xs (C, L')
    the padded input, from sample start on; dw (K, C, 3, 3) is overwritten. Compiled by
    loops()."""
    zero = dw.dtype.type(0)
    for k in range(dys.shape[0]):
        d = dys[k, wp + 1: wp + 1 + count]
        for c in range(xs.shape[0]):
            x = xs[c, start:]
            a0, a1, a2 = x[0:], x[1:], x[2:]
            b0, b1, b2 = x[wp:], x[wp + 1:], x[wp + 2:]
            c0, c1, c2 = x[2 * wp:], x[2 * wp + 1:], x[2 * wp + 2:]
            s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = zero
            for j in range(count):
                g = d[j]
                s00 += g * a0[j]
                s01 += g * a1[j]
                s02 += g * a2[j]
                s10 += g * b0[j]
                s11 += g * b1[j]
                s12 += g * b2[j]
                s20 += g * c0[j]
                s21 += g * c1[j]
                s22 += g * c2[j]
            dw[k, c, 0, 0], dw[k, c, 0, 1], dw[k, c, 0, 2] = s00, s01, s02
            dw[k, c, 1, 0], dw[k, c, 1, 1], dw[k, c, 1, 2] = s10, s11, s12
            dw[k, c, 2, 0], dw[k, c, 2, 1], dw[k, c, 2, 2] = s20, s21, s22


def weight_grad3x3_pairs(dys, xs, dw, start, count, wp):
    """weight_grad3x3 two filters at a time, K even: the nine input runs read once for both
    (18 multiply-adds per 11 loads where the one-filter loop makes 9 per 10), 1.6–1.9× faster
    on 16 → 16 at 28×28. Its sums vectorize differently, so the last bits differ from
    weight_grad3x3's (relative 7·10⁻⁷). Compiled by loops()."""
    zero = dw.dtype.type(0)
    for k in range(0, dys.shape[0], 2):
        d, e = dys[k, wp + 1: wp + 1 + count], dys[k + 1, wp + 1: wp + 1 + count]
        for c in range(xs.shape[0]):
            x = xs[c, start:]
            a0, a1, a2 = x[0:], x[1:], x[2:]
            b0, b1, b2 = x[wp:], x[wp + 1:], x[wp + 2:]
            c0, c1, c2 = x[2 * wp:], x[2 * wp + 1:], x[2 * wp + 2:]
            s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = zero
            t00 = t01 = t02 = t10 = t11 = t12 = t20 = t21 = t22 = zero
            for j in range(count):
                g, h = d[j], e[j]
                x00, x01, x02 = a0[j], a1[j], a2[j]
                x10, x11, x12 = b0[j], b1[j], b2[j]
                x20, x21, x22 = c0[j], c1[j], c2[j]
                s00, s01, s02 = s00 + g * x00, s01 + g * x01, s02 + g * x02
                s10, s11, s12 = s10 + g * x10, s11 + g * x11, s12 + g * x12
                s20, s21, s22 = s20 + g * x20, s21 + g * x21, s22 + g * x22
                t00, t01, t02 = t00 + h * x00, t01 + h * x01, t02 + h * x02
                t10, t11, t12 = t10 + h * x10, t11 + h * x11, t12 + h * x12
                t20, t21, t22 = t20 + h * x20, t21 + h * x21, t22 + h * x22
            dw[k, c, 0, 0], dw[k, c, 0, 1], dw[k, c, 0, 2] = s00, s01, s02
            dw[k, c, 1, 0], dw[k, c, 1, 1], dw[k, c, 1, 2] = s10, s11, s12
            dw[k, c, 2, 0], dw[k, c, 2, 1], dw[k, c, 2, 2] = s20, s21, s22
            dw[k + 1, c, 0, 0], dw[k + 1, c, 0, 1], dw[k + 1, c, 0, 2] = t00, t01, t02
            dw[k + 1, c, 1, 0], dw[k + 1, c, 1, 1], dw[k + 1, c, 1, 2] = t10, t11, t12
            dw[k + 1, c, 2, 0], dw[k + 1, c, 2, 1], dw[k + 1, c, 2, 2] = t20, t21, t22


def _chunk_spans(n: int, channels: int, plane: int) -> list[tuple[int, int]]:
    return _spans(n, max(1, CHUNK_VALUES // max(1, channels * plane)))


def _even(w: np.ndarray, dtype) -> np.ndarray:
    """w (K, C, 3, 3) as contiguous `dtype`, a zero filter appended when K is odd
    (correlate3x3 computes filters in pairs)."""
    if w.shape[0] % 2 == 0:
        return np.ascontiguousarray(w, dtype)
    return np.concatenate([w, np.zeros((1, *w.shape[1:]), w.dtype)]).astype(dtype, copy=False)


class Correlator(NamedTuple):
    """The compiled correlation for one kernel (_correlator): run(xs, out, start, count) fills
    out's first `filters` rows (zero filters past K) for ⌈count/block⌉·block positions, reading
    xs up to `slack` values past start + count on its last row."""

    run: Callable
    filters: int
    block: int
    slack: int


def _correlator(weight: np.ndarray, dtype, wp: int) -> Correlator:
    """correlate3x3 for weight (K, C, 3, 3) in `dtype`: the explicit vector kernel (simd.py) where
    it runs (float32 on AVX-512 or AVX2), the same bits; Numba's loop otherwise."""
    kernel = simd.kernel(dtype)
    if kernel is None:
        wt, loop = _even(weight, dtype), loops()[0]
        return Correlator(lambda xs, out, start, count: loop(xs, wt, out, start, count, wp),
                          wt.shape[0], 1, 0)
    packed = kernel.pack(weight)
    return Correlator(lambda xs, out, start, count: kernel.correlate(xs, packed, out, start,
                                                                     count, wp),
                      packed.shape[0] * kernel.filters, kernel.block, kernel.slack(wp))


def _padded_planes(rows: int, n: int, hp: int, wp: int, dtype, slack: int):
    """(rows, n, hp, wp) memory and its (rows, n·hp·wp) view, followed by `slack` zeros that a
    Correlator may read past the last row."""
    size = rows * n * hp * wp
    memory = np.empty(size + slack, dtype)
    memory[size:] = 0
    return memory[:size].reshape(rows, n, hp, wp), memory[:size].reshape(rows, n * hp * wp)


def _blocks(count: int, block: int) -> int:
    """count rounded up to a multiple of block."""
    return -(-count // block) * block


def conv_forward_direct(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                        epilogue=None) -> tuple[np.ndarray, np.ndarray]:
    """y = x ⋆ weight + bias for a 3×3 kernel, stride 1, padding 1 (conv_direct_applies).
    Returns y as an (N, K, H, W) view of (K, N, H, W) memory, and the padded input
    (wide_planes) that backward needs. Shape: x (N, C, H, W), weight (K, C, 3, 3).
    epilogue: None, or an in-place map called on each chunk's (K, m, H, W) block of y once
    written, while it is in cache (the layers after the convolution, in inference)."""
    n, c, h, w = x.shape
    hp, wp = h + 3, w + 2
    plane = hp * wp
    k = weight.shape[0]
    correlate = _correlator(weight, x.dtype, wp)
    xp, xs = _padded_planes(c, n, hp, wp, x.dtype, correlate.slack)
    y = np.empty((k, n, h, w), x.dtype)

    def chunk(span):
        n0, n1 = span
        m = n1 - n0
        fill_wide_planes(xp, x, PAD, n0, n1)
        count = m * plane - 2 * wp - 2
        out = np.empty((correlate.filters, _blocks(m * plane, correlate.block)), x.dtype)
        correlate.run(xs, out, n0 * plane, count)
        wide = out[:k, : m * plane].reshape(k, m, hp, wp)[:, :, :h, :w]
        if bias is None:
            y[:, n0:n1] = wide
        else:
            np.add(wide, bias.reshape(k, 1, 1, 1), out=y[:, n0:n1])
        if epilogue is not None:
            epilogue(y[:, n0:n1])

    map_chunks(chunk, _chunk_spans(n, c + k, plane))
    return y.transpose(1, 0, 2, 3), xp


def conv_backward_direct(dy: np.ndarray, xp: np.ndarray, weight: np.ndarray,
                         input_grad: bool = True, bias_grad: bool = True):
    """Gradients of conv_forward_direct: (dW, db, dx), dx None when input_grad is False and db
    None when bias_grad is False. Per chunk, dy is padded by 1 like x; dx is the forward loop
    on it with the flipped kernel, dW the nine sums of products with the padded input."""
    k, c = weight.shape[:2]
    n, _, h, w = dy.shape
    _, _, hp, wp = xp.shape
    plane = hp * wp
    xs = xp.reshape(c, n * plane)
    flipped = (_correlator(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), dy.dtype, wp)
               if input_grad else None)
    _, weight_grad, weight_grad_pairs = loops()
    if k % 2 == 0 and c >= FIRST_LAYER_CHANNELS:
        weight_grad = weight_grad_pairs
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None

    def part(i, span, dy_chunk):
        n0, n1 = span
        m = n1 - n0
        dyp, dys = _padded_planes(k, m, hp, wp, dy.dtype, flipped.slack if input_grad else 0)
        fill_wide_planes(dyp, dy_chunk.transpose(1, 0, 2, 3), PAD)
        count = m * plane - 2 * wp - 2
        dw_part = np.empty((k, c, 3, 3), dy.dtype)
        weight_grad(dys, xs, dw_part, n0 * plane, count, wp)
        if input_grad:
            out = np.empty((flipped.filters, _blocks(m * plane, flipped.block)), dy.dtype)
            flipped.run(dys, out, 0, count)
            dx[:, n0:n1] = out[:c, : m * plane].reshape(c, m, hp, wp)[:, :, :h, :w]
        return dw_part.reshape(k, -1)

    dw, db = conv_backward_chunks(dy, _chunk_spans(n, c + k, plane), part, bias_grad)
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)
