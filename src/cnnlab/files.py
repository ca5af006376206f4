"""Files written whole or not at all.

`atomic_write` is the one way cnnlab writes a file (model files, checkpoints, metrics.csv,
config.toml, reports, figures, downloaded datasets): a temporary file in the same folder, all
bytes written and fsync'd, os.replace onto the target, then the folder fsync'd. A crash, a
kill -9 or a full disk leaves the previous file intact, and at worst a `.NAME.tmpPID-RANDOM` beside
it (`cnnlab train` removes those of its run folder when a run starts).
`read_regular` is the safe way to read a file cnnlab is given (model files, images): regular files
only, never more than their declared size; `open_regular` opens one the same way for reading in
parts (a foreign weights file, tensor by tensor). Imports nothing of cnnlab: every part may import it.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Writes all of `data` to `path` or nothing: a crash or a full disk leaves the old file
    intact. The temporary file is created anew (O_EXCL, O_NOFOLLOW) under an unpredictable name,
    so nothing planted beside the target (a symlink) is ever written through. An OSError names
    the file, says why in words ("the disk is full") and that the previous one is unchanged."""
    path = Path(path)
    tmp, fd = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:  # Ctrl-C too: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        if not isinstance(error, OSError):
            raise
        raise OSError(error.errno, f"could not write {path}: {_reason(error)}; "
                                   "the previous file, if any, is unchanged") from None
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temporary(path: Path) -> tuple[Path, int]:
    """(the temporary file's path, its descriptor, open for writing): a name never used before,
    created by this call; an OSError like atomic_write's when the folder refuses it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(
        os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.with_name(temporary_name(path) + secrets.token_hex(4))
        try:
            return tmp, os.open(tmp, flags, 0o666)  # 0o666 & ~umask, as open() would
        except FileExistsError:
            continue
        except OSError as error:
            raise OSError(error.errno, f"could not write {path}: {_reason(error)}; "
                                       "the previous file, if any, is unchanged") from None
    raise OSError(errno.EEXIST, f"could not write {path}: no free temporary name beside it; "
                                "the previous file, if any, is unchanged")


def _reason(error: OSError) -> str:
    """Why a write failed, in words: "the disk is full" rather than "[Errno 28] ..."."""
    return REASONS.get(error.errno) or error.strerror or str(error)


#: reasons said in words where the C library's are terse
REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}


def temporary_name(path: Path) -> str:
    """The start of the name under which atomic_write puts `path`'s bytes before the rename:
    hidden, in the same folder (so os.replace never crosses a file system), with this process's
    id; atomic_write appends 8 random hex digits: `.NAME.tmpPID-1f2e3d4c` (TEMPORARY matches it).
    """
    return f".{path.name}.tmp{os.getpid()}-"


#: a name temporary_name made: the target's name and the writer's process id
TEMPORARY = r"\.(?P<name>.+)\.tmp(?P<pid>\d+)-[0-9a-f]{8}"  # a pattern for re.fullmatch


def open_regular(path: str | os.PathLike, max_bytes: int | None = None) -> tuple[int, int]:
    """(a read-only descriptor, the size) of the regular file at `path`, for reading parts of it
    (a foreign safetensors file's tensors one by one); the caller closes the descriptor. Refused as
    read_regular refuses: IsADirectoryError, EINVAL "not a regular file (...)", EFBIG."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(info.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device"
                    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a special file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
        if max_bytes is not None and info.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"{info.st_size:,} bytes, more than the {max_bytes:,} "
                                       "allowed", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_regular(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file at `path`: never more than the size it declares (nor
    `max_bytes`), so a FIFO cannot block (it is opened with O_NONBLOCK and refused), and a device
    such as /dev/zero, or a link to one, cannot be read until memory runs out. OSError otherwise:
    IsADirectoryError for a folder, EINVAL "not a regular file (...)", EFBIG above `max_bytes`."""
    fd, left = open_regular(path, max_bytes)
    try:
        chunks = []
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 24))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
