"""Non-linearity layers: elementwise functions of the input (Maxout: of channel groups).

Each keeps the least that its derivative needs: the output y where f′ is a function of y
(sigmoid, tanh, ReLU, ELU), otherwise the input x.
"""

from __future__ import annotations

import numpy as np

from cnnlab import kernels
from cnnlab.core import Layer, Parameter, Shape, ShapeError
from cnnlab.layers._window import positive_int
from cnnlab.layers.pool import MaxPool2D
from cnnlab.runtime import threads


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1/(1 + e^−x) computed from e^−|x|, which never overflows."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


#: ReLU's cache after a fused training forward (ReLU.fused)
_APPLIED_ELSEWHERE = "applied by a neighbouring layer"


class _Elementwise(Layer):
    """y = f(x) with the shape of x; no parameters."""

    formula = ""

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def arithmetic(self, input_shape: Shape) -> str:
        return f"elementwise {self.formula}"

    def _check_dy(self, dy: np.ndarray, like: np.ndarray) -> np.ndarray:
        return self._check_grad(dy, like.shape)


class Sigmoid(_Elementwise):
    """Forward: y = σ(x) = 1/(1 + e^−x).    Backward: dx = dy · y · (1 − y)."""

    formula = "σ(x) = 1/(1 + e^−x)"
    preferred_init = "xavier"

    def forward(self, x, *, training=False):
        y = sigmoid(self._check_input(x))
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        y = self._take_cache()
        return self._check_dy(dy, y) * y * (1 - y)


class Tanh(_Elementwise):
    """Forward: y = tanh(x).    Backward: dx = dy · (1 − y²)."""

    formula = "tanh(x)"
    preferred_init = "xavier"

    def forward(self, x, *, training=False):
        y = np.tanh(self._check_input(x))
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        y = self._take_cache()
        return self._check_dy(dy, y) * (1 - y * y)


class ReLU(_Elementwise):
    """Forward: y = max(0, x).    Backward: dx = dy · [x > 0]  (the derivative at 0 is taken as 0)."""

    formula = "max(0, x)"
    preferred_init = "he"

    def forward(self, x, *, training=False):
        x = self._check_input(x)
        y = threads.elementwise(lambda out, a: np.maximum(a, 0, out=out), x, x)
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        y = self._take_cache()
        if y is _APPLIED_ELSEWHERE:  # a fused neighbour applies [y > 0] in its own backward
            return dy
        dy = self._check_dy(dy, y)
        # one compiled pass per thread (kernels.relu_grad), or a multiply by the mask
        return threads.elementwise(kernels.relu_grad, dy, dy, y)

    def inference_map(self, after: Layer | None):
        """max(0, x) in place (Layer.inference_map), as forward computes it; None before a
        MaxPool2D, where pooling first leaves a quarter of the values to rectify (forward_fused),
        measured faster on fmnist-cnn."""
        if isinstance(after, MaxPool2D):
            return None
        return lambda block: np.maximum(block, 0, out=block)

    def forward_fused(self, after: Layer, x: np.ndarray, *, training: bool = False):
        """This layer and a MaxPool2D after it (2×2 windows, stride 2) in one (Layer.forward_fused):
        the pooling first, then max(0, ·) on a quarter of the values, the same results
        (MaxPool2D.rectified). In training the pool's backward multiplies dy by [y > 0] and this
        layer's backward hands dy on. None for any other layer after, or other pooling."""
        if not isinstance(after, MaxPool2D):
            return None
        y = after.rectified(self._check_input(x), training=training)
        if y is not None and training:
            self.fused()
        return y

    def computed(self, y: np.ndarray, *, training: bool = False) -> np.ndarray:
        """Called with y = max(0, ·) when a neighbour computed this layer's forward within its
        own (Residual.forward_fused): in training, keeps y for backward as forward would."""
        if training:
            self._cache = y
        return y

    def fused(self) -> None:
        """Called when a neighbour computed this ReLU within its own training forward
        (Layer.forward_fused: BatchNorm2D before it, or this layer's own with a MaxPool2D after
        it): the next backward hands dy on unchanged, the neighbour multiplying it by [y > 0]
        inside its own backward."""
        self._cache = _APPLIED_ELSEWHERE


class LeakyReLU(_Elementwise):
    """Forward: y = max(αx, x) for 0 ≤ α < 1 (the lecture's max(0.1x, x) with α = 0.1).
    Backward: dx = dy · (1 if x > 0 else α)."""

    preferred_init = "he"

    def __init__(self, alpha: float = 0.1) -> None:
        super().__init__()
        if not 0 <= alpha < 1:
            raise ValueError(f"LeakyReLU: alpha must be in [0, 1). Received: alpha={alpha!r}")
        self.alpha = float(alpha)

    @property
    def formula(self) -> str:
        return f"max({self.alpha:g}x, x)"

    def config(self) -> dict:
        return {"alpha": self.alpha}

    def forward(self, x, *, training=False):
        x = self._check_input(x)
        if training:
            self._cache = x
        return np.where(x > 0, x, self.alpha * x)

    def backward(self, dy):
        x = self._take_cache()
        dy = self._check_dy(dy, x)
        return np.where(x > 0, dy, self.alpha * dy)


class PReLU(_Elementwise):
    """Leaky ReLU whose slope a_c is learned, one per channel (axis 1), as PyTorch's PReLU.

    Forward:   y = x if x > 0 else a_c · x
    Backward:  dx = dy · (1 if x > 0 else a_c)    da_c = Σ_{n, positions, x ≤ 0} dy · x
    Shape: x: (N, C, ...) → y: same;  weight: (C,), starts at `init` (0.25);  parameters: C.
    """

    formula = "max(a_c·x, x), a_c learned per channel"
    preferred_init = "he"

    def __init__(self, init: float = 0.25) -> None:
        super().__init__()
        self.init = float(init)
        self.weight: Parameter | None = None

    def config(self) -> dict:
        return {"init": self.init}

    def _build(self, rng):
        with np.errstate(over="ignore"):  # checked below, with the layer's name
            start = self.dtype.type(self.init)
        if not np.isfinite(start):
            raise ValueError(f"{self.label}: init={self.init!r} is not a finite {self.dtype} number")
        self.weight = Parameter(np.full(self.input_shape[0], start, self.dtype))

    def parameters(self):
        return {} if self.weight is None else {"weight": self.weight}

    def _slope(self, ndim: int) -> np.ndarray:
        return self.weight.data.reshape(-1, *([1] * (ndim - 2)))

    def forward(self, x, *, training=False):
        x = self._check_input(x)
        if training:
            self._cache = x
        return np.where(x > 0, x, self._slope(x.ndim) * x)

    def backward(self, dy):
        x = self._take_cache()
        dy = self._check_dy(dy, x)
        axes = (0, *range(2, x.ndim))
        self.weight.grad = np.where(x > 0, 0, dy * x).sum(axis=axes)
        return np.where(x > 0, dy, self._slope(x.ndim) * dy)

    def arithmetic(self, input_shape: Shape) -> str:
        return f"elementwise {self.formula};  params = C = {input_shape[0]}"


class ELU(_Elementwise):
    """Forward: y = x if x > 0 else α(eˣ − 1)  (computed with expm1 on min(x, 0): no overflow).
    Backward: dx = dy · (1 if x > 0 else y + α)."""

    preferred_init = "he"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"ELU: alpha must be > 0. Received: alpha={alpha!r}")
        self.alpha = float(alpha)

    @property
    def formula(self) -> str:
        return f"x if x > 0 else {self.alpha:g}(eˣ − 1)"

    def config(self) -> dict:
        return {"alpha": self.alpha}

    def forward(self, x, *, training=False):
        x = self._check_input(x)
        y = np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))
        if training:
            self._cache = y
        return y

    def backward(self, dy):
        y = self._take_cache()
        return np.where(y > 0, 1, y + self.alpha) * self._check_dy(dy, y)


class Swish(_Elementwise):
    """Forward: y = x · σ(βx)  (β = 1: SiLU).
    Backward: dx = dy · (σ(βx) + βx · σ(βx) · (1 − σ(βx)))."""

    preferred_init = "he"

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = float(beta)

    @property
    def formula(self) -> str:
        return "x·σ(x)" if self.beta == 1 else f"x·σ({self.beta:g}x)"

    def config(self) -> dict:
        return {"beta": self.beta}

    def forward(self, x, *, training=False):
        x = self._check_input(x)
        s = sigmoid(self.beta * x)
        if training:
            self._cache = (x, s)
        return x * s

    def backward(self, dy):
        x, s = self._take_cache()
        return self._check_dy(dy, x) * (s + self.beta * x * s * (1 - s))


class Maxout(Layer):
    """Max over groups of `pieces` consecutive channels (or features): the lecture's
    max(w₁ᵀx + b₁, w₂ᵀx + b₂) is a Dense or Conv with 2·K outputs followed by Maxout(2).

    Forward:   y[n, g, ...] = max_{p < pieces} x[n, g·pieces + p, ...]
    Backward:  dx gets dy[n, g, ...] at the channel that was the max, 0 elsewhere.
    Shape: x: (N, C, ...) → y: (N, C/pieces, ...); C must be divisible by pieces; no parameters.
    """

    preferred_init = "he"

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        self.pieces = positive_int(pieces, "pieces", "Maxout")

    def config(self) -> dict:
        return {"pieces": self.pieces}

    def output_shape(self, input_shape: Shape) -> Shape:
        c = input_shape[0]
        if c % self.pieces:
            raise ShapeError(
                f"{self.label}: {c} channels cannot be split into groups of pieces={self.pieces}. "
                f"Give the layer before it a multiple of {self.pieces} outputs "
                f"(e.g. {c - c % self.pieces or self.pieces} or {c - c % self.pieces + self.pieces})."
            )
        return (c // self.pieces, *input_shape[1:])

    def forward(self, x, *, training=False):
        x = self._check_input(x)
        n, c = x.shape[:2]
        groups = x.reshape(n, c // self.pieces, self.pieces, *x.shape[2:])
        arg = groups.argmax(axis=2)
        if training:
            self._cache = arg
        return np.take_along_axis(groups, arg[:, :, None], axis=2)[:, :, 0]

    def backward(self, dy):
        arg = self._take_cache()
        dy = self._check_grad(dy, arg.shape)
        pieces = np.arange(self.pieces).reshape(1, 1, -1, *([1] * (arg.ndim - 2)))
        dx = np.where(arg[:, :, None] == pieces, dy[:, :, None], 0).astype(dy.dtype, copy=False)
        return dx.reshape(arg.shape[0], -1, *arg.shape[2:])

    def arithmetic(self, input_shape: Shape) -> str:
        c = input_shape[0]
        return f"max over groups of {self.pieces}: D2 = {c}/{self.pieces} = {c // self.pieces}"
