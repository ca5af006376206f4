"""What fit() takes in: (x, y) arrays or Loaders made into Loaders (the preprocessing measured
on the training part), the validation part held out of the training arrays, labels checked."""

from __future__ import annotations

import numpy as np

from cnnlab.core import DataError
from cnnlab.data.folder import FolderImages, take
from cnnlab.data.loader import Loader, Preprocess
from cnnlab.data.splits import check_fraction, stratified_split


def as_loader(data, model, batch_size: int, *, shuffle: bool, seed: int, transform=None,
              comm=None) -> Loader:
    """`data` as a Loader; uint8 images get the model's preprocessing, measured here (over the
    processes of `comm`, each reading its share) when the model has none yet."""
    if isinstance(data, Loader):
        return data
    x, y = data
    preprocess = None
    if (x.dtype if isinstance(x, FolderImages) else np.asarray(x).dtype) == np.uint8:  # pixels
        if model.preprocess is None:
            model.preprocess = (Preprocess.fit(x) if comm is None else
                                Preprocess.fit(x, part=comm.share(len(x)), reduce=comm.sum))
        preprocess = model.preprocess
    return Loader(x, y, batch_size, shuffle=shuffle, seed=seed, preprocess=preprocess,
                  transform=transform)


def hold_out(train, val, val_split: float, seed: int):
    """(train, val) with a stratified `val_split` of the training arrays held out for validation
    (cnnlab.data.splits), drawn from `seed`; as given when val_split is 0."""
    if not check_fraction(val_split):
        return train, val
    if val is not None:
        raise ValueError(f"fit: give val= or val_split=, not both. Received: val_split={val_split}")
    if isinstance(train, Loader):
        raise ValueError("fit: val_split holds out part of (x, y) arrays; for a Loader, pass the "
                         "validation data as val=")
    x, y = train[0], np.asarray(train[1])
    keep, held = stratified_split(y, val_split, seed)
    return (take(x, keep), y[keep]), (take(x, held), y[held])


def check_labels(model, loader: Loader, what: str) -> None:
    """All labels in [0, K) for a model with K outputs, checked once before the first step."""
    out = getattr(model, "out_shape", None)
    if not out or len(out) != 1 or not len(loader.y):
        return
    low, high = int(loader.y.min()), int(loader.y.max())
    if low < 0 or high >= out[0]:
        raise DataError(f"fit: the {what} labels run from {low} to {high}, but the model has "
                        f"{out[0]} outputs; labels must be class indices in [0, {out[0] - 1}]")
