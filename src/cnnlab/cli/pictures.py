"""Commands that draw: `cnnlab report` (a run's HTML report) and `cnnlab demo` (the lecture's
convolution demo: its numbers in the terminal, an HTML page and a GIF). cl.viz loads matplotlib
only when first used.
"""

from __future__ import annotations

from pathlib import Path

import cnnlab as cl
from cnnlab.cli.common import Failure, say
from cnnlab.cli.runs import CHECKPOINT, recorded_data
from cnnlab.data.sources import Source, default_data


def cmd_report(args) -> int:
    """cnnlab report RUN_DIR [--data NAME|PATH]: writes RUN_DIR/report.html and prints its path.
    Without --data: the data recorded in the run's config.toml, else the default data."""
    run = Path(args.run_dir)
    if not run.is_dir():
        raise Failure(f"{run}: no such run directory (a folder written by cnnlab train)")
    found = [run / name for name in ("model.safetensors", CHECKPOINT) if (run / name).is_file()]
    if not found:  # an interrupted run has only its checkpoint
        raise Failure(f"{run}: neither model.safetensors nor {CHECKPOINT}; is it a run directory?")
    model = cl.load(found[0])
    source = Source(args.data or recorded_data(run) or default_data(report=say), holdout=True,
                    report=say)
    x, y, classes, what = source.load_for(model, "test", found[0])
    path = cl.viz.report(run, model, x, y, classes, data=f"{source.describe()}, {what} split")
    print(path)
    return 0


def cmd_demo(args) -> int:
    """cnnlab demo conv [--input HxWxD --filters K --size F --stride S --pad P --seed N] [--out DIR]:
    prints the volumes' numbers (input, filters, biases, output) as the lecture's slide shows
    them; with --out, also writes DIR/demo.html and DIR/demo.gif and prints their paths."""
    shown = cl.viz.conv_demo(args.input, args.filters, args.size, args.stride, args.pad,
                             seed=args.seed)
    say(shown.title())
    print(shown.to_text())
    if args.out is not None:
        for path in shown.save(args.out, progress=False if args.quiet else None)[::-1]:
            print(path)
    return 0
