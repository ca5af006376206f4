"""A trained model on data: scores, probabilities, and the one evaluation (accuracy, top-k,
loss, confusion matrix, per-class accuracy) that the loop, the command line and the report use."""

from __future__ import annotations

import numpy as np

from cnnlab import runtime
from cnnlab.data.loader import Loader
from cnnlab.losses import softmax
from cnnlab.metrics import confusion_matrix, per_class_accuracy, top_k_accuracy


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
    runtime.apply_defaults()
    return np.concatenate([model.forward(xb) for xb, _ in _batches(model, (x, None), batch_size)])


def predict(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (N, K): the softmax of the scores."""
    return softmax(predict_scores(model, x, batch_size))


def evaluate(model, data, *, batch_size: int = 512, loss=None, k: int = 5,
             keep_scores: bool = False) -> dict:
    """Accuracy, top-k accuracy, mean loss, confusion matrix and per-class accuracy, computed in
    batches in inference mode. `data`: (x, y) arrays (uint8 images are preprocessed as the
    model was trained) or a cl.data.Loader. Keys: n, accuracy, top<k>, loss (None without a
    loss), confusion, per_class, and with keep_scores=True also scores (N, K) and labels (N,)."""
    runtime.apply_defaults()
    scores, labels = [], []
    for xb, yb in _batches(model, data, batch_size):
        scores.append(model.forward(xb))
        labels.append(yb)
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    confusion = confusion_matrix(labels, scores.argmax(axis=1), scores.shape[1])
    kept = {"scores": scores, "labels": labels} if keep_scores else {}
    return {
        "n": len(labels),
        "accuracy": top_k_accuracy(scores, labels, 1),
        f"top{k}": top_k_accuracy(scores, labels, k),
        "loss": None if loss is None else loss.forward(scores, labels),
        "confusion": confusion,
        "per_class": per_class_accuracy(confusion),
        **kept,
    }
