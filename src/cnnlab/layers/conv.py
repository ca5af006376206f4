"""Convolution: local connectivity and weight sharing, as one GEMM on im2col rows."""

from __future__ import annotations

import numpy as np

from cnnlab import kernels
from cnnlab.core import Parameter, Shape
from cnnlab.init import initialize
from cnnlab.layers._window import WeightedMixin, WindowLayer, positive_int
from cnnlab.shapes import param_formula


class Conv2D(WeightedMixin, WindowLayer):
    """2-D convolution (cross-correlation) as one GEMM on im2col rows.

    Forward, sample n, filter k, output position (i, j):
        y[n, k, i, j] = b[k] + Σ_{c,u,v} w[k, c, u, v] · x_pad[n, c, i·S + u, j·S + v]
    As matrices, X_col = im2col(x) (C·F·F, N·H_out·W_out), W_mat = w.reshape(K, −1):
        Y_mat = W_mat · X_col + b         (K, N·H_out·W_out), one GEMM for the whole batch
    Backward, with dY_mat = dy as (K, N·H_out·W_out):
        dW_mat = dY_mat · X_colᵀ     db = Σ_columns dY_mat     dx = col2im(W_matᵀ · dY_mat)
    The kernels compute these sums on the batch in cache-sized chunks, split over cnnlab's
    threads (see _path): layers whose output is (H/S, W/S) by kernels.conv_forward_same (im2col
    and col2im as one shifted run per channel and kernel offset), other stride-1 layers on large
    maps by kernels.conv_forward_wide, the rest by plain im2col (kernels.conv_forward_cols).

    Shape:
        x: (N, C, H, W)    y: (N, K, H_out, W_out),  H_out = (H − F + 2P)/S + 1 (must be whole
        unless fit="floor")    weight: (K, C, F, F)    bias: (K,)    parameters: (F·F·C + 1)·K

    Args:
        filters: K, the number of filters (output maps).
        kernel_size: F, an int or a pair (F_h, F_w). Filters always span the full input depth C.
        stride: S, an int or a pair.
        padding: P, an int or a pair (zeros on both sides), "valid" (0) or "same":
            H_out = ceil(H/S) for any stride, total pad (H_out − 1)·S + F − H split with the
            odd extra row/column on the bottom/right (TensorFlow's rule).
        bias: learn one bias per filter.
        fit: "exact" refuses an output size that is not whole; "floor" drops the leftover
            rows/columns, as PyTorch does.
        init: "auto" (He before ReLU-like activations, Xavier before sigmoid/tanh), "he",
            "he_uniform", "xavier", "xavier_normal" or "zeros". Biases start at zero.
    """

    def __init__(
        self, filters: int, kernel_size, stride=1, padding=0, *, bias: bool = True,
        fit: str = "exact", init: str = "auto",
    ) -> None:
        super().__init__(kernel_size, stride, padding, fit)
        self.filters = positive_int(filters, "filters", self.kind)
        self.use_bias = bool(bias)
        self._set_init(init)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def config(self) -> dict:
        return {
            "filters": self.filters, "kernel_size": self.kernel_size, "stride": self.stride,
            "padding": self.padding, "bias": self.use_bias, "fit": self.fit, "init": self.init,
        }

    def output_shape(self, input_shape: Shape) -> Shape:
        return (self.filters, *self._spatial_out(self.window(input_shape)))

    def _build(self, rng: np.random.Generator) -> None:
        c = self.input_shape[0]
        self.win = self.window(self.input_shape)
        kh, kw = self.win.kernel
        shape = (self.filters, c, kh, kw) if self.ndim == 2 else (self.filters, c, kw)
        self.weight = Parameter(initialize(
            self.resolved_init(), rng, shape, c * kh * kw, self.filters * kh * kw, self.dtype
        ))
        self.bias = Parameter(np.zeros(self.filters, self.dtype)) if self.use_bias else None

    def parameters(self) -> dict[str, Parameter]:
        if self.weight is None:
            return {}
        return {"weight": self.weight, **({"bias": self.bias} if self.bias else {})}

    def _path(self) -> str:
        """Which kernels run this layer, all computing the same sums (tested equal):
        - "same": output (H/S, W/S), the size "same" padding gives, at least 4 input channels
          and not a strided 1×1 kernel (where plain im2col is one strided copy and was faster):
          kernels.conv_forward_same.
        - "wide": other stride-1 windows with padding ≤ F − 1, at least 4 input channels and
          output rows of 24 or more: kernels.conv_forward_wide.
        - "plain": im2col, one GEMM for the batch, col2im.
        Measured in bench/speed.py's per-layer rows (docs/performance.md): on fewer channels
        the plain path was as fast or faster, and "wide" loses to "plain" on smaller maps."""
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        if self.input_shape[0] < 4:
            return "plain"
        if kernels.conv_same_applies(self.win.h.size, self.win.w.size, kh, kw, stride, pad) and (
                kh * kw > 1 or stride == (1, 1)):
            return "same"
        if kernels.conv_wide_applies(kh, kw, stride, pad) and self.win.w.out >= 24:
            return "wide"
        return "plain"

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        w_mat = self.weight.data.reshape(self.filters, -1)
        bias = None if self.bias is None else self.bias.data
        path = self._path()
        if path == "same":
            y, saved = kernels.conv_forward_same(self._to_2d(x), w_mat, bias, kh, kw, stride, pad)
        elif path == "wide":
            y, saved = kernels.conv_forward_wide(self._to_2d(x), w_mat, bias, kh, kw, pad)
        else:
            y, saved = kernels.conv_forward_cols(self._to_2d(x), w_mat, bias, kh, kw, stride, pad)
        if training:
            self._cache = (path, saved, x.shape[0])
        # y is an (N, K, H, W) view of (K, N, H, W) memory: the next convolution's im2col finds
        # its (C, N, H, W) input already contiguous
        return self._from_2d(y)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self._backward(dy, input_grad=True)

    def backward_params(self, dy: np.ndarray) -> None:
        """Fills weight.grad and bias.grad only, skipping dx (the first layer of a network)."""
        self._backward(dy, input_grad=False)

    def _backward(self, dy: np.ndarray, input_grad: bool) -> np.ndarray | None:
        path, saved, n = self._take_cache()
        dy = self._to_2d(self._check_grad(dy, (n, *self.out_shape)))
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        weight = self.weight.data.reshape(self.filters, -1, kh, kw)  # 1-D: height 1
        flags = {"input_grad": input_grad, "bias_grad": self.bias is not None}
        if path == "same":
            dw, db, dx = kernels.conv_backward_same(dy, saved, weight, stride, pad, **flags)
        elif path == "wide":
            dw, db, dx = kernels.conv_backward_wide(dy, saved, weight, pad, **flags)
        else:
            x_shape = (n, self.input_shape[0], self.win.h.size, self.win.w.size)
            dw, db, dx = kernels.conv_backward_cols(dy, saved, weight, x_shape, stride, pad, **flags)
        self.weight.grad = dw.reshape(self.weight.data.shape)
        if self.bias is not None:
            self.bias.grad = db
        return None if dx is None else self._from_2d(dx)

    # ------------------------------------------------------------- the lecture
    def _requires(self) -> str:
        plural = "s" if self.filters != 1 else ""
        return f"K = {self.filters} filter{plural}, " + super()._requires()

    def _depth(self, input_shape: Shape) -> str:
        return f"D2 = K = {self.filters}"

    def _unit(self, input_shape: Shape) -> list[int]:
        """The weights of one filter: F·F·D1 (F·D1 in 1-D)."""
        return [*self.kernel_size, input_shape[0]] if self.ndim == 2 else [
            self.kernel_size, input_shape[0]]

    def _param_lines(self, input_shape: Shape) -> list[str]:
        unit = self._unit(input_shape)
        per_filter = "·".join(map(str, unit))
        symbols = "F·F·D1" if self.ndim == 2 else "F·D1"
        bias = f", plus K = {self.filters} biases" if self.use_bias else " (no bias)"
        return [
            f"weights: {symbols} = {per_filter} = {int(np.prod(unit))} per filter, shared by "
            f"every output position{bias}",
            f"parameters: {param_formula(unit, self.use_bias, [self.filters])}",
        ]

    def macs(self, input_shape: Shape) -> int:
        """K·C·F·F·H2·W2 (K·C·F·L2 in 1-D): each output value is one filter's F·F·C products.
        LocallyConnected inherits it: its weights differ per position, their number of uses not."""
        return self.filters * int(np.prod(self._unit(input_shape))) * int(
            np.prod(self.output_shape(input_shape)[1:]))

    def arithmetic(self, input_shape: Shape) -> str:
        formula = param_formula(self._unit(input_shape), self.use_bias, [self.filters])
        return f"{self.window(input_shape).formulas()};  params = {formula}"


class Conv1D(Conv2D):
    """1-D convolution over sequences: Conv2D with height 1 (same formulas, W axis only).

    Shape:
        x: (N, C, L)    y: (N, K, L_out),  L_out = (L − F + 2P)/S + 1
        weight: (K, C, F)    bias: (K,)    parameters: (F·C + 1)·K
    kernel_size, stride and padding are ints ("same" and "valid" as in Conv2D).
    """

    ndim = 1
