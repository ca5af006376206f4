"""What convolution, local and pooling layers share: a sliding window and its explanation.

1-D layers run on the 2-D kernels with height 1: (N, C, L) is viewed as (N, C, 1, L).
"""

from __future__ import annotations

import numpy as np

from cnnlab import shapes
from cnnlab.core import Layer, Shape, ShapeError, volume
from cnnlab.init import check_init


def positive_int(value, what: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{owner}: {what} must be a positive int. Received: {what}={value!r}")
    return int(value)


class WindowLayer(Layer):
    """A layer that slides a kernel_size window with a stride and padding over H and W (or L)."""

    ndim = 2
    #: pooling allows at most half the window as padding (PyTorch's rule); convolutions any
    limit_padding = False

    def __init__(self, kernel_size, stride, padding, fit: str) -> None:
        super().__init__()
        owner = self.kind
        if self.ndim == 2:
            self.kernel_size = shapes.as_pair(kernel_size, "kernel_size", owner)
            self.stride = shapes.as_pair(stride, "stride", owner)
            self.padding = shapes.check_padding(padding, owner)
        else:
            self.kernel_size = _single(kernel_size, "kernel_size", owner, minimum=1)
            self.stride = _single(stride, "stride", owner, minimum=1)
            self.padding = (
                shapes.check_padding(padding, owner)
                if isinstance(padding, str)
                else _single(padding, "padding", owner, minimum=0)
            )
        self.fit = shapes.check_fit(fit, owner)

    def _dilation(self) -> tuple[int, int]:
        """(d_h, d_w), the spacing of the window's taps: 1 for pooling (Conv2D overrides it)."""
        return 1, 1

    # the 2-D view of the hyperparameters that the kernels use
    def _geometry(self) -> tuple[tuple[int, int], tuple[int, int], object]:
        if self.ndim == 2:
            return self.kernel_size, self.stride, self.padding
        padding = self.padding if isinstance(self.padding, str) else (0, self.padding)
        return (1, self.kernel_size), (1, self.stride), padding

    def _check_rank(self, input_shape: Shape) -> None:
        if len(input_shape) != self.ndim + 1:
            expected = "(C, H, W)" if self.ndim == 2 else "(C, L)"
            hint = " Use Conv1D/MaxPool1D for (C, L) inputs." if self.ndim == 2 else ""
            raise ShapeError(
                f"{self.label}: expects per-sample input {expected}. "
                f"Received: input_shape={tuple(input_shape)}.{hint}"
            )

    def window(self, input_shape: Shape) -> shapes.Window:
        """The resolved window for this input: padding per side, output size; ShapeError if it
        does not fit."""
        self._check_rank(input_shape)
        size = tuple(input_shape[1:]) if self.ndim == 2 else (1, input_shape[1])
        kernel, stride, padding = self._geometry()
        max_pad = (kernel[0] // 2, kernel[1] // 2) if self.limit_padding else None
        return shapes.window(
            self.label, size, kernel, stride, padding, self.fit, ndim=self.ndim, max_pad=max_pad,
            dilation=self._dilation(),
        )

    def _spatial_out(self, win: shapes.Window) -> tuple[int, ...]:
        return win.out if self.ndim == 2 else (win.out[1],)

    def _to_2d(self, x: np.ndarray) -> np.ndarray:
        return x if self.ndim == 2 else x[:, :, None, :]

    def _from_2d(self, y: np.ndarray) -> np.ndarray:
        return y if self.ndim == 2 else y[:, :, 0, :]

    # ------------------------------------------------------------- the lecture
    def _requires(self) -> str:
        return f"extent F = {_hyper(self.kernel_size)}, stride S = {_hyper(self.stride)}"

    def _depth(self, input_shape: Shape) -> str:
        return f"D2 = D1 = {input_shape[0]}"

    def _param_lines(self, input_shape: Shape) -> list[str]:
        return ["parameters: 0 (a fixed function of the input)"]

    def _pad_text(self, win: shapes.Window) -> str:
        if self.padding == "same":
            sides = ", ".join(
                f"{a.name}: {a.pad[0]} before, {a.pad[1]} after" for a in win.shown
            )
            return f'zero padding P = "same" ({sides})'
        return f"zero padding P = {_hyper(self.padding if self.padding != 'valid' else 0)}"

    def explain(self, input_shape) -> str:
        input_shape = tuple(int(d) for d in input_shape)
        dims = "H1×W1×D1" if self.ndim == 2 else "W1×D1"
        lines = [f"{self.label}: accepts a volume {dims} = {volume(input_shape)}"]
        try:
            win = self.window(input_shape)
        except ShapeError as error:
            return "\n".join([*lines, f"requires {self._requires()}", f"doesn't fit: {error}"])
        lines.append(f"requires {self._requires()}, {self._pad_text(win)}")
        out = self.output_shape(input_shape)
        lines.append(f"produces a volume {dims.replace('1', '2')} = {volume(out)}")
        if dilated := win.dilation_text():
            lines.append(f"  {dilated} (the dilated window's extent)")
        extent = "F'" if dilated else "F"
        for axis in win.shown:
            p0, p1 = axis.pad
            pads = "2P" if p0 == p1 else "P_before + P_after"
            lines.append(f"  {axis.name}2 = ({axis.name}1 − {extent} + {pads})/S + 1 = "
                         f"{axis.formula()}")
        lines.append(f"  {self._depth(input_shape)}")
        lines.extend(self._param_lines(input_shape))
        return "\n".join(lines)


def _single(value, what: str, owner: str, *, minimum: int) -> int:
    if isinstance(value, tuple | list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{owner}: {what} must be an int ≥ {minimum}. Received: {what}={value!r}")
    return int(value)


def _hyper(value) -> str:
    if isinstance(value, tuple):
        return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"
    return str(value)


class WeightedMixin:
    """Initialisation choice shared by layers with a weight: init="auto" follows the
    activation after the layer (set by Sequential as `init_hint`), He when standalone."""

    init: str

    def _set_init(self, init: str) -> None:
        self.init = check_init(init, type(self).__name__)

    def resolved_init(self) -> str:
        if self.init != "auto":
            return self.init
        return self.init_hint or "he"
