"""The training loop: mini-batches, the optimizer, schedules, callbacks, checkpoints.

fit() knows layers only through forward, backward and parameters. Everything random in a
run comes from `seed` (sample order, augmentation) or from the model's own Generators
(dropout), and a checkpoint keeps their positions: a resumed run ends bit-identical to the
uninterrupted one on the same machine with the same BLAS thread count.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from cnnlab import io
from cnnlab.core import DataError
from cnnlab.data.loader import Loader, Preprocess
from cnnlab.losses import softmax
from cnnlab.metrics import confusion_matrix, per_class_accuracy, top_k_accuracy

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


class History:
    """One row per epoch: epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds."""

    def __init__(self, rows=None) -> None:
        self.rows: list[dict] = list(rows or [])

    def __getitem__(self, column: str) -> list:
        return [row.get(column) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def to_csv(self) -> str:
        lines = [",".join(COLUMNS)]
        for row in self.rows:
            lines.append(",".join("" if row.get(c) is None else f"{row[c]:.6g}" for c in COLUMNS))
        return "\n".join(lines) + "\n"

    def write_csv(self, path) -> None:
        io.atomic_write(path, self.to_csv().encode())


class Callback:
    """Hooks called by fit(). Set `trainer.stop = "reason"` to end training after this epoch."""

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
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

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
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


def _as_loader(data, model, batch_size: int, *, shuffle: bool, seed: int, transform=None) -> Loader:
    if isinstance(data, Loader):
        return data
    x, y = data
    preprocess = None
    if np.asarray(x).dtype == np.uint8:  # raw images: the model's preprocessing applies
        if model.preprocess is None:
            model.preprocess = Preprocess.fit(x)
        preprocess = model.preprocess
    return Loader(x, y, batch_size, shuffle=shuffle, seed=seed, preprocess=preprocess,
                  transform=transform)


class Trainer:
    """The state of one fit() call; see fit() for the arguments."""

    def __init__(self, model, train, *, loss, optimizer, epochs, batch_size=128, val=None,
                 schedule=None, callbacks=(), seed=0, transform=None, clip_norm=None, out=None,
                 checkpoint_every=0, progress=None, verbose=True):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.train = _as_loader(train, model, batch_size, shuffle=True, seed=seed, transform=transform)
        self.val = None if val is None else _as_loader(val, model, 512, shuffle=False, seed=seed)
        self.epochs, self.schedule, self.callbacks = epochs, schedule, list(callbacks)
        self.seed, self.clip_norm, self.checkpoint_every = seed, clip_norm, checkpoint_every
        self.out = None if out is None else Path(out)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.verbose = verbose
        self.base_lr = optimizer.lr
        self.history = History()
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.partial = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.stop: str | None = None
        self.best: float | None = None
        _check_labels(model, self.train, "train")
        if self.val is not None:
            _check_labels(model, self.val, "val")
        if checkpoint_every and self.out is None:
            raise ValueError(f"fit: checkpoint_every={checkpoint_every} needs a run folder (out=...) "
                             "to write the checkpoints to")
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------- checkpoints
    @property
    def last_checkpoint(self) -> Path | None:
        return None if self.out is None else self.out / "last.ckpt.safetensors"

    def save_checkpoint(self, path) -> None:
        arrays, optim_meta = self.optimizer.state_dict()
        tensors = {**io.model_tensors(self.model), **{f"optim.{k}": v for k, v in arrays.items()}}
        training = {
            "epoch": self.epoch, "step": self.step, "global_step": self.global_step,
            "seed": self.train.seed, "batch_size": self.train.batch_size, "base_lr": self.base_lr,
            "stop": self.stop,
            "optimizer": optim_meta, "rng": io.rng_states(self.model),
            "history": self.history.rows, "partial": self.partial, "best": self.best,
            "callbacks": [c.state() for c in self.callbacks],
        }
        preprocess = self.model.preprocess.config() if self.model.preprocess is not None else None
        io.write_file(path, tensors, {
            "format": io.FORMAT, "architecture": json.dumps(io.architecture(self.model)),
            "preprocess": json.dumps(preprocess), "class_names": json.dumps(self.model.class_names),
            "training": json.dumps(training),
        })

    def resume(self, path) -> None:
        tensors, metadata = io.read_file(path)
        training = io.training_state(metadata, path)
        if (training["seed"], training["batch_size"]) != (self.train.seed, self.train.batch_size):
            raise ValueError(
                f"resume: {path} was trained with seed={training['seed']}, batch_size="
                f"{training['batch_size']}; resume with the same values to continue that run")
        if training["step"] >= len(self.train):
            raise ValueError(f"resume: {path} stopped after batch {training['step']} of an epoch; "
                             f"this data has {len(self.train)} batches an epoch. Resume with the "
                             "same data to continue that run")
        try:
            self._restore(path, tensors, metadata, training)
        except io.ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            # the state passed its type checks, yet does not fit this model or optimizer
            raise io.ModelFileError(f"{path}: the training state does not fit this run: {error}") from None

    def _restore(self, path, tensors, metadata, training) -> None:
        io.assign(self.model, tensors, path)
        saved = io.model_from(tensors, metadata, path)
        self.model.preprocess, self.model.class_names = saved.preprocess, saved.class_names
        self.train.preprocess = saved.preprocess if self.train.preprocess is not None else None
        if self.val is not None and self.val.preprocess is not None:
            self.val.preprocess = saved.preprocess
        self.optimizer.load_state_dict(
            {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}, training["optimizer"])
        io.set_rng_states(self.model, training["rng"])
        self.epoch, self.step = training["epoch"], training["step"]
        self.global_step, self.base_lr = training["global_step"], training["base_lr"]
        self.history, self.partial = History(training["history"]), training["partial"]
        self.best, self.stop = training["best"], training.get("stop")
        for callback, state in zip(self.callbacks, training["callbacks"], strict=False):
            callback.load_state(state)

    # ------------------------------------------------------------------ loop
    def run(self) -> History:
        steps = len(self.train)
        while self.epoch < self.epochs and self.stop is None:
            started = time.perf_counter()
            bar = self._bar(steps)
            for xb, yb in self.train.batches(self.epoch, self.step):
                self._train_step(xb, yb, steps)
                io.kill_point("step")  # a test hook: see io.kill_point
                if bar is not None:
                    bar.update(len(xb))
                    bar.set_postfix(loss=f"{self.partial['loss'] / self.partial['seen']:.4f}",
                                    acc=f"{self.partial['correct'] / self.partial['seen']:.3f}")
                if self.checkpoint_every and self.global_step % self.checkpoint_every == 0 \
                        and self.step < steps:
                    self.partial["seconds"] += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save_checkpoint(self.last_checkpoint)
            if bar is not None:
                bar.close()
            self.partial["seconds"] += time.perf_counter() - started
            self._end_epoch()
        if self.stop and self.verbose:
            print(self.stop, file=sys.stderr)
        if self.out is not None:
            io.save(self.model, self.out / "model.safetensors")
        return self.history

    def _bar(self, steps: int):
        if not self.progress:
            return None
        from tqdm import tqdm

        done = min(self.step * self.train.batch_size, len(self.train.x))
        return tqdm(total=len(self.train.x), initial=done, unit="img", unit_scale=True,
                    desc=f"epoch {self.epoch + 1}/{self.epochs}", leave=False, file=sys.stderr)

    def _train_step(self, xb: np.ndarray, yb: np.ndarray, steps: int) -> None:
        position = self.epoch + self.step / steps
        self.optimizer.lr = self.schedule(position) if self.schedule else self.base_lr
        # overflow is detected below, with the epoch, step and layer; not as a warning
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            scores = self.model.forward(xb, training=True)
            value = self.loss.forward(scores, yb)
            if not math.isfinite(value):
                self._fail(f"the loss is {value}", xb, scores)
            self.model.backward(self.loss.backward(), input_grad=False)
        if self.clip_norm:
            from cnnlab.optim import clip_grad_norm

            clip_grad_norm(self.model, self.clip_norm)
        bad = [name for name, p in self.model.parameters().items()
               if p.grad is not None and not np.isfinite(p.grad).all()]
        if bad:
            self._fail(f"the gradient of {', '.join(bad[:3])} is not finite", xb)
        with np.errstate(over="ignore", invalid="ignore"):
            self.optimizer.step()
        # a finite gradient times a huge lr can still overflow: stop before a checkpoint keeps it
        bad = [name for name, p in self.model.parameters().items() if not np.isfinite(p.data).all()]
        if bad:
            self._fail(f"the update made {', '.join(bad[:3])} non-finite", xb)
        self.step += 1
        self.global_step += 1
        self.partial["loss"] += value * len(yb)
        self.partial["correct"] += int((scores.argmax(axis=1) == yb).sum())
        self.partial["seen"] += len(yb)

    def _fail(self, what: str, xb: np.ndarray, scores: np.ndarray | None = None) -> None:
        layer = first_nonfinite_layer(self.model, xb)
        where = f"; first non-finite output: {layer}" if layer else ""
        if not layer and scores is not None:
            where = (f"; every layer's output is finite: the loss overflowed on scores up to "
                     f"{float(np.abs(scores).max()):.3g}")
        kept = ""
        if self.last_checkpoint is not None and self.last_checkpoint.exists():
            kept = f" The last good checkpoint stays: {self.last_checkpoint}."
        raise FloatingPointError(
            f"training stopped at epoch {self.epoch + 1}, step {self.step + 1}: {what}{where}.{kept} "
            f"Try a smaller learning rate (now {self.optimizer.lr:.3g}) or clip_norm.")

    def _end_epoch(self) -> None:
        p = self.partial
        row = {"epoch": self.epoch + 1, "train_loss": p["loss"] / p["seen"],
               "train_acc": p["correct"] / p["seen"], "val_loss": None, "val_acc": None,
               "lr": self.optimizer.lr, "seconds": p["seconds"]}
        if self.val is not None:
            result = evaluate(self.model, self.val, loss=self.loss)
            row["val_loss"], row["val_acc"] = result["loss"], result["accuracy"]
        self.history.rows.append(row)
        self.epoch, self.step = self.epoch + 1, 0
        self.partial = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        for callback in self.callbacks:
            callback.on_epoch_end(self, row)
        if self.verbose:
            print(_epoch_line(row, self.epochs), file=sys.stderr, flush=True)
        if self.out is not None:
            score = row["val_acc"] if row["val_acc"] is not None else row["train_acc"]
            if self.best is None or score > self.best:
                self.best = score
                io.save(self.model, self.out / "best.safetensors")
            self.history.write_csv(self.out / "metrics.csv")
            self.save_checkpoint(self.last_checkpoint)


def _check_labels(model, loader: Loader, what: str) -> None:
    """All labels in [0, K) for a model with K outputs, checked once before the first step."""
    out = getattr(model, "out_shape", None)
    if not out or len(out) != 1 or not len(loader.y):
        return
    low, high = int(loader.y.min()), int(loader.y.max())
    if low < 0 or high >= out[0]:
        raise DataError(f"fit: the {what} labels run from {low} to {high}, but the model has "
                        f"{out[0]} outputs; labels must be class indices in [0, {out[0] - 1}]")


def _epoch_line(row: dict, epochs: int) -> str:
    text = (f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}  "
            f"acc {100 * row['train_acc']:.2f}%")
    if row["val_loss"] is not None:
        text += f"  val_loss {row['val_loss']:.4f}  val_acc {100 * row['val_acc']:.2f}%"
    return text + f"  lr {row['lr']:.3g}  {row['seconds']:.1f} s"


def fit(model, train, *, loss, optimizer, epochs: int, batch_size: int = 128, val=None,
        schedule=None, callbacks=(), seed: int = 0, transform=None, clip_norm: float | None = None,
        out=None, resume=None, checkpoint_every: int = 0, progress: bool | None = None,
        verbose: bool = True) -> History:
    """Trains `model` for `epochs` epochs and returns the History.

    Args:
        train, val: (x, y) arrays or `cl.data.Loader`s. uint8 images are preprocessed with
            model.preprocess (measured on `train` when the model has none yet).
        loss, optimizer: e.g. cl.SoftmaxCrossEntropy(), cl.optim.SGD(model, lr=0.05, momentum=0.9).
        schedule: lr as a function of the fractional epoch (cl.optim.CosineLR, ...), set before
            every step; without one the optimizer's lr stays.
        callbacks: e.g. EarlyStopping(). seed: sample order and augmentation.
        transform: augmentation for training batches (cl.data.transforms).
        clip_norm: clip the global gradient norm to this value.
        out: run folder: metrics.csv, last.ckpt.safetensors (each epoch, and every
            `checkpoint_every` steps), best.safetensors, model.safetensors at the end.
        resume: a checkpoint to continue from (same seed and batch size).
    A non-finite loss or gradient raises FloatingPointError naming the epoch, the step and the
    first layer with non-finite output; the last good checkpoint is left as it was.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive int. Received: epochs={epochs!r}")
    trainer = Trainer(model, train, loss=loss, optimizer=optimizer, epochs=epochs,
                      batch_size=batch_size, val=val, schedule=schedule, callbacks=callbacks,
                      seed=seed, transform=transform, clip_norm=clip_norm, out=out,
                      checkpoint_every=checkpoint_every, progress=progress, verbose=verbose)
    if resume is not None:
        trainer.resume(resume)
    return trainer.run()


def first_nonfinite_layer(model, x: np.ndarray) -> str | None:
    """The first layer whose output holds NaN or Inf for input x, if any. Runs in training
    mode, where the fault appeared (BatchNorm's batch statistics, dropout); the run is failing,
    so the running statistics it touches no longer matter."""
    if not np.isfinite(x).all():
        return "the input batch itself"
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for layer in model.layers:
            x = layer.forward(x, training=True)
            if not np.isfinite(x).all():
                return layer.label
    return None


def _batches(model, data, batch_size: int):
    if isinstance(data, Loader):
        yield from data.batches(0)
        return
    x, y = data
    x = np.asarray(x)
    preprocess = model.preprocess if x.dtype == np.uint8 else None
    if x.dtype == np.uint8 and preprocess is None:
        raise ValueError("evaluate: uint8 images need model.preprocess (set by fit or cl.load)")
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        yield (preprocess(xb) if preprocess else xb), (None if y is None else y[start : start + batch_size])


def predict_scores(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Scores (N, K) in inference mode; uint8 images are preprocessed as the model was trained."""
    return np.concatenate([model.forward(xb) for xb, _ in _batches(model, (x, None), batch_size)])


def predict(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (N, K): the softmax of the scores."""
    return softmax(predict_scores(model, x, batch_size))


def evaluate(model, data, *, batch_size: int = 512, loss=None, k: int = 5) -> dict:
    """Accuracy, top-k accuracy, mean loss, confusion matrix and per-class accuracy, computed in
    batches in inference mode."""
    scores, labels = [], []
    for xb, yb in _batches(model, data, batch_size):
        scores.append(model.forward(xb))
        labels.append(yb)
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    confusion = confusion_matrix(labels, scores.argmax(axis=1), scores.shape[1])
    return {
        "n": len(labels),
        "accuracy": top_k_accuracy(scores, labels, 1),
        f"top{k}": top_k_accuracy(scores, labels, k),
        "loss": None if loss is None else loss.forward(scores, labels),
        "confusion": confusion,
        "per_class": per_class_accuracy(confusion),
    }


def lr_find(model, train, *, loss, optimizer, start: float = 1e-7, end: float = 10.0,
            steps: int = 100, batch_size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The learning-rate range test (Smith 2017): lr grows geometrically from start to end, one
    mini-batch each, until the loss exceeds 4× its best. Returns (lrs, losses); the model's
    weights, buffers and random state and the optimizer's state are restored afterwards."""
    loader = _as_loader(train, model, batch_size, shuffle=True, seed=seed)
    saved = {k: v.copy() for k, v in io.model_tensors(model).items()}
    optim_state, rng_state = optimizer.state_dict(), io.rng_states(model)
    lrs = start * (end / start) ** (np.arange(steps) / max(steps - 1, 1))
    losses: list[float] = []
    try:
        batches, epoch = loader.batches(0), 0
        for lr in lrs:
            try:
                xb, yb = next(batches)
            except StopIteration:
                epoch += 1
                batches = loader.batches(epoch)
                xb, yb = next(batches)
            optimizer.lr = float(lr)
            # the range test drives the loss to overflow on purpose: detected below, not a warning
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                value = loss.forward(model.forward(xb, training=True), yb)
                if not math.isfinite(value) or (losses and value > 4 * min(losses)):
                    break
                losses.append(value)
                model.backward(loss.backward(), input_grad=False)
                optimizer.step()
    finally:
        io.assign(model, saved, "lr_find")
        optimizer.load_state_dict(*optim_state)
        io.set_rng_states(model, rng_state)  # dropout masks of a later fit are not shifted
    return lrs[: len(losses)], np.array(losses)
