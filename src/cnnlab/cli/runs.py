"""Run directories: the names of the files `cnnlab train` keeps in one, its config.toml (written
by train, read back by -c, --resume, evaluate and report) and the default folder of a new run.

A --data folder whose path is not UTF-8 (a byte such as b"caf\xe9" in a name; TOML strings must be
Unicode) is recorded as a file: URI, its bytes percent-encoded (data = "file:///photos/caf%E9"),
which reads back as the same path: a TOML file may give a folder either way.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import time
import tomllib
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from cnnlab.cli.common import Failure, UsageError
from cnnlab.data.sources import readable
from cnnlab.files import TEMPORARY, atomic_write

CHECKPOINT = "last.ckpt.safetensors"
CONFIG = "config.toml"  # what a run directory keeps of its options, readable by -c
#: what config.toml leaves out: the run's own folder (-c FILE then starts a new run; --resume
#: finds the folder from the checkpoint)
UNRECORDED = ("out", "resume")
LOCK = ".lock"  # held (flock) by the one cnnlab train writing the folder; holds its pid
URI = "file://"  # a recorded path that is not UTF-8: file:// and its bytes, percent-encoded


@contextlib.contextmanager
def locked_run(out: Path) -> Iterator[None]:
    """Makes the run directory `out` and holds its lock while the block runs: a second cnnlab
    train on the same folder fails at once, naming the holder's pid. The lock is the kernel's
    (flock), so a killed run never leaves it held. Once held, the temporary files of writes that
    were killed (`.NAME.tmpPID-RANDOM`, cnnlab.files) are removed."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC,
                 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise Failure(f"{out} is in use by another cnnlab train (pid {pid}); wait for it or "
                          "choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_stale_temporaries(out)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiting run)


def remove_stale_temporaries(out: Path) -> list[str]:
    """Removes the temporary files that killed writes left in `out` (their writer is gone):
    the names removed."""
    removed = []
    for path in out.iterdir():
        match = re.fullmatch(TEMPORARY, path.name)
        if match and not _alive(int(match["pid"])) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():  # this run has written nothing yet
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def run_dir(model: str) -> Path:
    """runs/<model>-<timestamp>, with -2, -3, ... when that folder exists."""
    stem = Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = stem, 1
    while out.exists():
        n += 1
        out = stem.with_name(f"{stem.name}-{n}")
    return out


def read_config(path: str | Path, actions: dict[str, argparse.Action]) -> dict:
    """The options of a TOML file, keyed and checked like the long flags."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise Failure(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not valid TOML ({error})") from None
    except RecursionError:  # arrays or tables nested thousands deep
        raise UsageError(f"{path}: not valid TOML (nested too deep)") from None
    options = {}
    for key, value in table.items():
        flag = key.replace("_", "-")
        if flag not in actions:
            raise UsageError(f"{path}: unknown key {key!r}; the keys are the long flags of "
                             f"cnnlab train: {', '.join(actions)}")
        action = actions[flag]
        if action.nargs == 0:  # a switch (--sync-batchnorm): true or false
            if not isinstance(value, bool):
                raise UsageError(f"{path}: {key} = {value!r} has the wrong type (true or false)")
            options[flag] = value
            continue
        if flag == "input" and isinstance(value, list):
            value = "x".join(map(str, value))
        if flag == "data" and isinstance(value, str):
            value = from_uri(value)
        if isinstance(value, bool) or not isinstance(value, str | int | float) or (
                action.type is None and not isinstance(value, str)):
            raise UsageError(f"{path}: {key} = {value!r} has the wrong type")
        try:
            value = action.type(str(value)) if action.type else value
        except argparse.ArgumentTypeError as error:
            raise UsageError(f"{path}: {key}: {error}") from None
        if action.choices is not None and value not in action.choices:
            raise UsageError(f"{path}: {key} = {value!r}; expected one of {', '.join(action.choices)}")
        options[flag] = value
    return options


def write_config(path: Path, opts: dict) -> None:
    """The options of a run as TOML, keyed by the long flags, so that `cnnlab train -c FILE`
    trains the same run again, in a new folder (or --out DIR); flags override the file."""
    lines = ["# cnnlab train options of this run; train it again, in a new run folder, with:",
             f"#   cnnlab train -c {readable(str(path))}   (flags override the file: --out DIR, "
             "--epochs N, ...)"]
    for key, value in opts.items():
        if key in UNRECORDED:
            continue
        if isinstance(value, tuple):
            value = "x".join(map(str, value))
        if isinstance(value, str) and readable(value) != value:  # bytes that are not UTF-8
            value = URI + urllib.parse.quote_from_bytes(os.fsencode(value))
        lines.append(f"{key} = {json.dumps(value)}")  # a JSON string or number is valid TOML
    atomic_write(path, ("\n".join(lines) + "\n").encode())


def from_uri(value: str) -> str:
    """A recorded --data: a file: URI as the path it names (its bytes percent-decoded, as the OS
    takes them), anything else as it is."""
    if not value.startswith(URI):
        return value
    return os.fsdecode(urllib.parse.unquote_to_bytes(value[len(URI):]))


def recorded_data(folder: Path) -> str | None:
    """The --data a run was trained on, from FOLDER/config.toml: None when there is no such file
    or it records no data; a Failure naming the file and saying "give --data" when it cannot be
    read, is not valid TOML, or its data is not a string."""
    config = Path(folder) / CONFIG
    if not config.is_file():
        return None
    try:
        with open(config, "rb") as f:
            spec = tomllib.load(f).get("data")
    except OSError as error:
        raise Failure(f"{config}: cannot read ({error.strerror or error}); give --data") from None
    except (ValueError, RecursionError) as error:  # TOMLDecodeError, UnicodeDecodeError: ValueErrors
        raise Failure(f"{config}: not valid TOML ({error}); give --data") from None
    if not isinstance(spec, str | None):
        raise Failure(f"{config}: data = {spec!r} is not a dataset name or folder; give --data")
    return spec if spec is None else from_uri(spec)
