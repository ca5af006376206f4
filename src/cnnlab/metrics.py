"""Classification metrics on scores (N, K) and integer labels (N,)."""

from __future__ import annotations

import numpy as np


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the k highest scores (top-5: ImageNet's measure).
    Ties are broken by class index, as argsort does."""
    labels = np.asarray(labels)
    if k == 1:
        return float(np.mean(scores.argmax(axis=1) == labels))
    # the label's rank: classes scoring higher, or equal with a smaller index (argpartition
    # would break ties arbitrarily); a hit when fewer than k classes are ahead of it
    true = np.take_along_axis(scores, labels[:, None], axis=1)
    ahead = (scores > true) | ((scores == true) & (np.arange(scores.shape[1]) < labels[:, None]))
    return float(np.mean(ahead.sum(axis=1) < k))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j] = number of samples of true class i predicted as class j."""
    # int64: uint8 labels times num_classes would wrap around silently
    labels, predicted = np.asarray(labels, np.int64), np.asarray(predicted, np.int64)
    for name, values in (("labels", labels), ("predicted", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} must be class indices 0 to {num_classes - 1}. "
                             f"Received: values from {values.min()} to {values.max()}")
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
