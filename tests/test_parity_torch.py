"""Parity with PyTorch 2.13 (CPU, float32; float64 where said): forward output, dx, every .grad.

Each check runs a cnnlab layer forward (training) and backward with a random dy, and the same
op under torch autograd with copies of the same parameters and the same dy:
  Conv2D / Conv1D on seeded random geometries (fit="floor", bias on/off) and padding="same"
    (asymmetric padding, the extra row/column bottom/right as TensorFlow, H_out = ceil(H/S));
  MaxPool / AvgPool 2-D and 1-D (padding, overlapping and rectangular windows), GlobalAvgPool2D;
  Dense, Flatten; every activation (with ±50 inputs and exact zeros), PReLU's slopes, Maxout;
  ReLU6, SiLU, Hardswish and GELU (exact and tanh) in float32 and float64 against torch.nn's;
  SoftmaxCrossEntropy (plain, label smoothing, scores of 1e4) and MulticlassSVM: value, dscores;
  LocallyConnected2D / 1D against an F.unfold + einsum reference in cnnlab's weight layout;
  a whole Sequential network with its loss against the equivalent torch.nn.Sequential.
Errors are relative, max|ours − torch| / max(1, max|torch|) (conftest's `parity`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import cnnlab as cl

TOL = 1e-5
#: draws the randomised geometries once, at import, so test ids are stable
DRAW = np.random.default_rng(20240613)


def _int(low: int, high: int) -> int:
    return int(DRAW.integers(low, high + 1))


def _pair(low: int, high: int) -> tuple[int, int]:
    return _int(low, high), _int(low, high)


def build(layer: cl.Layer, input_shape) -> cl.Layer:
    """Builds in float32; biases start at zero, so give them random values that matter."""
    layer.build(input_shape, rng=np.random.default_rng(0), dtype=np.float32)
    if getattr(layer, "bias", None) is not None:
        layer.bias.data[...] = np.random.default_rng(1).standard_normal(layer.bias.shape)
    return layer


def check_layer(torch, parity, layer, x, reference, rng, tol: float = TOL) -> None:
    """Compares y, dx and every .grad of `layer` with `reference(x_t, **params_t)` + autograd."""
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    dx = layer.backward(dy)
    params = layer.parameters()
    x_t = torch.tensor(x, requires_grad=True)
    p_t = {key: torch.tensor(p.data, requires_grad=True) for key, p in params.items()}
    y_t = reference(x_t, **p_t)
    y_t.backward(torch.tensor(dy))
    for what, ours in [("y", y), ("dx", dx), *((f"d{k}", p.grad) for k, p in params.items())]:
        assert ours.dtype == x.dtype, f"{what} is {ours.dtype}, expected {x.dtype}"
    parity(y, y_t, tol, "forward")
    parity(dx, x_t.grad, tol, "dx")
    for key, p in params.items():
        parity(p.grad, p_t[key].grad, tol, f"d{key}")


def randn(rng, shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- convolution
def _conv2d_config():
    size, kernel, stride, padding = _pair(5, 12), _pair(1, 4), _pair(1, 3), _pair(0, 2)
    return _int(1, 4), _int(1, 5), size, kernel, stride, padding, bool(_int(0, 1))


def _conv1d_config():
    return _int(1, 4), _int(1, 5), _int(5, 16), _int(1, 5), _int(1, 3), _int(0, 2), bool(_int(0, 1))


def _id(c, k, size, kernel, stride, padding, bias) -> str:
    return f"C{c}-K{k}-in{size}-F{kernel}-S{stride}-P{padding}-{'bias' if bias else 'nobias'}"


CONV2D = [_conv2d_config() for _ in range(25)]
CONV1D = [_conv1d_config() for _ in range(10)]
CONV_ARGS = "c, k, size, kernel, stride, padding, bias"


@pytest.mark.parametrize(CONV_ARGS, CONV2D, ids=[_id(*c) for c in CONV2D])
def test_conv2d(c, k, size, kernel, stride, padding, bias, torch, parity, rng):
    layer = build(cl.Conv2D(k, kernel, stride, padding, bias=bias, fit="floor"), (c, *size))
    x = randn(rng, (3, c, *size))

    def reference(x, weight, bias=None):
        return torch.nn.functional.conv2d(x, weight, bias, stride, padding)  # floors too

    check_layer(torch, parity, layer, x, reference, rng)


@pytest.mark.parametrize(CONV_ARGS, CONV1D, ids=[_id(*c) for c in CONV1D])
def test_conv1d(c, k, size, kernel, stride, padding, bias, torch, parity, rng):
    layer = build(cl.Conv1D(k, kernel, stride, padding, bias=bias, fit="floor"), (c, size))
    x = randn(rng, (3, c, size))

    def reference(x, weight, bias=None):
        return torch.nn.functional.conv1d(x, weight, bias, stride, padding)

    check_layer(torch, parity, layer, x, reference, rng)


def assert_tensorflow_same(layer, sizes, kernels, stride) -> None:
    """H_out = ceil(H/S); total pad (H_out − 1)·S + F − H, the odd extra one bottom/right."""
    for n, f, (before, after) in zip(sizes, kernels, layer.win.pad, strict=True):
        total = max((math.ceil(n / stride) - 1) * stride + f - n, 0)
        assert (before, after) == (total // 2, total - total // 2), (n, f, stride)
    spatial = layer.out_shape[1:]
    assert spatial == tuple(math.ceil(n / stride) for n in sizes[-len(spatial):])


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [3, 4, (2, 5)])
@pytest.mark.parametrize("size", [(8, 8), (9, 9), (8, 11)])
def test_conv2d_same(size, kernel, stride, torch, parity, rng):
    layer = build(cl.Conv2D(3, kernel, stride, "same"), (2, *size))
    (top, bottom), (left, right) = layer.win.pad
    assert_tensorflow_same(layer, size, layer.win.kernel, stride)
    x = randn(rng, (2, 2, *size))

    def reference(x, weight, bias):
        x = torch.nn.functional.pad(x, (left, right, top, bottom))
        return torch.nn.functional.conv2d(x, weight, bias, stride)

    check_layer(torch, parity, layer, x, reference, rng)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [3, 4])
@pytest.mark.parametrize("length", [10, 11])
def test_conv1d_same(length, kernel, stride, torch, parity, rng):
    layer = build(cl.Conv1D(3, kernel, stride, "same"), (2, length))
    left, right = layer.win.pad[1]
    assert_tensorflow_same(layer, (1, length), (1, kernel), stride)
    x = randn(rng, (2, 2, length))

    def reference(x, weight, bias):
        x = torch.nn.functional.pad(x, (left, right))
        return torch.nn.functional.conv1d(x, weight, bias, stride)

    check_layer(torch, parity, layer, x, reference, rng)


@pytest.mark.parametrize("c, kernel, stride, padding, size, path", [
    # 3×3, stride 1, padding 1, at most 16 channels (3 filters): kernels.conv_forward_direct
    (4, 3, 1, 1, (24, 26), "direct"), (5, 3, 1, "same", (25, 24), "direct"),
    (4, 3, 1, 1, (7, 5), "direct"), (16, 3, 1, 1, (1, 1), "direct"),
    # the same window on ≥ 16 channels (more than 16), maps ≥ 8×8: kernels.conv_forward_winograd
    (17, 3, 1, 1, (9, 8), "winograd"), (20, 3, 1, "same", (12, 11), "winograd"),
    # "same" padding, ≥ 4 channels: kernels.conv_forward_same, on any map size
    (17, 3, 1, 1, (7, 7), "same"), (4, 4, 1, "same", (24, 27), "same"),
    (6, 1, 1, 0, (24, 24), "same"), (4, (2, 5), 1, "same", (3, 6), "same"),
    (5, 5, 1, 2, (1, 2), "same"),
    # other stride-1 padding, ≥ 4 channels, output rows ≥ 24: kernels.conv_forward_wide
    (4, (2, 5), 1, (1, 2), (24, 24), "wide"), (4, 5, 1, 0, (30, 28), "wide"),
    # stride 2 with output (H/2, W/2): the "same" path too, except a 1×1 kernel
    (4, 3, 2, 1, (8, 6), "same"), (4, 4, 2, "same", (6, 8), "same"), (6, 1, 2, 0, (4, 4), "plain"),
    # a first layer's 1–3 channels, 3×3, stride 1, padding 1: the direct path too
    (3, 3, 1, 1, (24, 24), "direct"), (1, 3, 1, 1, (5, 6), "direct"),
    # small maps with other padding, fewer than 4 channels, odd sizes at stride 2: plain im2col
    (4, 3, 1, 0, (9, 9), "plain"), (3, 3, 1, 2, (24, 24), "plain"), (4, 3, 2, 1, (7, 7), "plain"),
])
def test_conv2d_fast_paths(c, kernel, stride, padding, size, path, torch, parity, rng):
    layer = build(cl.Conv2D(3, kernel, stride, padding, fit="floor"), (c, *size))
    assert layer._path() == path
    (top, bottom), (left, right) = layer.win.pad
    x = randn(rng, (2, c, *size))

    def reference(x, weight, bias):
        x = torch.nn.functional.pad(x, (left, right, top, bottom))
        return torch.nn.functional.conv2d(x, weight, bias, stride)

    check_layer(torch, parity, layer, x, reference, rng)


# ---------------------------------------------------------------------------------- pooling
def _pool2d_config():
    kernel = _pair(1, 4)
    padding = tuple(_int(0, f // 2) for f in kernel)
    return _int(1, 3), _pair(5, 12), kernel, _pair(1, 3), padding


def _pool1d_config():
    kernel = _int(1, 5)
    return _int(1, 3), _int(5, 16), kernel, _int(1, 3), _int(0, kernel // 2)


POOL2D = [_pool2d_config() for _ in range(12)] + [
    (2, (9, 9), (3, 3), (2, 2), (1, 1)),  # overlapping windows with padding
    (1, (7, 10), (2, 4), (1, 3), (1, 2)),  # rectangular, overlapping in H only
]
POOL1D = [_pool1d_config() for _ in range(8)] + [(2, 11, 4, 2, 2)]


def _pool_id(c, size, kernel, stride, padding) -> str:
    return f"C{c}-in{size}-F{kernel}-S{stride}-P{padding}"


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("c, size, kernel, stride, padding", POOL2D,
                         ids=[_pool_id(*p) for p in POOL2D])
def test_pool2d(kind, c, size, kernel, stride, padding, torch, parity, rng):
    F = torch.nn.functional
    cls = cl.MaxPool2D if kind == "max" else cl.AvgPool2D
    layer = build(cls(kernel, stride, padding, fit="floor"), (c, *size))
    x = randn(rng, (3, c, *size))

    def reference(x):
        if kind == "max":
            return F.max_pool2d(x, kernel, stride, padding)
        return F.avg_pool2d(x, kernel, stride, padding, count_include_pad=True)

    check_layer(torch, parity, layer, x, reference, rng)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("c, size, kernel, stride, padding", POOL1D,
                         ids=[_pool_id(*p) for p in POOL1D])
def test_pool1d(kind, c, size, kernel, stride, padding, torch, parity, rng):
    F = torch.nn.functional
    cls = cl.MaxPool1D if kind == "max" else cl.AvgPool1D
    layer = build(cls(kernel, stride, padding, fit="floor"), (c, size))
    x = randn(rng, (3, c, size))

    def reference(x):
        if kind == "max":
            return F.max_pool1d(x, kernel, stride, padding)
        return F.avg_pool1d(x, kernel, stride, padding, count_include_pad=True)

    check_layer(torch, parity, layer, x, reference, rng)


def test_global_avg_pool(torch, parity, rng):
    layer = build(cl.GlobalAvgPool2D(), (4, 5, 7))
    check_layer(torch, parity, layer, randn(rng, (3, 4, 5, 7)), lambda x: x.mean((2, 3)), rng)


# ------------------------------------------------------------------------- dense, flatten
@pytest.mark.parametrize("bias", [True, False])
def test_dense(bias, torch, parity, rng):
    layer = build(cl.Dense(5, bias=bias), (7,))

    def reference(x, weight, bias=None):
        return torch.nn.functional.linear(x, weight, bias)

    check_layer(torch, parity, layer, randn(rng, (4, 7)), reference, rng)


@pytest.mark.parametrize("shape", [(3, 4, 5), (3, 6)])
def test_flatten(shape, torch, parity, rng):
    layer = build(cl.Flatten(), shape)
    check_layer(torch, parity, layer, randn(rng, (2, *shape)), lambda x: torch.flatten(x, 1), rng)


# ----------------------------------------------------------------------------- activations
ACTIVATIONS = {
    "sigmoid": (cl.Sigmoid, lambda torch, x: torch.sigmoid(x)),
    "tanh": (cl.Tanh, lambda torch, x: torch.tanh(x)),
    "relu": (cl.ReLU, lambda torch, x: torch.relu(x)),
    "leaky_relu": (cl.LeakyReLU, lambda torch, x: torch.nn.functional.leaky_relu(x, 0.1)),
    "elu": (cl.ELU, lambda torch, x: torch.nn.functional.elu(x, 1.0)),
    "elu_0.5": (lambda: cl.ELU(0.5), lambda torch, x: torch.nn.functional.elu(x, 0.5)),
    "swish": (cl.Swish, lambda torch, x: torch.nn.functional.silu(x)),
    "swish_beta2": (lambda: cl.Swish(beta=2.0), lambda torch, x: x * torch.sigmoid(2 * x)),
}
SHAPES = [(2, 3, 4, 5), (4, 6)]


def activation_input(rng, shape) -> np.ndarray:
    """Normal values of scale 3 plus ±50 (saturation, overflow) and exact zeros (the kinks)."""
    x = 3 * rng.standard_normal(shape)
    spots = rng.choice(x.size, 6, replace=False)
    x.reshape(-1)[spots] = [50, -50, 0, 0, 20, -20]
    return x.astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES, ids=["4d", "2d"])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation(name, shape, torch, parity, rng):
    make, reference = ACTIVATIONS[name]
    layer = build(make(), shape[1:])
    x = activation_input(rng, shape)
    check_layer(torch, parity, layer, x, lambda x: reference(torch, x), rng)


#: PyTorch's names for activations of recent networks (activation_modern.py), in both dtypes
MODERN = {
    "relu6": (cl.ReLU6, lambda torch, x: torch.nn.ReLU6()(x)),
    "silu": (cl.SiLU, lambda torch, x: torch.nn.SiLU()(x)),
    "hardswish": (cl.Hardswish, lambda torch, x: torch.nn.Hardswish()(x)),
    "gelu": (cl.GELU, lambda torch, x: torch.nn.GELU()(x)),
    "gelu_tanh": (lambda: cl.GELU("tanh"), lambda torch, x: torch.nn.GELU(approximate="tanh")(x)),
}
#: float64 should agree to a few units in the last place (erf included), float32 as elsewhere
MODERN_TOL = {np.float32: TOL, np.float64: 1e-13}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=["4d", "2d"])
@pytest.mark.parametrize("name", list(MODERN))
def test_modern_activation(name, shape, dtype, torch, parity, rng):
    make, reference = MODERN[name]
    layer = make().build(shape[1:], rng=np.random.default_rng(0), dtype=dtype)
    x = activation_input(rng, shape).astype(dtype)
    x.reshape(-1)[:6] = [6, 3, -3, 5.999, 2.5, -2.5]  # ReLU6's cap, Hardswish's corners
    check_layer(torch, parity, layer, x, lambda x: reference(torch, x), rng, MODERN_TOL[dtype])


@pytest.mark.parametrize("shape", SHAPES, ids=["4d", "2d"])
def test_prelu(shape, torch, parity, rng):
    c = shape[1]
    layer = build(cl.PReLU(), shape[1:])
    layer.weight.data[...] = rng.uniform(0.05, 0.6, c)  # a different slope per channel

    def reference(x, weight):
        module = torch.nn.PReLU(num_parameters=c)
        return torch.func.functional_call(module, {"weight": weight}, (x,))

    check_layer(torch, parity, layer, activation_input(rng, shape), reference, rng)


@pytest.mark.parametrize("pieces", [2, 3])
@pytest.mark.parametrize("shape", [(2, 6, 3, 4), (5, 12)], ids=["4d", "2d"])
def test_maxout(shape, pieces, torch, parity, rng):
    layer = build(cl.Maxout(pieces), shape[1:])
    size = int(np.prod(shape))
    x = (rng.permutation(size).reshape(shape) / size - 0.5).astype(np.float32)  # no ties

    def reference(x):
        n, c = x.shape[:2]
        return x.reshape(n, c // pieces, pieces, *x.shape[2:]).amax(2)

    check_layer(torch, parity, layer, x, reference, rng)


# ---------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("scale", [1.0, 1e4], ids=["unit", "1e4"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy(smoothing, scale, torch, parity, rng):
    scores = (scale * rng.standard_normal((8, 5))).astype(np.float32)
    labels = rng.integers(0, 5, 8)
    loss = cl.SoftmaxCrossEntropy(label_smoothing=smoothing)
    value = loss.forward(scores, labels)
    dscores = loss.backward()
    assert np.isfinite(value) and dscores.dtype == np.float32
    s_t = torch.tensor(scores, requires_grad=True)
    l_t = torch.nn.functional.cross_entropy(s_t, torch.tensor(labels), label_smoothing=smoothing)
    l_t.backward()
    parity(value, l_t, TOL, "loss")
    parity(dscores, s_t.grad, TOL, "dscores")


@pytest.mark.parametrize("n, k", [(8, 5), (6, 3), (10, 10)])
def test_multiclass_svm(n, k, torch, parity, rng):
    scores = rng.standard_normal((n, k)).astype(np.float32)
    labels = rng.integers(0, k, n)
    loss = cl.MulticlassSVM()
    value = loss.forward(scores, labels)
    dscores = loss.backward()
    assert dscores.dtype == np.float32
    s_t = torch.tensor(scores, requires_grad=True)
    # torch also divides each sample's hinge sum by K (see MulticlassSVM's docstring)
    l_t = k * torch.nn.functional.multi_margin_loss(s_t, torch.tensor(labels), margin=1.0)
    l_t.backward()
    parity(value, l_t, TOL, "loss")
    parity(dscores, s_t.grad, TOL, "dscores")


# ------------------------------------------------------------------ locally connected
def local_reference(torch, layer):
    """y[n, k, p] = b[k, p] + Σ_d w[p, k, d] · cols[n, d, p], cols = F.unfold(padded x):
    unfold's (c, u, v) row order is the (C, F_h, F_w) tail of cnnlab's weight layout."""
    F = torch.nn.functional
    (top, bottom), (left, right) = layer.win.pad

    def reference(x, weight, bias=None):
        x4 = x if layer.ndim == 2 else x.unsqueeze(2)
        x4 = F.pad(x4, (left, right, top, bottom))
        cols = F.unfold(x4, layer.win.kernel, stride=layer.win.stride)  # (N, C·kh·kw, P)
        w = weight.reshape(-1, layer.filters, cols.shape[1])  # (P, K, C·kh·kw)
        y = torch.einsum("ndp,pkd->nkp", cols, w)
        if bias is not None:
            y = y + bias.reshape(layer.filters, -1)
        return y.reshape(x.shape[0], *layer.out_shape)

    return reference


LOCAL2D = [
    (3, 4, (7, 7), 3, 1, 0, True),
    (2, 3, (8, 9), (3, 2), (2, 1), 1, True),
    (1, 2, (6, 7), 2, 2, 0, False),  # floor drops the last column
    (2, 2, (7, 8), 3, 2, "same", True),
]
LOCAL1D = [(3, 3, 7, 3, 2, 0, False), (2, 4, 10, 4, 1, 1, True), (2, 2, 9, 4, 2, "same", True)]


@pytest.mark.parametrize(CONV_ARGS, LOCAL2D, ids=[_id(*c) for c in LOCAL2D])
def test_locally_connected2d(c, k, size, kernel, stride, padding, bias, torch, parity, rng):
    layer = cl.LocallyConnected2D(k, kernel, stride, padding, bias=bias, fit="floor")
    layer = build(layer, (c, *size))
    assert layer.weight.shape == (*layer.win.out, k, c, *layer.win.kernel)
    x = randn(rng, (3, c, *size))
    check_layer(torch, parity, layer, x, local_reference(torch, layer), rng)


@pytest.mark.parametrize(CONV_ARGS, LOCAL1D, ids=[_id(*c) for c in LOCAL1D])
def test_locally_connected1d(c, k, size, kernel, stride, padding, bias, torch, parity, rng):
    layer = cl.LocallyConnected1D(k, kernel, stride, padding, bias=bias, fit="floor")
    layer = build(layer, (c, size))
    assert layer.weight.shape == (layer.out_shape[1], k, c, kernel)
    x = randn(rng, (3, c, size))
    check_layer(torch, parity, layer, x, local_reference(torch, layer), rng)


# ------------------------------------------------------------------------- whole network
def test_sequential_network(torch, parity, rng):
    nn, F = torch.nn, torch.nn.functional
    # (8 − 3 + 2·1)/2 + 1 = 4.5 for the second conv: fit="exact" rightly refuses it, torch floors
    model = cl.Sequential([
        cl.Conv2D(8, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2),
        cl.Conv2D(16, 3, stride=2, padding=1, fit="floor"), cl.LeakyReLU(),
        cl.AvgPool2D(2, fit="floor"), cl.Flatten(), cl.Dense(32), cl.Tanh(), cl.Dense(10),
    ], input_shape=(3, 16, 16))
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.LeakyReLU(0.1), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10),
    )
    index = {"conv2d_1": 0, "conv2d_2": 3, "dense_1": 7, "dense_2": 9}
    params = model.parameters()
    theirs = dict(net.named_parameters())
    assert set(params) == {f"{name}.{key}" for name in index for key in ("weight", "bias")}

    def twin(name: str):
        layer, key = name.split(".")
        return theirs[f"{index[layer]}.{key}"]

    with torch.no_grad():
        for name, p in params.items():
            if name.endswith(".bias"):
                p.data[...] = 0.1 * rng.standard_normal(p.shape)
            twin(name).copy_(torch.from_numpy(p.data))

    x = randn(rng, (4, 3, 16, 16))
    labels = rng.integers(0, 10, 4)
    loss = cl.SoftmaxCrossEntropy()
    scores = model.forward(x, training=True)
    value = loss.forward(scores, labels)
    dx = model.backward(loss.backward())

    x_t = torch.tensor(x, requires_grad=True)
    scores_t = net(x_t)
    loss_t = F.cross_entropy(scores_t, torch.tensor(labels))
    loss_t.backward()

    parity(scores, scores_t, TOL, "scores")
    parity(value, loss_t, TOL, "loss")
    parity(dx, x_t.grad, TOL, "dx")
    for name, p in params.items():
        assert p.grad.dtype == np.float32, name
        parity(p.grad, twin(name).grad, TOL, f"d{name}")
