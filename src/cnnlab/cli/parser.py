"""The argument parser of `cnnlab`: one function a command, each adding its flags, help text and
examples, and naming the function that runs it (args.run) and its parser (args.parser).
"""

from __future__ import annotations

import argparse

import cnnlab as cl
from cnnlab.cli.common import (
    augment_spec,
    fraction,
    natural,
    non_negative,
    padding,
    positive,
    positive_int,
    shape_chw,
    shape_hwd,
)
from cnnlab.cli.examples import (
    CONVERT_EXAMPLES,
    DEMO_EXAMPLES,
    EVALUATE_EXAMPLES,
    EXPLAIN_EXAMPLES,
    EXPORT_EXAMPLES,
    FEATURES_EXAMPLES,
    LR_FIND_EXAMPLES,
    PREDICT_EXAMPLES,
    REPORT_EXAMPLES,
    SUMMARY_EXAMPLES,
    TRAIN_EXAMPLES,
)
from cnnlab.cli.export import cmd_export
from cnnlab.cli.features import cmd_features
from cnnlab.cli.info import cmd_explain, cmd_summary, cmd_zoo
from cnnlab.cli.lr_find import cmd_lr_find
from cnnlab.cli.pictures import cmd_demo, cmd_report
from cnnlab.cli.train import LR, RECIPE, RECIPES, SCHEDULES, cmd_train
from cnnlab.cli.transfer import freeze_spec, model_spec
from cnnlab.cli.use import cmd_evaluate, cmd_predict
from cnnlab.cli.weights import cmd_convert
from cnnlab.train.evaluate import TTA
from cnnlab.train.features import DISTANCES

RAW = argparse.RawDescriptionHelpFormatter

def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; parse_args gives args.run (the command's function) and
    args.parser (its parser, for its name in usage errors)."""
    parser = argparse.ArgumentParser(
        prog="cnnlab", formatter_class=RAW,
        description="Convolutional neural networks in NumPy: exact, explained and fast.",
        epilog="Run 'cnnlab COMMAND --help' for a command's flags and examples.\n"
               "Exit status: 0 success, 1 failure, 2 usage error.")
    parser.add_argument("--version", action="version", version=f"cnnlab {cl.__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common = argparse.ArgumentParser(add_help=False)  # --debug and --quiet after the command too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of a failure")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars (they show on a terminal or in Jupyter)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_train, _evaluate, _predict, _features, _summary, _explain, _report, _demo, _zoo,
                _lr_find, _export, _convert):
        add(sub, common)
    return parser


def _command(sub, common, name: str, run, text: str, epilog: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=text, description=text, epilog=epilog, formatter_class=RAW,
                       parents=[common])
    p.set_defaults(run=run, parser=p)
    return p


def _train(sub, common) -> None:
    p = _command(sub, common, "train", cmd_train, "train a model and save it to a run directory",
                 TRAIN_EXAMPLES)
    actions = {}  # long flag → action: what a config file's keys are checked against

    def option(*flags, **kw):
        action = p.add_argument(*flags, default=None, **kw)
        actions[next(f for f in flags if f.startswith("--"))[2:]] = action

    option("--recipe", choices=list(RECIPES), metavar="NAME",
           help="start from a named recipe shipped with cnnlab (-c FILE and flags override its "
                "values): " + "; ".join(f"{k}: {v}" for k, v in RECIPES.items()).replace("%", "%%"))
    option("--model", type=model_spec, metavar="NAME|FILE",
           help=f"zoo model: {', '.join(cl.zoo.names())} (default {RECIPE['model']}); or a "
                ".safetensors model file to start from (transfer learning)")
    option("--data", metavar="NAME|PATH", help="dataset name or folder (default: Fashion-MNIST)")
    option("--input", type=shape_chw, metavar="CxHxW",
           help="model input for image folders, C×H×W: channels first, e.g. 3x64x64")
    option("--epochs", type=positive_int, metavar="N", help=f"total epochs (default {RECIPE['epochs']})")
    option("-b", "--batch-size", type=positive_int, metavar="N", help="default 128")
    option("--lr", type=positive, metavar="LR", help="learning rate (default: 0.05 for sgd)")
    option("--optimizer", choices=list(LR), help="default sgd")
    option("--momentum", type=fraction, metavar="M", help="sgd/rmsprop (default 0.9 for sgd)")
    option("--weight-decay", type=non_negative, metavar="WD", help="default 5e-4 (sgd), 1e-2 (adamw)")
    option("--schedule", choices=SCHEDULES, help="learning-rate schedule (default cosine)")
    option("--augment", type=augment_spec, metavar="SPEC",
           help="augmentation: none (default), flip-crop, flip-crop-erase, or terms such as "
                "flip,crop=2,rotate=15 (see below)")
    option("--seed", type=natural, metavar="N", help="weights, sample order, augmentation (default 0)")
    option("--out", metavar="DIR", help="run directory (default runs/<model>-<timestamp>)")
    option("--resume", metavar="CKPT|DIR", help="a checkpoint, or a run directory (its last one)")
    option("--limit", type=positive_int, metavar="N", help="use only the first N training images")
    option("--val-split", type=fraction, metavar="F",
           help="hold out this fraction of the training images, stratified by class, for validation "
                f"(default {RECIPE['val-split']}; 0: none)")
    option("--checkpoint-every", type=natural, metavar="N",
           help="also save last.ckpt.safetensors every N steps (default: at each epoch's end)")
    option("--label-smoothing", type=fraction, metavar="E",
           help="train on (1 − E)·one-hot + E/C targets (default 0); the losses shown are that "
                "cross-entropy")
    option("--tta", choices=TTA,
           help="test-time augmentation for the final test evaluation: flip averages each image's "
                "scores with its mirror image's (default none; evaluate and predict take it too)")
    option("--sync-batchnorm", action="store_true",
           help="under mpiexec: BatchNorm's batch statistics over all processes' samples (as one "
                "process computes them) instead of each process's own share")
    option("--freeze", type=freeze_spec, metavar="body|N",
           help="train only the head (body: every layer before the last Dense layer) or all but "
                "the first N layers; frozen BatchNorm uses its running statistics")
    option("--body-lr-scale", type=non_negative, metavar="S",
           help="the body's learning rate is S times --lr (e.g. 0.1: fine-tune gently)")
    option("--weights", metavar="FILE",
           help="start from pretrained weights: a torchvision/timm state_dict in safetensors for "
                "--model (an ImageNet model; a head for other classes starts at zero)")
    p.add_argument("-c", "--config", metavar="FILE", help="TOML file of options; flags override it")
    p.set_defaults(actions=actions)


def _evaluate(sub, common) -> None:
    p = _command(sub, common, "evaluate", cmd_evaluate,
                 "accuracy, per-class accuracy and confusion matrix", EVALUATE_EXAMPLES)
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file")
    p.add_argument("--data", metavar="NAME|PATH", help="dataset name or folder")
    p.add_argument("--split", default="test", choices=("test", "train", "val", "all"),
                   help="test (default; for an image folder without train/ and test/: the tenth "
                        "that cnnlab train held out), train, val, or all (every image of such a folder)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: model, data, split, tta, n, accuracy, top_k, top, loss, "
                        "classes, per_class, confusion")
    p.add_argument("--tta", choices=TTA, default="none",
                   help="test-time augmentation: flip averages each image's scores with its mirror "
                        "image's (default none)")


def _predict(sub, common) -> None:
    p = _command(sub, common, "predict", cmd_predict, "the most likely classes of image files",
                 PREDICT_EXAMPLES)
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG, JPEG, ... files")
    p.add_argument("--json", action="store_true", help="one JSON object per line per image")
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="classes shown (default 5)")
    p.add_argument("--tta", choices=TTA, default="none",
                   help="test-time augmentation: flip averages the scores of the image and of its "
                        "mirror image (default none)")


def _features(sub, common) -> None:
    p = _command(sub, common, "features", cmd_features,
                 "a layer's activations for images, and their nearest neighbours", FEATURES_EXAMPLES)
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders of them")
    p.add_argument("--layer", metavar="NAME",
                   help="the layer whose output is wanted (default: the one before the head)")
    p.add_argument("--out", metavar="FILE.npz", help="write the features here (numpy .npz)")
    p.add_argument("--neighbours", metavar="FOLDER",
                   help="show each image's nearest images of FOLDER on an HTML page (--page)")
    p.add_argument("--page", default="neighbours.html", metavar="FILE.html",
                   help="the page --neighbours writes (default neighbours.html)")
    p.add_argument("--top", type=positive_int, default=5, metavar="K",
                   help="neighbours shown per image (default 5)")
    p.add_argument("--distance", choices=DISTANCES, default="cosine", help="default cosine")


def _summary(sub, common) -> None:
    p = _command(sub, common, "summary", cmd_summary, "layers, shapes, parameters and their arithmetic",
                 SUMMARY_EXAMPLES)
    p.add_argument("arch", metavar="ARCH|MODEL", help="a zoo name or a .safetensors model file")
    p.add_argument("--input", type=shape_chw, metavar="CxHxW",
                   help="input C×H×W: channels first, e.g. 3x32x32 (default: the model's own; the "
                        "table writes volumes H×W×D)")
    p.add_argument("--classes", type=positive_int, metavar="N",
                   help="number of classes (default: the model's own, 1000 for the ImageNet models, "
                        "10 for the small ones)")


def _explain(sub, common) -> None:
    p = _command(sub, common, "explain", cmd_explain, "the lecture's worked answer for one layer",
                 EXPLAIN_EXAMPLES)
    layers = p.add_subparsers(dest="layer", metavar="LAYER", required=True)
    for name, text in (("conv", "a convolution layer"), ("pool", "a pooling layer")):
        q = layers.add_parser(name, help=text, description=f"explain {text}", epilog=EXPLAIN_EXAMPLES,
                              formatter_class=RAW, parents=[common])
        q.add_argument("--input", type=shape_hwd, required=True, metavar="HxWxD",
                       help="input volume H×W×D: depth last as the lecture writes it, e.g. 32x32x3")
        if name == "conv":
            q.add_argument("--filters", type=positive_int, required=True, metavar="K")
        q.add_argument("--size", type=positive_int, required=True, metavar="F", help="extent")
        q.add_argument("--stride", type=positive_int, metavar="S",
                       default=1 if name == "conv" else None,
                       help="default 1" if name == "conv" else "default: the extent")
        q.add_argument("--pad", type=padding, default=0, metavar="P", help="int, same or valid")
        if name == "conv":
            q.add_argument("--no-bias", action="store_true", help="count weights only")
            q.add_argument("--dilation", type=positive_int, default=1, metavar="D",
                           help="taps D apart: the window spans D·(F − 1) + 1 (default 1)")
            q.add_argument("--groups", type=positive_int, default=1, metavar="G",
                           help="filters see D1/G channels each; G = D1 is depthwise (default 1)")
        else:
            q.add_argument("--avg", action="store_true", help="average instead of max pooling")
    p.set_defaults(parser=p)


def _report(sub, common) -> None:
    p = _command(sub, common, "report", cmd_report, "an HTML report of a training run", REPORT_EXAMPLES)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by cnnlab train")
    p.add_argument("--data", metavar="NAME|PATH", help="test data (default: the run's)")


def _demo(sub, common) -> None:
    p = _command(sub, common, "demo", cmd_demo,
                 "the lecture's demos: numbers in the terminal, HTML pages and GIFs", DEMO_EXAMPLES)
    demos = p.add_subparsers(dest="demo", metavar="DEMO", required=True)
    q = demos.add_parser("conv", help="the convolution demo", description="the convolution demo: "
                         "the volumes' numbers, and every output position with its dot product",
                         epilog=DEMO_EXAMPLES, formatter_class=RAW, parents=[common])
    q.add_argument("--input", type=shape_hwd, default=(5, 5, 3), metavar="HxWxD",
                   help="input volume H×W×D: depth last as the lecture writes it (default 5x5x3)")
    q.add_argument("--filters", type=positive_int, default=2, metavar="K", help="default 2")
    q.add_argument("--size", type=positive_int, default=3, metavar="F", help="extent (default 3)")
    q.add_argument("--stride", type=positive_int, default=2, metavar="S", help="default 2")
    q.add_argument("--pad", type=natural, default=1, metavar="P", help="zero padding (default 1)")
    q.add_argument("--seed", type=natural, metavar="N",
                   help="random numbers from this seed (default: the lecture's for its shapes)")
    q.add_argument("--out", metavar="DIR",
                   help="also write DIR/demo.html and DIR/demo.gif (default: only print the numbers)")
    p.set_defaults(parser=p)


def _zoo(sub, common) -> None:
    _command(sub, common, "zoo", cmd_zoo, "the ready-made models", "example:\n  cnnlab zoo\n")


def _lr_find(sub, common) -> None:
    p = _command(sub, common, "lr-find", cmd_lr_find,
                 "the learning-rate range test: a plot and a suggested rate", LR_FIND_EXAMPLES)
    p.add_argument("--model", choices=cl.zoo.names(), default=RECIPE["model"], metavar="NAME",
                   help=f"zoo model (default {RECIPE['model']})")
    p.add_argument("--data", metavar="NAME|PATH", help="dataset name or folder (default: Fashion-MNIST)")
    p.add_argument("--input", type=shape_chw, metavar="CxHxW",
                   help="model input for image folders, C×H×W: channels first, e.g. 3x64x64")
    p.add_argument("--limit", type=positive_int, metavar="N", help="use only the first N training images")
    p.add_argument("-b", "--batch-size", type=positive_int, default=RECIPE["batch-size"], metavar="N",
                   help=f"default {RECIPE['batch-size']}")
    p.add_argument("--optimizer", choices=list(LR), default=RECIPE["optimizer"],
                   help=f"default {RECIPE['optimizer']}")
    p.add_argument("--momentum", type=fraction, metavar="M", help="sgd/rmsprop (default 0.9 for sgd)")
    p.add_argument("--weight-decay", type=non_negative, metavar="WD",
                   help="default 5e-4 (sgd), 1e-2 (adamw)")
    p.add_argument("--start", type=positive, default=1e-7, metavar="LR", help="first rate (default 1e-7)")
    p.add_argument("--end", type=positive, default=10.0, metavar="LR", help="last rate (default 10)")
    p.add_argument("--steps", type=positive_int, default=100, metavar="N",
                   help="at most N steps (default 100)")
    p.add_argument("--seed", type=natural, default=RECIPE["seed"], metavar="N",
                   help="weights and sample order (default 0)")
    p.add_argument("--out", default="lr-find.png", metavar="PNG",
                   help="where the plot goes (default lr-find.png; replaced if it exists)")


def _export(sub, common) -> None:
    p = _command(sub, common, "export", cmd_export, "a model file as ONNX (onnxruntime, other runtimes)",
                 EXPORT_EXAMPLES)
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--opset", type=positive_int, default=17, metavar="N",
                   help="ONNX operator set (default 17; 14 up to the onnx package's newest)")


def _convert(sub, common) -> None:
    p = _command(sub, common, "convert", cmd_convert,
                 "pretrained torchvision/timm weights (safetensors) → a cnnlab model file",
                 CONVERT_EXAMPLES)
    p.add_argument("weights", metavar="WEIGHTS", help="a .safetensors state_dict")
    p.add_argument("--model", required=True, choices=sorted(cl.zoo.LAYOUTS), metavar="NAME",
                   help=f"its architecture: {', '.join(sorted(cl.zoo.LAYOUTS))}")
    p.add_argument("--out", required=True, metavar="FILE", help="the cnnlab model file to write")
    p.add_argument("--classes", metavar="imagenet|FILE",
                   help="class names: imagenet (default for 1,000 classes) or a file, one a line")
    p.add_argument("--input", type=shape_chw, metavar="CxHxW",
                   help="model input, channels first (default 3x224x224)")
    p.add_argument("--resize", type=positive_int, metavar="N",
                   help="shorter side before the centre crop (default: 256 for a 224×224 input)")
