"""What a model file may ask for: the limits checked before anything is built or run.

Two kinds, both checked on the file's JSON and shapes alone, before a layer is allocated:
    the metadata's JSON   nesting depth, items per list or object, string length (MAX_JSON_*),
                          and only finite numbers: checked by an iterative walk, so no value can
                          reach a recursive one (a list nested 500 deep is one error, not a
                          RecursionError)
    the model             Limits: parameters, activation values for one sample, layers. The
                          defaults admit every zoo model at its default input with room to spare;
                          raise them with `cl.load(path, limits=cl.io.Limits(params=...))` or,
                          for the command, CNNLAB_LIMITS="params=2e9,activations=1e9,layers=20000"
docs/security.md lists them and what each bad input gets.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import NamedTuple

from cnnlab.core import Layer, ModelFileError
from cnnlab.layers import Conv2D, ConvTranspose2D, Dense

#: JSON in a file's metadata nested deeper than this is refused (a zoo architecture nests 6 deep)
MAX_JSON_DEPTH = 64
#: items in one JSON list or object (21k ImageNet-21k class names fit; a model's layers are
#: limited by Limits.layers)
MAX_JSON_ITEMS = 1 << 20
#: characters in one JSON string (class names, layer arguments)
MAX_JSON_STRING = 1 << 16
#: the environment variable the command's limits are raised with
LIMITS_VARIABLE = "CNNLAB_LIMITS"


@dataclass(frozen=True)
class Limits:
    """The most a model file may ask for, counted from its architecture before anything is built.

    params       weights and biases of the Conv/Dense layers (per-channel ones, BatchNorm's and
                 PReLU's, are bounded by the activations): 1 Gi, 4 GiB of float32, 7× VGG-19
    activations  values of every layer's output for one sample, summed: 256 Mi (1 GiB of
                 float32), 5× SE-ResNet-50 at 224×224 (50 M)
    layers       layers, containers included: 10,000, 40× GoogLeNet (232)
    """

    params: int = 1 << 30
    activations: int = 1 << 28
    layers: int = 10_000

    @classmethod
    def from_environment(cls) -> Limits:
        """The defaults, changed by CNNLAB_LIMITS="params=N,activations=N,layers=N" (any of them;
        N an integer or a float like 2e9). ValueError when the variable is malformed."""
        text = os.environ.get(LIMITS_VARIABLE, "").strip()
        values = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, number = item.partition("=")
            key = key.strip()
            try:
                value = int(float(number)) if key in {f.name for f in fields(cls)} else None
            except (ValueError, OverflowError):
                value = None
            if value is None or value <= 0:
                raise ValueError(f"{LIMITS_VARIABLE}: expected params=N, activations=N or layers=N "
                                 f"with N > 0, separated by commas. Received: {item!r}")
            values[key] = value
        return cls(**values)


class Footprint(NamedTuple):
    """What a model needs, from output_shape alone: parameters, activation values for one
    sample (every layer's output, containers' too) and layers (containers included)."""

    params: int
    activations: int
    layers: int


def footprint(layers: list[Layer], shape: tuple[int, ...]) -> Footprint:
    """The Footprint of `layers` applied in turn to per-sample input `shape`; nothing is built.
    Raises what output_shape raises. Recursion is bounded by the nesting the registry allows."""
    params = activations = count = 0
    for layer in layers:
        out = layer.output_shape(shape)
        if parts := layer.sublayer_inputs(shape):  # Sequential, Residual, Concat, SqueezeExcite
            for part, part_shape in parts:
                inner = footprint([part], part_shape)
                params, activations = params + inner.params, activations + inner.activations
                count += inner.layers
        elif isinstance(layer, Conv2D | ConvTranspose2D):  # Conv1D, LocallyConnected too
            params += layer.param_count(shape)  # groups, positions: the layer's own count
        elif isinstance(layer, Dense):
            params += layer.units * (shape[0] + bool(layer.use_bias))
        activations += math.prod(out)
        count += 1
        shape = out
    return Footprint(params, activations, count)


def check_footprint(need: Footprint, limits: Limits, where: str) -> None:
    """ModelFileError naming the first limit `need` exceeds, and how to raise it."""
    for key, what in (("layers", "layers"), ("params", "parameters"),
                      ("activations", "activation values for one sample")):
        if getattr(need, key) > getattr(limits, key):
            raise ModelFileError(
                f"{where}: {getattr(need, key):,} {what} exceed the limit of "
                f"{getattr(limits, key):,} (Limits.{key}); refusing to build it. To allow it, "
                f"set {LIMITS_VARIABLE}={key}=N or pass limits=cl.io.Limits({key}=N)")


def check_json(value, where: str, *, finite: bool = True) -> int:
    """Checks parsed JSON without recursion: nesting depth, list and object sizes, string
    lengths and (unless `finite` is False) finite numbers. Returns how many objects have a "type"
    key (an architecture's layers), so a file of a million layers is refused before one is made."""
    typed = 0
    stack = [(value, 0, "")]
    while stack:
        item, depth, at = stack.pop()
        if isinstance(item, str):
            if len(item) > MAX_JSON_STRING:
                raise ModelFileError(f"{where}{at}: a string of {len(item):,} characters "
                                     f"(at most {MAX_JSON_STRING:,})")
        elif isinstance(item, float):
            if finite and not math.isfinite(item):
                raise ModelFileError(f"{where}{at}: {item} is not a finite number")
        elif isinstance(item, list | dict):
            if depth >= MAX_JSON_DEPTH:
                raise ModelFileError(f"{where}: JSON nested more than {MAX_JSON_DEPTH} deep")
            if len(item) > MAX_JSON_ITEMS:
                raise ModelFileError(f"{where}{at}: {len(item):,} items (at most {MAX_JSON_ITEMS:,})")
            if isinstance(item, dict):
                typed += "type" in item
                stack.extend((v, depth + 1, f"{at}.{k}") for k, v in item.items())
                stack.extend((k, depth + 1, at) for k in item)
            else:
                stack.extend((v, depth + 1, f"{at}[{i}]") for i, v in enumerate(item))
    return typed
