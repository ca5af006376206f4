"""Defaults that do not trip a short run (issue 15): a warm-up whose every step learns, zoo
models that start at the loss of guessing, an epoch line that says when training is worse than
guessing, and a run's config.toml that `cnnlab train -c` can reuse."""

import math
import re

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.cli.train import make_schedule
from cnnlab.train.history import epoch_line, guessing_loss
from tests.test_cli import cnnlab

SMALL = ["fmnist-cnn", "fmnist-cnn-bn", "lenet5", "mlp", "vgg-small", "resnet8", "resnet20"]


# ------------------------------------------------------------------- 1. the warm-up
def test_a_warm_up_in_steps_starts_at_lr_over_n_and_reaches_lr_on_its_last_step():
    # 2 epochs of warm-up at 4 steps an epoch: n = 8 steps, step s gets (s + 1)/8
    schedule = cl.optim.CosineLR(1.0, 10, warmup=2, min_lr=0.1, steps_per_epoch=4)
    assert schedule.warmup_steps == 8
    for step in range(8):
        assert schedule(step / 4) == pytest.approx((step + 1) / 8, abs=1e-15), step
    # then the cosine from epoch 2, as without steps_per_epoch
    assert {e: schedule(e) for e in (2, 6, 10, 12)} == pytest.approx({2: 1.0, 6: 0.55, 10: 0.1, 12: 0.1})
    assert schedule.describe().startswith("lr = 1·(step + 1)/8 for the first 8 steps, then lr = 0.1 + ")
    again = cl.optim.Schedule.from_config(schedule.config())
    assert again.config() == schedule.config() and again(0.25) == schedule(0.25)


@pytest.mark.parametrize("warmup, steps, n", [(0.1, 8, 1), (0.1, 10, 1), (0.5, 71, 36), (0.01, 3, 1)])
def test_a_warm_up_is_at_least_one_step_and_its_first_step_learns(warmup, steps, n):
    schedule = cl.optim.CosineLR(0.05, 1, warmup=warmup, steps_per_epoch=steps)
    assert schedule.warmup_steps == n
    lrs = [schedule(s / steps) for s in range(steps)]
    assert lrs[0] == pytest.approx(0.05 / n) and all(lr > 0 for lr in lrs)
    assert max(lrs) == pytest.approx(0.05)


def test_a_one_step_run_takes_its_step_at_lr():
    assert cl.optim.CosineLR(0.05, 1, warmup=0.5, steps_per_epoch=1)(0) == 0.05


def test_the_commands_cosine_schedule_never_sets_lr_0():
    # `--limit 1000 --epochs 1`: 900 training images, 8 steps; the warm-up (a tenth) is one step
    schedule = make_schedule("cosine", 0.05, 1, 8)
    assert schedule(0) == 0.05 and all(schedule(s / 8) > 0 for s in range(8))
    default = make_schedule("cosine", 0.05, 5, 71)  # the default run: half an epoch, 36 steps
    assert default(0) == pytest.approx(0.05 / 36) and default(35 / 71) == pytest.approx(0.05)


def test_a_short_run_on_the_bundled_subset_learns(tmp_path):
    # seeds 0-4 at CNNLAB_NUM_THREADS=1 and 2 gave 53.7-64.5% test accuracy (the same at both);
    # before issue 15: 10.6% (the first step at lr 0, the next at full lr on a random head)
    result = cnnlab("train", "--data", "fashion-mnist-mini", "--limit", "1000", "--epochs", "1",
                    "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    accuracy = float(re.match(r"test accuracy ([\d.]+)%", result.stdout)[1])
    assert accuracy >= 45, result.stderr
    assert "worse than guessing" not in result.stderr


# ------------------------------------------------------------- 2. the initial loss
@pytest.fixture(scope="module")
def images():
    x, y = cl.data.load("fashion-mnist-mini", "train")
    x, y = x[::40], y[::40]  # 250 images, every class
    return cl.data.Preprocess.fit(x)(x), y


@pytest.mark.parametrize("name", SMALL)
def test_every_small_zoo_model_starts_at_the_loss_of_guessing(name, images):
    x, y = images
    model = cl.zoo.get(name, seed=1)
    for training in (False, True):  # the sanity check, and the loss of the first step
        loss = cl.SoftmaxCrossEntropy().forward(model.forward(x, training=training), y)
        assert loss == pytest.approx(math.log(10), rel=0.1), (name, training)
    head = model.layers[-1]
    assert isinstance(head, cl.Dense) and head.init == "zeros"


def test_a_zero_head_learns_different_classes_from_its_first_step(images):
    x, y = images
    model = cl.zoo.mlp(seed=0)
    loss, opt = cl.SoftmaxCrossEntropy(), cl.optim.SGD(model, lr=0.05)
    for _ in range(2):
        loss.forward(model.forward(x, training=True), y)
        model.backward(loss.backward())
        opt.step()
    head = model.layers[-1].weight.data
    assert len(np.unique(head.round(8), axis=0)) == 10  # every class's row its own
    assert model.layers[1].weight.grad is not None and np.abs(model.layers[1].weight.grad).max() > 0


# ---------------------------------------------------------- 3. worse than guessing
def _row(loss):
    return {"epoch": 1, "train_loss": loss, "train_acc": 0.1, "val_loss": None, "val_acc": None,
            "lr": 0.002, "seconds": 1.0}


def test_an_epoch_worse_than_guessing_says_so_with_a_smaller_learning_rate():
    model = cl.zoo.mlp()
    line = epoch_line(_row(87.0), 5, loss=cl.SoftmaxCrossEntropy(), model=model, lr=0.05)
    assert line.endswith("— loss 87 is worse than guessing (2.30): try a smaller learning rate, "
                         "e.g. 0.005")
    assert "guessing" not in epoch_line(_row(2.40), 5, loss=cl.SoftmaxCrossEntropy(), model=model,
                                        lr=0.05)  # within 10% of ln 10: a slow start, not a fault
    assert guessing_loss(cl.MulticlassSVM(), model) == 9.0  # (C − 1)·Δ
    assert epoch_line(_row(87.0), 5) == "epoch 1/5  loss 87.0000  acc 10.00%  lr 0.002  1.0 s"


def test_fit_prints_the_hint_when_training_is_worse_than_guessing(images, capsys):
    # Adam at lr 0.03 ends its epoch at a loss near 12: worse than guessing (2.30), below the
    # 10·ln C = 23 at which the run counts as diverged and stops (tests/test_runs.py)
    x, y = images
    model = cl.zoo.mlp(seed=0)
    cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.Adam(model, lr=0.03),
           epochs=1, batch_size=32, progress=False)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("epoch 1/1") and "is worse than guessing (2.30): try a smaller learning " \
        "rate, e.g. 0.003" in line


# ------------------------------------------------------ 4. config.toml, reused with -c
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("reuse")
    result = cnnlab("train", "--data", "fashion-mnist-mini", "--limit", "200", "--epochs", "1",
                    "--out", "run", cwd=work)
    assert result.returncode == 0, result.stderr
    return work, result


def test_the_command_a_run_s_config_toml_gives_trains_the_same_run_again(tiny_run):
    work, first = tiny_run
    text = (work / "run" / "config.toml").read_text()
    command = re.search(r"cnnlab (train -c \S+)", text)[1].split()  # what its header says
    again = cnnlab(*command, cwd=work)
    assert again.returncode == 0, again.stderr
    folder = re.search(r"saved to (\S+)/model.safetensors", again.stdout)[1]
    assert folder.startswith("runs/fmnist-cnn-") and (work / folder / "config.toml").is_file()
    accuracy = re.compile(r"test accuracy [\d.]+%")
    assert accuracy.search(again.stdout)[0] == accuracy.search(first.stdout)[0]  # the same run
    assert "\nout = " not in text


def test_a_run_s_config_toml_takes_flags_another_optimizer_included(tiny_run):
    work, _ = tiny_run
    result = cnnlab("train", "-c", "run/config.toml", "--optimizer", "adam", "--out", "other",
                    cwd=work)
    assert result.returncode == 0, result.stderr
    assert "Adam(lr=0.001," in result.stderr  # not SGD's lr 0.05 and momentum from the file
    assert "optimizer = \"adam\"" in (work / "other" / "config.toml").read_text()
