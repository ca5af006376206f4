"""A model's architecture as JSON, and the model rebuilt from it (the closed list of layers).

    {"type": "Sequential", "input_shape": [1, 28, 28], "dtype": "float32",
     "layers": [{"type": "Conv2D", "filters": 32, ...}, ...]}

Only the layer types of cnnlab.layers, with their constructor arguments as plain values, are
accepted; nested Sequentials at most MAX_DEPTH deep; the JSON checked iteratively first
(depth, sizes, finite numbers: cnnlab.io.limits); and an architecture may not ask for more
weights than its file holds (WEIGHT_SLACK beyond), nor more parameters, activations or layers
than its Limits: refused before anything is allocated.
"""

from __future__ import annotations

import inspect

from cnnlab import layers as layer_module
from cnnlab.core import Layer, ModelFileError
from cnnlab.io.limits import Footprint, Limits, check_footprint, check_json, footprint
from cnnlab.layers import Concat, Residual, Sequential

#: nested Sequentials deeper than this are refused (the zoo's deepest is 2)
MAX_DEPTH = 8
#: weights an architecture may ask for beyond those its file holds (64 MiB of float32) before
#: it is refused unbuilt; a smaller mismatch is reported tensor by tensor after the build
WEIGHT_SLACK = 1 << 24


def layer_registry() -> dict[str, type[Layer]]:
    """The closed list of layer types a file may name: the layers cnnlab.layers exports."""
    classes = (getattr(layer_module, name) for name in layer_module.__all__)
    return {cls.__name__: cls for cls in classes if isinstance(cls, type) and issubclass(cls, Layer)}


# ------------------------------------------------------------------ architecture
def architecture(model: Sequential) -> dict:
    return {"type": "Sequential", "input_shape": list(model.input_shape),
            "dtype": model.dtype.name, **_to_json(model.config())}


def _to_json(value):
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _make_layer(spec, where: str, registry: dict[str, type[Layer]], depth: int = 0) -> Layer:
    if depth > MAX_DEPTH:
        raise ModelFileError(f"{where}: Sequentials nested more than {MAX_DEPTH} deep")
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ModelFileError(f"{where}: a layer must be an object with a string 'type'")
    kind = spec["type"]
    cls = registry.get(kind)
    if cls is None:
        raise ModelFileError(f"{where}: unknown layer type {kind!r}; a cnnlab file may only name "
                             f"the layers of cnnlab ({', '.join(sorted(registry))})")
    args = {k: v for k, v in spec.items() if k != "type"}
    if cls is Sequential:
        inner = args.pop("layers", None)
        if not isinstance(inner, list) or args:
            raise ModelFileError(f"{where}: a nested Sequential takes only a list of 'layers'")
        return Sequential([_make_layer(s, f"{where}.layers[{i}]", registry, depth + 1)
                           for i, s in enumerate(inner)])
    if cls in (Residual, Concat):  # lists of layers, each made through this same closed registry
        return _make_block(cls, args, where, registry, depth)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    if unknown := sorted(set(args) - allowed):
        raise ModelFileError(f"{where}: {kind} takes no argument {', '.join(unknown)}")
    for key, value in args.items():
        if not _plain(value):
            raise ModelFileError(f"{where}: {kind} argument {key}={value!r} is not a plain value")
    try:
        return cls(**args)
    except (TypeError, ValueError, ArithmeticError) as error:
        raise ModelFileError(f"{where}: cannot create {kind}: {error}") from None


def _make_block(cls, args: dict, where: str, registry, depth: int) -> Layer:
    """Residual(branch_layers=[…], shortcut=None | […]) or Concat(branches=[[…], …])."""

    def chain(specs, at: str) -> list[Layer]:
        if not isinstance(specs, list) or not specs:
            raise ModelFileError(f"{at}: expected a non-empty list of layers")
        return [_make_layer(s, f"{at}[{i}]", registry, depth + 1) for i, s in enumerate(specs)]

    if cls is Residual:
        if unknown := sorted(set(args) - {"branch_layers", "shortcut"}):
            raise ModelFileError(f"{where}: Residual takes no argument {', '.join(unknown)}")
        shortcut = args.get("shortcut")
        return Residual(chain(args.get("branch_layers"), f"{where}.branch_layers"),
                        None if shortcut is None else chain(shortcut, f"{where}.shortcut"))
    branches = args.pop("branches", None)
    if not isinstance(branches, list) or len(branches) < 2 or args:
        raise ModelFileError(f"{where}: a Concat takes only 'branches', a list of 2 or more lists "
                             "of layers")
    return Concat([chain(b, f"{where}.branches[{i}]") for i, b in enumerate(branches)])


def _plain(value) -> bool:
    if isinstance(value, list):
        return len(value) <= 8 and all(_plain(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def from_architecture(arch, *, max_weights: int | None = None,
                      limits: Limits | None = None) -> Sequential:
    """Rebuilds (and builds) the model an architecture dict describes. With `max_weights` (the
    parameter values a file holds), an architecture needing more than WEIGHT_SLACK beyond it is
    refused before anything is allocated: memory stays bounded by the file's size. So is one
    needing more parameters, activations or layers than `limits` (default:
    Limits.from_environment(), the defaults unless CNNLAB_LIMITS raises them)."""
    if not isinstance(arch, dict) or arch.get("type") != "Sequential":
        raise ModelFileError("architecture: expected an object of type 'Sequential'")
    limits = Limits.from_environment() if limits is None else limits
    # before any recursive walk: nesting, sizes, finite numbers; then the layer count
    check_footprint(Footprint(0, 0, check_json(arch, "architecture") - 1), limits, "architecture")
    shape, dtype = arch.get("input_shape"), arch.get("dtype", "float32")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 3
            or not all(isinstance(d, int) and 0 < d <= 1 << 16 for d in shape)):
        raise ModelFileError(f"architecture: input_shape must be 1 to 3 positive ints, got {shape!r}")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"architecture: dtype must be float32 or float64, got {dtype!r}")
    layers = arch.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ModelFileError("architecture: 'layers' must be a non-empty list")
    registry = layer_registry()
    built = [_make_layer(spec, f"architecture.layers[{i}]", registry) for i, spec in enumerate(layers)]
    try:
        need = footprint(built, tuple(shape))
        if max_weights is not None and need.params > max_weights + WEIGHT_SLACK:
            raise ModelFileError(f"architecture: its layers need {need.params:,} weights but the file "
                                 f"holds {max_weights:,} parameter values; refusing to allocate them")
        check_footprint(need, limits, "architecture")
        return Sequential(built, input_shape=tuple(shape), dtype=dtype)
    except ModelFileError:
        raise
    except (ValueError, TypeError, ArithmeticError) as error:
        raise ModelFileError(f"architecture does not build: {error}") from None
