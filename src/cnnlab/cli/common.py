"""What every command shares: the two error kinds and their exit statuses, `say` (stderr), the
one-line form of an error, and the types that check flag values.

Imports nothing from cnnlab but files (the words for a full disk), data.sources' readable
(names that are not UTF-8) and data.augment (--augment's syntax): the other cli modules build
on it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import unicodedata

from cnnlab.data import augment
from cnnlab.data.sources import readable
from cnnlab.files import REASONS


class UsageError(Exception):
    """A bad flag value or config key: one line, exit status 2."""


class Failure(Exception):
    """Something the command cannot do: one line, exit status 1."""


#: under mpiexec, every process but rank 0 keeps quiet (its errors are still said, by main)
QUIET = {"other rank": False}


def say(text: str) -> None:
    """One line to stderr, at once: what the user is told beside the command's output (bytes of
    a name that were not UTF-8 shown as \\xNN)."""
    if not QUIET["other rank"]:
        print(readable(text), file=sys.stderr, flush=True)


#: an ANSI escape sequence: CSI (colours, cursor moves), OSC (titles, links) or a lone ESC pair
ANSI = r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])"


def printable(text: str) -> str:
    """`text` safe to print on a terminal: ANSI escape sequences removed, and every other control
    or format character (a newline, a carriage return, a right-to-left override) shown as its
    escape, e.g. \\x07, and a byte of a name that was not UTF-8 as \\xNN (readable), so that
    even a strict UTF-8 stdout takes it. For names that come from files: class folders, file names."""
    text = re.sub(ANSI, "", readable(text))
    return "".join(ch if unicodedata.category(ch)[0] != "C" else ascii(ch)[1:-1] for ch in text)


def one_line(error: BaseException) -> str:
    """An error's message on one line: an OSError as "FILE: reason"; a multi-line message joined
    with ". " between sentences and "; " between the indented items of a list."""
    if isinstance(error, OSError) and error.strerror:  # never "[Errno 28] ..."
        plain = error.errno in REASONS and error.strerror == os.strerror(error.errno)
        reason = REASONS[error.errno] if plain else error.strerror
        text = f"{error.filename}: {reason}" if error.filename else reason
    else:
        text = str(error) or type(error).__name__
    out, after_item = "", False
    for raw in text.splitlines():  # indented lines are list items: "a; b", then ". Next sentence"
        line, item = raw.strip(), raw[:1].isspace()
        if line:
            sep = "; " if item and after_item else " " if out.endswith((":", ".", ";")) else ". "
            out, after_item = (out + sep if out else "") + line, item
    return printable(out)


# ------------------------------------------------------------------ flag types
def _typed(convert, rule: str, ok):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
        return value

    parse.__name__ = rule  # argparse names the type in its messages
    return parse


positive_int = _typed(int, "an integer ≥ 1", lambda v: v >= 1)
natural = _typed(int, "an integer ≥ 0", lambda v: v >= 0)
positive = _typed(float, "a number > 0", lambda v: 0 < v < float("inf"))
non_negative = _typed(float, "a number ≥ 0", lambda v: 0 <= v < float("inf"))
fraction = _typed(float, "a number in [0, 1)", lambda v: 0 <= v < 1)  # momentum, --val-split


def _shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().replace("×", "x").replace("*", "x").split("x")
    dims = tuple(int(p) for p in parts if p.strip().isdigit())
    if len(dims) != 3 or len(parts) != 3:
        raise ValueError(text)
    return dims


#: what a channel count looks like: grayscale, RGB, RGBA
CHANNELS = (1, 3, 4)


def _volume(order: str, channels_first: bool):
    """The type of a size flag, three integers ≥ 1 in `order`: C×H×W (channels first) where the
    rest of cnnlab reads shapes, H×W×D (depth last) in explain and demo, as the lecture writes.

    A size that looks written in the other order is refused with the fix: the number at the
    channels' wrong end is a channel count (1, 3 or 4), the one at their end is not, and it is
    smaller than the size beside it (3x3x64, a 3×3 map of 64 channels, is taken as written).
    """
    example = "3x32x32" if channels_first else "32x32x3"
    where = "channels first" if channels_first else "depth last"
    plain = _typed(_shape, f"{order} such as {example}", lambda v: min(v) >= 1)

    def parse(text: str) -> tuple[int, int, int]:
        dims = plain(text)
        # (number at the wrong end, its neighbour, number at the channels' end, the fix)
        if channels_first:
            wrong, beside, right, fixed = dims[2], dims[1], dims[0], (dims[2], dims[0], dims[1])
        else:
            wrong, beside, right, fixed = dims[0], dims[1], dims[2], (dims[1], dims[2], dims[0])
        if wrong in CHANNELS and right not in CHANNELS and wrong < beside:
            raise argparse.ArgumentTypeError(
                f"expected {order} ({where}), got {text!r}: did you mean {'x'.join(map(str, fixed))}?")
        return dims

    parse.__name__ = plain.__name__
    return parse


shape_chw = _volume("C×H×W", channels_first=True)
shape_hwd = _volume("H×W×D", channels_first=False)
padding = _typed(lambda t: t if t in ("same", "valid") else int(t), "an integer ≥ 0, same or valid",
                 lambda v: isinstance(v, str) or v >= 0)


def augment_spec(text: str) -> str:
    """--augment: a preset or comma-separated terms (cnnlab.data.augment), checked and written
    with every value explicit, as the run records it."""
    try:
        return augment.canonical(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


augment_spec.__name__ = "augmentation"
