"""Training checkpoints: the one owner of their format.

A checkpoint is a model file (cnnlab.io.model) plus the optimizer's state as tensors
"optim.<name>.<slot>" and a "training" metadata entry, JSON:
    epoch, step, global_step   where the run stands (step: batches done in the current epoch)
    seed, batch_size, base_lr  what a resumed run must agree with (and val_split, when present)
    optimizer, rng             the optimizer's hyperparameters and the layers' Generator states
    history, partial, best     finished epochs' rows, the current epoch's running sums, the best score
    stop, callbacks            why the run ended early, if it did; each callback's state
The training loop hands over its state as a dict (write_checkpoint) and gets it back checked
(read_checkpoint, restore): every key's type is checked here, so a damaged or tampered state is
a ModelFileError, not a crash halfway through a resumed run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlab.core import ModelFileError
from cnnlab.io.model import model_from, model_metadata
from cnnlab.io.tensors import (
    assign,
    meta_json,
    model_tensors,
    read_file,
    rng_states,
    set_rng_states,
    write_file,
)
from cnnlab.layers import Sequential

#: the name of a run directory's latest checkpoint
CHECKPOINT = "last.ckpt.safetensors"


class Checkpoint(NamedTuple):
    """A checkpoint read and checked: its tensors, metadata and training state."""

    path: Path
    tensors: dict[str, np.ndarray]
    metadata: dict[str, str]
    training: dict

    def model(self) -> Sequential:
        """The model it holds, built from its architecture, with its weights."""
        return model_from(self.tensors, self.metadata, self.path)


def write_checkpoint(path: str | os.PathLike, model: Sequential, optimizer, state: dict) -> None:
    """The model, the optimizer's state and the loop's `state` (every key of the format above
    but optimizer and rng, which come from the optimizer and the model), written atomically."""
    arrays, optim_meta = optimizer.state_dict()
    tensors = {**model_tensors(model), **{f"optim.{k}": v for k, v in arrays.items()}}
    training = {**state, "optimizer": optim_meta, "rng": rng_states(model)}
    write_file(path, tensors, {**model_metadata(model), "training": json.dumps(training)})


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """A checkpoint's content, integrity and training state checked."""
    tensors, metadata = read_file(path)
    return Checkpoint(Path(path), tensors, metadata, training_state(metadata, path))


def restore(checkpoint: Checkpoint, model: Sequential, optimizer) -> None:
    """Puts a checkpoint's weights, preprocessing, class names, optimizer state and Generator
    states into `model` and `optimizer` (which must be of the checkpoint's architecture and
    kind). The loop's own state is checkpoint.training."""
    path, tensors, training = checkpoint.path, checkpoint.tensors, checkpoint.training
    assign(model, tensors, path)
    saved = checkpoint.model()
    model.preprocess, model.class_names = saved.preprocess, saved.class_names
    optimizer.load_state_dict(
        {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}, training["optimizer"])
    set_rng_states(model, training["rng"])


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


_TRAINING = {  # what each key of a checkpoint's "training" metadata must hold
    "epoch": _count, "step": _count, "global_step": _count, "seed": _count,
    "batch_size": lambda v: _count(v) and v > 0,
    "base_lr": lambda v: _number(v) and 0 < v < math.inf,
    "stop": lambda v: v is None or isinstance(v, str),
    "optimizer": lambda v: isinstance(v, dict),
    "rng": lambda v: isinstance(v, dict) and all(isinstance(s, dict) for s in v.values()),
    "history": lambda v: isinstance(v, list) and all(
        isinstance(row, dict) and all(x is None or _number(x) for x in row.values()) for row in v),
    "partial": lambda v: isinstance(v, dict) and _number(v.get("loss")) and _count(v.get("correct"))
    and _count(v.get("seen")) and _number(v.get("seconds")),
    "best": lambda v: v is None or _number(v),
    "callbacks": lambda v: isinstance(v, list) and all(isinstance(s, dict) for s in v),
}
#: keys added after the first checkpoints were written: checked when present
_OPTIONAL = {"val_split": lambda v: _number(v) and 0 <= v < 1}


def training_state(metadata: dict[str, str], path) -> dict:
    """A checkpoint's training state (epoch, step, optimizer, RNG states, history, ...) with
    every field's type checked: a model file, or a damaged or tampered state, is a ModelFileError
    here rather than a crash halfway through a resumed run. The state is not covered by the
    SHA-256 (the tensors are); what it holds is checked when it is used."""
    training = meta_json(metadata, "training", path, finite=False)  # each field checked below
    if training is None:
        raise ModelFileError(f"{path}: a model file, not a training checkpoint")
    if not isinstance(training, dict):
        raise ModelFileError(f"{path}: corrupt training state (not a JSON object)")
    for key, ok in {**_TRAINING, **_OPTIONAL}.items():
        if key not in training and key in _OPTIONAL:
            continue
        if key not in training:
            raise ModelFileError(f"{path}: corrupt training state (no {key!r})")
        if not ok(training[key]):
            raise ModelFileError(f"{path}: corrupt training state ({key} = "
                                 f"{json.dumps(training[key])[:60]})")
    if training["step"] > 0 and training["partial"]["seen"] == 0:
        raise ModelFileError(f"{path}: corrupt training state (step {training['step']} of an epoch "
                             "with no samples seen)")
    return training
