"""Progress bars where work takes long (tqdm.auto): training epochs with accuracy in percent as
the epoch line writes it, validation and test, evaluate; silenced by progress=False (--quiet)."""

from __future__ import annotations

import numpy as np

import cnnlab as cl


def data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (120, 1, 8, 8), dtype=np.uint8)
    return x, np.arange(120) % 3


def model3():
    return cl.Sequential([cl.Flatten(), cl.Dense(3)], input_shape=(1, 8, 8))


def test_fit_draws_bars_for_the_epoch_validation_and_test(capsys):
    x, y = data()
    model = model3()
    cl.fit(model, (x, y), val_split=0.2, test=(x[:30], y[:30]), loss=cl.SoftmaxCrossEntropy(),
           optimizer=cl.optim.SGD(model), epochs=1, batch_size=32, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "validation" in err and "test:" in err
    bar_acc = [part for part in err.replace("\r", "\n").split() if part.startswith("acc=")]
    assert bar_acc and all(part.rstrip(",").endswith("%") for part in bar_acc)  # as the epoch line


def test_progress_false_draws_nothing(capsys):
    x, y = data()
    model = model3()
    cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.SGD(model), epochs=1,
           progress=False, verbose=False)
    cl.evaluate(model, (x, y), progress=False)
    assert capsys.readouterr().err == ""
    cl.evaluate(model, (x, y), progress=True)
    assert "evaluate" in capsys.readouterr().err
