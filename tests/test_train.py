"""cl.fit on real Fashion-MNIST images (a small subset of the bundled set): the loss falls, the
history and its CSV, early stopping, the NaN guard, bit-identical resumption, evaluate, predict,
lr_find, transfer learning and weight decay."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import io
from cnnlab.data import transforms as T
from cnnlab.train import COLUMNS

LOSS = cl.SoftmaxCrossEntropy()


@pytest.fixture(scope="module")
def fmnist():
    """1,024 training and 512 test images of the bundled Fashion-MNIST subset (uint8)."""
    x, y = cl.data.load()
    xt, yt = cl.data.load(split="test")
    pick = np.random.default_rng(0).permutation(len(x))[:1024]
    return x[pick], y[pick], xt[:512], yt[:512]


def small_cnn(seed: int = 0, classes: int = 10) -> cl.Sequential:
    return cl.Sequential(
        [cl.Conv2D(8, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(), cl.Dense(classes)],
        input_shape=(1, 28, 28), seed=seed,
    )


def stateful_cnn(seed: int = 0) -> cl.Sequential:
    """Everything a resumed run must restore: BatchNorm buffers and Dropout's RNG."""
    return cl.Sequential(
        [cl.Conv2D(4, 3, padding=1, bias=False), cl.BatchNorm2D(), cl.ReLU(), cl.MaxPool2D(2),
         cl.Dropout(0.3), cl.Flatten(), cl.Dense(10)],
        input_shape=(1, 28, 28), seed=seed,
    )


def weights(model) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in io.model_tensors(model).items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype
        assert np.array_equal(a[name], b[name]), f"{name} differs"


# ---------------------------------------------------------------- fit, history
def test_fit_loss_falls_and_history_matches_metrics_csv(fmnist, tmp_path):
    x, y, xt, yt = fmnist
    model = small_cnn()
    history = cl.fit(model, (x, y), loss=LOSS, optimizer=cl.optim.SGD(model, lr=0.02, momentum=0.9),
                     epochs=3, batch_size=64, val=(xt, yt), out=tmp_path, verbose=False)
    losses = history["train_loss"]
    assert len(history) == 3 and history["epoch"] == [1, 2, 3]
    assert losses[0] > losses[1] > losses[2]
    assert history["val_acc"][-1] > 0.6  # 10 classes: chance is 0.1
    for row in history.rows:
        assert set(COLUMNS) <= set(row)
        assert all(row[c] is not None and math.isfinite(row[c]) for c in COLUMNS), row
        assert 0 <= row["train_acc"] <= 1 and 0 <= row["val_acc"] <= 1 and row["seconds"] > 0
        assert row["lr"] == 0.02

    with open(tmp_path / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == [*COLUMNS, "test_loss", "test_acc"] and len(table) == 3
    for row, saved in zip(history.rows, table, strict=True):
        for c in COLUMNS:
            assert float(saved[c]) == pytest.approx(row[c], rel=1e-5), c
    # the run folder: final model, best model and the last checkpoint, all loadable
    for name in ("model.safetensors", "best.safetensors", "last.ckpt.safetensors"):
        assert (tmp_path / name).is_file()
    final = cl.load(tmp_path / "model.safetensors")
    assert np.array_equal(cl.predict(final, xt[:32]), cl.predict(model, xt[:32]))
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_fit_without_validation_leaves_val_columns_empty(fmnist):
    x, y, _, _ = fmnist
    model = small_cnn()
    history = cl.fit(model, (x[:256], y[:256]), loss=LOSS, optimizer=cl.optim.SGD(model, lr=0.01),
                     epochs=1, batch_size=100, verbose=False)
    assert history["val_loss"] == [None] and history["val_acc"] == [None]
    assert history.to_csv().splitlines()[1].split(",")[3:5] == ["", ""]


def test_fit_refuses_bad_arguments(fmnist):
    x, y, _, _ = fmnist
    model = small_cnn()
    opt = cl.optim.SGD(model)
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        cl.fit(model, (x, y), loss=LOSS, optimizer=opt, epochs=0)
    with pytest.raises(ValueError, match="checkpoint_every=2 needs a run folder"):
        cl.fit(model, (x, y), loss=LOSS, optimizer=opt, epochs=1, checkpoint_every=2)
    with pytest.raises(ValueError, match="monitor must be one of"):
        cl.EarlyStopping(monitor="accuracy")


# ------------------------------------------------------------- early stopping
def test_early_stopping_stops_when_the_monitor_stalls(fmnist, capsys):
    x, y, xt, yt = fmnist
    model = small_cnn()
    # lr = 0: the validation loss cannot improve after the first epoch
    history = cl.fit(model, (x[:256], y[:256]), loss=LOSS, optimizer=cl.optim.SGD(model, lr=0.0),
                     epochs=10, batch_size=128, val=(xt[:128], yt[:128]),
                     callbacks=[cl.EarlyStopping("val_loss", patience=2)])
    assert len(history) == 3
    assert history["val_loss"][0] == history["val_loss"][2]
    assert "early stopping: val_loss has not improved" in capsys.readouterr().err


def test_early_stopping_on_train_loss_keeps_going_while_it_improves(fmnist):
    x, y, _, _ = fmnist
    model = small_cnn()
    stopper = cl.EarlyStopping("train_loss", patience=1)
    history = cl.fit(model, (x[:256], y[:256]), loss=LOSS, optimizer=cl.optim.Adam(model, lr=1e-3),
                     epochs=4, batch_size=64, callbacks=[stopper], verbose=False)
    assert len(history) == 4 and stopper.wait == 0 and stopper.best == history["train_loss"][-1]


def test_early_stopping_on_val_needs_validation_data(fmnist):
    x, y, _, _ = fmnist
    model = small_cnn()
    with pytest.raises(ValueError, match="needs validation data"):
        cl.fit(model, (x[:128], y[:128]), loss=LOSS, optimizer=cl.optim.SGD(model), epochs=2,
               callbacks=[cl.EarlyStopping("val_acc")], verbose=False)


# ------------------------------------------------------------------ NaN guard
def test_nan_guard_names_epoch_step_and_layer_and_keeps_the_last_checkpoint(fmnist, tmp_path):
    x, y, _, _ = fmnist
    model = small_cnn()
    cl.fit(model, (x[:256], y[:256]), loss=LOSS, optimizer=cl.optim.SGD(model, lr=0.01), epochs=1,
           batch_size=64, out=tmp_path, verbose=False)
    checkpoint = tmp_path / "last.ckpt.safetensors"
    good = checkpoint.read_bytes()
    # resume into epoch 2 with an absurd learning rate: the weights blow up
    model = small_cnn()
    with pytest.raises(FloatingPointError) as failure:
        cl.fit(model, (x[:256], y[:256]), loss=LOSS, optimizer=cl.optim.SGD(model, lr=0.01),
               epochs=3, batch_size=64, out=tmp_path, resume=checkpoint, schedule=lambda e: 1e30,
               verbose=False)
    message = str(failure.value)
    assert re.search(r"training stopped at epoch 2, step \d+: ", message), message
    assert re.search(r"(Conv2D|Dense) #\d \((conv2d|dense)_1\)", message), message
    assert f"The last good checkpoint stays: {checkpoint}" in message
    assert checkpoint.read_bytes() == good
    restored = cl.load(checkpoint)
    assert all(np.isfinite(p.data).all() for p in restored.parameters().values())


def test_nan_guard_never_checkpoints_overflowed_weights(fmnist, tmp_path):
    # lr·g overflows float32 in the update itself, with a finite loss and gradient; with a
    # checkpoint every step the guard must stop before such weights are written
    x, y, _, _ = fmnist
    model = small_cnn()
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 3: the update made conv2d_1.weight"):
        cl.fit(model, (x[:256], y[:256]), loss=LOSS, optimizer=cl.optim.SGD(model, lr=0.01),
               epochs=2, batch_size=64, out=tmp_path, checkpoint_every=1,
               schedule=lambda e: 0.01 if e < 2 / 4 else 1e39, verbose=False)
    tensors, _ = io.read_file(tmp_path / "last.ckpt.safetensors")
    assert all(np.isfinite(v).all() for v in tensors.values())


def test_nan_guard_names_an_input_that_is_not_finite(fmnist):
    x, y, _, _ = fmnist
    bad = x[:64].astype(np.float32) / 255
    bad[5, 0, 3, 3] = np.inf
    model = small_cnn()
    with pytest.raises(FloatingPointError, match="epoch 1, step 1: .*the input batch itself"):
        cl.fit(model, (bad, y[:64]), loss=LOSS, optimizer=cl.optim.SGD(model), epochs=1,
               batch_size=64, verbose=False)


# --------------------------------------------------------------------- resume
def _resume_setup(fmnist):
    x, y, xt, yt = fmnist
    train, val = (x[:512], y[:512]), (xt[:128], yt[:128])

    def run(epochs, out, **kwargs):
        model = stateful_cnn()
        history = cl.fit(
            model, train, loss=LOSS, optimizer=cl.optim.Adam(model, lr=3e-3, weight_decay=1e-4),
            epochs=epochs, batch_size=64, val=val, out=out, seed=7, verbose=False,
            schedule=cl.optim.CosineLR(3e-3, 3, warmup=0.5),
            transform=kwargs.pop("transform", AUGMENT),
            callbacks=[cl.EarlyStopping("val_loss", patience=5)], **kwargs)
        return model, history

    return run


AUGMENT = T.Compose([T.RandomCrop(2), T.RandomFlip(), T.RandomErasing(p=0.5)])


def _strip_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history.rows]


def test_resume_after_an_epoch_is_bit_identical_to_the_uninterrupted_run(fmnist, tmp_path):
    run = _resume_setup(fmnist)
    full, history_full = run(3, tmp_path / "a")
    run(1, tmp_path / "b")
    resumed, history_resumed = run(3, tmp_path / "b", resume=tmp_path / "b" / "last.ckpt.safetensors")
    assert_same_weights(weights(full), weights(resumed))
    assert io.rng_states(full) == io.rng_states(resumed)
    assert _strip_seconds(history_full) == _strip_seconds(history_resumed)
    # and the fresh model really differs: the check above is not vacuous
    assert not np.array_equal(weights(stateful_cnn())["param.dense_1.weight"],
                              weights(full)["param.dense_1.weight"])


class Crash(Exception):
    pass


class CrashAt:
    """The augmentation, but the `at`-th batch (counting from 1) raises: a run killed mid-epoch."""

    def __init__(self, at: int):
        self.at, self.calls = at, 0

    def __call__(self, xb, rng):
        self.calls += 1
        if self.calls == self.at:
            raise Crash
        return AUGMENT(xb, rng)


def test_resume_from_a_mid_epoch_checkpoint_is_bit_identical(fmnist, tmp_path):
    run = _resume_setup(fmnist)
    full, history_full = run(3, tmp_path / "a")
    # 8 batches per epoch, a checkpoint every 5 steps: killed at batch 13, the last checkpoint
    # is at step 10 (epoch 2, batch 2)
    with pytest.raises(Crash):
        run(3, tmp_path / "b", checkpoint_every=5, transform=CrashAt(13))
    checkpoint = tmp_path / "b" / "last.ckpt.safetensors"
    training = json.loads(io.read_file(checkpoint)[1]["training"])
    assert (training["epoch"], training["step"], training["global_step"]) == (1, 2, 10)
    resumed, history_resumed = run(3, tmp_path / "b", checkpoint_every=5, resume=checkpoint)
    assert_same_weights(weights(full), weights(resumed))
    assert _strip_seconds(history_full) == _strip_seconds(history_resumed)


def test_resume_refuses_a_different_seed_or_batch_size(fmnist, tmp_path):
    x, y, _, _ = fmnist
    model = small_cnn()
    cl.fit(model, (x[:128], y[:128]), loss=LOSS, optimizer=cl.optim.SGD(model), epochs=1,
           batch_size=32, seed=1, out=tmp_path, verbose=False)
    checkpoint = tmp_path / "last.ckpt.safetensors"
    for seed, batch_size in ((2, 32), (1, 64)):
        other = small_cnn()
        with pytest.raises(ValueError, match="trained with seed=1, batch_size=32"):
            cl.fit(other, (x[:128], y[:128]), loss=LOSS, optimizer=cl.optim.SGD(other), epochs=2,
                   batch_size=batch_size, seed=seed, resume=checkpoint, verbose=False)
    # a model file is not a checkpoint
    with pytest.raises(cl.ModelFileError, match="not a training checkpoint"):
        cl.fit(small_cnn(), (x[:128], y[:128]), loss=LOSS, optimizer=cl.optim.SGD(model), epochs=2,
               batch_size=32, seed=1, resume=tmp_path / "model.safetensors", verbose=False)


# ------------------------------------------------------ evaluate and predict
@pytest.fixture(scope="module")
def trained(fmnist):
    x, y, _, _ = fmnist
    model = small_cnn()
    cl.fit(model, (x, y), loss=LOSS, optimizer=cl.optim.Adam(model, lr=2e-3), epochs=2,
           batch_size=64, verbose=False)
    return model


def test_evaluate_reports_accuracy_top5_loss_confusion_and_per_class(trained, fmnist):
    _, _, xt, yt = fmnist
    result = cl.evaluate(trained, (xt, yt), loss=LOSS, batch_size=100)
    assert set(result) == {"n", "accuracy", "top5", "loss", "confusion", "per_class"}
    scores = np.concatenate([trained.forward(trained.preprocess(xt[i : i + 50]))
                             for i in range(0, len(xt), 50)])
    assert result["n"] == len(yt)
    assert result["accuracy"] == pytest.approx(np.mean(scores.argmax(1) == yt))
    top5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    assert result["top5"] == pytest.approx(np.mean((top5 == yt[:, None]).any(1)))
    assert result["accuracy"] <= result["top5"] <= 1
    assert result["loss"] == pytest.approx(LOSS.forward(scores, yt), rel=1e-5)
    confusion = result["confusion"]
    assert confusion.shape == (10, 10) and confusion.sum() == len(yt)
    assert np.array_equal(confusion.sum(axis=1), np.bincount(yt, minlength=10))
    assert np.array_equal(np.diag(confusion).sum(), round(result["accuracy"] * len(yt)))
    assert np.allclose(result["per_class"], np.diag(confusion) / confusion.sum(axis=1))
    # a Loader gives the same numbers; evaluation leaves BatchNorm/Dropout state alone
    loader = cl.data.Loader(xt, yt, 64, preprocess=trained.preprocess)
    again = cl.evaluate(trained, loader, k=3)
    assert again["accuracy"] == result["accuracy"] and "top3" in again and again["loss"] is None


def test_evaluate_uint8_needs_preprocessing(fmnist):
    _, _, xt, yt = fmnist
    with pytest.raises(ValueError, match="uint8 images need model.preprocess"):
        cl.evaluate(small_cnn(), (xt, yt))


def test_predict_gives_probabilities(trained, fmnist):
    _, _, xt, yt = fmnist
    probs = cl.predict(trained, xt[:300], batch_size=128)
    assert probs.shape == (300, 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5) and (probs >= 0).all()
    assert np.mean(probs.argmax(1) == yt[:300]) == pytest.approx(
        cl.evaluate(trained, (xt[:300], yt[:300]))["accuracy"])
    # float input is used as given (already preprocessed)
    assert np.allclose(cl.predict(trained, trained.preprocess(xt[:10])), probs[:10], atol=1e-6)


# ------------------------------------------------------------------- lr_find
def test_lr_find_leaves_the_model_and_optimizer_unchanged(fmnist):
    x, y, _, _ = fmnist
    model = stateful_cnn()
    opt = cl.optim.Adam(model, lr=1e-3)
    cl.fit(model, (x[:128], y[:128]), loss=LOSS, optimizer=opt, epochs=1, batch_size=64,
           verbose=False)
    before, rng_before = weights(model), io.rng_states(model)
    arrays_before, meta_before = opt.state_dict()
    lrs, losses = cl.lr_find(model, (x, y), loss=LOSS, optimizer=opt, start=1e-6, end=1e4,
                             steps=40, batch_size=64)
    assert 2 <= len(lrs) < 40 and len(lrs) == len(losses)  # stopped when the loss exploded
    assert np.all(np.diff(lrs) > 0) and lrs[0] == pytest.approx(1e-6)
    assert np.all(np.isfinite(losses))
    assert_same_weights(before, weights(model))
    assert io.rng_states(model) == rng_before
    arrays_after, meta_after = opt.state_dict()
    assert meta_after == meta_before and opt.lr == 1e-3
    assert_same_weights(arrays_before, arrays_after)


def test_lr_find_stops_at_an_overflowing_loss_without_warnings(fmnist):
    # pytest turns warnings into errors: an overflow must end the test, not raise
    x, y, _, _ = fmnist
    model = small_cnn()
    # lrs 1e-3, 1e22, 1e47: the second step leaves weights near 1e20, whose forward overflows
    lrs, losses = cl.lr_find(model, (x[:256], y[:256]), loss=LOSS, optimizer=cl.optim.SGD(model, lr=0.1),
                             start=1e-3, end=1e47, steps=3, batch_size=64)
    assert len(lrs) == 2 and np.all(np.isfinite(losses))


# --------------------------------------------------------- transfer learning
def test_backward_without_input_grad_skips_frozen_layers(rng):
    model = cl.Sequential([cl.Conv2D(3, 3), cl.ReLU(), cl.Conv2D(4, 3), cl.ReLU(), cl.Flatten(),
                           cl.Dense(5)], input_shape=(2, 9, 9))
    model.freeze(up_to="conv2d_2")
    frozen = model.layers[0]

    def no_work(dy):
        raise AssertionError("backward ran in a frozen layer")

    frozen.backward = no_work
    x = rng.standard_normal((4, 2, 9, 9)).astype(np.float32)
    LOSS.forward(model.forward(x, training=True), np.arange(4))
    assert model.backward(LOSS.backward(), input_grad=False) is None
    assert frozen.weight.grad is None and frozen.bias.grad is None
    assert model.layers[2].weight.grad is not None and model.layers[5].weight.grad is not None
    assert frozen._cache is None  # the training forward's cache is dropped, not kept
    # with input_grad=True the frozen layer must run (to give dL/dx)
    LOSS.forward(model.forward(x, training=True), np.arange(4))
    with pytest.raises(AssertionError, match="frozen layer"):
        model.backward(LOSS.backward())


def test_freeze_positions_and_unfreeze():
    model = small_cnn()
    trainable = lambda: {k: p.trainable for k, p in model.parameters().items()}  # noqa: E731
    assert all(trainable().values())
    model.freeze(up_to=-1)
    assert trainable() == {"conv2d_1.weight": False, "conv2d_1.bias": False,
                           "dense_1.weight": True, "dense_1.bias": True}
    assert model.freeze(up_to=4) is model and trainable()["dense_1.weight"] is True
    model.freeze()
    assert not any(trainable().values())
    assert "trainable: 0" in model.summary()
    model.unfreeze()
    assert all(trainable().values())
    with pytest.raises(ValueError, match="no layer named 'dense_9'"):
        model.freeze(up_to="dense_9")
    with pytest.raises(ValueError, match="out of range"):
        model.freeze(up_to=6)


def test_transfer_learning_freeze_replace_head_and_fine_tune(fmnist):
    x, y, xt, yt = fmnist
    body = cl.Sequential([cl.Conv2D(8, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(),
                          cl.Dense(32), cl.ReLU(), cl.Dense(10)], input_shape=(1, 28, 28))
    cl.fit(body, (x, y), loss=LOSS, optimizer=cl.optim.Adam(body, lr=2e-3), epochs=1,
           batch_size=64, verbose=False)
    body.class_names = cl.data.class_names("fashion-mnist")
    conv_before = weights(body)
    # the new task: classes 5–9 (sandal, shirt, sneaker, bag, ankle boot) as 0–4
    keep, keep_t = y >= 5, yt >= 5
    body.freeze(up_to="dense_1").replace_head(5, seed=3)
    assert body.out_shape == (5,) and body.layers[-1].weight.shape == (5, 32)
    assert body.layers[-1].name == "dense_2" and body.class_names is None
    assert body.forward(body.preprocess(xt[:3])).shape == (3, 5)
    history = cl.fit(body, (x[keep], y[keep] - 5), loss=LOSS,
                     optimizer=cl.optim.SGD(body, lr=0.005, momentum=0.9), epochs=3,
                     batch_size=64, verbose=False)
    after = weights(body)
    for name in ("param.conv2d_1.weight", "param.conv2d_1.bias"):
        assert np.array_equal(conv_before[name], after[name]), f"frozen {name} changed"
    assert body.layers[0].weight.grad is None and body.layers[0].bias.grad is None
    assert not np.array_equal(conv_before["param.dense_1.weight"], after["param.dense_1.weight"])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert cl.evaluate(body, (xt[keep_t], yt[keep_t] - 5))["accuracy"] > 0.6  # chance: 0.2


def test_replace_head_refuses_a_model_whose_head_is_nested():
    model = cl.Sequential([cl.Flatten(), cl.Dense(8), cl.Sequential([cl.ReLU(), cl.Dense(10)])],
                          input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"dense_1\) is not the last weighted layer \(Sequential"):
        model.replace_head(5)
    with pytest.raises(ValueError, match="no Dense layer"):
        cl.Sequential([cl.Conv2D(2, 3)], input_shape=(1, 4, 4)).replace_head(3)
    # parameter-free layers after the head are rebuilt for the new size
    plain = cl.Sequential([cl.Flatten(), cl.Dense(10), cl.Dropout(0.1)], input_shape=(1, 4, 4))
    assert plain.replace_head(3).out_shape == (3,) and plain.layers[2].out_shape == (3,)


# --------------------------------------------------------------- weight decay
@pytest.mark.parametrize("optimizer", ["SGD", "AdamW"])
def test_weight_decay_applies_to_every_parameter(rng, optimizer):
    model = cl.Sequential([cl.Conv2D(3, 3), cl.BatchNorm2D(), cl.PReLU(), cl.Flatten(),
                           cl.Dense(4), cl.BatchNorm1D()], input_shape=(2, 5, 5), dtype=np.float64)
    params = model.parameters()
    assert len(params) == 9  # weights, biases, BatchNorm's γ and β, PReLU's slopes
    for p in params.values():  # biases and β start at 0, where decay would not show
        p.data[...] = rng.uniform(0.5, 1.5, p.shape)
    LOSS.forward(model.forward(rng.standard_normal((6, 2, 5, 5)), training=True),
                 rng.integers(0, 4, 6))
    model.backward(LOSS.backward())
    before = {k: (p.data.copy(), p.grad.copy()) for k, p in params.items()}
    lr, wd = 0.1, 0.05
    if optimizer == "SGD":
        cl.optim.SGD(model, lr=lr, weight_decay=wd).step()
    else:
        cl.optim.AdamW(model, lr=lr, weight_decay=wd).step()
    for k, (p, g) in before.items():
        if optimizer == "SGD":  # L2: g ← g + λ·p
            expected, undecayed = p - lr * (g + wd * p), p - lr * g
        else:  # decoupled: p ← p·(1 − lr·λ), then Adam's first step, lr·g/(|g| + ε)
            step = lr * g / (np.abs(g) + 1e-8)
            expected, undecayed = p * (1 - lr * wd) - step, p - step
        assert np.allclose(params[k].data, expected, rtol=1e-10, atol=1e-12), k
        assert np.abs(params[k].data - undecayed).min() > 1e-4, f"{k} was not decayed"


@pytest.mark.parametrize("first, channels, size", [
    (lambda: cl.Conv2D(3, 3, padding=1), 1, 9),  # the im2col path
    (lambda: cl.Conv2D(3, 3, padding=1), 4, 24),  # the stride-1 fast path
    (lambda: cl.LocallyConnected2D(3, 3, padding=1), 2, 6),  # a Conv2D subclass with its own backward
])
def test_first_layer_gradients_without_input_grad_equal_the_full_backward(first, channels, size, rng):
    model = cl.Sequential([first(), cl.ReLU(), cl.Flatten(), cl.Dense(5)],
                          input_shape=(channels, size, size), dtype=np.float64)
    x = rng.standard_normal((4, channels, size, size))
    grads = []
    for input_grad in (True, False):
        LOSS.forward(model.forward(x, training=True), np.arange(4))
        model.backward(LOSS.backward(), input_grad=input_grad)
        grads.append({k: p.grad.copy() for k, p in model.parameters().items()})
    for name in grads[0]:
        np.testing.assert_array_equal(grads[0][name], grads[1][name], err_msg=name)
