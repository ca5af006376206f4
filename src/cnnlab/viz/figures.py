"""What a model learned, as PNG images: filters, feature maps, curves, the learning-rate range
test, confusion, mistakes.

Every function takes its data as arguments and returns the PNG bytes, also written to `path`
when one is given. Figures are `matplotlib.figure.Figure` objects rendered by the Agg canvas
directly: no pyplot, no global backend or state, safe in scripts, servers and threads.

    png = cl.viz.filters(model, path="filters.png")
    cl.viz.feature_maps(model, x_test[0], path="maps.png")
    cl.viz.curves("runs/fmnist/metrics.csv", path="curves.png")
    cl.viz.lr_curve(*cl.lr_find(model, (x, y), loss=..., optimizer=...), path="lr.png")
"""

from __future__ import annotations

import csv
import io as _io
import os

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from cnnlab.core import walk
from cnnlab.files import atomic_write
from cnnlab.layers import Conv2D, Dense, Flatten, Sequential
from cnnlab.train import History, predict, smooth, suggest_lr

#: the figures' resolution; 100 dpi keeps a report of a dozen figures under a few MB
DPI = 100


def _png(fig: Figure, path: str | os.PathLike | None) -> bytes:
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    data = buffer.getvalue()
    if path is not None:
        atomic_write(path, data)
    return data


def _normalize(a: np.ndarray, axes=None) -> np.ndarray:
    """Min–max scaled to [0, 1] over `axes` (a constant block becomes 0.5)."""
    a = np.asarray(a, np.float64)
    low, high = a.min(axis=axes, keepdims=True), a.max(axis=axes, keepdims=True)
    span = high - low
    return np.where(span > 0, (a - low) / np.where(span > 0, span, 1), 0.5)


def mosaic(tiles: np.ndarray, columns: int, zoom: int = 1) -> np.ndarray:
    """(N, h, w) or (N, h, w, 3) tiles → one image of ceil(N/columns) rows with 1-pixel NaN
    gaps between tiles (drawn as the background); `zoom` repeats each pixel zoom×zoom times
    first, so the gaps stay thin beside 3×3 filters."""
    tiles = np.repeat(np.repeat(tiles, zoom, axis=1), zoom, axis=2)
    n, h, w = tiles.shape[:3]
    rows = -(-n // columns)
    out = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1, *tiles.shape[3:]), np.nan)
    for k in range(n):
        r, c = divmod(k, columns)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = tiles[k]
    return out


def _show(ax, image: np.ndarray, cmap: str = "gray", gap: str = "white") -> None:
    """An (h, w) array or an (h, w, 3) RGB array in [0, 1], NaN in the colour `gap`, no axes."""
    if image.ndim == 3:
        image = np.where(np.isnan(image), np.asarray(to_rgb(gap))[None, None], image)
        ax.imshow(image, interpolation="nearest")
    else:
        ax.imshow(np.ma.masked_invalid(image), cmap=colormaps[cmap].with_extremes(bad=gap),
                  interpolation="nearest", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def _stack(blocks: list[tuple[str, np.ndarray, str, float]], width: float, gap: str = "white"):
    """A figure of pictures one under the other, each with its title above it, left-aligned:
    blocks of (title, picture, cmap, largest height in inches). Positions are computed here,
    not by a layout engine: several times faster for figures made only of images."""
    pad, band = 0.15, 0.32
    sizes = []
    for _, picture, _, most in blocks:
        h, w = picture.shape[:2]
        height = min(width * h / w, most)
        sizes.append((height * w / h, height))
    fig_w = width + 2 * pad
    fig_h = sum(height + band for _, height in sizes) + pad
    fig = Figure(figsize=(fig_w, fig_h))
    top = fig_h
    for (title, picture, cmap, _), (w, h) in zip(blocks, sizes, strict=True):
        top -= band + h
        ax = fig.add_axes((pad / fig_w, top / fig_h, w / fig_w, h / fig_h))
        _show(ax, picture, cmap, gap)
        ax.set_title(title, fontsize=9, loc="left")
    return fig


def as_picture(image: np.ndarray) -> np.ndarray:
    """One image (C, H, W) as something imshow shows: (H, W) gray or (H, W, 3) RGB in [0, 1]."""
    image = np.asarray(image)
    scaled = image / 255.0 if image.dtype == np.uint8 else _normalize(image)
    return scaled[0] if image.shape[0] != 3 else np.moveaxis(scaled, 0, -1)


def _layers(model) -> list:
    """The model's layers in order, nested Sequentials flattened."""
    flat = []
    for layer in model.layers:
        flat.extend(_layers(layer) if isinstance(layer, Sequential) else [layer])
    return flat


# -------------------------------------------------------------------- filters
def first_layer_weights(model) -> tuple[str, np.ndarray]:
    """(layer name, weights (K, C, F_h, F_w)): the first 2-D convolution's filters (inside
    containers too), or for a model without one (the lecture's stretched-pixel MLP) the first
    Dense layer's rows as images of the input's shape."""
    for name, layer in walk(model):
        if isinstance(layer, Conv2D) and layer.weight is not None and layer.weight.data.ndim == 4:
            return name, layer.weight.data
    layers = _layers(model)
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense) and i > 0 and isinstance(layers[i - 1], Flatten) \
                and len(model.input_shape) == 3:
            return layer.name, layer.weight.data.reshape(layer.units, *model.input_shape)
    raise ValueError(f"filters: {type(model).__name__} has no 2-D convolution (nor a Dense layer on "
                     "the flattened image) whose weights could be shown as images")


def filters(model, *, path: str | os.PathLike | None = None, max_filters: int = 64) -> bytes:
    """The first layer's filters as an image grid, each filter scaled to its own min..max
    (RGB when the input has 3 channels, else gray; more channels are averaged)."""
    name, weights = first_layer_weights(model)
    w = np.asarray(weights[:max_filters], np.float64)
    k, c = w.shape[:2]
    if c == 3:
        tiles = _normalize(np.moveaxis(w, 1, -1), axes=(1, 2, 3))
    else:
        tiles = _normalize(w.mean(axis=1), axes=(1, 2))
    columns = min(k, 8 if k <= 32 else 16)
    grid = mosaic(tiles, columns, zoom=max(1, 24 // max(w.shape[2:])))
    total = len(weights)
    shown = "" if k == total else f", the first {k}"
    what = "filters" if w.shape[2:] != model.input_shape[1:] else "weight templates"
    title = f"{name}: {total} {what} of {w.shape[2]}×{w.shape[3]}×{c}{shown}"
    return _png(_stack([(title, grid, "gray", 9.0)], min(0.9 * columns, 10.0), gap="#8fb3de"), path)


# --------------------------------------------------------------- feature maps
def activations(model, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """[(layer name, maps (K, H, W))] for every 2-D convolution of `model`, containers
    included, for one image (C, H, W); uint8 pixels go through model.preprocess (/255
    without one). Runs one inference forward pass, recording each convolution's output by
    wrapping its forward for the duration of the call (not thread-safe on a shared model)."""
    x = np.asarray(image)[None]
    if x.dtype == np.uint8:
        x = model.preprocess(x) if model.preprocess is not None else x.astype(model.dtype) / 255
    convs = [(name, layer) for name, layer in walk(model)
             if isinstance(layer, Conv2D) and layer.ndim == 2]
    seen: dict[int, np.ndarray] = {}

    def recording(layer, forward):
        def run(inputs, *, training=False):
            y = forward(inputs, training=training)
            seen[id(layer)] = y[0]
            return y
        return run

    try:
        for _, layer in convs:
            layer.forward = recording(layer, layer.forward)
        model.forward(x.astype(model.dtype, copy=False))
    finally:
        for _, layer in convs:
            vars(layer).pop("forward", None)
    return [(name, seen[id(layer)]) for name, layer in convs if id(layer) in seen]


def feature_maps(model, image: np.ndarray, *, path: str | os.PathLike | None = None,
                 max_maps: int = 16, title: str | None = None) -> bytes:
    """The activation maps of every convolution for one image (C, H, W): a row per layer,
    the first `max_maps` maps of each, every map scaled to its own min..max (bright = high)."""
    layers = activations(model, image)
    if not layers:
        raise ValueError("feature_maps: the model has no 2-D convolution")
    columns = 8
    blocks = [(f"{title or 'input'}: {'×'.join(map(str, image.shape[1:]))}×{image.shape[0]}",
               as_picture(image), "gray")]
    for layer, maps in layers:
        n = min(max_maps, len(maps))
        first = "" if n == len(maps) else f", the first {n}"
        name = f"{layer}: {len(maps)} maps of {maps.shape[1]}×{maps.shape[2]}{first}"
        blocks.append((name, mosaic(_normalize(maps[:n], axes=(1, 2)), min(columns, n)), "viridis"))
    sized = [(*block, 1.5 if i == 0 else 8.0) for i, block in enumerate(blocks)]
    return _png(_stack(sized, 8.0), path)


# --------------------------------------------------------------------- curves
def read_metrics(path: str | os.PathLike) -> History:
    """A run's metrics.csv (written by cl.fit) as a History: numbers, empty cells as None."""
    with open(path, newline="") as f:
        rows = [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                for row in csv.DictReader(f)]
    for row in rows:
        if row.get("epoch") is not None:
            row["epoch"] = int(row["epoch"])
    return History(rows)


def curves(history, *, path: str | os.PathLike | None = None) -> bytes:
    """Loss, accuracy and learning rate per epoch, training and validation, from a History,
    a list of its rows or a metrics.csv path."""
    if isinstance(history, str | os.PathLike):
        history = read_metrics(history)
    elif not isinstance(history, History):
        history = History(history)
    if not len(history):
        raise ValueError("curves: the history has no epochs")
    epochs = history["epoch"]
    fig = Figure(figsize=(11, 3.4))
    fig.subplots_adjust(left=0.055, right=0.985, bottom=0.15, top=0.9, wspace=0.25)
    panels = fig.subplots(1, 3)
    for ax, (label, keys, scale) in zip(panels, [
            ("loss", ("train_loss", "val_loss"), 1), ("accuracy (%)", ("train_acc", "val_acc"), 100),
            ("learning rate (end of epoch)", ("lr",), 1)], strict=True):
        for key in keys:
            values = [np.nan if v is None else scale * v for v in history[key]]
            if not np.all(np.isnan(values)):
                name = {"lr": "lr"}.get(key, "validation" if key.startswith("val") else "training")
                ax.plot(epochs, values, marker="o", markersize=4, label=name)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    panels[2].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))  # no offset text
    return _png(fig, path)


def lr_curve(lrs, losses, *, path: str | os.PathLike | None = None) -> bytes:
    """The learning-rate range test (cl.lr_find's lrs and losses): the loss and its smoothed
    curve against the learning rate on a log scale, the minimum of the smoothed loss and the
    suggested rate (cnnlab.train.suggest_lr: that minimum's rate / 10) marked."""
    lrs, losses = np.asarray(lrs, np.float64), np.asarray(losses, np.float64)
    suggestion, best = suggest_lr(lrs, losses)
    smoothed = smooth(losses)
    fig = Figure(figsize=(6.4, 4))
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.13, top=0.9)
    ax = fig.subplots()
    ax.plot(lrs, losses, color="0.7", linewidth=1, label="loss")
    ax.plot(lrs, smoothed, color="C0", linewidth=2, label="smoothed (EMA, β = 0.98)")
    ax.plot(lrs[best], smoothed[best], "o", color="C3", label=f"minimum at lr {lrs[best]:.2g}")
    ax.axvline(suggestion, color="C2", linestyle="--", label=f"suggested lr {suggestion:.2g} (÷ 10)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig, path)


# ------------------------------------------------------------------ confusion
def confusion(matrix: np.ndarray, class_names: list[str] | None = None, *,
              path: str | os.PathLike | None = None) -> bytes:
    """The confusion matrix (rows true, columns predicted): colour is the share of the true
    class, the numbers are counts (written when there are at most 20 classes)."""
    matrix = np.asarray(matrix)
    k = len(matrix)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = min(3 + 0.45 * k, 12)
    left, bottom, right, top = 1.25, 1.15, 1.3, 0.4  # inches: labels, colour bar, title
    fig_w, fig_h = left + size + right, bottom + size + top
    fig = Figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((left / fig_w, bottom / fig_h, size / fig_w, size / fig_h))
    shown = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    bar = fig.add_axes(((left + size + 0.2) / fig_w, bottom / fig_h, 0.18 / fig_w, size / fig_h))
    fig.colorbar(shown, cax=bar, label="share of the true class")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{matrix[i, j]}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), [n[:12] for n in names], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), [n[:12] for n in names], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: {int(np.trace(matrix)):,} of {int(matrix.sum()):,} right",
                 fontsize=10)
    return _png(fig, path)


# ------------------------------------------------------------------- mistakes
def worst_mistakes(probs: np.ndarray, labels: np.ndarray, k: int = 16) -> np.ndarray:
    """Indices of the wrong predictions, most confident first (at most k)."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    order = np.argsort(-probs[wrong, predicted[wrong]], kind="stable")
    return wrong[order[:k]]


def mistakes(model, x: np.ndarray, y: np.ndarray, class_names: list[str] | None = None, *,
             probs: np.ndarray | None = None, k: int = 16,
             path: str | os.PathLike | None = None) -> bytes:
    """The k most confidently wrong images of (x, y) with their true and predicted classes
    and the predicted probability. `probs` (cl.predict's output) skips the forward pass."""
    probs = predict(model, x) if probs is None else probs
    names = class_names or model.class_names or [str(i) for i in range(probs.shape[1])]
    worst = worst_mistakes(probs, y, k)
    wrong = int((probs.argmax(axis=1) != np.asarray(y)).sum())
    if not len(worst):
        fig = Figure(figsize=(5, 1))
        fig.text(0.5, 0.5, f"no mistakes on these {len(y):,} images", ha="center", va="center")
        return _png(fig, path)
    # one image holding every tile under a white band for its two lines of text: one axes
    # instead of k (drawing that many axes costs seconds)
    pictures = [as_picture(x[i]) for i in worst]
    pictures = [np.repeat(pic[..., None], 3, -1) if pic.ndim == 2 else pic for pic in pictures]
    h, w = pictures[0].shape[:2]
    band, gap = max(8, round(0.45 * h)), max(2, h // 8)
    columns = min(8, len(worst))
    rows = -(-len(worst) // columns)
    canvas = np.ones((rows * (band + h + gap), columns * (w + gap) - gap, 3))
    width = 1.3 * columns
    fig_w, fig_h = width + 0.3, width * canvas.shape[0] / canvas.shape[1] + 0.55
    fig = Figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0.15 / fig_w, 0.1 / fig_h, width / fig_w, (fig_h - 0.55) / fig_h))
    labels = []
    for n, i in enumerate(worst):
        r, c = divmod(n, columns)
        top, left = r * (band + h + gap), c * (w + gap)
        canvas[top + band : top + band + h, left : left + w] = pictures[n]
        p = int(probs[i].argmax())
        labels.append((left + w / 2, top + band / 2, f"true {names[int(y[i])][:12]}\n"
                       f"pred {names[p][:12]} {100 * probs[i, p]:.0f}%"))
    _show(ax, canvas)
    ax.set_axis_off()
    for cx, cy, text in labels:
        ax.text(cx, cy, text, ha="center", va="center", fontsize=7, linespacing=1.15)
    fig.suptitle(f"the {len(worst)} most confident of {wrong:,} mistakes", fontsize=10,
                 y=1 - 0.12 / fig_h, va="top")
    return _png(fig, path)
