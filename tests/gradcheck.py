"""The test suite's gradient checks: cnnlab.testing's (also public, as cl.testing.gradcheck),
with assertions. Central differences in float64: the independent oracle for every backward."""

from __future__ import annotations

import numpy as np

from cnnlab.testing import gradient_errors, numeric_grad, relative_error

__all__ = ["assert_close", "check_layer", "numeric_grad"]


def check_layer(layer, x: np.ndarray, rng: np.random.Generator, tol: float = 1e-6) -> None:
    """Analytic dx and every parameter gradient of L = Σ y·G against central differences."""
    for name, err in gradient_errors(layer, x, rng).items():
        assert err < tol, f"{layer.label} d{name}: gradient check failed, relative error {err:.3g}"


def assert_close(analytic: np.ndarray, numeric: np.ndarray, tol: float, what: str) -> None:
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} != {numeric.shape}"
    err = relative_error(analytic, numeric)
    assert err < tol, f"{what}: gradient check failed, relative error {err:.3g}"
