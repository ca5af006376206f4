"""Batch normalisation's training passes over (C, M) channel rows in compiled loops (Numba):
the forward in three passes over x (the sum, the squared deviations, then x̂ and y written
together) and the backward in two (Σdy and Σdy·x̂, then dx), where the NumPy expressions take
six and eight. The sums are accumulated in float64, one channel at a time in one call, so a
result does not depend on how cnnlab's threads split the channels. Each is LANES running sums
(element j in sum j mod LANES) added in a fixed order at the end, in loops compiled without
reassociation (compiled.compile_loops(reorder=False)): the compiler vectorizes across the lanes
but may not reorder, so the bits are the same with and without the fused ReLU. (With
reassociation allowed, LLVM gave the two variants of a loop different orders on AMD Zen 3, and
dx differed in the last bits between the fused layers and the two.)

    forward   μ = Σx/M    σ² = Σ(x − μ)²/M    s = 1/√(σ² + ε)    x̂ = (x − μ)·s    y = γ·x̂ + β
    backward  dβ = Σdy    dγ = Σdy·x̂          dx = γ·s·(dy − dβ/M − x̂·dγ/M)

cnnlab.layers.BatchNorm2D and BatchNorm1D call them on their channel rows when Numba is
installed (batchnorm_compiled), the NumPy expressions otherwise; the two are tested equal. With
a ReLU after the layer in a Sequential, both loops take it in (rectify): max(0, y) is written as
y, and dy·[y > 0] read where dy would be, so the ReLU costs no pass of its own.
"""

from __future__ import annotations

import functools

import numpy as np

from cnnlab.kernels import compiled

#: running sums per reduction (8 float64: two AVX2 vectors, one AVX-512 vector)
LANES = 8


def batchnorm_compiled() -> bool:
    """Whether the compiled loops run (Numba installed)."""
    return compiled.HAVE_NUMBA


@functools.cache
def loops():
    """The compiled loops (normalise_rows, normalise_rows_backward), on the first call."""
    return compiled.compile_loops(normalise_rows, normalise_rows_backward, reorder=False)


def normalise_rows(rows, gamma, beta, eps, lo, hi, x_hat, y, stats, rectify):
    """Channels lo:hi of rows (C, M): x_hat and y (C, M) written, stats[c] = (μ, σ², 1/σ) in
    the rows' dtype (the float64 sums rounded to it, as NumPy's results are, before they are
    used); y = max(0, γ·x̂ + β) when rectify (a ReLU fused, as np.maximum: NaN kept, −0 → 0).
    Compiled by loops()."""
    m = rows.shape[1]
    whole = m - m % LANES
    zero = y.dtype.type(0)
    parts = np.empty(LANES)
    for c in range(lo, hi):
        x = rows[c]
        parts[:] = 0.0
        for j in range(0, whole, LANES):
            for i in range(LANES):
                parts[i] += x[j + i]
        total = 0.0
        for i in range(LANES):
            total += parts[i]
        for j in range(whole, m):
            total += x[j]
        stats[c, 0] = total / m
        mean = stats[c, 0]
        parts[:] = 0.0
        for j in range(0, whole, LANES):
            for i in range(LANES):
                d = x[j + i] - mean
                parts[i] += d * d
        squares = 0.0
        for i in range(LANES):
            squares += parts[i]
        for j in range(whole, m):
            d = x[j] - mean
            squares += d * d
        stats[c, 1] = squares / m
        stats[c, 2] = 1.0 / np.sqrt(stats[c, 1] + eps)
        inv_std, g, b = stats[c, 2], gamma[c], beta[c]
        xh, out = x_hat[c], y[c]
        for j in range(m):
            v = (x[j] - mean) * inv_std
            xh[j] = v
            o = v * g + b
            out[j] = o if not rectify or o > 0 or o != o else zero


def normalise_rows_backward(dy, x_hat, scale, lo, hi, dx, dgamma, dbeta, y, rectify):
    """Channels lo:hi: dbeta[c] = Σ dy[c], dgamma[c] = Σ dy[c]·x_hat[c] (float64 sums), and
    dx[c] = scale[c]·(dy[c] − dβ/M − x_hat[c]·dγ/M), scale = γ/σ; dbeta and dgamma have the
    rows' dtype. When rectify (a ReLU fused), dy[c] stands for dy[c]·[y[c] > 0], y the
    forward's rectified output, computed where it is read (as ReLU's backward: dy·0 where y ≤ 0,
    so NaN for a non-finite dy). Compiled by loops()."""
    m = dy.shape[1]
    whole = m - m % LANES
    means = np.empty(2, dx.dtype)
    zero = dx.dtype.type(0)
    parts = np.empty((2, LANES))
    for c in range(lo, hi):
        d, xh, r = dy[c], x_hat[c], y[c]
        parts[:] = 0.0
        for j in range(0, whole, LANES):
            for i in range(LANES):
                g = d[j + i] if not rectify or r[j + i] > 0 else d[j + i] * zero
                parts[0, i] += g
                parts[1, i] += g * xh[j + i]
        sum_dy = 0.0
        sum_dy_xh = 0.0
        for i in range(LANES):
            sum_dy += parts[0, i]
            sum_dy_xh += parts[1, i]
        for j in range(whole, m):
            g = d[j] if not rectify or r[j] > 0 else d[j] * zero
            sum_dy += g
            sum_dy_xh += g * xh[j]
        dbeta[c], dgamma[c] = sum_dy, sum_dy_xh
        means[0], means[1] = sum_dy / m, sum_dy_xh / m  # rounded to the rows' dtype
        k, a, b = scale[c], means[0], means[1]
        out = dx[c]
        for j in range(m):
            g = d[j] if not rectify or r[j] > 0 else d[j] * zero
            out[j] = k * (g - (xh[j] * b + a))  # the order the compiler chose before 2026-12-02
