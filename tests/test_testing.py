"""cl.testing.gradcheck, the public gradient check: it passes correct layers (cnnlab's and a
user's own), catches wrong ones, says which part of the contract a layer breaks, holds dropout's
mask fixed, leaves buffers and Generators as it found them; and the docs/api.md example runs."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.testing import GradcheckResult, numeric_grad, relative_error
from tests.test_docs import API, python_blocks


class Softsign(cl.Layer):
    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, *, training=False):
        x = self._check_input(x)
        if training:
            self._cache = x
        return x / (1 + np.abs(x))

    def backward(self, dy):
        return dy / (1 + np.abs(self._take_cache())) ** 2


class Scale(cl.Layer):
    """y = x·w per feature, with a parameter: the user's layer with weights."""

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def _build(self, rng):
        self.weight = cl.Parameter(rng.standard_normal(self.input_shape).astype(self.dtype))

    def parameters(self):
        return {"weight": self.weight}

    def forward(self, x, *, training=False):
        x = self._check_input(x)
        if training:
            self._cache = x
        return x * self.weight.data

    def backward(self, dy):
        x = self._take_cache()
        self.weight.grad = (dy * x).sum(axis=0)
        return dy * self.weight.data


def test_a_users_correct_layers_pass_with_tiny_errors():
    result = cl.testing.gradcheck(Softsign(), (3, 4, 4))
    assert isinstance(result, GradcheckResult) and result.ok
    assert list(result.errors) == ["x"] and result["x"] < 1e-8
    scaled = cl.testing.gradcheck(Scale(), (5,))
    assert scaled.ok and list(scaled.errors) == ["x", "weight"]
    assert max(scaled.errors.values()) < 1e-8


def test_cnnlabs_layers_report_every_parameter_by_name():
    result = cl.testing.gradcheck(cl.Conv2D(2, 3, padding=1), (2, 5, 5))
    assert result.ok and list(result.errors) == ["x", "weight", "bias"]
    net = cl.Sequential([cl.Conv2D(2, 3), cl.ReLU(), cl.Flatten(), cl.Dense(3)])  # unbuilt
    result = cl.testing.gradcheck(net, (1, 5, 5), batch=3)
    assert result.ok and list(result.errors) == [
        "x", "conv2d_1.weight", "conv2d_1.bias", "dense_1.weight", "dense_1.bias"]
    assert net.dtype == np.float64


def test_a_wrong_backward_fails_and_the_text_says_which_gradient():
    class Wrong(Scale):
        def backward(self, dy):
            super().backward(dy)
            self.weight.grad = 2 * self.weight.grad  # the weight's gradient doubled
            return dy * self.weight.data

    result = cl.testing.gradcheck(Wrong(), (4,))
    assert not result.ok and result["x"] < 1e-8 and result["weight"] > 0.1
    assert result.worst[0] == "weight"
    text = str(result)
    assert re.search(r"^  weight\s+\S+  FAILED$", text, re.M)
    assert re.search(r"^  x\s+\S+  ok$", text, re.M)
    assert text.splitlines()[-1].startswith("FAILED: the gradient of weight is off by")
    assert text.splitlines()[0] == "Wrong: gradient check in float64, ε = 1e-06, tolerance 1e-06"


def test_the_check_is_deterministic_under_its_seed():
    a = cl.testing.gradcheck(Scale(), (6,), seed=3)
    b = cl.testing.gradcheck(Scale(), (6,), seed=3)
    c = cl.testing.gradcheck(Scale(), (6,), seed=4)
    assert a.errors == b.errors and a.errors != c.errors


def test_dropout_is_checked_with_one_mask_and_its_generator_is_put_back():
    layer = cl.Dropout(0.5).build((3, 4), rng=np.random.default_rng(0), dtype=np.float64)
    before = layer.rng.bit_generator.state
    result = cl.testing.gradcheck(layer, (3, 4), batch=4)
    assert result.ok and result["x"] < 1e-8
    assert layer.rng.bit_generator.state == before
    # inside a model too: every Generator of the walk is held
    net = cl.Sequential([cl.Dense(6), cl.Dropout(0.3), cl.Tanh(), cl.Dense(2)])
    assert cl.testing.gradcheck(net, (5,)).ok


def test_batchnorm_buffers_are_restored():
    layer = cl.BatchNorm2D().build((2, 3, 3), dtype=np.float64)
    layer.running_mean[...] = [0.5, -1.0]
    mean, var = layer.running_mean.copy(), layer.running_var.copy()
    assert cl.testing.gradcheck(layer, (2, 3, 3), batch=3).ok
    np.testing.assert_array_equal(layer.running_mean, mean)
    np.testing.assert_array_equal(layer.running_var, var)


def test_float32_is_a_rough_check_with_its_own_eps_and_tolerance():
    result = cl.testing.gradcheck(cl.Dense(3), (4,), dtype=np.float32)
    assert result.ok and result.dtype == "float32" and result.eps == 1e-3
    assert result.tolerance == 2e-2


class NoGrad(Scale):
    def backward(self, dy):
        self._take_cache()
        return dy * self.weight.data  # forgets weight.grad


class BadShape(Softsign):
    def backward(self, dy):
        return super().backward(dy)[:, :1]


class NoReturn(Softsign):
    def backward(self, dy):
        super().backward(dy)


@pytest.mark.parametrize("layer, error, match", [
    (NoGrad(), RuntimeError, r"NoGrad: weight.grad is None; backward must assign self.weight.grad"),
    (BadShape(), cl.ShapeError, r"BadShape: dx has shape \(2, 1\); expected \(2, 3\), the shape of x"),
    (NoReturn(), RuntimeError, r"NoReturn: dx is None; backward must return dx"),
])
def test_a_broken_contract_is_named(layer, error, match):
    with pytest.raises(error, match=match):
        cl.testing.gradcheck(layer, (3,))


def test_bad_arguments_are_refused_with_what_to_do():
    with pytest.raises(TypeError, match="expected a cl.Layer"):
        cl.testing.gradcheck(lambda x: x, (3,))
    built = cl.Dense(2).build((3,))  # float32
    with pytest.raises(ValueError, match=re.escape("built for input (3,) in float32; the check "
                                                   "asked for (3,) in float64")):
        cl.testing.gradcheck(built, (3,))
    with pytest.raises(ValueError, match="dtype must be float64 or float32"):
        cl.testing.gradcheck(cl.Dense(2), (3,), dtype=np.float16)


def test_numeric_grad_works_on_strided_arrays_and_puts_every_entry_back():
    a = np.arange(12, dtype=np.float64).reshape(3, 4).T  # not C-contiguous
    before = a.copy()
    grad = numeric_grad(lambda: float(np.sum(a ** 2)), a)
    np.testing.assert_allclose(grad, 2 * before, rtol=1e-6)
    np.testing.assert_array_equal(a, before)
    assert relative_error(np.array([1.0, 5.0]), np.array([1.0, 4.0])) == 0.25  # 1/max(1, 4)
    assert relative_error(np.array([0.1]), np.array([0.2])) == pytest.approx(0.1)  # below 1: absolute


def test_the_api_guides_gradcheck_example_runs_on_its_own(tmp_path):
    blocks = [(line, code) for line, code in python_blocks(API.read_text(encoding="utf-8"))
              if "cl.testing.gradcheck" in code]
    assert len(blocks) == 1
    line, code = blocks[0]
    padded = "\n" * (line - 1) + code
    result = subprocess.run([sys.executable, "-W", "error", "-c",
                             f"exec(compile({padded!r}, 'docs/api.md', 'exec'))"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Softsign: gradient check in float64" in result.stdout
    assert "passed: every error below 1e-06" in result.stdout
    assert "('x', 0.5" in result.stdout  # the wrong backward's error, as the page says
    assert "dense_2.bias" in result.stdout
