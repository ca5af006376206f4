"""Batch normalisation: each channel standardised with its batch statistics, then scaled and shifted.

Statistics are taken per channel c over every axis but the channel axis: the batch and, for
images and sequences, the positions. M is their count: N·H·W (2-D), N·L or N (1-D).
"""

from __future__ import annotations

import numpy as np

from cnnlab import kernels
from cnnlab.core import Layer, Parameter, Shape, ShapeError
from cnnlab.layers.activation import ReLU
from cnnlab.runtime import threads


def _channel_rows(x: np.ndarray):
    """x (N, C, ...) as a (C, M) array of per-channel rows, and a function that turns a (C, M)
    result back into x's shape and memory order.

    Without a copy when x is (N, C, ...) memory with N = 1 or an (N, C, ...) view of
    (C, N, ...) memory, the layout convolutions hand on; otherwise x is copied into (C, N, ...)
    order once. Reductions then run along contiguous rows, several times faster than NumPy's
    reductions over axes (0, 2, 3).
    """
    n, c, rest = x.shape[0], x.shape[1], x.shape[2:]
    moved = np.moveaxis(x, 1, 0)  # (C, N, ...)
    rows = np.ascontiguousarray(moved).reshape(c, -1)  # free when already (C, N, ...) memory

    def restore(r: np.ndarray) -> np.ndarray:
        return np.moveaxis(r.reshape(c, n, *rest), 0, 1)

    return rows, restore


class _BatchNorm(Layer):
    """What BatchNorm2D and BatchNorm1D share; they differ only in the input ranks they take.

    Forward (training), per channel c over its M values:
        μ = (1/M)·Σ x      σ² = (1/M)·Σ (x − μ)²      σ = √(σ² + ε)
        x̂ = (x − μ)/σ      y = γ·x̂ + β
        running_mean ← (1 − momentum)·running_mean + momentum·μ
        running_var  ← (1 − momentum)·running_var  + momentum·σ²·M/(M − 1)   (unbiased, as PyTorch)
    Forward (inference): y = γ·(x − running_mean)/√(running_var + ε) + β, computed as x·s + (β −
    running_mean·s) with s = γ/√(running_var + ε); the buffers are untouched.
    Backward (after a training forward), sums per channel over its M values:
        dγ = Σ dy·x̂      dβ = Σ dy
        dx = (γ/σ)/M · (M·dy − Σ dy − x̂·Σ (dy·x̂))
    Frozen (γ and β both trainable=False, as model.freeze leaves them): a training forward is
    the inference forward, running statistics used and left unchanged (transfer learning's
    usual trap: batch statistics of new data would shift what the frozen body computes), and
    its backward is that of a fixed affine map, with x̂ = (x − running_mean)/σ_r,
    σ_r = √(running_var + ε):
        dγ = Σ dy·x̂      dβ = Σ dy      dx = (γ/σ_r)·dy

    Synchronized (data-parallel, `self.reduce` filled in by cnnlab.train.parallel): the sums
    above run over the values of every process (M the global count), so K processes compute one
    process's μ, σ and dx; dγ and dβ stay this process's sums (the runner adds them up).

    Shape: y has the shape of x;  weight γ: (C,), ones;  bias β: (C,), zeros;  parameters: 2·C.
    Buffers (saved with the model, not learned): running_mean (C,), zeros; running_var (C,), ones.
    Args:
        momentum: weight of the new batch in the running statistics (PyTorch's meaning).
        eps: ε added to the variance before the square root.
    """

    #: the per-sample shapes accepted, and for each rank what the statistics run over
    expected = ""
    over: dict[int, str] = {}
    hint = ""
    batch_statistics = True

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        if isinstance(momentum, bool) or not 0 <= momentum <= 1:
            raise ValueError(f"{self.kind}: momentum must be in [0, 1]. Received: momentum={momentum!r}")
        if isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"{self.kind}: eps must be > 0. Received: eps={eps!r}")
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None
        self.running_mean: np.ndarray | None = None
        self.running_var: np.ndarray | None = None

    def config(self) -> dict:
        return {"momentum": self.momentum, "eps": self.eps}

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) not in self.over:
            raise ShapeError(
                f"{self.label}: expects per-sample input {self.expected}. "
                f"Received: input_shape={tuple(input_shape)}.{self.hint}"
            )
        return tuple(input_shape)

    def _build(self, rng: np.random.Generator) -> None:
        c = self.input_shape[0]
        self.weight = Parameter(np.ones(c, self.dtype))
        self.bias = Parameter(np.zeros(c, self.dtype))
        self.running_mean = np.zeros(c, self.dtype)
        self.running_var = np.ones(c, self.dtype)

    def parameters(self) -> dict[str, Parameter]:
        return {} if self.weight is None else {"weight": self.weight, "bias": self.bias}

    def buffers(self) -> dict[str, np.ndarray]:
        # the arrays themselves: a loader writes into them in place, and so does forward
        if self.running_mean is None:
            return {}
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    @property
    def frozen(self) -> bool:
        """γ and β both frozen: a training forward uses the running statistics (see above)."""
        return self.weight is not None and not (self.weight.trainable or self.bias.trainable)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        return self._forward(x, training, rectify=False)

    def forward_fused(self, after: Layer, x: np.ndarray, *, training: bool = False):
        """This layer and a ReLU after it in one pass (Layer.forward_fused): max(0, y) written
        where y would be, and in backward dy·[max(0, y) > 0] taken inside the compiled passes
        (or, on the NumPy path, multiplied in as ReLU's backward does), bit for bit the two
        layers' results. Fuses in inference, and in training unless the layer is frozen or
        synchronized; None otherwise."""
        if type(after) is not ReLU or training and (self.frozen or self.reduce is not None):
            return None
        y = self._forward(x, training, rectify=True)
        if training:
            after.fused()
        return y

    def _forward(self, x: np.ndarray, training: bool, rectify: bool) -> np.ndarray:
        """forward, followed by max(0, ·) when rectify (forward_fused)."""
        x = self._check_input(x)
        rows, restore = _channel_rows(x)  # (C, M): every channel's values in one row
        if not training or self.frozen:
            return self._forward_affine(rows, restore, training, rectify)
        if self.reduce is not None:
            return self._forward_synced(rows, restore)
        m = rows.shape[1]
        if m < 2:
            raise ValueError(
                f"{self.label}: a training forward needs more than 1 value per channel to estimate "
                f"the batch variance. Received: x.shape={x.shape} ({m} value per channel). Use a "
                "batch of 2 or more samples, or forward(x, training=False) for inference."
            )
        gamma, beta = self.weight.data[:, None], self.bias.data[:, None]
        x_hat, y = np.empty_like(rows), np.empty_like(rows)
        if kernels.batchnorm_compiled():  # the same sums in three compiled passes
            stats = np.empty((rows.shape[0], 3), rows.dtype)
            forward = kernels.batchnorm.loops()[0]
            threads.map_chunks(lambda span: forward(rows, gamma[:, 0], beta[:, 0], self.eps, *span,
                                                    x_hat, y, stats, rectify),
                               threads.row_spans(rows))
            self._update_running(stats[:, 0], stats[:, 1], m)
            self._cache = (x_hat, stats[:, 2:], restore, m, y if rectify else None)
            return restore(y)
        mean, var, inv_std = (np.empty((rows.shape[0], 1), rows.dtype) for _ in range(3))

        def channels(span):  # the channels lo:hi; cnnlab's threads split the channels
            lo, hi = span
            mean[lo:hi] = rows[lo:hi].mean(axis=1, keepdims=True)
            xh = np.subtract(rows[lo:hi], mean[lo:hi], out=x_hat[lo:hi])  # normalised below
            var[lo:hi, 0] = np.einsum("cm,cm->c", xh, xh) / xh.dtype.type(m)  # biased
            inv_std[lo:hi] = 1 / np.sqrt(var[lo:hi] + self.eps)
            xh *= inv_std[lo:hi]
            np.multiply(xh, gamma[lo:hi], out=y[lo:hi])
            y[lo:hi] += beta[lo:hi]
            if rectify:
                np.maximum(y[lo:hi], 0, out=y[lo:hi])

        threads.map_chunks(channels, threads.row_spans(rows))
        self._update_running(mean.reshape(-1), var.reshape(-1), m)
        self._cache = (x_hat, inv_std, restore, m, y if rectify else None)
        return restore(y)

    def _forward_affine(self, rows: np.ndarray, restore, training: bool, rectify: bool):
        """Inference, or a frozen layer's training forward: y = x·s + (β − μ_r·s), s = γ/σ_r,
        two passes over the values instead of three (max(0, y) in a third when rectify)."""
        (scale, shift), y = self._affine(), np.empty_like(rows)

        def normalise(span):  # the channels lo:hi; cnnlab's threads split the channels
            lo, hi = span
            np.multiply(rows[lo:hi], scale[lo:hi], out=y[lo:hi])
            y[lo:hi] += shift[lo:hi]
            if rectify:
                np.maximum(y[lo:hi], 0, out=y[lo:hi])

        threads.map_chunks(normalise, threads.row_spans(rows))
        if training:  # frozen: a fixed affine map, whose backward needs x
            self._cache = ("frozen", rows, restore)
        return restore(y)

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The inference map's s = γ/σ_r and β − μ_r·s, as (C, 1) columns."""
        scale = self.weight.data[:, None] / np.sqrt(self.running_var[:, None] + self.eps)
        return scale, self.bias.data[:, None] - self.running_mean[:, None] * scale

    def _update_running(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        # in place: the buffers stay the arrays that buffers() handed out
        self.running_mean *= 1 - self.momentum
        self.running_mean += self.momentum * mean
        self.running_var *= 1 - self.momentum
        self.running_var += self.momentum * var * (m / (m - 1))

    def _forward_synced(self, rows: np.ndarray, restore) -> np.ndarray:
        """The training forward over every process's values: two sums over the processes
        (Σx with the count M, then Σ(x − μ)²: the two-pass variance, as one process computes it)."""
        c = rows.shape[0]
        totals = self.reduce(np.append(rows.sum(axis=1, dtype=np.float64), rows.shape[1]))
        m = int(totals[c])
        if m < 2:
            raise ValueError(f"{self.label}: a training forward needs more than 1 value per channel "
                             f"over all processes. Received: {m}. Use a larger batch.")
        mean = (totals[:c] / m).astype(rows.dtype)[:, None]
        x_hat = rows - mean
        squares = np.einsum("cm,cm->c", x_hat, x_hat).astype(np.float64)  # C sums, in x's dtype
        var = (self.reduce(squares) / m).astype(rows.dtype)
        inv_std = 1 / np.sqrt(var[:, None] + self.eps)
        x_hat *= inv_std
        y = x_hat * self.weight.data[:, None] + self.bias.data[:, None]
        self._update_running(mean.reshape(-1), var, m)
        self._cache = (x_hat, inv_std, restore, m, None)
        return restore(y)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        cache = self._take_cache()
        if isinstance(cache[0], str):  # ("frozen", x rows, restore)
            return self._frozen_backward(dy, *cache[1:])
        x_hat, inv_std, restore, m, rectified = cache
        dy = self._check_grad(dy, restore(x_hat).shape)
        dy_rows, _ = _channel_rows(dy)
        if self.reduce is not None:
            return self._backward_synced(dy_rows, x_hat, inv_std, restore, m)
        dbeta = np.empty(x_hat.shape[0], dy_rows.dtype)
        dgamma = np.empty(x_hat.shape[0], np.result_type(dy_rows, x_hat))
        dx = np.empty(x_hat.shape, np.result_type(dy_rows, x_hat))
        if kernels.batchnorm_compiled() and dy_rows.dtype == x_hat.dtype:  # two compiled passes
            backward = kernels.batchnorm.loops()[1]
            scale = (self.weight.data * inv_std[:, 0]).astype(x_hat.dtype)
            mask = x_hat if rectified is None else rectified  # read only when rectified
            threads.map_chunks(lambda span: backward(dy_rows, x_hat, scale, *span, dx, dgamma,
                                                     dbeta, mask, rectified is not None),
                               threads.row_spans(x_hat))
            self.weight.grad, self.bias.grad = dgamma, dbeta
            return restore(dx)
        if rectified is not None:  # the fused ReLU's backward, as ReLU.backward computes it
            dy_rows = np.multiply(dy_rows, rectified > 0)

        def channels(span):
            lo, hi = span
            d, xh = dy_rows[lo:hi], x_hat[lo:hi]
            dbeta[lo:hi] = d.sum(axis=1)
            dgamma[lo:hi] = np.einsum("cm,cm->c", d, xh)
            # dx = (γ/σ)/M · (M·dy − Σdy − x̂·Σ(dy·x̂)), as three passes over (C, M) rows
            k = (self.weight.data[lo:hi] * inv_std[lo:hi, 0])[:, None]
            out = np.multiply(xh, -k * dgamma[lo:hi, None] / m, out=dx[lo:hi])
            out += d * k
            out += -k * dbeta[lo:hi, None] / m

        threads.map_chunks(channels, threads.row_spans(x_hat))
        self.weight.grad = dgamma
        self.bias.grad = dbeta
        return restore(dx)

    def _backward_synced(self, dy_rows, x_hat, inv_std, restore, m: int) -> np.ndarray:
        """dx with Σdy and Σdy·x̂ over every process (one sum of 2·C values); dγ and dβ this
        process's part."""
        c = x_hat.shape[0]
        dbeta = dy_rows.sum(axis=1)
        dgamma = np.einsum("cm,cm->c", dy_rows, x_hat)
        totals = self.reduce(np.concatenate([dbeta, dgamma]).astype(np.float64))
        sum_dy, sum_dy_xh = (totals[:c] / m).astype(x_hat.dtype), (totals[c:] / m).astype(x_hat.dtype)
        dx = x_hat * sum_dy_xh[:, None]  # dx = (γ/σ)·(dy − mean(dy) − x̂·mean(dy·x̂)), in place
        np.subtract(dy_rows, dx, out=dx)
        dx -= sum_dy[:, None]
        dx *= (self.weight.data * inv_std[:, 0])[:, None]
        self.weight.grad = dgamma
        self.bias.grad = dbeta
        return restore(dx)

    def _frozen_backward(self, dy, rows, restore) -> np.ndarray:
        """The backward of a frozen training forward, y = γ·(x − running_mean)/σ_r + β."""
        dy = self._check_grad(dy, restore(rows).shape)
        dy_rows, _ = _channel_rows(dy)
        sigma = np.sqrt(self.running_var[:, None] + self.eps)
        x_hat = (rows - self.running_mean[:, None]) / sigma
        self.weight.grad = np.einsum("cm,cm->c", dy_rows, x_hat)
        self.bias.grad = dy_rows.sum(axis=1)
        return restore(dy_rows * (self.weight.data[:, None] / sigma))

    def arithmetic(self, input_shape: Shape) -> str:
        c, over = input_shape[0], self.over.get(len(input_shape), "N")
        return f"normalise per channel over {over}; params = 2·C = {2 * c} (γ, β), buffers 2·C"


class BatchNorm2D(_BatchNorm):
    """Batch normalisation of images, statistics per channel over N, H, W (M = N·H·W).

    Forward and backward: as _BatchNorm above.
    Shape: x: (N, C, H, W) → y: same;  weight, bias, running_mean, running_var: (C,);  parameters: 2·C.
    """

    expected = "(C, H, W)"
    over = {3: "N·H·W"}
    hint = " Use BatchNorm1D for (C,) or (C, L) inputs."

    def inference_map(self, after: Layer | None):
        """y = x·s + (β − μ_r·s) on a (C, n, H, W) block in place (Layer.inference_map): the two
        operations _forward_affine makes, with the same s and shift."""
        scale, shift = (a.reshape(-1, 1, 1, 1) for a in self._affine())

        def apply(block: np.ndarray) -> None:
            np.multiply(block, scale, out=block)
            block += shift

        return apply


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of features (N, C), per feature over N (M = N), or of sequences
    (N, C, L), per channel over N, L (M = N·L), as PyTorch's BatchNorm1d.

    Forward and backward: as _BatchNorm above.
    Shape: x: (N, C) or (N, C, L) → y: same;  weight, bias, running_mean, running_var: (C,);
    parameters: 2·C.
    """

    expected = "(C,) or (C, L)"
    over = {1: "N", 2: "N·L"}
    hint = " Use BatchNorm2D for (C, H, W) inputs."
