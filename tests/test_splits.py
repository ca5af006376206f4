"""Train / validation / test: the stratified validation split (cnnlab.data.splits), fit's
val_split and test (choices on validation only, the test split evaluated once, after training),
and the command's --val-split and evaluate's held-out split."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import io
from cnnlab.data.splits import stratified_split
from cnnlab.train import loop
from tests.test_cli import cnnlab

LOSS = cl.SoftmaxCrossEntropy()


def test_each_class_gives_its_share_at_least_one_and_never_its_last():
    y = np.repeat([0, 1, 2, 3, 4], [50, 30, 7, 2, 1])
    train, val = stratified_split(y, 0.1, seed=0)
    assert np.bincount(y[val], minlength=5).tolist() == [5, 3, 1, 1, 0]
    assert np.bincount(y[train], minlength=5).tolist() == [45, 27, 6, 1, 1]
    assert sorted([*train, *val]) == list(range(len(y))) and not set(train) & set(val)
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()


def test_the_split_is_drawn_from_the_seed():
    y = np.arange(1000) % 10
    first, again, other = (stratified_split(y, 0.2, seed=s)[1] for s in (3, 3, 4))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert len(first) == 200


@pytest.mark.parametrize("fraction", [-0.1, 1, 1.5, float("nan"), True, "0.1"])
def test_a_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(ValueError, match=r"val_split must be a number in \[0, 1\)"):
        stratified_split(np.arange(10) % 2, fraction, seed=0)


def test_zero_keeps_every_image_for_training_and_one_image_a_class_cannot_split():
    train, val = stratified_split(np.arange(10) % 2, 0, seed=0)
    assert train.tolist() == list(range(10)) and val.size == 0
    with pytest.raises(cl.DataError, match="finds no class with two images"):
        stratified_split(np.arange(5), 0.5, seed=0)


def tiny():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 1, 8, 8), dtype=np.uint8)
    y = np.arange(200) % 4
    x[y == 1, :, :4] = 255  # something to learn
    return x, y


def model4():
    return cl.Sequential([cl.Flatten(), cl.Dense(16), cl.ReLU(), cl.Dense(4)], input_shape=(1, 8, 8))


def test_fit_chooses_on_validation_and_evaluates_the_test_split_once_after_training(tmp_path, monkeypatch):
    x, y = tiny()
    seen = []  # (size of the data evaluate() was given, epochs done at that moment)
    trainer_epochs = []

    def spy(model, data, **kw):
        seen.append((len(data.y), len(trainer_epochs)))
        return evaluate(model, data, **kw)

    evaluate = loop.evaluate
    monkeypatch.setattr(loop, "evaluate", spy)
    model = model4()

    class Count(cl.Callback):
        def on_epoch_end(self, trainer, row):
            trainer_epochs.append(row["epoch"])

    history = cl.fit(model, (x[:160], y[:160]), val_split=0.25, test=(x[160:], y[160:]), loss=LOSS,
                     optimizer=cl.optim.SGD(model, lr=0.05), epochs=3, batch_size=32, out=tmp_path,
                     callbacks=[Count()], verbose=False)
    # validation: 40 of the 160 training images (10 a class), once an epoch; test: 40, once, at the end
    assert seen == [(40, 0), (40, 1), (40, 2), (40, 3)]
    assert history.test["n"] == 40 and history.rows[-1]["test_acc"] == history.test["accuracy"]
    assert all("test_acc" not in row for row in history.rows[:-1])
    with open(tmp_path / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["test_acc"] != "" for row in table] == [False, False, True]
    # the model file records how its numbers were obtained
    evaluation = json.loads(io.read_file(tmp_path / "model.safetensors")[1]["evaluation"])
    assert evaluation == {"epochs": 3, "validation": {"n": 40, "held_out": 0.25}, "test": history.test}
    # best.safetensors: the epoch with the best validation accuracy
    best = int(np.argmax(history["val_acc"]))
    assert history["val_acc"][best] == max(history["val_acc"])
    # preprocessing is measured on the 120 training images only
    keep, _ = stratified_split(y[:160], 0.25, seed=0)
    assert np.allclose(model.preprocess.mean, cl.data.Preprocess.fit(x[:160][keep]).mean)


def test_without_validation_no_best_checkpoint_is_chosen_and_the_run_says_so(tmp_path, capsys):
    x, y = tiny()
    model = model4()
    cl.fit(model, (x, y), loss=LOSS, optimizer=cl.optim.SGD(model, lr=0.05), epochs=1, out=tmp_path)
    assert "no best checkpoint is chosen (best.safetensors is not written)" in capsys.readouterr().err
    assert not (tmp_path / "best.safetensors").exists() and (tmp_path / "model.safetensors").exists()


def test_val_and_val_split_together_or_on_a_loader_are_refused():
    x, y = tiny()
    model = model4()
    opt = cl.optim.SGD(model)
    with pytest.raises(ValueError, match="give val= or val_split=, not both"):
        cl.fit(model, (x, y), val=(x, y), val_split=0.1, loss=LOSS, optimizer=opt, epochs=1)
    with pytest.raises(ValueError, match="for a Loader, pass the validation data as val="):
        cl.fit(model, cl.data.Loader(x, y), val_split=0.1, loss=LOSS, optimizer=opt, epochs=1)


def test_a_run_resumes_only_with_its_own_val_split(tmp_path):
    x, y = tiny()

    def run(val_split, resume=None):
        model = model4()
        return cl.fit(model, (x, y), val_split=val_split, loss=LOSS, optimizer=cl.optim.SGD(model),
                      epochs=2, out=tmp_path, resume=resume, verbose=False)

    model = model4()
    cl.fit(model, (x, y), val_split=0.1, loss=LOSS, optimizer=cl.optim.SGD(model), epochs=1,
           out=tmp_path, verbose=False)
    with pytest.raises(ValueError, match="was trained with seed=0, batch_size=128, val_split=0.1"):
        run(0.2, resume=tmp_path / "last.ckpt.safetensors")
    assert len(run(0.1, resume=tmp_path / "last.ckpt.safetensors")) == 2


def test_the_command_without_a_validation_split_chooses_no_best_checkpoint(tmp_path):
    result = cnnlab("train", "--data", "fashion-mnist-mini", "--model", "mlp", "--limit", "300",
                    "--epochs", "1", "--val-split", "0", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "300 training (no validation split), 2,000 test images" in result.stderr
    assert "no best checkpoint is chosen" in result.stderr and "val_acc" not in result.stderr
    assert not (tmp_path / "run" / "best.safetensors").exists()
    assert 'val-split = 0.0' in (tmp_path / "run" / "config.toml").read_text()



def test_a_test_loss_that_overflows_is_recorded_as_unknown_and_the_model_still_loads(tmp_path):
    x, y = tiny()
    model = model4()
    huge = np.full((8, 1, 8, 8), 3e38, np.float32)  # normalised input at float32's limit: scores overflow
    history = cl.fit(model, (x, y), test=(huge, y[:8]), loss=LOSS, optimizer=cl.optim.SGD(model),
                     epochs=1, out=tmp_path, verbose=False)
    assert history.test["loss"] is None and history.rows[-1]["test_loss"] is None
    assert cl.load(tmp_path / "model.safetensors").count_params() == model.count_params()
