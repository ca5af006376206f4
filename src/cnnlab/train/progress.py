"""Progress bars for work that takes long: training epochs, validation, evaluation, prediction.

tqdm.auto draws a widget in Jupyter and a bar on a terminal; when stderr is neither (a log file,
a pipe, CI), no bar is drawn and the plain epoch lines are all there is. progress=False (the
command's --quiet) silences bars everywhere; progress=True draws them even into a file.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def wanted(progress: bool | None) -> bool:
    """progress as given, or by default: stderr is a terminal, or this runs inside Jupyter."""
    if progress is not None:
        return bool(progress)
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def bar(total: int, desc: str, *, initial: int = 0, unit: str = "img"):
    """A bar over `total` items that disappears when done (the epoch line takes its place)."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=True, leave=False,
                file=sys.stderr, dynamic_ncols=True)


def track(items, total: int, desc: str, *, unit: str, progress: bool | None = None):
    """`items`, with a bar over them when progress is wanted (see `wanted`)."""
    if not wanted(progress):
        return items
    return tqdm(items, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                dynamic_ncols=True)

