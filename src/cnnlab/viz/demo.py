"""The lecture's convolution demo, for any small configuration: an animated GIF and an HTML page.

    demo = cl.viz.conv_demo()                    # the lecture's 5×5×3 input, W0, W1, b = 1, 0
    demo.output[0]                               # o[:, :, 0] = [[-3, -1, 0], [-1, -8, 2], [3, 0, 3]]
    demo.save("demo/")                           # demo/demo.gif and demo/demo.html
    cl.viz.conv_demo((7, 7, 1), filters=1, size=3, stride=2, pad=0, seed=0)

The output values are computed by cnnlab's own `Conv2D` (built, weights set, forward), so the
pictures show what the library computes. Volumes are H×W×D, depth last, as the lecture writes
them; the arrays inside are cnnlab's (C, H, W) and (K, C, F, F).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.files import atomic_write
from cnnlab.layers import Conv2D
from cnnlab.viz.demo_gif import gif
from cnnlab.viz.demo_page import page
from cnnlab.viz.typography import minus

# The lecture's demo: a 5×5×3 input (shown padded by 1), two 3×3×3 filters, biases 1 and 0,
# stride 2 (../shared/seed/000_7f61f30a1af053e2.txt); channel d is the lecture's x[:, :, d].
LECTURE_X = [
    [[0, 0, 2, 0, 2], [1, 2, 2, 2, 0], [0, 2, 1, 0, 0], [0, 2, 0, 2, 1], [1, 0, 2, 2, 0]],
    [[1, 0, 0, 2, 0], [1, 0, 1, 0, 1], [0, 0, 2, 1, 2], [1, 2, 1, 0, 0], [1, 2, 2, 0, 2]],
    [[0, 2, 2, 1, 0], [0, 2, 0, 0, 1], [1, 1, 1, 2, 1], [2, 0, 1, 2, 2], [2, 1, 1, 0, 0]],
]
LECTURE_W = [
    [[[-1, 0, -1], [1, -1, 1], [-1, 0, -1]], [[0, -1, 1], [1, 1, 1], [-1, 1, -1]],
     [[0, 0, 0], [-1, 1, -1], [1, 1, -1]]],
    [[[0, 1, 1], [-1, -1, -1], [1, -1, 1]], [[-1, 0, -1], [1, 1, 1], [-1, 1, -1]],
     [[0, 1, 0], [0, 0, -1], [1, -1, 0]]],
]
LECTURE_B = [1, 0]

#: what "small" means: the page shows every number, so volumes stay readable
LIMITS = {"padded height and width": 16, "depth": 4, "filters": 4}


@dataclass
class ConvDemo:
    """One convolution worked through position by position. Arrays are cnnlab's layouts:
    x (D, H, W), weight (K, D, F, F), bias (K,), output (K, H2, W2) — from Conv2D.forward."""

    x: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    stride: int
    pad: int
    output: np.ndarray
    lecture: bool = False
    x_pad: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p = self.pad
        self.x_pad = np.pad(self.x, ((0, 0), (p, p), (p, p)))

    @property
    def steps(self) -> list[tuple[int, int, int]]:
        """(k, i, j) for every output value, filter by filter, row by row: the animation's order."""
        k, h2, w2 = self.output.shape
        return [(f, i, j) for f in range(k) for i in range(h2) for j in range(w2)]

    def window(self, i: int, j: int) -> np.ndarray:
        """The (D, F, F) block of the padded input that output position (i, j) sees."""
        f, s = self.weight.shape[-1], self.stride
        return self.x_pad[:, i * s : i * s + f, j * s : j * s + f]

    def channel_sums(self, k: int, i: int, j: int) -> list[float]:
        """Σ w[k, d] · window[d] for every depth slice d."""
        return [float(v) for v in (self.weight[k] * self.window(i, j)).sum(axis=(1, 2))]

    def equation(self, k: int, i: int, j: int) -> str:
        """The dot product with its numbers, one depth slice a line, weight·input:
        "(−1·0) + (0·0) + … + (−1·1) = −2 …  + 1 = −3"."""
        lines = []
        for d, total in enumerate(self.channel_sums(k, i, j)):
            pairs = zip(self.weight[k, d].ravel(), self.window(i, j)[d].ravel(), strict=True)
            terms = " + ".join(f"({minus(w)}·{minus(x)})" for w, x in pairs)
            lead = "  " if d == 0 else "+ "
            lines.append(f"{lead}{terms} = {minus(total)}   [w{k}[:, :, {d}] · x[:, :, {d}]]")
        lines.append(f"+ {minus(self.bias[k])}   [b{k}]")
        lines.append(f"= {minus(self.output[k, i, j])}   = o[{i}, {j}, {k}]")
        return "\n".join(lines)

    def data(self) -> dict:
        """Everything the page needs, as JSON-ready lists (the page's embedded data)."""
        d, h, w = self.x.shape
        k, h2, w2 = self.output.shape
        f = self.weight.shape[-1]
        return {
            "input": self.x.astype(int).tolist(), "weights": self.weight.astype(int).tolist(),
            "bias": self.bias.astype(int).tolist(), "output": self.output.astype(int).tolist(),
            "stride": self.stride, "pad": self.pad, "lecture": self.lecture,
            "shape": {"H": h, "W": w, "D": d, "K": k, "F": f, "H2": h2, "W2": w2},
            "formula": self.formula(),
        }

    def formula(self) -> str:
        d, h, w = self.x.shape
        f, s, p = self.weight.shape[-1], self.stride, self.pad
        h2, w2 = self.output.shape[1:]
        parts = [f"H2 = (H − F + 2P)/S + 1 = ({h} − {f} + 2·{p})/{s} + 1 = {h2}"]
        parts.append(f"W2 = ({w} − {f} + 2·{p})/{s} + 1 = {w2}")
        return ";  ".join(parts)

    def title(self) -> str:
        d, h, w = self.x.shape
        k, f = self.weight.shape[0], self.weight.shape[-1]
        h2, w2 = self.output.shape[1:]
        return (f"Input {h}×{w}×{d}, K = {k} filter{'s' if k > 1 else ''} of {f}×{f}×{d}, "
                f"stride S = {self.stride}, padding P = {self.pad} → output {h2}×{w2}×{k}")

    def to_text(self, width: int = 100) -> str:
        """The volumes' numbers as the lecture's slide lays them out, for a terminal: the padded
        input, each filter with its bias, the output, one depth slice a grid, grids side by side
        (wrapped at `width` columns), then the output-size arithmetic."""
        d, h, w = self.x.shape
        k, f = self.weight.shape[0], self.weight.shape[-1]
        h2, w2 = self.output.shape[1:]
        padded = f" (+pad {self.pad})" if self.pad else ""
        hp, wp = self.x_pad.shape[1:]
        sections = [(f"Input Volume{padded} ({hp}×{wp}×{d})",
                     [(f"x[:, :, {c}]", self.x_pad[c]) for c in range(d)])]
        for n in range(k):
            grids = [(f"w{n}[:, :, {c}]", self.weight[n, c]) for c in range(d)]
            grids.append((f"b{n}[:, :, 0]", self.bias[n : n + 1, None]))
            sections.append((f"Filter W{n} ({f}×{f}×{d}), Bias b{n} (1×1×1)", grids))
        sections.append((f"Output Volume ({h2}×{w2}×{k})",
                         [(f"o[:, :, {n}]", self.output[n]) for n in range(k)]))
        lines = []
        for title, grids in sections:
            lines += [title, *_side_by_side(grids, width), ""]
        return "\n".join([*lines, self.formula()])

    def to_html(self) -> str:
        return page(self)

    def to_gif(self, *, duration_ms: int = 900, progress: bool | None = None) -> bytes:
        return gif(self, duration_ms=duration_ms, progress=progress)

    def save(self, out: str | os.PathLike, *, progress: bool | None = None) -> tuple[Path, Path]:
        """Writes out/demo.gif and out/demo.html (creating the folder); returns both paths.
        `progress`: a bar over the GIF's frames (cnnlab.train.progress's rule)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "demo.gif", self.to_gif(progress=progress))
        atomic_write(out / "demo.html", self.to_html().encode("utf-8"))
        return out / "demo.gif", out / "demo.html"


def _side_by_side(grids: list[tuple[str, np.ndarray]], width: int) -> list[str]:
    """Labelled grids of integers next to each other, 3 spaces apart, as many a row as fit in
    `width` columns (at least one); numbers right-aligned to the widest of all."""
    cell = max(len(minus(v)) for _, grid in grids for v in grid.ravel())
    blocks = []
    for label, grid in grids:
        rows = [" ".join(f"{minus(v):>{cell}}" for v in row) for row in grid]
        size = max(len(label), len(rows[0]))
        blocks.append([label.ljust(size), *(r.ljust(size) for r in rows)])
    lines, row = [], []
    for block in blocks:
        if row and sum(len(b[0]) + 3 for b in row) + len(block[0]) > width:
            lines += _join(row)
            row = []
        row.append(block)
    return lines + _join(row)


def _join(blocks: list[list[str]]) -> list[str]:
    height = max(len(b) for b in blocks)
    padded = [b + [" " * len(b[0])] * (height - len(b)) for b in blocks]
    return ["   ".join(parts).rstrip() for parts in zip(*padded, strict=True)]


def _parse_volume(shape) -> tuple[int, int, int]:
    if isinstance(shape, str):
        parts = shape.lower().replace("×", "x").split("x")
        if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"conv_demo: input must be H×W×D such as 5x5x3. Received: {shape!r}")
        shape = tuple(int(p) for p in parts)
    h, w, d = (int(v) for v in shape)
    return h, w, d


def conv_demo(input_shape=(5, 5, 3), filters: int = 2, size: int = 3, stride: int = 2,
              pad: int = 1, *, seed: int | None = None,
              out: str | os.PathLike | None = None) -> ConvDemo:
    """Works a convolution through with cnnlab's Conv2D and returns the `ConvDemo`; with `out`,
    also writes out/demo.gif and out/demo.html.

    input_shape is H×W×D (a tuple or "5x5x3"). The lecture's configuration (5×5×3 input, two
    3×3 filters) uses the lecture's numbers unless a seed is given; any other configuration
    (or a seed) draws small integers: inputs 0..2, weights and biases −1..1.
    """
    h, w, d = _parse_volume(input_shape)
    for name, value in (("input height", h), ("input width", w), ("depth", d), ("filters", filters),
                        ("size", size), ("stride", stride)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"conv_demo: {name} must be an integer ≥ 1. Received: {value!r}")
    if not isinstance(pad, int | np.integer) or pad < 0:
        raise ValueError(f"conv_demo: pad must be an integer ≥ 0. Received: {pad!r}")
    limit = LIMITS["padded height and width"]
    if max(h, w) + 2 * pad > limit or d > LIMITS["depth"] or filters > LIMITS["filters"]:
        raise ValueError(
            f"conv_demo: the demo shows every number, so it takes at most {limit}×{limit} after "
            f"padding, depth {LIMITS['depth']} and {LIMITS['filters']} filters. Received: input "
            f"{h}×{w}×{d} padded by {pad}, {filters} filters")
    conv = Conv2D(filters, size, stride=stride, padding=pad)
    conv.output_shape((d, h, w))  # a size that does not fit raises ShapeError with the arithmetic
    conv.build((d, h, w), dtype=np.float64)
    lecture = seed is None and (h, w, d, filters, size) == (5, 5, 3, 2, 3)
    if lecture:
        x, weight, bias = (np.array(a, np.float64) for a in (LECTURE_X, LECTURE_W, LECTURE_B))
    else:
        rng = np.random.default_rng(0 if seed is None else seed)
        x = rng.integers(0, 3, (d, h, w)).astype(np.float64)
        weight = rng.integers(-1, 2, conv.weight.data.shape).astype(np.float64)
        bias = rng.integers(-1, 2, filters).astype(np.float64)
    conv.weight.data[...] = weight
    conv.bias.data[...] = bias
    output = conv.forward(x[None])[0]
    demo = ConvDemo(x, weight, bias, stride, pad, np.rint(output), lecture=lecture)
    if out is not None:
        demo.save(out)
    return demo

