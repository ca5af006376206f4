"""SGD steps of a zoo network, for the tests that hash its weights with one kernel and another
(test_fusion.py, test_simd.py)."""

from __future__ import annotations

import numpy as np

import cnnlab as cl


def trained(name: str, x: np.ndarray, labels: np.ndarray) -> cl.Sequential:
    """cl.zoo.get(name, seed=0) after one SGD step (lr 0.05, momentum 0.9) per batch x[i],
    labels[i]."""
    model, loss = cl.zoo.get(name, seed=0), cl.SoftmaxCrossEntropy()
    opt = cl.optim.SGD(model, lr=0.05, momentum=0.9)
    for xb, yb in zip(x, labels, strict=True):
        loss.forward(model.forward(xb, training=True), yb)
        model.backward(loss.backward(), input_grad=False)
        opt.step()
    return model
