"""The `cnnlab` command (also `python -m cnnlab`): train, evaluate, predict, summary, explain, zoo,
report, demo.

Exit status: 0 success; 2 usage error (a bad flag, flag value or config key); 1 failure (a
missing or corrupt file, a data or shape error, training that diverged), reported as one line
`cnnlab: error: ...` on stderr, with the traceback only under --debug.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
import tomllib
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import cnnlab as cl
from cnnlab.core import volume
from cnnlab.data import datasets, transforms
from cnnlab.data.folder import class_folders, load_folder, read_image
from cnnlab.metrics import format_confusion

#: the default recipe: about 11 s an epoch on the bundled set on 2 cores (see the README)
RECIPE = {"model": "fmnist-cnn", "epochs": 5, "batch-size": 128, "optimizer": "sgd",
          "schedule": "cosine", "augment": "none", "seed": 0}
LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 0.01}
WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 1e-2}
WITH_MOMENTUM = ("sgd", "rmsprop")
AUGMENT = ("none", "flip-crop", "flip-crop-erase")
SCHEDULES = ("constant", "cosine", "step", "onecycle")
CHECKPOINT = "last.ckpt.safetensors"
CONFIG = "config.toml"  # what a run directory keeps of its options, readable by -c


class UsageError(Exception):
    """A bad flag value or config key: one line, exit status 2."""


class Failure(Exception):
    """Something the command cannot do: one line, exit status 1."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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
momentum_value = _typed(float, "a number in [0, 1)", lambda v: 0 <= v < 1)


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


# ---------------------------------------------------------------------- data
class Source:
    """Where images come from: a named dataset, an IDX or CIFAR folder, or an image folder."""

    def __init__(self, spec: str, *, holdout: bool) -> None:
        self.spec, self.holdout, self.kind, self.root = spec, holdout, spec, None
        self.classes: list[str] | None = None
        self._decoded: dict = {}  # an image folder is decoded once for both splits
        if spec in datasets.DATASETS:
            self.classes, self.stored = cl.data.class_names(spec), spec
            return
        path = Path(spec)
        if not path.is_dir():
            raise cl.DataError(f"{spec!r} is neither a dataset ({', '.join(datasets.DATASETS)}) nor "
                               "a folder" + (" (it is a file)" if path.exists() else ""))
        self.root, self.stored = path, str(path.resolve())
        if any(path.glob("*-idx[13]-ubyte*")):
            self.kind = "fashion-mnist" if "fashion" in str(path.resolve()).lower() else "mnist"
            self.classes = cl.data.class_names(self.kind)
            say(f"{spec}: IDX files, read as {self.kind} (by the folder's name) with classes "
                f"{', '.join(self.classes[:3])}, ...")
        elif any(path.glob("*_batch*.bin")):
            self.kind, self.classes = "cifar10", cl.data.class_names("cifar10")
        else:
            self.kind = "folder"

    def describe(self) -> str:
        if self.spec == datasets.DEFAULT:
            return f"{self.spec} (the bundled subset of Fashion-MNIST)"
        return self.spec

    def load(self, split: str, input_shape=None) -> tuple[np.ndarray, np.ndarray, list[str], str]:
        """(x, y, class names, what the images are: "test", "held-out", ...)."""
        if self.kind != "folder":
            x, y = cl.data.load(self.kind, split, root=self.root)
            return x, y, list(self.classes), split
        root, what, layout = self.root, split, (self.root / "train").is_dir()
        if layout:  # root/train/<class>/..., root/test/<class>/...
            names = ("train",) if split == "train" else (split, "test", "val", "validation")
            root = next((self.root / n for n in names if (self.root / n).is_dir()), None)
            if root is None:
                raise cl.DataError(f"{self.root}: no {split}/ folder beside train/")
        if (root, tuple(input_shape)) not in self._decoded:
            self._decoded[root, tuple(input_shape)] = load_folder(root, input_shape, report=say)
        x, y, classes = self._decoded[root, tuple(input_shape)]
        if layout and split != "train":
            train_classes = [p.name for p in class_folders(self.root / "train")]
            y, classes = _remap(y, classes, train_classes, root), train_classes
        elif not layout and self.holdout:  # one image in 10 of each class is held out for testing
            rank = np.arange(len(y)) - np.searchsorted(y, y)  # files come grouped by class
            keep = (rank % 10 == 9) == (split != "train")
            x, y, what = x[keep], y[keep], ("training" if split == "train" else "held-out")
            if len(y) == 0:
                raise cl.DataError(f"{self.root}: too few images to hold out one in ten for testing; "
                                   "give it train/ and test/ subfolders")
        elif not layout:
            what = "all"
        return x, y, classes, what


    def load_for(self, model, split: str, label) -> tuple[np.ndarray, np.ndarray, list[str], str]:
        """load() for a trained model: (x, y, the model's class names, what), with labels mapped
        to the model's classes; Failure naming `label` (the model file) when shapes or classes
        do not match."""
        x, y, names, what = self.load(split, model.input_shape)
        if x.shape[1:] != model.input_shape:
            raise Failure(f"{label} takes {volume(model.input_shape)} inputs (H×W×D); "
                          f"{self.spec} has {volume(x.shape[1:])} images")
        classes = model.class_names or names
        if self.kind == "folder" and model.class_names:
            y = _remap(y, names, model.class_names, self.spec)
        if len(classes) != model.out_shape[-1] or y.max() >= len(classes):
            raise Failure(f"{label} has {model.out_shape[-1]} classes; {self.spec} has labels up "
                          f"to {y.max()}")
        return x, y, classes, what

def _remap(y: np.ndarray, names: list[str], target: list[str], where) -> np.ndarray:
    """Labels by class name: y indexes `names` (folder names), the result indexes `target`.
    Names match ignoring case and punctuation: a folder T-shirt_top is the class T-shirt/top."""
    def key(name: str) -> str:
        return "".join(ch for ch in name.lower() if ch.isalnum())

    index = {key(n): i for i, n in enumerate(target)}
    if missing := [n for n in names if key(n) not in index]:
        raise cl.DataError(f"{where}: class folder(s) {', '.join(missing[:5])} are not among the "
                           f"model's classes ({', '.join(target[:10])})")
    return np.array([index[key(n)] for n in names], np.int64)[y]


def default_data() -> str:
    if cl.data.is_available("fashion-mnist"):
        files = cl.data.locate("fashion-mnist", "train")
        say(f"data: Fashion-MNIST, the full set, from {files[0].parent}")
        return "fashion-mnist"
    say(f"data: {datasets.DEFAULT}, the bundled subset of Fashion-MNIST (10,000 training and "
        "2,000 test images); for the full set: sudo apt-get install dataset-fashion-mnist")
    return datasets.DEFAULT


# --------------------------------------------------------------------- train
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
        if flag == "input" and isinstance(value, list):
            value = "x".join(map(str, value))
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


def train_options(args) -> tuple[dict, Path | None]:
    """Recipe < the resumed run's config.toml < -c FILE < explicit flags; and the checkpoint."""
    explicit = {k: getattr(args, a.dest) for k, a in args.actions.items()
                if getattr(args, a.dest) is not None}
    config = read_config(args.config, args.actions) if args.config else {}
    resume = explicit.get("resume", config.get("resume"))
    base, checkpoint = {}, None
    if resume is not None:
        checkpoint = Path(resume) / CHECKPOINT if Path(resume).is_dir() else Path(resume)
        if not checkpoint.is_file():
            raise Failure(f"{resume}: no checkpoint to resume ({checkpoint} does not exist)")
        if (checkpoint.parent / CONFIG).is_file():
            base = read_config(checkpoint.parent / CONFIG, args.actions)
        base["out"] = str(checkpoint.parent)
    chosen = {**config, **explicit}
    opts = {**RECIPE, **base, **chosen}
    name = opts["optimizer"]
    if "momentum" in chosen and name not in WITH_MOMENTUM:
        raise UsageError(f"--momentum applies to {' and '.join(WITH_MOMENTUM)}, not {name}")
    if name == "sgd":
        opts.setdefault("momentum", 0.9)
    elif name not in WITH_MOMENTUM:
        opts.pop("momentum", None)
    opts.setdefault("lr", LR[name])
    opts.setdefault("weight-decay", WEIGHT_DECAY.get(name, 0.0))
    opts.pop("resume", None)
    return opts, checkpoint


def make_optimizer(model, opts: dict):
    name, lr, decay = opts["optimizer"], opts["lr"], opts["weight-decay"]
    if name == "sgd":
        momentum = opts.get("momentum", 0.0)
        return cl.optim.SGD(model, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=decay)
    if name == "rmsprop":
        return cl.optim.RMSProp(model, lr=lr, momentum=opts.get("momentum", 0.0), weight_decay=decay)
    return {"adam": cl.optim.Adam, "adamw": cl.optim.AdamW, "adagrad": cl.optim.AdaGrad}[name](
        model, lr=lr, weight_decay=decay)


def make_schedule(kind: str, lr: float, epochs: int):
    if kind == "cosine":  # warm-up over the first tenth of training, at most one epoch
        return cl.optim.CosineLR(lr, epochs, warmup=min(1.0, epochs / 10))
    if kind == "step":  # ×0.1 at one third and at two thirds of training
        return cl.optim.StepLR(lr, step_size=epochs / 3, gamma=0.1)
    if kind == "onecycle":
        return cl.optim.OneCycleLR(lr, epochs)
    return cl.optim.ConstantLR(lr)


def make_augment(kind: str):
    if kind == "none":
        return None
    parts = [transforms.RandomFlip(), transforms.RandomCrop(2)]
    if kind == "flip-crop-erase":
        parts.append(transforms.RandomErasing())
    return transforms.Compose(parts)


def write_config(path: Path, opts: dict) -> None:
    lines = [f"# cnnlab train options of this run; reuse with: cnnlab train -c {path}"]
    for key, value in opts.items():
        if isinstance(value, tuple):
            value = "x".join(map(str, value))
        lines.append(f"{key} = {json.dumps(value)}")  # a JSON string or number is valid TOML
    cl.io.atomic_write(path, ("\n".join(lines) + "\n").encode())


def run_dir(model: str) -> Path:
    stem = Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = stem, 1
    while out.exists():
        n += 1
        out = stem.with_name(f"{stem.name}-{n}")
    return out


def cmd_train(args) -> int:
    opts, checkpoint = train_options(args)
    if "data" not in opts:
        opts["data"] = default_data()
    source = Source(opts["data"], holdout=True)
    opts["data"] = source.stored
    default_input = inspect.signature(cl.zoo.MODELS[opts["model"]]).parameters["input_shape"].default
    model, done = None, 0
    if checkpoint:
        tensors, metadata = cl.io.read_file(checkpoint)
        model = cl.io.model_from(tensors, metadata, checkpoint)
        done = cl.io.training_state(metadata, checkpoint)["epoch"]
        if done >= opts["epochs"]:
            say(f"{checkpoint} has done {done} of {opts['epochs']} epochs; give --epochs N > {done} "
                "to train on")
    want = model.input_shape if model else opts.get("input", default_input)
    x, y, names, _ = source.load("train", want)
    xt, yt, _, what = source.load("test", want)
    if "input" in opts and source.kind != "folder" and tuple(opts["input"]) != x.shape[1:]:
        raise UsageError(f"--input is for image folders; {source.spec} has {volume(x.shape[1:])} "
                         "images (H×W×D)")
    if "limit" in opts:
        x, y = x[: opts["limit"]], y[: opts["limit"]]
    if model is None:
        model = cl.zoo.get(opts["model"], num_classes=len(names), input_shape=x.shape[1:],
                           seed=opts["seed"])
        model.class_names = names
    elif model.input_shape != x.shape[1:]:
        raise Failure(f"{checkpoint} takes {volume(model.input_shape)} inputs; {source.spec} has "
                      f"{volume(x.shape[1:])} images")
    out = Path(opts["out"]) if "out" in opts else run_dir(opts["model"])
    if checkpoint is None and (out / CHECKPOINT).exists():
        raise Failure(f"{out} already holds a run; continue it with --resume {out}, or choose "
                      "another --out")
    opts["out"] = str(out)
    out.mkdir(parents=True, exist_ok=True)
    write_config(out / CONFIG, opts)
    optimizer = make_optimizer(model, opts)
    say(f"{'resuming' if checkpoint else 'training'} {opts['model']} ({model.count_params():,} "
        f"parameters) on {source.describe()}: {len(x):,} training, {len(xt):,} {what} images; "
        f"{opts['epochs']} epoch{'s' if opts['epochs'] > 1 else ''} of batch {opts['batch-size']}, "
        f"{optimizer!r}, {opts['schedule']} schedule, augment {opts['augment']} → {out}")
    try:
        cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=optimizer,
               epochs=opts["epochs"], batch_size=opts["batch-size"], val=(xt, yt),
               schedule=make_schedule(opts["schedule"], opts["lr"], opts["epochs"]),
               transform=make_augment(opts["augment"]), seed=opts["seed"], out=out, resume=checkpoint,
               checkpoint_every=opts.get("checkpoint-every", 0))
    except KeyboardInterrupt:
        if (out / CHECKPOINT).exists():
            say(f"interrupted; continue with: cnnlab train --resume {out}")
        raise
    result = cl.evaluate(model, (xt, yt))
    k = min(5, len(names))
    print(f"{what} accuracy {100 * result['accuracy']:.2f}% (top-{k} {100 * result['top5']:.1f}%) "
          f"on {len(xt):,} images — model saved to {out / 'model.safetensors'}")
    try:  # the run itself succeeded: a report that cannot be written is a warning
        report = cl.viz.report(out, model, xt, yt, model.class_names or names,
                               data=f"{source.describe()}, {what} split")
        say(f"report: {report}")
    except (ImportError, ValueError, OSError) as error:
        say(f"cnnlab: warning: no report ({_one_line(error)}); try: cnnlab report {out}")
    return 0


# ------------------------------------------------------------ evaluate, predict
def cmd_evaluate(args) -> int:
    model = cl.load(args.model)
    spec = args.data
    if spec is None and (config := Path(args.model).parent / CONFIG).is_file():
        with open(config, "rb") as f:
            try:
                spec = tomllib.load(f).get("data")
            except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
                raise Failure(f"{config}: not valid TOML ({error}); give --data") from None
        if not isinstance(spec, str | None):
            raise Failure(f"{config}: data = {spec!r} is not a dataset name or folder; give --data")
    source = Source(spec or default_data(), holdout=False)
    x, y, classes, what = source.load_for(model, args.split, args.model)
    result = cl.evaluate(model, (x, y), loss=cl.SoftmaxCrossEntropy())
    k = min(5, len(classes))
    print(f"{args.model} on {source.describe()}, {what} split: {len(y):,} images")
    print(f"accuracy {100 * result['accuracy']:.2f}%   top-{k} {100 * result['top5']:.2f}%   "
          f"loss {result['loss']:.4f}\n")
    width = max(len("class"), *(len(n) for n in classes))
    print(f"{'class':<{width}}  accuracy  images")
    counts = result["confusion"].sum(axis=1)
    for name, acc, count in zip(classes, result["per_class"], counts, strict=True):
        text = "—" if np.isnan(acc) else f"{100 * acc:.1f}%"
        print(f"{name:<{width}}  {text:>8}  {count:>6,}")
    print("\n" + format_confusion(result["confusion"], classes))
    return 0


def cmd_predict(args) -> int:
    model = cl.load(args.model)
    if model.preprocess is None:
        raise Failure(f"{args.model} has no input preprocessing (save a model trained by cl.fit)")
    classes = model.class_names or [str(i) for i in range(model.out_shape[-1])]
    k = min(args.top, len(classes))
    failed = 0
    for path in args.images:
        try:
            image, note = read_image(path, model.input_shape)
        except cl.DataError as error:
            say(f"cnnlab: error: {_one_line(error)}")
            failed += 1
            continue
        if note:
            say(note)
        probs = cl.predict(model, image[None])[0]
        top = np.argsort(-probs, kind="stable")[:k]
        if args.json:
            print(json.dumps({"file": path, f"top{k}": [
                {"class": classes[i], "prob": round(float(probs[i]), 6)} for i in top]}), flush=True)
        else:
            width = max(len(classes[i]) for i in top)
            print("\n".join([path, *(f"  {classes[i]:<{width}}  {100 * probs[i]:6.2f}%" for i in top)]))
    return 1 if failed else 0


# ------------------------------------------------------- summary, explain, zoo
def cmd_summary(args) -> int:
    arch = args.arch
    if Path(arch).exists() or arch.endswith(".safetensors") or os.sep in arch:
        if args.input or args.classes:
            raise UsageError("--input and --classes are for zoo names; a model file has its own")
        model = cl.load(arch)
        print(model.summary())
        if model.class_names:
            print(f"Classes: {', '.join(model.class_names)}")
        return 0
    if arch.replace("_", "-").lower() not in cl.zoo.MODELS:
        raise UsageError(f"unknown model {arch!r}: not a file, nor one of the zoo's "
                         f"{', '.join(cl.zoo.names())}")
    kwargs = {"num_classes": args.classes or 10}
    if args.input:
        kwargs["input_shape"] = args.input
    print(cl.zoo.get(arch, **kwargs).summary())
    return 0


def cmd_explain(args) -> int:
    h, w, d = args.input
    try:
        if args.layer == "conv":
            layer = cl.Conv2D(args.filters, args.size, args.stride, args.pad, bias=not args.no_bias)
        else:
            pool = cl.AvgPool2D if args.avg else cl.MaxPool2D
            layer = pool(args.size, args.stride, args.pad)
    except ValueError as error:
        raise UsageError(str(error)) from None
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


# -------------------------------------------------------------- report, demo
def cmd_report(args) -> int:
    from cnnlab.viz import commands  # the body lives beside the report it writes

    return commands.report(args)


def cmd_demo(args) -> int:
    from cnnlab.viz import commands

    return commands.demo(args)


# -------------------------------------------------------------------- parser
TRAIN_EXAMPLES = """\
examples:
  cnnlab train                                  # fmnist-cnn on Fashion-MNIST, the default recipe
  cnnlab train --model lenet5 --epochs 10 --optimizer adam --lr 1e-3
  cnnlab train --data cifar10 --model fmnist-cnn --augment flip-crop --out runs/cifar
  cnnlab train --data photos/ --input 3x64x64   # photos/<class>/*.jpg, or photos/train/ and test/
  cnnlab train -c recipe.toml --epochs 20       # flags override the file
  cnnlab train --resume runs/cifar --epochs 30  # continue a run (--epochs is the total)

The default recipe: SGD with Nesterov momentum 0.9, lr 0.05, weight decay 5e-4, batch 128,
cosine schedule with warm-up over the first tenth, 5 epochs, no augmentation (other optimizers'
default lr: adam/adamw/rmsprop 1e-3, adagrad 0.01). Data: the full Fashion-MNIST if installed
(sudo apt-get install dataset-fashion-mnist), else the bundled 10,000-image subset. --data takes
a name (fashion-mnist, mnist, cifar10, fashion-mnist-mini) or a folder: IDX files, CIFAR-10 .bin
files, or an image folder with one subfolder per class (then 1 image in 10 is held out for
testing unless it has train/ and test/ subfolders). The run directory gets metrics.csv,
last.ckpt.safetensors, best.safetensors, model.safetensors and config.toml (its options, usable
with -c). A config file holds the long flags as keys: epochs = 10, batch-size = 64, lr = 0.1.
"""

EVALUATE_EXAMPLES = """\
examples:
  cnnlab evaluate runs/fmnist-cnn-20250101-120000/model.safetensors
  cnnlab evaluate model.safetensors --data mnist --split test
  cnnlab evaluate model.safetensors --data photos/test

Without --data: the data recorded in the model's run directory (config.toml), else Fashion-MNIST.
"""

PREDICT_EXAMPLES = """\
examples:
  cnnlab predict model.safetensors shirt.jpg boot.png
  cnnlab predict model.safetensors *.png --json --top 3

Each image is converted to the model's input with Pillow: grayscale or RGB, stretched to its
size (stderr says what changed). Colours are not inverted: Fashion-MNIST and MNIST show light
objects on a dark background, so invert a photo of a dark object on a light background first.
--json prints one object a line: {"file": ..., "top5": [{"class": ..., "prob": ...}, ...]}.
"""

SUMMARY_EXAMPLES = """\
examples:
  cnnlab summary fmnist-cnn
  cnnlab summary lenet5 --input 3x32x32 --classes 100
  cnnlab summary runs/x/model.safetensors
"""

EXPLAIN_EXAMPLES = """\
examples (the lecture's; --input is H×W×D, depth last, as the lecture writes it):
  cnnlab explain conv --input 32x32x3 --filters 10 --size 5 --stride 1 --pad 2
  cnnlab explain pool --input 7x7x3 --size 3 --stride 3

A configuration that does not fit is explained too, with the arithmetic and what would fit;
the exit status is 0 whenever an explanation is printed.
"""

REPORT_EXAMPLES = """\
examples:
  cnnlab report runs/fmnist                     # writes runs/fmnist/report.html
  cnnlab report runs/photos --data photos/      # test images from another place

One HTML file, images inline, nothing fetched: the model summary, the training curves, the
confusion matrix, the per-class accuracy, the first layer's filters, the feature maps of a few
test images and the most confident mistakes. cnnlab train writes it at the end of every run.
Without --data: the data recorded in the run's config.toml.
"""

DEMO_EXAMPLES = """\
examples:
  cnnlab demo conv --out demo                   # the lecture's: 5x5x3 input, 2 filters, stride 2, pad 1
  cnnlab demo conv --input 7x7x1 --filters 1 --size 3 --stride 2 --pad 0 --out demo7
  cnnlab demo conv --seed 3 --out demo-random   # the lecture's shapes, random numbers

Writes DIR/demo.html (open it in a browser: "toggle movement", prev and next; keys: space, ← →)
and DIR/demo.gif, walking through every output position with its dot product. The lecture's
configuration uses its numbers; others (or --seed) use small random integers. The outputs are
computed by cnnlab's Conv2D. --input is H×W×D, depth last, as the lecture writes it.
"""


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="cnnlab", formatter_class=raw,
        description="Convolutional neural networks in NumPy: exact, explained and fast.",
        epilog="Run 'cnnlab COMMAND --help' for a command's flags and examples.\n"
               "Exit status: 0 success, 1 failure, 2 usage error.")
    parser.add_argument("--version", action="version", version=f"cnnlab {cl.__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of a failure")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, run, text, epilog):
        p = sub.add_parser(name, help=text, description=text, epilog=epilog, formatter_class=raw,
                           parents=[common])
        p.set_defaults(run=run, parser=p)
        return p

    p = command("train", cmd_train, "train a model and save it to a run directory", TRAIN_EXAMPLES)
    actions = {}

    def option(*flags, **kw):
        action = p.add_argument(*flags, default=None, **kw)
        actions[next(f for f in flags if f.startswith("--"))[2:]] = action

    option("--model", choices=cl.zoo.names(), metavar="NAME",
           help=f"zoo model: {', '.join(cl.zoo.names())} (default {RECIPE['model']})")
    option("--data", metavar="NAME|PATH", help="dataset name or folder (default: Fashion-MNIST)")
    option("--input", type=shape_chw, metavar="CxHxW", help="model input for image folders")
    option("--epochs", type=positive_int, metavar="N", help=f"total epochs (default {RECIPE['epochs']})")
    option("-b", "--batch-size", type=positive_int, metavar="N", help="default 128")
    option("--lr", type=positive, metavar="LR", help="learning rate (default: 0.05 for sgd)")
    option("--optimizer", choices=list(LR), help="default sgd")
    option("--momentum", type=momentum_value, metavar="M", help="sgd/rmsprop (default 0.9 for sgd)")
    option("--weight-decay", type=non_negative, metavar="WD", help="default 5e-4 (sgd), 1e-2 (adamw)")
    option("--schedule", choices=SCHEDULES, help="learning-rate schedule (default cosine)")
    option("--augment", choices=AUGMENT, help="default none")
    option("--seed", type=natural, metavar="N", help="weights, sample order, augmentation (default 0)")
    option("--out", metavar="DIR", help="run directory (default runs/<model>-<timestamp>)")
    option("--resume", metavar="CKPT|DIR", help="a checkpoint, or a run directory (its last one)")
    option("--limit", type=positive_int, metavar="N", help="use only the first N training images")
    option("--checkpoint-every", type=natural, metavar="N",
           help="also save last.ckpt.safetensors every N steps (default: at each epoch's end)")
    p.add_argument("-c", "--config", metavar="FILE", help="TOML file of options; flags override it")
    p.set_defaults(actions=actions)

    p = command("evaluate", cmd_evaluate, "accuracy, per-class accuracy and confusion matrix",
                EVALUATE_EXAMPLES)
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file")
    p.add_argument("--data", metavar="NAME|PATH", help="dataset name or folder")
    p.add_argument("--split", default="test", help="default test")

    p = command("predict", cmd_predict, "the most likely classes of image files", PREDICT_EXAMPLES)
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG, JPEG, ... files")
    p.add_argument("--json", action="store_true", help="one JSON object per line per image")
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="classes shown (default 5)")

    p = command("summary", cmd_summary, "layers, shapes, parameters and their arithmetic",
                SUMMARY_EXAMPLES)
    p.add_argument("arch", metavar="ARCH|MODEL", help="a zoo name or a .safetensors model file")
    p.add_argument("--input", type=shape_chw, metavar="CxHxW", help="input shape, e.g. 3x32x32")
    p.add_argument("--classes", type=positive_int, metavar="N", help="number of classes (default 10)")

    p = command("explain", cmd_explain, "the lecture's worked answer for one layer", EXPLAIN_EXAMPLES)
    layers = p.add_subparsers(dest="layer", metavar="LAYER", required=True)
    for name, text in (("conv", "a convolution layer"), ("pool", "a pooling layer")):
        q = layers.add_parser(name, help=text, description=f"explain {text}", epilog=EXPLAIN_EXAMPLES,
                              formatter_class=raw, parents=[common])
        q.add_argument("--input", type=shape_hwd, required=True, metavar="HxWxD",
                       help="input volume, depth last, e.g. 32x32x3")
        if name == "conv":
            q.add_argument("--filters", type=positive_int, required=True, metavar="K")
        q.add_argument("--size", type=positive_int, required=True, metavar="F", help="extent")
        q.add_argument("--stride", type=positive_int, metavar="S",
                       default=1 if name == "conv" else None,
                       help="default 1" if name == "conv" else "default: the extent")
        q.add_argument("--pad", type=padding, default=0, metavar="P", help="int, same or valid")
        if name == "conv":
            q.add_argument("--no-bias", action="store_true", help="count weights only")
        else:
            q.add_argument("--avg", action="store_true", help="average instead of max pooling")
    p.set_defaults(parser=p)

    p = command("report", cmd_report, "an HTML report of a training run", REPORT_EXAMPLES)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by cnnlab train")
    p.add_argument("--data", metavar="NAME|PATH", help="test data (default: the run's)")

    p = command("demo", cmd_demo, "the lecture's animated demos as HTML pages and GIFs", DEMO_EXAMPLES)
    demos = p.add_subparsers(dest="demo", metavar="DEMO", required=True)
    q = demos.add_parser("conv", help="the convolution demo", description="the convolution demo: "
                         "every output position with its dot product", epilog=DEMO_EXAMPLES,
                         formatter_class=raw, parents=[common])
    q.add_argument("--input", type=shape_hwd, default=(5, 5, 3), metavar="HxWxD",
                   help="input volume, depth last (default 5x5x3)")
    q.add_argument("--filters", type=positive_int, default=2, metavar="K", help="default 2")
    q.add_argument("--size", type=positive_int, default=3, metavar="F", help="extent (default 3)")
    q.add_argument("--stride", type=positive_int, default=2, metavar="S", help="default 2")
    q.add_argument("--pad", type=natural, default=1, metavar="P", help="zero padding (default 1)")
    q.add_argument("--seed", type=natural, metavar="N",
                   help="random numbers from this seed (default: the lecture's for its shapes)")
    q.add_argument("--out", required=True, metavar="DIR", help="folder for demo.html and demo.gif")
    p.set_defaults(parser=p)

    command("zoo", cmd_zoo, "the ready-made models", "example:\n  cnnlab zoo\n")
    return parser


def _one_line(error: BaseException) -> str:
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


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: `cnnlab COMMAND ...`; returns the exit status."""
    args = build_parser().parse_args(argv)  # exits 2 on a usage error
    try:
        return args.run(args)
    except UsageError as error:
        print(f"{args.parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("cnnlab: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `cnnlab predict ... | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (Failure, ValueError, OSError, FloatingPointError, MemoryError) as error:
        # DataError, ModelFileError and ShapeError are ValueErrors
        if args.debug:
            traceback.print_exc()
        say(f"cnnlab: error: {_one_line(error)}")
        return 1
