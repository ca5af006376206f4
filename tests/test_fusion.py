"""BatchNorm + ReLU fused inside a Sequential (Layer.forward_fused): one pass where the two
layers take two forward and two backward, and bit for bit what the two layers compute one after
the other, in training and inference, with and without the compiled loops."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.kernels import compiled
from cnnlab.layers.norm import _BatchNorm


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


def _digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.parameters().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(p.data).tobytes())
    for name, b in sorted(model.buffers().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(b).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", ["fmnist-cnn-bn", "resnet8"])
def test_training_steps_are_bit_identical_with_and_without_fusion(name, monkeypatch):
    """Three SGD steps of a zoo network: the same weights and running statistics, bit for bit,
    with its BatchNorm + ReLU pairs fused and with each layer on its own."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 16, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, (3, 16))
    digests = []
    for fuse in (True, False):
        if not fuse:
            monkeypatch.setattr(_BatchNorm, "forward_fused", lambda self, after, x, training=False:
                                None)
        model, loss = cl.zoo.get(name, seed=0), cl.SoftmaxCrossEntropy()
        opt = cl.optim.SGD(model, lr=0.05, momentum=0.9)
        for xb, yb in zip(x, labels, strict=True):
            loss.forward(model.forward(xb, training=True), yb)
            model.backward(loss.backward(), input_grad=False)
            opt.step()
        scores = model.forward(x[0])
        digests.append((_digest(model), hashlib.sha256(scores.tobytes()).hexdigest()))
    assert digests[0] == digests[1]
