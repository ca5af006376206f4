"""The argument parser of `cnnlab`: one function a command, each adding its flags, help text and
examples, and naming the function that runs it (args.run) and its parser (args.parser).
"""

from __future__ import annotations

import argparse

import cnnlab as cl
from cnnlab.cli.common import (
    fraction,
    natural,
    non_negative,
    padding,
    positive,
    positive_int,
    shape_chw,
    shape_hwd,
)
from cnnlab.cli.info import cmd_explain, cmd_summary, cmd_zoo
from cnnlab.cli.pictures import cmd_demo, cmd_report
from cnnlab.cli.train import AUGMENT, LR, RECIPE, SCHEDULES, cmd_train
from cnnlab.cli.use import cmd_evaluate, cmd_predict
from cnnlab.cli.weights import cmd_convert

RAW = argparse.RawDescriptionHelpFormatter

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
testing unless it has train/ and test/ subfolders).

Train, validation, test: --val-split (default 0.1) of the training images, stratified by class
and drawn from the seed after --limit, is held out for validation (a folder's own val/ is used
instead): the val_ columns, early stopping and best.safetensors come from it. The test split is
evaluated once, after training. The run directory gets metrics.csv, last.ckpt.safetensors,
best.safetensors, model.safetensors and config.toml (its options, usable with -c). A config file
holds the long flags as keys: epochs = 10, batch-size = 64, lr = 0.1.
"""

EVALUATE_EXAMPLES = """\
examples:
  cnnlab evaluate runs/fmnist-cnn-20250101-120000/model.safetensors
  cnnlab evaluate model.safetensors --data mnist --split test
  cnnlab evaluate model.safetensors --data photos/            # the tenth train held out
  cnnlab evaluate model.safetensors --data photos/test --split all

Without --data: the data recorded in the model's run directory (config.toml), else Fashion-MNIST.
An image folder without train/ and test/ subfolders is split as cnnlab train split it: --split
test (the default) scores the held-out tenth of each class (the 10th, 20th, ... file by name),
--split train the rest, --split all every image.
"""

PREDICT_EXAMPLES = """\
examples:
  cnnlab predict model.safetensors shirt.jpg boot.png
  cnnlab predict model.safetensors *.png --json --top 3

Each image is converted to the model's input with Pillow: grayscale or RGB, brought to its size
by the model's recorded rule (stretched, or its shorter side fitted and the middle cut out;
stderr says what changed). Colours are not inverted: Fashion-MNIST and MNIST show light
objects on a dark background, so invert a photo of a dark object on a light background first.
--json prints one object a line: {"file": ..., "top": [{"class": ..., "prob": ...}, ...]}
(--top K entries, most likely first).
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
    for add in (_train, _evaluate, _predict, _summary, _explain, _report, _demo, _zoo, _convert):
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

    option("--model", choices=cl.zoo.names(), metavar="NAME",
           help=f"zoo model: {', '.join(cl.zoo.names())} (default {RECIPE['model']})")
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
    option("--augment", choices=AUGMENT, help="default none")
    option("--seed", type=natural, metavar="N", help="weights, sample order, augmentation (default 0)")
    option("--out", metavar="DIR", help="run directory (default runs/<model>-<timestamp>)")
    option("--resume", metavar="CKPT|DIR", help="a checkpoint, or a run directory (its last one)")
    option("--limit", type=positive_int, metavar="N", help="use only the first N training images")
    option("--val-split", type=fraction, metavar="F",
           help="hold out this fraction of the training images, stratified by class, for validation "
                f"(default {RECIPE['val-split']}; 0: none)")
    option("--checkpoint-every", type=natural, metavar="N",
           help="also save last.ckpt.safetensors every N steps (default: at each epoch's end)")
    option("--weights", metavar="FILE",
           help="start from pretrained weights: a torchvision/timm state_dict in safetensors for "
                "--model (an ImageNet model; the data must have as many classes as its head)")
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
                   help="one JSON object: model, data, split, n, accuracy, top_k, top, loss, classes, "
                        "per_class, confusion")


def _predict(sub, common) -> None:
    p = _command(sub, common, "predict", cmd_predict, "the most likely classes of image files",
                 PREDICT_EXAMPLES)
    p.add_argument("model", metavar="MODEL", help="a .safetensors model file")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG, JPEG, ... files")
    p.add_argument("--json", action="store_true", help="one JSON object per line per image")
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="classes shown (default 5)")


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
        else:
            q.add_argument("--avg", action="store_true", help="average instead of max pooling")
    p.set_defaults(parser=p)


def _report(sub, common) -> None:
    p = _command(sub, common, "report", cmd_report, "an HTML report of a training run", REPORT_EXAMPLES)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by cnnlab train")
    p.add_argument("--data", metavar="NAME|PATH", help="test data (default: the run's)")


def _demo(sub, common) -> None:
    p = _command(sub, common, "demo", cmd_demo, "the lecture's animated demos as HTML pages and GIFs",
                 DEMO_EXAMPLES)
    demos = p.add_subparsers(dest="demo", metavar="DEMO", required=True)
    q = demos.add_parser("conv", help="the convolution demo", description="the convolution demo: "
                         "every output position with its dot product", epilog=DEMO_EXAMPLES,
                         formatter_class=RAW, parents=[common])
    q.add_argument("--input", type=shape_hwd, default=(5, 5, 3), metavar="HxWxD",
                   help="input volume H×W×D: depth last as the lecture writes it (default 5x5x3)")
    q.add_argument("--filters", type=positive_int, default=2, metavar="K", help="default 2")
    q.add_argument("--size", type=positive_int, default=3, metavar="F", help="extent (default 3)")
    q.add_argument("--stride", type=positive_int, default=2, metavar="S", help="default 2")
    q.add_argument("--pad", type=natural, default=1, metavar="P", help="zero padding (default 1)")
    q.add_argument("--seed", type=natural, metavar="N",
                   help="random numbers from this seed (default: the lecture's for its shapes)")
    q.add_argument("--out", required=True, metavar="DIR", help="folder for demo.html and demo.gif")
    p.set_defaults(parser=p)


def _zoo(sub, common) -> None:
    _command(sub, common, "zoo", cmd_zoo, "the ready-made models", "example:\n  cnnlab zoo\n")


CONVERT_EXAMPLES = """\
examples:
  cnnlab convert resnet18.safetensors --model resnet18 --out resnet18-imagenet.safetensors
  cnnlab convert model.safetensors --model se-resnet50 --out se50.safetensors   # timm/seresnet50
  cnnlab convert mine.safetensors --model resnet50 --classes classes.txt --out mine-cnnlab.safetensors
  cnnlab predict resnet18-imagenet.safetensors cat.jpg

WEIGHTS is a state_dict saved with safetensors (never a pickled .pth): the Hugging Face hub's
timm models publish model.safetensors (e.g. timm/resnet18.a1_in1k); a torchvision .pth becomes
one with safetensors.torch.save_file(torch.load(PTH), OUT) in your own environment. Names and
shapes are checked against --model; the number of classes is read from the file's classifier.
The model file records the preprocessing the published accuracies assume: ImageNet's mean and
std (GoogLeNet: 0.5 and 0.5), the shorter side resized to --resize (default 256 for a 224×224
input), then the centre crop; and the class names (--classes: imagenet, the default for 1,000
classes, or a text file with one name a line).
"""


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
