"""Training and using a model: the loop, its records, evaluation, the learning-rate range test.

    loop.py      fit() and its Trainer: batches, steps, schedules, checkpoints, resumption
    inputs.py    arrays or Loaders, the held-out validation part, labels checked
    parallel.py  what a step does differently on one of K data-parallel processes (MPI)
    history.py   History (one row per epoch), Callback, EarlyStopping
    evaluate.py  evaluate, predict, predict_scores: the one evaluation everything uses
    lr_find.py   the learning-rate range test, and the rate it suggests (suggest_lr, RULE)
    features.py  features (a named layer's activations), nearest (neighbours in that space)

The entry points here (fit, evaluate, predict, lr_find) apply cnnlab's process settings first
(cnnlab.runtime.apply_defaults). train may import core, files, runtime, data, layers, losses,
optim, metrics, io and distributed; never viz or cli.
"""

from cnnlab.train.evaluate import PixelRangeWarning, evaluate, predict, predict_scores
from cnnlab.train.features import features, nearest
from cnnlab.train.history import COLUMNS, Callback, EarlyStopping, History
from cnnlab.train.loop import Trainer, first_nonfinite_layer, fit
from cnnlab.train.lr_find import lr_find, smooth, suggest_lr

__all__ = ["COLUMNS", "Callback", "EarlyStopping", "History", "PixelRangeWarning", "Trainer", "evaluate",
           "features", "first_nonfinite_layer", "fit", "lr_find", "nearest", "predict",
           "predict_scores", "smooth", "suggest_lr"]
