"""Runs and paths (issue 17): one `cnnlab train` at a time in a run directory, a resume that keeps
the terms of the run it continues, temporary files that are never written through a planted
name and never pile up, failures said in words, and training that diverges stopped by one rule.
Each case ends in one line: exit status 1, or 2 for a usage error."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab as cl
from cnnlab.cli.common import Failure, one_line, printable
from cnnlab.cli.runs import CHECKPOINT, CONFIG, LOCK, locked_run
from cnnlab.files import TEMPORARY, atomic_write, temporary_name
from tests.test_cli import cnnlab

SHORT = ["--data", "fashion-mnist-mini", "--limit", "300", "--model", "mlp"]


def one_line_failure(result, code=1) -> str:
    """Exit `code`, exactly one line on stderr and no traceback."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def run(work) -> Path:
    """One epoch of the mlp on 300 bundled images, in work/base."""
    result = cnnlab("train", *SHORT, "--epochs", "1", "--out", "base", cwd=work)
    assert result.returncode == 0, result.stderr
    return work / "base"


# ------------------------------------------------------------- 1. one run a folder
def test_a_second_train_into_a_busy_folder_fails_at_once_and_a_kill_frees_it(work):
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    first = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *SHORT, "--epochs", "200",
                              "--out", "busy", "-q"], cwd=work, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock, deadline = work / "busy" / LOCK, time.monotonic() + 90
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)
                   and (work / "busy" / CHECKPOINT).exists()):  # after its first epoch
            assert first.poll() is None and time.monotonic() < deadline, "the first run never locked"
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)  # it holds the lock, and keeps it while stopped
        error = one_line_failure(cnnlab("train", *SHORT, "--epochs", "1", "--out", "busy", cwd=work))
        assert error == (f"cnnlab: error: busy is in use by another cnnlab train (pid {first.pid}); "
                         "wait for it or choose another --out")
        error = one_line_failure(cnnlab("train", "--resume", "busy", cwd=work))
        assert f"in use by another cnnlab train (pid {first.pid})" in error
    finally:
        first.kill()  # SIGKILL works on a stopped process
        first.wait()
    # the kernel dropped the killed run's lock: nothing stale to clear by hand
    result = cnnlab("train", "--resume", "busy", "--epochs", "1", cwd=work)
    assert result.returncode == 0, result.stderr


def test_the_lock_is_held_by_one_holder_at_a_time(tmp_path):
    with locked_run(tmp_path / "r"):
        with pytest.raises(Failure, match=rf"^{tmp_path / 'r'} is in use by another cnnlab train "
                                          rf"\(pid {os.getpid()}\); wait for it or choose another --out$"):
            with locked_run(tmp_path / "r"):
                pass
    with locked_run(tmp_path / "r"):  # released when the block ends
        pass


# ------------------------------------------------- 2. a resume keeps the run's terms
@pytest.mark.parametrize("flags, recorded", [
    (["--model", "lenet5"], "mlp"),
    (["--data", "mnist"], "fashion-mnist-mini"),
    (["--limit", "200"], "300"),
    (["--val-split", "0.2"], "0.1"),
    (["--seed", "1"], "0"),
    (["--batch-size", "64"], "128"),
])
def test_a_resume_refuses_options_that_contradict_the_run(run, work, flags, recorded):
    before = (run / CONFIG).read_bytes()
    error = one_line_failure(cnnlab("train", "--resume", "base", *flags, cwd=work), code=2)
    assert error.endswith(f"error: {flags[0]} {flags[1]} contradicts the run being resumed "
                          f"({recorded}); give the same value or start a new run")
    assert (run / CONFIG).read_bytes() == before


def test_a_resume_stays_in_its_folder_and_may_change_what_can_change(run, work):
    error = one_line_failure(cnnlab("train", "--resume", "base", "--out", "elsewhere", cwd=work), 2)
    assert "--out elsewhere contradicts the run being resumed (base)" in error
    assert not (work / "elsewhere").exists()
    # the same values, the same folder and a new total of epochs are no contradiction
    result = cnnlab("train", "--resume", "base", *SHORT, "--out", "base", "--epochs", "2",
                    "--val-split", "0.1", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "epochs = 2" in (run / CONFIG).read_text()
    assert len((run / "metrics.csv").read_text().splitlines()) == 3  # header, epochs 1 and 2


# ------------------------------------------------ 3. temporary files, never followed
def test_a_planted_symlink_at_the_old_temporary_name_is_never_written_through(tmp_path):
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")
    path = tmp_path / "m.safetensors"
    (tmp_path / f".{path.name}.tmp{os.getpid()}").symlink_to(target)  # the name before issue 17
    (tmp_path / f"{temporary_name(path)}").symlink_to(target)  # the prefix alone
    atomic_write(path, b"new bytes")
    assert target.read_bytes() == b"keep me" and path.read_bytes() == b"new bytes"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == ["m.safetensors",
                                                                                  "precious"]


def test_temporary_names_are_unpredictable_and_recognised():
    path = Path("run") / CHECKPOINT
    name = temporary_name(path)
    assert name == f".{CHECKPOINT}.tmp{os.getpid()}-"
    match = re.fullmatch(TEMPORARY, name + "0f1e2d3c")
    assert match and match["name"] == CHECKPOINT and int(match["pid"]) == os.getpid()


def test_a_run_start_removes_the_temporaries_of_dead_writers_only(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = out / f".{CHECKPOINT}.tmp{gone.stdout.strip()}-0123abcd"
    dead.write_bytes(b"half a checkpoint")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = out / f".report.html.tmp{alive.pid}-89abcdef"  # another command writing now
        busy.write_bytes(b"<html>")
        other = out / ".notes.tmp"  # not cnnlab's
        other.write_bytes(b"mine")
        with locked_run(out):
            assert not dead.exists() and busy.exists() and other.exists()
    finally:
        alive.kill()
        alive.wait()


# --------------------------------------------------------- 4. failures in words
@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"),
                                         (errno.EFBIG, "File too large")])
def test_a_failed_write_says_why_in_words(tmp_path, monkeypatch, code, words):
    def full(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", full)
    path = tmp_path / "m.safetensors"
    with pytest.raises(OSError) as error:
        atomic_write(path, b"bytes")
    assert one_line(error.value) == (f"could not write {path}: {words}; the previous file, if any, "
                                     "is unchanged")
    assert one_line(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "f.bin")) == \
        "f.bin: the disk is full"
    assert list(tmp_path.iterdir()) == []



# ------------------------------------------------------- 5. divergence, one rule
def _mlp(scale: float):
    """The zoo mlp (10 classes, 8×8 inputs) with every weight drawn N(0, 1)·scale."""
    model = cl.zoo.mlp(num_classes=10, input_shape=(1, 8, 8), seed=0)
    rng = np.random.default_rng(0)
    for p in model.parameters().values():
        p.data[...] = rng.standard_normal(p.data.shape) * scale
    return model


def _data(n: int, value: float | None = None):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    if value is not None:
        x[:] = value
    return x, np.arange(n) % 10


def test_a_loss_grown_huge_but_finite_stops_the_run(tmp_path):
    model = _mlp(1e8)  # scores near 1e27: a finite loss far above 10·ln 10 = 23
    with pytest.raises(FloatingPointError) as failure:
        cl.fit(model, _data(64), loss=cl.SoftmaxCrossEntropy(),
               optimizer=cl.optim.SGD(model, lr=1e-30), epochs=2, batch_size=32, out=tmp_path,
               verbose=False)
    message = str(failure.value)
    assert re.match(r"training stopped at epoch 1, after step 2: the training loss \d\.\d+e\+2\d is "
                    r"above 10·ln C = 23\d? \(10 classes; guessing scores ln C = 2\.3\): the run "
                    r"diverged\. Try a smaller learning rate", message), message
    assert not (tmp_path / CHECKPOINT).exists()  # nothing diverged is kept


def test_overflow_in_the_validation_pass_is_caught_and_named(tmp_path):
    model = _mlp(0.1)
    with pytest.raises(FloatingPointError) as failure:  # not a RuntimeWarning (pytest: an error)
        cl.fit(model, _data(64), val=_data(16, 1e38), loss=cl.SoftmaxCrossEntropy(),
               optimizer=cl.optim.SGD(model, lr=0.01), epochs=2, batch_size=32, out=tmp_path,
               verbose=False)
    message = str(failure.value)
    assert re.match(r"training stopped at epoch 1, validation pass: the validation loss is nan; "
                    r"first non-finite output: Dense #\d \(dense_\d\)\.", message), message
    assert not (tmp_path / CHECKPOINT).exists()


# ---------------------------------------------------------------- 6. smaller
def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def test_a_one_class_folder_is_refused(work):
    for i in range(20):
        _png(work / "one" / "cats" / f"{i:02}.png", i)
    result = cnnlab("train", "--data", "one", "--input", "1x8x8", "--model", "mlp", "--out",
                    "one-run", cwd=work)
    assert result.returncode == 1 and "Traceback" not in result.stderr  # after what was read:
    assert result.stderr.strip().splitlines()[-1] == (
        "cnnlab: error: one has 1 class (cats); a classifier needs at least two: one folder of "
        "images per class")
    assert not (work / "one-run").exists()


def test_an_unknown_split_is_a_usage_error(run, work):
    result = cnnlab("evaluate", run / "model.safetensors", "--split", "bogus", cwd=work)
    assert result.returncode == 2 and "Traceback" not in result.stderr  # argparse's usage, then:
    assert result.stderr.strip().splitlines()[-1] == (
        "cnnlab evaluate: error: argument --split: invalid choice: 'bogus' (choose from 'test', "
        "'train', 'val', 'all')")


def test_control_characters_never_reach_the_terminal():
    assert printable("\x1b[31mred\x1b[0m") == "red"
    assert printable("\x1b]0;title\x07x\x1b]8;;http://e\x1b\\link") == "xlink"
    assert printable("bell\x07 cr\r rtl\u202e ok·×") == "bell\\x07 cr\\r rtl\\u202e ok·×"
    assert one_line(ValueError("class \x1b[2Jgone")) == "class gone"


def test_class_names_from_a_file_reach_the_terminal_without_escapes(tmp_path):
    model = cl.zoo.mlp(num_classes=2, input_shape=(1, 8, 8))
    model.preprocess = cl.data.Preprocess([0.5], [0.25])
    model.class_names = ["\x1b[2J\x1b[31mwiped", "bell\x07"]
    cl.save(model, tmp_path / "m.safetensors")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    result = cnnlab("predict", "m.safetensors", "x.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "wiped" in result.stdout and "bell\\x07" in result.stdout
