"""`cnnlab train`: the default recipe, the named recipes (--recipe NAME: cli/recipes/NAME.toml),
the options (default < named recipe < resumed run < -c FILE < flags), the optimizer, schedule
and augmentation they name, and the run itself.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import inspect
from pathlib import Path

import cnnlab as cl
from cnnlab.cli import transfer
from cnnlab.cli.common import Failure, UsageError, one_line, printable, say
from cnnlab.cli.runs import CHECKPOINT, CONFIG, locked_run, read_config, run_dir, write_config
from cnnlab.cli.weights import check_model, initialise
from cnnlab.core import volume
from cnnlab.data import augment
from cnnlab.data.datasets import DATASETS
from cnnlab.data.folder import take
from cnnlab.data.sources import Source, default_data
from cnnlab.data.splits import stratified_split

#: the default recipe: about 11 s an epoch on the bundled set on 2 cores (see the README)
RECIPE = {"model": "fmnist-cnn", "epochs": 5, "batch-size": 128, "optimizer": "sgd",
          "schedule": "cosine", "augment": "none", "seed": 0, "val-split": 0.1}
LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 0.01}
WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 1e-2}
WITH_MOMENTUM = ("sgd", "rmsprop")
AUGMENT = tuple(augment.PRESETS)  # the presets; --augment also takes terms (cnnlab.data.augment)
SCHEDULES = ("constant", "cosine", "step", "onecycle")
#: the named recipes (--recipe NAME), each a TOML file of train options in cli/recipes/, shipped
#: with the package; measured in the README ("Time to accuracy")
RECIPES = {
    "fast": "fmnist-cnn-bn, 15 epochs on the full Fashion-MNIST, mirroring, flip TTA",
    "strong": "fmnist-cnn-bn, 30 epochs on the full Fashion-MNIST, mirroring, flip TTA",
    "long": "fmnist-cnn-bn, 50 epochs on the full Fashion-MNIST, mirroring and ±1-pixel shifts, "
            "flip TTA",
}
#: what a resumed run keeps: another value would continue the run on other terms under its name
#: (--epochs, the learning rate, the schedule, ... may change)
FIXED = ("recipe", "model", "data", "limit", "val-split", "seed", "batch-size", "input", "freeze",
         "body-lr-scale", "weights")


def train_options(args) -> tuple[dict, Path | None]:
    """The default recipe < the named recipe (--recipe) < the resumed run's config.toml < -c FILE
    < explicit flags; and the checkpoint."""
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
            _check_resumed({**config, **explicit}, base)
        _check_folder({**config, **explicit}, checkpoint.parent)
        base["out"] = str(checkpoint.parent)
    _switch_optimizer(explicit.get("optimizer"), base, config)
    chosen = {**config, **explicit}
    named = chosen.get("recipe", base.get("recipe"))
    recipe = recipe_options(named, args.actions) if named is not None else {}
    _switch_optimizer(chosen.get("optimizer", base.get("optimizer")), recipe)
    opts = {**RECIPE, **recipe, **base, **chosen}
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
    transfer.check(opts)
    if "weights" in opts:
        check_model(opts["model"])
    return opts, checkpoint


def _check_resumed(chosen: dict, recorded: dict) -> None:
    """A UsageError naming the first option of `chosen` (-c FILE and flags) that contradicts the
    `recorded` options (config.toml) of the run being resumed."""
    for key in FIXED:
        if key in chosen and _comparable(key, chosen[key]) != _comparable(key, recorded.get(key)):
            was = recorded.get(key)
            raise UsageError(f"--{key} {_shown(chosen[key])} contradicts the run being resumed "
                             f"({'none' if was is None else _shown(was)}); give the same value or "
                             "start a new run")


def _check_folder(chosen: dict, folder: Path) -> None:
    """--out may only name the folder of the run being resumed."""
    if "out" in chosen and Path(chosen["out"]).resolve() != folder.resolve():
        raise UsageError(f"--out {chosen['out']} contradicts the run being resumed ({folder}); a "
                         "resumed run stays in its folder: leave out --out, or start a new run")


def _comparable(key: str, value):
    """A value as the run records it: a data folder or a model file by its absolute path."""
    if key == "data" and value is not None and value not in DATASETS:
        return str(Path(value).resolve())
    if key in ("model", "weights") and value is not None and (
            key == "weights" or transfer.is_model_file(value)):
        return str(Path(value).resolve())
    return value


def _shown(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" if isinstance(
        value, float) else str(value)


def recipe_options(name: str, actions: dict) -> dict:
    """The options of the named recipe (RECIPES), read from the package's cli/recipes/NAME.toml
    and checked like a -c FILE."""
    if name not in RECIPES:  # a config file's or config.toml's value: flags are checked by argparse
        raise UsageError(f"recipe {name!r} is not one of {', '.join(RECIPES)}")
    with importlib.resources.as_file(
            importlib.resources.files("cnnlab.cli") / "recipes" / f"{name}.toml") as path:
        options = read_config(path, actions)
    options.pop("recipe", None)
    return options


def _switch_optimizer(named: str | None, *files: dict) -> None:
    """A file's lr, momentum and weight decay were chosen for its optimizer: another one named
    above it (--optimizer, or -c FILE over a recipe) takes its own defaults (or flags), as
    `-c RUN/config.toml --optimizer adam` means."""
    for options in files:
        if named is not None and options.get("optimizer", named) != named:
            for key in ("lr", "momentum", "weight-decay"):
                options.pop(key, None)


def make_optimizer(model, opts: dict):
    """The optimizer named by opts (SGD with momentum > 0 is Nesterov's)."""
    name, lr, decay = opts["optimizer"], opts["lr"], opts["weight-decay"]
    groups = {"groups": transfer.body_groups(model, opts)}  # --body-lr-scale
    if name == "sgd":
        momentum = opts.get("momentum", 0.0)
        return cl.optim.SGD(model, lr=lr, momentum=momentum, nesterov=momentum > 0,
                            weight_decay=decay, **groups)
    if name == "rmsprop":
        return cl.optim.RMSProp(model, lr=lr, momentum=opts.get("momentum", 0.0), weight_decay=decay,
                                **groups)
    return {"adam": cl.optim.Adam, "adamw": cl.optim.AdamW, "adagrad": cl.optim.AdaGrad}[name](
        model, lr=lr, weight_decay=decay, **groups)


def make_schedule(kind: str, lr: float, epochs: int, steps_per_epoch: int):
    """The learning-rate schedule named `kind` (one of SCHEDULES), for `steps_per_epoch` steps
    an epoch."""
    if kind == "cosine":  # warm-up: a tenth of training, at most one epoch, at least one step
        return cl.optim.CosineLR(lr, epochs, warmup=min(1.0, epochs / 10),
                                 steps_per_epoch=steps_per_epoch)
    if kind == "step":  # ×0.1 at one third and at two thirds of training
        return cl.optim.StepLR(lr, step_size=epochs / 3, gamma=0.1)
    if kind == "onecycle":
        return cl.optim.OneCycleLR(lr, epochs)
    return cl.optim.ConstantLR(lr)


def make_augment(spec: str):
    """The augmentation `spec` names (a preset or terms, cnnlab.data.augment); None for "none"."""
    return augment.augmentation(spec)


def _resumed(checkpoint: Path):
    """(the model, the epochs done) of a training checkpoint."""
    saved = cl.io.read_checkpoint(checkpoint)
    return saved.model(), saved.training["epoch"]


def _data(opts: dict, source: Source, model):
    """(x, y, class names) for training, the folder's own validation images or None, and (xt,
    yt, what) for testing, shaped for the resumed model or --model file, the --input or the zoo
    model's default input."""
    if model is not None:  # resumed, or --model FILE
        want = model.input_shape
    else:
        default = inspect.signature(cl.zoo.MODELS[opts["model"]]).parameters["input_shape"].default
        want = opts.get("input", default)
    x, y, names, _ = source.load("train", want)
    xt, yt, _, what = source.load("test", want)
    if "input" in opts and source.kind != "folder" and tuple(opts["input"]) != x.shape[1:]:
        raise UsageError(f"--input is for image folders; {source.spec} has {volume(x.shape[1:])} "
                         "images (H×W×D)")
    if xt.shape[1:] != x.shape[1:]:  # else fit's test evaluation fails, after all the training
        raise Failure(f"{printable(source.spec)}: the {what} images are {volume(xt.shape[1:])} but "
                      f"the training images are {volume(x.shape[1:])} (H×W×D); a model takes one "
                      "size: give both splits images of the same size")
    if "limit" in opts:
        x, y = take(x, slice(opts["limit"])), y[: opts["limit"]]
    val = source.load("val", want)[:2] if source.has_own_validation() else None
    return (x, y, names), val, (xt, yt, what)


def _model(opts: dict, model, checkpoint: Path | None, source: Source, x, names: list[str]):
    """The resumed model, checked against the images; else the --model file, its head fitted to
    the classes (cli.transfer), or a new zoo model for them; --freeze applied."""
    if model is None or checkpoint is None:
        if len(names) < 2:
            raise Failure(f"{printable(source.spec)} has {len(names)} class"
                          f"{'' if len(names) == 1 else 'es'} ({printable(', '.join(names))}); "
                          "a classifier needs at least two: one folder of images per class")
    if model is None:
        model = cl.zoo.get(opts["model"], num_classes=len(names), input_shape=x.shape[1:],
                           seed=opts["seed"])
        model.class_names = names
        if "weights" in opts:
            initialise(model, opts["model"], opts["weights"])
    elif model.input_shape != x.shape[1:]:
        raise Failure(f"{checkpoint or opts['model']} takes {volume(model.input_shape)} inputs; "
                      f"{source.spec} has {volume(x.shape[1:])} images")
    elif checkpoint is None:
        transfer.fit_head(model, names, opts["seed"])
    transfer.freeze(model, opts)
    return model


def _start(opts: dict, checkpoint: Path | None, out: Path) -> None:
    """The run directory, locked, given its config.toml; a new run may not overwrite another."""
    if checkpoint is None and (out / CHECKPOINT).exists():
        raise Failure(f"{out} already holds a run; continue it with --resume {out}, or choose "
                      "another --out")
    write_config(out / CONFIG, opts)


def _fit(model, opts: dict, optimizer, data, out: Path, checkpoint: Path | None, args):
    """cl.fit on (train, val or None, test), on the processes of mpiexec if it started this one
    (args.comm): the History."""
    train, val, test = data
    try:
        loss = cl.SoftmaxCrossEntropy(label_smoothing=opts.get("label-smoothing", 0.0))
        return cl.fit(model, train, loss=loss, optimizer=optimizer,
                      epochs=opts["epochs"], batch_size=opts["batch-size"], val=val,
                      val_split=0.0 if val is not None else opts["val-split"], test=test,
                      schedule=make_schedule(opts["schedule"], opts["lr"], opts["epochs"],
                                             _steps_per_epoch(train[1], val, opts)),
                      transform=make_augment(opts["augment"]), seed=opts["seed"], out=out,
                      resume=checkpoint, checkpoint_every=opts.get("checkpoint-every", 0),
                      progress=False if args.quiet else None, distributed=args.comm,
                      sync_batchnorm=opts.get("sync-batchnorm", False), tta=opts.get("tta"))
    except KeyboardInterrupt:
        if (out / CHECKPOINT).exists():
            say(f"interrupted; continue with: cnnlab train --resume {out}")
        raise


def _finish(model, source: Source, test, history, names: list[str], out: Path, tta: str | None) -> None:
    """The test accuracy (fit's one evaluation of the test split, with --tta if given) on
    stdout, then the run's report (scored without TTA; a warning if it cannot be written)."""
    xt, yt, what = test
    result = history.test
    k = min(5, len(names))
    how = f" with test-time augmentation {tta}" if tta not in (None, "none") else ""
    print(f"{what} accuracy {100 * result['accuracy']:.2f}% (top-{k} {100 * result['top5']:.1f}%) "
          f"on {len(xt):,} images{how} — model saved to {printable(str(out / 'model.safetensors'))}")
    try:  # the run itself succeeded: a report that cannot be written is a warning
        report = cl.viz.report(out, model, xt, yt, model.class_names or names,
                               data=f"{source.describe()}, {what} split")
        say(f"report: {report}")
    except (ImportError, ValueError, OSError) as error:
        say(f"cnnlab: warning: no report ({one_line(error)}); try: cnnlab report {out}")


def cmd_train(args) -> int:
    """cnnlab train [-c FILE] [flags]: trains, saves the run directory, prints the test accuracy."""
    opts, checkpoint = train_options(args)
    if "data" not in opts:
        opts["data"] = default_data(report=say)
    # under mpiexec an image folder is read lazily: each process decodes only its own images
    source = Source(opts["data"], holdout=True, report=lambda text: say(printable(text)),
                    lazy=True if args.comm is not None else None)
    opts["data"] = source.stored
    model, done = _resumed(checkpoint) if checkpoint else (transfer.start_model(opts), 0)
    opts["model"] = _comparable("model", opts["model"])  # a model file by its absolute path
    if checkpoint and done >= opts["epochs"]:
        say(f"{checkpoint} has done {done} of {opts['epochs']} epochs; give --epochs N > {done} "
            "to train on")
    (x, y, names), val, (xt, yt, what) = _data(opts, source, model)
    model = _model(opts, model, checkpoint, source, x, names)
    out = Path(opts["out"]) if "out" in opts else run_dir(Path(opts["model"]).stem)
    opts["out"] = str(out)
    writer = args.comm is None or args.comm.rank == 0  # under mpiexec, rank 0 writes the run
    # until the run ends: a second train on this folder fails at once
    with locked_run(out) if writer else contextlib.nullcontext():
        if writer:
            _start(opts, checkpoint, out)
        optimizer = make_optimizer(model, opts)
        say(f"{'resuming' if checkpoint else 'training'} {opts['model']} ({model.count_params():,} "
            f"parameters) on {source.describe()}: {_counts(y, val, opts, len(xt), what)}; "
            f"{opts['epochs']} epoch{'s' if opts['epochs'] > 1 else ''} of batch "
            f"{opts['batch-size']}, {optimizer!r}, {opts['schedule']} schedule, augment "
            f"{opts['augment']} → {out}")
        history = _fit(model, opts, optimizer, ((x, y), val, (xt, yt)), out, checkpoint, args)
        if writer:
            _finish(model, source, (xt, yt, what), history, names, out, opts.get("tta"))
    return 0


def _steps_per_epoch(y, val, opts: dict) -> int:
    """⌈N/batch size⌉ for the N training images fit() keeps after its validation split."""
    if val is None and opts["val-split"]:
        y = y[stratified_split(y, opts["val-split"], opts["seed"])[0]]
    return -(-len(y) // opts["batch-size"])


def _counts(y, val, opts: dict, n_test: int, what: str) -> str:
    """'9,000 training, 1,000 validation, 2,000 test images': the split fit() will make."""
    if val is not None:
        n, held = len(y), len(val[1])
    elif opts["val-split"]:
        n, held = map(len, stratified_split(y, opts["val-split"], opts["seed"]))
    else:
        return f"{len(y):,} training (no validation split), {n_test:,} {what} images"
    return f"{n:,} training, {held:,} validation, {n_test:,} {what} images"
