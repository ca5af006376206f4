"""Local response normalisation across channels (AlexNet): each value divided by a power of the
sum of squares of its neighbouring channels at the same position, per sample.
"""

from __future__ import annotations

import numpy as np

from cnnlab.core import Layer, Shape, ShapeError


class LocalResponseNorm(Layer):
    """Local response normalisation across channels (AlexNet, Krizhevsky et al. 2012), with
    PyTorch's formula (LocalResponseNorm: the α/n scaling and its window placement).

    Forward, per sample and position, n = size, channels outside 0 … C−1 count as 0:
        s[c] = Σ_{c′ = c − ⌊n/2⌋}^{c + ⌊(n−1)/2⌋} x[c′]²
        d[c] = k + (α/n)·s[c]          y[c] = x[c] · d[c]^(−β)
    Backward, t = dy·x·d^(−β−1) = dy·y/d; channel j is in the windows of c = j − ⌊(n−1)/2⌋ …
    j + ⌊n/2⌋:
        dx[j] = dy[j]·d[j]^(−β) − (2αβ/n)·x[j] · Σ_{c = j − ⌊(n−1)/2⌋}^{j + ⌊n/2⌋} t[c]

    Shape: y has the shape of x: (N, C, H, W) or (N, C, L) (channels on axis 1); no parameters.
    Args:
        size: n, the number of neighbouring channels in the sum (5 in AlexNet).
        alpha: α.  beta: β.  k: the additive constant (AlexNet's 2; PyTorch's default is 1).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                 k: float = 2.0) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"{self.kind}: size must be a positive int. Received: size={size!r}")
        for name, value in (("alpha", alpha), ("beta", beta), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"{self.kind}: {name} must be a number ≥ 0. "
                                 f"Received: {name}={value!r}")
        if not k > 0:
            raise ValueError(f"{self.kind}: k must be > 0 (d = k + … is raised to −β). "
                             f"Received: k={k!r}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def config(self) -> dict:
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 2:
            raise ShapeError(f"{self.label}: expects per-sample input (C, H, W) or (C, L), "
                             f"channels first. Received: input_shape={tuple(input_shape)}")
        return tuple(input_shape)

    def _window_sum(self, a: np.ndarray, before: int, after: int) -> np.ndarray:
        """Σ over channels c − before … c + after of a, zeros outside (a loop over n offsets)."""
        c = a.shape[1]
        padded = np.zeros((a.shape[0], c + before + after, *a.shape[2:]), a.dtype)
        padded[:, before : before + c] = a
        total = padded[:, 0:c].copy()
        for offset in range(1, self.size):
            total += padded[:, offset : offset + c]
        return total

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        n = self.size
        s = self._window_sum(x * x, n // 2, (n - 1) // 2)
        d = self.k + (self.alpha / n) * s
        scale = d ** -self.beta
        y = x * scale
        if training:
            self._cache = (x, y, d, scale)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, y, d, scale = self._take_cache()
        dy = self._check_grad(dy, x.shape)
        n = self.size
        t = self._window_sum(dy * y / d, (n - 1) // 2, n // 2)
        return dy * scale - (2 * self.alpha * self.beta / n) * x * t

    def arithmetic(self, input_shape: Shape) -> str:
        return (f"y = x / ({self.k:g} + {self.alpha:g}/{self.size} · Σ x² over {self.size} "
                f"neighbouring channels)^{self.beta:g};  params = 0")
