"""Data-parallel pieces that need no MPI (tests/test_distributed.py runs them under mpiexec):
synchronized BatchNorm through the layer's reduction hook, simulated here by K threads that
meet at a barrier; per-process Generators from (seed, step, rank); image folders read lazily."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

import cnnlab as cl
from cnnlab.data import folder as folders
from cnnlab.train import parallel
from tests.gradcheck import numeric_grad


class Barrier:
    """K threads standing for K processes: sum(rank, array) returns the rank-ordered sum of
    every thread's array, as Comm.sum (Allreduce) does."""

    def __init__(self, k: int) -> None:
        self.k, self.slots, self.wait = k, [None] * k, threading.Barrier(k)

    def sum_for(self, rank: int):
        def reduce(values: np.ndarray) -> np.ndarray:
            self.slots[rank] = np.array(values, np.float64)
            self.wait.wait()
            total = sum(self.slots[1:], self.slots[0].copy())
            self.wait.wait()
            return total
        return reduce


def synced_run(k: int, x: np.ndarray, dy: np.ndarray, layer_type=cl.BatchNorm2D):
    """Each of k simulated processes runs a synchronized BatchNorm (the same γ, β) on its share of
    the batch: the outputs, input gradients, summed dγ and dβ, and every copy's running stats."""
    barrier, results = Barrier(k), [None] * k
    parts = np.array_split(np.arange(len(x)), k)

    def process(rank: int) -> None:
        layer = layer_type(momentum=0.3).build(x.shape[1:], dtype=x.dtype)
        layer.weight.data[:] = np.linspace(0.5, 1.5, layer.weight.size)
        layer.bias.data[:] = np.linspace(-1, 1, layer.bias.size)
        layer.reduce = barrier.sum_for(rank)
        y = layer.forward(x[parts[rank]], training=True)
        dx = layer.backward(dy[parts[rank]])
        results[rank] = y, dx, layer.weight.grad, layer.bias.grad, layer.running_mean, layer.running_var

    workers = [threading.Thread(target=process, args=(r,)) for r in range(k)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    y = np.concatenate([r[0] for r in results])
    dx = np.concatenate([r[1] for r in results])
    return y, dx, sum(r[2] for r in results), sum(r[3] for r in results), results


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("layer_type, shape", [(cl.BatchNorm2D, (12, 3, 5, 4)), (cl.BatchNorm1D, (12, 6))])
def test_synchronized_batchnorm_over_k_processes_is_one_process(k, layer_type, shape, rng):
    x = rng.standard_normal(shape) * 3 + 1
    dy = rng.standard_normal(shape)
    one = layer_type(momentum=0.3).build(shape[1:], dtype=np.float64)
    one.weight.data[:] = np.linspace(0.5, 1.5, one.weight.size)
    one.bias.data[:] = np.linspace(-1, 1, one.bias.size)
    y1, dx1 = one.forward(x, training=True), one.backward(dy)
    y, dx, dgamma, dbeta, results = synced_run(k, x, dy, layer_type)
    for ours, theirs in ((y, y1), (dx, dx1), (dgamma, one.weight.grad), (dbeta, one.bias.grad)):
        assert np.abs(ours - theirs).max() <= 1e-12 * np.abs(theirs).max()
    for r in results:  # every process holds the same running statistics, one process's
        np.testing.assert_allclose(r[4], one.running_mean, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(r[5], one.running_var, rtol=1e-13)
        assert np.array_equal(r[4], results[0][4]) and np.array_equal(r[5], results[0][5])


def test_synchronized_batchnorm_gradient_is_the_numeric_one(rng):
    """With a one-process reduction (the identity) the synced path's dx is ∂L/∂x, float64."""
    x, w = rng.standard_normal((5, 2, 3, 3)), rng.standard_normal((5, 2, 3, 3))
    layer = cl.BatchNorm2D().build(x.shape[1:], dtype=np.float64)
    layer.reduce = np.asarray

    def loss():
        return float((layer.forward(x, training=True) * w).sum())

    layer.forward(x, training=True)
    dx = layer.backward(w)
    numeric = numeric_grad(loss, x)
    assert np.abs(dx - numeric).max() <= 1e-6 * np.abs(numeric).max()


def test_fit_leaves_no_reduction_hook_behind():
    """After fit the model's layers see their own batch again: a later forward must not call into
    a communicator that is gone (here a hook a run left, standing for MPI's sum, is cleared)."""
    model = cl.Sequential([cl.Conv2D(2, 3), cl.BatchNorm2D(), cl.Flatten(), cl.Dense(2)],
                          input_shape=(1, 5, 5), seed=0)
    calls = []
    model.layers[1].reduce = lambda values: calls.append(1) or np.asarray(values)
    x, y = np.random.default_rng(0).standard_normal((8, 1, 5, 5)).astype(np.float32), np.arange(8) % 2
    cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.SGD(model), epochs=1,
           batch_size=4, verbose=False, progress=False)
    assert calls and all(layer.reduce is None for layer in model.layers)


def test_synchronized_batchnorm_needs_every_process_in_every_batch():
    parallel.check_batches(640, 30, 4, drop_last=False)  # the last batch of 10 ≥ 4: fine
    with pytest.raises(ValueError, match="each batch needs at least 4 samples.*batch has 2"):
        parallel.check_batches(602, 30, 4, drop_last=False)
    with pytest.raises(ValueError, match="batch has 3"):
        parallel.check_batches(600, 3, 4, drop_last=False)
    parallel.check_batches(602, 30, 4, drop_last=True)


def test_dropout_streams_come_from_seed_step_and_rank():
    model = cl.Sequential([cl.Dense(8), cl.Dropout(0.5), cl.Dense(8), cl.Dropout(0.5)],
                          input_shape=(4,), seed=0)
    x = np.ones((16, 4), np.float32)

    def masks(step, rank):
        parallel.reseed(model, 7, step, rank)
        model.forward(x, training=True)
        return [layer._cache.copy() for layer in model.layers if isinstance(layer, cl.Dropout)]

    first = masks(3, 1)
    assert all(np.array_equal(a, b) for a, b in zip(first, masks(3, 1), strict=True))  # derived
    assert not np.array_equal(first[0], masks(3, 0)[0])  # another process: another mask
    assert not np.array_equal(first[0], masks(4, 1)[0])  # another step: another mask
    assert not np.array_equal(first[0], first[1])  # two layers: two streams


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(1)
    for c, name in enumerate(["ankle", "bag", "coat"]):
        (tmp_path / name).mkdir()
        for i in range(14):
            pixels = rng.integers(0, 256, (10 + c, 9), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i:02d}.png")
    return tmp_path


def test_a_lazy_folder_is_the_decoded_one_image_for_image(image_folder):
    x, y, names = cl.data.load_folder(image_folder, (1, 8, 8))
    lazy, y2, names2 = cl.data.load_folder(image_folder, (1, 8, 8), lazy=True)
    assert isinstance(lazy, cl.data.FolderImages) and lazy.shape == x.shape and len(lazy) == 42
    assert np.array_equal(y, y2) and names == names2
    assert np.array_equal(lazy[np.array([3, 1, 40])], x[[3, 1, 40]])
    assert np.array_equal(lazy[5], x[5]) and np.array_equal(lazy[2:9], x[2:9])
    assert np.array_equal(np.asarray(lazy), x)
    part = cl.data.take(lazy, y == 1)
    assert isinstance(part, cl.data.FolderImages) and np.array_equal(part[:], x[y == 1])


def test_training_on_a_lazy_folder_gives_the_eager_weights(image_folder, monkeypatch):
    def trained(lazy: bool):
        source = cl.data.Source(str(image_folder), holdout=True, lazy=lazy)
        x, y, names, _ = source.load("train", (1, 8, 8))
        model = cl.Sequential([cl.Flatten(), cl.Dense(len(names))], input_shape=(1, 8, 8), seed=0)
        cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.SGD(model, lr=0.1),
               epochs=2, batch_size=8, val_split=0.2, verbose=False, progress=False)
        return model

    decoded = []
    original = folders._decode
    monkeypatch.setattr(folders, "_decode", lambda path, *a: decoded.append(path) or original(path, *a))
    eager = trained(False)
    assert len(decoded) == 42  # every image of the folder, once
    lazy = trained(True)
    assert all(np.array_equal(p.data, q.data) for p, q in zip(
        eager.parameters().values(), lazy.parameters().values(), strict=True))
    assert np.array_equal(eager.preprocess.mean, lazy.preprocess.mean)
    # lazy: of the 39 training-split images, the 30 left after the validation split once to
    # measure the preprocessing and once per epoch, the 9 validation images once per epoch;
    # never the 3 held-out test images
    assert len(decoded) - 42 == 30 * 3 + 9 * 2 and len(set(decoded[42:])) == 39


def test_sync_batchnorm_is_a_recorded_switch_of_train(tmp_path):
    """--sync-batchnorm is recorded in config.toml as true and read back from -c FILE; on one
    process it changes nothing; a config value that is not true/false is one line naming it."""
    from tests.test_cli import cnnlab

    short = ["--data", "fashion-mnist-mini", "--limit", "300", "--model", "mlp", "--epochs", "1"]
    result = cnnlab("train", *short, "--sync-batchnorm", "--out", "synced", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sync-batchnorm = true" in (tmp_path / "synced" / "config.toml").read_text()
    again = cnnlab("train", "-c", "synced/config.toml", "--out", "again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    (tmp_path / "bad.toml").write_text('sync-batchnorm = "yes"\n')
    bad = cnnlab("train", "-c", "bad.toml", cwd=tmp_path)
    assert bad.returncode == 2 and "sync-batchnorm = 'yes' has the wrong type (true or false)" in bad.stderr


@pytest.mark.parametrize("told, expected", [({}, "1 1"), ({"CNNLAB_NUM_THREADS": "2"}, "2 2")])
def test_one_of_k_processes_uses_one_thread_unless_told(told, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("CNNLAB_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    code = ("from threadpoolctl import threadpool_info, threadpool_limits\n"
            "threadpool_limits(2, user_api='blas')\n"  # a machine of 2 cores, whatever this one has
            "from cnnlab.runtime import threads\nthreads.one_per_process()\n"
            "blas = max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas')\n"
            "print(threads.num_threads(), blas)")
    result = subprocess.run([sys.executable, "-c", code], env={**env, **told}, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == expected.split(), result.stderr
