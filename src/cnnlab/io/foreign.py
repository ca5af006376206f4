"""Safetensors files cnnlab did not write: torchvision's or timm's weights (a state_dict saved with
safetensors.torch.save_file, or the model.safetensors the Hugging Face hub publishes for timm).

    with ForeignFile(path) as f:
        f.entries            {name: Entry(dtype, shape)}, from the header alone
        f.read(name)         that tensor as float32, read from the file only now

The file is opened once (a regular file only, never a FIFO or a device: files.open_regular) and
its header checked before anything else: its length within the file and MAX_HEADER, its JSON
within cnnlab.io.limits' bounds, every entry a known dtype, a shape of at most MAX_DIMS sizes,
byte offsets inside the data that hold exactly dtype × shape. The caller compares names and
shapes with what it needs before reading a tensor (cnnlab.zoo.weights), so a file cannot make
cnnlab allocate more than the model it is loaded into. Float tensors (F16, BF16, F32, F64) are
read as float32; a tensor holding NaN or Inf is refused. Nothing is unpickled or evaluated.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlab.core import ModelFileError
from cnnlab.files import open_regular
from cnnlab.io.limits import check_json
from cnnlab.io.tensors import MAX_HEADER

#: bytes per element of every safetensors dtype (the header is checked against these)
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
            "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
#: the dtypes read as weights (BF16 is widened by hand: NumPy has no bfloat16)
FLOATS = {"F16": "<f2", "BF16": "<u2", "F32": "<f4", "F64": "<f8"}
#: a tensor with more dimensions than this is no weight of a CNN
MAX_DIMS = 8


class Entry(NamedTuple):
    """One tensor of the header: its dtype ("F32", ...), shape and bytes [start, end) of the data."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


class ForeignFile:
    """A foreign safetensors file, open for reading tensors by name (a context manager)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self._fd, size = open_regular(self.path)
        except OSError as error:
            raise ModelFileError(f"{self.path}: cannot read ({error.strerror or error})") from None
        try:
            self.entries, self._data_start = _header(self._fd, size, self.path)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ForeignFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def read(self, name: str) -> np.ndarray:
        """Tensor `name` as a new float32 array; ModelFileError if it is not a float tensor, the
        file changed under us, or it holds NaN or Inf."""
        entry = self.entries[name]
        if entry.dtype not in FLOATS:
            raise ModelFileError(f"{self.path}: tensor {name} is {entry.dtype}, not a float tensor")
        raw = _pread(self._fd, entry.end - entry.start, self._data_start + entry.start, self.path)
        array = np.frombuffer(raw, FLOATS[entry.dtype])
        if entry.dtype == "BF16":  # bfloat16 is the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        array = array.astype(np.float32).reshape(entry.shape)
        if not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            raise ModelFileError(f"{self.path}: tensor {name} holds {bad:,} non-finite values (NaN "
                                 "or Inf); refusing to use it")
        return array


def _pread(fd: int, n: int, offset: int, path: Path) -> bytes:
    chunks, done = [], 0
    while done < n:
        chunk = os.pread(fd, min(n - done, 1 << 24), offset + done)
        if not chunk:
            raise ModelFileError(f"{path}: the file ended early (changed while being read?)")
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)


def _header(fd: int, size: int, path: Path) -> tuple[dict[str, Entry], int]:
    """The checked entries of the header, and where the data starts."""
    if size < 8:
        raise ModelFileError(f"{path}: not a safetensors file ({size} bytes)")
    (length,) = struct.unpack("<Q", _pread(fd, 8, 0, path))
    if length > min(MAX_HEADER, size - 8):
        raise ModelFileError(f"{path}: not a safetensors file (header length {length} is impossible "
                             f"for a {size}-byte file)")
    try:
        header = json.loads(_pread(fd, length, 8, path))
    except (ValueError, RecursionError):
        raise ModelFileError(f"{path}: not a safetensors file (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a safetensors file (the header is not a JSON object)")
    check_json(header, f"{path}: header")
    header.pop("__metadata__", None)
    data = size - 8 - length
    return {name: _entry(name, value, data, path) for name, value in header.items()}, 8 + length


def _entry(name: str, value, data: int, path: Path) -> Entry:
    """One header entry, checked: ModelFileError naming the tensor otherwise."""
    bad = f"{path}: not a safetensors file (tensor {name!r:.80}"
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise ModelFileError(f"{bad} needs exactly dtype, shape and data_offsets)")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in ITEMSIZE:
        raise ModelFileError(f"{bad} has the unknown dtype {dtype!r:.20})")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(
            type(d) is int and d >= 0 for d in shape)):
        raise ModelFileError(f"{bad} has the shape {shape!r:.80}: expected at most {MAX_DIMS} "
                             "sizes ≥ 0)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(
            type(d) is int for d in offsets) and 0 <= offsets[0] <= offsets[1] <= data):
        raise ModelFileError(f"{bad} has the data offsets {offsets!r:.80}, outside the "
                             f"{data:,} bytes of data)")
    if offsets[1] - offsets[0] != math.prod(shape) * ITEMSIZE[dtype]:
        raise ModelFileError(f"{bad} holds {offsets[1] - offsets[0]:,} bytes; {dtype} "
                             f"{tuple(shape)} needs {math.prod(shape) * ITEMSIZE[dtype]:,})")
    return Entry(dtype, tuple(shape), offsets[0], offsets[1])
