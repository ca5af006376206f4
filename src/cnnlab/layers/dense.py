"""Fully connected layers: every input connected to every output (global connectivity)."""

from __future__ import annotations

import numpy as np

from cnnlab.core import Layer, Parameter, Shape, ShapeError
from cnnlab.init import initialize
from cnnlab.layers._window import WeightedMixin, positive_int
from cnnlab.runtime import threads
from cnnlab.shapes import param_formula


class Dense(WeightedMixin, Layer):
    """Fully connected layer, the multi-layer perceptron's: y = x · Wᵀ + b.

    Forward:   y[n, o] = b[o] + Σ_i W[o, i] · x[n, i]
    Backward:  dW = dyᵀ · x     db = Σ_n dy[n]     dx = dy · W

    Shape:
        x: (N, D_in)    y: (N, units)    weight: (units, D_in)    bias: (units,)
        parameters: (D_in + 1)·units. The last Dense of a classifier has one unit per class.
    Args:
        units: number of output neurons.  bias: learn a bias per unit.
        init: as Conv2D ("auto" follows the next activation). "zeros" suits a classifier head:
            every score starts at 0, so the first loss is ln(units) on any input, and the
            labels make the rows differ from the first step (dW = dyᵀ·x).
    """

    def __init__(self, units: int, *, bias: bool = True, init: str = "auto") -> None:
        super().__init__()
        self.units = positive_int(units, "units", self.kind)
        self.use_bias = bool(bias)
        self._set_init(init)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def config(self) -> dict:
        return {"units": self.units, "bias": self.use_bias, "init": self.init}

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ShapeError(
                f"{self.label}: expects flat per-sample input (D,). Received: "
                f"input_shape={tuple(input_shape)}. Put a Flatten() (or GlobalAvgPool2D()) before it."
            )
        return (self.units,)

    def _build(self, rng: np.random.Generator) -> None:
        d_in = self.input_shape[0]
        self.weight = Parameter(initialize(
            self.resolved_init(), rng, (self.units, d_in), d_in, self.units, self.dtype
        ))
        self.bias = Parameter(np.zeros(self.units, self.dtype)) if self.use_bias else None

    def parameters(self) -> dict[str, Parameter]:
        if self.weight is None:
            return {}
        return {"weight": self.weight, **({"bias": self.bias} if self.bias else {})}

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        y = threads.matmul(x, self.weight.data.T)
        if self.bias is not None:
            y += self.bias.data
        if training:
            self._cache = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x = self._take_cache()
        dy = self._check_grad(dy, (x.shape[0], self.units))
        self.weight.grad = threads.matmul_tn(dy, x)
        if self.bias is not None:
            self.bias.grad = dy.sum(axis=0)
        return threads.matmul(dy, self.weight.data)

    def macs(self, input_shape: Shape) -> int:
        """D_in·units: one product per weight."""
        return int(input_shape[0]) * self.units

    def arithmetic(self, input_shape: Shape) -> str:
        return f"params = {param_formula([input_shape[0]], self.use_bias, [self.units])}"


class Flatten(Layer):
    """Stretches each sample into one vector, in C, H, W order (as PyTorch's flatten).

    Forward: y = x.reshape(N, C·H·W)    Backward: dx = dy.reshape(N, C, H, W)
    Shape: x: (N, *dims) → y: (N, Π dims); no parameters.
    """

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        if training:
            self._cache = x.shape[0]
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        n = self._take_cache()
        dy = self._check_grad(dy, (n, *self.out_shape))
        return dy.reshape(n, *self.input_shape)

    def arithmetic(self, input_shape: Shape) -> str:
        if len(input_shape) == 1:
            return f"{input_shape[0]} (already flat)"
        return f"{'·'.join(map(str, input_shape))} = {int(np.prod(input_shape)):,}"
