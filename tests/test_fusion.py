"""Layers fused inside a Sequential (Layer.forward_fused), bit for bit what the two layers compute
one after the other, in training and inference, with and without the compiled loops:
BatchNorm + ReLU in one pass where the two layers take two forward and two backward, and
ReLU + 2×2 MaxPool2D with the pooling first, rectifying a quarter of the values; and in
inference, a Conv2D applying the BatchNorm2D and ReLU after it to each chunk of its output
(Conv2D.forward_mapped)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.kernels import compiled
from cnnlab.layers.norm import _BatchNorm
from tests import steps


def _pair(c: int, dtype, seed: int = 0) -> cl.Sequential:
    """BatchNorm2D → ReLU with γ and β that put whole channels on both sides of 0: channel 0 has
    γ = β = 0, so its output is exactly ±0 and its mask all False."""
    model = cl.Sequential([cl.BatchNorm2D(), cl.ReLU()], input_shape=(c, 5, 4), dtype=dtype,
                          seed=seed)
    bn = model.layers[0]
    bn.weight.data[...] = np.linspace(0, 2, c) * np.resize([1, -1], c)
    bn.bias.data[...] = np.linspace(0, -0.5, c)
    return model


def _unfused(model: cl.Sequential, x, dy, training: bool):
    """The two layers one after the other, each with its own forward and backward."""
    bn, relu = model.layers
    y = relu.forward(bn.forward(x, training=training), training=training)
    if not training:
        return (y,)
    dx = bn.backward(relu.backward(dy))
    return y, dx, bn.weight.grad, bn.bias.grad, bn.running_mean.copy(), bn.running_var.copy()


def _fused(model: cl.Sequential, x, dy, training: bool):
    y = model.forward(x, training=training)
    if not training:
        return (y,)
    dx = model.backward(dy)
    bn = model.layers[0]
    return y, dx, bn.weight.grad, bn.bias.grad, bn.running_mean.copy(), bn.running_var.copy()


def _inputs(rng, dtype, c: int = 6):
    x = (rng.standard_normal((7, c, 5, 4)) * 3 + 1).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]  # where the mask is 0: NaN through dy·0
    dy[1, 1, 2, 1] = np.inf
    return x, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("compiled_on", [True, False], ids=["compiled", "numpy"])
def test_batchnorm_relu_fused_equals_the_two_layers(dtype, training, compiled_on, rng,
                                                    n_threads, monkeypatch):
    monkeypatch.setattr(compiled, "HAVE_NUMBA", compiled_on)
    x, dy = _inputs(rng, dtype)
    with np.errstate(invalid="ignore"):  # ±inf·0 in ReLU's backward
        expected = _unfused(_pair(6, dtype), x, dy, training)
        model = _pair(6, dtype)
        ours = _fused(model, x, dy, training)
    names = ("y", "dx", "dγ", "dβ", "running_mean", "running_var")[: len(expected)]
    for name, a, b in zip(names, ours, expected, strict=True):
        assert a.dtype == b.dtype == dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert (ours[0][:, 0] == 0).all()  # γ = β = 0: every output ±0, rectified to 0
    if training:
        assert np.isnan(ours[1][:, 0]).all()  # NaN and ±inf in dy where the mask is 0
    assert model.layers[0].forward_fused(model.layers[1], x, training=training) is not None


def test_the_fused_relu_hands_dy_on_and_a_second_backward_still_fails(rng):
    model = _pair(4, np.float32)
    x, dy = _inputs(rng, np.float32, 4)
    model.forward(x, training=True)
    bn, relu = model.layers
    assert relu.backward(dy) is dy
    with pytest.raises(RuntimeError, match="needs the cache of a training forward"):
        relu.backward(dy)
    bn.backward(dy)


@pytest.mark.parametrize("after", [cl.ReLU6(), cl.LeakyReLU(), cl.Dropout(0.5), cl.Tanh()])
def test_batchnorm_fuses_with_relu_only(after, rng):
    model = cl.Sequential([cl.BatchNorm2D(), after], input_shape=(3, 4, 4))
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    assert model.layers[0].forward_fused(model.layers[1], x, training=True) is None
    assert model.layers[0].forward_fused(model.layers[1], x) is None


def test_frozen_or_synchronized_batchnorm_does_not_fuse_in_training(rng):
    model = _pair(4, np.float32)
    bn, relu = model.layers
    x, dy = _inputs(rng, np.float32, 4)
    model.freeze()
    assert bn.forward_fused(relu, x, training=True) is None
    assert bn.forward_fused(relu, x) is not None  # inference: the same affine map, fused
    model.unfreeze()
    bn.reduce = lambda values: values  # one process's sums, as a runner's reduction hook
    assert bn.forward_fused(relu, x, training=True) is None


def test_a_wrapped_forward_is_not_skipped(rng):
    """cl.features wraps a layer's forward to record its output: a ReLU inside a residual
    branch must still run its own forward, so nothing fuses with it."""
    model = cl.zoo.get("resnet8", seed=0)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    maps = cl.features(model, x, layer="residual_1.branch.relu_1")
    bn_out = {}
    branch = model.layers[3].branch
    bn = branch.layers[1]
    forward = bn.forward

    def recording(inputs, *, training=False):
        bn_out["y"] = forward(inputs, training=training)
        return bn_out["y"]

    bn.forward = recording
    try:
        model.forward(x)
    finally:
        del bn.forward
    np.testing.assert_array_equal(maps, np.maximum(bn_out["y"], 0).reshape(maps.shape))


def _relu_pool(dtype, pool=None) -> cl.Sequential:
    return cl.Sequential([cl.ReLU(), pool or cl.MaxPool2D(2)], input_shape=(5, 6, 8), dtype=dtype)


def _pool_inputs(rng, dtype, channels_first: bool):
    """Values on a coarse grid (ties within windows), windows wholly ≤ 0, exact ±0, NaN and ±inf;
    in (C, N, H, W) memory, as a convolution hands its output on, when channels_first."""
    x = np.round(rng.standard_normal((4, 5, 6, 8)) * 2).astype(dtype)
    x[0, 0, :2, :2] = [[-1, -3], [-2, -0.0]]  # maximum -0.0, rectified to +0
    x[0, 1, :2, :2] = [[-0.0, 0.0], [-1, 0.0]]
    x[1, 0, :2, :2] = [[-5, np.nan], [-1, -2]]
    x[1, 1, :2, :2] = [[2, np.inf], [-np.inf, 1]]
    x[2, 2, :2, :4] = -np.abs(x[2, 2, :2, :4]) - 1
    if channels_first:
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    dy = rng.standard_normal((4, 5, 3, 4)).astype(dtype)
    dy[0, 0, 0, 0], dy[2, 2, 0, 0], dy[2, 2, 0, 1] = np.nan, np.inf, -np.inf  # windows ≤ 0
    dy[1, 1, 0, 0] = -np.inf
    dy[3] *= -1
    return x, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("compiled_on", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("channels_first", [False, True], ids=["NCHW", "CNHW"])
def test_relu_maxpool_fused_equals_the_two_layers(dtype, training, compiled_on, channels_first,
                                                  rng, n_threads, monkeypatch):
    monkeypatch.setattr(compiled, "HAVE_NUMBA", compiled_on)
    x, dy = _pool_inputs(rng, dtype, channels_first)
    relu, pool = _relu_pool(dtype).layers
    with np.errstate(invalid="ignore"):  # ±inf·0
        expected = [pool.forward(relu.forward(x, training=training), training=training)]
        if training:
            expected.append(relu.backward(pool.backward(dy)))
        model = _relu_pool(dtype)
        ours = [model.forward(x, training=training)]
        if training:
            ours.append(model.backward(dy))
    for name, a, b in zip(("y", "dx")[: len(ours)], ours, expected, strict=True):
        assert a.dtype == b.dtype == dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b), err_msg=name)
    assert ours[0][0, 0, 0, 0] == 0 and not np.signbit(ours[0][0, 0, 0, 0])
    assert np.isnan(ours[0][1, 0, 0, 0])
    if training:
        assert np.isnan(ours[1][0, 0, :2, :2]).all() and np.isnan(ours[1][2, 2, :2, :4]).all()
    assert model.layers[0].forward_fused(model.layers[1], x, training=training) is not None


@pytest.mark.parametrize("pool", [cl.MaxPool2D(3, 1, padding=1), cl.MaxPool2D(2, fit="floor"),
                                  cl.AvgPool2D(2, fit="floor")], ids=["3x3", "floor", "avg"])
def test_relu_fuses_with_2x2_max_pooling_only(pool, rng):
    model = cl.Sequential([cl.ReLU(), pool], input_shape=(2, 5, 5))
    x = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
    assert model.layers[0].forward_fused(model.layers[1], x, training=True) is None
    assert model.layers[0].forward_fused(model.layers[1], x) is None
    y = model.forward(x, training=True)
    np.testing.assert_array_equal(y, pool.forward(np.maximum(x, 0)))


def test_the_relu_before_a_pool_hands_dy_on(rng):
    model = _relu_pool(np.float32)
    x, dy = _pool_inputs(rng, np.float32, False)
    model.forward(x, training=True)
    relu, pool = model.layers
    dx = pool.backward(dy)
    assert relu.backward(dx) is dx
    with pytest.raises(RuntimeError, match="needs the cache of a training forward"):
        relu.backward(dx)


def _digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.parameters().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(p.data).tobytes())
    for name, b in sorted(model.buffers().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(b).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", ["fmnist-cnn", "fmnist-cnn-bn", "resnet8"])
def test_training_steps_are_bit_identical_with_and_without_fusion(name, monkeypatch):
    """Three SGD steps of a zoo network: the same weights and running statistics, bit for bit,
    with its BatchNorm + ReLU, ReLU + MaxPool2D and Residual + ReLU pairs fused and with each
    layer on its own; and the same inference scores with the convolutions applying the maps
    after them."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 16, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, (3, 16))
    digests = []
    for fuse in (True, False):
        if not fuse:
            for kind in (_BatchNorm, cl.ReLU, cl.Residual):
                monkeypatch.setattr(kind, "forward_fused", lambda self, after, x, training=False:
                                    None)
                monkeypatch.setattr(kind, "inference_map", lambda self, after: None)
        model = steps.trained(name, x, labels)
        scores = model.forward(x[0])
        digests.append((_digest(model), hashlib.sha256(scores.tobytes()).hexdigest()))
    assert digests[0] == digests[1]


# ------------------------------------------------ inference: Conv2D applies the maps after it
_CONVS = {  # (input shape, Conv2D arguments) that take each path (asserted below)
    "direct": ((3, 9, 10), dict(filters=8, kernel_size=3, padding=1)),
    "gather": ((16, 7, 6), dict(filters=32, kernel_size=3, padding=1)),  # float32 only
    "winograd": ((16, 8, 8), dict(filters=20, kernel_size=3, padding=1)),  # 20: no vector width
    "same": ((8, 10, 10), dict(filters=6, kernel_size=3, stride=2, padding=1, fit="floor")),
    "wide": ((4, 26, 26), dict(filters=6, kernel_size=3)),
    "plain": ((2, 7, 9), dict(filters=5, kernel_size=(2, 3), padding=1)),
    "depthwise": ((6, 8, 8), dict(filters=6, kernel_size=3, padding=1, groups=6)),
}


def _conv_chain(path: str, tail: str, dtype) -> cl.Sequential:
    """A Conv2D taking `path`, then BatchNorm2D (+ ReLU) with running statistics and γ, β that
    put whole channels on both sides of 0 (γ = β = 0 on channel 0: its output exactly ±0)."""
    shape, args = _CONVS[path]
    after = {"bn": [cl.BatchNorm2D()], "bn-relu": [cl.BatchNorm2D(), cl.ReLU()],
             "relu": [cl.ReLU()]}[tail]
    model = cl.Sequential([cl.Conv2D(**args), *after], input_shape=shape, dtype=dtype, seed=3)
    assert model.layers[0]._path() == path
    rng = np.random.default_rng(5)
    for bn in model.layers[1:2]:
        if isinstance(bn, cl.BatchNorm2D):
            c = bn.weight.data.size
            bn.weight.data[...] = np.linspace(0, 2, c) * np.resize([1, -1], c)
            bn.bias.data[...] = np.linspace(0, -0.5, c)
            bn.running_mean[...] = rng.standard_normal(c)
            bn.running_var[...] = rng.uniform(0.2, 3, c)
    return model


@pytest.mark.parametrize("path, dtype", [(path, dtype) for path in _CONVS
                                         for dtype in (np.float32, np.float64)
                                         if path != "gather" or dtype == np.float32])
@pytest.mark.parametrize("tail", ["bn", "bn-relu", "relu"])
def test_conv_applying_the_maps_after_it_equals_the_layers(path, tail, dtype, n_threads,
                                                           monkeypatch):
    """In inference a Sequential hands the maps of the BatchNorm2D and ReLU after a Conv2D to it
    (Conv2D.forward_mapped): each conv path applies them chunk by chunk, bit for bit what the
    layers compute one after the other, NaN and ±inf included."""
    model = _conv_chain(path, tail, dtype)
    shape = model.layers[0].input_shape
    x = np.random.default_rng(7).standard_normal((9, *shape)).astype(dtype) * 2
    x[0, 0, 1, :3] = [np.nan, np.inf, -np.inf]
    expected = x
    with np.errstate(invalid="ignore"):  # ±inf·0 on channel 0 (γ = 0)
        for layer in model.layers:
            expected = layer.forward(expected)
        calls = []
        mapped = cl.Conv2D.forward_mapped
        monkeypatch.setattr(cl.Conv2D, "forward_mapped",
                            lambda self, maps, x: calls.append(len(maps)) or mapped(self, maps, x))
        y = model.forward(x)
    assert calls == [len(model.layers) - 1]
    assert y.shape == expected.shape and y.dtype == expected.dtype
    np.testing.assert_array_equal(y, expected)
    assert np.array_equal(np.signbit(y), np.signbit(expected), equal_nan=True)
    # chunk by chunk: one block per chunk (as many as the threads here), samples in order
    blocks = []
    with np.errstate(invalid="ignore"):
        model.layers[0].forward_mapped([lambda block: blocks.append(block.shape[1])], x)
    assert sum(blocks) == len(x)
    assert len(blocks) == (1 if path == "depthwise" else n_threads)


def test_the_maps_stop_at_a_layer_without_one_or_a_wrapped_forward():
    """The run of maps a Conv2D takes: BatchNorm2D and ReLU, up to the first layer without one
    (Dropout, another Conv2D), never past a wrapped forward, and no ReLU before a MaxPool2D (which
    rectifies a quarter of the values itself); nothing when the first layer is not a Conv2D."""
    from cnnlab.layers.containers import _maps_after

    def count(layers):
        cl.Sequential(layers, input_shape=(4, 8, 8))
        return len(_maps_after(layers, 0))

    conv = lambda: cl.Conv2D(4, 3, padding=1)  # noqa: E731
    assert count([conv(), cl.BatchNorm2D(), cl.ReLU(), conv(), cl.BatchNorm2D()]) == 2
    assert count([conv(), cl.BatchNorm2D(), cl.Dropout(0.5), cl.ReLU()]) == 1
    assert count([conv(), cl.ReLU(), cl.MaxPool2D(2)]) == 0
    assert count([conv(), cl.BatchNorm2D(), cl.ReLU(), cl.MaxPool2D(2)]) == 1
    assert count([conv(), cl.ReLU()]) == 1
    assert count([cl.BatchNorm2D(), cl.ReLU()]) == 0
    layers = [conv(), cl.BatchNorm2D(), cl.ReLU()]
    layers[2].forward = layers[2].forward  # a recording hook wraps it on the instance
    assert count(layers) == 1
    layers[0].forward = layers[0].forward
    assert count(layers) == 0


def test_training_forward_takes_no_maps(rng, monkeypatch):
    """A training forward runs each layer's own (BatchNorm's batch statistics): no maps."""
    model = _conv_chain("direct", "bn-relu", np.float32)

    def refuse(self, maps, x):
        raise AssertionError("a training forward took the inference maps")

    monkeypatch.setattr(cl.Conv2D, "forward_mapped", refuse)
    x = rng.standard_normal((4, 3, 9, 10)).astype(np.float32)
    bn = model.layers[1]
    before = bn.running_mean.copy()
    model.forward(x, training=True)
    assert not np.array_equal(bn.running_mean, before)  # BatchNorm took the batch's statistics
    with pytest.raises(AssertionError, match="took the inference maps"):  # the spy works
        model.forward(x)


def test_every_conv2d_subclass_with_its_own_forward_takes_no_maps():
    """forward_mapped runs Conv2D's own forward: a subclass that replaces forward (the locally
    connected layers) must set it to None, or the maps would run Conv2D's kernels on its
    weights."""
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for sub in subclasses(cl.Conv2D):
        if sub.forward is not cl.Conv2D.forward:
            assert sub.forward_mapped is None, sub.__name__
    assert cl.LocallyConnected1D.forward_mapped is None
