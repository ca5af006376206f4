"""Central-difference gradient checks in float64: the independent oracle for every backward."""

from __future__ import annotations

import numpy as np


def numeric_grad(f, array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """∂f/∂array by central differences, perturbing `array` in place one entry at a time."""
    grad = np.zeros_like(array)
    flat, out = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        out[i] = (plus - minus) / (2 * eps)
    return grad


def check_layer(layer, x: np.ndarray, rng: np.random.Generator, tol: float = 1e-6) -> None:
    """Analytic dx and every parameter gradient of L = Σ y·G against central differences."""
    y = layer.forward(x, training=True)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    grads = {name: p.grad.copy() for name, p in layer.parameters().items()}

    def loss() -> float:
        return float(np.sum(layer.forward(x, training=True) * g))

    assert_close(dx, numeric_grad(loss, x), tol, f"{layer.label} dx")
    for name, p in layer.parameters().items():
        assert_close(grads[name], numeric_grad(loss, p.data), tol, f"{layer.label} d{name}")


def assert_close(analytic: np.ndarray, numeric: np.ndarray, tol: float, what: str) -> None:
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} != {numeric.shape}"
    scale = max(1.0, float(np.max(np.abs(numeric))))
    err = float(np.max(np.abs(analytic - numeric))) / scale
    assert err < tol, f"{what}: gradient check failed, relative error {err:.3g}"
