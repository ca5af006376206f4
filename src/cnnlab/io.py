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
Writes are atomic: a temporary file in the same folder, fsync, os.replace, fsync the folder.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import struct
from pathlib import Path

import numpy as np

from cnnlab import layers as layer_module
from cnnlab.core import Layer, ModelFileError, walk
from cnnlab.layers.containers import Sequential

FORMAT = "cnnlab/1"
#: headers above this are refused before they are parsed (a real one is a few kB)
MAX_HEADER = 16 << 20


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


def _make_layer(spec, where: str, registry: dict[str, type[Layer]]) -> Layer:
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
        return Sequential([_make_layer(s, f"{where}.layers[{i}]", registry)
                           for i, s in enumerate(inner)])
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    if unknown := sorted(set(args) - allowed):
        raise ModelFileError(f"{where}: {kind} takes no argument {', '.join(unknown)}")
    for key, value in args.items():
        if not _plain(value):
            raise ModelFileError(f"{where}: {kind} argument {key}={value!r} is not a plain value")
    try:
        return cls(**args)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{where}: cannot create {kind}: {error}") from None


def _plain(value) -> bool:
    if isinstance(value, list):
        return len(value) <= 8 and all(_plain(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def from_architecture(arch) -> Sequential:
    """Rebuilds (and builds) the model an architecture dict describes."""
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
        return Sequential(built, input_shape=tuple(shape), dtype=dtype)
    except ValueError as error:
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


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Writes all of `data` or nothing: a crash or a full disk leaves the old file intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
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
    except (ValueError, AttributeError):
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
    if metadata.get("sha256") != digest(tensors):
        raise ModelFileError(f"{path}: the tensors do not match their SHA-256 (corrupted or "
                             "modified file); refusing to use them")
    return tensors, metadata


def _meta_json(metadata: dict[str, str], key: str, path):
    try:
        return json.loads(metadata.get(key, "null"))
    except ValueError:
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

    model = from_architecture(_meta_json(metadata, "architecture", path))
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
