"""Batch normalisation's training passes over (C, M) channel rows in compiled loops (Numba):
the forward in three passes over x (the sum, the squared deviations, then x̂ and y written
together) and the backward in two (Σdy and Σdy·x̂, then dx), where the NumPy expressions take
six and eight. The sums are accumulated in float64 (the compiler may reassociate them to
vectorize), one channel at a time in one call, so a result does not depend on how cnnlab's
threads split the channels.

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


def batchnorm_compiled() -> bool:
    """Whether the compiled loops run (Numba installed)."""
    return compiled.HAVE_NUMBA


@functools.cache
def loops():
    """The compiled loops (normalise_rows, normalise_rows_backward), on the first call."""
    return compiled.compile_loops(normalise_rows, normalise_rows_backward)


def normalise_rows(rows, gamma, beta, eps, lo, hi, x_hat, y, stats, rectify):
    """Channels lo:hi of rows (C, M): x_hat and y (C, M) written, stats[c] = (μ, σ², 1/σ) in
    the rows' dtype (the float64 sums rounded to it, as NumPy's results are, before they are
    used); y = max(0, γ·x̂ + β) when rectify (a ReLU fused, as np.maximum: NaN kept, −0 → 0).
    Compiled by loops()."""
    m = rows.shape[1]
    zero = y.dtype.type(0)
    for c in range(lo, hi):
        x = rows[c]
        total = 0.0
        for j in range(m):
            total += x[j]
        stats[c, 0] = total / m
        mean = stats[c, 0]
        squares = 0.0
        for j in range(m):
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
    means = np.empty(2, dx.dtype)
    zero = dx.dtype.type(0)
    for c in range(lo, hi):
        d, xh, r = dy[c], x_hat[c], y[c]
        sum_dy = 0.0
        sum_dy_xh = 0.0
        for j in range(m):
            g = d[j] if not rectify or r[j] > 0 else d[j] * zero
            sum_dy += g
            sum_dy_xh += g * xh[j]
        dbeta[c], dgamma[c] = sum_dy, sum_dy_xh
        means[0], means[1] = sum_dy / m, sum_dy_xh / m  # rounded to the rows' dtype
        k, a, b = scale[c], means[0], means[1]
        out = dx[c]
        for j in range(m):
            g = d[j] if not rectify or r[j] > 0 else d[j] * zero
            out[j] = k * (g - a - xh[j] * b)
