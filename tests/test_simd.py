"""The direct path's explicit vector correlation (kernels/simd.py) against Numba's loop
(direct.correlate3x3): the same multiply-adds in the same order, so the same bits, for every
shape the direct path takes and for both blockings (AVX-512's and AVX2's; the AVX2 code also
runs on an AVX-512 processor), NaN and ±inf included; and the layers and training steps that
use it, bit for bit with and without it (CNNLAB_SIMD=0)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from cnnlab.kernels import direct, simd
from tests import steps

ISA = simd._isa()
BLOCKINGS = [name for name in simd.SHAPES if ISA == "avx512" or name == ISA]


def _padded(rng, c: int, m: int, h: int, w: int, slack: int):
    """m samples of c channels in the direct path's padded layout ((C, m·(h + 3)·(w + 2)) rows,
    zero borders), `slack` zeros after the last row, NaN and ±inf among the values."""
    hp, wp = h + 3, w + 2
    planes, xs = direct._padded_planes(c, m, hp, wp, np.float32, slack)
    x = rng.standard_normal((m, c, h, w)).astype(np.float32)
    x.reshape(-1)[[0, x.size // 2, x.size - 1]] = [np.nan, np.inf, -np.inf]
    direct.fill_wide_planes(planes, x, direct.PAD)
    return xs, wp


@pytest.mark.skipif(not BLOCKINGS, reason="needs an x86-64 processor with AVX2 or AVX-512")
@pytest.mark.parametrize("name", BLOCKINGS)
@pytest.mark.parametrize("c, k", [(1, 16), (1, 32), (3, 8), (2, 5), (4, 16), (16, 16), (16, 7)])
@pytest.mark.parametrize("h, w", [(28, 28), (7, 5), (1, 1)])
def test_kernel_makes_the_numba_loops_sums_bit_for_bit(name, c, k, h, w, rng):
    kernel = simd._compiled(*simd.SHAPES[name])
    m = 3
    hp, wp = h + 3, w + 2
    plane = hp * wp
    xs, wp = _padded(rng, c, m, h, w, kernel.slack(wp))
    weight = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    weight[0, 0, 1, 1] = 0.0  # 0·inf: NaN in both
    for start, samples in ((0, m), (plane, m - 1), (2 * plane, 1)):
        count = samples * plane - 2 * wp - 2
        expected = np.empty((k + k % 2, samples * plane), np.float32)
        direct.loops()[0](xs, direct._even(weight, np.float32), expected, start, count, wp)
        packed = kernel.pack(weight)
        out = np.full((packed.shape[0] * kernel.filters, direct._blocks(count, kernel.block)),
                      7.0, np.float32)
        kernel.correlate(xs, packed, out, start, count, wp)
        np.testing.assert_array_equal(out[:k, :count], expected[:k, :count])
        assert np.array_equal(np.signbit(out[:k, :count]), np.signbit(expected[:k, :count]))


def test_the_kernel_is_none_for_float64_and_with_cnnlab_simd_0(monkeypatch):
    assert simd.kernel(np.float64) is None
    monkeypatch.setenv("CNNLAB_SIMD", "0")
    assert simd.kernel(np.float32) is None
    monkeypatch.setenv("CNNLAB_SIMD", "1")
    if ISA is None:
        assert simd.kernel(np.float32) is None
    else:
        assert simd.kernel(np.float32).lanes == simd.SHAPES[ISA][0]


def test_pack_orders_filters_last_and_pads_them_with_zeros(rng):
    kernel = simd.Kernel(16, 3, 8, None, None)
    w = rng.standard_normal((10, 3, 3, 3)).astype(np.float32)
    packed = kernel.pack(w)
    assert packed.shape == (2, 3, 9, 8) and packed.flags.c_contiguous
    assert packed[1, 2, 5, 1] == w[9, 2, 1, 2]
    assert not packed[1, :, :, 2:].any()  # filters 10 … 15 are zeros


def _step_digest(name: str) -> str:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 12, 1, 28, 28)).astype(np.float32)
    model = steps.trained(name, x, rng.integers(0, 10, (2, 12)))
    h = hashlib.sha256(model.forward(x[0]).tobytes())
    for key, p in sorted(model.parameters().items()):
        h.update(key.encode())
        h.update(p.data.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", ["fmnist-cnn", "fmnist-cnn-bn", "resnet8"])
def test_training_steps_are_the_same_bits_with_and_without_the_kernel(name, monkeypatch,
                                                                      n_threads):
    """Two SGD steps and an inference: fmnist-cnn's and fmnist-cnn-bn's first layer (1 channel,
    32 filters, forward only) and ResNet-8's 16 → 16 layers (forward and dx) through the
    kernel, then through Numba's loop (the direct path's kernel alone switched off: ResNet-8's
    64 → 64 layers keep the gather path's vector code, which CNNLAB_SIMD=0 would replace by other
    sums)."""
    with_kernel = _step_digest(name)
    monkeypatch.setattr(simd, "kernel", lambda dtype: None)
    assert with_kernel == _step_digest(name)


def test_an_llvmlite_that_cannot_build_it_leaves_numbas_loop(monkeypatch):
    def fails(*shape):
        raise RuntimeError("LLVM IR parsing error")  # what an llvmlite before opaque pointers says

    monkeypatch.setattr(simd, "_compiled", fails)
    simd._built.cache_clear()
    try:
        for isa in simd.SHAPES:
            assert simd._built(isa) is None
    finally:
        simd._built.cache_clear()


@pytest.mark.skipif(not BLOCKINGS, reason="needs an x86-64 processor with AVX2 or AVX-512")
def test_arrays_the_kernel_would_misread_are_refused_before_the_call(rng):
    """The kernel writes through raw pointers: a wrong dtype, too small an output, weights for
    another channel count or a start past the input raise a clear error instead."""
    kernel = simd._compiled(*simd.SHAPES[BLOCKINGS[0]])
    xs = np.zeros((4, 200 + kernel.slack(5)), np.float32)
    packed = kernel.pack(rng.standard_normal((8, 4, 3, 3)).astype(np.float32))
    out = np.zeros((8, direct._blocks(100, kernel.block)), np.float32)
    kernel.correlate(xs, packed, out, 0, 100, 5)  # accepted
    bad = [(xs.astype(np.float64), packed, out, 0), (xs, packed, out[:, :50], 0),
           (xs[:3], packed, out, 0), (xs, packed, out[:4], 0), (xs, packed, out, xs.shape[1])]
    for x_bad, p_bad, o_bad, start in bad:
        with pytest.raises(ValueError, match="simd.Kernel.correlate: needs float32"):
            kernel.correlate(x_bad, p_bad, o_bad, start, 100, 5)
