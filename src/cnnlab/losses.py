"""Classification losses: the lecture's softmax and SVM classifiers.

Both take scores (N, K) — the last Dense layer's outputs, one per class — and integer labels
(N,) in [0, K), return the mean loss over the batch as a float, and keep what backward needs.
"""

from __future__ import annotations

import numpy as np

from cnnlab.core import DataError, ShapeError


def softmax(scores: np.ndarray) -> np.ndarray:
    """p[n, k] = e^(s[n, k] − max_j s[n, j]) / Σ_j e^(s[n, j] − max_j s[n, j]) (never overflows)."""
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Loss:
    def __init__(self) -> None:
        self._cache: object = None

    def __call__(self, scores: np.ndarray, labels: np.ndarray) -> float:
        return self.forward(scores, labels)

    def _check(self, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        name = type(self).__name__
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.dtype.kind != "f":
            raise ShapeError(
                f"{name}: scores must be a float array (N, classes). "
                f"Received: shape={scores.shape}, dtype={scores.dtype}"
            )
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise DataError(
                f"{name}: labels must be integer class indices (N,), not {labels.dtype}. "
                "For one-hot labels pass labels.argmax(axis=1)."
            )
        if labels.shape != (scores.shape[0],):
            raise ShapeError(
                f"{name}: expected labels of shape ({scores.shape[0]},) for scores "
                f"{scores.shape}. Received: labels.shape={labels.shape}"
            )
        k = scores.shape[1]
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            bad = labels[(labels < 0) | (labels >= k)][0]
            raise DataError(
                f"{name}: label {bad} is out of range for {k} classes; labels must be in "
                f"[0, {k - 1}]. Check that the last Dense layer has one unit per class."
            )
        if scores.shape[0] == 0:
            raise DataError(f"{name}: the batch is empty (0 samples).")
        return scores, labels.astype(np.intp, copy=False)

    def backward(self) -> np.ndarray:
        cache, self._cache = self._cache, None
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}: call forward(scores, labels) before backward().")
        return self._backward(cache)


class SoftmaxCrossEntropy(Loss):
    """Softmax classifier with cross-entropy loss (PyTorch's cross_entropy on logits).

    Forward, with p = softmax(s) computed from s − max(s) (stable log-sum-exp):
        L = −(1/N) Σ_n Σ_k t[n, k] · log p[n, k],   t = one-hot(y)·(1 − ε) + ε/K
    Backward:
        dL/ds = (p − t)/N
    Args:
        label_smoothing: ε in [0, 1); 0 gives the plain −log p[y].
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(
                f"SoftmaxCrossEntropy: label_smoothing must be in [0, 1). "
                f"Received: label_smoothing={label_smoothing!r}"
            )
        self.label_smoothing = float(label_smoothing)

    def forward(self, scores: np.ndarray, labels: np.ndarray) -> float:
        scores, labels = self._check(scores, labels)
        n, k = scores.shape
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        target = np.zeros_like(scores)
        target[np.arange(n), labels] = 1
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / k
        self._cache = (np.exp(log_p), target)
        return float(-(target * log_p).sum(dtype=np.float64) / n)

    def _backward(self, cache) -> np.ndarray:
        p, target = cache
        return (p - target) / p.dtype.type(p.shape[0])


class MulticlassSVM(Loss):
    """Multiclass SVM (hinge, max-margin) loss, the lecture's and cs231n's (Weston–Watkins):

    Forward:    L = (1/N) Σ_n Σ_{j≠y_n} max(0, s[n, j] − s[n, y_n] + Δ)
    Backward:   m[n, j] = [s[n, j] − s[n, y_n] + Δ > 0] for j ≠ y_n
                dL/ds[n, j] = m[n, j]/N,   dL/ds[n, y_n] = −(Σ_j m[n, j])/N

    PyTorch's MultiMarginLoss also divides each sample's sum by the number of classes K,
    so its value is this one divided by K.
    Args:
        margin: Δ, the margin the correct score must win by (1.0 in the lecture).
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"MulticlassSVM: margin must be > 0. Received: margin={margin!r}")
        self.margin = float(margin)

    def forward(self, scores: np.ndarray, labels: np.ndarray) -> float:
        scores, labels = self._check(scores, labels)
        n = scores.shape[0]
        rows = np.arange(n)
        margins = np.maximum(0, scores - scores[rows, labels][:, None] + self.margin)
        margins[rows, labels] = 0
        self._cache = (margins > 0, labels, scores.dtype)
        return float(margins.sum(dtype=np.float64) / n)

    def _backward(self, cache) -> np.ndarray:
        active, labels, dtype = cache
        n = active.shape[0]
        dscores = active.astype(dtype)
        dscores[np.arange(n), labels] = -active.sum(axis=1)
        return dscores / dtype.type(n)
