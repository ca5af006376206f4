"""Gradient checks for any layer, yours or cnnlab's: `gradcheck(layer, input_shape)` compares
what `backward` computes with central differences, in float64, and returns the worst relative
error of dx and of every parameter's gradient.

    result = cl.testing.gradcheck(MyLayer(), (3, 8, 8))
    print(result)          # one line per array: x, weight, bias ... with its error
    assert result.ok       # every error below the tolerance (1e-6 in float64)

What the layer needs (the protocol of cnnlab.core.Layer; subclass it):
    output_shape(input_shape)   the per-sample output shape (Layer.build calls it, then _build,
                                which creates the parameters); or build the layer yourself first
    forward(x, training=True)   returns y and keeps what backward needs
    backward(dy)                returns dx, with x's shape, and assigns every parameter's .grad
    parameters()                {name: Parameter}; forward must read p.data on every call: the
                                check changes its entries in place, one at a time
    rng                         a layer that draws random numbers in training (dropout) keeps its
                                Generator in `self.rng` (Layer's hook) and draws only from it: the
                                check puts the Generator's state back before every forward, so
                                each evaluation draws the same mask. Other randomness cannot be
                                checked.

The check: L = Σ y·G for a fixed standard-normal G, so ∂L/∂y = G is what backward receives;
for every entry a[i] of the input and of every parameter,
    numeric ∂L/∂a[i] = (L(a + ε·eᵢ) − L(a − ε·eᵢ)) / 2ε
    error = max |analytic − numeric| / max(1, max |numeric|)
(an absolute error for gradients below 1, a relative one above). With ε = 1e-6 in float64 a
correct backward gives errors around 1e-9 or less; a wrong formula gives errors near 1.
Random input is standard normal with every value moved 0.05 away from 0, so that ε never
crosses the kink of ReLU-like functions at 0. Buffers (BatchNorm's running statistics) and
Generator states are put back afterwards.

Imports only cnnlab.core. tests/gradcheck.py, the test suite's checks, is built on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cnnlab.core import Layer, ShapeError, walk

__all__ = ["GradcheckResult", "gradcheck", "gradient_errors", "numeric_grad", "relative_error"]

#: ε and the tolerance by dtype: float64 is the check; float32 only a rough look (its rounding
#: error over 2ε is about 1e-3 of the gradient)
EPS = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-3}
TOLERANCE = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 2e-2}


@dataclass(frozen=True)
class GradcheckResult:
    """The worst relative error of each gradient: "x" (the input's, dx) and every parameter's,
    by its name in `layer.parameters()`. `ok` when every one is below `tolerance`."""

    layer: str
    errors: dict[str, float]
    tolerance: float
    dtype: str = "float64"
    eps: float = 1e-6

    @property
    def ok(self) -> bool:
        return all(error < self.tolerance for error in self.errors.values())

    @property
    def worst(self) -> tuple[str, float]:
        """(name, error) of the largest error."""
        return max(self.errors.items(), key=lambda item: item[1])

    def __getitem__(self, name: str) -> float:
        return self.errors[name]

    def __str__(self) -> str:
        width = max(len("gradient of"), *(len(name) for name in self.errors))
        lines = [f"{self.layer}: gradient check in {self.dtype}, ε = {self.eps:g}, "
                 f"tolerance {self.tolerance:g}",
                 f"  {'gradient of':<{width}}  worst relative error"]
        for name, error in self.errors.items():
            verdict = "ok" if error < self.tolerance else "FAILED"
            lines.append(f"  {name:<{width}}  {error:.2e}  {verdict}")
        name, error = self.worst
        lines.append(f"passed: every error below {self.tolerance:g}" if self.ok
                     else f"FAILED: the gradient of {name} is off by {error:.3g}")
        return "\n".join(lines)


def gradcheck(layer: Layer, input_shape: Sequence[int], *, dtype=np.float64, batch: int = 2,
              seed: int = 0, eps: float | None = None,
              tolerance: float | None = None) -> GradcheckResult:
    """Checks `layer`'s backward against central differences on a random batch.

    Args:
        layer: a cl.Layer (see the module's docstring for what it must do). An unbuilt layer
            is built here for `input_shape` in `dtype`, its weights drawn from `seed`; a built
            one must have been built for that shape in that dtype.
        input_shape: one sample's shape, e.g. (C, H, W).
        dtype: float64 (the check) or float32 (rough: larger ε and tolerance).
        batch: samples in the batch.  seed: the input, G and an unbuilt layer's weights.
        eps, tolerance: default 1e-6 and 1e-6 in float64, 1e-3 and 2e-2 in float32.
    Returns:
        a GradcheckResult; `print` it, test `.ok`, read `.errors["weight"]`.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"gradcheck: expected a cl.Layer (a subclass with forward and backward). "
                        f"Received: {type(layer).__name__}")
    input_shape = tuple(int(d) for d in input_shape)
    dtype = np.dtype(dtype)
    if dtype not in EPS:
        raise ValueError(f"gradcheck: dtype must be float64 or float32. Received: dtype={dtype}")
    if not layer.built:
        layer.build(input_shape, rng=np.random.default_rng(seed), dtype=dtype)
    elif layer.input_shape != input_shape or layer.dtype != dtype:
        raise ValueError(
            f"gradcheck: {layer.label} is built for input {layer.input_shape} in {layer.dtype}; "
            f"the check asked for {input_shape} in {dtype}. Pass an unbuilt layer, or build it "
            f"with build({input_shape}, dtype=np.{dtype})")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *input_shape))
    x += np.sign(x) * 0.05  # off the kinks at 0 (ReLU, |x|) by more than ε
    eps = EPS[dtype] if eps is None else float(eps)
    errors = gradient_errors(layer, x.astype(dtype), rng, eps=eps)
    return GradcheckResult(layer.label, errors, TOLERANCE[dtype] if tolerance is None else tolerance,
                           str(dtype), eps)


def gradient_errors(layer: Layer, x: np.ndarray, rng: np.random.Generator, *,
                    eps: float = 1e-6) -> dict[str, float]:
    """{"x": error of dx, parameter name: error of its .grad} for a built layer on the batch
    `x`, with G drawn from `rng` after the first forward. `x` and the parameters are changed
    and put back exactly; buffers and Generator states are restored at the end."""
    layers = [layer, *(sub for _, sub in walk(layer))]
    generators = [lay.rng for lay in layers if isinstance(lay.rng, np.random.Generator)]
    states = [g.bit_generator.state for g in generators]
    buffers = {name: b.copy() for name, b in layer.buffers().items()}

    def forward() -> np.ndarray:
        for generator, state in zip(generators, states, strict=True):
            generator.bit_generator.state = state  # the same dropout mask at every evaluation
        return layer.forward(x, training=True)

    try:
        y = forward()
        g = rng.standard_normal(np.shape(y)).astype(np.asarray(y).dtype, copy=False)
        dx = layer.backward(g)
        params = layer.parameters()
        analytic = {"x": _checked(layer, "dx", dx, x.shape)}
        for name, p in params.items():
            analytic[name] = _checked(layer, f"{name}.grad", p.grad, p.data.shape).copy()

        def loss() -> float:
            return float(np.sum(forward() * g))

        arrays = {"x": x, **{name: p.data for name, p in params.items()}}
        return {name: relative_error(analytic[name], numeric_grad(loss, a, eps))
                for name, a in arrays.items()}
    finally:
        for lay in layers:
            lay.clear_cache()
        for generator, state in zip(generators, states, strict=True):
            generator.bit_generator.state = state
        for name, b in layer.buffers().items():
            b[...] = buffers[name]


def _checked(layer: Layer, what: str, value, shape: tuple[int, ...]) -> np.ndarray:
    """`value` as an array of `shape`, or an error saying which part of the contract failed."""
    if value is None:
        hint = ("backward must return dx" if what == "dx"
                else f"backward must assign self.{what.rsplit('.', 1)[0]}.grad")
        raise RuntimeError(f"{layer.label}: {what} is None; {hint}")
    value = np.asarray(value)
    if value.shape != shape:
        raise ShapeError(f"{layer.label}: {what} has shape {value.shape}; expected {shape}, "
                         f"the shape of {'x' if what == 'dx' else what[:-5]}")
    return value


def numeric_grad(f: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """∂f/∂array by central differences, changing `array` in place one entry at a time (and
    putting each back exactly): f must read `array` on every call."""
    grad = np.zeros(array.shape, np.float64)
    for i in np.ndindex(array.shape):
        old = array[i]
        array[i] = old + eps
        plus = f()
        array[i] = old - eps
        minus = f()
        array[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |analytic − numeric| / max(1, max |numeric|): 0 for two empty arrays."""
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    if analytic.shape != numeric.shape:
        raise ShapeError(f"relative_error: shapes differ: {analytic.shape} and {numeric.shape}")
    if numeric.size == 0:
        return 0.0
    scale = max(1.0, float(np.max(np.abs(numeric))))
    return float(np.max(np.abs(analytic - numeric))) / scale
