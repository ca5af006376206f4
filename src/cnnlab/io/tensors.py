"""The safetensors container and a model's tensors in it.

A file holds tensors named "param.<name>" and "buffer.<name>" (in a checkpoint also
"optim.<name>.<slot>") and string metadata, among it "format" (FORMAT: "cnnlab/<FORMAT_VERSION>")
and "sha256": the digest of every tensor's name, dtype, shape and bytes, checked on every read.
Reading never unpickles or evaluates anything: the header is JSON, parsed only once its length
fits the file. Only a regular file is read (never a FIFO or a device), and no more than the size
it declares; every tensor must hold finite numbers, every metadata entry JSON within
cnnlab.io.limits' bounds.

Format versions: FORMAT_VERSION counts incompatible changes to what a file holds. A file of our
version or an older one is read (cnnlab 0.1.0 wrote "cnnlab/1": tests/fixtures/); one of a newer
version ("cnnlab/2", or a "format_version" entry above ours) is refused naming both versions and
saying to upgrade cnnlab; any other "format" is not a cnnlab file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as unpack_safetensors
from safetensors.numpy import save as pack_safetensors

from cnnlab.core import Layer, ModelFileError, walk
from cnnlab.files import atomic_write, read_regular
from cnnlab.io.limits import check_json

#: the version of the file format this cnnlab writes and the newest it reads
FORMAT_VERSION = 1
FORMAT = f"cnnlab/{FORMAT_VERSION}"
#: headers above this are refused before they are parsed (a real one is a few kB)
MAX_HEADER = 16 << 20


def digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def write_file(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """A safetensors file of `tensors` and string `metadata`, with the tensors' SHA-256 added,
    written atomically."""
    data = pack_safetensors({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                            metadata={**metadata, "sha256": digest(tensors)})
    atomic_write(path, data)


def read_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of a cnnlab safetensors file, integrity checked."""
    path = Path(path)
    try:
        raw = read_regular(path)
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
    check_format(metadata, path)
    try:
        tensors = unpack_safetensors(raw)
    except (SafetensorError, ValueError, TypeError, OverflowError) as error:
        raise ModelFileError(f"{path}: corrupt safetensors data ({error})") from None
    except KeyError as error:  # a dtype NumPy lacks (BF16, F8_*): cnnlab never writes one
        raise ModelFileError(f"{path}: unsupported tensor dtype {error}") from None
    if metadata.get("sha256") != digest(tensors):
        raise ModelFileError(f"{path}: the tensors do not match their SHA-256 (corrupted or "
                             "modified file); refusing to use them")
    for name, array in tensors.items():  # NaN/Inf weights or statistics: valid bytes, no model
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            raise ModelFileError(f"{path}: tensor {name} holds {bad:,} non-finite values (NaN or "
                                 "Inf); refusing to use it")
    return tensors, metadata


def check_format(metadata, path) -> int:
    """The format version of a file's metadata (1 ... FORMAT_VERSION); ModelFileError for a
    newer version (naming it, ours, and the fix: upgrade cnnlab) or a file that is not cnnlab's."""
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: metadata is not a string map")
    found = metadata.get("format")
    match = re.fullmatch(r"cnnlab/([1-9][0-9]{0,8})", found) if isinstance(found, str) else None
    if match is None:
        raise ModelFileError(f"{path}: not a cnnlab model file (format {found!r}, expected "
                             f"{FORMAT!r})")
    version, declared = int(match[1]), metadata.get("format_version", match[1])
    if not (isinstance(declared, str) and re.fullmatch(r"[1-9][0-9]{0,8}", declared)):
        raise ModelFileError(f"{path}: format_version {declared!r:.40} is not a version number")
    version = max(version, int(declared))
    if version > FORMAT_VERSION:
        said = found if "format_version" not in metadata else f"{found}, format_version {declared}"
        raise ModelFileError(f"{path}: not a cnnlab model file this cnnlab can read: format version "
                             f"{version} ({said}) is newer than ours (version {FORMAT_VERSION}, "
                             f"{FORMAT}); upgrade cnnlab (pip install --upgrade cnnlab) to load it")
    return version


def meta_json(metadata: dict[str, str], key: str, path, *, finite: bool = True):
    """A metadata entry parsed as JSON ("null" when absent); ModelFileError when it is not JSON,
    or nests too deep, holds too long a list or string, or (with `finite`) a non-finite number
    (check_json)."""
    try:
        value = json.loads(metadata.get(key, "null"))
    except (ValueError, RecursionError):
        raise ModelFileError(f"{path}: metadata {key!r} is not valid JSON") from None
    check_json(value, f"{path}: metadata {key!r}", finite=finite)
    return value


def model_tensors(model: Layer) -> dict[str, np.ndarray]:
    tensors = {f"param.{k}": p.data for k, p in model.parameters().items()}
    tensors.update({f"buffer.{k}": b for k, b in model.buffers().items()})
    return tensors


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
            if layer.rng is not None}


def set_rng_states(model: Layer, states: dict[str, dict]) -> None:
    """Puts rng_states' output back: exactly one state for every layer that owns a Generator, or
    a ModelFileError naming what is missing or extra (a run resumed without a layer's state would
    draw other masks than the uninterrupted run, silently)."""
    owners = {name: layer for name, layer in walk(model) if layer.rng is not None}
    if missing := sorted(set(owners) - set(states)):
        raise ModelFileError(f"no Generator state for {', '.join(missing)}")
    if extra := sorted(set(states) - set(owners)):
        raise ModelFileError(f"Generator states for {', '.join(extra)}, which own no Generator "
                             f"(the model's: {', '.join(owners) or 'none'})")
    for name, layer in owners.items():
        layer.rng.bit_generator.state = states[name]
