"""The learning-rate range test and the rate it suggests.

    lrs, losses = cl.lr_find(model, (x, y), loss=..., optimizer=...)
    lr = suggest_lr(lrs, losses)       # RULE: the smoothed loss's minimum, divided by 10
"""

from __future__ import annotations

import math

import numpy as np

from cnnlab import io, runtime
from cnnlab.train.inputs import as_loader

#: the smoothing of the recorded losses (fastai's): an exponential moving average
BETA = 0.98
#: how suggest_lr chooses, as the command and the docs state it
RULE = (f"the learning rate at the minimum of the smoothed loss (exponential moving average, "
        f"β = {BETA}, bias-corrected), divided by 10")


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


def smooth(losses, beta: float = BETA) -> np.ndarray:
    """The exponential moving average of the losses, bias-corrected as Adam's moments are:
        m_t = β·m_{t−1} + (1 − β)·loss_t,  m_0 = 0;   smoothed_t = m_t / (1 − β^t)
    so the first value is the first loss and a constant curve stays constant."""
    losses = np.asarray(losses, np.float64)
    out, m = np.empty_like(losses), 0.0
    for t, value in enumerate(losses, 1):
        m = beta * m + (1 - beta) * value
        out[t - 1] = m / (1 - beta**t)
    return out


def suggest_lr(lrs, losses) -> tuple[float, int]:
    """(suggested learning rate, index of the smoothed loss's minimum): RULE, lrs[argmin] / 10.

    Dividing by 10 steps back from where the loss stops falling (the smoothing lags behind the
    raw loss, and the lowest point is already close to where training becomes unstable) into
    the range where it falls fastest: Smith's "an order of magnitude below the minimum"."""
    lrs, losses = np.asarray(lrs, np.float64), np.asarray(losses, np.float64)
    if len(losses) < 2 or len(lrs) != len(losses):
        raise ValueError(f"suggest_lr: need at least 2 recorded (lr, loss) pairs of the same length. "
                         f"Received: {len(lrs)} rates and {len(losses)} losses")
    best = int(np.argmin(smooth(losses)))
    return float(lrs[best] / 10), best
