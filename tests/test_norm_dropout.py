"""BatchNorm2D / BatchNorm1D against PyTorch and finite differences; Dropout's statistics and mask.

BatchNorm parity (float32): forward, dx, dγ, dβ at each of 3 training steps, the running
statistics after each step, then an inference forward with those statistics.
Dropout has no PyTorch oracle (another RNG): its mask is checked by its statistics and by the
exact identities y = x·mask/(1 − p), dx = dy·mask/(1 − p).
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from tests.gradcheck import assert_close, check_layer, numeric_grad

TOL = 1e-5

# (our class, torch.nn class name, per-sample shape, batch size, momentum, eps)
BN_CASES = [
    (cl.BatchNorm2D, "BatchNorm2d", (3, 5, 4), 4, 0.1, 1e-5),
    (cl.BatchNorm2D, "BatchNorm2d", (2, 3, 3), 2, 0.3, 1e-3),
    (cl.BatchNorm1D, "BatchNorm1d", (6,), 8, 0.1, 1e-5),
    (cl.BatchNorm1D, "BatchNorm1d", (6,), 2, 0.5, 1e-5),
    (cl.BatchNorm1D, "BatchNorm1d", (3, 7), 4, 0.1, 1e-5),
    (cl.BatchNorm1D, "BatchNorm1d", (4, 5), 1, 0.2, 1e-4),  # one sample, 5 positions: allowed
]
BN_IDS = [f"{c.__name__}-{'x'.join(map(str, s))}-n{n}-m{m}" for c, _, s, n, m, _ in BN_CASES]


def build_bn(cls, shape, dtype, rng, **kwargs):
    """A built BatchNorm with γ, β away from their init, so their role shows in every check."""
    layer = cls(**kwargs).build(shape, dtype=dtype)
    layer.weight.data[...] = 1 + 0.5 * rng.standard_normal(shape[0])
    layer.bias.data[...] = 0.5 * rng.standard_normal(shape[0])
    return layer


def shifted(rng, shape, dtype):
    """Inputs with a mean and scale per channel far from 0 and 1, as real activations have."""
    per_channel = (1, -1, *([1] * (len(shape) - 2)))
    mean = rng.uniform(-3, 3, shape[1]).reshape(per_channel)
    scale = rng.uniform(0.5, 4, shape[1]).reshape(per_channel)
    return (mean + scale * rng.standard_normal(shape)).astype(dtype)


# ------------------------------------------------------------------------------- BatchNorm
@pytest.mark.parametrize("cls, torch_name, shape, n, momentum, eps", BN_CASES, ids=BN_IDS)
def test_batchnorm_matches_pytorch(cls, torch_name, shape, n, momentum, eps, torch, parity, rng):
    ours = build_bn(cls, shape, np.float32, rng, momentum=momentum, eps=eps)
    theirs = getattr(torch.nn, torch_name)(shape[0], momentum=momentum, eps=eps)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data))
        theirs.bias.copy_(torch.from_numpy(ours.bias.data))

    theirs.train()
    for step in range(3):
        x = shifted(rng, (n, *shape), np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        x_t = torch.from_numpy(x.copy()).requires_grad_()
        theirs.zero_grad()
        y_t = theirs(x_t)
        y_t.backward(torch.from_numpy(dy))

        y = ours.forward(x, training=True)
        dx = ours.backward(dy)
        parity(y, y_t, TOL, f"step {step} y")
        parity(dx, x_t.grad, TOL, f"step {step} dx")
        parity(ours.weight.grad, theirs.weight.grad, TOL, f"step {step} dγ")
        parity(ours.bias.grad, theirs.bias.grad, TOL, f"step {step} dβ")
        parity(ours.running_mean, theirs.running_mean, TOL, f"step {step} running_mean")
        parity(ours.running_var, theirs.running_var, TOL, f"step {step} running_var")

    theirs.eval()
    x = shifted(rng, (n, *shape), np.float32)
    mean_before, var_before = ours.running_mean.copy(), ours.running_var.copy()
    with torch.no_grad():
        y_t = theirs(torch.from_numpy(x.copy()))
    y = ours.forward(x, training=False)
    assert y.dtype == np.float32
    parity(y, y_t, TOL, "eval y")
    np.testing.assert_array_equal(ours.running_mean, mean_before)
    np.testing.assert_array_equal(ours.running_var, var_before)


@pytest.mark.parametrize(
    "cls, shape, n", [(cl.BatchNorm2D, (3, 4, 3), 3), (cl.BatchNorm1D, (4,), 5), (cl.BatchNorm1D, (2, 5), 3)]
)
def test_batchnorm_gradients_match_central_differences(cls, shape, n, rng):
    layer = build_bn(cls, shape, np.float64, rng, momentum=0.1, eps=1e-3)
    check_layer(layer, shifted(rng, (n, *shape), np.float64), rng)


def test_batchnorm_training_normalises_each_channel(rng):
    layer = cl.BatchNorm2D().build((3, 4, 4), dtype=np.float64)
    y = layer.forward(shifted(rng, (5, 3, 4, 4), np.float64), training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-3)  # σ² / (σ² + ε)


def test_batchnorm_running_statistics_by_hand():
    layer = cl.BatchNorm1D(momentum=0.25).build((2,))
    x = np.array([[1, 10], [3, 10], [5, 16]], np.float32)  # means 3, 12; unbiased variances 4, 12
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.running_mean, [0.75, 3.0])
    np.testing.assert_allclose(layer.running_var, [0.75 + 0.25 * 4, 0.75 + 0.25 * 12])
    assert layer.running_mean.dtype == layer.running_var.dtype == np.float32


def test_batchnorm_buffers_are_the_live_arrays(rng):
    layer = cl.BatchNorm2D().build((2, 3, 3))
    buffers = layer.buffers()
    assert set(buffers) == {"running_mean", "running_var"}
    layer.forward(shifted(rng, (4, 2, 3, 3), np.float32), training=True)
    assert buffers["running_mean"] is layer.running_mean and buffers["running_var"] is layer.running_var
    assert np.all(buffers["running_mean"] != 0)
    # a loader writes into them in place; inference then uses what it wrote
    buffers["running_mean"][...] = [1, -1]
    buffers["running_var"][...] = [4, 0.25]
    x = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    expected = (x - np.array([1, -1]).reshape(1, 2, 1, 1)) / np.sqrt(
        np.array([4, 0.25]).reshape(1, 2, 1, 1) + 1e-5
    )
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-5)
    assert layer.parameters().keys() == {"weight", "bias"} and layer.count_params() == 4


@pytest.mark.parametrize(
    "cls, x_shape",
    [(cl.BatchNorm1D, (1, 4)), (cl.BatchNorm2D, (1, 3, 1, 1)), (cl.BatchNorm1D, (1, 3, 1))],
)
def test_batchnorm_of_one_value_per_channel_raises_in_training(cls, x_shape):
    layer = cls().build(x_shape[1:])
    x = np.ones(x_shape, np.float32)
    with pytest.raises(ValueError, match=r"more than 1 value per channel .* Received: x\.shape=\(1, "):
        layer.forward(x, training=True)
    assert layer.forward(x).shape == x_shape  # inference of one sample is fine
    np.testing.assert_array_equal(layer.running_mean, 0)  # the failed forward changed nothing


@pytest.mark.parametrize(
    "cls, shape, match",
    [
        (cl.BatchNorm2D, (5,), r"expects per-sample input \(C, H, W\)\. Received: input_shape=\(5,\)\. "
                               r"Use BatchNorm1D"),
        (cl.BatchNorm1D, (3, 4, 5), r"expects per-sample input \(C,\) or \(C, L\)\. .* Use BatchNorm2D"),
    ],
)
def test_batchnorm_rejects_other_ranks(cls, shape, match):
    with pytest.raises(cl.ShapeError, match=match):
        cls().build(shape)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"momentum": 1.5}, r"momentum must be in \[0, 1\]\. Received: momentum=1\.5"),
     ({"momentum": -0.1}, r"momentum must be in \[0, 1\]"),
     ({"eps": 0}, r"eps must be > 0\. Received: eps=0")],
)
def test_batchnorm_validates_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cl.BatchNorm2D(**kwargs)


def test_batchnorm_explains_its_arithmetic():
    assert cl.BatchNorm2D().arithmetic((32, 8, 8)) == (
        "normalise per channel over N·H·W; params = 2·C = 64 (γ, β), buffers 2·C"
    )
    assert "over N·L" in cl.BatchNorm1D().arithmetic((3, 10))
    assert cl.BatchNorm1D(momentum=0.01).config() == {"momentum": 0.01, "eps": 1e-5}


# --------------------------------------------------------------------------------- Dropout
def dropout(rate, shape, seed=0, dtype=np.float32):
    return cl.Dropout(rate).build(shape, rng=np.random.default_rng(seed), dtype=dtype)


def test_dropout_inference_is_the_identity(rng):
    layer = dropout(0.5, (3, 4, 4))
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    assert layer.forward(x) is x
    assert layer.forward(x, training=False) is x


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_drops_rate_and_preserves_the_mean(rate):
    n = 1_000_000
    layer = dropout(rate, (1000,))
    x = np.full((n // 1000, 1000), 2.0, np.float32)
    y = layer.forward(x, training=True)
    dropped = float(np.mean(y == 0))
    # 6 standard errors: a false failure about once in 10⁹ runs
    assert abs(dropped - rate) < 6 * np.sqrt(rate * (1 - rate) / n)
    assert abs(float(y.mean(dtype=np.float64)) - 2) < 6 * np.sqrt(4 * rate / (1 - rate) / n)
    np.testing.assert_array_equal(np.unique(y), [0, np.float32(2) / np.float32(1 - rate)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5])
def test_dropout_forward_and_backward_use_the_same_mask(rate, dtype, rng):
    layer = dropout(rate, (3, 5, 5), dtype=dtype)
    x = (rng.uniform(0.5, 2, (4, 3, 5, 5)) * rng.choice([-1, 1], (4, 3, 5, 5))).astype(dtype)
    x_before = x.copy()
    y = layer.forward(x, training=True)
    mask = y != 0  # x has no zeros
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = layer.backward(dy)
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(y, x * mask / (1 - rate))
    np.testing.assert_array_equal(dx, dy * mask / (1 - rate))
    np.testing.assert_array_equal(x, x_before)
    if rate == 0:
        assert mask.all()


def test_dropout_gradient_check_with_a_fixed_mask(rng):
    layer = dropout(0.4, (3, 4), dtype=np.float64)
    x = rng.standard_normal((5, 3, 4))
    state = layer.rng.bit_generator.state

    def forward():
        layer.rng.bit_generator.state = state  # the same mask at every evaluation
        return layer.forward(x, training=True)

    g = rng.standard_normal(x.shape)
    forward()
    dx = layer.backward(g)
    assert_close(dx, numeric_grad(lambda: float(np.sum(forward() * g)), x), 1e-8, "Dropout dx")


def test_dropout_masks_are_reproducible_from_the_seed(rng):
    x = np.ones((6, 8), np.float32)

    def masks(seed):
        model = cl.Sequential([cl.Dense(8), cl.Dropout(0.5), cl.Dense(8), cl.Dropout(0.5)],
                              input_shape=(8,), seed=seed)
        return [model.layers[1].forward(x, training=True) for _ in range(3)]

    a, b, c = masks(7), masks(7), masks(8)
    for y_a, y_b in zip(a, b, strict=True):
        np.testing.assert_array_equal(y_a, y_b)
    assert not all(np.array_equal(y_a, y_c) for y_a, y_c in zip(a, c, strict=True))
    assert not np.array_equal(a[0], a[1])  # a new mask every forward


def test_dropout_does_not_change_the_other_layers_weights():
    plain = cl.Sequential([cl.Dense(8), cl.Dense(3)], input_shape=(5,), seed=1)
    dropped = cl.Sequential([cl.Dense(8), cl.Dropout(0.5), cl.Dense(3)], input_shape=(5,), seed=1)
    for p, q in zip(plain.parameters().values(), dropped.parameters().values(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def test_dropout_rng_state_restores_the_mask():
    layer = dropout(0.5, (20,))
    x = np.ones((4, 20), np.float32)
    saved = layer.rng.bit_generator.state
    first = layer.forward(x, training=True)
    layer.rng.bit_generator.state = saved
    np.testing.assert_array_equal(layer.forward(x, training=True), first)


@pytest.mark.parametrize("bits", [np.random.PCG64, np.random.PCG64DXSM, np.random.Philox,
                                  np.random.MT19937])
@pytest.mark.parametrize("before", [0, 1, 4], ids=["fresh", "half-draw-kept", "even"])
@pytest.mark.parametrize("n", [1 << 18, (1 << 18) + 1, 128 * 6272 + 3])
def test_uniform_draws_split_over_threads_equal_one_draw(bits, before, n, n_threads):
    """Dropout's masks drawn by the threads from advanced copies of its Generator: the values
    rng.random(dtype=float32) gives, and the state after (the next float32 and float64 draws
    equal), whether a half of a 64-bit draw was kept from before or not."""
    from cnnlab.layers.dropout import uniform_float32

    ours, ref = np.random.Generator(bits(11)), np.random.Generator(bits(11))
    ours.random(before, dtype=np.float32)
    ref.random(before, dtype=np.float32)
    got = uniform_float32(ours, (n,))
    assert got.dtype == np.float32 and got.tobytes() == ref.random(n, dtype=np.float32).tobytes()
    for dtype in (np.float32, np.float32, np.float64):
        assert ours.random(3, dtype=dtype).tobytes() == ref.random(3, dtype=dtype).tobytes()


def test_a_dropout_mask_is_the_same_on_one_thread_and_two(rng):
    from cnnlab.runtime import threads

    x = rng.standard_normal((64, 128, 7, 7)).astype(np.float32)
    runs = []
    for count in (1, 2):
        before = threads.num_threads()
        threads.set_num_threads(count)
        try:
            layer = cl.Sequential([cl.Dropout(0.25)], input_shape=x.shape[1:], seed=3).layers[0]
            runs.append((layer.forward(x, training=True).tobytes(),
                         layer.rng.bit_generator.state["state"]))
        finally:
            threads.set_num_threads(before)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("rate", [1, 1.0, 1.5, -0.1, float("nan"), True, "0.5", None])
def test_dropout_validates_rate(rate):
    with pytest.raises(ValueError, match=r"Dropout: rate .* must be a number in \[0, 1\)\. Received: rate="):
        cl.Dropout(rate)


def test_dropout_config_and_arithmetic():
    layer = cl.Dropout(0.25)
    assert layer.config() == {"rate": 0.25} and repr(layer) == "Dropout(rate=0.25)"
    assert layer.arithmetic((10,)) == "drop with p = 0.25, keep ×1/(1 − 0.25) = 1.33 (training only)"
    assert layer.parameters() == {} and layer.output_shape((3, 4, 4)) == (3, 4, 4)


def _bn_step(x, dy, compiled_on: bool, monkeypatch):
    from cnnlab.kernels import compiled

    monkeypatch.setattr(compiled, "HAVE_NUMBA", compiled_on)
    bn = cl.BatchNorm2D(momentum=0.2).build(x.shape[1:], dtype=x.dtype)
    bn.weight.data[...] = np.linspace(-1.5, 2, x.shape[1])
    bn.bias.data[...] = np.linspace(0.5, -1, x.shape[1])
    y = bn.forward(x, training=True)
    dx = bn.backward(dy)
    return y, dx, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_the_compiled_batchnorm_passes_equal_the_numpy_expressions(dtype, tol, rng, n_threads,
                                                                   monkeypatch):
    """kernels.batchnorm (float64 sums, three passes forward and two backward) against the
    NumPy expressions of BatchNorm2D, which stay the readable reference; per channel, so the
    same bits on any thread count."""
    x = (rng.standard_normal((6, 5, 7, 3)) * 4 + 3).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    ours = _bn_step(x, dy, True, monkeypatch)
    reference = _bn_step(x, dy, False, monkeypatch)
    for name, a, b in zip(("y", "dx", "dγ", "dβ", "running_mean", "running_var"), ours, reference,
                          strict=True):
        assert a.dtype == dtype, name
        assert np.abs(a - b).max() <= tol * np.abs(b).max(), name
    one_thread = [a.copy() for a in ours]
    cl.runtime.threads.set_num_threads(3 - n_threads)
    for a, b in zip(_bn_step(x, dy, True, monkeypatch), one_thread, strict=True):
        np.testing.assert_array_equal(a, b)
