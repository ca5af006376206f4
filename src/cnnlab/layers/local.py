"""Local connectivity without weight sharing: the lecture's middle case."""

from __future__ import annotations

import numpy as np

from cnnlab.core import Layer, Parameter, Shape
from cnnlab.init import initialize
from cnnlab.kernels import col2im, im2col
from cnnlab.layers.conv import Conv2D
from cnnlab.shapes import param_formula


class LocallyConnected2D(Conv2D):
    """Like Conv2D, but every output position p = (i, j) has its own filters and biases.

    Forward, with X_col = im2col(x) viewed as (P, N, C·F·F), P = H_out·W_out positions:
        y[n, k, p] = b[k, p] + Σ_d w[p, k, d] · X_col[p, n, d]     (one batched GEMM over p)
    Backward:
        dw[p] = dY[p]ᵀ · X_col[p]     db[k, p] = Σ_n dy[n, k, p]     dx = col2im(dY[p] · w[p])

    Shape:
        x: (N, C, H, W)    y: (N, K, H_out, W_out),  H_out = (H − F + 2P)/S + 1
        weight: (H_out, W_out, K, C, F, F)    bias: (K, H_out, W_out)
        parameters: (F·F·C + 1)·K·H_out·W_out, that is Conv2D's times the number of positions.
    Arguments as Conv2D, but no dilation or groups.
    """

    def __init__(
        self, filters: int, kernel_size, stride=1, padding=0, *, bias: bool = True,
        fit: str = "exact", init: str = "auto",
    ) -> None:
        # Conv2D's arguments but dilation and groups, which have no meaning without sharing
        super().__init__(filters, kernel_size, stride, padding, bias=bias, fit=fit, init=init)

    def _build(self, rng: np.random.Generator) -> None:
        c = self.input_shape[0]
        self.win = self.window(self.input_shape)
        kh, kw = self.win.kernel
        spatial = self._spatial_out(self.win)
        kernel = (kh, kw) if self.ndim == 2 else (kw,)
        self.weight = Parameter(initialize(
            self.resolved_init(), rng, (*spatial, self.filters, c, *kernel), c * kh * kw,
            self.filters * kh * kw, self.dtype,
        ))
        self.bias = (
            Parameter(np.zeros((self.filters, *spatial), self.dtype)) if self.use_bias else None
        )

    def _weight_pkd(self) -> np.ndarray:
        positions = int(np.prod(self.win.out))
        return self.weight.data.reshape(positions, self.filters, -1)

    # Conv2D's dx-free backward does not apply (backward always computes dx): Layer's default
    backward_params = Layer.backward_params
    #: its own forward: no chunked output for the maps of the layers after it (Conv2D's)
    forward_mapped = None

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        n = x.shape[0]
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        w_pkd = self._weight_pkd()
        # im2col's (D, N·P) columns seen as (P, N, D): one small GEMM per position
        x_pnd = im2col(self._to_2d(x), kh, kw, stride, pad).reshape(-1, n, w_pkd.shape[0])
        x_pnd = x_pnd.transpose(2, 1, 0)
        y_pnk = np.matmul(x_pnd, w_pkd.transpose(0, 2, 1))
        y = y_pnk.transpose(1, 2, 0).reshape(n, *self.out_shape)
        if self.bias is not None:
            y = y + self.bias.data
        if training:
            self._cache = x_pnd
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x_pnd = self._take_cache()
        positions, n, _ = x_pnd.shape
        dy = self._check_grad(dy, (n, *self.out_shape))
        dy_pnk = dy.reshape(n, self.filters, positions).transpose(2, 0, 1)
        self.weight.grad = np.matmul(dy_pnk.transpose(0, 2, 1), x_pnd).reshape(
            self.weight.data.shape)
        if self.bias is not None:
            self.bias.grad = dy.sum(axis=0)
        dx_col = np.matmul(dy_pnk, self._weight_pkd()).transpose(2, 1, 0).reshape(-1, n * positions)
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        x_shape = (n, self.input_shape[0], self.win.h.size, self.win.w.size)
        return self._from_2d(col2im(dx_col, x_shape, kh, kw, stride, pad))

    # ------------------------------------------------------------- the lecture
    def _copies(self, input_shape: Shape) -> list[int]:
        return [self.filters, *self._spatial_out(self.window(input_shape))]

    def _param_lines(self, input_shape: Shape) -> list[str]:
        unit = self._unit(input_shape)
        copies = self._copies(input_shape)
        positions = "·".join(map(str, copies[1:]))
        return [
            f"weights: {'·'.join(map(str, unit))} = {int(np.prod(unit))} per filter and output "
            f"position; no sharing, so each of the {positions} positions has its own",
            f"parameters: {param_formula(unit, self.use_bias, copies)}",
        ]

    def param_count(self, input_shape: Shape) -> int:
        """(F·F·D1 + 1)·K·H2·W2, from the shapes alone."""
        return super().param_count(input_shape) * int(np.prod(self._copies(input_shape)[1:]))

    def arithmetic(self, input_shape: Shape) -> str:
        formula = param_formula(self._unit(input_shape), self.use_bias, self._copies(input_shape))
        return f"{self.window(input_shape).formulas()};  params = {formula}"


class LocallyConnected1D(LocallyConnected2D):
    """1-D local connectivity without sharing: LocallyConnected2D with height 1.

    Shape:
        x: (N, C, L)    y: (N, K, L_out)    weight: (L_out, K, C, F)    bias: (K, L_out)
        parameters: (F·C + 1)·K·L_out
    The lecture's example: 7 inputs, 3 hidden units of extent 3, stride 2, no bias → 9 weights.
    """

    ndim = 1
