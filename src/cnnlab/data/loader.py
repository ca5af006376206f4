"""Preprocessing and mini-batches.

Every random choice of an epoch (the order of the samples, the augmentation of each batch) is
drawn from a Generator seeded by (seed, epoch, batch), so a run resumed in the middle of an
epoch sees exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from cnnlab.core import DataError
from cnnlab.data.folder import FolderImages, check_resize

#: the channel order of images with 1 and 3 channels, as Pillow names the modes
CHANNELS = {1: "L", 3: "RGB"}


class Preprocess:
    """Pixels → float32 network input, per channel c:  x̂ = (x·scale − mean[c]) / std[c].

    `Preprocess.fit(x_train)` measures mean and std on the training set; the model keeps the
    result (`model.preprocess`), and its file records it, so evaluation and prediction apply the
    same numbers. Pixels are uint8 (scale 1/255); float pixels on another range are passed with
    that range (`__call__(x, pixel_range=1.0)`). `channels` is the channel order ("L" for one
    channel, "RGB" for three); `resize` how an image of another size is brought to the model's
    H×W ("stretch", "center-crop", or "center-crop:N": the shorter side to N pixels, then the
    middle cut out, as torchvision's Resize(N) + CenterCrop; see cnnlab.data.folder).
    """

    def __init__(self, mean, std, scale: float = 1 / 255, *, resize: str = "stretch",
                 channels: str | None = None) -> None:
        self.mean = np.asarray(mean, np.float32).reshape(-1)
        self.std = np.asarray(std, np.float32).reshape(-1)
        if (self.mean.shape != self.std.shape or not np.all(self.std > 0)
                or not np.isfinite(self.mean).all() or not np.isfinite(self.std).all()):
            raise ValueError(
                f"Preprocess: mean and std need one finite value per channel, std > 0. "
                f"Received: mean={self.mean.tolist()}, std={self.std.tolist()}"
            )
        self.scale = float(scale)
        if not (0 < self.scale < float("inf")):
            raise ValueError(f"Preprocess: scale must be a number > 0. Received: scale={scale!r}")
        self.resize = check_resize(resize)
        expected = CHANNELS.get(self.mean.size)
        if channels is not None and channels != expected:
            raise ValueError(f"Preprocess: {self.mean.size} channel(s) are {expected or 'not images'}, "
                             f"not {channels!r}")
        self.channels = expected

    @classmethod
    def fit(cls, x: np.ndarray, scale: float = 1 / 255, *, part: slice | None = None,
            reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> Preprocess:
        """Per-channel mean and standard deviation of x·scale over samples and pixels.

        Data-parallel (cnnlab.train.parallel): each process reads only x[part] and `reduce`
        sums the processes' float64 sums (the same numbers on every process)."""
        if x.ndim < 2 or len(x) == 0:
            raise DataError(f"Preprocess.fit: need a non-empty batch (N, C, ...). Received: {x.shape}")
        axes = (0, *range(2, x.ndim))
        channels = x.shape[1]
        total, squares, count = np.zeros(channels), np.zeros(channels), 0
        part = part or slice(0, len(x))
        for start in range(part.start, part.stop, 8192):  # float64 sums in chunks, bounded memory
            chunk = x[start : min(start + 8192, part.stop)].astype(np.float64) * scale
            total = total + chunk.sum(axis=axes)
            squares = squares + (chunk * chunk).sum(axis=axes)
            count += chunk.size // channels
        if reduce is not None:
            summed = reduce(np.concatenate([total, squares, [count]]))
            total, squares, count = summed[:channels], summed[channels:-1], summed[-1]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean * mean, 0))
        return cls(mean, np.where(std > 0, std, 1.0), scale)

    def __call__(self, x: np.ndarray, pixel_range: float | None = None) -> np.ndarray:
        """x̂ for pixels x: uint8 (0–255), or any dtype on 0–`pixel_range` (e.g. 1.0 for floats
        in [0, 1]): then x·(1/pixel_range) stands for x·scale."""
        if x.ndim < 2 or x.shape[1] != self.mean.size:
            raise DataError(
                f"Preprocess: expected images (N, {self.mean.size}, ...) with {self.mean.size} "
                f"channel(s). Received: shape={x.shape}"
            )
        shape = (1, -1) + (1,) * (x.ndim - 2)
        scale = self.scale if pixel_range is None else 1.0 / pixel_range
        scale = (scale / self.std).reshape(shape)
        shift = (self.mean / self.std).reshape(shape)
        return (x.astype(np.float32) * scale - shift).astype(np.float32, copy=False)

    def config(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "scale": self.scale,
                "channels": self.channels, "resize": self.resize}

    def __repr__(self) -> str:
        rule = "" if self.resize == "stretch" else f", resize={self.resize!r}"
        mean, std = ([round(float(v), 4) for v in values] for values in (self.mean, self.std))
        return f"Preprocess(mean={mean}, std={std}{rule})"


Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class Loader:
    """Mini-batches (x, y) of a dataset: every sample once per epoch, the last batch partial
    unless drop_last.

    Args:
        x: (N, C, H, W) images (uint8 or float, or a FolderImages), y: (N,) integer labels.
        batch_size: samples per batch.  shuffle: a new order each epoch, from (seed, epoch).
        preprocess: applied to each batch (e.g. a `Preprocess`), before `transform`.
        transform: augmentation `transform(batch, rng) -> batch`, training only; one with a
            `with_preprocess` method (ColorJitter, Compose) is given a Preprocess `preprocess`.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, *, shuffle: bool = False,
        seed: int = 0, preprocess: Callable | None = None, transform: Transform | None = None,
        drop_last: bool = False,
    ) -> None:
        # image files (cnnlab.data.folder.FolderImages) stay files: a batch decodes its images
        x, y = (x if isinstance(x, FolderImages) else np.asarray(x)), np.asarray(y)
        if len(x) == 0:
            raise DataError("Loader: the dataset is empty (0 samples).")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"Loader: need one label per image: x has {len(x)} samples, "
                            f"y has shape {y.shape}.")
        if y.dtype.kind not in "iu":
            raise DataError(f"Loader: labels must be integers. Received: dtype={y.dtype}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Loader: batch_size must be a positive int. Received: {batch_size!r}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        if isinstance(preprocess, Preprocess) and hasattr(transform, "with_preprocess"):
            transform = transform.with_preprocess(preprocess)  # ColorJitter works on pixels
        self.preprocess, self.transform = preprocess, transform
        #: data-parallel training (cnnlab.distributed): this process's share of each batch, a
        #: function of the batch's size giving a slice of its indices, and this process's rank
        self.share: Callable[[int], slice] | None = None
        self.rank = 0

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of `epoch`, from batch number `start` on."""
        order = self.order(epoch)
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.shuffle:
                idx = np.sort(idx)  # the same set, read in memory order: faster gathers
            if self.share is not None:  # only this process's images are read and preprocessed
                idx = idx[self.share(len(idx))]
            xb, yb = self.x[idx], self.y[idx]
            if self.preprocess is not None:
                xb = self.preprocess(xb)
            if self.transform is not None:  # a stream per (seed, epoch, batch) and process
                stream = [self.seed, epoch, b, 1] + ([self.rank] if self.share is not None else [])
                xb = self.transform(xb, np.random.default_rng(stream))
            yield xb, yb

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.batches(0)
