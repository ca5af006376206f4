"""`cnnlab lr-find` and the rule behind its suggestion: the smoothing against its formula, the
suggestion on curves whose answer is known, the command end to end (the PNG, the rate it prints
equal to the rule applied to cl.lr_find's own curve), and its usage errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import cnnlab as cl
from cnnlab.cli.train import make_optimizer
from cnnlab.train import smooth, suggest_lr
from cnnlab.train.lr_find import BETA, RULE
from tests.test_viz import cnnlab as here


def test_smoothing_is_the_bias_corrected_moving_average():
    losses = np.array([2.3, 2.2, 2.5, 1.9, 1.0, 0.7, 3.0])
    expected, m = [], 0.0
    for t, value in enumerate(losses, 1):
        m = BETA * m + (1 - BETA) * value
        expected.append(m / (1 - BETA**t))
    np.testing.assert_allclose(smooth(losses), expected, rtol=1e-14)
    assert smooth(losses)[0] == 2.3  # the first value is the first loss, not 2.3·(1 − β)
    np.testing.assert_allclose(smooth(np.full(50, 1.7)), 1.7, rtol=1e-13)  # a flat curve stays flat


def test_the_suggestion_is_a_tenth_of_the_smoothed_minimums_rate():
    lrs = np.geomspace(1e-5, 1, 60)
    losses = 2 - np.tanh(np.linspace(-3, 3, 60)) + np.where(np.arange(60) > 45, 0.5 * (np.arange(60) - 45), 0)
    lr, best = suggest_lr(lrs, losses)
    assert best == int(np.argmin(smooth(losses))) and lr == lrs[best] / 10
    # the smoothing lags: its minimum comes after the raw one, and the suggestion is below both
    assert best > int(np.argmin(losses)) and lr < lrs[int(np.argmin(losses))]
    with pytest.raises(ValueError, match="need at least 2 recorded"):
        suggest_lr([1e-3], [2.3])


def test_the_figure_marks_the_suggestion(tmp_path):
    lrs = np.geomspace(1e-5, 1, 40)
    png = cl.viz.lr_curve(lrs, np.linspace(2.3, 0.5, 40) ** 2, path=tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes() == png
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (640, 400)


def test_cnnlab_lr_find_writes_the_plot_and_prints_the_rate_and_its_rule(capsys, tmp_path):
    status, out, err = here(capsys, "lr-find", "--model", "mlp", "--data", "fashion-mnist-mini",
                            "--limit", "512", "--steps", "40", "--out", tmp_path / "lr.png")
    assert status == 0, err
    assert "learning-rate range test: mlp on fashion-mnist-mini" in err
    with Image.open(tmp_path / "lr.png") as image:
        assert image.format == "PNG"
    lines = out.splitlines()
    assert lines[-2] == f"rule: {RULE}" and lines[-1] == f"plot: {tmp_path / 'lr.png'}"
    # the same test through the API: the same curve, and the rule applied to it
    x, y = cl.data.load("fashion-mnist-mini")
    model = cl.zoo.get("mlp", num_classes=10, input_shape=(1, 28, 28), seed=0)
    opt = make_optimizer(model, {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight-decay": 5e-4})
    lrs, losses = cl.lr_find(model, (x[:512], y[:512]), loss=cl.SoftmaxCrossEntropy(), optimizer=opt,
                             steps=40)
    assert lines[-3] == f"suggested learning rate: {suggest_lr(lrs, losses)[0]:.3g}"
    assert lines[0].startswith(f"{len(losses)} steps, lr 1e-07 to {lrs[-1]:.3g}")


@pytest.mark.parametrize("args, error", [
    (["--start", "1", "--end", "0.1"], "--start 1 must be below --end 0.1"),
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum applies to sgd and rmsprop, not adam"),
    (["--steps", "0"], "argument --steps: expected an integer ≥ 1, got '0'"),
    (["--model", "nope"], "argument --model: invalid choice: 'nope'"),
])
def test_lr_find_usage_errors(capsys, tmp_path, args, error):
    status, out, err = here(capsys, "lr-find", "--data", "fashion-mnist-mini", "--out",
                            tmp_path / "lr.png", *args)
    assert status == 2 and error in err and out == ""
    assert not (tmp_path / "lr.png").exists()


def test_lr_find_help_states_the_rule(capsys):
    status, out, _ = here(capsys, "lr-find", "--help")
    assert status == 0
    text = " ".join(out.split())
    assert "the learning rate at the minimum of the smoothed loss (exponential moving average, β = 0.98, " \
           "bias-corrected), divided by 10" in text
    assert "--out PNG" in text and "examples:" in text
    assert "lr-find" in here(capsys, "--help")[1]
