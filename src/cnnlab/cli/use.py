"""Using a trained model: `cnnlab evaluate` (accuracy, per-class accuracy, confusion matrix on a
split) and `cnnlab predict` (the most likely classes of image files).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import cnnlab as cl
from cnnlab.cli.common import Failure, one_line, printable, say
from cnnlab.cli.runs import recorded_data
from cnnlab.data.folder import read_image
from cnnlab.data.sources import Source, default_data
from cnnlab.metrics import format_confusion
from cnnlab.train import progress as bars


def cmd_evaluate(args) -> int:
    """cnnlab evaluate MODEL [--data NAME|PATH] [--split S]: without --data, the data recorded in
    the model's run directory, else the default data."""
    model = cl.load(args.model)
    spec = args.data if args.data is not None else recorded_data(Path(args.model).parent)
    # holdout: an image folder's held-out tenth, as train chose it (--split all: every image)
    source = Source(spec or default_data(report=say), holdout=True, report=say,
                    lazy=True if args.comm is not None else None)
    x, y, classes, what = source.load_for(model, args.split, args.model)
    k = min(5, len(classes))
    # under mpiexec each process scores its share and the counts are summed (rank 0 prints)
    result = cl.evaluate(model, (x, y), loss=cl.SoftmaxCrossEntropy(), k=k,
                         progress=False if args.quiet or args.comm else None, comm=args.comm,
                         tta=args.tta)
    if args.json:
        print(json.dumps(_evaluation_json(args.model, source, what, classes, k, result, args.tta),
                         allow_nan=False))
        return 0
    tta = "" if args.tta == "none" else f", test-time augmentation {args.tta}"
    print(printable(f"{args.model} on {source.describe()}, {what} split: {len(y):,} images{tta}"))
    print(f"accuracy {100 * result['accuracy']:.2f}%   top-{k} {100 * result[f'top{k}']:.2f}%   "
          f"loss {result['loss']:.4f}\n")
    shown = [printable(name) for name in classes]  # names from folders or files: no escapes
    width = max(len("class"), *(len(n) for n in shown))
    print(f"{'class':<{width}}  accuracy  images")
    counts = result["confusion"].sum(axis=1)
    for name, acc, count in zip(shown, result["per_class"], counts, strict=True):
        text = "—" if np.isnan(acc) else f"{100 * acc:.1f}%"
        print(f"{name:<{width}}  {text:>8}  {count:>6,}")
    print("\n" + format_confusion(result["confusion"], shown))
    return 0


def _evaluation_json(model: str, source: Source, what: str, classes: list[str], k: int,
                     result: dict, tta: str = "none") -> dict:
    """evaluate --json: the same keys for every model and dataset (top_k says what `top` is)."""
    counts = result["confusion"].sum(axis=1)
    return {
        "model": str(model), "data": source.describe(), "split": what, "tta": tta, "n": result["n"],
        "accuracy": _finite(result["accuracy"]), "top_k": k, "top": _finite(result[f"top{k}"]),
        "loss": _finite(result["loss"]),
        "classes": classes,
        "per_class": [{"class": name, "accuracy": _finite(acc), "n": int(n)}
                      for name, acc, n in zip(classes, result["per_class"], counts, strict=True)],
        "confusion": result["confusion"].tolist(),
    }


def _finite(value) -> float | None:
    """A number for JSON: null when NaN or infinite (JSON has neither; output stays valid JSON)."""
    return float(value) if np.isfinite(value) else None


def cmd_predict(args) -> int:
    """cnnlab predict MODEL IMAGE... [--json] [--top K]: exit status 1 if any image failed."""
    model = cl.load(args.model)
    if model.preprocess is None:
        raise Failure(f"{args.model} records no preprocessing (it was trained on float arrays), so "
                      "cnnlab cannot turn image files into its input; train it on uint8 images "
                      "(cl.fit measures the preprocessing), or set model.preprocess = "
                      "cl.data.Preprocess(mean, std) and save it again")
    classes = model.class_names or [str(i) for i in range(model.out_shape[-1])]
    k = min(args.top, len(classes))
    failed = 0
    # a bar over many files only when the predictions go elsewhere than the terminal's screen
    show = len(args.images) > 1 and not args.quiet and not sys.stdout.isatty() and bars.wanted(None)
    bar = bars.bar(len(args.images), "predict", unit="file") if show else None
    for path in args.images:
        if bar is not None:
            bar.update(1)
        try:
            image, note = read_image(path, model.input_shape, model.preprocess.resize)
        except cl.DataError as error:
            say(f"cnnlab: error: {one_line(error)}")
            failed += 1
            continue
        if note:
            say(note)
        probs = cl.predict(model, image[None], tta=args.tta)[0]
        top = np.argsort(-probs, kind="stable")[:k]
        if args.json:
            print(json.dumps({"file": path, "top": [
                {"class": classes[i], "prob": None if (p := _finite(probs[i])) is None else round(p, 6)}
                for i in top]}, allow_nan=False), flush=True)
        else:
            names = [printable(classes[i]) for i in top]
            width = max(map(len, names))
            print("\n".join([printable(path), *(f"  {name:<{width}}  {100 * probs[i]:6.2f}%"
                                                 for name, i in zip(names, top, strict=True))]))
    if bar is not None:
        bar.close()
    return 1 if failed else 0
