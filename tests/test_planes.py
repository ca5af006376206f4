"""kernels.planes: the vector loop that copies a convolution's input into zero-padded planes
writes exactly what NumPy's assignments write (the same bits), for every layout its callers
hand it, and refuses what it would misread."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.kernels import planes, simd
from cnnlab.kernels.wide import fill_wide_planes

pytestmark = pytest.mark.skipif(simd._isa() is None,
                                reason="the vector code runs on x86-64 with AVX2 or AVX-512")


def numpy_fill(out: np.ndarray, inside: np.ndarray, top: int, left: int) -> None:
    """The reference: zeros, then the values."""
    h, w = inside.shape[2:]
    out[...] = 0
    out[:, :, top : top + h, left : left + w] = inside


def garbage(shape) -> np.ndarray:
    """Planes full of NaN, so that a value the loop leaves unwritten shows."""
    return np.full(shape, np.nan, np.float32)


@pytest.mark.parametrize("lanes", [8, 16])  # AVX2's and AVX-512's width (LLVM splits 16 on AVX2)
@pytest.mark.parametrize("shape, top, left, hp, wp", [
    ((16, 9, 28, 28), 1, 1, 31, 30),  # the direct path: one more row below
    ((8, 40, 14, 14), 1, 1, 16, 16),  # the gather path
    ((64, 8, 7, 7), 1, 1, 9, 9),  # fewer values per row than a vector
    ((3, 700, 5, 23), 2, 0, 9, 27),  # other padding: 0 left, 4 right, 2 above
    ((4, 300, 8, 16), 0, 3, 8, 19),  # no rows of zeros; a row of two whole vectors
    ((2, 2000, 1, 1), 1, 1, 4, 3),
])
def test_the_loop_writes_numpys_planes(lanes, shape, top, left, hp, wp, rng, monkeypatch):
    monkeypatch.setattr(simd, "_isa", lambda: "avx512" if lanes == 16 else "avx2")
    c, m, h, w = shape
    assert c * m * hp * wp >= planes.SMALLEST
    inside = rng.standard_normal((m, c, h, w)).astype(np.float32).transpose(1, 0, 2, 3)
    got, expected = garbage((c, m, hp, wp)), garbage((c, m, hp, wp))
    assert planes.fill(got, inside, top, left)
    numpy_fill(expected, inside, top, left)
    np.testing.assert_array_equal(got, expected)


def test_any_strides_with_contiguous_rows(rng):
    """Part of a batch's planes (the direct path fills samples n0:n1 of the whole batch's) from
    a batch in (C, N, H, W) memory (a convolution's output), a channel slice, or flipped rows."""
    batch = rng.standard_normal((24, 100, 14, 14)).astype(np.float32)
    whole = garbage((24, 100, 16, 16))
    expected = whole.copy()
    part, reference = whole[:, 40:90], expected[:, 40:90]
    for inside in (batch[:, 40:90], batch.transpose(1, 0, 2, 3)[40:90].transpose(1, 0, 2, 3),
                   batch[:, 40:90, ::-1]):
        assert planes.fill(part, inside, 1, 1)
        numpy_fill(reference, inside, 1, 1)
        np.testing.assert_array_equal(whole, expected)  # nothing outside the part written
    assert np.isnan(whole[:, :40]).all() and np.isnan(whole[:, 90:]).all()


def test_fill_wide_planes_gives_the_same_bits_either_way(rng, monkeypatch):
    x = rng.standard_normal((64, 16, 28, 28)).astype(np.float32)
    got, expected = garbage((16, 64, 31, 30)), garbage((16, 64, 31, 30))
    fill_wide_planes(got, x, ((1, 1), (1, 1)), 8, 56)
    monkeypatch.setattr(planes, "fill", lambda *args: False)
    fill_wide_planes(expected, x, ((1, 1), (1, 1)), 8, 56)
    np.testing.assert_array_equal(got, expected)


def test_what_the_loop_leaves_to_numpy(rng, monkeypatch):
    """It writes nothing and says False where it would misread or where NumPy is as fast."""
    inside = rng.standard_normal((16, 40, 14, 14)).astype(np.float32)
    out = garbage((16, 40, 16, 16))
    refused = [
        (out[:2, :2], inside[:2, :2]),  # fewer values than SMALLEST: NumPy's copy is as fast
        (out.astype(np.float64), inside.astype(np.float64)),  # float32 only
        (out[:, :, :, ::-1], inside[:, :, :, ::-1]),  # rows not contiguous
        (out[:, :, :14], inside),  # inside does not fit under the padding
        (out[:, :39], inside),  # not the same planes
    ]
    for planes_, inside_ in refused:
        before = planes_.copy()
        assert not planes.fill(planes_, inside_, 1, 1)
        np.testing.assert_array_equal(planes_, before)
    shared = np.zeros((16, 40, 16, 16), np.float32)
    assert not planes.fill(shared, shared[:, :, 1:15, 1:15], 1, 1)  # reading what it writes
    readonly = garbage((16, 40, 16, 16))
    readonly.flags.writeable = False
    assert not planes.fill(readonly, inside, 1, 1)
    monkeypatch.setenv("CNNLAB_SIMD", "0")
    assert not planes.fill(out, inside, 1, 1)
    assert np.isnan(out).all()
