"""Dropout: during training each value is zeroed at random, the survivors scaled up to keep the mean;
DropPath: the same for whole samples (stochastic depth)."""

from __future__ import annotations

import numbers

import numpy as np

from cnnlab.core import Layer, Shape
from cnnlab.runtime.threads import map_chunks, num_threads


def uniform_float32(rng: np.random.Generator, shape) -> np.ndarray:
    """rng.random(shape, dtype=np.float32), the same values and the same state of rng after, drawn
    by cnnlab's threads when large (2¹⁸ values and more) and rng's bit generator is PCG64 (the
    default) or PCG64DXSM: each thread draws its part from a copy advanced to where that part
    begins. Each float32 takes 32 bits of a 64-bit draw (the low half, then the high half kept
    for the next value), so every part but the first starts on a whole draw. Other generators
    (Philox advances in blocks of four draws; MT19937 cannot) draw on one thread."""
    bits, n, count = rng.bit_generator, int(np.prod(shape)), num_threads()
    if count == 1 or n < 1 << 18 or not isinstance(bits, np.random.PCG64 | np.random.PCG64DXSM):
        return rng.random(shape, dtype=np.float32)
    state = bits.state
    half = int(state["has_uint32"])  # 1: the first value takes the half already drawn
    starts = [0, *(half + 2 * ((n * t // count - half) // 2) for t in range(1, count)), n]
    out = np.empty(n, np.float32)
    parts = [rng]
    for start in starts[1:-1]:
        copy = type(bits)()
        copy.state = state
        parts.append(np.random.Generator(copy.advance((start - half) // 2)))

    def draw(t):
        parts[t].random(out=out[starts[t]:starts[t + 1]], dtype=np.float32)

    map_chunks(draw, range(count))
    bits.state = parts[-1].bit_generator.state
    return out.reshape(shape)


class _Drop(Layer):
    """What Dropout and DropPath share: the rate, checked, and a Generator of the layer's own,
    spawned from the model's at build (it draws nothing from the model's, so the other layers'
    weights do not change; a checkpoint saves and restores its state through the `rng` hook)."""

    #: what is dropped, for the rate's error message
    dropped = "a value"

    def __init__(self, rate: float) -> None:
        super().__init__()
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(
                f"{self.kind}: rate is the probability of dropping {self.dropped} and must be a "
                f"number in [0, 1). Received: rate={rate!r}"
            )
        self.rate = float(rate)
        self.rng: np.random.Generator | None = None

    def config(self) -> dict:
        return {"rate": self.rate}

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def _build(self, rng: np.random.Generator) -> None:
        self.rng = rng.spawn(1)[0]


class Dropout(_Drop):
    """Inverted dropout: each value is dropped with probability p = rate, independently.

    Forward (training):  mask ~ Bernoulli(1 − p) per value,  y = x · mask/(1 − p)  (E[y] = x)
    Forward (inference): y = x
    Backward:            dx = dy · mask/(1 − p), with the mask of the training forward.

    Shape: x: (N, *dims) → y: same; no parameters.
    Randomness: `build` spawns the layer's own Generator, `self.rng`, from the model's, so a model
    built with a seed draws the same masks; `rng.bit_generator.state` saves and restores it.
    Large masks are drawn by cnnlab's threads (uniform_float32): the same masks on any count.
    Args:
        rate: p, the probability of dropping a value, 0 ≤ p < 1 (0 keeps everything).
    """

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        if not training:
            return x
        # P(keep) = 1 − rate; float32 draws are twice as fast as float64; bool: 1 byte a value
        mask = uniform_float32(self.rng, x.shape) >= np.float32(self.rate)
        self._cache = mask
        y = x * mask
        y /= 1 - self.rate
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        mask = self._take_cache()
        dx = self._check_grad(dy, mask.shape) * mask
        dx /= 1 - self.rate
        return dx

    def arithmetic(self, input_shape: Shape) -> str:
        p = self.rate
        return f"drop with p = {p:g}, keep ×1/(1 − {p:g}) = {1 / (1 - p):.3g} (training only)"


class DropPath(_Drop):
    """Stochastic depth (Huang et al. 2016; "drop path" in ConvNeXt and timm): a whole sample's
    path is dropped, to be put as the last layer of a Residual's branch.

    Forward (training):  keep[n] ~ Bernoulli(1 − p) per sample,  y[n] = x[n] · keep[n]/(1 − p)
    Forward (inference): y = x
    Backward:            dx[n] = dy[n] · keep[n]/(1 − p), with the keep of the training forward.
    In Residual([..., DropPath(p)]) a dropped sample's block is the identity, y = x.

    Shape: x: (N, *dims) → y: same; no parameters.
    Randomness: as Dropout: `build` spawns the layer's own Generator, `self.rng`, from the
    model's (the same seed draws the same samples; a checkpoint saves and restores its state).
    Args:
        rate: p, the probability of dropping a sample's path, 0 ≤ p < 1 (0 keeps everything).
    """

    dropped = "a sample's path"

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        if not training:
            return x
        keep = self.rng.random(x.shape[0], dtype=np.float32) >= np.float32(self.rate)
        keep = keep.reshape(-1, *([1] * (x.ndim - 1)))
        self._cache = (keep, x.shape)
        y = x * keep
        y /= 1 - self.rate
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        keep, shape = self._take_cache()
        dx = self._check_grad(dy, shape) * keep
        dx /= 1 - self.rate
        return dx

    def arithmetic(self, input_shape: Shape) -> str:
        p = self.rate
        return (f"drop a sample's whole path with p = {p:g}, keep ×1/(1 − {p:g}) = "
                f"{1 / (1 - p):.3g} (training only)")
