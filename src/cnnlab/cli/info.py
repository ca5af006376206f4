"""Commands that read no data: `cnnlab summary` (a model's layers and their arithmetic),
`cnnlab explain` (the lecture's worked answer for one layer) and `cnnlab zoo`.
"""

from __future__ import annotations

import os
from pathlib import Path

import cnnlab as cl
from cnnlab import shapes
from cnnlab.cli.common import UsageError
from cnnlab.core import volume

#: explain's flags, as the fixes a misfit suggests name them ("Use --pad 1, --stride 1 or 2, …");
#: fit="floor" has no flag there, so it is said in words (cnnlab.shapes, reached through `cl`)
EXPLAIN_NAMES = shapes.Names(
    padding="--pad {}", padding_at_most="--pad ≤ {}", stride="--stride {}", one_value=True,
    floor='drop the leftover rows and columns as PyTorch does (fit="floor" in Python)')


def cmd_summary(args) -> int:
    """cnnlab summary ARCH|MODEL [--input CxHxW --classes N]: a header line saying what the table
    is of (classes, input), then the table. A zoo name without flags gets the builder's own
    defaults: 1000 classes for the ImageNet models, 10 for the small ones."""
    arch = args.arch
    if Path(arch).exists() or arch.endswith(".safetensors") or os.sep in arch:
        if args.input or args.classes:
            raise UsageError("--input and --classes are for zoo names; a model file has its own")
        model = cl.load(arch)
        print(f"{arch}: {_what(model)}")
        print(model.summary())
        if model.class_names:
            print(f"Classes: {', '.join(model.class_names)}")
        return 0
    name = arch.replace("_", "-").lower()
    if name not in cl.zoo.MODELS:
        raise UsageError(f"unknown model {arch!r}: not a file, nor one of the zoo's "
                         f"{', '.join(cl.zoo.names())}")
    kwargs = {}
    if args.classes:
        kwargs["num_classes"] = args.classes
    if args.input:
        kwargs["input_shape"] = args.input
    _check_limits(name, kwargs)
    model = cl.zoo.get(name, **kwargs)
    print(f"{name}: {_what(model)}; --classes N and --input CxHxW change them")
    print(model.summary())
    return 0


def _check_limits(name: str, kwargs: dict) -> None:
    """Refuses, before a weight is allocated, a zoo model whose --input or --classes ask for more
    parameters or activations than cl.io.Limits (CNNLAB_LIMITS raises them): the model files'
    limits, counted from the shapes alone."""
    shape = cl.zoo.count(name, **kwargs).input_shape  # ShapeError, as building would
    need = cl.io.footprint([cl.zoo.get(name, **kwargs, build=False)], shape)
    cl.io.check_footprint(need, cl.io.Limits.from_environment(),
                          f"{name} at input {'x'.join(map(str, shape))}")


def _what(model: cl.Sequential) -> str:
    """ "1000 classes, input 3x224x224 (C×H×W)": the numbers the parameter count depends on."""
    out = model.out_shape
    scores = f"{out[0]} classes" if len(out) == 1 else f"output {volume(out)} (H×W×D)"
    return f"{scores}, input {'x'.join(map(str, model.input_shape))} (C×H×W)"


def cmd_explain(args) -> int:
    """cnnlab explain conv|pool --input HxWxD ...: exit status 0 whenever it explains, a misfit too."""
    h, w, d = args.input
    try:
        if args.layer == "conv":
            layer = cl.Conv2D(args.filters, args.size, args.stride, args.pad, bias=not args.no_bias,
                              dilation=args.dilation, groups=args.groups)
        else:
            pool = cl.AvgPool2D if args.avg else cl.MaxPool2D
            layer = pool(args.size, args.stride, args.pad)
    except ValueError as error:
        raise UsageError(str(error)) from None
    with shapes.hints_named(EXPLAIN_NAMES):  # a misfit's fixes name explain's flags
        print(layer.explain((d, h, w)))
    return 0


def cmd_zoo(args) -> int:
    """The zoo from the shapes alone (cl.zoo.count: no weights allocated), small models first,
    then the ImageNet winners in the order of their years."""

    def short(macs: int) -> str:
        return f"{macs / 1e9:.2f} G" if macs >= 1e8 else f"{macs / 1e6:.1f} M"

    header = ("model", "params", "MACs", "input", "top-5", "about")
    rows = []
    for name, builder in cl.zoo.MODELS.items():
        counts = cl.zoo.count(name)
        top5 = cl.zoo.PAPER_TOP5.get(name)
        about = " ".join((builder.__doc__ or "").split()).split(": ")[0]
        rows.append((name, f"{counts.params:,}", short(counts.macs), volume(counts.input_shape),
                     "—" if top5 is None else f"{top5[0]:.{1 if top5[0] * 10 % 1 == 0 else 2}f}%",
                     about if len(about) <= 64 else about[:63] + "…"))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  "
              f"{row[3]:<{widths[3]}}  {row[4]:>{widths[4]}}  {row[5]}")
    print("\nMACs: multiply-adds per image (forward). top-5: the ImageNet top-5 error the model's "
          "paper reported (protocols differ; see docs/imagenet.md); — for models not from an "
          "ImageNet paper or without a top-5 figure.")
    return 0
