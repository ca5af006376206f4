"""The bodies of `cnnlab report` and `cnnlab demo` (cli.py keeps their parsers and thin wrappers)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import cnnlab as cl
from cnnlab.cli import CHECKPOINT, CONFIG, Failure, Source, default_data, say


def _recorded_data(run: Path) -> str | None:
    """The --data a run was trained on, from its config.toml (None when absent or unreadable)."""
    try:
        with open(run / CONFIG, "rb") as f:
            spec = tomllib.load(f).get("data")
    except (OSError, ValueError, RecursionError):  # ValueError: TOML or UTF-8 errors
        return None
    return spec if isinstance(spec, str) else None


def report(args) -> int:
    """cnnlab report RUN_DIR [--data NAME|PATH]: writes RUN_DIR/report.html."""
    run = Path(args.run_dir)
    if not run.is_dir():
        raise Failure(f"{run}: no such run directory (a folder written by cnnlab train)")
    found = [run / name for name in ("model.safetensors", CHECKPOINT) if (run / name).is_file()]
    if not found:  # an interrupted run has only its checkpoint
        raise Failure(f"{run}: neither model.safetensors nor {CHECKPOINT}; is it a run directory?")
    model = cl.load(found[0])
    source = Source(args.data or _recorded_data(run) or default_data(), holdout=True)
    x, y, classes, what = source.load_for(model, "test", found[0])
    path = cl.viz.report(run, model, x, y, classes, data=f"{source.describe()}, {what} split")
    print(path)
    return 0


def demo(args) -> int:
    """cnnlab demo conv [--input HxWxD --filters K --size F --stride S --pad P --seed N] --out DIR."""
    shown = cl.viz.conv_demo(args.input, args.filters, args.size, args.stride, args.pad,
                             seed=args.seed)
    say(shown.title())
    for path in shown.save(args.out)[::-1]:
        print(path)
    return 0
