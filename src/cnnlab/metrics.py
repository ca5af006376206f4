"""Classification metrics on scores (N, K) and integer labels (N,)."""

from __future__ import annotations

import numpy as np


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the k highest scores (top-5: ImageNet's measure).
    Ties are broken by class index, as argsort does."""
    k = min(k, scores.shape[1])
    if k == 1:
        return float(np.mean(scores.argmax(axis=1) == labels))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j] = number of samples of true class i predicted as class j."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(
        num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class: the diagonal over the row sums (NaN for a class with no samples)."""
    totals = confusion.sum(axis=1)
    return np.divide(np.diag(confusion), totals, out=np.full(len(totals), np.nan),
                     where=totals > 0)


def format_confusion(confusion: np.ndarray, names: list[str]) -> str:
    """The confusion matrix as a text table, rows true, columns predicted."""
    short = [n[:9] for n in names]
    width = max(5, max(len(s) for s in short), len(str(confusion.max())))
    head = " " * (width + 2) + " ".join(f"{s:>{width}}" for s in short)
    rows = [f"{short[i]:>{width}}  " + " ".join(f"{v:>{width}}" for v in row)
            for i, row in enumerate(confusion)]
    return "\n".join(["true \\ predicted", head, *rows])
