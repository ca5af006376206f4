"""Pooling to a given size: the largest value of each whole map, and adaptive average pooling
(the output size is given and the windows follow from it, as PyTorch's AdaptiveAvgPool2d)."""

from __future__ import annotations

import numpy as np

from cnnlab import kernels
from cnnlab.core import Layer, Shape, ShapeError

#: windows an arithmetic line lists per axis before it writes "…"
SHOWN_WINDOWS = 4


def _expect_image(layer: Layer, input_shape: Shape) -> None:
    if len(input_shape) != 3:
        raise ShapeError(f"{layer.label}: expects per-sample input (C, H, W). "
                         f"Received: input_shape={tuple(input_shape)}")


class GlobalMaxPool2D(Layer):
    """The largest value of each whole activation map: one number per channel.

    Forward:   y[n, c] = max_{i,j} x[n, c, i, j]
    Backward:  dx[n, c, i, j] = dy[n, c] at the first maximum of the map (row by row), 0 elsewhere:
               MaxPool2D's rule among ties, and PyTorch's for max_pool2d(x, (H, W)) and
               adaptive_max_pool2d(x, 1) (x.amax((2, 3)) would split dy over the ties instead).
               The cache is the (N, C) index of that maximum.
    Shape: x: (N, C, H, W) → y: (N, C); no parameters.
    """

    def output_shape(self, input_shape: Shape) -> Shape:
        _expect_image(self, input_shape)
        return (input_shape[0],)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        if not training:
            return x.max(axis=(2, 3))
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)  # a view for NCHW memory and for (C, N, H, W) memory
        first = flat.argmax(axis=2)  # the first maximum (the first NaN, if any, as max does)
        self._cache = first
        return np.take_along_axis(flat, first[:, :, None], axis=2)[:, :, 0]

    def backward(self, dy: np.ndarray) -> np.ndarray:
        first = self._take_cache()
        dy = self._check_grad(dy, (first.shape[0], *self.out_shape))
        c, h, w = self.input_shape
        dx = np.zeros((first.shape[0], c, h * w), dy.dtype)
        np.put_along_axis(dx, first[:, :, None], dy[:, :, None], axis=2)
        return dx.reshape(-1, c, h, w)

    def arithmetic(self, input_shape: Shape) -> str:
        c, h, w = input_shape
        return f"max over {h}×{w} per channel → {c};  params = 0"


def _output_size(value) -> tuple[int | None, int | None]:
    """An int, or a pair of ints or None (None keeps that axis's input size, as PyTorch)."""
    pair = (value, value) if not isinstance(value, tuple | list) else tuple(value)
    if len(pair) != 2 or not all(
            v is None or (isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1)
            for v in pair):
        raise ValueError("AdaptiveAvgPool2D: output_size must be a positive int or a pair of "
                         f"positive ints (None keeps the input's size). Received: output_size={value!r}")
    return tuple(None if v is None else int(v) for v in pair)


class AdaptiveAvgPool2D(Layer):
    """Average pooling to a given output size (PyTorch's AdaptiveAvgPool2d and its windows).

    Forward, window i of H_out over the rows (the same for the columns and W_out):
        start_i = ⌊i·H/H_out⌋    end_i = ⌈(i + 1)·H/H_out⌉    (end excluded)
        y[n, c, i, j] = mean of x[n, c, start_i:end_i, start_j:end_j]
    Windows differ in size by at most one row when H_out does not divide H, and neighbours then
    share a row; when H_out > H rows repeat.
    Backward:  every value of window (i, j) gets dy[n, c, i, j]/(its window's size); shared rows add
    The windows are summed along W, then along H (a gather per offset in the window;
    kernels/adaptive.py). When H_out divides H and W_out divides W, they are the F×F blocks of a
    plain AvgPool2D(F), F = H/H_out: the fast path, a reshape and a sum.

    Shape:
        x: (N, C, H, W) → y: (N, C, H_out, W_out); no parameters.
    Args:
        output_size: (H_out, W_out), or one int for both; None in the pair keeps that axis's
            input size. 1 is GlobalAvgPool2D keeping the 1×1 map.
    """

    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = _output_size(output_size)

    def config(self) -> dict:
        return {"output_size": list(self.output_size)}

    def target(self, input_shape: Shape) -> tuple[int, int]:
        """(H_out, W_out) for this input: None replaced by the input's size."""
        return tuple(size if out is None else out
                     for out, size in zip(self.output_size, input_shape[1:], strict=True))

    def output_shape(self, input_shape: Shape) -> Shape:
        _expect_image(self, input_shape)
        return (input_shape[0], *self.target(input_shape))

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        if training:
            self._cache = x.shape[0]
        return kernels.adaptive_avgpool_forward(x, *self.out_shape[1:])

    def backward(self, dy: np.ndarray) -> np.ndarray:
        n = self._take_cache()
        dy = self._check_grad(dy, (n, *self.out_shape))
        return kernels.adaptive_avgpool_backward(dy, *self.input_shape[1:])

    def arithmetic(self, input_shape: Shape) -> str:
        sizes, outs = input_shape[1:], self.target(input_shape)
        texts = [(f"{name}2", _windows_text(size, out))
                 for name, size, out in zip("HW", sizes, outs, strict=True)]
        if texts[0][1] == texts[1][1]:
            head = f"H2 = W2 = {texts[0][1]}"
        else:
            head = "; ".join(f"{name} = {text}" for name, text in texts)
        return f"{head};  params = 0"


def _windows_text(size: int, out: int) -> str:
    """ "2: windows F = S = 28/2 = 14" or "3: windows ⌊i·7/3⌋ to ⌈(i+1)·7/3⌉ = [0, 3) [2, 5) [4, 7)"."""
    if size % out == 0:
        return f"{out}: windows F = S = {size}/{out} = {size // out}"
    # the first few only, computed one by one: `out` may be large
    shown = " ".join(f"[{i * size // out}, {-(-(i + 1) * size // out)})"
                     for i in range(min(out, SHOWN_WINDOWS)))
    more = " …" if out > SHOWN_WINDOWS else ""
    return f"{out}: windows ⌊i·{size}/{out}⌋ to ⌈(i+1)·{size}/{out}⌉ = {shown}{more}"
