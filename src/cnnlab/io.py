"""Model and checkpoint files: safetensors plus JSON metadata. No pickle, no eval.

A file holds the tensors ("param.<name>", "buffer.<name>", in a checkpoint also
"optim.<name>.<slot>") and string metadata:
    format        "cnnlab/1"
    architecture  JSON: {"type": "Sequential", "input_shape": [...], "dtype": "float32",
                  "layers": [{"type": "Conv2D", "filters": 32, ...}, ...]} — only the layer
                  types of cnnlab.layers and their constructor arguments are accepted
    preprocess    JSON of the input preprocessing (or "null");  class_names  JSON list or null
    sha256        of every tensor's name, dtype, shape and bytes; checked on load
    training      (checkpoints) JSON: epoch, step, optimizer, RNG states, history
Reading never unpickles or evaluates anything: the header and metadata are JSON, the layer types
come from a closed list (the layers of cnnlab.layers), their arguments must be plain values,
the tensors must match their SHA-256, and the architecture may not ask for more weights than the
file holds (a hostile file cannot make cnnlab allocate what it does not contain).
Writes are atomic: a temporary file in the same folder, fsync, os.replace, fsync the folder.
docs/security.md lists these promises and the tests that check them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import signal
import struct
from pathlib import Path

import numpy as np

from cnnlab import layers as layer_module
from cnnlab.core import Layer, ModelFileError, walk
from cnnlab.layers.blocks import Concat, Residual
from cnnlab.layers.containers import Sequential

FORMAT = "cnnlab/1"
#: headers above this are refused before they are parsed (a real one is a few kB)
MAX_HEADER = 16 << 20
#: nested Sequentials deeper than this are refused (the zoo's deepest is 2)
MAX_DEPTH = 8
#: weights an architecture may ask for beyond those its file holds (64 MiB of float32) before
#: it is refused unbuilt; a smaller mismatch is reported tensor by tensor after the build
WEIGHT_SLACK = 1 << 24


def _registry() -> dict[str, type[Layer]]:
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


def _weights_needed(layers, shape) -> int:
    """The weights `layers` allocate when built on input `shape`, from the shapes alone (weight
    matrices only, so never more than a valid file holds). Raises what output_shape raises."""
    from cnnlab.layers import Conv2D, Dense, LocallyConnected2D

    total = 0
    for layer in layers:
        out = layer.output_shape(shape)
        if parts := layer.sublayer_inputs(shape):  # Sequential, Residual, Concat, SqueezeExcite
            total += sum(_weights_needed([part], part_shape) for part, part_shape in parts)
        elif isinstance(layer, Conv2D):  # Conv1D and LocallyConnected1D/2D are Conv2Ds
            n = layer.filters * shape[0] * math.prod(np.atleast_1d(layer.kernel_size).tolist())
            total += n * math.prod(out[1:]) if isinstance(layer, LocallyConnected2D) else n
        elif isinstance(layer, Dense):
            total += layer.units * shape[0]
        shape = out
    return total


def from_architecture(arch, *, max_weights: int | None = None) -> Sequential:
    """Rebuilds (and builds) the model an architecture dict describes. With `max_weights` (the
    parameter values a file holds), an architecture needing more than WEIGHT_SLACK beyond it is
    refused before anything is allocated: memory stays bounded by the file's size."""
    if not isinstance(arch, dict) or arch.get("type") != "Sequential":
        raise ModelFileError("architecture: expected an object of type 'Sequential'")
    shape, dtype = arch.get("input_shape"), arch.get("dtype", "float32")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 3
            or not all(isinstance(d, int) and 0 < d <= 1 << 16 for d in shape)):
        raise ModelFileError(f"architecture: input_shape must be 1 to 3 positive ints, got {shape!r}")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"architecture: dtype must be float32 or float64, got {dtype!r}")
    layers = arch.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ModelFileError("architecture: 'layers' must be a non-empty list")
    registry = _registry()
    built = [_make_layer(spec, f"architecture.layers[{i}]", registry) for i, spec in enumerate(layers)]
    try:
        needed = _weights_needed(built, tuple(shape))
        if max_weights is not None and needed > max_weights + WEIGHT_SLACK:
            raise ModelFileError(f"architecture: its layers need {needed:,} weights but the file holds "
                                 f"{max_weights:,} parameter values; refusing to allocate them")
        return Sequential(built, input_shape=tuple(shape), dtype=dtype)
    except ModelFileError:
        raise
    except (ValueError, TypeError, ArithmeticError) as error:
        raise ModelFileError(f"architecture does not build: {error}") from None


# ---------------------------------------------------------------------- tensors
def model_tensors(model: Layer) -> dict[str, np.ndarray]:
    tensors = {f"param.{k}": p.data for k, p in model.parameters().items()}
    tensors.update({f"buffer.{k}": b for k, b in model.buffers().items()})
    return tensors


def digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def write_file(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    from safetensors.numpy import save

    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                metadata={**metadata, "sha256": digest(tensors)})
    atomic_write(path, data)


#: Test hook, not an API. CNNLAB_TEST_KILL_AT="step:N" makes the process SIGKILL itself right
#: after its N-th training step (before that step's checkpoint); "save:N" halfway through its
#: N-th atomic_write, with half the temporary file on disk and the target not yet replaced.
#: tests/test_kill_resume.py uses it to kill runs at exact moments and resume them.
_KILL_ENV = "CNNLAB_TEST_KILL_AT"
_kill_counts = {"step": 0, "save": 0}


def kill_point(event: str) -> None:
    """SIGKILLs this process at the moment CNNLAB_TEST_KILL_AT names (see above); else nothing."""
    spec = os.environ.get(_KILL_ENV)
    if not spec:
        return
    _kill_counts[event] += 1
    kind, _, n = spec.partition(":")
    if kind == event and n.isdigit() and _kill_counts[event] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Writes all of `data` or nothing: a crash or a full disk leaves the old file intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if os.environ.get(_KILL_ENV):
                half = len(data) // 2
                f.write(data[:half])
                f.flush()
                os.fsync(f.fileno())
                kill_point("save")
                data = data[half:]
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:  # Ctrl-C too: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        if not isinstance(error, OSError):
            raise
        raise OSError(error.errno, f"could not write {path}: {error.strerror or error}; "
                                   "the previous file, if any, is unchanged") from None
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of a cnnlab safetensors file, integrity checked."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(raw) < 8:
        raise ModelFileError(f"{path}: not a safetensors file ({len(raw)} bytes)")
    (size,) = struct.unpack("<Q", raw[:8])
    if size > min(MAX_HEADER, len(raw) - 8):
        raise ModelFileError(f"{path}: not a safetensors file (header length {size} is impossible "
                             f"for a {len(raw)}-byte file)")
    try:
        header = json.loads(raw[8 : 8 + size])
        metadata = header.get("__metadata__") or {}
    except (ValueError, AttributeError, RecursionError):  # RecursionError: "[[[[..." nested deep
        raise ModelFileError(f"{path}: not a safetensors file (the header is not JSON)") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a cnnlab model file (format {metadata.get('format')!r}, "
                             f"expected {FORMAT!r})" if isinstance(metadata, dict) else
                             f"{path}: metadata is not a string map")
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        tensors = load(raw)
    except (SafetensorError, ValueError, TypeError, OverflowError) as error:
        raise ModelFileError(f"{path}: corrupt safetensors data ({error})") from None
    except KeyError as error:  # a dtype NumPy lacks (BF16, F8_*): cnnlab never writes one
        raise ModelFileError(f"{path}: unsupported tensor dtype {error}") from None
    if metadata.get("sha256") != digest(tensors):
        raise ModelFileError(f"{path}: the tensors do not match their SHA-256 (corrupted or "
                             "modified file); refusing to use them")
    return tensors, metadata


def _meta_json(metadata: dict[str, str], key: str, path):
    try:
        return json.loads(metadata.get(key, "null"))
    except (ValueError, RecursionError):
        raise ModelFileError(f"{path}: metadata {key!r} is not valid JSON") from None


# ----------------------------------------------------------------- model files
def save(model: Sequential, path: str | os.PathLike, *, extra: dict[str, str] | None = None) -> None:
    """One .safetensors file: weights, buffers, architecture, preprocessing, class names."""
    if not isinstance(model, Sequential) or not model.built:
        raise ValueError("save: expected a built cnnlab Sequential")
    preprocess = model.preprocess.config() if model.preprocess is not None else None
    metadata = {
        "format": FORMAT,
        "architecture": json.dumps(architecture(model)),
        "preprocess": json.dumps(preprocess),
        "class_names": json.dumps(model.class_names),
        **(extra or {}),
    }
    write_file(path, model_tensors(model), metadata)


def load(path: str | os.PathLike) -> Sequential:
    """The model saved by `save` (or a checkpoint's model), with its weights."""
    tensors, metadata = read_file(path)
    return model_from(tensors, metadata, path)


def model_from(tensors, metadata, path) -> Sequential:
    from cnnlab.data.loader import Preprocess

    stored = sum(v.size for k, v in tensors.items() if k.startswith("param."))
    model = from_architecture(_meta_json(metadata, "architecture", path), max_weights=stored)
    assign(model, tensors, path)
    preprocess = _meta_json(metadata, "preprocess", path)
    if preprocess is not None:
        try:
            model.preprocess = Preprocess(**preprocess)
        except (TypeError, ValueError) as error:
            raise ModelFileError(f"{path}: bad preprocess metadata: {error}") from None
    names = _meta_json(metadata, "class_names", path)
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise ModelFileError(f"{path}: class_names must be a list of strings")
    model.class_names = names
    return model


def assign(model: Layer, tensors: dict[str, np.ndarray], path) -> None:
    """Copies the file's tensors into the model; every name and shape must match exactly."""
    expected = model_tensors(model)
    stored = {k: v for k, v in tensors.items() if k.startswith(("param.", "buffer."))}
    if missing := sorted(set(expected) - set(stored)):
        raise ModelFileError(f"{path}: tensors missing for {', '.join(missing[:5])}")
    if extra := sorted(set(stored) - set(expected)):
        raise ModelFileError(f"{path}: tensors {', '.join(extra[:5])} belong to no layer")
    for name, target in expected.items():
        value = stored[name]
        if value.shape != target.shape or value.dtype != target.dtype:
            raise ModelFileError(f"{path}: {name} is {value.dtype}{value.shape}, the architecture "
                                 f"needs {target.dtype}{target.shape}")
        target[...] = value


def rng_states(model: Layer) -> dict[str, dict]:
    """The state of every layer-owned Generator (Dropout), for exact resumption."""
    return {name: layer.rng.bit_generator.state for name, layer in walk(model)
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def set_rng_states(model: Layer, states: dict[str, dict]) -> None:
    for name, layer in walk(model):
        if name in states:
            layer.rng.bit_generator.state = states[name]


# ------------------------------------------------------------------ checkpoints
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


def training_state(metadata: dict[str, str], path) -> dict:
    """A checkpoint's training state (epoch, step, optimizer, RNG states, history, ...) with
    every field's type checked: a model file, or a damaged or tampered state, is a ModelFileError
    here rather than a crash halfway through a resumed run. The state is not covered by the
    SHA-256 (the tensors are); what it holds is checked when it is used."""
    training = _meta_json(metadata, "training", path)
    if training is None:
        raise ModelFileError(f"{path}: a model file, not a training checkpoint")
    if not isinstance(training, dict):
        raise ModelFileError(f"{path}: corrupt training state (not a JSON object)")
    for key, ok in _TRAINING.items():
        if key not in training:
            raise ModelFileError(f"{path}: corrupt training state (no {key!r})")
        if not ok(training[key]):
            raise ModelFileError(f"{path}: corrupt training state ({key} = "
                                 f"{json.dumps(training[key])[:60]})")
    if training["step"] > 0 and training["partial"]["seen"] == 0:
        raise ModelFileError(f"{path}: corrupt training state (step {training['step']} of an epoch "
                             "with no samples seen)")
    return training
