"""What fit() does differently on one of K data-parallel processes (cnnlab.distributed.Comm).

    facts(...)        what every process must agree on before the first step
    join(...)         this process's share of every batch, rank 0's weights, synchronized
                      BatchNorm's reduction hooks; only rank 0 writes files and prints
    share_step(...)   one step: forward and backward on this process's share, one Allreduce
    unsync(...)       the reduction hooks removed again
    reseed(...)       the Generators of Dropout-like layers, from (seed, step, rank)

Randomness at training time is per process and derived, never carried: augmentation draws from
(seed, epoch, batch, rank) (cnnlab.data.loader) and a layer's Generator (Dropout's masks) is
replaced before every step by one seeded from (seed, step, rank, the layer's position), so a
checkpoint (written by rank 0) needs no state of the other processes and a resumed run draws
what the uninterrupted one drew.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from cnnlab.core import Layer, __version__, walk
from cnnlab.data.loader import Loader
from cnnlab.runtime import threads


def facts(train, model: Layer, *, batch_size: int, seed: int, val_split: float, epochs: int,
          sync_batchnorm: bool) -> dict[str, object]:
    """The versions, data and options the processes compare (Comm.agree) before anything else."""
    y = np.ascontiguousarray(train.y if isinstance(train, Loader) else train[1])
    if isinstance(train, Loader):
        batch_size, seed = train.batch_size, train.seed
    return {"cnnlab": __version__, "training images": len(y),
            "labels": hashlib.sha256(y.tobytes()).hexdigest()[:16], "batch size": batch_size,
            "seed": seed, "val_split": val_split, "parameters": model.count_params(),
            "dtype": str(model.dtype), "epochs": epochs, "sync_batchnorm": sync_batchnorm}


def join(trainer, comm, sync_batchnorm: bool) -> None:
    """Makes `trainer` one of comm's processes: its share of every batch, rank 0's weights and
    buffers, synchronized BatchNorm if asked for; only rank 0 keeps a run folder and speaks."""
    threads.one_per_process()
    trainer.train.share, trainer.train.rank = comm.share, comm.rank
    comm.broadcast([*(p.data for p in trainer.model.parameters().values()),
                    *trainer.model.buffers().values()])
    trainer.synced = sync_batchnorm and comm.size > 1
    if trainer.synced:
        check_batches(len(trainer.train.y), trainer.train.batch_size, comm.size,
                      trainer.train.drop_last)
        for _, layer in walk(trainer.model):
            if layer.batch_statistics:
                layer.reduce = comm.sum
    if comm.rank != 0:
        trainer.out, trainer.verbose, trainer.progress = None, False, False


def check_batches(n: int, batch_size: int, k: int, drop_last: bool) -> None:
    """Synchronized BatchNorm needs every process in every step (each one's layers take part in
    the sums): ValueError unless every batch has at least K samples."""
    last = 0 if drop_last else n % batch_size
    short = batch_size if batch_size < k else last if 0 < last < k else 0
    if short:
        raise ValueError(f"sync_batchnorm: every process takes part in every BatchNorm step, so each "
                         f"batch needs at least {k} samples (one per process); with {n:,} images and "
                         f"batch {batch_size} a batch has {short}. Choose a batch size whose "
                         f"remainder of {n:,} is 0 or at least {k}")


def unsync(model: Layer) -> None:
    """The reduction hooks removed: from here on each process's layers see its own batch only
    (a failing run's diagnosis, which not every process makes)."""
    for _, layer in walk(model):
        layer.reduce = None


def reseed(model: Layer, seed: int, step: int, rank: int) -> None:
    """Every layer Generator (Dropout) seeded from (seed, step, rank, its position)."""
    for position, (_, layer) in enumerate(walk(model)):
        if layer.rng is not None:
            layer.rng = np.random.default_rng([seed, step, rank, position, 2])


def share_step(trainer, xb: np.ndarray, yb: np.ndarray) -> tuple[float, int, int]:
    """Forward and backward on this process's share of the batch, its loss gradient weighted by
    its share of the samples (n_r/B), then the gradients summed over the processes (the global
    batch mean; one Allreduce over one flat buffer) and, without synchronized BatchNorm, the
    running statistics averaged: (the batch's loss sum, correct, samples), the same on every
    rank."""
    comm, model, local = trainer.comm, trainer.model, len(yb)
    loader = trainer.train
    total = min(loader.batch_size, len(loader.y) - trainer.step * loader.batch_size)
    value, correct = 0.0, 0
    reseed(model, loader.seed, trainer.global_step, comm.rank)
    if local:
        scores = model.forward(xb, training=True)
        value = trainer.loss.forward(scores, yb)
        dy = trainer.loss.backward()
        model.backward(dy * dy.dtype.type(local / total), input_grad=False)
        correct = int((scores.argmax(axis=1) == yb).sum())
    else:  # a last batch smaller than the number of processes: nothing to add here
        for p in model.parameters().values():
            p.grad = np.zeros_like(p.data) if p.trainable else None
    counts, loss_sum, correct, bad = comm.sum([local, value * local, correct, not math.isfinite(value)])
    if bad:
        unsync(model)  # the diagnosis runs forward on this process alone
        trainer._fail(f"the loss is not finite on {int(bad)} of {comm.size} processes",
                      xb if local else None)
    comm.average_gradients(model, 1.0)
    if not trainer.synced:
        comm.average_buffers(model)
    return loss_sum, int(correct), int(counts)
