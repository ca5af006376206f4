"""The Winograd path (cnnlab.kernels.winograd, F(2×2, 3×3), transforms compiled by Numba)
against the NumPy paths it stands in for: the same sums in float64 to rounding, in float32
within its stated tolerance (issue 19: ≤ 1e-4 relative on random data), non-finite values
kept within one pixel of where the direct sums put them, PyTorch's results and numeric
gradients through a layer, and the layers that take it (bit-identical repeats for a thread
count: tests/test_threads.py)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.kernels import (
    compiled,
    conv_backward_winograd,
    conv_forward_winograd,
    conv_winograd_applies,
    winograd,
)
from cnnlab.runtime import threads
from tests.gradcheck import check_layer
from tests.test_direct import path_of, pytorch_pairs, reference

#: the float32 Winograd path against float64 sums: max |error| / max |value|, per output
#: (y, dW, dx); the issue's bound, measured at 2–6·10⁻⁷ on 16–128 channels
FLOAT32_TOLERANCE = 1e-4


def run(x, weight, bias, dy):
    y, saved = conv_forward_winograd(x, weight, bias)
    return (y, *conv_backward_winograd(dy, saved, weight))


@pytest.mark.parametrize("n, c, k, h, w", [
    (1, 1, 1, 1, 1), (3, 5, 7, 6, 9), (2, 3, 1, 5, 4), (9, 17, 6, 8, 8), (4, 32, 32, 14, 14),
    (2, 17, 2, 3, 11), (3, 20, 4, 7, 7), (2, 4, 3, 2, 1),
])
def test_winograd_equals_im2col_and_col2im_in_float64(n, c, k, h, w, rng, n_threads, monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK_VALUES", 4096)  # several chunks, even of one sample
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((k, c, 3, 3))
    bias = rng.standard_normal(k)
    dy = rng.standard_normal((n, k, h, w))
    expected = reference(x, weight, bias, dy)
    got = run(x, weight, bias, dy)
    for name, a, b in zip(("y", "dW", "db", "dx"), got, expected, strict=True):
        assert a.shape == b.shape and a.dtype == np.float64, name
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max(), err_msg=name)
    y, saved = conv_forward_winograd(x, weight, None)
    np.testing.assert_allclose(y, expected[0] - bias[:, None, None], rtol=1e-11, atol=1e-11 * 30)
    no_dx = conv_backward_winograd(dy, saved, weight, input_grad=False, bias_grad=False)
    assert no_dx[1] is None and no_dx[2] is None
    np.testing.assert_array_equal(no_dx[0], got[1])


@pytest.mark.parametrize("n, c, k, h, w", [(5, 16, 32, 14, 14), (3, 17, 40, 9, 7), (1, 3, 8, 4, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kept_tiles_give_the_bits_of_recomputed_ones(n, c, k, h, w, dtype, rng, n_threads,
                                                     monkeypatch):
    """keep_tiles=True: backward reads the forward's V instead of transforming x again, the
    same dW, db and dx bit for bit, with dx and without; and a thread count changed between
    forward and backward (other chunks) falls back to recomputing."""
    monkeypatch.setattr(winograd, "CHUNK_VALUES", 4096)  # several chunks
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((k, c, 3, 3)).astype(dtype)
    dy = rng.standard_normal((n, k, h, w)).astype(dtype)
    for input_grad in (True, False):
        y, saved = conv_forward_winograd(x, weight, None)
        expected = conv_backward_winograd(dy, saved, weight, input_grad=input_grad)
        y_kept, kept = conv_forward_winograd(x, weight, None, keep_tiles=True)
        assert isinstance(kept, winograd.Kept) and len(kept.planes) == len(kept.spans) >= min(n, 2)
        assert y_kept.tobytes() == y.tobytes()
        got = conv_backward_winograd(dy, kept, weight, input_grad=input_grad)
        for name, a, b in zip(("dW", "db", "dx"), got, expected, strict=True):
            assert (a is None) == (b is None) and (a is None or a.tobytes() == b.tobytes()), name
    monkeypatch.setattr(winograd, "CHUNK_VALUES", 1 << 20)  # 1 chunk on 1 thread, 2 on 2
    _, kept = conv_forward_winograd(x, weight, None, keep_tiles=True)
    other = 3 - threads.num_threads()  # 1 ↔ 2
    with _threads(other):
        if n > 1:  # other chunks than the forward's: backward recomputes V
            assert winograd._chunk_spans(n, c + k, -(-h // 2) * -(-w // 2)) != kept.spans
        got = conv_backward_winograd(dy, kept, weight)
        expected = conv_backward_winograd(dy, conv_forward_winograd(x, weight, None)[1], weight)
    for a, b in zip(got, expected, strict=True):
        assert a.tobytes() == b.tobytes()


def _threads(count):
    @contextlib.contextmanager
    def using():
        before = threads.num_threads()
        threads.set_num_threads(count)
        try:
            yield
        finally:
            threads.set_num_threads(before)

    return using()


def test_a_layer_keeps_the_tiles_where_they_cost_at_most_twice_its_output(rng, monkeypatch):
    """Conv2D keeps V in training when 2·C ≤ K (fmnist-cnn's 32 → 64), not otherwise (ResNet's
    32 → 32), and never in inference."""
    asked = []
    forward = cl.kernels.conv_forward_winograd

    def recording(x, weight, bias, keep_tiles=False, epilogue=None):
        asked.append(keep_tiles)
        return forward(x, weight, bias, keep_tiles, epilogue)

    monkeypatch.setattr(cl.kernels, "conv_forward_winograd", recording)
    monkeypatch.setattr(cl.kernels, "conv_gather_applies", lambda *args: False)
    x = rng.standard_normal((2, 32, 14, 14)).astype(np.float32)
    for filters, keeps in ((64, True), (32, False)):
        model = cl.Sequential([cl.Conv2D(filters, 3, padding=1)], input_shape=(32, 14, 14))
        conv = model.layers[0]
        assert conv._path() == "winograd"
        conv.forward(x, training=True)
        assert isinstance(conv._cache[1], winograd.Kept) == keeps
        conv.backward(np.ones((2, filters, 14, 14), np.float32))
        conv.forward(x)
    assert asked == [True, False, False, False]


@pytest.mark.parametrize("c, k, size", [(16, 32, 28), (64, 64, 14), (128, 128, 8), (64, 128, 9)])
def test_float32_stays_within_its_stated_tolerance(c, k, size, rng):
    x = rng.standard_normal((4, c, size, size))
    weight = rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)  # He-like: outputs of order 1
    bias = rng.standard_normal(k)
    dy = rng.standard_normal((4, k, size, size))
    exact = reference(x, weight, bias, dy)
    f32 = [a.astype(np.float32) for a in (x, weight, bias, dy)]
    for name, a, b in zip(("y", "dW", "db", "dx"), run(*f32), exact, strict=True):
        assert a.dtype == np.float32
        assert np.abs(a - b).max() / np.abs(b).max() <= FLOAT32_TOLERANCE, name


def test_non_finite_inputs_stay_within_a_pixel_of_the_direct_sums(rng):
    """An inf or NaN reaches every output of the 2×2 tiles whose 4×4 inputs hold it, so it may
    reach one row or column of outputs beyond the 3×3 the direct sum makes non-finite (and an
    inf may come out as NaN): the same outputs, grown by at most one pixel."""
    x = rng.standard_normal((2, 17, 8, 9))
    x[0, 3, 2, 5] = np.inf
    x[1, 0, 7, 0] = np.nan
    weight = rng.standard_normal((4, 17, 3, 3))
    with np.errstate(invalid="ignore"):
        y, _ = conv_forward_winograd(x, weight, None)
        direct = ~np.isfinite(reference(x, weight, np.zeros(4), np.zeros_like(y))[0])
    ours = ~np.isfinite(y)
    assert (ours | ~direct).all()  # every output the direct sum spoils is spoilt here
    padded = np.pad(direct, ((0, 0), (0, 0), (1, 1), (1, 1)))
    grown = np.zeros_like(direct)  # the direct sum's spoilt outputs and their 8 neighbours
    for u in range(3):
        for v in range(3):
            grown |= padded[:, :, u : u + 8, v : v + 9]
    assert not (ours & ~grown).any()
    finite = ~ours
    assert finite.sum() > 0.8 * y.size


def test_layers_take_the_winograd_path_where_it_was_measured_faster(monkeypatch):
    """Where the gather path's vector code runs, it takes the 3×3 layers of up to 64 channels
    whose channels and filters are multiples of its width (tests/test_gather.py), in training on
    AVX-512 only; these are the layers Winograd takes without it (float64, other processors,
    CNNLAB_SIMD=0)."""
    conv3 = {"kernel_size": 3, "padding": 1}
    gathered = "gather" if cl.kernels.gather_trains_ahead_of_winograd() else "winograd"
    assert path_of({"filters": 32, **conv3}, (32, 14, 14)) == gathered
    assert path_of({"filters": 32, **conv3}, (20, 14, 14)) == "winograd"  # 20: not a multiple of 8
    assert path_of({"filters": 128, **conv3}, (128, 14, 14)) == "winograd"  # more than 64 channels
    monkeypatch.setattr(cl.kernels, "conv_gather_applies", lambda *args: False)
    assert path_of({"filters": 32, **conv3}, (32, 14, 14)) == "winograd"  # ResNet stage 2
    assert path_of({"filters": 64, **conv3}, (32, 14, 14)) == "winograd"  # fmnist-cnn
    assert path_of({"filters": 32, **conv3}, (16, 28, 28)) == "winograd"
    assert path_of({"filters": 16, **conv3}, (16, 28, 28)) == "direct"  # ≤ 16: the direct loops
    assert path_of({"filters": 32, **conv3}, (32, 8, 10)) == "winograd"
    assert path_of({"filters": 64, **conv3}, (64, 7, 7)) == "same"  # 49 of 64 tile outputs
    assert path_of({"filters": 64, **conv3}, (64, 7, 20)) == "same"  # less than 8 rows
    assert path_of({"filters": 64, **conv3}, (8, 14, 14)) == "same"  # fewer than 16 channels
    assert path_of({"filters": 64, "kernel_size": 3, "padding": 2}, (32, 14, 14)) == "plain"
    assert path_of({"filters": 64, **conv3, "stride": 2, "fit": "floor"}, (32, 14, 14)) == "same"
    assert not conv_winograd_applies(3, 3, 1, ((1, 2), (1, 1)))
    monkeypatch.setattr(compiled, "HAVE_NUMBA", False)  # without Numba: the NumPy paths
    assert path_of({"filters": 32, **conv3}, (32, 14, 14)) == "same"


def test_a_winograd_layer_matches_pytorch(rng, torch):
    layer = cl.layers.Conv2D(20, 3, padding=1)
    pairs = pytorch_pairs(layer, (18, 10, 9), rng, torch)
    assert layer._path() == "winograd"
    for a, b in pairs:
        assert np.abs(a - b).max() <= FLOAT32_TOLERANCE * np.abs(b).max()


def test_a_winograd_layer_passes_the_numeric_gradient_check(rng):
    x = rng.standard_normal((2, 16, 8, 9))
    layer = cl.layers.Conv2D(17, 3, padding=1).build(x.shape[1:], rng=rng, dtype=np.float64)
    layer.bias.data[...] = rng.standard_normal(17)
    assert layer._path() == "winograd"
    check_layer(layer, x, rng)
