"""Train / validation / test, as the lecture series teaches: choices (early stopping, the best
checkpoint, the learning rate) are made on a validation part held out of the training data;
the test split is evaluated once, at the end.

    train_idx, val_idx = stratified_split(y, 0.1, seed=0)

Stratified: each class gives round(fraction · its count) samples (at least one, and never its
last: a class of one sample stays in training), drawn from a Generator seeded by `seed` alone,
so the same labels, fraction and seed always give the same split, and a resumed run trains on
the same part.
"""

from __future__ import annotations

import math

import numpy as np

from cnnlab.core import DataError


def check_fraction(fraction, what: str = "val_split") -> float:
    """fraction as a float in [0, 1); ValueError naming `what` otherwise."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not (
            0 <= fraction < 1 and math.isfinite(fraction)):
        raise ValueError(f"{what} must be a number in [0, 1). Received: {what}={fraction!r}")
    return float(fraction)


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of labels y, each sorted: every class keeps about
    `fraction` of its samples for validation (at least one, and at least one for training).
    DataError when no class has two samples to split."""
    fraction = check_fraction(fraction)
    y = np.asarray(y)
    if fraction == 0:
        return np.arange(len(y)), np.arange(0)
    rng = np.random.default_rng([seed, 0x5EED])  # a stream of its own: weights and batches unchanged
    held = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        # at least one for validation, at least one left to train on; a class of one trains
        count = min(max(round(fraction * len(members)), 1), len(members) - 1)
        held.append(rng.permutation(members)[:count])
    val = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(len(y)), val, assume_unique=True)
    if len(val) == 0:
        raise DataError(f"a validation split of {fraction:g} finds no class with two images to "
                        f"split among {len(y)}; give more data or val_split=0")
    return train, val
