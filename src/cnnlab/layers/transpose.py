"""The transposed convolution: a convolution's backward pass, run forward, to upsample."""

from __future__ import annotations

import numpy as np

from cnnlab import kernels, shapes
from cnnlab.core import Layer, Parameter, Shape, ShapeError, volume
from cnnlab.init import initialize
from cnnlab.layers._window import WeightedMixin, _hyper, positive_int
from cnnlab.shapes import param_formula


class ConvTranspose2D(WeightedMixin, Layer):
    """2-D transposed convolution ("deconvolution", fractionally strided convolution).

    The convolution G = Conv2D(C, F, S, P) on a K-channel input maps (K, H2, W2) to (C, H1, W1);
    this layer is its transpose, G's input gradient used as a forward pass: it maps (C, H1, W1)
    back to (K, H2, W2), every input value spreading a weighted F×F patch, patches S apart.
    Forward, sample n, output channel k, input position (i, j):
        y_pad[n, k, i·S + u, j·S + v] += Σ_c w[c, k, u, v] · x[n, c, i, j]     y = crop_P(y_pad) + b
    As matrices, X_mat = x as (C, N·H·W), W_mat = w.reshape(C, K·F·F):
        Y = col2im(W_matᵀ · X_mat) + b           (G's backward: dx = col2im(W_matᵀ · dY))
    Backward, with D_col = im2col(dy) (K·F·F, N·H·W), G's forward:
        dx = W_mat · D_col     dW_mat = X_mat · D_colᵀ     db = Σ_{n,i,j} dy
    (kernels.conv_transpose_forward/backward; the "same" path's im2col and col2im when G's
    output is (H2/S, W2/S), as for kernel 4, stride 2, padding 1.)

    Shape:
        x: (N, C, H, W)    y: (N, K, H_out, W_out),
        H_out = (H − 1)·S − 2P + F + output_padding: G's output rule (H_out − F + 2P)/S + 1 = H
        solved for H_out; a stride-S convolution floors away up to S − 1 rows, so output_padding
        (< S) says how many of them to add back (at the bottom/right).
        weight: (C, K, F, F), the weight of G (cnnlab's Conv2D layout for the convolution it
        transposes, and PyTorch's ConvTranspose2d layout (C_in, C_out, F, F))
        bias: (K,)    parameters: (F·F·C + 1)·K

    Args:
        filters: K, the output channels.
        kernel_size: F, an int or a pair.
        stride: S, an int or a pair: the upsampling factor.
        padding: P, an int or a pair: G's zero padding, so P rows are cropped from each side.
        output_padding: an int or a pair, each smaller than the stride.
        bias: learn one bias per output channel.
        init: as Conv2D; He and Xavier count fan_in = C·F·F/(S·S), the inputs an output value
            sums on average, and fan_out = K·F·F.
    """

    def __init__(self, filters: int, kernel_size, stride=1, padding=0, output_padding=0, *,
                 bias: bool = True, init: str = "auto") -> None:
        super().__init__()
        owner = self.kind
        self.filters = positive_int(filters, "filters", owner)
        self.kernel_size = shapes.as_pair(kernel_size, "kernel_size", owner)
        self.stride = shapes.as_pair(stride, "stride", owner)
        self.padding = shapes.as_pair(padding, "padding", owner, minimum=0)
        self.output_padding = shapes.as_pair(output_padding, "output_padding", owner, minimum=0)
        if any(p >= s for p, s in zip(self.output_padding, self.stride, strict=True)):
            raise ValueError(
                f"{owner}: output_padding must be smaller than the stride (it adds back rows "
                f"that a stride-S convolution floors away). Received: output_padding="
                f"{self.output_padding}, stride={self.stride}")
        self.use_bias = bool(bias)
        self._set_init(init)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def config(self) -> dict:
        return {"filters": self.filters, "kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding, "output_padding": self.output_padding,
                "bias": self.use_bias, "init": self.init}

    # ------------------------------------------------------------------ shapes
    def _out_size(self, input_shape: Shape) -> tuple[int, int]:
        if len(input_shape) != 3:
            raise ShapeError(f"{self.label}: expects per-sample input (C, H, W). "
                             f"Received: input_shape={tuple(input_shape)}")
        return tuple((n - 1) * s - 2 * p + f + o for n, s, p, f, o in zip(
            input_shape[1:], self.stride, self.padding, self.kernel_size, self.output_padding,
            strict=True))

    def _formula(self, input_shape: Shape, axis: int) -> str:
        n, s, p, f, o = (v[axis] for v in (input_shape[1:], self.stride, self.padding,
                                            self.kernel_size, self.output_padding))
        return f"({n} − 1)·{s} − 2·{p} + {f} + {o} = {(n - 1) * s - 2 * p + f + o}"

    def formulas(self, input_shape: Shape) -> str:
        """ "H2 = W2 = (7 − 1)·2 − 2·1 + 3 + 1 = 14" (each axis when they differ)."""
        h, w = self._formula(input_shape, 0), self._formula(input_shape, 1)
        return f"H2 = W2 = {h}" if h == w else f"H2 = {h}; W2 = {w}"

    def output_shape(self, input_shape: Shape) -> Shape:
        out = self._out_size(input_shape)
        if min(out) < 1:
            raise ShapeError(
                f"{self.label}: the output would be empty: {self.formulas(input_shape)}. "
                f"Expected (H − 1)·S + F + output_padding > 2·padding. Received: input size "
                f"{input_shape[1]}×{input_shape[2]}, padding={self.padding}")
        return (self.filters, *out)

    def convolution(self, input_shape: Shape) -> shapes.Window:
        """The window of G, the convolution this layer transposes, on this layer's output."""
        return shapes.window(self.label, self._out_size(input_shape), self.kernel_size,
                             self.stride, self.padding, "floor")

    # ---------------------------------------------------------------- build
    def _build(self, rng: np.random.Generator) -> None:
        c = self.input_shape[0]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        fan_in = max(1, c * kh * kw // (sh * sw))
        self.weight = Parameter(initialize(self.resolved_init(), rng, (c, self.filters, kh, kw),
                                           fan_in, self.filters * kh * kw, self.dtype))
        self.bias = Parameter(np.zeros(self.filters, self.dtype)) if self.use_bias else None

    def parameters(self) -> dict[str, Parameter]:
        if self.weight is None:
            return {}
        return {"weight": self.weight, **({"bias": self.bias} if self.bias else {})}

    def param_count(self, input_shape: Shape) -> int:
        """(F·F·D1 + 1)·K from the shapes alone, nothing built."""
        return (self.kernel_size[0] * self.kernel_size[1] * input_shape[0] + self.use_bias) * \
            self.filters

    # ------------------------------------------------------------ forward/back
    def _pads(self):
        return tuple((p, p) for p in self.padding)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        bias = None if self.bias is None else self.bias.data
        y, xc = kernels.conv_transpose_forward(x, self.weight.data, bias, self.stride,
                                               self._pads(), self.out_shape[1:])
        if training:
            self._cache = xc
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self._backward(dy, input_grad=True)

    def backward_params(self, dy: np.ndarray) -> None:
        """Fills weight.grad and bias.grad only, skipping dx (the first layer of a network)."""
        self._backward(dy, input_grad=False)

    def _backward(self, dy: np.ndarray, input_grad: bool) -> np.ndarray | None:
        xc = self._take_cache()
        dy = self._check_grad(dy, (xc.shape[1], *self.out_shape))
        dw, db, dx = kernels.conv_transpose_backward(
            dy, xc, self.weight.data, self.stride, self._pads(), input_grad=input_grad,
            bias_grad=self.bias is not None)
        self.weight.grad = dw
        if self.bias is not None:
            self.bias.grad = db
        return dx

    # ------------------------------------------------------------- the lecture
    def _param_formula(self, input_shape: Shape) -> str:
        return param_formula([*self.kernel_size, input_shape[0]], self.use_bias, [self.filters])

    def macs(self, input_shape: Shape) -> int:
        """C·K·F·F·H1·W1: every input value meets K·F·F weights (G's count, read backwards)."""
        return input_shape[0] * self.filters * int(np.prod(self.kernel_size)) * int(
            np.prod(input_shape[1:]))

    def arithmetic(self, input_shape: Shape) -> str:
        return f"{self.formulas(input_shape)};  params = {self._param_formula(input_shape)}"

    def explain(self, input_shape) -> str:
        input_shape = tuple(int(d) for d in input_shape)
        lines = [f"{self.label}: accepts a volume H1×W1×D1 = {volume(input_shape)}"]
        f, s, p, o = (_hyper(v) for v in (self.kernel_size, self.stride, self.padding,
                                          self.output_padding))
        plural = "s" if self.filters != 1 else ""
        requires = (f"requires K = {self.filters} filter{plural}, extent F = {f}, stride S = {s}, "
                    f"padding P = {p}, output_padding = {o}")
        try:
            out = self.output_shape(input_shape)
        except ShapeError as error:
            return "\n".join([*lines, requires, f"doesn't fit: {error}"])
        g = self.convolution(input_shape)
        rule = "(H1 − 1)·S − 2P + F + output_padding"
        sizes = [self._formula(input_shape, 0), self._formula(input_shape, 1)]
        if sizes[0] == sizes[1]:
            sizes_text = [f"  H2 = W2 = {rule} = {sizes[0]}"]
        else:
            sizes_text = [f"  H2 = {rule} = {sizes[0]}", f"  W2 = {rule.replace('H1', 'W1')} = {sizes[1]}"]
        back = [a.formula() for a in (g.h, g.w)]
        back_text = back[0] if back[0] == back[1] else f"H: {back[0]}; W: {back[1]}"
        dropped = f" (output_padding = {o} adds back what its floor drops)" \
            if any(self.output_padding) else ""
        bias = f", plus K = {self.filters} biases" if self.use_bias else " (no bias)"
        fh, fw = self.kernel_size
        lines += [
            requires, f"produces a volume H2×W2×D2 = {volume(out)}", *sizes_text,
            f"  D2 = K = {self.filters}",
            f"  the backward pass of the convolution F = {f}, S = {s}, P = {p} from "
            f"{volume(out)} to {volume(input_shape)}: {back_text}{dropped}",
            f"weights: F·F·D1 = {fh}·{fw}·{input_shape[0]} = {fh * fw * input_shape[0]} per "
            f"filter, shared by every input position{bias}",
            f"parameters: {self._param_formula(input_shape)}",
        ]
        return "\n".join(lines)
