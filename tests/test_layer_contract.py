"""One contract for every layer (STYLE rule 2). Adding a layer adds one line to CASES.

For each: output shape equals output_shape(); dx and every .grad have the right shapes;
float64 central differences agree with backward; backward without a training forward
raises; float32 stays float32 through forward and backward.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from tests.gradcheck import check_layer

CASES = [
    (lambda: cl.Conv2D(4, 3), (3, 7, 7)),
    (lambda: cl.Conv2D(3, (3, 2), stride=(2, 1), padding=1), (2, 7, 6)),
    (lambda: cl.Conv2D(3, 3, stride=2, padding="same"), (2, 8, 8)),
    (lambda: cl.Conv2D(3, 3, stride=2, padding="same"), (2, 7, 7)),
    (lambda: cl.Conv2D(2, (2, 4), stride=2, padding="same"), (1, 5, 8)),
    (lambda: cl.Conv2D(2, 2, bias=False), (1, 5, 5)),
    (lambda: cl.Conv2D(2, 3, stride=2, fit="floor"), (2, 8, 8)),
    # ≥ 4 channels, stride 1: 3×3 with padding 1 on at most 16 channels and filters takes
    # kernels.conv_forward_direct, on ≥ 16 channels and maps ≥ 8×8 kernels.conv_forward_winograd,
    # other "same" padding kernels.conv_forward_same, other padding with output rows ≥ 24
    # kernels.conv_forward_wide (Conv2D._path)
    (lambda: cl.Conv2D(3, 3, padding=1), (4, 3, 24)),
    (lambda: cl.Conv2D(3, 3, padding=1), (17, 8, 9)),
    (lambda: cl.Conv2D(17, 3, padding=1), (4, 3, 5)),
    (lambda: cl.Conv2D(2, 4, padding="same", bias=False), (4, 2, 25)),
    (lambda: cl.Conv2D(3, 3, padding=(1, 2)), (4, 3, 24)),
    (lambda: cl.Conv1D(3, 3, padding="same"), (4, 9)),
    (lambda: cl.Conv2D(3, 3, stride=2, padding=1, fit="floor"), (4, 6, 4)),  # output (H/2, W/2)
    (lambda: cl.Conv1D(4, 3), (3, 9)),
    (lambda: cl.Conv1D(2, 4, stride=2, padding="same"), (2, 9)),
    (lambda: cl.Conv1D(2, 3, stride=2, padding=1, bias=False), (2, 9)),
    # dilation and groups (issue 20): plain im2col with dilated offsets and batched group
    # GEMMs; groups = C takes the depthwise kernels ("same" size: depthwise_same, else padded)
    (lambda: cl.Conv2D(4, 3, dilation=2), (3, 9, 9)),
    (lambda: cl.Conv2D(4, 3, padding="same", dilation=2, groups=2), (4, 7, 8)),
    (lambda: cl.Conv2D(4, 3, padding=1, groups=4), (4, 6, 6)),
    (lambda: cl.Conv2D(4, (3, 2), stride=2, padding="same", dilation=(1, 2), groups=4,
                       bias=False), (4, 8, 8)),
    (lambda: cl.Conv2D(6, 3, stride=2, padding=1, groups=3, fit="floor"), (3, 8, 7)),
    (lambda: cl.Conv2D(4, 3, groups=4), (4, 7, 6)),
    (lambda: cl.Conv1D(4, 3, padding="same", dilation=2, groups=4), (4, 9)),
    (lambda: cl.Conv1D(6, 3, stride=2, dilation=2, groups=2), (4, 11)),
    (lambda: cl.ConvTranspose2D(3, 3, stride=2, padding=1, output_padding=1), (2, 4, 4)),
    (lambda: cl.ConvTranspose2D(2, (2, 3), stride=(2, 1), padding=(0, 1)), (3, 3, 4)),
    (lambda: cl.ConvTranspose2D(4, 4, stride=2, padding=1, bias=False), (2, 3, 3)),
    (lambda: cl.ConvTranspose2D(2, 3), (2, 4, 5)),
    (lambda: cl.LocallyConnected2D(3, 3), (2, 6, 6)),
    (lambda: cl.LocallyConnected2D(2, (2, 3), stride=2, padding=1), (2, 6, 5)),
    (lambda: cl.LocallyConnected1D(2, 3, stride=2), (2, 7)),
    (lambda: cl.LocallyConnected1D(1, 3, stride=2, bias=False), (1, 7)),
    (lambda: cl.Dense(5), (7,)),
    (lambda: cl.Dense(3, bias=False), (4,)),
    (lambda: cl.Flatten(), (2, 3, 4)),
    (lambda: cl.MaxPool2D(2), (3, 6, 6)),  # 2×2/2 on even sizes: the fast path
    (lambda: cl.MaxPool2D(3, stride=2, padding=1), (2, 7, 7)),
    (lambda: cl.MaxPool2D((2, 3)), (2, 4, 6)),
    (lambda: cl.MaxPool2D(3, 2, fit="floor"), (2, 8, 8)),
    (lambda: cl.MaxPool2D(2, padding="same"), (2, 5, 5)),
    (lambda: cl.AvgPool2D(2), (3, 6, 6)),
    (lambda: cl.AvgPool2D(3, stride=2, padding=1), (2, 7, 7)),
    (lambda: cl.AvgPool2D((3, 2), stride=1), (2, 5, 4)),
    (lambda: cl.MaxPool1D(2), (3, 8)),
    (lambda: cl.MaxPool1D(3, stride=2, padding=1), (2, 9)),
    (lambda: cl.AvgPool1D(3, stride=2, padding=1), (2, 9)),
    (lambda: cl.GlobalAvgPool2D(), (3, 4, 5)),
    (lambda: cl.Sigmoid(), (3, 4, 4)),
    (lambda: cl.Tanh(), (3, 4, 4)),
    (lambda: cl.ReLU(), (3, 4, 4)),
    (lambda: cl.LeakyReLU(), (3, 4, 4)),
    (lambda: cl.LeakyReLU(0.3), (6,)),
    (lambda: cl.PReLU(), (3, 4, 4)),
    (lambda: cl.PReLU(), (5,)),
    (lambda: cl.PReLU(), (2, 6)),
    (lambda: cl.ELU(), (3, 4, 4)),
    (lambda: cl.ELU(0.5), (6,)),
    (lambda: cl.Swish(), (3, 4, 4)),
    (lambda: cl.Swish(2.0), (6,)),
    (lambda: cl.ReLU6(), (3, 4, 4)),
    (lambda: cl.ReLU6(), (6,)),
    (lambda: cl.SiLU(), (3, 4, 4)),
    (lambda: cl.Hardswish(), (3, 4, 4)),
    (lambda: cl.Hardswish(), (6,)),
    (lambda: cl.GELU(), (3, 4, 4)),
    (lambda: cl.GELU(), (6,)),
    (lambda: cl.GELU("tanh"), (3, 4, 4)),
    (lambda: cl.Maxout(2), (4, 3, 3)),
    (lambda: cl.Maxout(3), (6,)),
    (lambda: cl.BatchNorm2D(), (3, 4, 5)),
    (lambda: cl.BatchNorm1D(), (5,)),
    (lambda: cl.BatchNorm1D(), (3, 6)),
    (lambda: cl.Sequential([cl.Conv2D(3, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2),
                            cl.Flatten(), cl.Dense(4), cl.Tanh(), cl.Dense(3)]), (2, 6, 6)),
    (lambda: cl.LocalResponseNorm(), (7, 3, 3)),
    (lambda: cl.LocalResponseNorm(4, alpha=0.3, beta=0.6, k=1.5), (5, 2, 3)),
    (lambda: cl.LocalResponseNorm(3, alpha=0.5), (4, 5)),
    (lambda: cl.Residual([cl.Conv2D(3, 3, padding=1), cl.BatchNorm2D(), cl.ReLU(),
                          cl.Conv2D(3, 3, padding=1)]), (3, 5, 5)),
    (lambda: cl.Residual([cl.Conv2D(4, 3, stride=2, padding=1, fit="floor"), cl.Tanh()],
                         shortcut=[cl.Conv2D(4, 1, stride=2, fit="floor", bias=False),
                                   cl.BatchNorm2D()]), (2, 5, 5)),
    (lambda: cl.Concat([[cl.Conv2D(2, 1)], [cl.Conv2D(2, 1), cl.Tanh(), cl.Conv2D(3, 3, padding=1)],
                        [cl.MaxPool2D(3, stride=1, padding=1), cl.Conv2D(1, 1)]]), (3, 4, 4)),
    (lambda: cl.Concat([cl.Dense(3), [cl.Dense(2), cl.Tanh()]]), (5,)),
    (lambda: cl.SqueezeExcite(2), (4, 3, 3)),
    (lambda: cl.SqueezeExcite(16), (6, 2, 3)),
    (lambda: cl.SqueezeExcite(2), (4, 5)),
    # issue 20: pooling to a size, the padding left out of the mean, per-sample normalisation
    (lambda: cl.GlobalMaxPool2D(), (3, 4, 5)),
    (lambda: cl.AdaptiveAvgPool2D(3), (2, 7, 7)),  # overlapping windows: the gathers
    (lambda: cl.AdaptiveAvgPool2D((2, 3)), (2, 5, 6)),
    (lambda: cl.AdaptiveAvgPool2D((2, None)), (2, 4, 3)),  # every window the same: the fast path
    (lambda: cl.AdaptiveAvgPool2D(4), (1, 3, 2)),  # more outputs than inputs
    (lambda: cl.AvgPool2D(3, stride=2, padding=1, count_include_pad=False), (2, 7, 7)),
    (lambda: cl.AvgPool2D(2, stride=1, padding="same", count_include_pad=False), (2, 5, 4)),
    (lambda: cl.AvgPool1D(3, stride=2, padding=1, count_include_pad=False), (2, 9)),
    (lambda: cl.LayerNorm(), (3, 4, 5)),
    (lambda: cl.LayerNorm(), (6,)),
    (lambda: cl.LayerNorm(1e-6), (4, 7)),
    (lambda: cl.GroupNorm(2), (4, 3, 3)),
    (lambda: cl.GroupNorm(1), (3, 4, 4)),
    (lambda: cl.GroupNorm(3), (6,)),
    (lambda: cl.GroupNorm(4), (4, 5)),  # one channel per group: instance normalisation
    (lambda: cl.LayerScale(0.5), (3, 4, 4)),
    (lambda: cl.LayerScale(), (5,)),
    (lambda: cl.DropPath(0.0), (3, 4, 4)),  # rate > 0 redraws: test_norms_modern fixes the mask
    (lambda: cl.Residual([cl.Conv2D(3, 3, padding=1), cl.LayerNorm(), cl.Conv2D(6, 1), cl.GELU(),
                          cl.Conv2D(3, 1), cl.LayerScale(0.5), cl.DropPath(0.0)]), (3, 4, 4)),
]
IDS = [f"{factory().kind}-{'x'.join(map(str, shape))}-{i}" for i, (factory, shape) in enumerate(CASES)]


def make(factory, shape, dtype, seed=0):
    return factory().build(shape, rng=np.random.default_rng(seed), dtype=dtype)


def batch(rng, shape, dtype, n=2):
    # values away from 0 by a margin keep finite differences off the kinks of ReLU/max
    x = rng.standard_normal((n, *shape))
    x += np.sign(x) * 0.05
    return x.astype(dtype)


@pytest.mark.parametrize("factory, shape", CASES, ids=IDS)
def test_shapes_match_output_shape(factory, shape, rng):
    layer = make(factory, shape, np.float64)
    x = batch(rng, shape, np.float64, n=3)
    y = layer.forward(x, training=True)
    assert y.shape == (3, *layer.output_shape(shape))
    dx = layer.backward(rng.standard_normal(y.shape))
    assert dx.shape == x.shape
    for name, p in layer.parameters().items():
        assert p.grad is not None and p.grad.shape == p.data.shape, name


@pytest.mark.parametrize("factory, shape", CASES, ids=IDS)
def test_gradients_match_central_differences(factory, shape, rng):
    layer = make(factory, shape, np.float64)
    # nonzero biases and PReLU slopes, so their gradients are exercised away from the init
    for p in layer.parameters().values():
        p.data += 0.1 * rng.standard_normal(p.data.shape)
    check_layer(layer, batch(rng, shape, np.float64), rng)


@pytest.mark.parametrize("factory, shape", CASES, ids=IDS)
def test_backward_without_training_forward_raises(factory, shape, rng):
    layer = make(factory, shape, np.float32)
    x = batch(rng, shape, np.float32)
    with pytest.raises(RuntimeError, match="training forward"):
        layer.backward(np.ones((2, *layer.output_shape(shape)), np.float32))
    y = layer.forward(x)  # an inference forward keeps no cache either
    with pytest.raises(RuntimeError, match="training forward"):
        layer.backward(np.ones_like(y))


@pytest.mark.parametrize("factory, shape", CASES, ids=IDS)
def test_float32_stays_float32(factory, shape, rng):
    layer = make(factory, shape, np.float32)
    x = batch(rng, shape, np.float32)
    y = layer.forward(x, training=True)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    for name, p in layer.parameters().items():
        assert p.data.dtype == np.float32 and p.grad.dtype == np.float32, name


@pytest.mark.parametrize("factory, shape", CASES, ids=IDS)
def test_forward_does_not_modify_its_input(factory, shape, rng):
    layer = make(factory, shape, np.float64)
    x = batch(rng, shape, np.float64)
    x_before = x.copy()
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape)
    dy_before = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dy, dy_before)


@pytest.mark.parametrize("factory, shape", CASES, ids=IDS)
def test_same_seed_builds_the_same_weights(factory, shape):
    a, b = make(factory, shape, np.float32, seed=7), make(factory, shape, np.float32, seed=7)
    for (name, p), q in zip(a.parameters().items(), b.parameters().values(), strict=True):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
