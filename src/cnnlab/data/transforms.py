"""Data augmentation on float batches (N, C, H, W), vectorised over the batch.

Each transform is `transform(x, rng) -> new batch` with an explicit Generator, never
modifies its input, and has a `config()` so a run can record what it used. Each draws its
random numbers a vector of N at a time (one per image), so an image's augmentation depends on
the seed, the epoch, the batch and its place in it (cnnlab.data.loader), never on the run's
history. RandomRotation and RandomResizedCrop live in cnnlab.data.warp; ColorJitter, which
works on pixels, is told the preprocessing by the Loader (`with_preprocess`).
"""

from __future__ import annotations

import numbers

import numpy as np

from cnnlab.data.warp import RandomResizedCrop, RandomRotation

__all__ = ["ColorJitter", "Compose", "RandomCrop", "RandomErasing", "RandomFlip", "RandomResizedCrop",
           "RandomRotation"]


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

    def with_preprocess(self, preprocess) -> Compose:
        """The same transforms, those that work on pixels told the preprocessing."""
        return Compose(t.with_preprocess(preprocess) if hasattr(t, "with_preprocess") else t
                       for t in self.transforms)


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


class ColorJitter:
    """Random brightness and contrast, one factor of each per image, on pixels u ∈ [0, 1]:
        brightness  u ← clip(b·u, 0, 1),                 b ~ U[1 − brightness, 1 + brightness]
        contrast    u ← clip(c·u + (1 − c)·μ, 0, 1),     c ~ U[1 − contrast, 1 + contrast]
    in that order, μ the image's mean grey (0.299 R + 0.587 G + 0.114 B for three channels, as
    torchvision's; the mean of all values otherwise). Clipping keeps every value a pixel that
    can exist: black to white. 0 leaves the image as it is.

    The batch is network input x̂ = (u − mean)/std (cnnlab.data.Preprocess): the Loader hands
    a Preprocess to `with_preprocess`, and the jitter works on u = x̂·std + mean. Without one
    the batch must be pixels on [0, 1].
    """

    GREY = (0.299, 0.587, 0.114)

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, *, preprocess=None) -> None:
        for name, value in (("brightness", brightness), ("contrast", contrast)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise ValueError(f"ColorJitter: {name} must be a number in [0, 1]. Received: {value!r}")
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.preprocess = preprocess

    def with_preprocess(self, preprocess) -> ColorJitter:
        return ColorJitter(self.brightness, self.contrast, preprocess=preprocess)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, c = x.shape[:2]
        b = rng.uniform(1 - self.brightness, 1 + self.brightness, n).astype(x.dtype)
        k = rng.uniform(1 - self.contrast, 1 + self.contrast, n).astype(x.dtype)
        shape = (1, c) + (1,) * (x.ndim - 2)
        mean, std = np.zeros(c, x.dtype), np.ones(c, x.dtype)
        if self.preprocess is not None:
            mean, std = (np.asarray(a, x.dtype).reshape(-1) for a in (self.preprocess.mean,
                                                                      self.preprocess.std))
        mean, std = mean.reshape(shape), std.reshape(shape)
        each = (n,) + (1,) * (x.ndim - 1)
        u = np.clip((x * std + mean) * b.reshape(each), 0, 1)
        weights = np.asarray(self.GREY if c == 3 else [1 / c] * c, x.dtype).reshape(shape)
        grey = (u * weights).sum(axis=1, keepdims=True).mean(axis=tuple(range(2, x.ndim)),
                                                             keepdims=True)
        k = k.reshape(each)
        u = np.clip(k * u + (1 - k) * grey, 0, 1)
        return ((u - mean) / std).astype(x.dtype, copy=False)

    def config(self) -> dict:
        return {"ColorJitter": {"brightness": self.brightness, "contrast": self.contrast}}
