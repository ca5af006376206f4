"""IDX files (MNIST, Fashion-MNIST), raw, gzip- or xz-compressed.

Layout: a 4-byte magic number 0x00 0x00 <type> <ndim>, then ndim big-endian uint32 sizes,
then the values. Images are type 0x08 (uint8), ndim 3 (N, rows, columns); labels ndim 1.
Every field is checked against the file's length before anything is allocated.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import zlib
from pathlib import Path

import numpy as np

from cnnlab.core import DataError
from cnnlab.files import atomic_write

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: no real IDX file is larger; a header claiming more is corrupt (and must not allocate it)
_MAX_BYTES = 1 << 31


def read_idx(path: str | os.PathLike, *, expect_ndim: int | None = None) -> np.ndarray:
    """The array stored in an IDX file; DataError naming the file if it is not a valid one."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    for magic, opener, kind in ((b"\x1f\x8b", gzip.open, "gzip"), (b"\xfd7zXZ", lzma.open, "xz")):
        if raw.startswith(magic):
            try:
                raw = _decompress(opener(io.BytesIO(raw)))
            except (OSError, EOFError, zlib.error, lzma.LZMAError) as error:
                raise DataError(f"{path}: corrupt or truncated {kind} data ({error})") from None
    return parse_idx(raw, str(path), expect_ndim=expect_ndim)


def _decompress(stream) -> bytes:
    # in bounded pieces: a decompression bomb stops at _MAX_BYTES instead of filling memory
    out = bytearray()
    while chunk := stream.read(1 << 22):
        out += chunk
        if len(out) > _MAX_BYTES:
            raise OSError(f"decompresses to more than {_MAX_BYTES >> 20} MiB")
    return bytes(out)


def parse_idx(raw: bytes, name: str = "<bytes>", *, expect_ndim: int | None = None) -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name}: not an IDX file (expected magic 00 00 <type> <ndim>, "
                        f"found {raw[:4].hex(' ') or 'an empty file'})")
    dtype, ndim = _TYPES.get(raw[2]), raw[3]
    if dtype is None:
        raise DataError(f"{name}: unknown IDX value type 0x{raw[2]:02x}")
    if ndim == 0 or (expect_ndim is not None and ndim != expect_ndim):
        raise DataError(f"{name}: IDX file has {ndim} dimensions, expected {expect_ndim or '≥ 1'}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    itemsize = np.dtype(dtype).itemsize
    size = int(np.prod(shape, dtype=object)) * itemsize
    if size > _MAX_BYTES:
        raise DataError(f"{name}: IDX header claims shape {shape}, too large to be real")
    if len(raw) != header + size:
        what = "truncated" if len(raw) < header + size else "has trailing bytes"
        raise DataError(
            f"{name}: {what}: header says shape {shape} ({header + size:,} bytes), "
            f"file has {len(raw):,} bytes"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(
        np.dtype(dtype).newbyteorder("="), copy=True
    )


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes uint8 arrays as IDX (compressed when the name ends in .gz or .xz)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx: only uint8 arrays are written. Received: dtype={array.dtype}")
    data = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    elif path.suffix == ".xz":
        data = lzma.compress(data, preset=9)

    atomic_write(path, data)


def load_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 28, 28) uint8 images and (N,) int64 labels; their counts must agree."""
    x = read_idx(images, expect_ndim=3)
    y = read_idx(labels, expect_ndim=1)
    if x.dtype != np.uint8 or y.dtype != np.uint8:
        raise DataError(f"{images}: expected uint8 images and labels")
    if len(x) != len(y):
        raise DataError(f"{images}: {len(x)} images but {labels.name} has {len(y)} labels")
    return x[:, None], y.astype(np.int64)
