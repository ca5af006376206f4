"""Residual + ReLU fused inside a Sequential (Residual.forward_fused): max(0, F(x) + s(x)) in one
pass, bit for bit what the block and the ReLU compute one after the other, in training
(outputs, dx, every gradient) and inference, with identity and projection shortcuts."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl


def _block(shortcut: bool, dtype, after=None) -> cl.Sequential:
    """A ResNet block and the layer after it, on 32 samples of 16 × 28 × 28: a batch large
    enough that the threads split the add (runtime.threads.elementwise)."""
    branch = [cl.Conv2D(16, 3, padding=1, bias=False), cl.BatchNorm2D(), cl.ReLU(),
              cl.Conv2D(16, 3, padding=1, bias=False), cl.BatchNorm2D()]
    projection = [cl.Conv2D(16, 1, bias=False), cl.BatchNorm2D()] if shortcut else None
    return cl.Sequential([cl.Residual(branch, projection), after or cl.ReLU()],
                         input_shape=(16, 28, 28), dtype=dtype, seed=3)


def _run(model: cl.Sequential, x, dy, training: bool, fused: bool):
    block, relu = model.layers
    if fused:
        y = model.forward(x, training=training)
        dx = model.backward(dy) if training else None
    else:
        y = relu.forward(block.forward(x, training=training), training=training)
        dx = block.backward(relu.backward(dy)) if training else None
    grads = [p.grad.copy() for p in model.parameters().values()] if training else []
    return [y, *([dx] if training else []), *grads]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("shortcut", [False, True], ids=["identity", "projection"])
def test_residual_relu_fused_equals_the_two_layers(dtype, training, shortcut, rng):
    x = rng.standard_normal((32, 16, 28, 28)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    apart = _run(_block(shortcut, dtype), x, dy, training, fused=False)
    model = _block(shortcut, dtype)
    assert model.layers[0].forward_fused(model.layers[1], x[:2], training=False) is not None
    fused = _run(model, x, dy, training, fused=True)
    assert len(fused) == len(apart) == (2 + (9 if shortcut else 6) if training else 1)
    for a, b in zip(fused, apart, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (fused[0] >= 0).all() and (fused[0] == 0).any()


@pytest.mark.parametrize("after", [cl.ReLU6(), cl.LeakyReLU(), cl.Dropout(0.5), cl.Flatten()])
def test_a_residual_fuses_with_relu_only(after, rng):
    model = _block(False, np.float64, after)
    x = rng.standard_normal((2, 16, 28, 28))
    assert model.layers[0].forward_fused(after, x, training=True) is None
    assert model.layers[0]._cache is None  # declined before running anything


def test_the_fused_relu_keeps_y_for_its_backward_and_a_second_backward_fails(rng):
    model = _block(True, np.float64)
    relu = model.layers[1]
    y = model.forward(rng.standard_normal((2, 16, 28, 28)), training=True)
    assert relu._cache is y
    model.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="needs the cache of a training forward"):
        model.backward(np.ones_like(y))
