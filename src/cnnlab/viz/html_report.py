"""A training run as one self-contained HTML page: `report.html` in the run directory.

    path = cl.viz.report("runs/fmnist", model, x_test, y_test, class_names)

Images are inline (base64 PNG), the style is inline, nothing is fetched: the file can be mailed,
archived or opened offline. Sections: the model summary, the training curves, the confusion
matrix, the per-class accuracy, the first layer's filters, the feature maps of a few test
images and the most confident mistakes.
"""

from __future__ import annotations

import base64
import html
import os
import time
from pathlib import Path

import numpy as np

from cnnlab.data.sources import readable
from cnnlab.files import atomic_write
from cnnlab.losses import SoftmaxCrossEntropy, softmax
from cnnlab.train import History, evaluate
from cnnlab.viz import figures

SECTIONS = {  # id: heading, in the page's order
    "summary": "Model", "curves": "Training curves", "confusion": "Confusion matrix",
    "per-class": "Per-class accuracy", "filters": "First-layer filters",
    "feature-maps": "Feature maps", "mistakes": "Most confident mistakes",
}

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       margin: 0 auto; padding: 24px; max-width: 1180px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 8px; border-bottom: 1px solid #dde0e5; padding-bottom: 4px; }
nav a { margin-right: 14px; color: #1f5fbf; text-decoration: none; }
nav a:hover { text-decoration: underline; }
.headline { font-size: 17px; margin: 8px 0 14px; }
.headline b { font-size: 21px; }
pre { font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; background: #f6f7f9;
      border: 1px solid #dde0e5; border-radius: 6px; padding: 10px 14px; overflow-x: auto; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
table.classes { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.classes th, table.classes td { padding: 3px 12px; border-bottom: 1px solid #e6e8ec;
                                     text-align: right; }
table.classes th:first-child, table.classes td:first-child { text-align: left; }
.bar { display: inline-block; height: 10px; background: #4c8bd6; border-radius: 2px;
       vertical-align: middle; }
.note { color: #5a5f68; font-size: 13.5px; }
figure { margin: 14px 0; }
figcaption { color: #3a3f48; font-size: 14px; }
"""


def _image(png: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')


def _history(run_dir: Path, history) -> History | None:
    if history is None:
        csv = run_dir / "metrics.csv"
        return figures.read_metrics(csv) if csv.is_file() else None
    return history if isinstance(history, History) else History(history)


def _per_class_table(names: list[str], accuracy: np.ndarray, counts: np.ndarray) -> str:
    rows = ["<tr><th>class</th><th>accuracy</th><th></th><th>images</th></tr>"]
    for name, acc, count in zip(names, accuracy, counts, strict=True):
        text = "—" if np.isnan(acc) else f"{100 * acc:.1f}%"
        width = 0 if np.isnan(acc) else round(160 * acc)
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{text}</td>"
                    f'<td><span class="bar" style="width:{width}px"></span></td><td>{count:,}</td></tr>')
    return '<table class="classes">' + "".join(rows) + "</table>"


def _examples(y: np.ndarray, n: int) -> list[int]:
    """The first test image of each of the first n classes met: a few different things."""
    _, first = np.unique(y, return_index=True)
    return sorted(first.tolist())[:n]


def report(run_dir: str | os.PathLike, model, x: np.ndarray, y: np.ndarray,
           class_names: list[str] | None = None, *, history=None, data: str | None = None,
           examples: int = 3, max_mistakes: int = 16, title: str | None = None) -> Path:
    """Writes run_dir/report.html for `model` evaluated on the test images (x, y) and returns
    its path. `history`: a History or its rows (default: run_dir/metrics.csv when present);
    `data`: a few words on the test data for the headline; `examples`: the test images whose
    feature maps are shown; `max_mistakes`: the mistakes shown. Names that are not UTF-8 (class
    folders, paths: surrogate escapes) are shown with their bytes as \\xNN (readable)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y, np.int64)
    k = model.out_shape[-1]
    names = [readable(n) for n in (class_names or model.class_names or [str(i) for i in range(k)])]
    top = min(5, k)
    result = evaluate(model, (x, y), loss=SoftmaxCrossEntropy(), k=top, keep_scores=True)
    probs, matrix = softmax(result["scores"]), result["confusion"]
    body = {
        "summary": f"<pre>{html.escape(model.summary())}</pre>",
        "curves": _curves(_history(run_dir, history)),
        "confusion": _image(figures.confusion(matrix, names), "confusion matrix"),
        "per-class": _per_class_table(names, result["per_class"], matrix.sum(axis=1)),
        "filters": _filters(model),
        "feature-maps": _feature_maps(model, x, y, names, probs, examples),
        "mistakes": _image(figures.mistakes(model, x, y, names, probs=probs, k=max_mistakes),
                           "the most confidently wrong test images"),
    }
    on = f": {html.escape(readable(data))}" if data else ""
    headline = (f'<p class="headline">Test accuracy <b>{100 * result["accuracy"]:.2f}%</b> '
                f"(top-{top} {100 * result[f'top{top}']:.1f}%, loss {result['loss']:.4f}) on "
                f"{len(y):,} images{on}, evaluated once, after training.</p>")
    title = readable(title or f"cnnlab report: {run_dir.resolve().name}")
    path = run_dir / "report.html"
    atomic_write(path, _page(title, run_dir, headline, body).encode("utf-8"))
    return path


def _curves(history: History | None) -> str:
    if history is None or not len(history):
        return '<p class="note">No training history (metrics.csv) in this run.</p>'
    seconds = sum(v for v in history["seconds"] if v is not None)
    validated = any(v is not None for v in history["val_acc"])
    protocol = (" The validation curves are measured on data held out of training; the best "
                "checkpoint and early stopping were chosen on them, never on the test split."
                if validated else " No validation data: nothing was chosen on held-out images.")
    return (_image(figures.curves(history), "loss, accuracy and learning rate per epoch")
            + f'<p class="note">{len(history)} epoch{"s" if len(history) > 1 else ""}, '
            f"{seconds:.0f} s of training.{protocol}</p>")


def _filters(model) -> str:
    try:
        return _image(figures.filters(model), "the first layer's filters") + (
            '<p class="note">Each filter scaled to its own range: dark is its lowest weight, '
            "light its highest.</p>")
    except ValueError as error:
        return f'<p class="note">{html.escape(str(error))}</p>'


def _feature_maps(model, x: np.ndarray, y: np.ndarray, names: list[str], probs: np.ndarray,
                  examples: int) -> str:
    if not figures.activations(model, x[0]):
        return '<p class="note">The model has no convolution: no feature maps.</p>'
    shown = []
    for i in _examples(y, examples):
        p = int(probs[i].argmax())
        caption = (f"test image {i}: true {names[y[i]]}, predicted {names[p]} "
                   f"({100 * probs[i, p]:.1f}%)")
        png = figures.feature_maps(model, x[i], title=f"test image {i} ({names[y[i]]})")
        shown.append(f"<figure>{_image(png, caption)}<figcaption>{html.escape(caption)}"
                     "</figcaption></figure>")
    return "".join(shown) + (
        '<p class="note">The output of every convolution (before its activation), each map '
        "scaled to its own range: bright is high.</p>")


def _page(title: str, run_dir: Path, headline: str, body: dict[str, str]) -> str:
    nav = "".join(f'<a href="#{key}">{heading}</a>' for key, heading in SECTIONS.items())
    sections = "".join(f'<section id="{key}"><h2>{heading}</h2>{body[key]}</section>'
                       for key, heading in SECTIONS.items())
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">{html.escape(readable(str(run_dir)))} · written {time.strftime("%Y-%m-%d %H:%M")}
by cnnlab</p>
{headline}
<nav>{nav}</nav>
{sections}
</body>
</html>
"""
