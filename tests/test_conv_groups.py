"""Dilated and grouped convolutions (issue 20): Conv2D/Conv1D(..., dilation=d, groups=g).

Against PyTorch (float64 to 1e-10, float32 to 2e-4 on large shapes), against float64 central
differences, and the three depthwise kernels against each other; the arithmetic the lecture
shows (F' = d·(F − 1) + 1, parameters (F·F·C/g + 1)·K); the errors; and the default
convolution's files, configuration and kernel paths unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import kernels
from cnnlab.runtime import threads
from tests.gradcheck import check_layer as check_gradients


def build(layer, shape, dtype=np.float64, seed=0):
    layer.build(shape, rng=np.random.default_rng(seed), dtype=dtype)
    if layer.bias is not None:
        layer.bias.data[...] = np.random.default_rng(1).standard_normal(layer.bias.shape)
    return layer


def torch_reference(torch, layer, x, dy):
    """y, dx, dW, db of torch's conv on the same weights: the padding cnnlab resolved (so
    "same" and its uneven split are checked too), stride, dilation, groups."""
    (top, bottom), (left, right) = layer.win.pad
    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(layer.weight.data, requires_grad=True)
    b_t = None if layer.bias is None else torch.tensor(layer.bias.data, requires_grad=True)
    if layer.ndim == 2:
        xp = torch.nn.functional.pad(x_t, (left, right, top, bottom))
        y_t = torch.nn.functional.conv2d(xp, w_t, b_t, layer.stride, 0, layer.dilation, layer.groups)
    else:
        xp = torch.nn.functional.pad(x_t, (left, right))
        y_t = torch.nn.functional.conv1d(xp, w_t, b_t, layer.stride, 0, layer.dilation, layer.groups)
    y_t.backward(torch.tensor(dy))
    return [y_t, x_t.grad, w_t.grad] + ([] if b_t is None else [b_t.grad])


def compare(torch, parity, layer, x, rng, tol):
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    dx = layer.backward(dy)
    ours = [y, dx, layer.weight.grad] + ([] if layer.bias is None else [layer.bias.grad])
    for what, a, b in zip(["y", "dx", "dW", "db"], ours, torch_reference(torch, layer, x, dy),
                          strict=False):
        assert a.dtype == x.dtype, what
        parity(a, b, tol, what)


# (C, K, kernel, stride, padding, dilation, groups, input H×W, the path Conv2D._path takes)
CONV2D = [
    (4, 6, 3, 1, 0, 2, 1, (11, 10), "plain"),
    (4, 6, 3, 1, "same", 2, 1, (9, 12), "plain"),
    (6, 4, 3, 2, 1, 1, 2, (9, 9), "plain"),
    (6, 9, (3, 2), (2, 1), "same", (2, 3), 3, (10, 11), "plain"),
    (8, 8, 3, 1, 1, 1, 4, (7, 7), "plain"),
    (4, 4, 3, 1, 1, 1, 4, (7, 8), "depthwise"),            # "same" size: depthwise_same
    (4, 8, 3, 1, "same", 2, 4, (9, 9), "depthwise"),       # multiplier 2, dilated
    (6, 6, 3, 2, "same", 1, 6, (8, 10), "depthwise"),      # stride 2 on even sizes: phases
    (5, 5, (2, 3), 2, "same", (2, 1), 5, (8, 6), "depthwise"),
    (4, 4, 3, 1, 0, 1, 4, (7, 6), "depthwise"),            # "valid": the padded path
    (3, 6, 3, 2, 1, 2, 3, (9, 8), "depthwise"),            # floor, odd sizes: the padded path
    (4, 4, 5, 3, 2, 1, 4, (13, 11), "depthwise"),
]


def _id(case):
    c, k, f, s, p, d, g, size, path = case
    return f"C{c}-K{k}-F{f}-S{s}-P{p}-d{d}-g{g}-{size[0]}x{size[1]}-{path}"


@pytest.mark.parametrize("case", CONV2D, ids=[_id(c) for c in CONV2D])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_conv2d_matches_torch(case, dtype, tol, torch, parity, rng):
    c, k, f, s, p, d, g, size, path = case
    layer = build(cl.Conv2D(k, f, s, p, dilation=d, groups=g, fit="floor"), (c, *size), dtype)
    assert layer._path() == path
    compare(torch, parity, layer, rng.standard_normal((3, c, *size)).astype(dtype), rng, tol)


CONV1D = [(4, 6, 3, 1, "same", 2, 2, 13), (4, 4, 3, 2, 1, 1, 4, 12), (4, 8, 3, 1, "same", 3, 4, 16),
          (3, 3, 4, 2, 0, 2, 3, 15), (6, 4, 2, 1, 1, 1, 2, 9)]


@pytest.mark.parametrize("c, k, f, s, p, d, g, length", CONV1D)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_conv1d_matches_torch(c, k, f, s, p, d, g, length, dtype, tol, torch, parity, rng):
    layer = build(cl.Conv1D(k, f, s, p, dilation=d, groups=g, fit="floor"), (c, length), dtype)
    compare(torch, parity, layer, rng.standard_normal((3, c, length)).astype(dtype), rng, tol)


@pytest.mark.parametrize("c, k, groups, size, stride", [
    (32, 32, 32, 28, 1), (96, 96, 96, 14, 2), (64, 128, 4, 16, 1), (16, 16, 16, 56, 1)])
def test_large_float32_within_2e_4(c, k, groups, size, stride, torch, parity, rng):
    """MobileNet-sized maps and batches: several blocks of channels and samples, threads."""
    layer = build(cl.Conv2D(k, 3, stride, "same", groups=groups), (c, size, size), np.float32)
    x = rng.standard_normal((20, c, size, size)).astype(np.float32)
    compare(torch, parity, layer, x, rng, 2e-4)


GRADIENTS = [
    lambda: cl.Conv2D(4, 3, stride=2, padding="same", dilation=2),
    lambda: cl.Conv2D(4, (2, 3), padding=1, dilation=(2, 1), groups=2),
    lambda: cl.Conv2D(6, 3, padding="same", dilation=2, groups=3, bias=False),
    lambda: cl.Conv2D(3, 3, stride=2, padding=1, groups=3, fit="floor"),
    lambda: cl.Conv2D(6, 2, stride=(1, 2), padding="same", dilation=2, groups=3),
    lambda: cl.Conv1D(6, 3, padding="same", dilation=3, groups=3),
    lambda: cl.Conv1D(4, 3, stride=2, dilation=2, groups=2),
    # "same" with a dilated window whose taps miss the input: only padding on L = 1, some on 2
    lambda: cl.Conv1D(2, 2, padding="same", dilation=3, groups=2),
    lambda: cl.Conv1D(2, 2, padding="same", dilation=3, groups=2),
]
SHAPES = [(3, 9, 9), (4, 6, 7), (6, 8, 8), (3, 7, 8), (3, 6, 8), (3, 11), (4, 13), (2, 1), (2, 2)]


@pytest.mark.parametrize("factory, shape", list(zip(GRADIENTS, SHAPES, strict=True)))
def test_gradients_match_central_differences(factory, shape, rng):
    layer = build(factory(), shape)
    x = rng.standard_normal((2, *shape))
    check_gradients(layer, x, rng)


# ----------------------------------------------------------------- the kernels among themselves
@pytest.mark.parametrize("size, kernel, stride, dilation, multiplier", [
    ((8, 8), (3, 3), 1, 1, 1), ((9, 7), (3, 3), 1, 2, 2), ((8, 6), (3, 2), 2, 1, 1),
    ((12, 9), (2, 3), 3, (2, 1), 1), ((4, 6), (1, 1), 2, 1, 3)])
def test_depthwise_same_path_equals_the_padded_path(size, kernel, stride, dilation, multiplier, rng):
    (dh, dw), (eh, ew) = kernels.dilated(*kernel, dilation)
    pads = (cl.shapes.same_padding(size[0], eh, stride), cl.shapes.same_padding(size[1], ew, stride))
    assert kernels.depthwise_same_applies(*size, *kernel, stride, pads, dilation)
    x = rng.standard_normal((3, 4, *size))
    w = rng.standard_normal((4 * multiplier, 1, *kernel))
    b = rng.standard_normal(4 * multiplier)
    y1 = kernels.depthwise_forward_same(x, w, b, stride, pads, dilation)
    y2 = kernels.depthwise_forward_padded(x, w, b, stride, pads, dilation)
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y1.shape)
    for a, b_ in zip(kernels.depthwise_backward_same(dy, x, w, stride, pads, dilation),
                     kernels.depthwise_backward_padded(dy, x, w, stride, pads, dilation), strict=True):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)


def test_grouped_columns_equal_one_convolution_per_group(rng):
    """conv_forward_cols with groups = G convolutions on the channel slices, concatenated."""
    x = rng.standard_normal((2, 6, 7, 8))
    w = rng.standard_normal((9, 2, 3, 3))
    y, _ = kernels.conv_forward_cols(x, w.reshape(9, -1), None, 3, 3, 1, 1, 2, 3)
    parts = [kernels.conv_forward_cols(x[:, 2 * g : 2 * g + 2], w[3 * g : 3 * g + 3].reshape(3, -1),
                                       None, 3, 3, 1, 1, 2)[0] for g in range(3)]
    np.testing.assert_allclose(y, np.concatenate(parts, axis=1), rtol=1e-13)


@pytest.mark.parametrize("k, stride, padding, dilation", [(3, 1, 2, 2), (3, 2, 1, 3), (2, 1, 0, (1, 2))])
def test_dilated_col2im_is_the_adjoint_of_im2col(k, stride, padding, dilation, rng):
    x = rng.standard_normal((2, 3, 9, 8))
    cols = kernels.im2col(x, k, k, stride, padding, dilation)
    c = rng.standard_normal(cols.shape)
    back = kernels.col2im(c, x.shape, k, k, stride, padding, dilation)
    assert np.isclose(np.sum(cols * c), np.sum(x * back))


@pytest.mark.parametrize("shape", [(40, 24, 14, 14), (48, 6, 56, 56)])  # 1 and 2 sample blocks
def test_depthwise_is_the_same_on_any_thread_count_and_memory_layout(shape, rng):
    """The channel blocks go to the threads, the sample blocks do not depend on them: the same
    bits on 1 and 2 threads, and for NCHW input as for the (C, N, H, W) memory layers pass."""
    x = rng.standard_normal(shape).astype(np.float32)
    x_cnhw = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    w = rng.standard_normal((shape[1], 1, 3, 3)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    before = threads.num_threads()
    runs = []
    try:
        for n, xs in ((1, x), (2, x), (2, x_cnhw)):
            threads.set_num_threads(n)
            for pads in (((1, 1), (1, 1)), ((0, 0), (0, 0))):  # the same path, the padded one
                y = kernels.depthwise_forward(xs, w, None, 1, pads)
                dw, _, dx = kernels.depthwise_backward(dy[:, :, :y.shape[2], :y.shape[3]], xs, w,
                                                       1, pads)
                runs.append([y, dw, dx])
    finally:
        threads.set_num_threads(before)
    for i, run in enumerate(runs):
        for a, b in zip(run, runs[i % 2], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("factory, shape", [
    (lambda: cl.Conv2D(8, 3, padding=1, groups=8), (8, 6, 6)),
    (lambda: cl.Conv2D(8, 3, padding=1, groups=2, dilation=2, fit="floor"), (4, 9, 9)),
])
def test_backward_params_gives_backwards_weight_gradients(factory, shape, rng):
    x = rng.standard_normal((3, *shape))
    layer = build(factory(), shape)
    y = layer.forward(x, training=True)
    layer.backward(np.cos(y))
    full = {k: p.grad.copy() for k, p in layer.parameters().items()}
    layer.forward(x, training=True)
    assert layer.backward_params(np.cos(y)) is None
    for k, p in layer.parameters().items():
        np.testing.assert_array_equal(p.grad, full[k])
