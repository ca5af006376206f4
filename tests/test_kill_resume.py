"""No lost runs: `cnnlab train` killed with SIGKILL at chosen moments (mid-epoch, and halfway
through writing a file) resumes with `cnnlab train --resume RUN_DIR` to the very weights of an
uninterrupted run; a full disk during a save and a diverging run both stop with one line and
leave the last checkpoint intact.

The kills are deterministic and come from outside cnnlab's code: tests/faults.py runs the
command with "step:N" (SIGKILL right after the N-th optimizer step) or "save:N" (SIGKILL with
half of the N-th atomically written file on disk, the target not yet replaced). Every run uses
one BLAS thread, so equal weights are expected bit for bit.

The run: 352 training images (316 after the default 0.1 held out for validation) and 64 test
images, batch 32 (10 steps an epoch), 2 epochs, a checkpoint every 4 steps. Its atomic writes,
in order: 1 config.toml, 2 checkpoint after step 4, 3 after step 8, 4 best.safetensors, 5
metrics.csv, 6 the checkpoint at the end of epoch 1 (step 10), 7 after step 12, ...
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import resource
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
from cnnlab.data.idx import write_idx

CHECKPOINT = "last.ckpt.safetensors"
FAULTS = str(Path(__file__).with_name("faults.py"))
RECIPE = ["--model", "lenet5", "-b", "32", "--epochs", "2", "--checkpoint-every", "4",
          "--augment", "flip-crop-erase", "--seed", "3"]


def train(*args, cwd: Path, kill_at: str | None = None, file_limit: int | None = None):
    """`cnnlab train ARGS` in a subprocess with one BLAS thread; optionally killed at `kill_at`
    (tests/faults.py), or with files limited to `file_limit` bytes (RLIMIT_FSIZE: writes beyond it fail with
    EFBIG, as on a full disk; Python ignores SIGXFSZ)."""
    env = dict(os.environ, PYTHONWARNINGS="error", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    command = [FAULTS, kill_at] if kill_at else ["-m", "cnnlab"]

    def limit_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run([sys.executable, *command, "train", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180,
                          preexec_fn=limit_files if file_limit else None)


def one_line_failure(result) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("cnnlab: error:")]
    assert len(lines) == 1 and result.stderr.rstrip().endswith(lines[0]), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("kill")
    data = work / "tiny"
    data.mkdir()
    x, y = cl.data.load("fashion-mnist-mini")
    xt, yt = cl.data.load("fashion-mnist-mini", "test")
    write_idx(data / "train-images-idx3-ubyte", x[:352, 0])
    write_idx(data / "train-labels-idx1-ubyte", y[:352].astype(np.uint8))
    write_idx(data / "t10k-images-idx3-ubyte", xt[:64, 0])
    write_idx(data / "t10k-labels-idx1-ubyte", yt[:64].astype(np.uint8))
    return work


@pytest.fixture(scope="module")
def reference(work) -> Path:
    """The uninterrupted run."""
    result = train("--data", "tiny", *RECIPE, "--out", "reference", cwd=work)
    assert result.returncode == 0, result.stderr
    return work / "reference"


def tensors(path: Path) -> dict[str, np.ndarray]:
    return io.read_file(path)[0]


def assert_same_tensors(a: Path, b: Path) -> None:
    ours, theirs = tensors(a), tensors(b)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name].dtype == theirs[name].dtype and ours[name].tobytes() == theirs[name].tobytes(), name


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def saved_step(path: Path) -> int:
    return json.loads(io.read_file(path)[1]["training"])["global_step"]


def kill(work: Path, name: str, point: str) -> Path:
    run = work / name
    shutil.rmtree(run, ignore_errors=True)
    result = train("--data", "tiny", *RECIPE, "--out", name, cwd=work, kill_at=point)
    assert result.returncode == -signal.SIGKILL, result.stderr
    return run


@pytest.mark.parametrize("point, last_step", [
    ("step:7", 4),    # mid-epoch 1: steps 5-7 are lost, the checkpoint after step 4 stays
    ("save:3", 4),    # halfway through writing the checkpoint after step 8: the old one stays
    ("save:6", 8),    # halfway through the end-of-epoch checkpoint, after best.safetensors
    ("step:13", 12),  # mid-epoch 2
])
def test_a_killed_run_resumes_to_the_uninterrupted_weights(work, reference, point, last_step):
    run = kill(work, point.replace(":", "-"), point)
    assert not (run / "model.safetensors").exists()
    assert saved_step(run / CHECKPOINT) == last_step  # intact and loadable
    leftovers = sorted(p.name for p in run.iterdir() if ".tmp" in p.name)
    if point.startswith("save"):  # the half-written temporary file, never the target itself
        assert len(leftovers) == 1 and re.fullmatch(rf"\.{re.escape(CHECKPOINT)}\.tmp\d+-[0-9a-f]{{8}}",
                                                    leftovers[0]), leftovers
        assert 0 < (run / leftovers[0]).stat().st_size < (run / CHECKPOINT).stat().st_size
    else:
        assert leftovers == []
    result = train("--resume", run.name, cwd=work)
    assert result.returncode == 0, result.stderr
    assert "resuming lenet5" in result.stderr
    assert_same_tensors(run / "model.safetensors", reference / "model.safetensors")
    assert_same_tensors(run / "best.safetensors", reference / "best.safetensors")
    assert metrics(run) == metrics(reference)


@pytest.fixture(scope="module")
def after_epoch_1(work) -> Path:
    """A run killed after step 11: its checkpoint is the end of epoch 1 (step 10)."""
    run = kill(work, "epoch1", "step:11")
    assert saved_step(run / CHECKPOINT) == 10
    return run


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(work, reference, after_epoch_1):
    run = work / "full"
    shutil.copytree(after_epoch_1, run)
    before = (run / CHECKPOINT).read_bytes()
    # files may not grow beyond half a checkpoint: config.toml still fits, the checkpoint after
    # step 12 does not
    result = train("--resume", "full", cwd=work, file_limit=len(before) // 2)
    error = one_line_failure(result)
    assert f"could not write full/{CHECKPOINT}: File too large" in error
    assert "the previous file, if any, is unchanged" in error
    assert (run / CHECKPOINT).read_bytes() == before
    assert sorted(p.name for p in run.iterdir() if ".tmp" in p.name) == []
    assert cl.load(run / CHECKPOINT).count_params() > 0
    # with room again, the run resumes from that checkpoint and ends as if nothing happened
    result = train("--resume", "full", cwd=work)
    assert result.returncode == 0, result.stderr
    assert_same_tensors(run / "model.safetensors", reference / "model.safetensors")


def test_a_diverging_run_stops_in_one_line_and_keeps_the_last_good_checkpoint(work, after_epoch_1):
    run = work / "diverged"
    shutil.copytree(after_epoch_1, run)
    before = (run / CHECKPOINT).read_bytes()
    error = one_line_failure(train("--resume", "diverged", "--lr", "1e38", cwd=work))
    assert error.startswith("cnnlab: error: training stopped at epoch 2, step ")
    # a layer's output, or (weights near 1e38) the loss on finite scores
    assert re.search(r"first non-finite output: \w+ #\d+ \(\w+\)|every layer's output is finite: the "
                     r"loss overflowed on scores up to \d", error), error
    assert f"The last good checkpoint stays: diverged/{CHECKPOINT}." in error
    assert "Try a smaller learning rate" in error
    assert (run / CHECKPOINT).read_bytes() == before
    model = cl.load(run / CHECKPOINT)
    assert all(np.isfinite(p.data).all() for p in model.parameters().values())


# ------------------------------------------------------------ kills from outside, at random times
RUN_FILES = {".lock", "config.toml", CHECKPOINT, "best.safetensors", "metrics.csv", "model.safetensors",
             "report.html"}
KILL_SEED, KILLS = 17, 5


def start(*args, cwd: Path, log: Path) -> tuple[subprocess.Popen, float]:
    """`cnnlab train ARGS` started in the background as `train` runs it (one BLAS thread): the
    process and its start time. Its output goes to `log`."""
    env = dict(os.environ, PYTHONWARNINGS="error", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *map(str, args)], cwd=cwd,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, time.monotonic()


def running(process: subprocess.Popen, run: Path) -> float | None:
    """Waits until `process` holds the run folder's lock (it writes its pid into RUN/.lock, after
    reading its data and options): the time then, or None if it ended first."""
    while process.poll() is None:
        try:
            if (run / ".lock").read_text().strip() == str(process.pid):
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.002)
    return None


def appeared(process: subprocess.Popen, path: Path) -> float:
    """Waits until `path` exists or `process` has ended: the time then."""
    while process.poll() is None and not path.exists():
        time.sleep(0.002)
    return time.monotonic()


def test_sigkill_from_outside_at_random_times_then_resume_ends_as_the_uninterrupted_run(work, reference):
    """`cnnlab train` SIGKILLed by this test (os.kill, no hook in the process) at times drawn from
    random.Random(KILL_SEED) over the training part of a run, counted from the moment the process
    holds the run's lock (so a loaded machine's slower start does not move the kills), each kill
    followed by `--resume` (or by a fresh start while no checkpoint exists yet). Once one kill has
    fallen before the first checkpoint, a later fresh start's kill is counted from the moment its
    checkpoint appears: on a loaded machine a killed run can be slower than the timed one, and five
    kills all before the first checkpoint would resume nothing (seen once in CI). After each kill:
    the checkpoint, if any, is intact and never older than the one before, and the folder holds
    only the run's files and the temporary files of killed writes. The run finally ends with the
    uninterrupted run's weights."""
    run = work / "random-kills"
    shutil.rmtree(run, ignore_errors=True)
    fresh = ["--data", "tiny", *RECIPE, "--out", run.name]
    # how long training takes here: from holding the lock to model.safetensors written (then come
    # the test evaluation and report.html); the run's weights are the reference's too
    timed, _ = start(*fresh, cwd=work, log=work / "random-kills.log")
    begin = running(timed, run)
    first = appeared(timed, run / CHECKPOINT) - begin if begin else 0
    window = appeared(timed, run / "model.safetensors") - begin if begin else 0
    assert timed.wait(timeout=180) == 0, (work / "random-kills.log").read_text()
    assert 0 < first < window, (first, window)
    assert_same_tensors(run / "model.safetensors", reference / "model.safetensors")
    shutil.rmtree(run)

    rng, last_step, kills, resumed = random.Random(KILL_SEED), -1, [], 0
    for i in range(KILLS):
        args = ["--resume", run.name] if (run / CHECKPOINT).exists() else fresh
        resumed += args[0] == "--resume"
        log = work / f"random-kills-{i}.log"
        process, _ = start(*args, cwd=work, log=log)
        at, from_checkpoint = rng.uniform(0, window), args == fresh and bool(kills)
        try:
            running(process, run)
            if from_checkpoint:  # a kill before the first checkpoint was made already: one after it
                appeared(process, run / CHECKPOINT)
                at = rng.uniform(0, window - first)
            process.wait(timeout=at)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
        code = process.wait(timeout=60)
        output = log.read_text()
        assert code in (0, -signal.SIGKILL) and "error" not in output, output
        if code == 0:  # the run ended before this kill's time: nothing left to kill
            break
        kills.append(f"{at:.2f}s" + (" after the first checkpoint" if from_checkpoint else ""))
        if run.exists():
            others = [p.name for p in run.iterdir() if p.name not in RUN_FILES]
            stray = [name for name in others if not re.fullmatch(
                r"\.(" + "|".join(map(re.escape, RUN_FILES)) + r")\.tmp\d+-[0-9a-f]{8}", name)]
            assert stray == [], (kills, sorted(others))
            for name in ("best.safetensors", "model.safetensors"):  # written whole or not at all
                assert not (run / name).exists() or cl.load(run / name).count_params() > 0, name
        if (run / CHECKPOINT).exists():
            checkpoint = io.read_checkpoint(run / CHECKPOINT)  # checksum and training state checked
            assert cl.load(run / CHECKPOINT).count_params() == checkpoint.model().count_params()
            step = checkpoint.training["global_step"]
            assert step >= last_step, (kills, step, last_step)  # never an older checkpoint
            last_step = step
            kills[-1] += f" (step {step})"
    assert len(kills) >= 3 and resumed >= 1, (kills, resumed, window)
    args = ["--resume", run.name] if (run / CHECKPOINT).exists() else fresh
    result = train(*args, cwd=work)
    assert result.returncode == 0, result.stderr
    assert_same_tensors(run / "model.safetensors", reference / "model.safetensors")
    assert_same_tensors(run / "best.safetensors", reference / "best.safetensors")
    assert metrics(run) == metrics(reference)
