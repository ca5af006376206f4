"""The convolution demo as an animated GIF (Pillow): one frame per output value.

Each frame shows the padded input volume (padding grey), the filters and biases and the output
maps, as the lecture's demo lays them out; the current window is blue, the current filter red,
the current output cell green; below, the dot product slice by slice and its sum.

Frames are drawn and written one at a time, so memory holds about two frames and the file at any
size (the largest demo, 1,024 frames of 1542×1974, once took 10.8 GiB when every frame was kept
for Pillow's writer). The unhighlighted picture is drawn once; a step draws only what it
highlights over a copy of it, and the file gets only the rectangle that changed since the frame
before, its unchanged pixels transparent. Decoded, every frame is the step drawn whole.
"""

from __future__ import annotations

import io as _io
import struct
from pathlib import Path

import numpy as np
from PIL import GifImagePlugin, Image, ImageDraw, ImageFont

from cnnlab.train import progress as bars
from cnnlab.viz.typography import minus

CELL, GAP, MARGIN, LINE = 26, 14, 14, 18
COLOURS = {
    "text": "#1d1d1f", "grid": "#b8bcc4", "pad": "#eceef1", "pad_text": "#8a8f98",
    "window": "#cfe2ff", "window_edge": "#1f5fbf", "filter": "#ffe0dc", "filter_edge": "#c0392b",
    "out": "#d4f5cf", "out_edge": "#2e8b3a", "background": "#ffffff",
}
#: one palette for all frames, taken from the first, no dithering: flat colours, crisp digits
PALETTE_SIZE = 64


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
        return max(self._lines(0, 0, 0), key=len)

    def _lines(self, k: int, i: int, j: int) -> list[str]:
        demo = self.demo
        _, h2, w2 = demo.output.shape
        sums = demo.channel_sums(k, i, j)
        lines = [f"o[{i}, {j}, {k}] = w{k} · (window of x) + b{k}, step "
                 f"{(k * h2 + i) * w2 + j + 1} of {demo.output.size}"]
        lines += [f"    w{k}[:, :, {d}] · x[:, :, {d}] = {minus(s)}" for d, s in enumerate(sums)]
        total = " + ".join(f"({minus(s)})" if s < 0 else minus(s) for s in sums)
        bias = demo.bias[k]
        lines.append(f"    {total} + {f'({minus(bias)})' if bias < 0 else minus(bias)} = "
                     f"{minus(demo.output[k, i, j])}")
        return lines

    def table(self, draw, x, y, values, *, fill=None, pad_rim=0, highlight=None, edge=None,
              cell_fill=None, changes_only=False):
        """values (rows, cols); pad_rim: the outer rows/columns drawn as padding; highlight:
        (r0, c0, r1, c1) cells filled with cell_fill and outlined with edge; changes_only: only
        the highlighted cells and the outline, over the same table drawn without highlight."""
        rows, cols = values.shape
        r0, c0, r1, c1 = highlight or (0, 0, 0, 0)
        cells = [(r, c) for r in range(r0, r1) for c in range(c0, c1)] if changes_only else \
            [(r, c) for r in range(rows) for c in range(cols)]
        for r, c in cells:
            box = (x + c * CELL, y + r * CELL, x + (c + 1) * CELL, y + (r + 1) * CELL)
            is_pad = pad_rim and (r < pad_rim or c < pad_rim or r >= rows - pad_rim
                                  or c >= cols - pad_rim)
            inside = r0 <= r < r1 and c0 <= c < c1
            background = (cell_fill if inside and cell_fill
                          else fill or (COLOURS["pad"] if is_pad else None))
            draw.rectangle(box, fill=background, outline=COLOURS["grid"])
            text = minus(values[r, c])
            colour = COLOURS["pad_text"] if is_pad and not inside else COLOURS["text"]
            draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), text, font=self.font,
                      fill=colour, anchor="mm")
        if highlight and edge:
            draw.rectangle((x + c0 * CELL - 1, y + r0 * CELL - 1, x + c1 * CELL + 1, y + r1 * CELL + 1),
                           outline=edge, width=3)

    def frame(self, k: int, i: int, j: int) -> Image.Image:
        """The frame of step (k, i, j), drawn whole."""
        return self.paint(Image.new("RGB", self.size, COLOURS["background"]), (k, i, j))

    def frames(self):
        """Every step's frame in the animation's order, one at a time: each a copy of the
        unhighlighted picture (drawn once) with only that step's highlights drawn over it."""
        base = self.paint(Image.new("RGB", self.size, COLOURS["background"]), None)
        for step in self.demo.steps:
            yield self.paint(base.copy(), step, changes_only=True)

    def paint(self, image, step, *, changes_only=False) -> Image.Image:
        """Draws step (k, i, j) onto `image`, or with step None the picture without highlights.
        changes_only: `image` holds that picture already; draw only what the step changes."""
        draw = ImageDraw.Draw(image)
        k = -1 if step is None else step[0]
        for n, (header, _) in enumerate(self.columns):
            active = n == 1 + k and step is not None  # filter k's column
            if changes_only and not active:
                continue
            if changes_only:  # the header is there in black: clear its band, then write it red
                draw.rectangle((self.x0[n], 0, self.x0[n + 1] - GAP - 1, self.top - 2),
                               fill=COLOURS["background"])
            colour = COLOURS["filter_edge"] if active else COLOURS["text"]
            draw.text((self.x0[n], MARGIN), header, font=self.bold, fill=colour)
        self._volumes(draw, step, changes_only)
        self._filters(draw, k, changes_only)
        if step is not None:
            if changes_only:
                draw.rectangle((0, self.text_top, *self.size), fill=COLOURS["background"])
            lines = self._lines(*step)
            for row, line in enumerate(lines):
                draw.text((MARGIN, self.text_top + row * LINE), line,
                          font=self.bold if row == len(lines) - 1 else self.font,
                          fill=COLOURS["text"])
        return image

    def _volumes(self, draw, step, changes_only) -> None:
        """The padded input with the window, the output maps with the current value."""
        demo = self.demo
        f, s, p = demo.weight.shape[-1], demo.stride, demo.pad
        k, i, j = step or (-1, 0, 0)
        window = None if step is None else (i * s, j * s, i * s + f, j * s + f)
        x, y = self.x0[0], self.top
        for d in range(demo.x_pad.shape[0]):
            if not changes_only:
                draw.text((x, y), f"x[:, :, {d}]", font=self.font, fill=COLOURS["text"])
            self.table(draw, x, y + LINE, demo.x_pad[d], pad_rim=p, highlight=window,
                       edge=COLOURS["window_edge"], cell_fill=COLOURS["window"],
                       changes_only=changes_only)
            y += LINE + demo.x_pad.shape[1] * CELL + GAP
        x, y = self.x0[-1], self.top
        for n in range(demo.output.shape[0]):
            if not changes_only:
                draw.text((x, y), f"o[:, :, {n}]", font=self.font, fill=COLOURS["text"])
            self.table(draw, x, y + LINE, demo.output[n],
                       highlight=(i, j, i + 1, j + 1) if n == k else None, edge=COLOURS["out_edge"],
                       cell_fill=COLOURS["out"], changes_only=changes_only)
            y += LINE + demo.output.shape[1] * CELL + GAP

    def _filters(self, draw, k, changes_only) -> None:
        """Every filter and its bias, filter k highlighted (changes_only: filter k alone)."""
        demo = self.demo
        f = demo.weight.shape[-1]
        for n in range(demo.weight.shape[0]):
            if changes_only and n != k:
                continue
            x, y = self.x0[1 + n], self.top
            fill = COLOURS["filter"] if n == k else None
            for d in range(demo.weight.shape[1]):
                if not changes_only:
                    draw.text((x, y), f"w{n}[:, :, {d}]", font=self.font, fill=COLOURS["text"])
                self.table(draw, x, y + LINE, demo.weight[n, d], fill=fill,
                           highlight=(0, 0, f, f) if n == k else None, edge=COLOURS["filter_edge"],
                           changes_only=changes_only)
                y += LINE + f * CELL + GAP
            if not changes_only:
                draw.text((x, y), f"Bias b{n} (1×1×1)", font=self.font, fill=COLOURS["text"])
            self.table(draw, x, y + LINE, np.array([[demo.bias[n]]]), fill=fill,
                       highlight=(0, 0, 1, 1) if n == k else None, edge=COLOURS["filter_edge"],
                       changes_only=changes_only)


def gif(demo, *, duration_ms: int = 900, progress: bool | None = None) -> bytes:
    """The animated GIF, one frame per output value (filter by filter, row by row), looping.
    Each frame is drawn, reduced to the palette and written before the next is drawn.
    `progress`: a bar over the frames (by default on a terminal or in Jupyter)."""
    out = _io.BytesIO()
    palette = shown = None
    frames = bars.track(_Canvas(demo).frames(), len(demo.steps), "demo.gif", unit="frame",
                        progress=progress)
    for image in frames:
        if palette is None:
            palette = image.quantize(PALETTE_SIZE, dither=Image.Dither.NONE)
            colours = palette.getpalette()
            clear = len(colours) // 3  # the first index no colour uses: transparent
            out.write(_header(image.size, colours, clear + 1))
        pixels = np.asarray(image.quantize(palette=palette, dither=Image.Dither.NONE))
        if shown is None:
            out.write(_image(pixels, (0, 0), duration_ms))
        else:
            out.write(_image(*_change(shown, pixels, clear), duration_ms, clear))
        shown = pixels
    out.write(b";")
    return out.getvalue()


def _header(size: tuple[int, int], colours: list[int], entries: int) -> bytes:
    """GIF89a, the size, a global colour table of `entries` (made a power of 2, unused ones
    black) and the Netscape extension that loops forever."""
    bits = max(1, (entries - 1).bit_length())
    table = bytes(colours[: 3 * entries]).ljust(3 << bits, b"\0")
    screen = struct.pack("<HHBBB", *size, 0x80 | (bits - 1), 0, 0)
    return b"GIF89a" + screen + table + b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"


def _change(before: np.ndarray, after: np.ndarray, clear: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The smallest rectangle that holds every pixel differing between two frames (palette
    indices), the others `clear`, and its top-left corner (x, y)."""
    changed = before != after
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    if rows.size == 0:  # one transparent pixel: the frame and its delay stay
        return np.full((1, 1), clear, np.uint8), (0, 0)
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    return np.where(changed[box], after[box], clear).astype(np.uint8), (int(cols[0]), int(rows[0]))


def _image(pixels: np.ndarray, corner: tuple[int, int], duration_ms: int,
           clear: int | None = None) -> bytes:
    """One frame's graphic control extension, image descriptor and LZW data (Pillow's encoder);
    disposal 1 leaves it in place for the next frame to draw over."""
    params = {"duration": duration_ms, "disposal": 1}
    if clear is not None:
        params["transparency"] = clear
    return b"".join(GifImagePlugin.getdata(Image.fromarray(pixels), corner, **params))
