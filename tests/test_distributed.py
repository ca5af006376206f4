"""Data-parallel training over MPI (cnnlab.distributed), under a real mpiexec: K processes give
one process's weights (float64 to 1e-10, float32 to 1e-5 after 21 steps, the last batch of 10
split unevenly), `mpiexec -n 2 cnnlab train` runs as one process does with rank 0 alone writing,
and a failure on one rank ends the whole job with one line naming the rank. The extra cnnlab[mpi]
(mpi4py, mpich) must be installed under CI; elsewhere these tests skip without it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import io

SCRIPT = str(Path(__file__).with_name("mpi_fit.py"))


def mpiexec() -> str:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI must run the MPI tests: pip install '.[mpi]'")
        pytest.skip("the mpi extra is not installed (pip install '.[mpi]')")
    found = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert found, "mpiexec not found beside python or on PATH"
    return found


def run(k: int, *args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`mpiexec -n K ARGS...` with one BLAS thread and one cnnlab thread per process."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", CNNLAB_NUM_THREADS="1",
               PYTHONWARNINGS="error")
    return subprocess.run([mpiexec(), "-n", str(k), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def relative(a: dict, b: dict) -> float:
    return max(float(np.abs(a[n] - b[n]).max() / np.abs(b[n]).max()) for n in b)


@pytest.mark.parametrize("dtype, net, tol", [("float64", "dense", 1e-10), ("float32", "conv", 1e-5)])
def test_k_processes_give_one_process_weights(tmp_path, dtype, net, tol):
    weights = {}
    for k in (1, 2, 4):
        result = run(k, sys.executable, SCRIPT, f"k{k}.safetensors", dtype, net, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        weights[k] = io.read_file(tmp_path / f"k{k}.safetensors")[0]
    for k in (2, 4):
        assert relative(weights[k], weights[1]) <= tol, k


def test_the_command_under_mpiexec_trains_as_one_process_and_rank_0_writes(tmp_path):
    args = ["cnnlab", "train", "--data", "fashion-mnist-mini", "--limit", "1200", "--epochs", "2",
            "--model", "mlp"]
    one, two = run(1, *args, "--out", "one", cwd=tmp_path), run(2, *args, "--out", "two", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert two.stdout.count("test accuracy") == 1 and two.stderr.count("epoch 2/2") == 1
    lines = [[line.rsplit("  ", 1)[0] for line in r.stderr.splitlines() if line.startswith("epoch")]
             for r in (one, two)]
    assert lines[0] == lines[1]  # the same losses and accuracies to the printed digits
    assert relative(io.read_file(tmp_path / "two" / "model.safetensors")[0],
                    io.read_file(tmp_path / "one" / "model.safetensors")[0]) <= 1e-5
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())
    # evaluate split over two processes prints one process's numbers, once
    model = tmp_path / "one" / "model.safetensors"
    alone, split = (run(k, "cnnlab", "evaluate", model, "--json", cwd=tmp_path) for k in (1, 2))
    assert split.returncode == 0 and split.stdout.count("\n") == 1, split.stderr
    ours, theirs = json.loads(split.stdout), json.loads(alone.stdout)
    assert ours.pop("loss") == pytest.approx(theirs.pop("loss"), rel=1e-6) and ours == theirs


def test_a_failure_on_one_rank_ends_the_job_naming_the_rank(tmp_path):
    # rank 0 alone takes the run folder's lock: a held lock fails rank 0 while rank 1 goes on
    # into training and waits for rank 0 in a collective; the job must still end, at once
    busy = tmp_path / "busy"
    busy.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"fd = os.open({str(busy / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, b'4242')\n"
                               "print('held', flush=True)\ntime.sleep(120)"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        result = run(2, "cnnlab", "train", "--data", "fashion-mnist-mini", "--limit", "300", "--model",
                     "mlp", "--out", "busy", cwd=tmp_path, timeout=60)
        assert time.monotonic() - started < 60
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert result.returncode != 0
    assert "cnnlab: error (rank 0 of 2): busy is in use by another cnnlab train" in result.stderr


def test_fit_without_distributed_is_one_process_as_before():
    model = cl.Sequential([cl.Flatten(), cl.Dense(2)], input_shape=(1, 2, 2))
    x, y = np.zeros((4, 1, 2, 2), np.float32), np.array([0, 1, 0, 1])
    assert not cl.distributed.launched() or os.environ.get("PMI_SIZE") == "1"
    history = cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.SGD(model),
                     epochs=1, distributed=False, verbose=False)  # False: one process, as today
    assert len(history) == 1


def test_processes_that_disagree_stop_at_once_naming_it(tmp_path):
    result = run(2, sys.executable, SCRIPT, "x.safetensors", "float64", "dense", "disagree",
                 cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    assert "the processes disagree on batch size (rank 0: 30, rank 1: 31)" in result.stderr


def test_a_rank_killed_with_sigkill_ends_the_job_and_the_checkpoint_resumes(tmp_path):
    args = ["cnnlab", "-q", "train", "--data", "fashion-mnist-mini", "--epochs", "3", "--model",
            "fmnist-cnn", "--checkpoint-every", "10", "--out", "killed"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", CNNLAB_NUM_THREADS="1")
    job = subprocess.Popen([mpiexec(), "-n", "2", *args], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "killed"
    deadline = time.monotonic() + 120
    while not (run_dir / "last.ckpt.safetensors").exists() and time.monotonic() < deadline:
        assert job.poll() is None, job.communicate()
        time.sleep(0.05)
    rank0 = int((run_dir / ".lock").read_text())
    ranks = subprocess.run(["pgrep", "-f", "--", "--out killed"], capture_output=True, text=True)
    others = [int(p) for p in ranks.stdout.split() if int(p) != rank0 and _is_python(int(p))]
    assert others, ranks.stdout
    os.kill(others[0], signal.SIGKILL)  # rank 1, from outside
    started = time.monotonic()
    _, err = job.communicate(timeout=60)
    assert time.monotonic() - started < 60 and job.returncode != 0, err
    # the last complete checkpoint on disk is intact and resumes (here on one process)
    assert io.read_checkpoint(run_dir / "last.ckpt.safetensors").training["global_step"] >= 10
    result = run(1, "cnnlab", "-q", "train", "--resume", "killed", "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 0 or "has done" in result.stderr, result.stderr


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False



@pytest.mark.parametrize("k", [2, 3])
def test_evaluation_split_over_the_processes_counts_as_one_process(tmp_path, k):
    result = run(k, sys.executable, str(Path(__file__).with_name("mpi_evaluate.py")), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "same"


def test_synchronized_batchnorm_on_k_processes_is_one_process(tmp_path):
    """float64, convolution + BatchNorm2D + BatchNorm1D, 21 steps: the weights and the running
    statistics of K = 2 and 4 synchronized processes are one process's, and every rank holds the
    same running statistics (bit for bit)."""
    first = run(1, sys.executable, SCRIPT, "k1.safetensors", "float64", "bn", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    one = io.read_file(tmp_path / "k1.safetensors")[0]
    assert any("running_var" in name for name in one)
    for k in (2, 4):
        result = run(k, sys.executable, SCRIPT, f"k{k}.safetensors", "float64", "bn", "sync",
                     "every-rank", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        ranks = [io.read_file(tmp_path / f"k{k}.safetensors.rank{r}")[0] for r in range(k)]
        # a bias before BatchNorm gets no gradient (the mean removes it): it stays at rounding
        # noise (~1e-16), compared absolutely; every other tensor relatively, per tensor
        noise = [n for n in one if np.abs(one[n]).max() < 1e-12]
        assert sorted(noise) == ["param.conv2d_1.bias", "param.dense_1.bias"]
        assert all(np.abs(ranks[0][n] - one[n]).max() <= 1e-14 for n in noise)
        assert relative({n: ranks[0][n] for n in one if n not in noise},
                        {n: one[n] for n in one if n not in noise}) <= 1e-10, k
        assert all(np.array_equal(r[n], ranks[0][n]) for r in ranks[1:] for n in one)


def test_per_process_batchnorm_keeps_the_running_statistics_equal_on_every_rank(tmp_path):
    result = run(2, sys.executable, SCRIPT, "k2.safetensors", "float64", "bn", "every-rank",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ranks = [io.read_file(tmp_path / f"k2.safetensors.rank{r}")[0] for r in range(2)]
    assert all(np.array_equal(ranks[1][n], ranks[0][n]) for n in ranks[0])
    one = io.read_file(tmp_path / "k2.safetensors")[0]
    synced = run(2, sys.executable, SCRIPT, "sync.safetensors", "float64", "bn", "sync", cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert relative(io.read_file(tmp_path / "sync.safetensors")[0], one) > 1e-6  # not the same math


def test_dropout_resumed_under_k_processes_repeats_the_whole_run(tmp_path):
    """Dropout draws per process from (seed, step, rank): the checkpoint (rank 0's) carries no
    per-rank state, and a run resumed after epoch 1 ends bit for bit as the whole run did."""
    whole = run(2, sys.executable, SCRIPT, "whole.safetensors", "float32", "dropout", "epochs=2",
                cwd=tmp_path)
    half = run(2, sys.executable, SCRIPT, "half.safetensors", "float32", "dropout", "epochs=1",
               "out=run", cwd=tmp_path)
    assert whole.returncode == 0 and half.returncode == 0, whole.stderr + half.stderr
    resumed = run(2, sys.executable, SCRIPT, "resumed.safetensors", "float32", "dropout", "epochs=2",
                  "out=run", "resume=run/last.ckpt.safetensors", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = (io.read_file(tmp_path / f"{n}.safetensors")[0] for n in ("whole", "resumed"))
    assert all(np.array_equal(a[n], b[n]) for n in a)
    # the same checkpoint under another K resumes too (each process's share changes)
    other = run(1, sys.executable, SCRIPT, "other.safetensors", "float32", "dropout", "epochs=2",
                "out=run", "resume=run/last.ckpt.safetensors", cwd=tmp_path)
    assert other.returncode == 0, other.stderr


def test_each_process_decodes_only_its_own_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / "images" / f"class{c}").mkdir(parents=True)
        for i in range(25):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
                tmp_path / "images" / f"class{c}" / f"{i}.png")
    script = str(Path(__file__).with_name("mpi_folder.py"))
    reports = {}
    for k in (1, 2):
        result = run(k, sys.executable, script, "images", f"k{k}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        reports[k] = [json.loads((tmp_path / f"k{k}.rank{r}.json").read_text()) for r in range(k)]
    alone, (rank0, rank1) = reports[1][0], sorted(reports[2], key=lambda r: r["rank"])
    # 50 images: once to measure the preprocessing, once in each of 2 epochs, by one process or
    # split between two with no image decoded twice in a pass (3 · 50 decodes in all)
    assert len(alone["decoded"]) == 150
    assert len(rank0["decoded"]) + len(rank1["decoded"]) == 150
    assert len(set(rank0["decoded"][:25]) | set(rank1["decoded"][:25])) == 50  # the measuring pass
    assert 60 <= len(rank0["decoded"]) <= 90
    assert rank0["weights"] == pytest.approx(alone["weights"], rel=1e-5)
