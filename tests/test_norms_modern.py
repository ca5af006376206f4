"""LayerNorm, GroupNorm, LayerScale and DropPath (issue 20): PyTorch 2.13 in float32 and float64
(F.layer_norm over the channels through a permute, F.group_norm), numeric gradients with γ, β
away from their start, memory layouts and thread counts, DropPath's mask, seed and checkpoint,
errors, summaries and model files — a ConvNeXt-style residual block among them.
(Shapes, float64 numeric gradients, float32 in and out: test_layer_contract.py.)"""

from __future__ import annotations

import re

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import io
from cnnlab.runtime import threads
from tests.gradcheck import assert_close, numeric_grad
from tests.gradcheck import check_layer as gradcheck
from tests.test_parity_torch import check_layer
from tests.test_safety import refused, set_architecture

TOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


def build(layer: cl.Layer, shape, dtype=np.float64, rng=None) -> cl.Layer:
    """Built, with every parameter moved away from its start (γ = 1, β = 0, LayerScale's 1e-6)."""
    layer.build(shape, rng=np.random.default_rng(0), dtype=dtype)
    draw = rng or np.random.default_rng(3)
    for p in layer.parameters().values():
        p.data[...] = (1 + 0.5 * draw.standard_normal(p.shape)).astype(dtype)
    return layer


def shifted(rng, shape, dtype=np.float64):
    """Values with a mean and scale per channel far from 0 and 1, as real activations have."""
    per_channel = (1, -1, *([1] * (len(shape) - 2)))
    mean = rng.uniform(-3, 3, shape[1]).reshape(per_channel)
    scale = rng.uniform(0.5, 4, shape[1]).reshape(per_channel)
    return (mean + scale * rng.standard_normal(shape)).astype(dtype)


def channels_first_memory(x):
    return np.ascontiguousarray(np.moveaxis(x, 1, 0)).swapaxes(0, 1) if x.ndim == 2 else \
        np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, 0)), 0, 1)


# ---------------------------------------------------------------------------- LayerNorm
def torch_layer_norm(torch, eps):
    """PyTorch's LayerNorm(C) on the channels-last tensor, back to channels first."""
    def reference(x, weight, bias):
        if x.dim() == 2:
            return torch.nn.functional.layer_norm(x, (x.shape[1],), weight, bias, eps)
        last = x.movedim(1, -1)
        return torch.nn.functional.layer_norm(last, (x.shape[1],), weight, bias, eps).movedim(-1, 1)
    return reference


@DTYPES
@pytest.mark.parametrize("shape, eps", [((4, 6), 1e-5), ((3, 5, 4, 6), 1e-6), ((2, 8, 7), 1e-5),
                                        ((3, 96, 3, 3), 1e-6), ((5, 2, 2, 2), 1e-5)])
def test_layer_norm_matches_pytorch_over_the_channels(shape, eps, dtype, torch, parity, rng):
    layer = build(cl.LayerNorm(eps), shape[1:], dtype)
    x = shifted(rng, shape, dtype)
    check_layer(torch, parity, layer, x, torch_layer_norm(torch, eps), rng, TOL[dtype])


@DTYPES
def test_layer_norm_matches_pytorch_on_a_convolutions_memory_layout(dtype, torch, parity, rng):
    layer = build(cl.LayerNorm(), (6, 5, 5), dtype)
    x = channels_first_memory(shifted(rng, (3, 6, 5, 5), dtype))
    assert not x.flags.c_contiguous
    check_layer(torch, parity, layer, x, torch_layer_norm(torch, 1e-5), rng, TOL[dtype])


@pytest.mark.parametrize("shape", [(3, 4, 3, 2), (4, 5), (2, 3, 6)])
def test_layer_norm_numeric_gradients_on_shifted_inputs(shape, rng):
    gradcheck(build(cl.LayerNorm(1e-3), shape[1:]), shifted(rng, shape), rng)


def test_layer_norm_standardises_each_position_and_ignores_training(rng):
    layer = cl.LayerNorm(eps=1e-12).build((5, 3, 4), dtype=np.float64)
    x = shifted(rng, (2, 5, 3, 4))
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=1), 1, rtol=1e-9)
    np.testing.assert_array_equal(layer.forward(x), y)  # no running statistics: the same either way
    assert layer.buffers() == {} and layer.count_params() == 10


def test_layer_norm_of_one_channel_gives_beta_and_no_gradient(rng):
    # x − μ is exactly 0: y = β and dx = 0 exactly (PyTorch's dx has rounding noise of 1e-4 here)
    layer = build(cl.LayerNorm(), (1, 2, 2), np.float32)
    x = shifted(rng, (5, 1, 2, 2), np.float32)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, np.broadcast_to(layer.bias.data[0], y.shape))
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)), 0)


# ---------------------------------------------------------------------------- GroupNorm
@DTYPES
@pytest.mark.parametrize("shape, groups", [((3, 6, 4, 5), 2), ((2, 6, 4, 4), 1), ((2, 6, 3, 3), 6),
                                           ((4, 8, 7), 4), ((5, 6), 3), ((2, 32, 5, 5), 8)])
def test_group_norm_matches_pytorch(shape, groups, dtype, torch, parity, rng):
    layer = build(cl.GroupNorm(groups), shape[1:], dtype)
    x = shifted(rng, shape, dtype)
    check_layer(torch, parity, layer, x, lambda x, weight, bias: torch.nn.functional.group_norm(
        x, groups, weight, bias, 1e-5), rng, TOL[dtype])


@pytest.mark.parametrize("shape, groups", [((3, 6, 3, 2), 3), ((4, 4), 2), ((2, 4, 5), 1)])
def test_group_norm_numeric_gradients_on_shifted_inputs(shape, groups, rng):
    gradcheck(build(cl.GroupNorm(groups, eps=1e-3), shape[1:]), shifted(rng, shape), rng)


def test_group_norm_refuses_channels_that_do_not_split():
    model_error = (r"^GroupNorm #2 \(groupnorm_1\): C = 6 channels do not split into 4 groups\. "
                   r"Expected C % groups = 0\. Received: input_shape=\(6, 8, 8\), groups=4\. "
                   r"Groups that divide 6: 1, 2, 3, 6$")
    with pytest.raises(cl.ShapeError, match=model_error):
        cl.Sequential([cl.Conv2D(6, 3, padding=1), cl.GroupNorm(4)], input_shape=(1, 8, 8))
    explained = cl.GroupNorm(4).explain((6, 8, 8))
    assert explained.splitlines()[1].startswith("doesn't fit: GroupNorm: C = 6 channels do not split")


# --------------------------------------------------------------- both: layouts, threads
@pytest.mark.parametrize("make, shape", [(cl.LayerNorm, (4, 16, 64, 64)),
                                         (lambda: cl.GroupNorm(4), (8, 16, 48, 48))])
def test_threads_split_the_work_and_agree_with_one_thread(make, shape, rng):
    # 2¹⁸ values and more are split over cnnlab's threads (several spans)
    x = shifted(rng, shape, np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    results = []
    before = threads.num_threads()
    try:
        for count in (1, 3):
            threads.set_num_threads(count)
            layer = build(make(), shape[1:], np.float32)
            y = layer.forward(x, training=True)
            results.append((y, layer.backward(dy), layer.weight.grad, layer.bias.grad))
    finally:
        threads.set_num_threads(before)
    for one, many in zip(*results, strict=True):
        np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- LayerScale
@DTYPES
@pytest.mark.parametrize("shape", [(3, 5, 4, 4), (4, 6), (2, 3, 7)])
def test_layer_scale_matches_pytorch(shape, dtype, torch, parity, rng):
    layer = build(cl.LayerScale(), shape[1:], dtype)
    x = rng.standard_normal(shape).astype(dtype)

    def reference(x, weight):
        return x * weight.reshape(-1, *([1] * (x.dim() - 2)))

    check_layer(torch, parity, layer, x, reference, rng, TOL[dtype])


def test_layer_scale_starts_at_init_in_either_memory_layout(rng):
    layer = cl.LayerScale().build((3, 4, 4))
    np.testing.assert_array_equal(layer.weight.data, np.float32(1e-6))
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x), x * np.float32(1e-6))
    x = shifted(rng, (2, 3, 4, 4))
    dy = rng.standard_normal(x.shape)
    results = []
    for x_in in (x, channels_first_memory(x)):
        layer = build(cl.LayerScale(0.5), (3, 4, 4))
        results.append((layer.forward(x_in, training=True), layer.backward(dy), layer.weight.grad))
    for nchw, cnhw in zip(*results, strict=True):
        np.testing.assert_allclose(cnhw, nchw, rtol=1e-14)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "1e-6", None])
def test_layer_scale_init_must_be_a_finite_number(bad):
    with pytest.raises(ValueError, match=r"^LayerScale: init must be a finite number\. "
                                         rf"Received: init={re.escape(repr(bad))}$"):
        cl.LayerScale(bad)


def test_layer_scale_init_outside_float32_is_refused_when_built():
    with pytest.raises(ValueError, match=r"LayerScale: init=1e\+300 is outside float32's range"):
        cl.LayerScale(1e300).build((3,))
    assert cl.LayerScale(1e300).build((3,), dtype=np.float64).weight.data[0] == 1e300


# ----------------------------------------------------------------------------- DropPath
def drop_path(rate, shape, seed=0, dtype=np.float64):
    return cl.DropPath(rate).build(shape, rng=np.random.default_rng(seed), dtype=dtype)


def test_drop_path_inference_is_the_identity(rng):
    layer = drop_path(0.5, (3, 4, 4))
    x = rng.standard_normal((6, 3, 4, 4))
    assert layer.forward(x) is x and layer.forward(x, training=False) is x


@DTYPES
@pytest.mark.parametrize("rate", [0.0, 0.25, 0.6])
def test_drop_path_drops_whole_samples_with_one_mask_for_forward_and_backward(rate, dtype, rng):
    layer = drop_path(rate, (3, 5, 5), dtype=dtype)
    x = (rng.uniform(0.5, 2, (40, 3, 5, 5)) * rng.choice([-1, 1], (40, 3, 5, 5))).astype(dtype)
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = layer.backward(dy)
    kept = np.all(y != 0, axis=(1, 2, 3))
    assert np.array_equal(kept, np.any(y != 0, axis=(1, 2, 3)))  # a sample is all in or all out
    keep = kept[:, None, None, None]
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(y, x * keep / dtype(1 - rate))
    np.testing.assert_array_equal(dx, dy * keep / dtype(1 - rate))
    if rate == 0:
        assert kept.all()
    else:
        assert 0 < kept.sum() < 40


def test_drop_path_rate_and_mean_statistics():
    n, rate = 200_000, 0.3
    layer = drop_path(rate, (2,), dtype=np.float32)
    y = layer.forward(np.ones((n, 2), np.float32), training=True)
    dropped = float(np.mean(y[:, 0] == 0))
    assert abs(dropped - rate) < 6 * np.sqrt(rate * (1 - rate) / n)  # 6 standard errors
    assert abs(float(y.mean(dtype=np.float64)) - 1) < 6 * np.sqrt(rate / (1 - rate) / n)


def test_drop_path_numeric_gradient_with_a_fixed_mask(rng):
    layer = drop_path(0.5, (3, 4))
    x = rng.standard_normal((6, 3, 4))
    state = layer.rng.bit_generator.state

    def forward():
        layer.rng.bit_generator.state = state  # the same samples dropped at every evaluation
        return layer.forward(x, training=True)

    g = rng.standard_normal(x.shape)
    y = forward()
    assert 0 < np.sum(np.all(y == 0, axis=(1, 2))) < 6
    dx = layer.backward(g)
    assert_close(dx, numeric_grad(lambda: float(np.sum(forward() * g)), x), 1e-8, "DropPath dx")


def convnext_block(channels: int = 4, rate: float = 0.5) -> cl.Residual:
    """ConvNeXt's block with a dense 3×3 in place of the depthwise 7×7 (Liu et al. 2022)."""
    return cl.Residual([cl.Conv2D(channels, 3, padding=1), cl.LayerNorm(1e-6),
                        cl.Conv2D(4 * channels, 1), cl.GELU(), cl.Conv2D(channels, 1),
                        cl.LayerScale(1e-6), cl.DropPath(rate)])


def test_drop_path_in_a_residual_branch_makes_dropped_samples_skip_the_block(rng):
    block = convnext_block(rate=0.5).build((4, 5, 5), rng=np.random.default_rng(0), dtype=np.float64)
    x = rng.standard_normal((16, 4, 5, 5))
    y = block.forward(x, training=True)
    dropped = np.all(y == x, axis=(1, 2, 3))
    assert 0 < dropped.sum() < 16
    assert not np.any(np.all(y[~dropped] == x[~dropped], axis=(1, 2, 3)))
    dx = block.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx[dropped], 1)  # the identity's gradient alone
    np.testing.assert_array_equal(block.forward(x), block.forward(x))  # inference: no drop


def masks(seed: int, draws: int = 3) -> list[np.ndarray]:
    model = cl.Sequential([convnext_block(rate=0.5), convnext_block(rate=0.5), cl.GlobalMaxPool2D(),
                           cl.Dense(3)], input_shape=(4, 5, 5), seed=seed)
    x = np.ones((32, 4, 5, 5), np.float32)
    layer = model.layers[1].branch.layers[-1]
    return [layer.forward(x, training=True)[:, 0, 0, 0] != 0 for _ in range(draws)]


def test_drop_path_is_reproducible_from_the_seed_and_draws_anew_each_step():
    a, b, c = masks(7), masks(7), masks(8)
    for mask_a, mask_b in zip(a, b, strict=True):
        np.testing.assert_array_equal(mask_a, mask_b)
    assert not all(np.array_equal(m, n) for m, n in zip(a, c, strict=True))
    assert not np.array_equal(a[0], a[1])
    plain = cl.Sequential([cl.Conv2D(3, 3), cl.Flatten(), cl.Dense(2)], input_shape=(1, 5, 5), seed=1)
    dropped = cl.Sequential([cl.Conv2D(3, 3), cl.DropPath(0.5), cl.Flatten(), cl.Dense(2)],
                            input_shape=(1, 5, 5), seed=1)
    for p, q in zip(plain.parameters().values(), dropped.parameters().values(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)  # its own stream: other weights unchanged


def test_a_resumed_run_draws_the_drop_paths_of_the_uninterrupted_one(tmp_path, rng):
    x = rng.standard_normal((48, 4, 5, 5)).astype(np.float32)
    y = rng.integers(0, 3, 48)

    def run(epochs, out, **kwargs):
        model = cl.Sequential([convnext_block(rate=0.5), cl.GlobalMaxPool2D(), cl.Dense(3)],
                              input_shape=(4, 5, 5), seed=3)
        cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.SGD(model, lr=0.1),
               epochs=epochs, batch_size=16, out=out, seed=3, verbose=False, **kwargs)
        return model

    full = run(2, tmp_path / "a")
    run(1, tmp_path / "b")
    resumed = run(2, tmp_path / "b", resume=tmp_path / "b" / "last.ckpt.safetensors")
    assert list(io.rng_states(full)) == ["residual_1.branch.droppath_1"]
    assert io.rng_states(full) == io.rng_states(resumed)
    for name, p in full.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[name].data, p.data, err_msg=name)


@pytest.mark.parametrize("rate", [1, 1.0, 1.5, -0.1, float("nan"), True, "0.5", None])
def test_drop_path_validates_rate(rate):
    with pytest.raises(ValueError, match=r"^DropPath: rate is the probability of dropping a sample's "
                                         r"path and must be a number in \[0, 1\)\. Received: rate="):
        cl.DropPath(rate)


# ------------------------------------------------------------ errors, lecture, files
@pytest.mark.parametrize("make", [cl.LayerNorm, lambda eps: cl.GroupNorm(2, eps)])
@pytest.mark.parametrize("eps", [0, -1e-5, float("nan"), float("inf"), True, "1e-5"])
def test_eps_must_be_a_positive_number(make, eps):
    with pytest.raises(ValueError, match=rf"^(LayerNorm|GroupNorm): eps must be a number > 0\. "
                                         rf"Received: eps={re.escape(repr(eps))}$"):
        make(eps)


@pytest.mark.parametrize("groups", [0, -2, 1.5, True, "2", None])
def test_groups_must_be_a_positive_int(groups):
    with pytest.raises(ValueError, match=r"^GroupNorm: groups must be a positive int\. Received: "):
        cl.GroupNorm(groups)


@pytest.mark.parametrize("layer", [cl.LayerNorm(), cl.GroupNorm(1), cl.LayerScale()])
def test_rank_four_per_sample_input_is_refused(layer):
    with pytest.raises(cl.ShapeError, match=rf"^{layer.kind}: expects per-sample input .*\(C, H, W\)\. "
                                            r"Received: input_shape=\(2, 3, 4, 5\)$"):
        layer.build((2, 3, 4, 5))


def test_arithmetic_lines():
    assert cl.LayerNorm().arithmetic((96, 56, 56)) == (
        "normalise the C = 96 channels at each of the 56×56 positions;  params = 2·C = 192 (γ, β)")
    assert cl.LayerNorm().arithmetic((64,)) == (
        "normalise the D = 64 features of each sample;  params = 2·D = 128 (γ, β)")
    assert cl.GroupNorm(4).arithmetic((32, 8, 8)) == (
        "normalise each sample's 4 groups of C/G = 32/4 = 8 channels × 8×8 = 512 values;  "
        "params = 2·C = 64 (γ, β)")
    assert cl.LayerScale().arithmetic((96, 7, 7)) == (
        "y = γ_c·x, one γ per channel (starting at 1e-06);  params = C = 96")
    assert cl.DropPath(0.1).arithmetic((96, 7, 7)) == (
        "drop a sample's whole path with p = 0.1, keep ×1/(1 − 0.1) = 1.11 (training only)")


def model() -> cl.Sequential:
    return cl.Sequential([cl.Conv2D(4, 3, padding=1), convnext_block(rate=0.2), cl.GroupNorm(2),
                          cl.GlobalMaxPool2D(), cl.LayerNorm(), cl.Dense(3)], input_shape=(2, 6, 6))


def test_model_files_keep_them_with_their_weights(tmp_path, rng):
    original = model()
    for p in original.parameters().values():
        p.data += 0.1 * rng.standard_normal(p.shape).astype(p.data.dtype)
    cl.save(original, tmp_path / "norms.safetensors")
    loaded = cl.load(tmp_path / "norms.safetensors")
    assert io.architecture(loaded) == io.architecture(original)
    for name in ("residual_1.branch.layernorm_1.weight", "residual_1.branch.layerscale_1.weight",
                 "groupnorm_1.bias", "layernorm_1.weight"):
        np.testing.assert_array_equal(loaded.parameters()[name].data, original.parameters()[name].data)
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), original.forward(x))
    summary = original.summary()
    assert "groupnorm_1 (GroupNorm)" in summary and "C/G = 4/2 = 2 channels × 6×6 = 72 values" in summary


@pytest.mark.parametrize("index, spec, message", [
    (2, {"type": "GroupNorm", "groups": 0}, r"cannot create GroupNorm: GroupNorm: groups must be a positive"),
    (2, {"type": "GroupNorm", "groups": 3}, r"does not build: GroupNorm: C = 4 channels do not split "
                                            r"into 3 groups\. .* Groups that divide 4: 1, 2, 4$"),
    (2, {"type": "GroupNorm", "groups": 2.0}, r"groups must be a positive int"),
    (2, {"type": "GroupNorm"}, r"cannot create GroupNorm: .*groups"),
    (4, {"type": "LayerNorm", "eps": -1}, r"cannot create LayerNorm: LayerNorm: eps must be a number > 0"),
    (4, {"type": "LayerNorm", "eps": "small"}, r"eps must be a number > 0"),
    (4, {"type": "LayerNorm", "normalized_shape": [4]}, r"LayerNorm takes no argument normalized_shape"),
    (4, {"type": "LayerScale", "init": [1e-6, 1e-6]}, r"LayerScale: init must be a finite number"),
    (4, {"type": "LayerScale", "init": 1e300}, r"LayerScale #5 \(layerscale_1\): init=1e\+300 is outside"),
    (4, {"type": "DropPath", "rate": 1.0}, r"DropPath: rate is the probability"),
    (4, {"type": "DropPath", "rate": None}, r"DropPath: rate is the probability"),
])
def test_a_file_with_wrong_arguments_is_refused(index, spec, message):
    arch = io.architecture(model())
    arch["layers"][index] = spec
    with pytest.raises(cl.ModelFileError, match=rf"architecture.*{message}"):
        io.from_architecture(arch)


@pytest.mark.parametrize("spec", [{"type": "LayerScale", "init": float("nan")},
                                  {"type": "DropPath", "rate": float("inf")}])
def test_non_finite_arguments_are_refused(spec):
    arch = io.architecture(model())
    arch["layers"][4] = spec
    with pytest.raises(cl.ModelFileError, match=r"is not a finite number"):
        io.from_architecture(arch)


@pytest.mark.parametrize("index, spec, message", [
    (2, {"type": "GroupNorm", "groups": 3}, r"C = 4 channels do not split into 3 groups"),
    (3, {"type": "AdaptiveAvgPool2D", "output_size": [2, -1]}, r"output_size must be a positive int"),
    (4, {"type": "LayerNorm", "eps": 0}, r"eps must be a number > 0"),
    (1, {"type": "Residual", "branch_layers": [{"type": "DropPath", "rate": 2}]}, r"DropPath: rate is"),
])
def test_a_tampered_model_file_is_refused_by_load(tmp_path, index, spec, message):
    path = tmp_path / "norms.safetensors"
    cl.save(model(), path)
    arch = io.architecture(model())
    arch["layers"][index] = spec
    set_architecture(path, arch)
    refused(path, message)
