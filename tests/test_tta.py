"""Issue 19's building blocks. Test-time augmentation: `tta="flip"` averages each image's scores
with those of its mirror image, in cl.predict/predict_scores/evaluate, fit's one test evaluation,
and the commands evaluate, predict and train (--tta flip); "none" is the plain forward, bit for
bit. And cnnlab train --label-smoothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import cnnlab as cl
from tests.test_cli import cnnlab


@pytest.fixture(scope="module")
def model():
    m = cl.Sequential([cl.Conv2D(4, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(),
                       cl.Dense(3)], input_shape=(1, 8, 8), seed=0)
    for p in m.parameters().values():
        p.data += np.random.default_rng(1).normal(0, 0.3, p.shape).astype(p.data.dtype)
    m.preprocess = cl.data.Preprocess([0.5], [0.25])
    return m


def test_flip_averages_the_scores_of_the_image_and_its_mirror(model):
    x = np.random.default_rng(2).integers(0, 256, (7, 1, 8, 8), dtype=np.uint8)
    plain = cl.train.predict_scores(model, x)
    mirrored = cl.train.predict_scores(model, np.ascontiguousarray(x[..., ::-1]))
    flipped = cl.train.predict_scores(model, x, tta="flip", batch_size=3)
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, rtol=1e-6, atol=1e-6)
    assert np.array_equal(cl.train.predict_scores(model, x, tta="none"), plain)
    np.testing.assert_allclose(cl.predict(model, x, tta="flip").sum(axis=1), 1, rtol=1e-6)
    # a left-right symmetric batch: its mirror is itself, so flip changes nothing
    symmetric = np.concatenate([x[..., :4], x[..., :4][..., ::-1]], axis=-1)
    np.testing.assert_allclose(cl.train.predict_scores(model, symmetric, tta="flip"),
                               cl.train.predict_scores(model, symmetric), rtol=1e-6, atol=1e-6)


def test_evaluate_with_flip_scores_the_averaged_scores(model):
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8), rng.integers(0, 3, 40)
    result = cl.evaluate(model, (x, y), loss=cl.SoftmaxCrossEntropy(), k=2, tta="flip",
                         keep_scores=True)
    scores = cl.train.predict_scores(model, x, tta="flip")
    np.testing.assert_allclose(result["scores"], scores, rtol=1e-6, atol=1e-6)
    assert result["accuracy"] == pytest.approx(float((scores.argmax(axis=1) == y).mean()))
    with pytest.raises(ValueError, match="evaluate: tta must be one of none, flip. Received: tta='rot'"):
        cl.evaluate(model, (x, y), tta="rot")


def test_fit_scores_the_test_split_with_flip_and_records_it(tmp_path):
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 256, (60, 1, 8, 8), dtype=np.uint8), rng.integers(0, 3, 60)
    m = cl.Sequential([cl.Flatten(), cl.Dense(3)], input_shape=(1, 8, 8), seed=0)
    history = cl.fit(m, (x[:40], y[:40]), test=(x[40:], y[40:]), loss=cl.SoftmaxCrossEntropy(),
                     optimizer=cl.optim.SGD(m, lr=0.01), epochs=1, verbose=False, progress=False,
                     tta="flip", out=tmp_path / "run")
    expected = cl.evaluate(m, (x[40:], y[40:]), loss=cl.SoftmaxCrossEntropy(), tta="flip")
    assert history.test["accuracy"] == expected["accuracy"]
    assert history.test["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    evaluation = json.loads(cl.io.read_file(tmp_path / "run" / "model.safetensors")[1]["evaluation"])
    assert evaluation["tta"] == "flip" and evaluation["test"]["accuracy"] == expected["accuracy"]
    with pytest.raises(ValueError, match="fit: tta must be one of none, flip"):
        cl.fit(m, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.SGD(m), epochs=1,
               verbose=False, tta="mirror")


def test_the_commands_take_tta_flip(tmp_path):
    short = ["--data", "fashion-mnist-mini", "--limit", "300", "--model", "mlp", "--epochs", "1"]
    trained = cnnlab("train", *short, "--tta", "flip", "--out", "run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "with test-time augmentation flip" in trained.stdout
    assert 'tta = "flip"' in (tmp_path / "run" / "config.toml").read_text()
    model = tmp_path / "run" / "model.safetensors"
    plain = json.loads(cnnlab("evaluate", model, "--json", cwd=tmp_path).stdout)
    flipped = json.loads(cnnlab("evaluate", model, "--json", "--tta", "flip", cwd=tmp_path).stdout)
    assert plain["tta"] == "none" and flipped["tta"] == "flip" and flipped["n"] == plain["n"]
    assert flipped["loss"] != plain["loss"]
    Image.fromarray(np.tile(np.arange(28, dtype=np.uint8) * 9, (28, 1))).save(tmp_path / "ramp.png")
    one = cnnlab("predict", model, "ramp.png", "--json", "--tta", "flip", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    bad = cnnlab("evaluate", model, "--tta", "rotate", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'rotate'" in bad.stderr


def test_train_label_smoothing_is_a_recorded_flag(tmp_path):
    """--label-smoothing E trains on smoothed targets (issue 19's recipes use it): recorded in
    config.toml, the first epoch's loss differs from the plain run's, E outside [0, 1) is a
    usage error naming the flag."""
    short = ["--data", "fashion-mnist-mini", "--limit", "300", "--model", "mlp", "--epochs", "1",
             "--val-split", "0"]
    plain = cnnlab("train", *short, "--out", "plain", cwd=tmp_path)
    smooth = cnnlab("train", *short, "--label-smoothing", "0.1", "--out", "smooth", cwd=tmp_path)
    assert plain.returncode == 0 and smooth.returncode == 0, smooth.stderr
    assert "label-smoothing = 0.1" in (tmp_path / "smooth" / "config.toml").read_text()

    def loss(result):
        line = next(row for row in result.stderr.splitlines() if row.startswith("epoch 1/1"))
        return float(line.split("loss")[1].split()[0])

    assert loss(smooth) != loss(plain)
    bad = cnnlab("train", *short, "--label-smoothing", "1.5", cwd=tmp_path)
    assert bad.returncode == 2 and "--label-smoothing" in bad.stderr
