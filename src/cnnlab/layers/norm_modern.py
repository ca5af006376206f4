"""The normalisations of recent networks, per sample (no batch statistics, no running buffers):
LayerNorm (over the channels at each position, ConvNeXt's form), GroupNorm, and LayerScale, the
learned per-channel scale ConvNeXt puts at the end of each residual branch.

BatchNorm is in norm.py, LocalResponseNorm in lrn.py. Each normalisation here standardises a set of
M values of one sample and then scales and shifts each channel:
    μ = (1/M)·Σ x      σ² = (1/M)·Σ (x − μ)²   (biased, as PyTorch)      x̂ = (x − μ)/√(σ² + ε)
    y = γ_c·x̂ + β_c
and its backward, with dx̂ = dy·γ_c and the means over the same M values:
    dx = (1/√(σ² + ε)) · (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))
    dγ_c = Σ dy·x̂      dβ_c = Σ dy      (over every value of channel c in the batch)
"""

from __future__ import annotations

import numbers

import numpy as np

from cnnlab.core import Layer, Parameter, Shape, ShapeError
from cnnlab.layers.norm import _channel_rows
from cnnlab.runtime import threads


def _standardise(v: np.ndarray, axis, eps: float, out: np.ndarray) -> np.ndarray:
    """out = x̂ = (v − μ)/√(σ² + ε) over `axis`; returns 1/√(σ² + ε) (keepdims)."""
    mean = v.mean(axis=axis, keepdims=True)
    np.subtract(v, mean, out=out)
    var = np.mean(np.square(out), axis=axis, keepdims=True)
    inv_std = 1 / np.sqrt(var + eps)
    out *= inv_std
    return inv_std


def _standardise_backward(dx_hat: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, axis,
                          out: np.ndarray) -> None:
    """out = dx = (1/σ)·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), the means over `axis`."""
    m1 = dx_hat.mean(axis=axis, keepdims=True)
    m2 = np.mean(dx_hat * x_hat, axis=axis, keepdims=True)
    np.multiply(x_hat, m2, out=out)
    np.subtract(dx_hat, out, out=out)
    out -= m1
    out *= inv_std


def _check_eps(owner: str, eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < float("inf"):
        raise ValueError(f"{owner}: eps must be a number > 0. Received: eps={eps!r}")
    return float(eps)


class _AffineNorm(Layer):
    """What LayerNorm and GroupNorm share: ε, and γ (ones), β (zeros) of shape (C,)."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = _check_eps(self.kind, eps)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def _build(self, rng: np.random.Generator) -> None:
        c = self.input_shape[0]
        self.weight = Parameter(np.ones(c, self.dtype))
        self.bias = Parameter(np.zeros(c, self.dtype))

    def parameters(self) -> dict[str, Parameter]:
        return {} if self.weight is None else {"weight": self.weight, "bias": self.bias}


class LayerNorm(_AffineNorm):
    """Layer normalisation (Ba et al. 2016) over the channels: each sample's C values at each
    position are standardised together, then scaled and shifted per channel.

    For (N, D) input this is PyTorch's LayerNorm(D) (over the last axis). For (N, C, H, W) and
    (N, C, L) it normalises over C at every position: ConvNeXt's channels-first LayerNorm, what
    PyTorch's LayerNorm(C) gives on the channels-last tensor x.permute(0, 2, 3, 1).

    Forward, per sample n and position p, over the M = C values x[n, :, p]:
        x̂ = (x − μ)/√(σ² + ε)      y[n, c, p] = γ_c·x̂[n, c, p] + β_c
    Backward, with dx̂ = dy·γ_c and means over the same C values:
        dx = (1/√(σ² + ε))·(dx̂ − mean_c(dx̂) − x̂·mean_c(dx̂·x̂))
        dγ_c = Σ_{n,p} dy·x̂      dβ_c = Σ_{n,p} dy
    Training and inference compute the same (no running statistics).

    Shape: x: (N, D), (N, C, L) or (N, C, H, W) → y: same;  weight γ: (C,), ones;  bias β: (C,),
    zeros;  parameters: 2·C.
    Args:
        eps: ε added to the variance (PyTorch's default 1e-5; ConvNeXt uses 1e-6).
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__(eps)

    def config(self) -> dict:
        return {"eps": self.eps}

    def output_shape(self, input_shape: Shape) -> Shape:
        if not 1 <= len(input_shape) <= 3:
            raise ShapeError(f"{self.label}: expects per-sample input (D,), (C, L) or (C, H, W). "
                             f"Received: input_shape={tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        rows, restore = _channel_rows(x)  # (C, M): the values to normalise together are a column
        gamma, beta = self.weight.data[:, None], self.bias.data[:, None]
        y = np.empty_like(rows)
        x_hat = np.empty_like(rows) if training else y
        inv_std = np.empty((1, rows.shape[1]), rows.dtype)

        def columns(span):  # cnnlab's threads split the positions
            lo, hi = span
            inv_std[:, lo:hi] = _standardise(rows[:, lo:hi], 0, self.eps, x_hat[:, lo:hi])
            np.multiply(x_hat[:, lo:hi], gamma, out=y[:, lo:hi])
            y[:, lo:hi] += beta

        threads.map_chunks(columns, threads.spans(rows.shape[1], rows.size))
        if training:
            self._cache = (x_hat, inv_std, restore)
        return restore(y)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x_hat, inv_std, restore = self._take_cache()
        dy = self._check_grad(dy, restore(x_hat).shape)
        dy_rows, _ = _channel_rows(dy)
        gamma = self.weight.data[:, None]
        dx = np.empty(x_hat.shape, np.result_type(dy_rows, x_hat))

        def columns(span):
            lo, hi = span
            d, xh = dy_rows[:, lo:hi], x_hat[:, lo:hi]
            _standardise_backward(d * gamma, xh, inv_std[:, lo:hi], 0, dx[:, lo:hi])
            return np.einsum("cm,cm->c", d, xh), d.sum(axis=1)

        parts = threads.map_chunks(columns, threads.spans(x_hat.shape[1], x_hat.size))
        # partial sums added in span order: the same bits however the threads ran
        self.weight.grad = threads.total([p[0] for p in parts]).astype(dx.dtype, copy=False)
        self.bias.grad = threads.total([p[1] for p in parts]).astype(dx.dtype, copy=False)
        return restore(dx)

    def arithmetic(self, input_shape: Shape) -> str:
        c = input_shape[0]
        if len(input_shape) == 1:
            return f"normalise the D = {c} features of each sample;  params = 2·D = {2 * c} (γ, β)"
        where = "×".join(map(str, input_shape[1:]))
        return (f"normalise the C = {c} channels at each of the {where} positions;  "
                f"params = 2·C = {2 * c} (γ, β)")


class GroupNorm(_AffineNorm):
    """Group normalisation (Wu & He 2018; PyTorch's GroupNorm): the channels of each sample are
    split into G groups of C/G, and each group's values (C/G channels × every position) are
    standardised together; γ, β are per channel. G = 1 normalises each sample over all its
    values; G = C each channel on its own (instance normalisation).

    Forward, per sample n and group g, over its M = (C/G)·P values (P positions: H·W, L or 1):
        x̂ = (x − μ)/√(σ² + ε)      y[n, c, p] = γ_c·x̂[n, c, p] + β_c
    Backward, with dx̂ = dy·γ_c and means over the same M values:
        dx = (1/√(σ² + ε))·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))
        dγ_c = Σ_{n,p} dy·x̂      dβ_c = Σ_{n,p} dy
    Training and inference compute the same (no running statistics).

    Shape: x: (N, C), (N, C, L) or (N, C, H, W), C divisible by G → y: same;  weight γ: (C,),
    ones;  bias β: (C,), zeros;  parameters: 2·C.
    Args:
        groups: G, which must divide the number of channels.
        eps: ε added to the variance (PyTorch's default 1e-5).
    """

    def __init__(self, groups: int, eps: float = 1e-5) -> None:
        super().__init__(eps)
        if isinstance(groups, bool) or not isinstance(groups, int | np.integer) or groups < 1:
            raise ValueError(f"{self.kind}: groups must be a positive int. Received: groups={groups!r}")
        self.groups = int(groups)

    def config(self) -> dict:
        return {"groups": self.groups, "eps": self.eps}

    def output_shape(self, input_shape: Shape) -> Shape:
        if not 1 <= len(input_shape) <= 3:
            raise ShapeError(f"{self.label}: expects per-sample input (C,), (C, L) or (C, H, W). "
                             f"Received: input_shape={tuple(input_shape)}")
        c, g = input_shape[0], self.groups
        if c % g:
            fits = ", ".join(str(d) for d in range(1, c + 1) if c % d == 0)
            raise ShapeError(f"{self.label}: C = {c} channels do not split into {g} groups. Expected "
                             f"C % groups = 0. Received: input_shape={tuple(input_shape)}, "
                             f"groups={g}. Groups that divide {c}: {fits}")
        return tuple(input_shape)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        n, c, g = x.shape[0], x.shape[1], self.groups
        v = x.reshape(n, g, c // g, -1)  # (N, G, C/G, P): one group's values in the last two axes
        x_hat = np.empty(v.shape, x.dtype)
        inv_std = np.empty((n, g, 1, 1), x.dtype)

        def samples(span):  # cnnlab's threads split the batch
            lo, hi = span
            inv_std[lo:hi] = _standardise(v[lo:hi], (2, 3), self.eps, x_hat[lo:hi])

        threads.map_chunks(samples, threads.spans(n, x.size))
        gamma, beta = (p.data.reshape(1, g, c // g, 1) for p in (self.weight, self.bias))
        if training:
            self._cache = (x_hat, inv_std)
            y = x_hat * gamma
        else:
            y = np.multiply(x_hat, gamma, out=x_hat)
        y += beta
        return y.reshape(x.shape)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x_hat, inv_std = self._take_cache()
        n = x_hat.shape[0]
        dy = self._check_grad(dy, (n, *self.out_shape))
        dv = dy.reshape(x_hat.shape)
        gamma = self.weight.data.reshape(1, *x_hat.shape[1:3], 1)
        dx = np.empty(x_hat.shape, np.result_type(dv, x_hat))

        def samples(span):
            lo, hi = span
            d, xh = dv[lo:hi], x_hat[lo:hi]
            _standardise_backward(d * gamma, xh, inv_std[lo:hi], (2, 3), dx[lo:hi])
            return np.einsum("ngkp,ngkp->gk", d, xh), d.sum(axis=(0, 3))

        parts = threads.map_chunks(samples, threads.spans(n, x_hat.size))
        c = self.input_shape[0]
        self.weight.grad = threads.total([p[0] for p in parts]).reshape(c).astype(dx.dtype, copy=False)
        self.bias.grad = threads.total([p[1] for p in parts]).reshape(c).astype(dx.dtype, copy=False)
        return dx.reshape(dy.shape)

    def arithmetic(self, input_shape: Shape) -> str:
        c, g = input_shape[0], self.groups
        positions = int(np.prod(input_shape[1:], dtype=np.int64))
        where = "×".join(map(str, input_shape[1:])) or "1"
        return (f"normalise each sample's {g} groups of C/G = {c}/{g} = {c // g} channels × {where} "
                f"= {c // g * positions:,} values;  params = 2·C = {2 * c} (γ, β)")


class LayerScale(Layer):
    """A learned scale per channel (Touvron et al. 2021, CaiT; ConvNeXt's γ at the end of each
    residual branch, which starts the branch near zero so that each block starts near identity).

    Forward:   y[n, c, …] = γ_c · x[n, c, …]
    Backward:  dx = dy · γ_c      dγ_c = Σ_{n,…} dy·x
    ConvNeXt applies γ channels-last (the last axis of (N, H, W, C)); on cnnlab's channels-first
    arrays the same γ multiplies axis 1.

    Shape: x: (N, D), (N, C, L) or (N, C, H, W) → y: same;  weight γ: (C,), every entry `init`;
    parameters: C.
    Args:
        init: γ's starting value (ConvNeXt's 1e-6).
    """

    def __init__(self, init: float = 1e-6) -> None:
        super().__init__()
        if isinstance(init, bool) or not isinstance(init, numbers.Real) or not np.isfinite(init):
            raise ValueError(f"{self.kind}: init must be a finite number. Received: init={init!r}")
        self.init = float(init)
        self.weight: Parameter | None = None

    def config(self) -> dict:
        return {"init": self.init}

    def output_shape(self, input_shape: Shape) -> Shape:
        if not 1 <= len(input_shape) <= 3:
            raise ShapeError(f"{self.label}: expects per-sample input (D,), (C, L) or (C, H, W). "
                             f"Received: input_shape={tuple(input_shape)}")
        return tuple(input_shape)

    def _build(self, rng: np.random.Generator) -> None:
        if abs(self.init) > float(np.finfo(self.dtype).max):
            raise ValueError(f"{self.label}: init={self.init!r} is outside {self.dtype.name}'s "
                             f"range (±{np.finfo(self.dtype).max:.4g}).")
        self.weight = Parameter(np.full(self.input_shape[0], self.init, self.dtype))

    def parameters(self) -> dict[str, Parameter]:
        return {} if self.weight is None else {"weight": self.weight}

    def _per_channel(self, ndim: int) -> np.ndarray:
        return self.weight.data.reshape(-1, *([1] * (ndim - 2)))

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        if training:
            self._cache = x  # a reference: forward and backward never write into x
        return x * self._per_channel(x.ndim)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x = self._take_cache()
        dy = self._check_grad(dy, x.shape)
        n, c = x.shape[:2]  # (N, C, P) views of NCHW memory and of (C, N, …) memory alike
        self.weight.grad = np.einsum("ncp,ncp->c", dy.reshape(n, c, -1), x.reshape(n, c, -1))
        return dy * self._per_channel(dy.ndim)

    def arithmetic(self, input_shape: Shape) -> str:
        c = input_shape[0]
        return f"y = γ_c·x, one γ per channel (starting at {self.init:g});  params = C = {c}"
