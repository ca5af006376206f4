"""Download of Fashion-MNIST for users with a network, verified by SHA-256 before it is kept.

The digests are of the decompressed IDX files, so a mirror that recompresses (as Debian's
package does) verifies too. Nothing in cnnlab downloads on its own: `cnnlab.data.download()`
is called by the user, and the tests check only the verification (no test touches the network).
MNIST and CIFAR-10 are not offered: cnnlab does not carry verified digests for them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

from cnnlab.core import DataError
from cnnlab.data.datasets import candidates
from cnnlab.data.idx import _decompress
from cnnlab.files import atomic_write

#: name → (base URL, {file: (SHA-256 of the decompressed file, its size in bytes)})
SOURCES = {
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47_040_016),
            "train-labels-idx1-ubyte.gz": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60_008),
            "t10k-images-idx3-ubyte.gz": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7_840_016),
            "t10k-labels-idx1-ubyte.gz": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10_008),
        },
    ),
}
MAX_DOWNLOAD = 64 << 20  # bytes; the largest file is 26 MB


def verify(data: bytes, name: str, expected: tuple[str, int]) -> None:
    """DataError unless gzip `data` decompresses to exactly the expected size and SHA-256."""
    digest, size = expected
    try:
        raw = _decompress(gzip.open(io.BytesIO(data)))
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{name}: not valid gzip data ({error}); the download is corrupt") from None
    if len(raw) != size or hashlib.sha256(raw).hexdigest() != digest:
        raise DataError(
            f"{name}: SHA-256 mismatch (got {hashlib.sha256(raw).hexdigest()[:16]}…, "
            f"{len(raw):,} bytes; expected {digest[:16]}…, {size:,} bytes). The file was not kept."
        )


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read(MAX_DOWNLOAD + 1)
    if len(data) > MAX_DOWNLOAD:
        raise DataError(f"{url}: larger than {MAX_DOWNLOAD >> 20} MiB, refusing it")
    return data


def download(name: str = "fashion-mnist", root: str | os.PathLike | None = None, *,
             fetch: Callable[[str], bytes] = _fetch) -> Path:
    """Fetches the dataset's files into `root` (default: the cache ~/.cache/cnnlab/<name>, where
    `cl.data.load` looks), verifying each before it is written (atomically). Files already there
    and valid are kept. Returns the folder."""

    if name not in SOURCES:
        raise DataError(f"no verified download for {name!r}; available: {', '.join(SOURCES)}")
    base, files = SOURCES[name]
    folder = Path(root) if root is not None else candidates(name)[-1]
    folder.mkdir(parents=True, exist_ok=True)
    for file, expected in files.items():
        target = folder / file
        if target.exists():
            try:
                verify(target.read_bytes(), str(target), expected)
                continue
            except DataError:
                pass  # a partial or damaged earlier file: fetch it again
        try:
            data = fetch(base + file)
        except OSError as error:
            raise DataError(f"{base + file}: download failed ({error})") from None
        verify(data, base + file, expected)
        atomic_write(target, data)
    return folder
