"""Geometric augmentation by bilinear resampling: random rotation and random resized crop.

Both map every output pixel (i, j) of an image to a source position (r, c) in the input (pixel
centres at whole numbers) and read it bilinearly from the four pixels around it:
    y[i, j] = (1 − fr)(1 − fc)·x[r₀, c₀] + (1 − fr)·fc·x[r₀, c₀ + 1]
              + fr·(1 − fc)·x[r₀ + 1, c₀] + fr·fc·x[r₀ + 1, c₀ + 1],
    r₀ = ⌊r⌋, fr = r − r₀ (and likewise c). At a whole-number position this is the pixel itself,
so rotation by 0° and a crop of the whole image return the input exactly. Random numbers come
from the Generator passed in, a vector of N at a time, like cnnlab.data.transforms.
"""

from __future__ import annotations

import math

import numpy as np


def bilinear(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """x (N, C, H, W) read at the positions rows, cols (N, H', W'), which must lie inside
    [0, H − 1] × [0, W − 1]: (N, C, H', W') in x's dtype."""
    n, _, h, w = x.shape
    r0 = np.floor(rows).astype(np.intp)
    c0 = np.floor(cols).astype(np.intp)
    fr = (rows - r0).astype(x.dtype)[:, None]
    fc = (cols - c0).astype(x.dtype)[:, None]
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)  # weight 0 there when clipped
    image = np.arange(n)[:, None, None]

    def at(r, c):  # (N, H', W', C) → (N, C, H', W')
        return np.moveaxis(x[image, :, r, c], -1, 1)

    top = (1 - fc) * at(r0, c0) + fc * at(r0, c1)
    bottom = (1 - fc) * at(r1, c0) + fc * at(r1, c1)
    return (1 - fr) * top + fr * bottom


class RandomRotation:
    """Rotates each image about its centre by an angle drawn uniformly from [−degrees, degrees]
    (positive: counterclockwise, as displayed), read bilinearly.

    Source of output pixel (i, j), with the centre (cy, cx) = ((H − 1)/2, (W − 1)/2):
        r = cy + cos θ·(i − cy) + sin θ·(j − cx),   c = cx + cos θ·(j − cx) − sin θ·(i − cy)
    Corners that come from outside the image take `fill`: "edge" (the default) repeats the
    nearest border pixel, which keeps a dark background dark after normalisation; a number
    fills with that value (in the batch's units: 0 is the mean after preprocessing).
    """

    def __init__(self, degrees: float = 15.0, fill: str | float = "edge") -> None:
        if isinstance(degrees, bool) or not isinstance(degrees, int | float) or not 0 <= degrees <= 180:
            raise ValueError(f"RandomRotation: degrees must be a number in [0, 180]. Received: {degrees!r}")
        if fill != "edge" and (isinstance(fill, bool) or not isinstance(fill, int | float)
                               or not math.isfinite(fill)):
            raise ValueError(f"RandomRotation: fill must be 'edge' or a finite number. Received: {fill!r}")
        self.degrees, self.fill = float(degrees), fill

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        angles = rng.uniform(-self.degrees, self.degrees, len(x))
        return rotate(x, angles, self.fill)

    def config(self) -> dict:
        return {"RandomRotation": {"degrees": self.degrees, "fill": self.fill}}


def rotate(x: np.ndarray, degrees: np.ndarray, fill: str | float = "edge") -> np.ndarray:
    """Each image x[n] rotated counterclockwise by degrees[n] (see RandomRotation)."""
    n, _, h, w = x.shape
    theta = np.radians(np.asarray(degrees, np.float64))[:, None, None]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    i = np.arange(h, dtype=np.float64)[None, :, None] - cy
    j = np.arange(w, dtype=np.float64)[None, None, :] - cx
    cos, sin = np.cos(theta), np.sin(theta)
    rows = cy + cos * i + sin * j
    cols = cx + cos * j - sin * i
    if fill == "edge":
        return bilinear(x, np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1))
    # a border of `fill` around the image: positions outside blend into it, as far out as 1 pixel
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=fill)
    return bilinear(padded, np.clip(rows + 1, 0, h + 1), np.clip(cols + 1, 0, w + 1))


class RandomResizedCrop:
    """Cuts a random rectangle out of each image and stretches it back to the image's size
    (Szegedy et al. 2015; torchvision's RandomResizedCrop, with its defaults).

    The rectangle's area is a fraction drawn uniformly from `scale` of the image's, its aspect
    ratio w/h drawn log-uniformly from `ratio`; of 10 such draws the first that fits inside the
    image is used (else the whole image, cut to the nearest ratio in range, centred), at a
    uniformly drawn position. Output pixel (i, j) reads the rectangle (top, left, h, w) at
        r = top + (i + ½)·h/H − ½,   c = left + (j + ½)·w/W − ½
    (pixel centres aligned, held inside the rectangle), bilinearly.
    """

    ATTEMPTS = 10

    def __init__(self, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> None:
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if len(scale) != 2 or len(ratio) != 2 or not 0 < scale[0] <= scale[1] <= 1 or not (
                0 < ratio[0] <= ratio[1] < math.inf):
            raise ValueError(f"RandomResizedCrop: need 0 < scale[0] ≤ scale[1] ≤ 1 and 0 < ratio[0] "
                             f"≤ ratio[1]. Received: scale={scale}, ratio={ratio}")
        self.scale, self.ratio = scale, ratio

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, _, h, w = x.shape
        top, left, ch, cw = self.boxes(n, h, w, rng)
        i = np.arange(h, dtype=np.float64)[None, :, None]
        j = np.arange(w, dtype=np.float64)[None, None, :]
        t, lf, ch, cw = (a[:, None, None].astype(np.float64) for a in (top, left, ch, cw))
        rows = np.clip(t + (i + 0.5) * (ch / h) - 0.5, t, t + ch - 1)
        cols = np.clip(lf + (j + 0.5) * (cw / w) - 0.5, lf, lf + cw - 1)
        return bilinear(x, np.broadcast_to(rows, (n, h, w)), np.broadcast_to(cols, (n, h, w)))

    def boxes(self, n: int, h: int, w: int, rng: np.random.Generator):
        """(top, left, height, width) of each image's rectangle, integer arrays of length n."""
        area = h * w * rng.uniform(*self.scale, (n, self.ATTEMPTS))
        log_ratio = np.log(self.ratio)
        aspect = np.exp(rng.uniform(log_ratio[0], log_ratio[1], (n, self.ATTEMPTS)))
        cw = np.round(np.sqrt(area * aspect)).astype(np.intp)
        ch = np.round(np.sqrt(area / aspect)).astype(np.intp)
        fits = (cw >= 1) & (cw <= w) & (ch >= 1) & (ch <= h)
        first = fits.argmax(axis=1)
        ch, cw = ch[np.arange(n), first], cw[np.arange(n), first]
        # none of the draws fits: the whole image, cut to the nearest ratio in range
        fallback = self._fallback(h, w)
        ch = np.where(fits.any(axis=1), ch, fallback[0])
        cw = np.where(fits.any(axis=1), cw, fallback[1])
        top = (rng.random(n) * (h - ch + 1)).astype(np.intp)
        left = (rng.random(n) * (w - cw + 1)).astype(np.intp)
        centred = ~fits.any(axis=1)
        top = np.where(centred, (h - ch) // 2, top)
        left = np.where(centred, (w - cw) // 2, left)
        return top, left, ch, cw

    def _fallback(self, h: int, w: int) -> tuple[int, int]:
        low, high = self.ratio
        if w / h < low:
            return max(1, round(w / low)), w
        if w / h > high:
            return h, max(1, round(h * high))
        return h, w

    def config(self) -> dict:
        return {"RandomResizedCrop": {"scale": list(self.scale), "ratio": list(self.ratio)}}
