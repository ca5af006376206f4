"""Files written whole or not at all.

`atomic_write` is the one way cnnlab writes a file (model files, checkpoints, metrics.csv,
config.toml, reports, figures, downloaded datasets): a temporary file in the same folder, all
bytes written and fsync'd, os.replace onto the target, then the folder fsync'd. A crash, a
kill -9 or a full disk leaves the previous file intact, and at worst a `.NAME.tmpPID` beside it.
Imports nothing of cnnlab: every part may import it.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Writes all of `data` to `path` or nothing: a crash or a full disk leaves the old file
    intact. An OSError names the file and says that the previous one is unchanged."""
    path = Path(path)
    tmp = temporary_name(path)
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


def temporary_name(path: Path) -> Path:
    """Where atomic_write puts `path`'s bytes before the rename: hidden, in the same folder (so
    os.replace never crosses a file system), one per process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")
