"""What a run records and who watches it: History (one row per epoch) and the callbacks."""

from __future__ import annotations

import copy
import math

import numpy as np

from cnnlab.files import atomic_write

#: what each epoch records (val_*: the validation data, never the test split)
COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
#: the test split, evaluated once after training: filled on the last row only
TEST_COLUMNS = ("test_loss", "test_acc")


class History:
    """One row per epoch: epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds; the last
    row also test_loss and test_acc when fit() was given a test set, which it evaluates once,
    after training. `test` holds that evaluation (n, accuracy, top5, loss), or None."""

    def __init__(self, rows=None) -> None:
        self.rows: list[dict] = list(rows or [])
        self.test: dict | None = None

    def __getitem__(self, column: str) -> list:
        return [row.get(column) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def to_csv(self) -> str:
        columns = COLUMNS + TEST_COLUMNS
        lines = [",".join(columns)]
        for row in self.rows:
            lines.append(",".join("" if row.get(c) is None else f"{row[c]:.6g}" for c in columns))
        return "\n".join(lines) + "\n"

    def record_test(self, result: dict) -> None:
        """The test split's one evaluation (evaluate()'s result), on the last row and in `test`."""
        loss = result["loss"] if result["loss"] is not None and math.isfinite(result["loss"]) else None
        self.test = {"n": result["n"], "accuracy": result["accuracy"], "top5": result["top5"],
                     "loss": loss}  # None: not finite (files keep JSON valid)
        self.rows[-1].update(test_loss=loss, test_acc=result["accuracy"])

    def write_csv(self, path) -> None:
        atomic_write(path, self.to_csv().encode())


class Callback:
    """Hooks called by fit() with its Trainer (cnnlab.train.loop). Set `trainer.stop = "reason"`
    to end training after this epoch; state() and load_state() make a callback resumable (its
    state is saved in every checkpoint)."""

    def on_epoch_end(self, trainer, row: dict) -> None:
        pass

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


class EarlyStopping(Callback):
    """Stops when `monitor` has not improved by more than min_delta for `patience` epochs
    (lower is better for a loss, higher for an accuracy)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0):
        if monitor not in COLUMNS[1:5]:
            raise ValueError(f"EarlyStopping: monitor must be one of {', '.join(COLUMNS[1:5])}. "
                             f"Received: monitor={monitor!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.best: float | None = None
        self.wait = 0

    def on_epoch_end(self, trainer, row: dict) -> None:
        value = row.get(self.monitor)
        if value is None:
            raise ValueError(f"EarlyStopping: monitor={self.monitor!r} needs validation data (val=...)")
        sign = -1 if self.monitor.endswith("loss") else 1
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.stop = (f"early stopping: {self.monitor} has not improved on {self.best:.4g} "
                            f"for {self.patience} epochs")

    def state(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state(self, state: dict) -> None:
        best, wait = state.get("best"), state.get("wait", 0)
        if not (best is None or isinstance(best, int | float)) or not isinstance(wait, int):
            raise ValueError(f"EarlyStopping: cannot restore the state {state}")
        self.best, self.wait = best, wait


def guessing_loss(loss, model) -> float | None:
    """The loss of equal scores for every class, what a model that has learned nothing scores:
    ln C for softmax cross-entropy, (C − 1)·Δ for the SVM. None without a loss or a (C,) output."""
    out = getattr(model, "out_shape", None)
    if loss is None or not out or len(out) != 1:
        return None
    # a copy computes it: the loss's own cache belongs to the training step
    return float(copy.copy(loss).forward(np.zeros((1, out[0])), np.zeros(1, np.intp)))


def epoch_line(row: dict, epochs: int, *, loss=None, model=None, lr: float | None = None) -> str:
    """The line fit() prints after each epoch. Given the loss and the model, an epoch whose
    training loss is more than 10% above guessing's (guessing_loss) says so and suggests a
    tenth of `lr` (the learning rate fit began with)."""
    text = (f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}  "
            f"acc {100 * row['train_acc']:.2f}%")
    if row["val_loss"] is not None:
        text += f"  val_loss {row['val_loss']:.4f}  val_acc {100 * row['val_acc']:.2f}%"
    text += f"  lr {row['lr']:.3g}  {row['seconds']:.1f} s"
    guess = guessing_loss(loss, model)
    if guess is not None and row["train_loss"] > 1.1 * guess:
        text += (f"  — loss {row['train_loss']:.3g} is worse than guessing ({guess:.2f}): "
                 f"try a smaller learning rate{f', e.g. {lr / 10:.2g}' if lr else ''}")
    return text


def evaluation_line(test: dict) -> str:
    """The line fit() prints after training: the test split, evaluated once."""
    loss = "not finite" if test["loss"] is None else f"{test['loss']:.4f}"
    return (f"test  loss {loss}  acc {100 * test['accuracy']:.2f}%  on {test['n']:,} "
            "test images, evaluated once, after training")

