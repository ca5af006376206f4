"""Pretrained weights on the command line: `cnnlab convert` (a torchvision or timm state_dict in
safetensors → a cnnlab model file for evaluate and predict) and `train --weights` (a new run's
model initialised from such a file: `initialise`).
"""

from __future__ import annotations

from pathlib import Path

import cnnlab as cl
from cnnlab.cli.common import Failure, UsageError, printable, say
from cnnlab.cli.info import _check_limits
from cnnlab.core import volume
from cnnlab.files import read_regular

#: a class-name file larger than this is no list of class names
MAX_CLASSES_FILE = 16 << 20


def check_model(name: str) -> None:
    """--weights with a --model that has no pretrained-weight layout: a UsageError."""
    if name not in cl.zoo.LAYOUTS:
        raise UsageError(f"--weights loads into {', '.join(sorted(cl.zoo.LAYOUTS))}; "
                         f"not --model {name}")


def initialise(model, name: str, path: str) -> None:
    """`cnnlab train --weights PATH`: the new --model `name` (built for the data) takes the file's
    weights and the published weights' mean and std (cl.zoo.pretrained). When the data has
    another number of classes than the file's classifier, the body takes the file's weights and
    the head (built for the data's classes) starts at zero, as stderr says: pretrained features
    are large, and a random head on them starts far above the loss of guessing."""
    check_model(name)
    names = model.class_names
    try:
        cl.zoo.pretrained(model, name, path)
    except cl.zoo.HeadMismatch as error:
        cl.zoo.pretrained(model, name, path, head=False)
        head = model.layers[model.head_index()]
        for parameter in head.parameters().values():  # every class scores 0 at first: loss ln C
            parameter.data[...] = 0
        say(printable(f"new head {head.name}: Dense({error.model_classes}) for the data's classes "
                      f"(--weights {path} has {error.file_classes}), starting at zero (every class "
                      "scores 0, the loss ln C); the body takes the file's weights"))
    # ImageNet's mean and std, and the resize rule train reads its images by (stretch), so
    # that evaluate and predict read images as the run was trained and tested on them
    model.preprocess.resize = "stretch"
    model.class_names = names


def cmd_convert(args) -> int:
    """cnnlab convert WEIGHTS --model NAME --out FILE [--classes imagenet|FILE] [--input CxHxW]
    [--resize N]: a cnnlab model file with the weights, preprocessing and class names."""
    name = args.model
    classes = cl.zoo.head_classes(args.weights, name)
    names = _class_names(args.classes, classes)
    kwargs = {"num_classes": classes, **({"input_shape": args.input} if args.input else {})}
    _check_limits(name, kwargs)
    model = cl.zoo.get(name, **kwargs, weights=args.weights)
    if args.resize is not None:
        if args.resize < min(model.input_shape[1:]):
            raise UsageError(f"--resize {args.resize} is smaller than the {volume(model.input_shape)} "
                             "input (H×W×D): the centre crop needs the shorter side at least as long")
        model.preprocess = cl.zoo.imagenet_preprocess(name, model.input_shape, args.resize)
    model.class_names = names
    cl.save(model, args.out)
    p = model.preprocess
    what = ("no names: give --classes FILE" if names is None else "ImageNet's"
            if names == cl.zoo.imagenet_classes() else f"names from {args.classes}")
    say(f"{printable(str(args.out))}: {name} ({model.count_params():,} parameters) from "
        f"{printable(str(args.weights))}; {classes} classes ({printable(what)}); input "
        f"{volume(model.input_shape)} (H×W×D); preprocessing: mean {_rounded(p.mean)}, std "
        f"{_rounded(p.std)}, {p.resize} (shorter side, then the centre crop)")
    return 0


def _rounded(values) -> list[float]:
    return [round(float(v), 3) for v in values]


def _class_names(spec: str | None, classes: int) -> list[str] | None:
    """The class names --classes asks for: "imagenet", a text file (one name a line), or by
    default ImageNet's for a 1,000-class head and none otherwise."""
    if spec is None:
        return cl.zoo.imagenet_classes() if classes == 1000 else None
    if spec == "imagenet":
        names = cl.zoo.imagenet_classes()
    else:
        try:
            text = read_regular(spec, MAX_CLASSES_FILE).decode("utf-8")
        except UnicodeDecodeError:
            raise Failure(f"--classes {printable(spec)}: not UTF-8 text") from None
        except OSError as error:
            raise Failure(f"--classes {printable(spec)}: cannot read ({error.strerror or error})") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != classes:
        raise Failure(f"--classes {printable(str(Path(spec)))} gives {len(names)} class names; the "
                      f"weights' classifier has {classes} classes")
    return names
