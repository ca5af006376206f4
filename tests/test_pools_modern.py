"""GlobalMaxPool2D, AdaptiveAvgPool2D and AvgPool2D(count_include_pad=False) (issue 20): PyTorch
2.13 in float32 and float64, the windows by hand and against a naive loop, the fast paths
against the general ones, ties, memory layouts, errors, summaries and model files.
(Shapes, float64 numeric gradients, float32 in and out: test_layer_contract.py.)"""

from __future__ import annotations

import re

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import io, kernels
from tests.gradcheck import check_layer as gradcheck
from tests.test_parity_torch import check_layer

#: relative parity per dtype: float32 as the other parity tests; float64 to rounding
TOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


def build(layer: cl.Layer, shape, dtype=np.float64) -> cl.Layer:
    return layer.build(shape, rng=np.random.default_rng(0), dtype=dtype)


def channels_first_memory(x: np.ndarray) -> np.ndarray:
    """x's values as an (N, C, H, W) view of (C, N, H, W) memory: what convolutions hand on."""
    return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


# ----------------------------------------------------------------------- GlobalMaxPool2D
@DTYPES
@pytest.mark.parametrize("shape", [(3, 4, 5, 7), (2, 3, 1, 1), (1, 2, 6, 1)])
def test_global_max_pool_matches_pytorch(shape, dtype, torch, parity, rng):
    F = torch.nn.functional
    layer = build(cl.GlobalMaxPool2D(), shape[1:], dtype)
    x = rng.standard_normal(shape).astype(dtype)
    check_layer(torch, parity, layer, x,
                lambda x: F.max_pool2d(x, shape[2:]).flatten(1), rng, TOL[dtype])


@DTYPES
def test_global_max_pool_ties_go_to_the_first_maximum_as_pytorch(dtype, torch, parity, rng):
    # small integers and whole zero maps (what a ReLU gives): many ties, some of the whole map
    F = torch.nn.functional
    x = rng.integers(-2, 3, (4, 3, 5, 5)).astype(dtype)
    x[0, 1] = 0
    x[2, 0] = 7
    layer = build(cl.GlobalMaxPool2D(), (3, 5, 5), dtype)
    check_layer(torch, parity, layer, x, lambda x: F.adaptive_max_pool2d(x, 1).flatten(1), rng, 0)
    layer.forward(x, training=True)
    dx = layer.backward(np.ones((4, 3), dtype))
    assert dx[0, 1, 0, 0] == 1 and dx[0, 1].sum() == 1  # the first of 25 equal values
    assert dx[2, 0, 0, 0] == 1 and dx[2, 0].sum() == 1
    np.testing.assert_array_equal(dx.sum(axis=(2, 3)), 1)


def test_global_max_pool_by_hand_and_in_either_memory_layout(rng):
    x = np.array([[[[1.0, 5.0], [5.0, 2.0]], [[-3.0, -1.0], [-2.0, -4.0]]]])  # (1, 2, 2, 2)
    layer = build(cl.GlobalMaxPool2D(), (2, 2, 2))
    np.testing.assert_array_equal(layer.forward(x, training=True), [[5.0, -1.0]])
    np.testing.assert_array_equal(layer.backward(np.array([[2.0, 3.0]])),
                                  [[[[0, 2], [0, 0]], [[0, 3], [0, 0]]]])
    x = rng.standard_normal((3, 4, 5, 6))
    y, dy = layer_io(build(cl.GlobalMaxPool2D(), (4, 5, 6)), x, rng)
    y2, dy2 = layer_io(build(cl.GlobalMaxPool2D(), (4, 5, 6)), channels_first_memory(x), rng)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dy, dy2)
    assert np.array_equal(build(cl.GlobalMaxPool2D(), (4, 5, 6)).forward(x), x.max(axis=(2, 3)))


def layer_io(layer, x, rng):
    """(y, dx) of a training forward and a backward with a fixed dy (seeded by x's shape)."""
    y = layer.forward(x, training=True)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    return y, layer.backward(dy)


# --------------------------------------------------------------------- AdaptiveAvgPool2D
#: (input H, W) → output size; uneven (7 → 3, 5 → 2, 28 → 6), larger than the input (3 → 5),
#: divisible (the fast path), global, and None (keep the axis)
ADAPTIVE = [((7, 7), 3), ((5, 5), 2), ((28, 28), 6), ((7, 5), (3, 2)), ((3, 4), 5),
            ((8, 12), (4, 3)), ((7, 9), 1), ((10, 6), (4, None)), ((13, 13), (6, 7))]
ADAPTIVE_IDS = [f"{h}x{w}-to-{out}" for (h, w), out in ADAPTIVE]


@DTYPES
@pytest.mark.parametrize("size, out", ADAPTIVE, ids=ADAPTIVE_IDS)
def test_adaptive_avg_pool_matches_pytorch(size, out, dtype, torch, parity, rng):
    layer = build(cl.AdaptiveAvgPool2D(out), (3, *size), dtype)
    x = rng.standard_normal((2, 3, *size)).astype(dtype)
    target = out if isinstance(out, int) else tuple(out)
    check_layer(torch, parity, layer, x,
                lambda x: torch.nn.functional.adaptive_avg_pool2d(x, target), rng, TOL[dtype])


def test_adaptive_windows_follow_pytorchs_rule_by_hand():
    start, end = kernels.adaptive_windows(7, 3)  # ⌊i·7/3⌋, ⌈(i+1)·7/3⌉
    assert list(zip(start, end, strict=True)) == [(0, 3), (2, 5), (4, 7)]
    start, end = kernels.adaptive_windows(5, 2)
    assert list(zip(start, end, strict=True)) == [(0, 3), (2, 5)]
    start, end = kernels.adaptive_windows(3, 5)  # more outputs than inputs: windows repeat rows
    assert list(zip(start, end, strict=True)) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]


@pytest.mark.parametrize("size, out", [(7, 3), (5, 2), (3, 5), (28, 6), (6, 3), (1, 4), (9, 1)])
def test_spreading_is_the_adjoint_of_summing_the_windows(size, out, rng):
    # <S(a), b> == <a, Sᵀ(b)> for all a, b  ⇔  the backward's spread is the forward's adjoint
    a, b = rng.standard_normal((3, size)), rng.standard_normal((3, out))
    summed = kernels.adaptive._sum_windows(a, size, out)
    start, end = kernels.adaptive_windows(size, out)
    np.testing.assert_allclose(summed, [[row[s:e].sum() for s, e in zip(start, end, strict=True)]
                                        for row in a], rtol=1e-14)
    spread = kernels.adaptive._spread_windows(b, size, out)
    assert np.isclose(np.sum(summed * b), np.sum(a * spread))


@pytest.mark.parametrize("size, out", ADAPTIVE[:6], ids=ADAPTIVE_IDS[:6])
def test_adaptive_avg_pool_equals_a_naive_loop_over_its_windows(size, out, rng):
    layer = build(cl.AdaptiveAvgPool2D(out), (2, *size))
    x = rng.standard_normal((3, 2, *size))
    h_out, w_out = layer.out_shape[1:]
    (hs, he), (ws, we) = kernels.adaptive_windows(size[0], h_out), kernels.adaptive_windows(size[1], w_out)
    want = np.empty((3, 2, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            want[:, :, i, j] = x[:, :, hs[i]:he[i], ws[j]:we[j]].mean(axis=(2, 3))
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("size, out", [((8, 12), (4, 3)), ((6, 6), 1), ((6, 6), 6), ((9, 4), (3, 2))])
@pytest.mark.parametrize("layout", ["nchw", "cnhw"])
def test_adaptive_fast_path_equals_the_gathers(size, out, layout, rng):
    x = rng.standard_normal((3, 4, *size)).astype(np.float32)
    if layout == "cnhw":
        x = channels_first_memory(x)
    h_out, w_out = (out, out) if isinstance(out, int) else out
    assert kernels.adaptive.divides(*size, h_out, w_out)
    fast = kernels.adaptive_avgpool_forward(x, h_out, w_out)
    slow = kernels.adaptive_avgpool_forward(x, h_out, w_out, fast=False)
    assert fast.dtype == slow.dtype == np.float32
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-7)
    dy = rng.standard_normal(fast.shape).astype(np.float32)
    np.testing.assert_allclose(kernels.adaptive_avgpool_backward(dy, *size),
                               kernels.adaptive_avgpool_backward(dy, *size, fast=False),
                               rtol=1e-6, atol=1e-7)


def test_adaptive_avg_pool_keeps_a_convolutions_memory_layout(rng):
    x = channels_first_memory(rng.standard_normal((2, 3, 7, 7)))
    y = build(cl.AdaptiveAvgPool2D(3), (3, 7, 7)).forward(x)
    assert y.transpose(1, 0, 2, 3).flags.c_contiguous  # (C, N, H, W) memory in, the same out
    np.testing.assert_allclose(y, build(cl.AdaptiveAvgPool2D(3), (3, 7, 7)).forward(x.copy()))


def test_adaptive_memory_stays_that_of_the_input_and_output(rng):
    # a dense averaging matrix for 60,000 → 100,000 columns would hold 6·10⁹ entries (24 GB)
    layer = build(cl.AdaptiveAvgPool2D((1, 100_000)), (1, 1, 60_000), np.float32)
    x = rng.standard_normal((1, 1, 1, 60_000)).astype(np.float32)
    y = layer.forward(x, training=True)
    start, end = kernels.adaptive_windows(60_000, 100_000)
    size = end - start
    assert set(size) == {1, 2}
    row = x[0, 0, 0]
    np.testing.assert_allclose(y[0, 0, 0], (row[start] + (size == 2) * row[end - 1]) / size, rtol=1e-6)
    assert layer.backward(np.ones_like(y)).sum() == pytest.approx(100_000, rel=1e-6)
    assert "…" in layer.arithmetic((1, 1, 60_000))


@pytest.mark.parametrize("out", [(2, 3), 1, (3, None)])
def test_adaptive_avg_pool_numeric_gradients_on_uneven_windows(out, rng):
    layer = build(cl.AdaptiveAvgPool2D(out), (2, 5, 7))
    gradcheck(layer, rng.standard_normal((2, 2, 5, 7)), rng)


# ------------------------------------------------------------- AvgPool count_include_pad
#: (C, size, kernel, stride, padding): padding is what makes the two settings differ
PADDED = [(2, (7, 7), 3, 2, 1), (1, (6, 5), (3, 2), 1, (1, 1)), (2, (9, 8), 4, 3, 2),
          (3, (5, 5), 2, 2, 1), (1, (4, 4), 3, 1, 0)]


@DTYPES
@pytest.mark.parametrize("include", [True, False], ids=["include_pad", "exclude_pad"])
@pytest.mark.parametrize("c, size, kernel, stride, padding", PADDED)
def test_avg_pool_count_include_pad_matches_pytorch(c, size, kernel, stride, padding, include, dtype,
                                                     torch, parity, rng):
    layer = build(cl.AvgPool2D(kernel, stride, padding, fit="floor", count_include_pad=include),
                  (c, *size), dtype)
    x = rng.standard_normal((3, c, *size)).astype(dtype)
    check_layer(torch, parity, layer, x, lambda x: torch.nn.functional.avg_pool2d(
        x, kernel, stride, padding, count_include_pad=include), rng, TOL[dtype])


@pytest.mark.parametrize("include", [True, False])
def test_avg_pool1d_count_include_pad_matches_pytorch(include, torch, parity, rng):
    layer = build(cl.AvgPool1D(3, 2, 1, count_include_pad=include), (2, 9), np.float32)
    x = rng.standard_normal((3, 2, 9)).astype(np.float32)
    check_layer(torch, parity, layer, x, lambda x: torch.nn.functional.avg_pool1d(
        x, 3, 2, 1, count_include_pad=include), rng)


def test_avg_pool_counts_by_hand_and_same_padding_against_a_loop(rng):
    # 3×3 windows, stride 2, padding 1 on 5×5: rows 0–1, 1–3, 3–4 → counts 2, 3, 2 per axis
    np.testing.assert_array_equal(kernels.avgpool_counts(5, 5, 3, 3, 2, 1),
                                  [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    # padding="same" on 5×5 with 2×2 windows, stride 1: one padding column right/bottom only
    layer = build(cl.AvgPool2D(2, stride=1, padding="same", count_include_pad=False), (1, 5, 5))
    x = rng.standard_normal((2, 1, 5, 5))
    y = layer.forward(x)
    want = np.array([[[[x[n, 0, i:i + 2, j:j + 2].mean() for j in range(5)] for i in range(5)]]
                     for n in range(2)])
    np.testing.assert_allclose(y, want, rtol=1e-14)


def test_avg_pool_default_is_unchanged_and_stays_out_of_files():
    assert cl.AvgPool2D(2).count_include_pad is True  # today's default, PyTorch's default
    assert "count_include_pad" not in cl.AvgPool2D(3, padding=1).config()
    assert cl.AvgPool2D(3, padding=1, count_include_pad=False).config()["count_include_pad"] is False
    plain = build(cl.AvgPool2D(3, 2, 1), (1, 7, 7))
    same = build(cl.AvgPool2D(3, 2, 1, count_include_pad=True), (1, 7, 7))
    x = np.random.default_rng(0).standard_normal((2, 1, 7, 7))
    np.testing.assert_array_equal(plain.forward(x), same.forward(x))
    assert build(cl.AvgPool2D(2, count_include_pad=False), (1, 4, 4)).divisor is None  # no padding


@pytest.mark.parametrize("bad", [0, 1, "False", None])
def test_count_include_pad_must_be_a_bool(bad):
    with pytest.raises(ValueError, match=r"^AvgPool2D: count_include_pad must be True or False\. "
                                         rf"Received: count_include_pad={re.escape(repr(bad))}$"):
        cl.AvgPool2D(2, count_include_pad=bad)


# --------------------------------------------------------------- the lecture: arithmetic
def test_arithmetic_lines():
    assert cl.GlobalMaxPool2D().arithmetic((512, 7, 7)) == "max over 7×7 per channel → 512;  params = 0"
    assert cl.AdaptiveAvgPool2D(3).arithmetic((8, 7, 7)) == (
        "H2 = W2 = 3: windows ⌊i·7/3⌋ to ⌈(i+1)·7/3⌉ = [0, 3) [2, 5) [4, 7);  params = 0")
    assert cl.AdaptiveAvgPool2D((2, 6)).arithmetic((8, 5, 28)) == (
        "H2 = 2: windows ⌊i·5/2⌋ to ⌈(i+1)·5/2⌉ = [0, 3) [2, 5); W2 = 6: windows ⌊i·28/6⌋ to "
        "⌈(i+1)·28/6⌉ = [0, 5) [4, 10) [9, 14) [14, 19) …;  params = 0")
    assert cl.AdaptiveAvgPool2D(1).arithmetic((8, 7, 7)) == (
        "H2 = W2 = 1: windows F = S = 7/1 = 7;  params = 0")
    assert cl.AvgPool2D(3, 2, 1, count_include_pad=False).arithmetic((2, 5, 5)) == (
        "H2 = W2 = (5 − 3 + 2·1)/2 + 1 = 3;  mean over the input values only "
        "(count_include_pad=False): ÷4 to ÷9 per window;  params = 0")
    assert cl.AvgPool2D(3, 2, 1).arithmetic((2, 5, 5)) == "H2 = W2 = (5 − 3 + 2·1)/2 + 1 = 3;  params = 0"
    explained = cl.AvgPool2D(3, 2, 1, count_include_pad=False).explain((2, 5, 5))
    assert "\nmean over the input values only (count_include_pad=False): ÷4 to ÷9 per window\n" in explained
    assert cl.AdaptiveAvgPool2D(3).explain((8, 7, 7)).splitlines()[:2] == [
        "AdaptiveAvgPool2D: accepts 7×7×8", "produces 3×3×8"]


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("bad", [0, -1, (3, 0), (1, 2, 3), "3", 2.0, True, (None, 1.5), [3]])
def test_adaptive_output_size_is_checked(bad):
    with pytest.raises(ValueError, match=r"^AdaptiveAvgPool2D: output_size must be a positive int or a "
                                         r"pair of positive ints \(None keeps the input's size\)\. "
                                         rf"Received: output_size={re.escape(repr(bad))}$"):
        cl.AdaptiveAvgPool2D(bad)


@pytest.mark.parametrize("layer", [cl.GlobalMaxPool2D(), cl.AdaptiveAvgPool2D(2)])
def test_they_take_images_only(layer):
    with pytest.raises(cl.ShapeError, match=rf"^{layer.kind}: expects per-sample input \(C, H, W\)\. "
                                            r"Received: input_shape=\(3, 8\)$"):
        layer.build((3, 8))


# -------------------------------------------------------------------------------- files
def model() -> cl.Sequential:
    return cl.Sequential([cl.Conv2D(4, 3, padding=1), cl.AvgPool2D(3, 2, 1, count_include_pad=False),
                          cl.AdaptiveAvgPool2D((3, None)), cl.Conv2D(4, 1), cl.GlobalMaxPool2D(),
                          cl.Dense(3)], input_shape=(2, 7, 9))


def test_model_files_keep_them(tmp_path, rng):
    original = model()
    cl.save(original, tmp_path / "pools.safetensors")
    loaded = cl.load(tmp_path / "pools.safetensors")
    assert [repr(a) for a in loaded.layers] == [repr(b) for b in original.layers]
    assert loaded.layers[2].output_size == (3, None) and loaded.layers[1].count_include_pad is False
    x = rng.standard_normal((2, 2, 7, 9)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), original.forward(x))
    assert "adaptiveavgpool2d_1 (AdaptiveAvgPool2D)  3×5×4" in original.summary()


@pytest.mark.parametrize("index, spec, message", [
    (2, {"type": "AdaptiveAvgPool2D", "output_size": [0, 3]}, r"output_size must be a positive int"),
    (2, {"type": "AdaptiveAvgPool2D", "output_size": [3, 3, 3]}, r"output_size must be a positive"),
    (2, {"type": "AdaptiveAvgPool2D", "output_size": "3"}, r"output_size must be a positive int"),
    (2, {"type": "AdaptiveAvgPool2D", "output_size": True}, r"output_size must be a positive int"),
    (2, {"type": "AdaptiveAvgPool2D"}, r"cannot create AdaptiveAvgPool2D: .*output_size"),
    (2, {"type": "AdaptiveAvgPool2D", "output_size": {"h": 3}}, r"is not a plain value"),
    (2, {"type": "AdaptiveAvgPool2D", "output_size": [3, 3], "mode": "max"}, r"takes no argument mode"),
    (1, {"type": "AvgPool2D", "kernel_size": 3, "padding": 1, "count_include_pad": "no"},
     r"count_include_pad must be True or False"),
    (1, {"type": "AvgPool2D", "kernel_size": 3, "padding": 1, "count_include_pad": 0},
     r"count_include_pad must be True or False"),
    (4, {"type": "GlobalMaxPool2D", "axis": 1}, r"GlobalMaxPool2D takes no argument axis"),
])
def test_a_file_with_wrong_arguments_is_refused(index, spec, message):
    arch = io.architecture(model())
    arch["layers"][index] = spec
    with pytest.raises(cl.ModelFileError, match=rf"layers\[{index}\]: .*{message}"):
        io.from_architecture(arch)


def test_an_adaptive_output_too_large_is_refused_before_it_is_built():
    arch = io.architecture(model())
    arch["layers"][2] = {"type": "AdaptiveAvgPool2D", "output_size": [60000, 60000]}
    with pytest.raises(cl.ModelFileError, match=r"activation values for one sample exceed the limit"):
        io.from_architecture(arch)
