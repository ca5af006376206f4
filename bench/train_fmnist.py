"""Fashion-MNIST accuracy benchmark: cnnlab's recipes on the full data set, PyTorch beside them.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/train_fmnist.py --recipe default
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/train_fmnist.py --recipe strong --torch

Needs Debian's dataset-fashion-mnist (60,000 training, 10,000 test images). Prints the test
accuracy after every epoch and the wall time; with --torch, trains the same network (same
initial weights, same batches and augmentation, same learning rate at every step) in PyTorch.
Not a test: numbers go in the issue's closing note.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import cnnlab as cl  # noqa: E402
from cnnlab.data import transforms as T  # noqa: E402

# the strong recipe's optimiser, schedule and augmentation: SGD with Nesterov momentum, a
# longer cosine schedule after a one-epoch warm-up, label smoothing, flips and shifts
# (random erasing on top, tried 2026-11-25, left fmnist-cnn-bn underfitting: 93.19%)
STRONG = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, smoothing=0.1, warmup=1.0,
              augment=lambda: T.Compose([T.RandomFlip(), T.RandomCrop(2)]))

RECIPES = {
    # DESIGN.md's reference CNN with `cnnlab train`'s default recipe: SGD with Nesterov
    # momentum, cosine schedule warming up over the first tenth, no augmentation
    "default": dict(model="fmnist-cnn", epochs=5, lr=0.05, momentum=0.9, nesterov=True,
                    weight_decay=5e-4, smoothing=0.0, warmup=0.5, augment=lambda: None),
    # BatchNorm and dropout in the network
    "strong": dict(STRONG, model="fmnist-cnn-bn", epochs=30),
    # issue 6's benchmark: the CIFAR-style ResNets of cl.zoo (no dropout: weight decay and
    # smoothing regularise)
    "resnet8": dict(STRONG, model="resnet8", epochs=30),
    "resnet20": dict(STRONG, model="resnet20", epochs=12),
}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--recipe", choices=RECIPES, default="default")
    parser.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    parser.add_argument("--torch", action="store_true", help="also train the same network in PyTorch")
    parser.add_argument("--torch-only", action="store_true",
                        help="train only the PyTorch side (when cnnlab's run was done separately)")
    parser.add_argument("--limit", type=int, help="use only the first N training images (smoke runs)")
    parser.add_argument("--out", default=None, help="run folder for cnnlab's checkpoints and metrics.csv")
    args = parser.parse_args()
    recipe = RECIPES[args.recipe]
    epochs = args.epochs or recipe["epochs"]
    common.limit_threads()
    print(f"BLAS: {common.blas_info()}")

    x, y = cl.data.load("fashion-mnist", "train")
    xt, yt = cl.data.load("fashion-mnist", "test")
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    model = cl.zoo.get(recipe["model"], seed=0)
    model.preprocess = cl.data.Preprocess.fit(x)
    schedule = cl.optim.CosineLR(recipe["lr"], epochs, warmup=recipe["warmup"])
    train = cl.data.Loader(x, y, 128, shuffle=True, seed=0, preprocess=model.preprocess,
                           transform=recipe["augment"]())
    torch = common.torch_or_none() if args.torch or args.torch_only else None
    torch_model = common.to_torch(model, torch) if torch else None  # before cnnlab trains

    print(f"recipe {args.recipe}: {recipe['model']} ({model.count_params():,} parameters), "
          f"{epochs} epochs, {len(x):,} training images, batch 128, SGD lr {recipe['lr']} "
          f"momentum {recipe['momentum']}{' nesterov' if recipe['nesterov'] else ''}, "
          f"weight decay {recipe['weight_decay']}, label smoothing {recipe['smoothing']}, "
          f"cosine schedule with {recipe['warmup']} warm-up epoch")
    if not args.torch_only:
        optimizer = cl.optim.SGD(model, lr=recipe["lr"], momentum=recipe["momentum"],
                                 nesterov=recipe["nesterov"], weight_decay=recipe["weight_decay"])
        started = time.perf_counter()
        history = cl.fit(model, train, loss=cl.SoftmaxCrossEntropy(recipe["smoothing"]),
                         optimizer=optimizer, epochs=epochs, val=(xt, yt), schedule=schedule,
                         out=args.out, progress=False)
        wall = time.perf_counter() - started
        final = cl.evaluate(model, (xt, yt))
        print(f"cnnlab: test accuracy {100 * final['accuracy']:.2f}% (best epoch "
              f"{100 * max(history['val_acc']):.2f}%), top-5 {100 * final['top5']:.2f}%, "
              f"{wall / 60:.1f} min, peak RSS {common.peak_rss_mib():.0f} MiB")

    if torch_model is not None:
        train_torch(torch, torch_model, train, (xt, yt), model.preprocess, recipe, schedule, epochs)


def train_torch(torch, net, train, test, preprocess, recipe, schedule, epochs) -> None:
    optimizer = torch.optim.SGD(net.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                                nesterov=recipe["nesterov"], weight_decay=recipe["weight_decay"])
    xt = torch.from_numpy(preprocess(test[0]))
    yt = torch.from_numpy(test[1])
    steps = len(train)
    started = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        tick = time.perf_counter()
        for b, (xb, yb) in enumerate(train.batches(epoch)):
            for group in optimizer.param_groups:
                group["lr"] = schedule(epoch + b / steps)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(xb)), torch.from_numpy(yb),
                                                     label_smoothing=recipe["smoothing"])
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(xt[i : i + 512]).argmax(1) == yt[i : i + 512]).sum())
                          for i in range(0, len(xt), 512))
        print(f"pytorch epoch {epoch + 1}/{epochs}  test acc {100 * correct / len(yt):.2f}%  "
              f"{time.perf_counter() - tick:.1f} s", flush=True)
    print(f"pytorch: test accuracy {100 * correct / len(yt):.2f}%, "
          f"{(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
