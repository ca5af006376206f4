"""The gather path (kernels/gather.py): 3×3 stride-1 convolutions as vector code over filters.
Its sums are in another order than the other paths', so it is held to a stated tolerance against
a float64 reference (relative to the largest value: 1e-5 in float32, measured 1e-7 … 2e-6), for
y, dx, dW and db, for both blockings (AVX-512's and AVX2's; the AVX2 code also runs on an
AVX-512 processor), odd map sizes, position counts that end mid-block and batches cut into
several chunks; NaN and ±inf where the reference has them; bit-identical repeats; the layers
that take it; and the refusal of arrays its raw pointers would misread."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.kernels import gather, simd
from cnnlab.runtime import threads

ISA = simd._isa()
pytestmark = pytest.mark.skipif(ISA is None, reason="the vector code runs on x86-64 with AVX2 or AVX-512")
ISAS = [name for name in gather.SHAPES if ISA == "avx512" or name == ISA]
TOLERANCE = 1e-5


def reference(x, w, b, dy, stride=1):
    """y, dx, dW, db in float64 by the definition: nine shifted products over the padded input.
    At stride 2 the stride-1 sums with dy spread onto the even positions (zeros between), and y
    taken at the even positions."""
    if stride == 2:
        spread = np.zeros((*dy.shape[:2], *x.shape[2:]))
        spread[:, :, ::2, ::2] = dy
        y, dx, dw, db = reference(x, w, b, spread)
        return y[:, :, ::2, ::2], dx, dw, db
    x, w, dy = (a.astype(np.float64) for a in (x, w, dy))
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.broadcast_to(b.astype(np.float64)[None, :, None, None], (n, w.shape[0], h, wd)).copy()
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for u in range(3):
        for v in range(3):
            window = xp[:, :, u : u + h, v : v + wd]
            y += np.einsum("nchw,kc->nkhw", window, w[:, :, u, v])
            dxp[:, :, u : u + h, v : v + wd] += np.einsum("nkhw,kc->nchw", dy, w[:, :, u, v])
            dw[:, :, u, v] = np.einsum("nkhw,nchw->kc", dy, window)
    return y, dxp[:, :, 1:-1, 1:-1], dw, dy.sum(axis=(0, 2, 3))


def close(ours, ref, what):
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    assert err <= TOLERANCE, f"{what}: relative error {err:.2e}"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("n, c, k, h, w", [
    (2, 16, 16, 7, 7), (3, 32, 32, 7, 5), (5, 16, 48, 1, 1), (4, 64, 64, 7, 7),
    (37, 16, 32, 9, 13),  # 37·9·13 positions: the last block of the forward loop is partial
    (96, 64, 64, 7, 7),  # several chunks
    (3, 16, 32, 28, 28), (4, 32, 64, 14, 14), (2, 16, 16, 2, 3),  # ResNet's stride-2 layers
])
def test_gather_matches_the_float64_definition(isa, stride, n, c, k, h, w, rng, monkeypatch,
                                               n_threads):
    monkeypatch.setattr(simd, "_isa", lambda: isa)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    dy = rng.standard_normal((n, k, (h - 1) // stride + 1, (w - 1) // stride + 1)).astype(np.float32)
    y, planes = gather.conv_forward_gather(x, weight, bias, stride)
    dw, db, dx = gather.conv_backward_gather(dy, planes, weight)
    refs = reference(x, weight, bias, dy, stride)
    for ours, ref, what in zip((y, dx, dw, db), refs, ("y", "dx", "dW", "db"), strict=True):
        assert ours.dtype == np.float32 and ours.shape == ref.shape, what
        close(ours, ref, what)


@pytest.mark.parametrize("c, k", [(16, 32), (40, 16), (24, 8), (64, 64), (8, 24)])
def test_dw_takes_the_channels_in_blocks_of_any_size_with_the_same_bits(c, k, rng, monkeypatch):
    """dW's sums run over the positions in order whatever the block of channels R a loop holds
    (gather_ir.wgrad_ir): SHAPES' R with a last block of C mod R (on AVX2, R = 6 for two filter
    vectors leaves 4 of 16 or 64 channels), one channel at a time, or two: the same bits."""
    x = rng.standard_normal((3, c, 7, 9)).astype(np.float32)
    weight = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((3, k, 7, 9)).astype(np.float32)
    _, planes = gather.conv_forward_gather(x, weight, None)
    expected = gather.conv_backward_gather(dy, planes, weight)[0]
    try:
        for rows in ({1: 1, 2: 1}, {1: 2, 2: 2}):
            monkeypatch.setitem(gather.SHAPES, ISA, (*gather.SHAPES[ISA][:2], rows))
            gather._built.cache_clear()
            np.testing.assert_array_equal(gather.conv_backward_gather(dy, planes, weight)[0],
                                          expected)
    finally:
        monkeypatch.undo()
        gather._built.cache_clear()


def test_repeats_are_bit_identical_and_the_flags_skip_dx_and_db(rng, n_threads):
    x = rng.standard_normal((40, 32, 7, 7)).astype(np.float32)
    weight = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((40, 32, 7, 7)).astype(np.float32)
    first = gather.conv_forward_gather(x, weight, None)
    again = gather.conv_forward_gather(x, weight, None)
    assert first[0].tobytes() == again[0].tobytes()
    dw, db, dx = gather.conv_backward_gather(dy, first[1], weight)
    dw2, db2, dx2 = gather.conv_backward_gather(dy, again[1], weight, input_grad=False,
                                                bias_grad=False)
    assert dx2 is None and db2 is None and dw.tobytes() == dw2.tobytes()


def test_an_epilogue_sees_each_chunk_once_as_the_layer_after_would(rng):
    x = rng.standard_normal((96, 16, 7, 7)).astype(np.float32)
    weight = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    seen = []

    def relu(block):
        seen.append(block.shape[1])
        np.maximum(block, 0, out=block)

    plain, _ = gather.conv_forward_gather(x, weight, None)
    mapped, _ = gather.conv_forward_gather(x, weight, None, epilogue=relu)
    assert sum(seen) == 96 and len(seen) > 1
    assert mapped.tobytes() == np.maximum(plain, 0).tobytes()


def test_nan_and_inf_spoil_the_outputs_the_definition_spoils(rng):
    x = rng.standard_normal((3, 16, 7, 7)).astype(np.float32)
    x[0, 2, 3, 3], x[1, 5, 0, 6], x[2, 9, 6, 0] = np.inf, -np.inf, np.nan
    weight = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    weight[4, 2, 1, 1] = 0  # 0 · inf: NaN, as in the definition
    dy = rng.standard_normal((3, 16, 7, 7)).astype(np.float32)
    y, planes = gather.conv_forward_gather(x, weight, None)
    dw, _, _ = gather.conv_backward_gather(dy, planes, weight)
    with np.errstate(invalid="ignore"):
        y_ref, _, dw_ref, _ = reference(x, weight, np.zeros(16, np.float32), dy)
    for ours, ref in ((y, y_ref), (dw, dw_ref)):
        assert (np.isnan(ours) == np.isnan(ref)).all()
        assert (np.isposinf(ours) == np.isposinf(ref)).all()
        assert (np.isneginf(ours) == np.isneginf(ref)).all()
        finite = np.isfinite(ref)
        close(ours[finite], ref[finite], "finite values")


def _conv(c, k, size, dtype=np.float32):
    return cl.Sequential([cl.Conv2D(k, 3, padding=1)], input_shape=(c, size, size),
                         dtype=dtype).layers[0]


def test_the_layers_that_take_the_gather_path(monkeypatch):
    assert _conv(64, 64, 7)._path() == "gather"  # ResNet's last stage
    assert _conv(64, 128, 7)._path() == "gather"  # fmnist-cnn-bn's third
    # where Winograd also applies: training by instruction set (the next test), inference here
    for c, k in ((32, 32), (32, 64)):  # ResNet's middle stage, fmnist-cnn's second layer
        assert _conv(c, k, 14)._path(inference=True) == "gather"
    assert _conv(16, 8, 28)._path() == "direct"  # at most 16 channels and filters
    assert _conv(128, 128, 14)._path() == "winograd"  # more than GATHER_LIMITS' 64 channels
    assert _conv(64, 256, 7)._path() == "same"  # more than its 128 filters
    assert _conv(20, 32, 7)._path() == "same"  # channels not a multiple of the vector width (8, 16)
    assert _conv(64, 64, 7, np.float64)._path() == "same"
    strided = cl.Sequential([cl.Conv2D(32, 3, 2, padding=1, fit="floor")], input_shape=(16, 28, 28),
                            dtype=np.float32).layers[0]
    assert strided._path() == "same" and strided._path(inference=True) == "gather"
    monkeypatch.setenv("CNNLAB_SIMD", "0")
    assert _conv(64, 64, 7)._path() == "same"
    assert strided._path(inference=True) == "same"


@pytest.mark.parametrize("ahead, trained", [(True, "gather"), (False, "winograd")])
def test_training_takes_winograd_over_the_gather_path_where_its_dw_loop_was_slower(
        ahead, trained, monkeypatch):
    """AVX2's dW loop holds 8 sums and was measured slower than Winograd's backward on 14×14
    maps (gather.TRAINS_AHEAD_OF_WINOGRAD: AVX-512 True, AVX2 False); 7×7 maps, where Winograd
    does not apply, and inference take the gather path either way. The choice is set for this
    processor's own instruction set, so no code is compiled for another."""
    assert gather.TRAINS_AHEAD_OF_WINOGRAD == {"avx512": True, "avx2": False}
    monkeypatch.setitem(gather.TRAINS_AHEAD_OF_WINOGRAD, ISA, ahead)
    assert cl.kernels.gather_trains_ahead_of_winograd() == ahead
    for c, k in ((32, 32), (32, 64), (16, 32)):
        assert _conv(c, k, 14)._path() == trained
        assert _conv(c, k, 14)._path(inference=True) == "gather"
    assert _conv(64, 64, 7)._path() == _conv(64, 64, 7)._path(inference=True) == "gather"
    monkeypatch.setattr(simd, "_isa", lambda: None)
    assert not cl.kernels.gather_trains_ahead_of_winograd()


@pytest.mark.parametrize("ahead, trained", [(True, "gather"), (False, "direct")])
def test_16_to_16_layers_train_on_the_gather_path_where_the_direct_loops_were_slower(
        ahead, trained, monkeypatch):
    """On AVX2 the gather path trained 16 → 16 layers faster than the direct loops and than
    Winograd (gather.TRAINS_AHEAD_OF_DIRECT: AVX-512 False, AVX2 True); inference, inside the
    ResNets, was not faster and keeps the direct loops, as do layers of 8 channels or filters,
    which tied. The choice is set for this processor's own instruction set, so no code is
    compiled for another."""
    assert gather.TRAINS_AHEAD_OF_DIRECT == {"avx512": False, "avx2": True}
    monkeypatch.setitem(gather.TRAINS_AHEAD_OF_DIRECT, ISA, ahead)
    assert cl.kernels.gather_trains_ahead_of_direct() == ahead
    for size in (28, 14, 7):
        assert _conv(16, 16, size)._path() == trained
        assert _conv(16, 16, size)._path(inference=True) == "direct"
    for c, k in ((8, 16), (16, 8), (8, 8), (3, 16)):
        assert _conv(c, k, 28)._path() == _conv(c, k, 28)._path(inference=True) == "direct"
    assert _conv(16, 16, 28, np.float64)._path() == "direct"  # no float64 vector code
    monkeypatch.setattr(simd, "_isa", lambda: None)
    assert not cl.kernels.gather_trains_ahead_of_direct()


def test_a_stride_2_layer_infers_on_the_gather_path_and_trains_on_the_same_path(rng, monkeypatch):
    """At stride 2 the gather path's forward was measured faster and its backward slower than
    "same"'s: inference takes it, a training forward (and its backward) does not; both forwards
    within the tolerance of a float64 definition."""
    layer = cl.Sequential([cl.Conv2D(32, 3, 2, padding=1, fit="floor")], input_shape=(16, 14, 14),
                          dtype=np.float32).layers[0]
    x = rng.standard_normal((5, 16, 14, 14)).astype(np.float32)
    taken = []
    for name in ("conv_forward_gather", "conv_forward_same"):
        real = getattr(cl.kernels, name)
        monkeypatch.setattr(cl.kernels, name,
                            lambda *args, real=real, name=name, **kw: taken.append(name) or real(*args, **kw))
    inferred = layer.forward(x)
    trained = layer.forward(x, training=True)
    assert taken == ["conv_forward_gather", "conv_forward_same"]
    y_ref = reference(x, layer.weight.data, layer.bias.data, np.zeros((5, 32, 7, 7)), 2)[0]
    close(inferred, y_ref, "inference")
    close(trained, y_ref, "training")


def test_a_gather_layer_in_a_network_matches_its_float64_twin(rng, n_threads):
    """The layer's forward and backward (through Conv2D) against the same layer in float64,
    which takes the "same" path: the tolerance holds across paths."""
    layer, twin = _conv(32, 32, 7), _conv(32, 32, 7, np.float64)
    twin.weight.data[...] = layer.weight.data
    twin.bias.data[...] = rng.standard_normal(32)
    layer.bias.data[...] = twin.bias.data
    x = rng.standard_normal((6, 32, 7, 7)).astype(np.float32)
    dy = rng.standard_normal((6, 32, 7, 7)).astype(np.float32)
    pairs = [(layer.forward(x, training=True), twin.forward(x.astype(np.float64), training=True)),
             (layer.backward(dy), twin.backward(dy.astype(np.float64))),
             (layer.weight.grad, twin.weight.grad), (layer.bias.grad, twin.bias.grad)]
    assert layer._path() == "gather" and twin._path() == "same"
    for ours, ref in pairs:
        close(ours, ref, "layer")


def test_arrays_the_kernel_would_misread_are_refused(rng):
    found = gather.kernels(np.float32, 32)
    planes = np.zeros((16, 2, 9, 9), np.float32)
    packed = gather._pack(np.zeros((32, 16, 9), np.float32), found.kv * found.lanes)
    out = np.zeros((32, 2 * 49), np.float32)
    bases, offsets = gather._bases(2, 7, 7, 9, 9, 1, found.positions), gather._offsets(9)
    gather._conv(found, planes, packed, out, bases, offsets)  # fits: no error
    bad = [(planes.astype(np.float64), out, bases, offsets),
           (planes[:, :, ::-1], out, bases, offsets), (planes, out[:16], bases, offsets),
           (planes[:8], out, bases, offsets), (planes, np.zeros((32, 2 * 49)), bases, offsets),
           (planes, np.zeros((32, 3 * 49), np.float32), bases, offsets),  # more than the bases
           (planes[:, :1], out, bases, offsets),  # windows past the planes' end
           (planes, out, gather._bases(2, 7, 7, 9, 9, 1, 1), offsets),  # not whole blocks
           (planes, out, bases, offsets[:4])]  # taps that are not the packed weights'
    for p, o, b, t in bad:
        with pytest.raises(ValueError, match="gather: needs"):
            gather._conv(found, p, packed, o, b, t)
    dy = np.zeros((32, 98), np.float32)
    exact = gather._bases(2, 7, 7, 9, 9, 1, 1)
    assert gather._weight_grad(found, planes, dy, 16, exact).shape == (32, 16 * 9)
    for p, d in [(planes[:, :1], dy), (planes, dy.astype(np.float64)), (planes[:8], dy),
                 (planes, dy[:, :90])]:
        with pytest.raises(ValueError, match="gather: dW needs"):
            gather._weight_grad(found, p, d, 16, exact)


def test_threads_cut_the_batch_in_chunks_and_the_forward_stays_the_same_bits(rng):
    """The forward's sums do not depend on how the batch is cut: 1 and 2 threads agree bit for
    bit (dW's chunk partial sums do, and are bit-identical per thread count)."""
    x = rng.standard_normal((64, 32, 7, 7)).astype(np.float32)
    weight = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    before = threads.num_threads()
    try:
        threads.set_num_threads(1)
        one = gather.conv_forward_gather(x, weight, None)[0]
        threads.set_num_threads(2)
        two = gather.conv_forward_gather(x, weight, None)[0]
    finally:
        threads.set_num_threads(before)
    assert one.tobytes() == two.tobytes()


def test_two_threads_asking_for_a_new_width_at_once_share_one_compiled_loop(rng, monkeypatch):
    """The forward loop is compiled per set of tap offsets (per padded width), on the first chunk
    that needs it: with two threads both chunks ask at once, and a loop compiled twice used to
    free one copy's code while that copy ran (a segmentation fault on 64 → 64 at 28×28)."""
    monkeypatch.setattr(gather, "_CONV_LOOPS", {})
    before = threads.num_threads()
    try:
        threads.set_num_threads(2)
        for width in (11, 12, 13):
            x = rng.standard_normal((8, 16, 3, width)).astype(np.float32)
            weight = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
            y, _ = gather.conv_forward_gather(x, weight, None)
            close(y, reference(x, weight, np.zeros(16, np.float32), np.zeros_like(x))[0], "y")
    finally:
        threads.set_num_threads(before)
    assert sorted(offsets[3] for _, _, offsets in gather._CONV_LOOPS) == [13, 14, 15]  # u = 1, v = 0
