"""The learning-rate range test."""

from __future__ import annotations

import math

import numpy as np

from cnnlab import io, runtime
from cnnlab.train.inputs import as_loader


def lr_find(model, train, *, loss, optimizer, start: float = 1e-7, end: float = 10.0,
            steps: int = 100, batch_size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The learning-rate range test (Smith 2017): lr grows geometrically from start to end, one
    mini-batch each, until the loss exceeds 4× its best. Returns (lrs, losses); the model's
    weights, buffers and random state and the optimizer's state are restored afterwards."""
    runtime.apply_defaults()
    loader = as_loader(train, model, batch_size, shuffle=True, seed=seed)
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
