"""cnnlab.threads: the same results on one thread and on several, errors and errstate carried
over from the worker threads, and the knobs' validation."""

from __future__ import annotations

import os
import signal
import warnings

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import kernels
from cnnlab.kernels import simd
from cnnlab.runtime import threads


@pytest.fixture
def two_threads():
    before = threads.num_threads()
    threads.set_num_threads(2)
    yield
    threads.set_num_threads(before)


def on_threads(n, fn):
    threads.set_num_threads(n)
    return fn()


def test_map_chunks_keeps_the_order_and_runs_every_item(two_threads):
    assert threads.map_chunks(lambda i: i * i, range(7)) == [i * i for i in range(7)]
    assert threads.map_chunks(lambda i: i, []) == []


def test_a_forked_child_starts_threads_of_its_own(two_threads):
    threads.map_chunks(lambda i: i, range(4))  # the parent's pool exists
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python ≥ 3.12 warns on fork()
        pid = os.fork()
    if pid == 0:  # the child: its copy of the pool has no threads behind it
        signal.alarm(30)  # a hang would fail the test instead of stopping the suite
        code = 1
        try:
            code = 0 if threads.map_chunks(lambda i: i + 1, range(4)) == [1, 2, 3, 4] else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_map_chunks_raises_what_a_worker_raised(two_threads):
    def fail(i):
        if i == 3:
            raise ValueError("chunk 3")
        return i

    with pytest.raises(ValueError, match="chunk 3"):
        threads.map_chunks(fail, range(6))


def test_workers_see_the_callers_errstate(two_threads):
    def overflow(_):
        return np.float32(1e38) * np.float32(10)

    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        threads.map_chunks(overflow, range(4))
    with np.errstate(over="ignore"):
        assert np.isinf(threads.map_chunks(overflow, range(4))).all()


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_set_num_threads_names_a_bad_count(n):
    with pytest.raises(ValueError, match="cnnlab.runtime.threads: set_num_threads needs a whole number"):
        threads.set_num_threads(n)


def test_blas_is_single_threaded_only_inside_and_restored_after(two_threads):
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas():
        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    with threadpool_limits(2):
        with threads.single_blas():
            inside = blas()
            with threads.single_blas():  # re-entrant
                assert blas() == 1
        assert (inside, blas()) == (1, 2)


# Large enough (≥ 2¹⁸ elements) that every split path runs on two threads.
@pytest.mark.parametrize("layer, shape", [
    (lambda: cl.ReLU(), (16, 28, 28)),
    (lambda: cl.MaxPool2D(2), (16, 28, 28)),
    (lambda: cl.BatchNorm2D(), (16, 28, 28)),
    (lambda: cl.Dense(300), (3136,)),
    (lambda: cl.Conv2D(8, 3, padding=1), (16, 28, 28)),             # "same"
    (lambda: cl.Conv2D(8, 3, stride=2, padding=1, fit="floor"), (16, 28, 28)),
    (lambda: cl.Conv2D(8, 3, padding=(1, 2)), (16, 28, 28)),        # "wide"
    (lambda: cl.Conv2D(8, 3), (2, 28, 28)),                         # plain
])
def test_two_threads_give_the_one_thread_results(layer, shape, rng, two_threads):
    x = rng.standard_normal((40, *shape)).astype(np.float32)

    def run():
        model = cl.Sequential([layer()], input_shape=shape)
        y = model.forward(x, training=True)
        dx = model.backward(np.cos(y))
        return [y, dx, model.forward(x), *(p.grad for p in model.parameters().values())]

    one, two = on_threads(1, run), on_threads(2, run)
    for a, b in zip(one, two, strict=True):
        assert a.dtype == b.dtype == np.float32
        # elementwise and per-channel work is split without changing a sum: bit for bit;
        # weight gradients add chunk partials, whose chunks depend on the thread count
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    if not model_has_weights(layer()):
        for a, b in zip(one, two, strict=True):
            np.testing.assert_array_equal(a, b)


def model_has_weights(layer) -> bool:
    return isinstance(layer, cl.Conv2D | cl.Dense)


def same_path(x, w, dy):
    k, pad = w.shape[0], ((1, 1), (1, 1))
    y, xc = kernels.conv_forward_same(x, w.reshape(k, -1), None, 3, 3, 1, pad)
    return (y, *kernels.conv_backward_same(dy, xc, w, 1, pad))


def direct_path(x, w, dy):
    y, xp = kernels.conv_forward_direct(x, w, None)
    return (y, *kernels.conv_backward_direct(dy, xp, w))


def winograd_path(x, w, dy):
    y, xc = kernels.conv_forward_winograd(x, w, None)
    return (y, *kernels.conv_backward_winograd(dy, xc, w))


def gather_path(x, w, dy):
    y, saved = kernels.conv_forward_gather(x, w, None)
    return (y, *kernels.conv_backward_gather(dy, saved, w))


@pytest.mark.parametrize("path, k", [(same_path, 32), (direct_path, 16), (winograd_path, 32),
                                     pytest.param(gather_path, 32, marks=pytest.mark.skipif(
                                         simd._isa() is None, reason="x86-64 vector code"))])
def test_conv_chunks_are_reproducible_for_a_thread_count(path, k, rng, n_threads):
    x = rng.standard_normal((64, 16, 14, 14)).astype(np.float32)
    w = rng.standard_normal((k, 16, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((64, k, 14, 14)).astype(np.float32)
    runs = [path(x, w, dy) for _ in range(2)]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
