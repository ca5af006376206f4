"""Model files: one .safetensors file with a model's weights, buffers, architecture,
preprocessing and class names.

    cl.save(model, "model.safetensors");  model = cl.load("model.safetensors")
"""

from __future__ import annotations

import json
import os

from cnnlab.core import ModelFileError
from cnnlab.data.loader import Preprocess
from cnnlab.io.architecture_json import architecture, from_architecture
from cnnlab.io.limits import Limits
from cnnlab.io.tensors import FORMAT, assign, meta_json, model_tensors, read_file, write_file
from cnnlab.layers import Sequential


def model_metadata(model: Sequential) -> dict[str, str]:
    """What every cnnlab file says of its model: format, architecture, preprocessing (mean, std,
    scale, channel order, resize rule and the input size it brings images to), classes."""
    preprocess = None
    if model.preprocess is not None:
        preprocess = {**model.preprocess.config(), "input_size": list(model.input_shape[1:])}
    return {
        "format": FORMAT,
        "architecture": json.dumps(architecture(model)),
        "preprocess": json.dumps(preprocess),
        "class_names": json.dumps(model.class_names),
    }


def save(model: Sequential, path: str | os.PathLike, *, evaluation: dict | None = None) -> None:
    """One .safetensors file: weights, buffers, architecture, preprocessing, class names, and
    optionally `evaluation` (JSON: how the model's numbers were obtained, e.g. fit()'s epochs,
    validation size and the test split's one evaluation), stored as metadata "evaluation"."""
    if not isinstance(model, Sequential) or not model.built:
        raise ValueError("save: expected a built cnnlab Sequential")
    extra = {} if evaluation is None else {"evaluation": json.dumps(evaluation)}
    write_file(path, model_tensors(model), {**model_metadata(model), **extra})


def load(path: str | os.PathLike, *, limits: Limits | None = None) -> Sequential:
    """The model saved by `save` (or a checkpoint's model), with its weights. A model needing
    more parameters, activations or layers than `limits` (default: Limits.from_environment())
    is refused before it is built."""
    tensors, metadata = read_file(path)
    return model_from(tensors, metadata, path, limits=limits)


def model_from(tensors, metadata, path, *, limits: Limits | None = None) -> Sequential:
    """The model a file's tensors and metadata describe (read_file's output), every name,
    shape and metadata entry checked; errors name `path`."""
    stored = sum(v.size for k, v in tensors.items() if k.startswith("param."))
    try:
        model = from_architecture(meta_json(metadata, "architecture", path), max_weights=stored,
                                  limits=limits)
    except ModelFileError as error:
        raise ModelFileError(str(error) if str(error).startswith(str(path)) else f"{path}: {error}") from None
    assign(model, tensors, path)
    model.preprocess = _preprocess(meta_json(metadata, "preprocess", path), model, path)
    names = meta_json(metadata, "class_names", path)
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise ModelFileError(f"{path}: class_names must be a list of strings")
    if names is not None and len(model.out_shape) == 1 and len(names) != model.out_shape[0]:
        raise ModelFileError(f"{path}: class_names lists {len(names)} classes but the model has "
                             f"{model.out_shape[0]} outputs")
    model.class_names = names
    return model


def _preprocess(recorded, model: Sequential, path) -> Preprocess | None:
    """The recorded preprocessing, checked against the model (files before input_size was
    recorded have none: the architecture's input is the size)."""
    if recorded is None:
        return None
    if not isinstance(recorded, dict):
        raise ModelFileError(f"{path}: bad preprocess metadata: not a JSON object")
    recorded = dict(recorded)
    size = recorded.pop("input_size", list(model.input_shape[1:]))
    if size != list(model.input_shape[1:]):
        raise ModelFileError(f"{path}: the preprocessing brings images to {size}, the architecture "
                             f"takes {list(model.input_shape[1:])}")
    try:
        return Preprocess(**recorded)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: bad preprocess metadata: {error}") from None
