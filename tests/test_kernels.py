"""The stride-playing kernels against naive loops, independently of any layer."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.kernels import (
    avgpool_backward,
    avgpool_forward,
    col2im,
    col2im_same,
    compiled,
    conv_backward_same,
    conv_backward_wide,
    conv_forward_same,
    conv_forward_wide,
    conv_same_applies,
    conv_wide_applies,
    im2col,
    im2col_same,
    maxpool2x2_applies,
    maxpool2x2_backward,
    maxpool2x2_forward,
    maxpool_backward,
    maxpool_forward,
    out_size,
    relu_grad,
)
from cnnlab.kernels.chunks import _spans, conv_backward_chunks

WINDOWS = [(3, 3, 1, 0), (3, 3, 2, 1), (2, 2, 2, 0), (5, 5, 3, 2), (2, 3, 1, 1), (1, 1, 2, 0)]


def naive_im2col(x, kh, kw, s, p):
    """Rows of windows (N·H_out·W_out, C·kh·kw), row (n, i, j): the transpose of im2col."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    h_out, w_out = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    rows = []
    for i in range(n):
        for r in range(h_out):
            for q in range(w_out):
                rows.append(xp[i, :, r * s : r * s + kh, q * s : q * s + kw].ravel())
    return np.array(rows)


@pytest.mark.parametrize("kh, kw, stride, padding", WINDOWS)
def test_im2col_matches_a_naive_loop(kh, kw, stride, padding, rng):
    x = rng.standard_normal((2, 3, 8, 7))
    np.testing.assert_array_equal(
        im2col(x, kh, kw, stride, padding), naive_im2col(x, kh, kw, stride, padding).T
    )


@pytest.mark.parametrize("kh, kw, stride, padding", WINDOWS)
def test_col2im_is_the_adjoint_of_im2col(kh, kw, stride, padding, rng):
    # <im2col(x), c> == <x, col2im(c)> for all x, c  ⇔  col2im is im2col's backward
    x = rng.standard_normal((2, 3, 8, 7))
    cols = im2col(x, kh, kw, stride, padding)
    c = rng.standard_normal(cols.shape)
    assert np.isclose(np.sum(cols * c), np.sum(x * col2im(c, x.shape, kh, kw, stride, padding)))


def test_asymmetric_padding_pads_the_named_sides(rng):
    x = rng.standard_normal((1, 1, 3, 3))
    cols = im2col(x, 2, 2, 1, ((0, 1), (1, 0))).T  # bottom row and left column of zeros
    assert cols.shape == (3 * 3, 4)
    np.testing.assert_array_equal(cols[0], [0, x[0, 0, 0, 0], 0, x[0, 0, 1, 0]])
    np.testing.assert_array_equal(cols[-1], [x[0, 0, 2, 1], x[0, 0, 2, 2], 0, 0])


def naive_pool(x, k, s, p, reduce, fill):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    h_out, w_out = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    y = np.empty((n, c, h_out, w_out))
    for r in range(h_out):
        for q in range(w_out):
            y[:, :, r, q] = reduce(xp[:, :, r * s : r * s + k, q * s : q * s + k], axis=(2, 3))
    return y


@pytest.mark.parametrize("k, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
def test_pools_match_naive_loops(k, stride, padding, rng):
    x = rng.standard_normal((2, 3, 7, 8))
    y = maxpool_forward(x, k, k, stride, padding)
    np.testing.assert_array_equal(y, naive_pool(x, k, stride, padding, np.max, -np.inf))
    np.testing.assert_allclose(
        avgpool_forward(x, k, k, stride, padding), naive_pool(x, k, stride, padding, np.mean, 0)
    )
    # backward: the adjoint identity <pool'(x)·dx, dy> = <dx_route, x-shaped> on random dy
    dy = rng.standard_normal(y.shape)
    dx = maxpool_backward(dy, x, y, k, k, stride, padding)
    assert np.isclose(dx.sum(), dy.sum())  # every dy lands on exactly one input (no padding wins)
    da = avgpool_backward(dy, x.shape, k, k, stride, padding)
    x2 = rng.standard_normal(x.shape)
    assert np.isclose(np.sum(avgpool_forward(x2, k, k, stride, padding) * dy), np.sum(x2 * da))


def test_maxpool_routes_gradient_to_the_argmax():
    x = np.array([[[[1.0, 5.0], [3.0, 2.0]]]])
    y = maxpool_forward(x, 2, 2, 2, 0)
    assert y.item() == 5.0
    dx = maxpool_backward(np.array([[[[7.0]]]]), x, y, 2, 2, 2, 0)
    np.testing.assert_array_equal(dx, [[[[0, 7.0], [0, 0]]]])


@pytest.mark.parametrize(
    "size, stride, expected",
    [
        (4, 2, [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]),
        (3, 1, [[1, 1, 0], [1, 1, 0], [0, 0, 0]]),
    ],
)
def test_maxpool_ties_go_to_the_first_maximum_like_pytorch(size, stride, expected):
    # after a ReLU whole windows are 0: exactly one position per window gets dy, the first
    x = np.zeros((1, 1, size, size))
    y = maxpool_forward(x, 2, 2, stride, 0)
    dx = maxpool_backward(np.ones_like(y), x, y, 2, 2, stride, 0)
    np.testing.assert_array_equal(dx[0, 0], expected)


def _layouts(a: np.ndarray) -> list[np.ndarray]:
    """The same (N, C, H, W) values in NCHW memory, behind an (N, C, H, W) view of CNHW memory
    (what convolutions hand on), and as a non-contiguous slice (the fast path copies)."""
    cnhw = np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    wide = np.zeros((*a.shape[:3], a.shape[3] + 2), a.dtype)
    wide[..., 1:-1] = a
    return [np.ascontiguousarray(a), cnhw, wide[..., 1:-1]]


@pytest.mark.parametrize("compiled_on", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 4, 6, 8), (1, 1, 2, 2), (2, 5, 4, 2), (2, 3, 4, 6)])
def test_maxpool_2x2_fast_path_equals_the_plain_path_with_ties(shape, dtype, compiled_on, rng,
                                                               monkeypatch):
    """Both 2×2 paths (compiled with Numba, and NumPy's masks) against the plain one, bit for
    bit: small integers make many ties inside windows, the case where the first-max rule
    matters; ±inf are values like others."""
    monkeypatch.setattr(compiled, "HAVE_NUMBA", compiled_on)
    a = rng.integers(-2, 3, shape).astype(dtype)
    if shape == (2, 3, 4, 6):
        a.reshape(-1)[[0, 5, 13, 31]] = [np.inf, np.inf, -np.inf, -np.inf]
    for x in _layouts(a):
        assert maxpool2x2_applies(x, 2, 2, 2, 0)
        y = maxpool_forward(x, 2, 2, 2, 0)
        y_fast, masks = maxpool2x2_forward(x, masks=True)
        np.testing.assert_array_equal(y_fast, y)
        np.testing.assert_array_equal(maxpool2x2_forward(x), y)
        for dy in _layouts(rng.standard_normal(y.shape).astype(dtype)):
            dx_fast = maxpool2x2_backward(dy, masks)
            assert dx_fast.dtype == dtype and dx_fast.shape == x.shape
            np.testing.assert_array_equal(dx_fast, maxpool_backward(dy, x, y, 2, 2, 2, 0))


def test_maxpool_2x2_compiled_equals_the_numpy_masks_with_nan(rng, monkeypatch):
    """NaN wins the forward on both 2×2 paths, as np.maximum lets it; their gradients go where
    the strict comparisons send them, the same on both (the plain path's argmax picks the NaN
    itself instead)."""
    x = rng.integers(-2, 3, (2, 3, 4, 6)).astype(np.float32)
    x.reshape(-1)[[0, 5, 13, 30, 31, 47]] = [np.nan, np.inf, -np.inf, np.nan, np.inf, np.nan]
    dy = rng.standard_normal((2, 3, 2, 3)).astype(np.float32)
    dy[0, 0, 0, 1] = np.inf
    results = []
    for compiled_on in (True, False):
        monkeypatch.setattr(compiled, "HAVE_NUMBA", compiled_on)
        y, masks = maxpool2x2_forward(x, masks=True)
        with np.errstate(invalid="ignore"):  # inf·0 in the window of dy's inf: NaN on both
            results.append((y, maxpool2x2_backward(dy, masks)))
    np.testing.assert_array_equal(results[0][0], maxpool_forward(x, 2, 2, 2, 0))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("window, shape", [
    ((3, 3, 2, 0), (1, 1, 5, 5)), ((2, 2, 1, 0), (1, 1, 4, 4)), ((2, 2, 2, 1), (1, 1, 4, 4)),
    ((2, 2, 2, 0), (1, 1, 5, 4)), ((2, 2, 2, 0), (1, 1, 4, 3)),
])
def test_maxpool_2x2_fast_path_refuses_other_windows(window, shape):
    assert not maxpool2x2_applies(np.zeros(shape), *window)


@pytest.mark.parametrize("kh, kw, padding", [
    (3, 3, ((1, 1), (1, 1))), (3, 3, ((0, 0), (0, 0))), (4, 4, ((1, 2), (1, 2))),
    (2, 5, ((1, 0), (0, 4))), (1, 1, ((0, 0), (0, 0))), (5, 5, ((2, 2), (2, 2))),
])
@pytest.mark.parametrize("n", [1, 3, 70])  # 70 samples: several chunks of _chunk
@pytest.mark.parametrize("k", [2, 3, 5])  # fewer, as many and more filters than channels
@pytest.mark.parametrize("dx_by", [None, "col2im", "flip"])
def test_stride1_fast_conv_equals_im2col_and_col2im(kh, kw, padding, n, k, dx_by, rng):
    assert conv_wide_applies(kh, kw, 1, padding)
    c, h, w = 3, 9, 8
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((k, c, kh, kw))
    bias = rng.standard_normal(k)
    w_mat = weight.reshape(k, -1)
    cols = im2col(x, kh, kw, 1, padding)
    h_out, w_out = h + sum(padding[0]) - kh + 1, w + sum(padding[1]) - kw + 1
    expected = (w_mat @ cols + bias[:, None]).reshape(k, n, h_out, w_out).transpose(1, 0, 2, 3)
    y, x_pad = conv_forward_wide(x, w_mat, bias, kh, kw, padding)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(k, -1)
    dw, db, dx = conv_backward_wide(dy, x_pad, weight, padding, dx_by=dx_by)
    np.testing.assert_allclose(dw.reshape(k, -1), dy_mat @ cols.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, dy_mat.sum(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, col2im(w_mat.T @ dy_mat, x.shape, kh, kw, 1, padding),
                               rtol=1e-12, atol=1e-12)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    no_dx = conv_backward_wide(dy, x_pad, weight, padding, input_grad=False, dx_by=dx_by)
    assert no_dx[2] is None
    np.testing.assert_array_equal(no_dx[0], dw)


@pytest.mark.parametrize("kh, stride, padding", [(3, 2, 1), (3, 1, 3), (1, 1, 1)])
def test_stride1_fast_conv_refuses_other_windows(kh, stride, padding):
    assert not conv_wide_applies(kh, kh, stride, padding)


def test_stride1_fast_conv_backward_names_an_unknown_dx_way(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    weight = rng.standard_normal((4, 3, 3, 3))
    y, x_pad = conv_forward_wide(x, weight.reshape(4, -1), None, 3, 3, ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="dx_by must be 'col2im', 'flip' or None"):
        conv_backward_wide(np.ones(y.shape), x_pad, weight, ((1, 1), (1, 1)), dx_by="fft")


# --------------------------------------------------------- "same"-size convolution, fast path
SAME = [  # (kh, kw, stride, padding): output (H/S, W/S) on the maps below
    (3, 3, 1, ((1, 1), (1, 1))), (4, 4, 1, ((1, 2), (1, 2))), (2, 5, 1, ((1, 0), (2, 2))),
    (1, 1, 1, ((0, 0), (0, 0))), (5, 5, 1, ((2, 2), (2, 2))), (4, 2, 1, ((3, 0), (0, 1))),
    (3, 3, 2, ((1, 1), (1, 1))), (1, 1, 2, ((0, 0), (0, 0))), (3, 3, 2, ((0, 1), (0, 1))),
    (4, 4, 2, ((1, 1), (1, 1))), (5, 3, (2, 1), ((2, 1), (1, 1))), (7, 7, 2, ((3, 2), (3, 2))),
    (3, 3, 3, ((0, 0), (0, 0))), (5, 5, 3, ((1, 1), (1, 1))),
]
SAME_MAPS = {1: [(9, 8), (1, 1), (2, 3), (6, 1)], 2: [(6, 8), (2, 2), (4, 2)], 3: [(9, 6), (3, 3)]}


def _same_maps(stride):
    return [(h, w) for h, w in SAME_MAPS[np.max(stride)]
            if h % np.atleast_1d(stride)[0] == 0 and w % np.atleast_1d(stride)[-1] == 0]


@pytest.mark.parametrize("kh, kw, stride, padding", SAME)
def test_same_im2col_and_col2im_equal_the_plain_ones(kh, kw, stride, padding, rng):
    for h, w in _same_maps(stride):  # also maps smaller than the kernel
        assert conv_same_applies(h, w, kh, kw, stride, padding)
        x = rng.standard_normal((3, 2, h, w))
        xc = np.ascontiguousarray(x.transpose(1, 0, 2, 3))
        expected = im2col(x, kh, kw, stride, padding)
        np.testing.assert_array_equal(im2col_same(xc, kh, kw, stride, padding), expected)
        cols = rng.standard_normal(expected.shape)
        out = np.full(xc.shape, np.nan)  # every entry must be written
        col2im_same(cols.copy(), out, kh, kw, stride, padding)
        np.testing.assert_allclose(out.transpose(1, 0, 2, 3),
                                   col2im(cols, x.shape, kh, kw, stride, padding),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kh, kw, stride, padding", SAME)
@pytest.mark.parametrize("n", [1, 3, 70])  # 70 samples: several chunks of _chunk
@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("bias", [True, False])
def test_same_fast_conv_equals_im2col_and_col2im(kh, kw, stride, padding, n, k, bias, rng):
    c, (h, w) = 3, _same_maps(stride)[0]
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((k, c, kh, kw))
    b = rng.standard_normal(k) if bias else None
    w_mat = weight.reshape(k, -1)
    cols = im2col(x, kh, kw, stride, padding)
    h_out, w_out = out_size(h, w, kh, kw, stride, padding)
    expected = (w_mat @ cols + (b[:, None] if bias else 0)).reshape(k, n, h_out, w_out)
    for layout in _layouts(x):
        y, xc = conv_forward_same(layout, w_mat, b, kh, kw, stride, padding)
        np.testing.assert_allclose(y, expected.transpose(1, 0, 2, 3), rtol=1e-12, atol=1e-12)
        assert y.dtype == x.dtype
    dy = rng.standard_normal(y.shape)
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(k, -1)
    dw, db, dx = conv_backward_same(dy, xc, weight, stride, padding)
    np.testing.assert_allclose(dw.reshape(k, -1), dy_mat @ cols.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, dy_mat.sum(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, col2im(w_mat.T @ dy_mat, x.shape, kh, kw, stride, padding),
                               rtol=1e-12, atol=1e-12)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    no_dx = conv_backward_same(dy, xc, weight, stride, padding, input_grad=False)
    assert no_dx[2] is None
    np.testing.assert_array_equal(no_dx[0], dw)
    no_db = conv_backward_same(dy, xc, weight, stride, padding, bias_grad=False)
    assert no_db[1] is None
    np.testing.assert_array_equal(no_db[2], dx)


@pytest.mark.parametrize("size, kh, stride, padding", [
    (8, 3, 1, 0), (8, 3, 1, ((1, 1), (0, 1))), (8, 1, 1, 1), (8, 4, 1, ((1, 1), (1, 2))),
    (7, 3, 2, 1), (8, 3, 2, 0), (8, 3, 2, 2), (9, 3, 3, 2),
])
def test_same_fast_conv_refuses_other_windows(size, kh, stride, padding):
    assert not conv_same_applies(size, size, kh, kh, stride, padding)


def test_same_im2col_writes_every_entry(monkeypatch, rng):
    # the runs leave |s| entries at an end unwritten and rely on _outside to zero them: with
    # np.empty handing out NaN, any entry left over would show
    empty = np.empty

    def nan_empty(shape, dtype=float, *args, **kwargs):
        out = empty(shape, dtype, *args, **kwargs)
        if np.issubdtype(out.dtype, np.floating):
            out.fill(np.nan)
        return out

    monkeypatch.setattr(np, "empty", nan_empty)
    for kh, kw, stride, padding in SAME:
        for h, w in _same_maps(stride):
            x = rng.standard_normal((3, 2, h, w))
            np.testing.assert_array_equal(
                im2col_same(np.ascontiguousarray(x.transpose(1, 0, 2, 3)), kh, kw, stride, padding),
                im2col(x, kh, kw, stride, padding))


def test_same_col2im_refuses_an_out_whose_planes_it_cannot_add_into(rng):
    out = np.zeros((2, 3, 4, 6))[..., :4]  # each row a slice: no flat (n, H, W) run per channel
    cols = rng.standard_normal((2 * 9, 3 * 4 * 4))
    with pytest.raises(ValueError, match="must be contiguous"):
        col2im_same(cols, out, 3, 3, 1, ((1, 1), (1, 1)))


# ------------------------------------------------- the chunks and the shared backward skeleton
def test_spans_cut_the_batch_into_equal_chunks_a_multiple_of_the_threads(n_threads):
    assert _spans(128, 37) == [(0, 32), (32, 64), (64, 96), (96, 128)]  # not 37, 37, 37, 17
    assert _spans(128, 50) == ([(0, 32), (32, 64), (64, 96), (96, 128)] if n_threads == 2 else
                               [(0, 43), (43, 86), (86, 128)])
    assert _spans(5, 100) == ([(0, 3), (3, 5)] if n_threads == 2 else [(0, 5)])


def test_backward_skeleton_hands_each_chunk_its_dy_and_adds_the_parts_in_chunk_order(n_threads, rng):
    dy = rng.standard_normal((10, 3, 4, 5))
    spans = [(0, 4), (4, 7), (7, 10)]
    # 1e16 + 1 rounds back to 1e16: only the order (p0 + p1) + p2 gives 0, any other gives 1
    parts = [np.full((3, 2), 1e16), np.full((3, 2), 1.0), np.full((3, 2), -1e16)]
    seen = []

    def part(i, span, dy_chunk):
        seen.append((i, span))
        np.testing.assert_array_equal(dy_chunk, dy[span[0] : span[1]].transpose(1, 0, 2, 3))
        return parts[i]

    dw, db = conv_backward_chunks(dy, spans, part)
    assert sorted(seen) == list(enumerate(spans))
    np.testing.assert_array_equal(dw, np.zeros((3, 2)))
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
    assert conv_backward_chunks(dy, spans, part, bias_grad=False)[1] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_grad_compiled_equals_the_numpy_mask(dtype, rng, n_threads):
    """kernels.relu_grad's compiled pass against dy·(y > 0) bit for bit, NaN and ±inf in dy
    included, through the ReLU layer (large enough for cnnlab's threads to split it), and on
    arrays that are not contiguous (NumPy's path)."""
    x = rng.standard_normal((4, 16, 64, 65)).astype(dtype)
    x.reshape(-1)[:4] = [0.0, -0.0, np.nan, np.inf]
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy.reshape(-1)[4:10] = [np.nan, np.inf, -np.inf, np.nan, np.inf, -np.inf]
    relu = cl.ReLU().build(x.shape[1:], dtype=dtype)
    y = relu.forward(x, training=True)
    with np.errstate(invalid="ignore"):
        expected = np.multiply(dy, y > 0)
        got = relu.backward(dy)
        out = np.empty_like(dy[:, :, ::2])
        relu_grad(out, dy[:, :, ::2], y[:, :, ::2])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(out, expected[:, :, ::2])
