"""`cnnlab train`'s transfer learning: a model file to start from (--model FILE), its head fitted
to the data's classes, layers frozen (--freeze body|N), and a lower learning rate for the body
(--body-lr-scale S, an optimizer parameter group).

The head is the model's last Dense layer; the body every layer before it (Sequential.head_index).
Frozen layers get no update, and their BatchNorm layers normalise with their running statistics
(inference mode) even while the head trains.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cnnlab as cl
from cnnlab.cli.common import UsageError, printable, say
from cnnlab.core import walk


def is_model_file(name: str) -> bool:
    """Whether --model names a file (not a zoo model): it exists, ends in .safetensors or is a path."""
    return Path(name).exists() or name.endswith(".safetensors") or os.sep in name


def model_spec(text: str) -> str:
    """The type of --model: a zoo name (as the zoo spells it) or a model file's path."""
    name = text.replace("_", "-").lower()
    if name in cl.zoo.MODELS:
        return name
    if is_model_file(text):
        return text
    raise argparse.ArgumentTypeError(f"expected a zoo model ({', '.join(cl.zoo.names())}) or a "
                                     f".safetensors model file, got {text!r}")


def freeze_spec(text: str) -> str | int:
    """The type of --freeze: "body" or a number of layers N ≥ 0."""
    if text == "body":
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"expected body or a number of layers ≥ 0, got {text!r}")


def check(opts: dict) -> None:
    """The transfer flags that contradict each other, before anything is read."""
    if opts.get("freeze") == "body" and "body-lr-scale" in opts:
        raise UsageError("--body-lr-scale is for a body that trains; --freeze body freezes it. "
                         "Give one or the other")


def start_model(opts: dict):
    """The model --model FILE names, loaded (None for a zoo name)."""
    if not is_model_file(opts["model"]):
        return None
    model = cl.load(opts["model"])
    if "input" in opts and tuple(opts["input"]) != model.input_shape:
        raise UsageError(f"--input {'x'.join(map(str, opts['input']))} contradicts "
                         f"{opts['model']}, which takes {'x'.join(map(str, model.input_shape))} "
                         "(C×H×W); leave out --input")
    return model


def fit_head(model, names: list[str], seed: int) -> None:
    """Replaces the head of a model that starts from a file by a fresh one for the data's classes
    when their number differs, or the file records other class names; says what it did."""
    head = model.layers[model.head_index("--model")]
    count = head.out_shape[-1]
    if count == len(names) and (model.class_names or names) == names:
        model.class_names = names
        return
    was = f"{count} classes" + (f": {', '.join(model.class_names)}" if model.class_names else "")
    model.replace_head(len(names), seed=seed)
    model.class_names = names
    new = model.layers[model.head_index()]
    say(printable(f"new head {new.name}: Dense({len(names)}) for {', '.join(names)} (was {was}), "
                  f"initialised afresh from --seed {seed} (init={new.init})"))


def freeze(model, opts: dict) -> None:
    """Applies --freeze (body: every layer before the head; N: the first N layers) and says
    what is frozen and what trains."""
    spec = opts.get("freeze")
    if spec is None:
        return
    layers = model.layers
    if spec != "body" and spec > len(layers):
        raise UsageError(f"--freeze {spec}: the model has {len(layers)} layers")
    model.freeze(up_to="head" if spec == "body" else spec)
    params = model.parameters().values()
    trained = sum(p.size for p in params if p.trainable)
    if not trained:
        raise UsageError(f"--freeze {spec} leaves nothing to train: the head "
                         f"{layers[model.head_index()].name} is layer {model.head_index() + 1} of "
                         f"{len(layers)}")
    stop = model.head_index() if spec == "body" else spec
    if stop == 0:
        return
    norms = sum(isinstance(inner, cl.BatchNorm1D | cl.BatchNorm2D) for layer in layers[:stop]
                for inner in [layer, *(x for _, x in walk(layer))])
    span = layers[0].name if stop == 1 else f"{layers[0].name} … {layers[stop - 1].name}"
    say(f"frozen: {span} ({stop} layer{'s' if stop > 1 else ''}, "
        f"{sum(p.size for p in params if not p.trainable):,} parameters"
        + (f"; their {norms} BatchNorm layers use their running statistics" if norms else "")
        + f"); training {trained:,} parameters")


def body_groups(model, opts: dict) -> list[dict] | None:
    """The optimizer's parameter groups for --body-lr-scale S: the body at S times the lr."""
    if "body-lr-scale" not in opts:
        return None
    names = model.body_names()
    say(f"body ({names[0]} … {names[-1]}) at lr × {opts['body-lr-scale']:g}" if names else
        "--body-lr-scale: the model has no body before its head")
    return [{"name": "body", "params": names, "lr_scale": opts["body-lr-scale"]}] if names else None

