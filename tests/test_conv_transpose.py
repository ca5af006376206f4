"""ConvTranspose2D (issue 20): against torch.nn.functional.conv_transpose2d (stride, padding,
output_padding, rectangular; float64 to 1e-10, float32 to 2e-4 on large shapes), float64
central differences, and what it is: the input gradient of the convolution it transposes."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import kernels
from tests.gradcheck import check_layer as check_gradients


def build(layer, shape, dtype=np.float64):
    layer.build(shape, rng=np.random.default_rng(0), dtype=dtype)
    if layer.bias is not None:
        layer.bias.data[...] = np.random.default_rng(1).standard_normal(layer.bias.shape)
    return layer


# (C, K, kernel, stride, padding, output_padding, input H×W, bias)
CASES = [
    (3, 4, 3, 1, 0, 0, (5, 6), True),
    (3, 4, 3, 2, 1, 1, (4, 4), True),         # the usual ×2 upsampling: G's "same" geometry
    (4, 2, 4, 2, 1, 0, (5, 3), False),        # kernel 4, stride 2, padding 1: "same" too
    (2, 3, 2, 2, 0, 0, (3, 5), True),
    (2, 5, (3, 2), (2, 3), (1, 0), (1, 2), (4, 3), True),
    (5, 3, 5, 3, 2, 2, (3, 4), True),
    (3, 3, 3, 1, 2, 0, (6, 6), False),        # padding crops more than the kernel adds
    (6, 4, 3, 1, 1, 0, (7, 9), True),         # stride 1 "same": equal size
]


def _id(case):
    c, k, f, s, p, o, size, bias = case
    return f"C{c}-K{k}-F{f}-S{s}-P{p}-O{o}-{size[0]}x{size[1]}-{'bias' if bias else 'nobias'}"


def compare(torch, parity, layer, x, rng, tol):
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    dx = layer.backward(dy)
    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(layer.weight.data, requires_grad=True)
    b_t = None if layer.bias is None else torch.tensor(layer.bias.data, requires_grad=True)
    y_t = torch.nn.functional.conv_transpose2d(x_t, w_t, b_t, layer.stride, layer.padding,
                                               layer.output_padding)
    y_t.backward(torch.tensor(dy))
    pairs = [("y", y, y_t), ("dx", dx, x_t.grad), ("dW", layer.weight.grad, w_t.grad)]
    if b_t is not None:
        pairs.append(("db", layer.bias.grad, b_t.grad))
    for what, ours, theirs in pairs:
        assert ours.dtype == x.dtype, what
        parity(ours, theirs, tol, what)


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_matches_torch(case, dtype, tol, torch, parity, rng):
    c, k, f, s, p, o, size, bias = case
    layer = build(cl.ConvTranspose2D(k, f, s, p, o, bias=bias), (c, *size), dtype)
    compare(torch, parity, layer, rng.standard_normal((3, c, *size)).astype(dtype), rng, tol)


def test_large_float32_within_2e_4(torch, parity, rng):
    layer = build(cl.ConvTranspose2D(32, 4, 2, 1), (64, 14, 14), np.float32)
    compare(torch, parity, layer, rng.standard_normal((16, 64, 14, 14)).astype(np.float32), rng, 2e-4)


@pytest.mark.parametrize("case", CASES[:6], ids=[_id(c) for c in CASES[:6]])
def test_gradients_match_central_differences(case, rng):
    c, k, f, s, p, o, size, bias = case
    layer = build(cl.ConvTranspose2D(k, f, s, p, o, bias=bias), (c, *size))
    check_gradients(layer, rng.standard_normal((2, c, *size)), rng)


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_is_the_input_gradient_of_the_convolution_it_transposes(case, rng):
    """Forward = Conv2D(C, F, S, P, fit="floor")'s backward with dy = x; backward's dx = that
    convolution's forward on dy. Same weight array: (C, K, F, F) is the Conv2D layout."""
    c, k, f, s, p, o, size, _ = case
    up = build(cl.ConvTranspose2D(k, f, s, p, o, bias=False), (c, *size))
    conv = build(cl.Conv2D(c, f, s, p, fit="floor", bias=False), up.out_shape)
    conv.weight.data[...] = up.weight.data
    assert conv.out_shape == (c, *size)
    x = rng.standard_normal((2, c, *size))
    dy = rng.standard_normal((2, *up.out_shape))
    conv.forward(dy, training=True)
    np.testing.assert_allclose(up.forward(x, training=True), conv.backward(x), atol=1e-12)
    np.testing.assert_allclose(up.backward(dy), conv.forward(dy), atol=1e-12)


@pytest.mark.parametrize("kernel, stride, padding, output_padding", [
    (4, 2, 1, 0), (3, 2, 1, 1), (2, 2, 0, 0), (3, 1, 1, 0), ((3, 5), (1, 2), (1, 2), (0, 1))])
def test_the_same_path_equals_plain_col2im(kernel, stride, padding, output_padding, rng):
    """These geometries take the "same" path's shifted runs (G's output is (H2/S, W2/S));
    the plain im2col/col2im give the same numbers."""
    layer = build(cl.ConvTranspose2D(3, kernel, stride, padding, output_padding), (5, 4, 6))
    (kh, kw), pads = layer.kernel_size, layer._pads()
    out_hw = layer.out_shape[1:]
    assert kernels.conv_same_applies(*out_hw, kh, kw, layer.stride, pads)
    x = rng.standard_normal((2, 5, 4, 6))
    cols = layer.weight.data.reshape(5, -1).T @ x.transpose(1, 0, 2, 3).reshape(5, -1)
    plain = kernels.col2im(cols, (2, 3, *out_hw), kh, kw, layer.stride, pads)
    np.testing.assert_allclose(layer.forward(x), plain + layer.bias.data[:, None, None], atol=1e-12)
    dy = rng.standard_normal((2, *layer.out_shape))
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    d_cols = kernels.im2col(dy, kh, kw, layer.stride, pads)
    expected = (layer.weight.data.reshape(5, -1) @ d_cols).reshape(5, 2, 4, 6).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(dx, expected, atol=1e-12)


def test_backward_params_gives_backwards_weight_gradients(rng):
    layer = build(cl.ConvTranspose2D(4, 3, 2, 1, 1), (3, 5, 5))
    x = rng.standard_normal((2, 3, 5, 5))
    y = layer.forward(x, training=True)
    layer.backward(np.cos(y))
    full = {k: p.grad.copy() for k, p in layer.parameters().items()}
    layer.forward(x, training=True)
    assert layer.backward_params(np.cos(y)) is None
    for k, p in layer.parameters().items():
        np.testing.assert_array_equal(p.grad, full[k])


def test_in_a_network_it_trains(rng):
    """An encoder-decoder: Conv2D down, ConvTranspose2D up, trained a few steps on a target
    that the initial network misses; the loss falls."""
    model = cl.Sequential([cl.Conv2D(4, 4, stride=2, padding=1), cl.ReLU(),
                           cl.ConvTranspose2D(1, 4, stride=2, padding=1)],
                          input_shape=(1, 8, 8), dtype=np.float64, seed=0)
    x = rng.standard_normal((8, 1, 8, 8))
    losses = []
    for _ in range(30):
        y = model.forward(x, training=True)
        losses.append(float(np.mean((y - x) ** 2)))
        model.backward(2 * (y - x) / y.size)
        for p in model.parameters().values():
            p.data -= 0.5 * p.grad
    assert losses[-1] < 0.5 * losses[0]
