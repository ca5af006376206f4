"""CIFAR-10, binary version: records of 1 label byte + 3072 pixel bytes (3×32×32, R, G, B planes).

Never the "python version" batches: those are pickles, and cnnlab does not unpickle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.core import DataError

RECORD = 1 + 3 * 32 * 32


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels of one .bin file."""
    path = Path(path)
    try:
        raw = np.fromfile(path, np.uint8)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if raw.size == 0 or raw.size % RECORD:
        raise DataError(
            f"{path}: {raw.size:,} bytes is not a whole number of CIFAR-10 records "
            f"({RECORD} bytes each: 1 label + 3072 pixels); the file is truncated or not the "
            "binary version"
        )
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: label {labels.max()} is not a CIFAR-10 class (0–9); "
                        "is this the CIFAR-100 or the python version?")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def load_cifar_batches(paths) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_cifar_batch(p) for p in paths]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
