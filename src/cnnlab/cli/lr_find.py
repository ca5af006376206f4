"""`cnnlab lr-find`: the learning-rate range test (cl.lr_find) on a zoo model and a dataset, its
curve as a PNG, and the rate it suggests with the rule that chose it (cnnlab.train.RULE).
"""

from __future__ import annotations

import inspect

import cnnlab as cl
from cnnlab.cli.common import Failure, UsageError, printable, say
from cnnlab.cli.train import LR, WEIGHT_DECAY, WITH_MOMENTUM, make_optimizer
from cnnlab.core import volume
from cnnlab.data.sources import Source, default_data
from cnnlab.train.lr_find import RULE, smooth, suggest_lr


def lr_find_options(args) -> dict:
    """The optimizer's options as cnnlab train would take them (its defaults, then the flags);
    the learning rate itself is what the test varies."""
    name = args.optimizer
    if args.momentum is not None and name not in WITH_MOMENTUM:
        raise UsageError(f"--momentum applies to {' and '.join(WITH_MOMENTUM)}, not {name}")
    if args.start >= args.end:
        raise UsageError(f"--start {args.start:g} must be below --end {args.end:g}")
    opts = {"optimizer": name, "lr": LR[name],
            "weight-decay": WEIGHT_DECAY.get(name, 0.0) if args.weight_decay is None else args.weight_decay}
    if name in WITH_MOMENTUM:
        opts["momentum"] = args.momentum if args.momentum is not None else 0.9 if name == "sgd" else 0.0
    return opts


def cmd_lr_find(args) -> int:
    """cnnlab lr-find [--model NAME --data NAME|PATH ...] [--out PNG]: runs the range test,
    writes its curve and prints the suggested learning rate and the rule."""
    opts = lr_find_options(args)
    source = Source(args.data or default_data(report=say), holdout=True,
                    report=lambda text: say(printable(text)))
    default_input = inspect.signature(cl.zoo.MODELS[args.model]).parameters["input_shape"].default
    x, y, names, _ = source.load("train", args.input or default_input)
    if args.input and source.kind != "folder" and tuple(args.input) != x.shape[1:]:
        raise UsageError(f"--input is for image folders; {source.spec} has {volume(x.shape[1:])} "
                         "images (H×W×D)")
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    if len(names) < 2:
        raise Failure(f"{printable(source.spec)} has {len(names)} class(es); a classifier needs two")
    model = cl.zoo.get(args.model, num_classes=len(names), input_shape=x.shape[1:], seed=args.seed)
    optimizer = make_optimizer(model, opts)
    say(f"learning-rate range test: {args.model} on {source.describe()}, {len(y):,} training "
        f"images; lr from {args.start:g} to {args.end:g} over at most {args.steps} steps of batch "
        f"{args.batch_size}, {type(optimizer).__name__}")
    lrs, losses = cl.lr_find(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=optimizer,
                             start=args.start, end=args.end, steps=args.steps,
                             batch_size=args.batch_size, seed=args.seed)
    if len(losses) < 2:
        raise Failure(f"the loss diverged within {len(losses) + 1} step(s), at lr {args.start:g}: "
                      "give a smaller --start")
    suggestion, best = suggest_lr(lrs, losses)
    cl.viz.lr_curve(lrs, losses, path=args.out)
    stopped = ("the loss passed 4× its lowest value" if len(losses) < args.steps
               else "the last step was reached")
    print(f"{len(losses)} steps, lr {lrs[0]:.3g} to {lrs[-1]:.3g} ({stopped}); the smoothed loss "
          f"is lowest, {smooth(losses)[best]:.4f}, at lr {lrs[best]:.3g}")
    print(f"suggested learning rate: {suggestion:.3g}")
    print(f"rule: {RULE}")
    if best == 0:
        say("cnnlab: warning: the smoothed loss never fell below its first value; try a smaller "
            "--start or check the data")
    elif best == len(losses) - 1:
        say("cnnlab: warning: the loss was still falling at the last step; try a larger --end")
    print(f"plot: {printable(str(args.out))}")
    return 0
