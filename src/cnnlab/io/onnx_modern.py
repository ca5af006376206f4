"""ONNX converters for the layers of recent networks (issue 20), registered in onnx_layers'
table by `@converts`; onnx_export imports this module, so every export has them.

The forms (each tested against the layer's forward in onnxruntime, tests/test_onnx_modern.py):
    LayerNorm        opset ≥ 17: LayerNormalization(axis=−1, epsilon) on (N, D); on (N, C, H, W)
                     and (N, C, L) between two Transposes (channels last and back), since
                     ONNX's LayerNormalization normalises the trailing axes and cnnlab the
                     channels at each position. Opsets 14–16 (no LayerNormalization): the
                     standardisation written out over axis 1, as cnnlab computes it (below)
    GroupNorm        at every opset Reshape (N, G, −1), the standardisation over axis 2, Reshape
                     back, Mul γ, Add β per channel. ONNX's GroupNormalization scales per
                     group at opset 18 (per channel from 21, 18's form deprecated): one
                     decomposition is exact at every opset, so cnnlab never emits it
    GlobalMaxPool2D  GlobalMaxPool + Flatten
    AdaptiveAvgPool2D  every window the same block (H_out | H, W_out | W): AveragePool with
                     kernel = stride = (H/H_out, W/W_out). Otherwise the separable window sums
                     as two MatMuls with 0/1 constants, x·B_w (W, W_out) then A_h (H_out, H)·…,
                     and one Div by the windows' sizes |window i|·|window j| (H_out, W_out):
                     sums, then one division, as kernels/adaptive.py; an axis whose windows are
                     single rows (None, or H_out = H) has no MatMul. The constants take
                     H_out·H + W·W_out floats, nothing per sample
    LayerScale       Mul by γ as (C, 1, 1) (or (C,) on (N, D))
    DropPath         nothing (the identity at inference, as Dropout)
The standardisation, over the given axis with keepdims:
    μ = ReduceMean(x)   d = x − μ   σ² = ReduceMean(d·d)   x̂ = d / Sqrt(σ² + ε)
AvgPool's count_include_pad=False is onnx_layers' AveragePool attribute.
"""

from __future__ import annotations

import numpy as np

from cnnlab.io.onnx_graph import Graph
from cnnlab.io.onnx_layers import converts
from cnnlab.layers import (
    AdaptiveAvgPool2D,
    DropPath,
    GlobalMaxPool2D,
    GroupNorm,
    LayerNorm,
    LayerScale,
)

#: the first opset with LayerNormalization
LAYER_NORMALIZATION_OPSET = 17


def standardise(g: Graph, x: str, axis: int, eps: float, name: str) -> str:
    """x̂ = (x − μ)/√(σ² + ε) over `axis` (biased σ², two passes as cnnlab's _standardise)."""
    mean = g.reduce("ReduceMean", x, [axis], f"{name}/mean", keepdims=1)
    d = g.op("Sub", [x, mean], f"{name}/centred")
    var = g.reduce("ReduceMean", g.op("Mul", [d, d], f"{name}/square"), [axis], f"{name}/var",
                   keepdims=1)
    std = g.op("Sqrt", [g.op("Add", [var, g.scalar(f"{name}/eps", eps)], f"{name}/var_eps")],
               f"{name}/std")
    return g.op("Div", [d, std], f"{name}/x_hat")


def _affine(g: Graph, layer, x_hat: str, name: str) -> str:
    """γ_c·x̂ + β_c, with γ and β as (C, 1, …) to broadcast over the positions."""
    shape = (-1, *[1] * (len(layer.input_shape) - 1))
    gamma = g.const(f"{name}.weight", layer.weight.data.reshape(shape))
    scaled = g.op("Mul", [x_hat, gamma], f"{name}/scaled")
    return g.op("Add", [scaled, g.const(f"{name}.bias", layer.bias.data.reshape(shape))], name)


@converts(LayerNorm, handles=("eps",))
def layer_norm(g: Graph, layer: LayerNorm, x: str, name: str) -> str:
    if g.opset < LAYER_NORMALIZATION_OPSET:
        return _affine(g, layer, standardise(g, x, 1, layer.eps, name), name)
    rank = len(layer.input_shape) + 1
    last = [0, *range(2, rank), 1]  # (N, C, H, W) → (N, H, W, C)
    if rank > 2:
        x = g.op("Transpose", [x], f"{name}/channels_last", perm=last)
    inputs = [x, g.const(f"{name}.weight", layer.weight.data), g.const(f"{name}.bias", layer.bias.data)]
    if rank == 2:
        return g.op("LayerNormalization", inputs, name, axis=-1, epsilon=layer.eps)
    y = g.op("LayerNormalization", inputs, f"{name}/normalised", axis=-1, epsilon=layer.eps)
    back = [0, rank - 1, *range(1, rank - 1)]  # (N, H, W, C) → (N, C, H, W)
    return g.op("Transpose", [y], name, perm=back)


@converts(GroupNorm, handles=("groups", "eps"))
def group_norm(g: Graph, layer: GroupNorm, x: str, name: str) -> str:
    groups = g.op("Reshape", [x, g.ints(f"{name}/group_shape", [0, layer.groups, -1])],
                  f"{name}/groups")  # 0: the batch size copied from x
    x_hat = standardise(g, groups, 2, layer.eps, name)
    x_hat = g.op("Reshape", [x_hat, g.ints(f"{name}/shape", [-1, *layer.input_shape])],
                 f"{name}/x_hat_nc")
    return _affine(g, layer, x_hat, name)


@converts(LayerScale, handles=("init",))
def layer_scale(g: Graph, layer: LayerScale, x: str, name: str) -> str:
    shape = (-1, *[1] * (len(layer.input_shape) - 1))
    return g.op("Mul", [x, g.const(f"{name}.weight", layer.weight.data.reshape(shape))], name)


@converts(DropPath, handles=("rate",))
def drop_path(g: Graph, layer: DropPath, x: str, name: str) -> str:
    return x  # the identity at inference: no node


@converts(GlobalMaxPool2D)
def global_max_pool(g: Graph, layer: GlobalMaxPool2D, x: str, name: str) -> str:
    return g.op("Flatten", [g.op("GlobalMaxPool", [x], f"{name}/pool")], name, axis=1)


@converts(AdaptiveAvgPool2D, handles=("output_size",))
def adaptive_avg_pool(g: Graph, layer: AdaptiveAvgPool2D, x: str, name: str) -> str:
    (h, w), (h_out, w_out) = layer.input_shape[1:], layer.out_shape[1:]
    if h % h_out == 0 and w % w_out == 0:
        kernel = [h // h_out, w // w_out]
        return g.op("AveragePool", [x], name, kernel_shape=kernel, strides=kernel)
    if w_out != w:  # an axis pooled to its own size has windows of one row: no MatMul
        x = g.op("MatMul", [x, g.const(f"{name}/sum_columns", _indicator(w, w_out).T)],
                 f"{name}/column_sums")  # (N, C, H, W_out)
    if h_out != h:
        x = g.op("MatMul", [g.const(f"{name}/sum_rows", _indicator(h, h_out)), x],
                 f"{name}/window_sums")  # (H_out, H)·(N, C, H, W_out) → (N, C, H_out, W_out)
    counts = np.outer(_indicator(h, h_out).sum(axis=1), _indicator(w, w_out).sum(axis=1))
    return g.op("Div", [x, g.const(f"{name}/window_sizes", counts)], name)


def _indicator(size: int, out: int) -> np.ndarray:
    """(out, size): row i is 1 on window i's rows ⌊i·size/out⌋ … ⌈(i + 1)·size/out⌉ − 1
    (PyTorch's windows, kernels/adaptive.py's; io does not import kernels)."""
    i = np.arange(out)
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    rows = np.arange(size)
    return ((rows >= start[:, None]) & (rows < end[:, None])).astype(np.float32)
