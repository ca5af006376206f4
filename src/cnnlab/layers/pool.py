"""Pooling: smaller, more manageable representations, each activation map on its own."""

from __future__ import annotations

import numpy as np

from cnnlab import kernels, shapes
from cnnlab.core import Layer, Shape, ShapeError
from cnnlab.layers._window import WindowLayer
from cnnlab.runtime import threads


class _Pool(WindowLayer):
    limit_padding = True

    def __init__(self, kernel_size, stride=None, padding=0, fit: str = "exact") -> None:
        super().__init__(kernel_size, kernel_size if stride is None else stride, padding, fit)

    def config(self) -> dict:
        return {"kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding, "fit": self.fit}

    def output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], *self._spatial_out(self.window(input_shape)))

    def _build(self, rng: np.random.Generator) -> None:
        self.win = self.window(self.input_shape)

    def _x2d_shape(self, n: int) -> tuple[int, int, int, int]:
        return n, self.input_shape[0], self.win.h.size, self.win.w.size

    def arithmetic(self, input_shape: Shape) -> str:
        return self.window(input_shape).formulas(show_zero_pad=False) + ";  params = 0"


class MaxPool2D(_Pool):
    """Max pooling: the largest value of each F×F window, per channel.

    Forward:   y[n, c, i, j] = max_{u,v} x_pad[n, c, i·S + u, j·S + v]   (padding is −∞)
    Backward:  dx gets dy[n, c, i, j] at the first argmax of window (i, j) (PyTorch's choice among
               ties); overlapping windows add. The cache is x and y themselves, no argmax array;
               for 2×2 windows with stride 2 (the usual case) two bool masks of where each
               window's maximum sits (kernels.maxpool2x2_forward), a faster path.
    A ReLU just before a 2×2/2 MaxPool2D in a Sequential runs after the pooling instead, on a
    quarter of the values, with the same results (rectified, ReLU.forward_fused).

    Shape:
        x: (N, C, H, W)    y: (N, C, H_out, W_out),  H_out = (H − F + 2P)/S + 1
        no parameters: a fixed function of the input.
    Args:
        kernel_size: F, int or pair.  stride: S, defaults to F (non-overlapping windows).
        padding: int or pair, at most F/2, or "same"/"valid".  fit: "exact" or "floor".
    """

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x2 = self._to_2d(self._check_input(x))
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        if kernels.maxpool2x2_applies(x2, kh, kw, stride, pad):  # the common 2×2/2: fast path
            return self._pool2x2(x2, training, rectify=False)
        y2 = kernels.maxpool_forward(x2, kh, kw, stride, pad)
        if training:
            # references, not copies: backward finds the argmax again
            self._cache = ("any", x2, y2, None)
        return self._from_2d(y2)

    def rectified(self, x: np.ndarray, *, training: bool = False) -> np.ndarray | None:
        """max(0, forward(x)) for a ReLU before this layer (ReLU.forward_fused), or None where
        the 2×2/2 fast path does not apply. max(0, ·) commutes with max, so pooling first leaves
        a quarter of the values to rectify, and backward multiplies dy by [y > 0] before routing
        it. Bit for bit the two layers' results: where a window's maximum is > 0 it sits where
        the maximum of max(0, x) does, and where it is ≤ 0 every dx of the window is dy·0
        either way (tests/test_fusion.py)."""
        x2 = self._to_2d(self._check_input(x))
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        if not kernels.maxpool2x2_applies(x2, kh, kw, stride, pad):
            return None
        return self._pool2x2(x2, training, rectify=True)

    def _pool2x2(self, x2: np.ndarray, training: bool, rectify: bool) -> np.ndarray:
        masks = None
        if training:
            y2, masks = kernels.maxpool2x2_forward(x2, masks=True)
        else:
            y2 = kernels.maxpool2x2_forward(x2)
        if rectify:  # as ReLU.forward computes it
            y2 = threads.elementwise(lambda out, a: np.maximum(a, 0, out=out), y2, y2)
        if training:
            self._cache = ("2x2", x2.shape[0], masks, y2 if rectify else None)
        return self._from_2d(y2)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        path, a, b, rectified = self._take_cache()
        n = a if path == "2x2" else a.shape[0]
        dy = self._check_grad(dy, (n, *self.out_shape))
        if rectified is not None:  # the ReLU before, fused (rectified): dy·[y > 0] first
            dy = threads.elementwise(kernels.relu_grad, dy, dy, self._from_2d(rectified))
        if path == "2x2":
            return self._from_2d(kernels.maxpool2x2_backward(self._to_2d(dy), b))
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        return self._from_2d(kernels.maxpool_backward(self._to_2d(dy), a, b, kh, kw, stride, pad))


class AvgPool2D(_Pool):
    """Average pooling: the mean of each F×F window, per channel.

    Forward:   y[n, c, i, j] = (1/d[i, j]) Σ_{u,v} x_pad[n, c, i·S + u, j·S + v]   (padding is 0)
               count_include_pad=True (the default, PyTorch's too): d = F·F, padding counts
               count_include_pad=False: d[i, j] = the input values window (i, j) covers
    Backward:  every position of window (i, j) gets dy[n, c, i, j]/d[i, j]; overlapping windows add.

    Shape: as MaxPool2D; no parameters.
    Args:
        kernel_size, stride, padding, fit: as MaxPool2D.
        count_include_pad: whether the zero padding counts in each window's mean (PyTorch's
            meaning; no effect without padding).
    """

    def __init__(self, kernel_size, stride=None, padding=0, fit: str = "exact",
                 count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, fit)
        if not isinstance(count_include_pad, bool | np.bool_):
            raise ValueError(f"{self.kind}: count_include_pad must be True or False. "
                             f"Received: count_include_pad={count_include_pad!r}")
        self.count_include_pad = bool(count_include_pad)

    def config(self) -> dict:
        # the default is left out, so files of models that keep it stay readable by cnnlab 0.2
        extra = {} if self.count_include_pad else {"count_include_pad": False}
        return {**super().config(), **extra}

    def _divisor(self, win: shapes.Window) -> np.ndarray | None:
        """Each window's count of input values when the padding does not count (None: F·F)."""
        if self.count_include_pad or not any(sum(p) for p in win.pad):
            return None
        return kernels.avgpool_counts(win.h.size, win.w.size, *win.kernel, win.stride, win.pad)

    def _build(self, rng: np.random.Generator) -> None:
        super()._build(rng)
        divisor = self._divisor(self.win)
        self.divisor = None if divisor is None else divisor.astype(self.dtype)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        if training:
            self._cache = x.shape[0]
        return self._from_2d(kernels.avgpool_forward(self._to_2d(x), kh, kw, stride, pad,
                                                     self.divisor))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        n = self._take_cache()
        dy = self._check_grad(dy, (n, *self.out_shape))
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        return self._from_2d(kernels.avgpool_backward(
            self._to_2d(dy), self._x2d_shape(n), kh, kw, stride, pad, self.divisor
        ))

    def _mean_text(self, input_shape: Shape) -> str:
        """How each window's sum is divided, when the padding does not count."""
        counts = self._divisor(self.window(input_shape))
        if counts is None:
            return ""
        low, high = int(counts.min()), int(counts.max())
        return (f"mean over the input values only (count_include_pad=False): "
                f"÷{low} to ÷{high} per window")

    def arithmetic(self, input_shape: Shape) -> str:
        mean = self._mean_text(input_shape)
        parts = [self.window(input_shape).formulas(show_zero_pad=False), *([mean] if mean else [])]
        return ";  ".join([*parts, "params = 0"])

    def _param_lines(self, input_shape: Shape) -> list[str]:
        mean = self._mean_text(input_shape)
        return [*([mean] if mean else []), *super()._param_lines(input_shape)]


class MaxPool1D(MaxPool2D):
    """Max pooling over sequences (N, C, L) → (N, C, L_out), L_out = (L − F + 2P)/S + 1."""

    ndim = 1


class AvgPool1D(AvgPool2D):
    """Average pooling over sequences (N, C, L) → (N, C, L_out), L_out = (L − F + 2P)/S + 1."""

    ndim = 1


class GlobalAvgPool2D(Layer):
    """The mean of each whole activation map: one number per channel.

    Forward:   y[n, c] = (1/(H·W)) Σ_{i,j} x[n, c, i, j]
    Backward:  dx[n, c, i, j] = dy[n, c]/(H·W)
    Shape: x: (N, C, H, W) → y: (N, C); no parameters.
    """

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise ShapeError(
                f"{self.label}: expects per-sample input (C, H, W). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        return (input_shape[0],)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        if training:
            self._cache = x.shape[0]
        return x.mean(axis=(2, 3))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        n = self._take_cache()
        dy = self._check_grad(dy, (n, *self.out_shape))
        c, h, w = self.input_shape
        share = dy / dy.dtype.type(h * w)
        return np.broadcast_to(share[:, :, None, None], (n, c, h, w)).copy()

    def arithmetic(self, input_shape: Shape) -> str:
        c, h, w = input_shape
        return f"mean over {h}×{w} per channel → {c};  params = 0"
