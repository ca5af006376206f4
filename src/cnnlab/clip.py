"""Gradient clipping by global norm: cl.optim.clip_grad_norm (re-exported by cnnlab.optim), which
the Trainer's clip_norm applies after each backward."""

from __future__ import annotations

import math

import numpy as np

from cnnlab.core import Layer
from cnnlab.schedules import _number


def clip_grad_norm(model: Layer, max_norm: float, *, error_if_nonfinite: bool = False) -> float:
    """Rescales all trainable grads together so their global L2 norm is at most max_norm.

        ‖g‖ = √(Σ_params Σ g²)   (in float64)
        g ← g · max_norm/(‖g‖ + 10⁻⁶)   when that factor is < 1
    Returns ‖g‖ before clipping, as torch.nn.utils.clip_grad_norm_. A NaN or infinite norm
    raises RuntimeError if error_if_nonfinite, else is returned with the grads left as they are.
    """
    max_norm = _number("clip_grad_norm", "max_norm", max_norm, open_low=True)
    grads = [p.grad for p in model.parameters().values() if p.trainable and p.grad is not None]
    if not grads:
        raise RuntimeError("clip_grad_norm: no trainable parameter has a gradient. "
                           "Call model.backward first: model.backward(loss.backward()).")
    norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise RuntimeError(f"clip_grad_norm: the gradient norm is {norm}; training has diverged "
                               "(lower the learning rate or check the inputs).")
        return norm
    scale = max_norm / (norm + 1e-6)
    if scale < 1:
        for g in grads:
            g *= scale
    return norm
