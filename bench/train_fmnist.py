"""Fashion-MNIST time to accuracy: cnnlab's recipes on the full data set, PyTorch beside them.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/train_fmnist.py --recipe fast --seed 1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/train_fmnist.py --recipe fast --torch-only

Needs Debian's dataset-fashion-mnist (60,000 training, 10,000 test images). The protocol is
`cnnlab train`'s: a stratified tenth of the training images (drawn from --seed) is held out for
validation, scored after every epoch; the test split is scored once, after the last epoch, with
the recipe's test-time augmentation. `fast` and `strong` are the recipes shipped with cnnlab
(`cnnlab train --recipe NAME` trains the same run: same split, weights, batches and learning
rates); the others are defined here. --torch trains the same network in PyTorch too (same
initial weights, same batches and augmentation, same learning rate at every step, the same
final test with the same TTA); --torch-only trains only that side. Prints each epoch and the
wall time. Not a test: numbers go in the issue's closing note.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import cnnlab as cl  # noqa: E402
from cnnlab.cli import build_parser  # noqa: E402
from cnnlab.cli.train import make_augment, make_schedule, recipe_options  # noqa: E402
from cnnlab.train.inputs import hold_out  # noqa: E402

# the recipes not shipped with cnnlab, as `cnnlab train` options: SGD with Nesterov momentum, a
# cosine schedule warming up over a tenth of training (at most one epoch)
STRONG = {"lr": 0.1, "momentum": 0.9, "weight-decay": 5e-4, "schedule": "cosine",
          "augment": "flip-crop", "label-smoothing": 0.1, "batch-size": 128, "tta": "none"}
RECIPES = {
    # DESIGN.md's reference CNN with `cnnlab train`'s default recipe, on the full set
    "default": {**STRONG, "model": "fmnist-cnn", "epochs": 5, "lr": 0.05, "augment": "none",
                "label-smoothing": 0.0},
    "fast": None, "strong": None, "long": None,  # cli/recipes/NAME.toml
    # the CIFAR-style ResNets of cl.zoo (no dropout: weight decay and smoothing regularise)
    "resnet8": {**STRONG, "model": "resnet8", "epochs": 30},
    "resnet20": {**STRONG, "model": "resnet20", "epochs": 12},
}


def recipe(name: str) -> dict:
    if RECIPES[name] is not None:
        return RECIPES[name]
    return recipe_options(name, build_parser().parse_args(["train"]).actions)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--recipe", choices=RECIPES, default="fast")
    parser.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    parser.add_argument("--seed", type=int, default=0, help="weights, split, order, augmentation")
    parser.add_argument("--torch", action="store_true", help="also train the same network in PyTorch")
    parser.add_argument("--torch-only", action="store_true",
                        help="train only the PyTorch side (when cnnlab's run was done separately)")
    parser.add_argument("--limit", type=int, help="use only the first N training images (smoke runs)")
    parser.add_argument("--out", default=None, help="run folder for cnnlab's checkpoints and metrics.csv")
    args = parser.parse_args()
    opts = dict(recipe(args.recipe))
    opts["epochs"] = args.epochs or opts["epochs"]
    common.limit_threads()
    print(f"BLAS: {common.blas_info()}   NumPy sgemm 2048×2048: {common.sgemm_gflops():.1f} GFLOP/s")

    x, y = cl.data.load("fashion-mnist", "train")
    test = cl.data.load("fashion-mnist", "test")
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    (x, y), val = hold_out((x, y), None, 0.1, args.seed)  # as cnnlab train --val-split 0.1
    model = cl.zoo.get(opts["model"], seed=args.seed)
    model.preprocess = cl.data.Preprocess.fit(x)
    train = cl.data.Loader(x, y, opts["batch-size"], shuffle=True, seed=args.seed,
                           preprocess=model.preprocess, transform=make_augment(opts["augment"]))
    schedule = make_schedule(opts["schedule"], opts["lr"], opts["epochs"], len(train))
    torch = common.torch_or_none() if args.torch or args.torch_only else None
    torch_model = common.to_torch(model, torch) if torch else None  # before cnnlab trains
    print(f"recipe {args.recipe}, seed {args.seed}: {opts['model']} ({model.count_params():,} "
          f"parameters), {opts['epochs']} epochs, {len(x):,} training and {len(val[1]):,} "
          f"validation images, options {opts}")
    if not args.torch_only:
        optimizer = cl.optim.SGD(model, lr=opts["lr"], momentum=opts["momentum"], nesterov=True,
                                 weight_decay=opts["weight-decay"])
        started = time.perf_counter()
        history = cl.fit(model, train, loss=cl.SoftmaxCrossEntropy(opts["label-smoothing"]),
                         optimizer=optimizer, epochs=opts["epochs"], val=val, test=test,
                         schedule=schedule, tta=opts["tta"], seed=args.seed, out=args.out,
                         progress=False)
        wall = time.perf_counter() - started
        print(f"cnnlab: test accuracy {100 * history.test['accuracy']:.2f}% (tta {opts['tta']}; "
              f"top-5 {100 * history.test['top5']:.2f}%), last validation "
              f"{100 * history['val_acc'][-1]:.2f}%, {wall / 60:.1f} min, peak RSS "
              f"{common.peak_rss_mib():.0f} MiB")
    if torch_model is not None:
        train_torch(torch, torch_model, train, (val, test), model.preprocess, opts, schedule)


def _accuracy(torch, net, x, y, tta: str = "none") -> float:
    net.eval()
    with torch.no_grad():
        correct = 0
        for i in range(0, len(x), 512):
            scores = net(x[i : i + 512])
            if tta == "flip":
                scores = (scores + net(x[i : i + 512].flip(-1))) * 0.5
            correct += int((scores.argmax(1) == y[i : i + 512]).sum())
    return correct / len(y)


def train_torch(torch, net, train, held, preprocess, opts: dict, schedule) -> None:
    optimizer = torch.optim.SGD(net.parameters(), lr=opts["lr"], momentum=opts["momentum"],
                                nesterov=True, weight_decay=opts["weight-decay"])
    (xv, yv), (xt, yt) = ((torch.from_numpy(preprocess(a)), torch.from_numpy(b)) for a, b in held)
    steps = len(train)
    started = time.perf_counter()
    for epoch in range(opts["epochs"]):
        net.train()
        tick = time.perf_counter()
        for b, (xb, yb) in enumerate(train.batches(epoch)):
            for group in optimizer.param_groups:
                group["lr"] = schedule(epoch + b / steps)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(xb)), torch.from_numpy(yb),
                                                     label_smoothing=opts["label-smoothing"])
            loss.backward()
            optimizer.step()
        print(f"pytorch epoch {epoch + 1}/{opts['epochs']}  val acc "
              f"{100 * _accuracy(torch, net, xv, yv):.2f}%  {time.perf_counter() - tick:.1f} s",
              flush=True)
    accuracy = _accuracy(torch, net, xt, yt, opts["tta"])
    print(f"pytorch: test accuracy {100 * accuracy:.2f}% (tta {opts['tta']}), "
          f"{(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
