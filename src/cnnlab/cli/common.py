"""What every command shares: the two error kinds and their exit statuses, `say` (stderr), the
one-line form of an error, and the types that check flag values.

Imports nothing from cnnlab: the other cli modules build on it.
"""

from __future__ import annotations

import argparse
import sys


class UsageError(Exception):
    """A bad flag value or config key: one line, exit status 2."""


class Failure(Exception):
    """Something the command cannot do: one line, exit status 1."""


def say(text: str) -> None:
    """One line to stderr, at once: what the user is told beside the command's output."""
    print(text, file=sys.stderr, flush=True)


def one_line(error: BaseException) -> str:
    """An error's message on one line: an OSError as "FILE: reason"; a multi-line message joined
    with ". " between sentences and "; " between the indented items of a list."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    out, after_item = "", False
    for raw in text.splitlines():  # indented lines are list items: "a; b", then ". Next sentence"
        line, item = raw.strip(), raw[:1].isspace()
        if line:
            sep = "; " if item and after_item else " " if out.endswith((":", ".", ";")) else ". "
            out, after_item = (out + sep if out else "") + line, item
    return out


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


shape_chw = _typed(_shape, "C×H×W such as 3x32x32", lambda v: min(v) >= 1)
shape_hwd = _typed(_shape, "H×W×D such as 32x32x3", lambda v: min(v) >= 1)
padding = _typed(lambda t: t if t in ("same", "valid") else int(t), "an integer ≥ 0, same or valid",
                 lambda v: isinstance(v, str) or v >= 0)
