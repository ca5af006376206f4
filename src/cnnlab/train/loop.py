"""The training loop: mini-batches, the optimizer, schedules, callbacks, checkpoints.

fit() knows layers only through forward, backward and parameters. Everything random in a
run comes from `seed` (sample order, augmentation) or from the model's own Generators
(dropout), and a checkpoint keeps their positions: a resumed run ends bit-identical to the
uninterrupted one on the same machine with the same BLAS thread count.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from cnnlab import io, runtime
from cnnlab.core import ModelFileError
from cnnlab.data.loader import Loader
from cnnlab.data.splits import check_fraction
from cnnlab.distributed import world
from cnnlab.optim import clip_grad_norm
from cnnlab.train import parallel
from cnnlab.train import progress as bars
from cnnlab.train.evaluate import check_tta, evaluate
from cnnlab.train.history import History, epoch_line, evaluation_line
from cnnlab.train.inputs import as_loader, check_labels, hold_out

#: an epoch's mean training loss above DIVERGED·ln C (C classes; guessing scores ln C) diverged
DIVERGED = 10


class Trainer:
    """The state of one fit() call; see fit() for the arguments."""

    def __init__(self, model, train, *, loss, optimizer, epochs, batch_size=128, val=None,
                 val_split=0.0, test=None, schedule=None, callbacks=(), seed=0, transform=None,
                 clip_norm=None, out=None, checkpoint_every=0, progress=None, verbose=True,
                 distributed=None, sync_batchnorm=False, tta=None):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.tta = check_tta(tta, "fit")
        self.val_split = check_fraction(val_split)
        train, val = hold_out(train, val, self.val_split, seed)
        self.comm, self.synced = world(distributed), False
        if self.comm is not None:  # before any collective: processes that disagree stop here
            self.comm.agree(parallel.facts(train, model, batch_size=batch_size, seed=seed,
                                           val_split=self.val_split, epochs=epochs,
                                           sync_batchnorm=bool(sync_batchnorm)))
        # the training part first: a model without preprocessing measures it there
        self.train = as_loader(train, model, batch_size, shuffle=True, seed=seed, transform=transform,
                               comm=self.comm)
        self.val = None if val is None else as_loader(val, model, 512, shuffle=False, seed=seed)
        self.test = None if test is None else as_loader(test, model, 512, shuffle=False, seed=seed)
        self.epochs, self.schedule, self.callbacks = epochs, schedule, list(callbacks)
        self.seed, self.clip_norm, self.checkpoint_every = seed, clip_norm, checkpoint_every
        self.out = None if out is None else Path(out)
        self.progress = bars.wanted(progress)
        self.verbose = verbose
        self.base_lr = optimizer.lr
        self.history = History()
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.partial = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.stop: str | None = None
        self.best: float | None = None
        for what, loader in (("train", self.train), ("val", self.val), ("test", self.test)):
            if loader is not None:
                check_labels(model, loader, what)
        if checkpoint_every and self.out is None:
            raise ValueError(f"fit: checkpoint_every={checkpoint_every} needs a run folder (out=...) "
                             "to write the checkpoints to")
        if self.comm is not None:
            parallel.join(self, self.comm, bool(sync_batchnorm))
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------- checkpoints
    @property
    def last_checkpoint(self) -> Path | None:
        return None if self.out is None else self.out / io.CHECKPOINT

    def save_checkpoint(self, path) -> None:
        """The run as it stands (cnnlab.io.checkpoint holds the format)."""
        io.write_checkpoint(path, self.model, self.optimizer, {
            "epoch": self.epoch, "step": self.step, "global_step": self.global_step,
            "seed": self.train.seed, "batch_size": self.train.batch_size, "base_lr": self.base_lr,
            "stop": self.stop, "history": self.history.rows, "partial": self.partial,
            "best": self.best, "callbacks": [c.state() for c in self.callbacks],
            "val_split": self.val_split,
        })

    def resume(self, path) -> None:
        checkpoint = io.read_checkpoint(path)
        training = checkpoint.training
        saved = training["seed"], training["batch_size"], training.get("val_split", 0.0)
        if saved != (self.train.seed, self.train.batch_size, self.val_split):
            raise ValueError(
                f"resume: {path} was trained with seed={saved[0]}, batch_size={saved[1]}, "
                f"val_split={saved[2]:g}; resume with the same values to continue that run")
        if training["step"] >= len(self.train):
            raise ValueError(f"resume: {path} stopped after batch {training['step']} of an epoch; "
                             f"this data has {len(self.train)} batches an epoch. Resume with the "
                             "same data to continue that run")
        try:
            self._restore(checkpoint)
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as error:
            # the state passed its type checks, yet does not fit this model or optimizer (a
            # Generator state out of range is an OverflowError)
            raise ModelFileError(f"{path}: the training state does not fit this run: {error}") from None

    def _restore(self, checkpoint: io.Checkpoint) -> None:
        io.restore(checkpoint, self.model, self.optimizer)
        training, preprocess = checkpoint.training, self.model.preprocess
        self.train.preprocess = preprocess if self.train.preprocess is not None else None
        if self.val is not None and self.val.preprocess is not None:
            self.val.preprocess = preprocess
        self.epoch, self.step = training["epoch"], training["step"]
        self.global_step, self.base_lr = training["global_step"], training["base_lr"]
        self.history, self.partial = History(training["history"]), training["partial"]
        self.best, self.stop = training["best"], training.get("stop")
        for callback, state in zip(self.callbacks, training["callbacks"], strict=False):
            callback.load_state(state)

    # ------------------------------------------------------------------ loop
    def run(self) -> History:
        steps = len(self.train)
        if self.out is not None and self.val is None and self.verbose:
            print("no validation data (val_split=0, no val=): no best checkpoint is chosen "
                  "(best.safetensors is not written)", file=sys.stderr)
        while self.epoch < self.epochs and self.stop is None:
            started = time.perf_counter()
            bar = self._bar(steps)
            for xb, yb in self.train.batches(self.epoch, self.step):
                self._train_step(xb, yb, steps)
                if bar is not None:
                    bar.update(len(xb))
                    bar.set_postfix(loss=f"{self.partial['loss'] / self.partial['seen']:.4f}",
                                    acc=f"{100 * self.partial['correct'] / self.partial['seen']:.2f}%")
                if self.checkpoint_every and self.global_step % self.checkpoint_every == 0 \
                        and self.step < steps:
                    self.partial["seconds"] += time.perf_counter() - started
                    started = time.perf_counter()
                    if self.out is not None:  # under mpiexec only rank 0 has a folder to write
                        self.save_checkpoint(self.last_checkpoint)
            if bar is not None:
                bar.close()
            self.partial["seconds"] += time.perf_counter() - started
            self._end_epoch()
        if self.stop and self.verbose:
            print(self.stop, file=sys.stderr)
        self._test()
        if self.out is not None:
            io.save(self.model, self.out / "model.safetensors", evaluation=self._evaluation())
        return self.history

    def _test(self) -> None:
        """The test split, evaluated once, after training: nothing was chosen on it."""
        if self.test is None or not len(self.history):
            return
        # extreme test images may overflow the loss: recorded as unknown, not a warning
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = evaluate(self.model, self.test, loss=self.loss, progress=self.progress,
                              what="test", comm=self.comm, tta=self.tta)
        self.history.record_test(result)
        if self.verbose:
            print(evaluation_line(self.history.test), file=sys.stderr, flush=True)
        if self.out is not None:
            self.history.write_csv(self.out / "metrics.csv")

    def _evaluation(self) -> dict:
        """What the model file records of how its numbers were obtained."""
        val = None if self.val is None else {"n": len(self.val.y), "held_out": self.val_split}
        tta = {} if self.tta == "none" else {"tta": self.tta}  # how the test split was scored
        return {"epochs": self.epoch, "validation": val, "test": self.history.test, **tta}

    def _bar(self, steps: int):
        if not self.progress:
            return None
        done = min(self.step * self.train.batch_size, len(self.train.x))
        return bars.bar(len(self.train.x), f"epoch {self.epoch + 1}/{self.epochs}", initial=done)

    def _train_step(self, xb: np.ndarray, yb: np.ndarray, steps: int) -> None:
        position = self.epoch + self.step / steps
        self.optimizer.lr = self.schedule(position) if self.schedule else self.base_lr
        # overflow is detected below, with the epoch, step and layer; not as a warning
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if self.comm is None:
                scores = self.model.forward(xb, training=True)
                value = self.loss.forward(scores, yb)
                if not math.isfinite(value):
                    self._fail(f"the loss is {value}", xb, scores)
                self.model.backward(self.loss.backward(), input_grad=False)
                counts = value * len(yb), int((scores.argmax(axis=1) == yb).sum()), len(yb)
            else:
                counts = parallel.share_step(self, xb, yb)
        if self.clip_norm:
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
        self.partial["loss"] += counts[0]
        self.partial["correct"] += counts[1]
        self.partial["seen"] += counts[2]

    def _fail(self, what: str, xb: np.ndarray | None, scores: np.ndarray | None = None, *,
              place: str | None = None, training: bool = True) -> None:
        """The FloatingPointError of a diverged run (see fit): the epoch, the step or pass
        (`place`), `what` went wrong and, for the batch `xb`, the first layer whose output is not
        finite (in training mode, or inference mode for the validation pass)."""
        parallel.unsync(self.model)  # the diagnosis runs on this process's batch alone
        layer = None if xb is None else first_nonfinite_layer(self.model, xb, training=training)
        where = f"; first non-finite output: {layer}" if layer else ""
        if not layer and scores is not None:
            where = (f"; every layer's output is finite: the loss overflowed on scores up to "
                     f"{float(np.abs(scores).max()):.3g}")
        kept = ""
        if self.last_checkpoint is not None and self.last_checkpoint.exists():
            kept = f" The last good checkpoint stays: {self.last_checkpoint}."
        raise FloatingPointError(
            f"training stopped at epoch {self.epoch + 1}, {place or f'step {self.step + 1}'}: "
            f"{what}{where}.{kept} Try a smaller learning rate (now {self.optimizer.lr:.3g}) or "
            "clip_norm.")

    def _check_epoch(self, train_loss: float) -> dict | None:
        """The end of an epoch under the divergence rule (fit): the training loss against
        10·ln C, then the validation pass, in inference mode with overflow caught; the validation
        result (None without validation data)."""
        classes = (getattr(self.model, "out_shape", None) or (0,))[-1]
        if classes >= 2 and train_loss > DIVERGED * math.log(classes):
            self._fail(f"the training loss {train_loss:.3g} is above {DIVERGED}·ln C = "
                       f"{DIVERGED * math.log(classes):.3g} ({classes} classes; guessing scores ln C "
                       f"= {math.log(classes):.3g}): the run diverged", None,
                       place=f"after step {self.step}")
        if self.val is None:
            return None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = evaluate(self.model, self.val, loss=self.loss, progress=self.progress,
                              what="validation", comm=self.comm)
        if result["loss"] is not None and not math.isfinite(result["loss"]):
            xb, scores = self._first_nonfinite_batch(self.val)
            self._fail(f"the validation loss is {result['loss']}", xb, scores,
                       place="validation pass", training=False)
        return result

    def _first_nonfinite_batch(self, loader: Loader):
        """(inputs, scores) of the first batch of `loader` whose loss is not finite (the last
        one if each is finite alone), in inference mode."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for xb, yb in loader.batches(0):
                scores = self.model.forward(xb)
                if not math.isfinite(self.loss.forward(scores, yb)):
                    break
        return xb, scores

    def _end_epoch(self) -> None:
        p = self.partial
        row = {"epoch": self.epoch + 1, "train_loss": p["loss"] / p["seen"],
               "train_acc": p["correct"] / p["seen"], "val_loss": None, "val_acc": None,
               "lr": self.optimizer.lr, "seconds": p["seconds"]}
        result = self._check_epoch(row["train_loss"])
        if result is not None:
            row["val_loss"], row["val_acc"] = result["loss"], result["accuracy"]
        self.history.rows.append(row)
        self.epoch, self.step = self.epoch + 1, 0
        self.partial = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        for callback in self.callbacks:
            callback.on_epoch_end(self, row)
        if self.verbose:
            print(epoch_line(row, self.epochs, loss=self.loss, model=self.model, lr=self.base_lr),
                  file=sys.stderr, flush=True)
        if self.out is not None:
            score = row["val_acc"]  # chosen on validation only: None without validation data
            if score is not None and (self.best is None or score > self.best):
                self.best = score
                io.save(self.model, self.out / "best.safetensors")
            self.history.write_csv(self.out / "metrics.csv")
            self.save_checkpoint(self.last_checkpoint)


def fit(model, train, *, loss, optimizer, epochs: int, batch_size: int = 128, val=None,
        val_split: float = 0.0, test=None, schedule=None, callbacks=(), seed: int = 0,
        transform=None, clip_norm: float | None = None, out=None, resume=None,
        checkpoint_every: int = 0, progress: bool | None = None, verbose: bool = True,
        distributed=None, sync_batchnorm: bool = False, tta: str | None = None) -> History:
    """Trains `model` for `epochs` epochs and returns the History.

    Train, validation, test: choices (early stopping, best.safetensors) are made on the
    validation data only; the test data is evaluated once, after training (history.test, the
    last row's test_loss and test_acc, the model file's metadata "evaluation").

    Args:
        train, val, test: (x, y) arrays or `cl.data.Loader`s. uint8 images are preprocessed
            with model.preprocess (measured on the training part when the model has none yet).
        val_split: hold out this fraction of `train` (arrays), stratified by class and drawn
            from `seed`, as the validation data (instead of val=). 0: none.
        loss, optimizer: e.g. cl.SoftmaxCrossEntropy(), cl.optim.SGD(model, lr=0.05, momentum=0.9).
        schedule: lr as a function of the fractional epoch (cl.optim.CosineLR, ...), set before
            every step; without one the optimizer's lr stays.
        callbacks: e.g. EarlyStopping(). seed: sample order and augmentation.
        transform: augmentation for training batches (cl.data.transforms).
        clip_norm: clip the global gradient norm to this value.
        out: run folder: metrics.csv, last.ckpt.safetensors (each epoch, and every
            `checkpoint_every` steps), best.safetensors (the best validation accuracy; not
            written without validation data), model.safetensors at the end.
        resume: a checkpoint to continue from (same seed, batch size and val_split).
        distributed: True (or a cnnlab.distributed.Comm) in a script started by mpiexec -n K:
            data-parallel over the K processes, `batch_size` the global batch; the same weights
            as one process up to rounding for a network without BatchNorm or Dropout; only rank
            0 writes `out` and prints (see cnnlab.distributed). Each process uses one thread
            unless CNNLAB_NUM_THREADS or OPENBLAS_NUM_THREADS says otherwise.
        sync_batchnorm: with distributed, BatchNorm's batch statistics over all the processes'
            samples (as PyTorch's SyncBatchNorm): K processes compute one process's batch
            statistics, gradients and running statistics (every batch needs ≥ K samples).
            False (the default): each process's own share (as PyTorch DDP).
        tta: "flip" scores the test split (once, at the end) with test-time augmentation, each
            image's scores averaged with its mirror image's (cl.evaluate's tta); validation
            is scored plainly.
    Diverged, one rule: a non-finite training loss, gradient or update (at a step), a
    non-finite validation loss (the validation pass, run in inference mode with overflow
    caught), or an epoch's mean training loss above 10·ln C for a model with C ≥ 2 outputs
    (guessing scores ln C: far worse than guessing) raises FloatingPointError naming the epoch,
    the step or pass and, for a non-finite value, the first layer with non-finite output; the
    last good checkpoint is left as it was (nothing diverged is checkpointed).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive int. Received: epochs={epochs!r}")
    runtime.apply_defaults()
    trainer = Trainer(model, train, loss=loss, optimizer=optimizer, epochs=epochs,
                      batch_size=batch_size, val=val, val_split=val_split, test=test,
                      schedule=schedule, callbacks=callbacks,
                      seed=seed, transform=transform, clip_norm=clip_norm, out=out,
                      checkpoint_every=checkpoint_every, progress=progress, verbose=verbose,
                      distributed=distributed, sync_batchnorm=sync_batchnorm, tta=tta)
    try:
        if resume is not None:
            trainer.resume(resume)
        return trainer.run()
    finally:  # synchronized BatchNorm's hooks end with the run: the model is one process's again
        parallel.unsync(model)


def first_nonfinite_layer(model, x: np.ndarray, *, training: bool = True) -> str | None:
    """The first layer whose output holds NaN or Inf for input x, if any. Runs in the mode
    where the fault appeared: training (BatchNorm's batch statistics, dropout; the run is
    failing, so the running statistics it touches no longer matter) or inference (validation)."""
    if not np.isfinite(x).all():
        return "the input batch itself"
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for layer in model.layers:
            x = layer.forward(x, training=training)
            if not np.isfinite(x).all():
                return layer.label
    return None
