"""A trained model on data: scores, probabilities, and the one evaluation (accuracy, top-k,
loss, confusion matrix, per-class accuracy) that the loop, the command line and the report use.

What an input array means is decided by a rule, not guessed: uint8 is pixels (0–255), which the
model's recorded preprocessing turns into its input; float is the model's input, already
normalised, unless the caller says it is pixels with `pixel_range` (255 for 0–255, 1.0 for
[0, 1]). Float input that looks like pixels gets a PixelRangeWarning that names the fix: no
negative value at all, where the model's preprocessing maps black (0) to −mean/std < 0.
"""

from __future__ import annotations

import warnings

import numpy as np

from cnnlab import runtime
from cnnlab.data.folder import FolderImages, take
from cnnlab.data.loader import Loader
from cnnlab.losses import softmax
from cnnlab.metrics import confusion_matrix, per_class_accuracy, top_k_accuracy
from cnnlab.train import progress as bars

#: test-time augmentation: "none", or "flip": the scores of each image and of its mirror image
#: (left-right) averaged, as the scores the accuracy, the loss and the prediction come from
TTA = ("none", "flip")


def check_tta(tta: str | None, who: str) -> str:
    if tta is None:
        return "none"
    if tta not in TTA:
        raise ValueError(f"{who}: tta must be one of {', '.join(TTA)}. Received: tta={tta!r}")
    return tta


def scores_of(model, xb: np.ndarray, tta: str = "none") -> np.ndarray:
    """The model's scores of a batch in inference mode; with tta="flip" the mean of the scores
    of xb and of xb mirrored left-right (the last axis)."""
    scores = model.forward(xb)
    if tta == "flip":
        mirrored = model.forward(np.ascontiguousarray(xb[..., ::-1]))
        scores = (scores + mirrored) * scores.dtype.type(0.5)
    return scores


class PixelRangeWarning(UserWarning):
    """Float input that looks like pixels was given as normalised model input."""


def _pixels(model, x: np.ndarray, pixel_range: float | None, who: str) -> bool:
    """Whether x holds pixels for the model's preprocessing (the module's rule); errors and the
    warning name `who` (the function called)."""
    if pixel_range is not None:
        if isinstance(pixel_range, bool) or not (0 < float(pixel_range) < float("inf")):
            raise ValueError(f"{who}: pixel_range is the value of a white pixel, e.g. 255 or 1.0. "
                             f"Received: pixel_range={pixel_range!r}")
        if x.dtype == np.uint8 and float(pixel_range) != 255:
            raise ValueError(f"{who}: uint8 images are 0–255; pixel_range={pixel_range} is for floats")
    is_pixels = x.dtype == np.uint8 or pixel_range is not None
    if is_pixels and model.preprocess is None:
        what = "uint8 images" if x.dtype == np.uint8 else "pixels"
        raise ValueError(f"{who}: {what} need model.preprocess (set by fit or cl.load); this model "
                         "takes normalised float input only")
    if not is_pixels and model.preprocess is not None and x.size and x.min() >= 0 \
            and (model.preprocess.mean > 0).any():
        white = 1 if x.max() <= 1 else 255
        warnings.warn(f"{who}: float input from {float(x.min()):g} to {float(x.max()):g} looks like "
                      f"pixels 0–{white} (normalised input has negative values), but float input "
                      f"is taken as already normalised; pass pixel_range={white} (or uint8 images) "
                      "to have the model's preprocessing applied", PixelRangeWarning, stacklevel=3)
    return is_pixels


def _batches(model, data, batch_size: int, pixel_range: float | None = None, who: str = "evaluate"):
    if isinstance(data, Loader):
        yield from data.batches(0)
        return
    x, y = data
    x = x if isinstance(x, FolderImages) else np.asarray(x)  # image files: decoded by the batch
    preprocess = model.preprocess if _pixels(model, x, pixel_range, who) else None
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        xb = preprocess(xb, pixel_range if x.dtype != np.uint8 else None) if preprocess else xb
        yield xb, (None if y is None else y[start : start + batch_size])


def predict_scores(model, x: np.ndarray, batch_size: int = 512, *,
                   pixel_range: float | None = None, tta: str | None = None) -> np.ndarray:
    """Scores (N, K) in inference mode. x: uint8 pixels, float pixels on 0–`pixel_range`, or
    normalised float input (see the module docstring). tta="flip": each image's scores averaged
    with its mirror image's (TTA)."""
    runtime.apply_defaults()
    tta = check_tta(tta, "predict")
    batches = _batches(model, (x, None), batch_size, pixel_range, "predict")
    return np.concatenate([scores_of(model, xb, tta) for xb, _ in batches])


def predict(model, x: np.ndarray, batch_size: int = 512, *, pixel_range: float | None = None,
            tta: str | None = None) -> np.ndarray:
    """Class probabilities (N, K): the softmax of the scores (x and tta as for predict_scores)."""
    return softmax(predict_scores(model, x, batch_size, pixel_range=pixel_range, tta=tta))


def evaluate(model, data, *, batch_size: int = 512, loss=None, k: int = 5,
             keep_scores: bool = False, pixel_range: float | None = None,
             progress: bool | None = None, what: str = "evaluate", comm=None,
             tta: str | None = None) -> dict:
    """Accuracy, top-k accuracy, mean loss, confusion matrix and per-class accuracy, computed in
    batches in inference mode. `data`: (x, y) arrays (x as for predict_scores) or a
    cl.data.Loader. Keys: n, accuracy, top<k>, loss (None without a loss), confusion, per_class,
    and with keep_scores=True also scores (N, K) and labels (N,). `progress`: a bar named
    `what` (cnnlab.train.progress: by default on a terminal or in Jupyter). `comm` (a
    cnnlab.distributed.Comm): each process scores its contiguous share of the samples and the
    counts are summed over the processes: the same accuracy and confusion matrix as one process.
    `tta` ("none" or "flip", TTA): the scores of each image averaged with its mirror image's."""
    runtime.apply_defaults()
    tta = check_tta(tta, "evaluate")
    if comm is not None:
        if keep_scores:
            raise ValueError("evaluate: keep_scores=True needs every score in one process; "
                             "evaluate without comm")
        return _reduced(model, _share(data, comm), comm, batch_size, loss, k, pixel_range, tta)
    scores, labels = _scores(model, data, batch_size, pixel_range, progress, what, tta)
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


def _scores(model, data, batch_size: int, pixel_range, progress, what: str, tta: str = "none"):
    """(scores (N, K), labels (N,)) of `data` in inference mode, with a progress bar if wanted."""
    total = len(data.y) if isinstance(data, Loader) else len(data[1])
    bar = bars.bar(total, what) if bars.wanted(progress) else None
    scores, labels = [], []
    for xb, yb in _batches(model, data, batch_size, pixel_range):
        scores.append(scores_of(model, xb, tta))
        labels.append(yb)
        if bar is not None:
            bar.update(len(yb))
    if bar is not None:
        bar.close()
    return np.concatenate(scores), np.concatenate(labels)


def _share(data, comm):
    """This process's contiguous share of `data` (a Loader or (x, y)), or None when it is empty
    (fewer samples than processes)."""
    y = data.y if isinstance(data, Loader) else data[1]
    part = comm.share(len(y))
    if part.stop <= part.start:
        return None
    if isinstance(data, Loader):
        return Loader(take(data.x, part), data.y[part], data.batch_size, preprocess=data.preprocess)
    return take(data[0], part), data[1][part]


def _reduced(model, data, comm, batch_size: int, loss, k: int, pixel_range, tta: str) -> dict:
    """evaluate() over the processes: local counts of this share, summed (float64: exact)."""
    classes = model.out_shape[-1]
    n, top, loss_sum, confusion = 0, 0.0, 0.0, np.zeros((classes, classes), np.int64)
    if data is not None:
        scores, labels = _scores(model, data, batch_size, pixel_range, False, "", tta)
        n = len(labels)
        top = top_k_accuracy(scores, labels, k) * n
        loss_sum = 0.0 if loss is None else loss.forward(scores, labels) * n
        confusion = confusion_matrix(labels, scores.argmax(axis=1), classes)
    total = comm.sum([n, top, loss_sum, *confusion.ravel()])
    n, confusion = int(total[0]), np.rint(total[3:]).astype(np.int64).reshape(classes, classes)
    return {
        "n": n,
        "accuracy": float(np.trace(confusion) / n),
        f"top{k}": float(total[1] / n),
        "loss": None if loss is None else float(total[2] / n),
        "confusion": confusion,
        "per_class": per_class_accuracy(confusion),
    }
