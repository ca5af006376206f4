"""Convolution: local connectivity and weight sharing, as one GEMM on im2col rows."""

from __future__ import annotations

import numpy as np

from cnnlab import kernels, shapes
from cnnlab.core import Parameter, Shape, ShapeError
from cnnlab.init import initialize
from cnnlab.layers._window import WeightedMixin, WindowLayer, _single, positive_int
from cnnlab.shapes import param_formula


def _tiles_fit(h: int, w: int) -> bool:
    """Winograd's 2×2 tiles pay on maps of at least 8×8 whose tiles are at least 80% inside
    (bench/direct.py: on 7×7, 49 of 64 tile outputs, the "same" path was faster)."""
    return min(h, w) >= 8 and h * w >= 0.8 * (4 * (-(-h // 2)) * (-(-w // 2)))


#: the gather path takes layers of at most this many channels and filters. Forward + backward,
#: batch 128, 2 threads, against the path they took before (ms): 32 → 32 at 14×14 6.7–7.0
#: against Winograd's 9.1–9.2, 32 → 64 at 14×14 13.1 against 14.7–14.8, 64 → 64 at 7×7 6.5
#: against "same"'s 12.4–12.6, 64 → 128 at 7×7 11.7–12.3 against 15.4–16.2, 64 → 64 at 28×28
#: 95–100 against 98–103; but 128 → 128 at 14×14 91–94 against Winograd's 82–83 and 256 → 256
#: at 7×7 113–116 against "same"'s 101–103 (docs/performance.md)
GATHER_LIMITS = (64, 128)


class Conv2D(WeightedMixin, WindowLayer):
    """2-D convolution (cross-correlation) as one GEMM on im2col rows.

    Forward, sample n, filter k, output position (i, j):
        y[n, k, i, j] = b[k] + Σ_{c,u,v} w[k, c, u, v] · x_pad[n, c, i·S + u, j·S + v]
    As matrices, X_col = im2col(x) (C·F·F, N·H_out·W_out), W_mat = w.reshape(K, −1):
        Y_mat = W_mat · X_col + b         (K, N·H_out·W_out), one GEMM for the whole batch
    Backward, with dY_mat = dy as (K, N·H_out·W_out):
        dW_mat = dY_mat · X_colᵀ     db = Σ_columns dY_mat     dx = col2im(W_matᵀ · dY_mat)
    The kernels compute these sums on the batch in cache-sized chunks, split over cnnlab's
    threads (see _path): thin 3×3 layers (at most 16 channels and filters, stride 1, padding 1;
    first layers of 1–3 channels) tap by tap in compiled loops without columns
    (kernels.conv_forward_direct), those of up to 64 channels in float32 by vector code over
    filters (kernels.conv_forward_gather), the others on maps of 8×8 or more by Winograd
    F(2×2, 3×3) (kernels.conv_forward_winograd), layers whose output is (H/S, W/S) by
    kernels.conv_forward_same (im2col and col2im as one shifted run per channel and kernel
    offset), other stride-1 layers on large maps by kernels.conv_forward_wide, the rest by plain
    im2col (kernels.conv_forward_cols).

    Dilation d spaces the taps: x_pad[n, c, i·S + d·u, j·S + d·v], a window of extent
    F' = d·(F − 1) + 1, which replaces F in the output size. Groups g split the channels: filter
    k sees only the C/g channels of its group ⌊k/(K/g)⌋, and the GEMM becomes g GEMMs
    Y_g = W_g · X_col_g (kernels.conv_forward_cols with groups); g = C is the depthwise
    convolution, computed tap by tap (kernels.depthwise_forward).

    Shape:
        x: (N, C, H, W)    y: (N, K, H_out, W_out),  H_out = (H − F' + 2P)/S + 1 (must be whole
        unless fit="floor"), F' = d·(F − 1) + 1    weight: (K, C/g, F, F)    bias: (K,)
        parameters: (F·F·C/g + 1)·K

    Args:
        filters: K, the number of filters (output maps).
        kernel_size: F, an int or a pair (F_h, F_w). Filters span the input depth C
            (C/g with groups).
        stride: S, an int or a pair.
        padding: P, an int or a pair (zeros on both sides), "valid" (0) or "same":
            H_out = ceil(H/S) for any stride, total pad (H_out − 1)·S + F' − H split with the
            odd extra row/column on the bottom/right (TensorFlow's rule).
        dilation: d, an int or a pair: the taps' spacing (1: adjacent, the usual convolution).
        groups: g, dividing both C and K: filters see only their group's C/g channels;
            groups=C is the depthwise convolution (MobileNet), K = C or a multiple of it.
        bias: learn one bias per filter.
        fit: "exact" refuses an output size that is not whole; "floor" drops the leftover
            rows/columns, as PyTorch does.
        init: "auto" (He before ReLU-like activations, Xavier before sigmoid/tanh), "he",
            "he_uniform", "xavier", "xavier_normal" or "zeros". Biases start at zero.
    """

    def __init__(
        self, filters: int, kernel_size, stride=1, padding=0, *, dilation=1, groups: int = 1,
        bias: bool = True, fit: str = "exact", init: str = "auto",
    ) -> None:
        super().__init__(kernel_size, stride, padding, fit)
        owner = self.kind
        self.filters = positive_int(filters, "filters", owner)
        self.dilation = (shapes.as_pair(dilation, "dilation", owner) if self.ndim == 2
                         else _single(dilation, "dilation", owner, minimum=1))
        self.groups = positive_int(groups, "groups", owner)
        if self.filters % self.groups:
            raise ValueError(
                f"{owner}: groups={self.groups} must divide filters={self.filters} (each group "
                f"has K/g filters). Received: filters={self.filters}, groups={self.groups}")
        self.use_bias = bool(bias)
        self._set_init(init)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def config(self) -> dict:
        """The constructor's arguments; dilation and groups only when not 1, so a file of an
        ordinary convolution reads as it did before they existed."""
        extra = {"dilation": self.dilation} if self._dilation() != (1, 1) else {}
        if self.groups != 1:
            extra["groups"] = self.groups
        return {
            "filters": self.filters, "kernel_size": self.kernel_size, "stride": self.stride,
            "padding": self.padding, **extra, "bias": self.use_bias, "fit": self.fit,
            "init": self.init,
        }

    def _dilation(self) -> tuple[int, int]:
        return self.dilation if self.ndim == 2 else (1, self.dilation)

    def window(self, input_shape: Shape) -> shapes.Window:
        """WindowLayer.window, and groups must divide the input depth."""
        win = super().window(input_shape)
        if input_shape[0] % self.groups:
            raise ShapeError(
                f"{self.label}: groups={self.groups} must divide the input depth D1 = "
                f"{input_shape[0]} (each group of filters sees D1/g channels). Received: "
                f"input_shape={tuple(input_shape)}, groups={self.groups}")
        return win

    def output_shape(self, input_shape: Shape) -> Shape:
        return (self.filters, *self._spatial_out(self.window(input_shape)))

    def _build(self, rng: np.random.Generator) -> None:
        c = self.input_shape[0] // self.groups
        self.win = self.window(self.input_shape)
        kh, kw = self.win.kernel
        shape = (self.filters, c, kh, kw) if self.ndim == 2 else (self.filters, c, kw)
        fan_out = self.filters // self.groups * kh * kw  # outputs one input value reaches
        self.weight = Parameter(initialize(
            self.resolved_init(), rng, shape, c * kh * kw, fan_out, self.dtype
        ))
        self.bias = Parameter(np.zeros(self.filters, self.dtype)) if self.use_bias else None

    def parameters(self) -> dict[str, Parameter]:
        if self.weight is None:
            return {}
        return {"weight": self.weight, **({"bias": self.bias} if self.bias else {})}

    def _path(self, inference: bool = False) -> str:
        """Which kernels run this layer (in a training forward and its backward, or in an
        inference forward), all computing the same sums (tested equal):
        - "direct": a 3×3 kernel, stride 1, padding 1, at most 16 input channels and 16 filters,
          or a first layer's 1–3 channels and at most 32 filters: kernels.conv_forward_direct,
          compiled loops with no column matrix; on AVX2, 16 → 16 layers that the gather path
          applies to take it in training instead (kernels.gather_trains_ahead_of_direct).
        - "gather": the same window, float32 where the vector code runs, channels and filters
          a multiple of its width (16 on AVX-512, 8 on AVX2), at most GATHER_LIMITS (64
          channels, 128 filters): kernels.conv_forward_gather, vector code over filters, no
          column matrix; in inference also at stride 2 (forward 1.4–1.5× "same"'s, but its
          backward is slower, so training keeps "same" there); on AVX2, training layers that
          Winograd applies to take Winograd (kernels.gather_trains_ahead_of_winograd).
        - "winograd": the same window, at least 16 input channels (and more than 16 of either),
          a map of at least 8×8 that whole 2×2 tiles cover to 80% or more (not 7×7):
          kernels.conv_forward_winograd, F(2×2, 3×3), 16 products in the BLAS.
        - "same": output (H/S, W/S), the size "same" padding gives, at least 4 input channels
          and not a strided 1×1 kernel (where plain im2col is one strided copy and was faster):
          kernels.conv_forward_same.
        - "wide": other stride-1 windows with padding ≤ F − 1, at least 4 input channels and
          output rows of 24 or more: kernels.conv_forward_wide.
        - "plain": im2col, one GEMM for the batch, col2im; with dilation d > 1 or 1 < g < C
          always (dilated offsets in im2col, g batched GEMMs).
        - "depthwise": groups = C > 1: kernels.depthwise_forward, tap by tap.
        Measured in bench/speed.py's per-layer rows (docs/performance.md): on fewer channels
        the plain path was as fast or faster, and "wide" loses to "plain" on smaller maps."""
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        if self.groups > 1 and self.groups == self.input_shape[0]:
            return "depthwise"
        c = self.input_shape[0]
        if self.groups > 1 or self._dilation() != (1, 1):
            return "plain"
        gathers = self.weight is not None and c <= GATHER_LIMITS[0] \
            and self.filters <= GATHER_LIMITS[1] and kernels.conv_gather_applies(
                kh, kw, stride, pad, c, self.filters, self.weight.data.dtype)
        if kernels.conv_direct_applies(kh, kw, stride, pad) and (
                (c <= 16 and self.filters <= 16) or (c < 4 and self.filters <= 32)):
            ahead = gathers and not inference and c == self.filters == 16 \
                and kernels.gather_trains_ahead_of_direct()
            return "gather" if ahead else "direct"
        winograd = kernels.conv_winograd_applies(kh, kw, stride, pad) and c >= 16 \
            and _tiles_fit(self.win.h.size, self.win.w.size)
        if gathers and (inference or (stride == (1, 1) and (
                not winograd or kernels.gather_trains_ahead_of_winograd()))):
            return "gather"
        if c < 4:
            return "plain"
        if winograd:
            return "winograd"
        if kernels.conv_same_applies(self.win.h.size, self.win.w.size, kh, kw, stride, pad) and (
                kh * kw > 1 or stride == (1, 1)):
            return "same"
        if kernels.conv_wide_applies(kh, kw, stride, pad) and self.win.w.out >= 24:
            return "wide"
        return "plain"

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        return self._forward(x, training, None)

    def forward_mapped(self, maps: list, x: np.ndarray) -> np.ndarray:
        """The inference forward followed by `maps`, the in-place maps of the layers after this
        one (Layer.inference_map: BatchNorm2D, ReLU), applied to each chunk of the output while
        it is in cache instead of in a pass of their own over the whole output: the same values
        as the layers' own forwards, bit for bit (Sequential calls it, in inference only)."""
        def epilogue(block: np.ndarray) -> None:
            for apply in maps:
                apply(block)

        return self._forward(x, False, epilogue)

    def _forward(self, x: np.ndarray, training: bool, epilogue) -> np.ndarray:
        x = self._check_input(x)
        (kh, kw), stride, pad = self.win.kernel, self.win.stride, self.win.pad
        w_mat = self.weight.data.reshape(self.filters, -1)
        bias = None if self.bias is None else self.bias.data
        path = self._path(inference=not training)
        if path == "gather":
            y, saved = kernels.conv_forward_gather(self._to_2d(x), self.weight.data, bias,
                                                    self.win.stride[0], epilogue)
        elif path == "direct":
            y, saved = kernels.conv_forward_direct(self._to_2d(x), self.weight.data, bias,
                                                    epilogue)
        elif path == "winograd":
            # training keeps the transformed input for backward where it costs at most twice
            # the output (2·C ≤ K: V is 4·C values per pixel): fmnist-cnn's 32 → 64, not ResNet's
            keep = training and 2 * self.input_shape[0] <= self.filters
            y, saved = kernels.conv_forward_winograd(self._to_2d(x), self.weight.data, bias, keep,
                                                      epilogue)
        elif path == "same":
            y, saved = kernels.conv_forward_same(self._to_2d(x), w_mat, bias, kh, kw, stride, pad,
                                                  epilogue)
        elif path == "wide":
            y, saved = kernels.conv_forward_wide(self._to_2d(x), w_mat, bias, kh, kw, pad, epilogue)
        elif path == "depthwise":
            saved = self._to_2d(x)  # a reference: backward recomputes what it needs
            y = kernels.depthwise_forward(saved, w_mat.reshape(-1, 1, kh, kw), bias, stride, pad,
                                          self._dilation())
            if epilogue is not None:  # one pass over the whole output, channels first
                epilogue(y.transpose(1, 0, 2, 3))
        else:
            y, saved = kernels.conv_forward_cols(self._to_2d(x), w_mat, bias, kh, kw, stride, pad,
                                                 self._dilation(), self.groups, epilogue)
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
        if path == "gather":
            dw, db, dx = kernels.conv_backward_gather(dy, saved, weight, **flags)
        elif path == "direct":
            dw, db, dx = kernels.conv_backward_direct(dy, saved, weight, **flags)
        elif path == "winograd":
            dw, db, dx = kernels.conv_backward_winograd(dy, saved, weight, **flags)
        elif path == "same":
            dw, db, dx = kernels.conv_backward_same(dy, saved, weight, stride, pad, **flags)
        elif path == "wide":
            dw, db, dx = kernels.conv_backward_wide(dy, saved, weight, pad, **flags)
        elif path == "depthwise":
            dw, db, dx = kernels.depthwise_backward(dy, saved, weight, stride, pad,
                                                    self._dilation(), **flags)
        else:
            x_shape = (n, self.input_shape[0], self.win.h.size, self.win.w.size)
            dw, db, dx = kernels.conv_backward_cols(dy, saved, weight, x_shape, stride, pad,
                                                    dilation=self._dilation(), groups=self.groups,
                                                    **flags)
        self.weight.grad = dw.reshape(self.weight.data.shape)
        if self.bias is not None:
            self.bias.grad = db
        return None if dx is None else self._from_2d(dx)

    # ------------------------------------------------------------- the lecture
    def _requires(self) -> str:
        plural = "s" if self.filters != 1 else ""
        text = f"K = {self.filters} filter{plural}, " + super()._requires()
        d = self._dilation()
        if d != (1, 1):
            text += f", dilation d = {d[1] if d[0] == d[1] or self.ndim == 1 else f'{d[0]}×{d[1]}'}"
        if self.groups != 1:
            text += f", groups g = {self.groups}"
        return text

    def _depth(self, input_shape: Shape) -> str:
        return f"D2 = K = {self.filters}"

    def _unit(self, input_shape: Shape) -> list[int]:
        """The weights of one filter: F·F·D1/g (F·D1/g in 1-D)."""
        depth = input_shape[0] // self.groups
        return [*self.kernel_size, depth] if self.ndim == 2 else [self.kernel_size, depth]

    def _param_formula(self, input_shape: Shape) -> str:
        """ "(5·5·3 + 1)·10 = 760"; with groups "(3·3·32/4 + 1)·64 = 4,672", D1/g written out
        (and the parentheses kept without bias: "(3·3·32/32)·32 = 288")."""
        unit = self._unit(input_shape)
        if self.groups == 1:
            return param_formula(unit, self.use_bias, [self.filters])
        inner = "·".join(map(str, unit[:-1])) + f"·{input_shape[0]}/{self.groups}"
        total = self.param_count(input_shape)
        return f"({inner}{' + 1' if self.use_bias else ''})·{self.filters} = {total:,}"

    def param_count(self, input_shape: Shape) -> int:
        """Weights and biases for this input from the shapes alone, nothing built:
        (F·F·D1/g + 1)·K. What a model file's limits count before building it."""
        return (int(np.prod(self._unit(input_shape))) + self.use_bias) * self.filters

    def _param_lines(self, input_shape: Shape) -> list[str]:
        unit = self._unit(input_shape)
        per_filter = "·".join(map(str, [*unit[:-1], input_shape[0]]))
        symbols = "F·F·D1" if self.ndim == 2 else "F·D1"
        bias = f", plus K = {self.filters} biases" if self.use_bias else " (no bias)"
        if self.groups == 1:
            head = f"weights: {symbols} = {per_filter} = {int(np.prod(unit))} per filter"
        else:
            per_group = self.filters // self.groups
            plural = "s" if per_group != 1 else ""
            if self.groups == input_shape[0]:
                groups = f"depthwise: {per_group} filter{plural} on each channel"
            else:
                groups = (f"{self.groups} groups of {per_group} filter{plural}, each on "
                          f"{unit[-1]} of the {input_shape[0]} channels")
            head = (f"weights: {symbols}/g = {per_filter}/{self.groups} = {int(np.prod(unit))} "
                    f"per filter ({groups})")
        return [f"{head}, shared by every output position{bias}",
                f"parameters: {self._param_formula(input_shape)}"]

    def macs(self, input_shape: Shape) -> int:
        """K·(C/g)·F·F·H2·W2 (K·(C/g)·F·L2 in 1-D): each output value is one filter's products.
        LocallyConnected inherits it: its weights differ per position, their number of uses not."""
        return self.filters * int(np.prod(self._unit(input_shape))) * int(
            np.prod(self.output_shape(input_shape)[1:]))

    def arithmetic(self, input_shape: Shape) -> str:
        win = self.window(input_shape)
        dilated = f"{win.dilation_text()}, " if self._dilation() != (1, 1) else ""
        return f"{dilated}{win.formulas()};  params = {self._param_formula(input_shape)}"


class Conv1D(Conv2D):
    """1-D convolution over sequences: Conv2D with height 1 (same formulas, W axis only).

    Shape:
        x: (N, C, L)    y: (N, K, L_out),  L_out = (L − F' + 2P)/S + 1,  F' = d·(F − 1) + 1
        weight: (K, C/g, F)    bias: (K,)    parameters: (F·C/g + 1)·K
    kernel_size, stride, padding and dilation are ints ("same" and "valid" as in Conv2D);
    groups as in Conv2D (groups=C: depthwise).
    """

    ndim = 1
