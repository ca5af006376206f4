"""Nearest neighbours in a feature space as one self-contained HTML page (`cnnlab features
--neighbours FOLDER`): for each query image, the images closest to it in a layer's features.

    cl.viz.neighbours_page("neighbours.html", queries, pool, indices, distances,
                           title="fmnist-cnn, relu_3", distance="cosine")

`queries` and `pool` are lists of (name, image): the image as the model sees it, uint8 (C, H, W),
shown inline as a PNG (base64 data URI, nothing fetched) and scaled up without smoothing. Every
name is escaped (names that are not UTF-8 shown with their bytes as \\xNN).
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.sources import readable
from cnnlab.files import atomic_write

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       margin: 0 auto; padding: 24px; max-width: 1180px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 26px 0 6px; border-bottom: 1px solid #dde0e5; }
.note { color: #5a5f68; font-size: 13.5px; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; width: 112px; }
figure.query { border-right: 2px solid #4c8bd6; padding-right: 12px; }
img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
      background: #f0f1f4; display: block; }
figcaption { font-size: 12px; overflow-wrap: anywhere; color: #3a3f48; }
"""

#: what each distance is, in the page's words
MEANING = {"cosine": "cosine distance 1 − a·b/(‖a‖·‖b‖): 0 is the same direction",
           "euclidean": "Euclidean distance ‖a − b‖"}


def png_uri(image: np.ndarray) -> str:
    """A uint8 image (C, H, W), C = 1 or 3, as a data: URI of a PNG."""
    image = np.asarray(image, np.uint8)
    picture = Image.fromarray(image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(name: str, image: np.ndarray, caption: str, kind: str = "") -> str:
    text = html.escape(readable(name))
    opening = f'<figure class="{kind}">' if kind else "<figure>"
    return (f'{opening}<img alt="{text}" src="{png_uri(image)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def neighbours_page(path: str | os.PathLike, queries: list[tuple[str, np.ndarray]],
                    pool: list[tuple[str, np.ndarray]], indices: np.ndarray, distances: np.ndarray,
                    *, title: str, distance: str = "cosine", note: str = "") -> Path:
    """Writes the page to `path` (atomically) and returns it: a row per query, the query then
    its neighbours pool[indices[q, j]] with their distances, nearest first. Only the pool images
    that appear need be real images (others may be None)."""
    rows = []
    for q, (name, image) in enumerate(queries):
        cells = [_figure(name, image, f"<b>{html.escape(readable(name))}</b>", "query")]
        for rank, (j, d) in enumerate(zip(indices[q], distances[q], strict=True), 1):
            other, picture = pool[int(j)]
            cells.append(_figure(other, picture, f"{rank}. {html.escape(readable(other))}<br>"
                                                 f"d = {float(d):.4f}"))
        rows.append(f"<section><h2>{html.escape(readable(name))}</h2>"
                    f'<div class="row">{"".join(cells)}</div></section>')
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(readable(title))}</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<h1>Nearest neighbours: {html.escape(readable(title))}</h1>
<p class="note">{html.escape(MEANING[distance])}, on the features flattened.
{html.escape(readable(note))} Images are shown as the model sees them.</p>
{"".join(rows)}
</body>
</html>
"""
    path = Path(path)
    atomic_write(path, page.encode("utf-8"))
    return path
