"""The direct path (cnnlab.kernels.direct, compiled by Numba) against the NumPy paths it stands
in for: the same sums in float64 to rounding, in float32 within its stated tolerance, NaN and
±inf where the NumPy path puts them, the layers that take it, and Numba imported only then
(bit-identical repeats for a thread count: tests/test_threads.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.kernels import (
    col2im,
    compiled,
    conv_backward_direct,
    conv_direct_applies,
    conv_forward_direct,
    direct,
    im2col,
)
from tests.gradcheck import check_layer

PAD = ((1, 1), (1, 1))
#: the float32 direct path against float64 sums: max |error| / max |value| (measured 1e-6 at
#: 16 channels; the bound leaves room for 64 channels' longer sums)
FLOAT32_TOLERANCE = 1e-5


def reference(x, weight, bias, dy):
    """y, dW, db, dx by im2col and one GEMM (kernels.plain): the readable NumPy path."""
    k = weight.shape[0]
    cols = im2col(x, 3, 3, 1, PAD)
    w_mat = weight.reshape(k, -1)
    n, _, h, w = x.shape
    y = (w_mat @ cols + bias[:, None]).reshape(k, n, h, w).transpose(1, 0, 2, 3)
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(k, -1)
    dx = col2im(w_mat.T @ dy_mat, x.shape, 3, 3, 1, PAD)
    return y, (dy_mat @ cols.T).reshape(weight.shape), dy_mat.sum(axis=1), dx


@pytest.mark.parametrize("n, c, k, h, w", [
    (1, 1, 1, 1, 1), (3, 5, 7, 6, 9), (2, 3, 1, 5, 4), (70, 4, 6, 8, 8), (4, 16, 16, 28, 28),
    (2, 17, 2, 3, 11),
])
def test_direct_equals_im2col_and_col2im_in_float64(n, c, k, h, w, rng, n_threads):
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((k, c, 3, 3))
    bias = rng.standard_normal(k)
    y, x_pad = conv_forward_direct(x, weight, bias)
    dy = rng.standard_normal(y.shape)
    expected = reference(x, weight, bias, dy)
    got = (y, *conv_backward_direct(dy, x_pad, weight))
    for name, a, b in zip(("y", "dW", "db", "dx"), got, expected, strict=True):
        assert a.shape == b.shape and a.dtype == np.float64, name
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)
    no_dx = conv_backward_direct(dy, x_pad, weight, input_grad=False, bias_grad=False)
    assert no_dx[1] is None and no_dx[2] is None
    np.testing.assert_array_equal(no_dx[0], got[1])


def test_direct_float32_error_against_float64_is_within_its_tolerance(rng):
    x = rng.standard_normal((8, 64, 14, 14))
    weight = rng.standard_normal((64, 64, 3, 3)) / 24
    bias = rng.standard_normal(64)
    dy = rng.standard_normal((8, 64, 14, 14))
    exact = reference(x, weight, bias, dy)
    y, x_pad = conv_forward_direct(x.astype(np.float32), weight.astype(np.float32),
                                   bias.astype(np.float32))
    got = (y, *conv_backward_direct(dy.astype(np.float32), x_pad, weight.astype(np.float32)))
    for name, a, b in zip(("y", "dW", "db", "dx"), got, exact, strict=True):
        assert a.dtype == np.float32, name
        assert np.abs(a - b).max() / np.abs(b).max() <= FLOAT32_TOLERANCE, name


def test_nan_and_inf_land_where_the_numpy_path_puts_them(rng):
    x = rng.standard_normal((2, 4, 6, 6))
    x[0, 1, 2, 3] = np.nan
    x[1, 2, 0, 0] = np.inf
    weight = np.abs(rng.standard_normal((4, 4, 3, 3)))  # positive: +inf stays +inf
    y, _ = conv_forward_direct(x, weight, None)
    with np.errstate(invalid="ignore"):
        expected = (weight.reshape(4, -1) @ im2col(x, 3, 3, 1, PAD)).reshape(4, 2, 6, 6)
    expected = expected.transpose(1, 0, 2, 3)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))
    assert np.isnan(y).sum() == 4 * 9 and np.isposinf(y).sum() == 4 * 4


@pytest.mark.parametrize("kh, stride, padding", [(3, 2, 1), (3, 1, 0), (3, 1, 2), (5, 1, 1),
                                                  (3, 1, ((1, 0), (1, 1)))])
def test_direct_refuses_other_windows(kh, stride, padding):
    assert conv_direct_applies(3, 3, 1, 1)
    assert not conv_direct_applies(kh, kh, stride, padding)


def path_of(layer_args: dict, input_shape) -> str:
    layer = cl.layers.Conv2D(**layer_args)
    cl.Sequential([layer]).build(input_shape)
    return layer._path()


def test_layers_take_the_direct_path_where_it_was_measured_faster(monkeypatch):
    assert path_of({"filters": 8, "kernel_size": 3, "padding": 1}, (16, 28, 28)) == "direct"
    assert path_of({"filters": 8, "kernel_size": 3, "padding": "same"}, (4, 9, 9)) == "direct"
    # 16 → 16: the direct loops, or in training the gather path where it was measured faster
    # (AVX2; tests/test_gather.py)
    trained = "gather" if cl.kernels.gather_trains_ahead_of_direct() else "direct"
    assert path_of({"filters": 16, "kernel_size": 3, "padding": 1}, (16, 28, 28)) == trained
    # more than 16 filters or channels: the gather path's vector code where it runs, else
    # Winograd from 16 channels (tests/test_gather.py, tests/test_winograd.py)
    assert path_of({"filters": 32, "kernel_size": 3, "padding": 1}, (16, 28, 28)) in ("gather", "winograd")
    assert path_of({"filters": 32, "kernel_size": 3, "padding": 1}, (6, 28, 28)) == "same"
    assert path_of({"filters": 16, "kernel_size": 3, "padding": 1}, (3, 28, 28)) == "direct"
    assert path_of({"filters": 32, "kernel_size": 3, "padding": 1}, (1, 28, 28)) == "direct"
    assert path_of({"filters": 64, "kernel_size": 3, "padding": 1}, (3, 28, 28)) == "plain"
    assert path_of({"filters": 16, "kernel_size": 3, "padding": 1, "dilation": 2},
                   (16, 28, 28)) == "plain"
    monkeypatch.setattr(compiled, "HAVE_NUMBA", False)  # without Numba: no direct loops
    assert path_of({"filters": 16, "kernel_size": 3, "padding": 1}, (16, 28, 28)) in ("gather", "same")
    monkeypatch.setenv("CNNLAB_SIMD", "0")  # and without the vector code: the NumPy paths
    assert path_of({"filters": 16, "kernel_size": 3, "padding": 1}, (16, 28, 28)) == "same"


def pytorch_pairs(layer, input_shape, rng, torch):
    """A training forward and backward of `layer` (3×3, padding 1, random bias) on float32 data,
    and PyTorch's conv2d on the same: pairs (ours, PyTorch's) of y, dx, dW and db."""
    cl.Sequential([layer]).build(input_shape)
    layer.bias.data[...] = rng.standard_normal(layer.filters)
    x = rng.standard_normal((3, *input_shape)).astype(np.float32)
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    xt = torch.from_numpy(x).requires_grad_(True)
    wt = torch.from_numpy(layer.weight.data).requires_grad_(True)
    bt = torch.from_numpy(layer.bias.data).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, padding=1)
    yt.backward(torch.from_numpy(dy))
    return [(a, b.detach().numpy()) for a, b in ((y, yt), (dx, xt.grad), (layer.weight.grad, wt.grad),
                                                 (layer.bias.grad, bt.grad))]


def test_a_direct_layer_matches_pytorch(rng, torch):
    layer = cl.layers.Conv2D(6, 3, padding=1)
    pairs = pytorch_pairs(layer, (5, 7, 6), rng, torch)
    assert layer._path() == "direct"
    for a, b in pairs:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_direct_layer_passes_the_numeric_gradient_check(rng):
    x = rng.standard_normal((2, 4, 6, 5))
    layer = cl.layers.Conv2D(5, 3, padding=1).build(x.shape[1:], rng=rng, dtype=np.float64)
    layer.bias.data[...] = rng.standard_normal(5)
    assert layer._path() == "direct"
    check_layer(layer, x, rng)


def test_numba_is_imported_on_the_first_compiled_convolution_only():
    script = """
import sys
import numpy as np
import cnnlab as cl
model = cl.Sequential([cl.Conv2D(8, 5, padding=2), cl.ReLU(), cl.Conv2D(8, 3, padding=2)])
model.build((1, 28, 28))  # a 5×5 kernel, then padding 2: no compiled path
model.forward(np.zeros((2, 1, 28, 28), np.float32))
before = "numba" in sys.modules
# the direct path in float64 (in float32 its forward is llvmlite's vector code, not Numba's)
model = cl.Sequential([cl.Conv2D(16, 3, padding=1)], input_shape=(16, 28, 28), dtype=np.float64)
model.forward(np.zeros((2, 16, 28, 28)))
print(before, "numba" in sys.modules)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True)
    assert run.stdout.split() == ["False", "True"]


def test_without_a_writable_cache_folder_the_loops_compile_in_the_process(monkeypatch, rng):
    import numba

    plain_njit = numba.njit

    def njit(**options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'correlate3x3': no locator available")
        return plain_njit(**options)

    monkeypatch.setattr(numba, "njit", njit)
    correlate = direct.loops.__wrapped__()[0]
    x = rng.standard_normal((3, 40))
    w = rng.standard_normal((2, 3, 3, 3))
    out = np.empty((2, 20))
    correlate(x, w, out, 0, 20, 6)
    expected = [sum(w[k, c, u, v] * x[c, p + 6 * u + v] for c in range(3) for u in range(3)
                    for v in range(3)) for k in range(2) for p in range(20)]
    np.testing.assert_allclose(out.reshape(-1), expected, rtol=1e-12)


@pytest.mark.parametrize("c, k", [(16, 16), (4, 6), (3, 32), (1, 16), (5, 7)])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_weight_gradient_by_filter_pairs_and_which_layers_take_it(c, k, dtype, tol, rng,
                                                                   monkeypatch):
    """dW two filters at a time (weight_grad3x3_pairs) where K is even and C ≥ 4, the one-filter
    loop otherwise (first layers keep their bits): each equal to the other within rounding."""
    x = rng.standard_normal((5, c, 9, 11)).astype(dtype)
    weight = rng.standard_normal((k, c, 3, 3)).astype(dtype)
    dy = rng.standard_normal((5, k, 9, 11)).astype(dtype)
    _, xp = direct.conv_forward_direct(x, weight, None)
    got = direct.conv_backward_direct(dy, xp, weight)
    monkeypatch.setattr(direct, "FIRST_LAYER_CHANNELS", 10**9)  # the one-filter loop everywhere
    single = direct.conv_backward_direct(dy, xp, weight)
    pairs = k % 2 == 0 and c >= 4
    if not pairs:
        assert got[0].tobytes() == single[0].tobytes()
    np.testing.assert_allclose(got[0], single[0], rtol=0, atol=tol * np.abs(single[0]).max())
    for a, b in zip(got[1:], single[1:], strict=True):  # db and dx: the same loops
        assert a.tobytes() == b.tobytes()
