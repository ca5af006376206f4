"""Data augmentation on float batches (N, C, H, W), vectorised over the batch.

Each transform is `transform(x, rng) -> new batch` with an explicit Generator, never
modifies its input, and has a `config()` so a run can record what it used.
"""

from __future__ import annotations

import numpy as np


class Compose:
    """Applies transforms in order."""

    def __init__(self, transforms) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def config(self) -> dict:
        return {"Compose": [t.config() for t in self.transforms]}


class RandomCrop:
    """Pads each image with `padding` zeros (the mean, after preprocessing) on every side and
    cuts out an H×W window at a random offset: shifts of up to ±padding pixels."""

    def __init__(self, padding: int = 2) -> None:
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"RandomCrop: padding must be an int ≥ 0. Received: {padding!r}")
        self.padding = padding

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, c, h, w = x.shape
        p = self.padding
        if p == 0:
            return x.copy()
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        top = rng.integers(0, 2 * p + 1, n)
        left = rng.integers(0, 2 * p + 1, n)
        rows = (top[:, None] + np.arange(h))[:, None, :, None]
        cols = (left[:, None] + np.arange(w))[:, None, None, :]
        return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]

    def config(self) -> dict:
        return {"RandomCrop": {"padding": self.padding}}


class RandomFlip:
    """Mirrors each image left–right with probability p (not for digits, fine for clothes)."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"RandomFlip: p must be in [0, 1]. Received: {p!r}")
        self.p = p

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        flip = rng.random(len(x)) < self.p
        return np.where(flip[:, None, None, None], x[..., ::-1], x)

    def config(self) -> dict:
        return {"RandomFlip": {"p": self.p}}


class RandomErasing:
    """With probability p, sets a random rectangle of each image to `value` (Zhong et al. 2017):
    area a fraction `scale` of the image, aspect ratio in `ratio` (log-uniform)."""

    def __init__(self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value: float = 0.0):
        if not 0 <= p <= 1 or not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(
                f"RandomErasing: need 0 ≤ p ≤ 1, 0 < scale[0] ≤ scale[1] ≤ 1, 0 < ratio[0] ≤ "
                f"ratio[1]. Received: p={p}, scale={scale}, ratio={ratio}"
            )
        self.p, self.scale, self.ratio, self.value = p, tuple(scale), tuple(ratio), value

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, _, h, w = x.shape
        area = rng.uniform(*self.scale, n) * h * w
        aspect = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1]), n))
        eh = np.clip(np.round(np.sqrt(area * aspect)), 1, h).astype(int)
        ew = np.clip(np.round(np.sqrt(area / aspect)), 1, w).astype(int)
        top = (rng.random(n) * (h - eh + 1)).astype(int)
        left = (rng.random(n) * (w - ew + 1)).astype(int)
        on = rng.random(n) < self.p
        rows, cols = np.arange(h), np.arange(w)
        inside_r = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
        inside_c = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
        mask = inside_r[:, :, None] & inside_c[:, None, :] & on[:, None, None]
        return np.where(mask[:, None], x.dtype.type(self.value), x)

    def config(self) -> dict:
        return {"RandomErasing": {"p": self.p, "scale": list(self.scale),
                                  "ratio": list(self.ratio), "value": self.value}}
