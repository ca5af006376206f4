"""The convolution demo as an animated GIF (Pillow): one frame per output value.

Each frame shows the padded input volume (padding grey), the filters and biases and the output
maps, as the lecture's demo lays them out; the current window is blue, the current filter red,
the current output cell green; below, the dot product slice by slice and its sum.
"""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cnnlab.viz.typography import minus

CELL, GAP, MARGIN, LINE = 26, 14, 14, 18
COLOURS = {
    "text": "#1d1d1f", "grid": "#b8bcc4", "pad": "#eceef1", "pad_text": "#8a8f98",
    "window": "#cfe2ff", "window_edge": "#1f5fbf", "filter": "#ffe0dc", "filter_edge": "#c0392b",
    "out": "#d4f5cf", "out_edge": "#2e8b3a", "background": "#ffffff",
}


def _fonts() -> tuple[ImageFont.ImageFont, ImageFont.ImageFont]:
    """DejaVu Sans (shipped with matplotlib: it has −, × and ·), else Pillow's default font."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    try:
        return (ImageFont.truetype(str(folder / "DejaVuSans.ttf"), 13),
                ImageFont.truetype(str(folder / "DejaVuSans-Bold.ttf"), 13))
    except OSError:
        try:
            font = ImageFont.load_default(size=13)  # Pillow ≥ 10.1
        except TypeError:
            font = ImageFont.load_default()
        return font, font


class _Canvas:
    def __init__(self, demo) -> None:
        self.demo = demo
        self.font, self.bold = _fonts()
        d, hp, wp = demo.x_pad.shape
        k, f = demo.weight.shape[0], demo.weight.shape[-1]
        h2, w2 = demo.output.shape[1:]
        self.columns = [  # (header, table width in cells)
            (f"Input Volume (+pad {demo.pad}) ({hp}×{wp}×{d})", wp),
            *((f"Filter W{i} ({f}×{f}×{d})", f) for i in range(k)),
            (f"Output Volume ({h2}×{w2}×{k})", w2),
        ]
        self.x0 = []
        x = MARGIN
        for header, cells in self.columns:
            self.x0.append(x)
            x += max(cells * CELL, int(self.bold.getlength(header))) + 2 * GAP
        rows = [d * (LINE + hp * CELL + GAP), d * (LINE + f * CELL + GAP) + LINE + CELL + GAP,
                k * (LINE + h2 * CELL + GAP)]
        self.top = MARGIN + LINE + 6
        self.text_top = self.top + max(rows) + 4
        width = max(x, MARGIN + int(self.font.getlength(self._longest_line())) + MARGIN)
        self.size = (width, self.text_top + (d + 3) * LINE + MARGIN)

    def _longest_line(self) -> str:
        k, i, j = 0, 0, 0
        return max(self._lines(k, i, j), key=len)

    def _lines(self, k: int, i: int, j: int) -> list[str]:
        demo = self.demo
        sums = demo.channel_sums(k, i, j)
        lines = [f"o[{i}, {j}, {k}] = w{k} · (window of x) + b{k}, step "
                 f"{demo.steps.index((k, i, j)) + 1} of {len(demo.steps)}"]
        lines += [f"    w{k}[:, :, {d}] · x[:, :, {d}] = {minus(s)}" for d, s in enumerate(sums)]
        total = " + ".join(f"({minus(s)})" if s < 0 else minus(s) for s in sums)
        bias = demo.bias[k]
        lines.append(f"    {total} + {f'({minus(bias)})' if bias < 0 else minus(bias)} = "
                     f"{minus(demo.output[k, i, j])}")
        return lines

    def table(self, draw, x, y, values, *, fill=None, pad_rim=0, highlight=None, edge=None,
              cell_fill=None):
        """values (rows, cols); pad_rim: the outer rows/columns drawn as padding; highlight:
        (r0, c0, r1, c1) cells filled with cell_fill and outlined with edge."""
        rows, cols = values.shape
        for r in range(rows):
            for c in range(cols):
                box = (x + c * CELL, y + r * CELL, x + (c + 1) * CELL, y + (r + 1) * CELL)
                is_pad = pad_rim and (r < pad_rim or c < pad_rim or r >= rows - pad_rim
                                      or c >= cols - pad_rim)
                inside = highlight and highlight[0] <= r < highlight[2] and highlight[1] <= c < highlight[3]
                background = (cell_fill if inside and cell_fill
                              else fill or (COLOURS["pad"] if is_pad else None))
                draw.rectangle(box, fill=background, outline=COLOURS["grid"])
                text = minus(values[r, c])
                colour = COLOURS["pad_text"] if is_pad and not inside else COLOURS["text"]
                draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), text, font=self.font,
                          fill=colour, anchor="mm")
        if highlight and edge:
            r0, c0, r1, c1 = highlight
            draw.rectangle((x + c0 * CELL - 1, y + r0 * CELL - 1, x + c1 * CELL + 1, y + r1 * CELL + 1),
                           outline=edge, width=3)

    def frame(self, k: int, i: int, j: int) -> Image.Image:
        demo = self.demo
        image = Image.new("RGB", self.size, COLOURS["background"])
        draw = ImageDraw.Draw(image)
        f, s, p = demo.weight.shape[-1], demo.stride, demo.pad
        for n, (header, _) in enumerate(self.columns):
            active = 1 + k == n
            colour = COLOURS["filter_edge"] if active else COLOURS["text"]
            draw.text((self.x0[n], MARGIN), header, font=self.bold, fill=colour)
        x, y = self.x0[0], self.top
        for d in range(demo.x_pad.shape[0]):
            draw.text((x, y), f"x[:, :, {d}]", font=self.font, fill=COLOURS["text"])
            self.table(draw, x, y + LINE, demo.x_pad[d], pad_rim=p,
                       highlight=(i * s, j * s, i * s + f, j * s + f), edge=COLOURS["window_edge"],
                       cell_fill=COLOURS["window"])
            y += LINE + demo.x_pad.shape[1] * CELL + GAP
        for n in range(demo.weight.shape[0]):
            x, y = self.x0[1 + n], self.top
            fill = COLOURS["filter"] if n == k else None
            for d in range(demo.weight.shape[1]):
                draw.text((x, y), f"w{n}[:, :, {d}]", font=self.font, fill=COLOURS["text"])
                self.table(draw, x, y + LINE, demo.weight[n, d], fill=fill,
                           highlight=(0, 0, f, f) if n == k else None, edge=COLOURS["filter_edge"])
                y += LINE + f * CELL + GAP
            draw.text((x, y), f"Bias b{n} (1×1×1)", font=self.font, fill=COLOURS["text"])
            self.table(draw, x, y + LINE, np.array([[demo.bias[n]]]), fill=fill,
                       highlight=(0, 0, 1, 1) if n == k else None, edge=COLOURS["filter_edge"])
        x, y = self.x0[-1], self.top
        for n in range(demo.output.shape[0]):
            draw.text((x, y), f"o[:, :, {n}]", font=self.font, fill=COLOURS["text"])
            self.table(draw, x, y + LINE, demo.output[n],
                       highlight=(i, j, i + 1, j + 1) if n == k else None, edge=COLOURS["out_edge"],
                       cell_fill=COLOURS["out"])
            y += LINE + demo.output.shape[1] * CELL + GAP
        for row, line in enumerate(self._lines(k, i, j)):
            draw.text((MARGIN, self.text_top + row * LINE), line,
                      font=self.bold if row == len(self._lines(k, i, j)) - 1 else self.font,
                      fill=COLOURS["text"])
        return image


def gif(demo, *, duration_ms: int = 900) -> bytes:
    """The animated GIF, one frame per output value (filter by filter, row by row), looping."""
    canvas = _Canvas(demo)
    frames = [canvas.frame(k, i, j) for k, i, j in demo.steps]
    # one palette for all frames, no dithering: flat colours and crisp digits, a small file
    palette = frames[0].quantize(64, dither=Image.Dither.NONE)
    frames = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    buffer = _io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=duration_ms, loop=0, optimize=False)
    return buffer.getvalue()
