"""Every cnnlab layer as standard ONNX operators: a table from layer class to converter.

A converter is `fn(g, layer, x, name) -> y`: it appends to the Graph `g` the nodes that compute
`layer` on the value named `x` and returns the name of the result; `name` is the layer's
qualified name ("residual_1.branch.conv2d_1"), which names its constants as parameters() does.
`@converts(Layer, ..., handles=(...))` registers one; `handles` lists the layer's config() keys
the converter reads. A key it does not list (an argument added to a layer later, such as a
convolution's dilation) must be at its constructor default, else export stops naming it:
an export is exact or refused, never silently different. Lookup is by exact class, so a
subclass (LocallyConnected2D of Conv2D) never borrows its parent's converter.

The forms (each tested against the layer's forward in onnxruntime, tests/test_onnx.py):
    Conv2D/Conv1D            Conv with explicit pads [top, left, bottom, right]: "same" with an
                             odd total puts the extra row/column last, as cnnlab does;
                             dilation as `dilations`, groups (depthwise: groups = C) as `group`
    ConvTranspose2D          ConvTranspose (weight (C, K, F, F), pads, output_padding)
    Max/AvgPool              MaxPool, AveragePool (count_include_pad 1 or 0, as the layer's)
    GlobalAvgPool2D          GlobalAveragePool + Flatten
    Dense, Flatten           Gemm (transB=1), Flatten(axis=1)
    BatchNorm1D/2D           BatchNormalization with the running statistics (inference form)
    Dropout                  nothing (the identity at inference)
    activations              Sigmoid, Tanh, Relu, LeakyRelu, Elu, PRelu (slope (C, 1, …)),
                             Swish x·Sigmoid(βx), Maxout Reshape + ReduceMax, ReLU6 Clip,
                             Hardswish HardSwish, GELU x·½(1 + Erf(x/√2)) or its tanh form
    LocalResponseNorm        LRN for odd sizes on (N, C, H, W) (the window ONNX and cnnlab share);
                             otherwise x²'s channel window summed by a (n, 1) Conv of ones, Pow
    LocallyConnected2D/1D    Pad, Gather of every window (P, C·F·F), one batched MatMul with the
                             weights as (P, C·F·F, K), Transpose and Reshape to (N, K, H2, W2)
    Residual, Concat         Add, Concat(axis=1) of the branches' graphs
    SqueezeExcite            GlobalAveragePool, Gemm, Relu, Gemm, Sigmoid, Mul
    LayerNorm, GroupNorm, LayerScale, DropPath, GlobalMaxPool2D, AdaptiveAvgPool2D: onnx_modern.py
layers may be imported here: io sits above them.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cnnlab.core import Layer
from cnnlab.io.onnx_graph import Graph
from cnnlab.layers import (
    ELU,
    GELU,
    AvgPool1D,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Concat,
    Conv1D,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Hardswish,
    LeakyReLU,
    LocallyConnected1D,
    LocallyConnected2D,
    LocalResponseNorm,
    Maxout,
    MaxPool1D,
    MaxPool2D,
    PReLU,
    ReLU,
    ReLU6,
    Residual,
    Sequential,
    Sigmoid,
    SiLU,
    SqueezeExcite,
    Swish,
    Tanh,
)


@dataclass(frozen=True)
class Converter:
    """A converter function and the config() keys of its layer that it reads."""

    convert: Callable[[Graph, Layer, str, str], str]
    handles: frozenset[str]


#: layer class → its converter (exact classes: subclasses register their own)
CONVERTERS: dict[type, Converter] = {}


def converts(*classes: type, handles: tuple[str, ...] = ()):
    """Registers the decorated function as the converter of `classes`."""

    def register(fn):
        for cls in classes:
            CONVERTERS[cls] = Converter(fn, frozenset(handles))
        return fn

    return register


def convert(g: Graph, layer: Layer, x: str, name: str) -> str:
    """The nodes computing `layer` on `x`; ValueError naming the layer when it cannot export."""
    converter = CONVERTERS.get(type(layer))
    where = f"{name or 'the model'} ({layer.kind})"
    if converter is None:
        known = ", ".join(sorted(cls.__name__ for cls in CONVERTERS))
        raise ValueError(f"export_onnx: {where} has no ONNX converter. Layers that export: {known} "
                         "(cnnlab.io.onnx_layers.converts registers a new one)")
    signature = inspect.signature(type(layer)).parameters
    for key, value in layer.config().items():
        default = signature[key].default if key in signature else inspect.Parameter.empty
        if key not in converter.handles and not _is_default(value, default):
            raise ValueError(f"export_onnx: {where}: {key}={value!r} is not exported (the ONNX "
                             f"converter of {layer.kind} handles {', '.join(sorted(converter.handles))}"
                             f"; {key} must be {default!r})")
    return converter.convert(g, layer, x, name)


def _is_default(value, default) -> bool:
    if default is inspect.Parameter.empty:
        return False
    if isinstance(value, tuple | list) and not isinstance(default, tuple | list):
        return all(v == default for v in value)
    return value == default


def _at(name: str, part: str) -> str:
    return f"{name}.{part}" if name else part


# ------------------------------------------------------------------------- containers
@converts(Sequential, handles=("layers",))
def sequential(g: Graph, model: Sequential, x: str, name: str) -> str:
    for layer in model.layers:
        x = convert(g, layer, x, _at(name, layer.name))
    return x


@converts(Residual, handles=("branch_layers", "shortcut"))
def residual(g: Graph, layer: Residual, x: str, name: str) -> str:
    y = convert(g, layer.branch, x, _at(name, "branch"))
    s = x if layer.shortcut is None else convert(g, layer.shortcut, x, _at(name, "shortcut"))
    return g.op("Add", [y, s], name)


@converts(Concat, handles=("branches",))
def concat(g: Graph, layer: Concat, x: str, name: str) -> str:
    outs = [convert(g, branch, x, _at(name, branch.name)) for branch in layer.branches]
    return g.op("Concat", outs, name, axis=1)


@converts(SqueezeExcite, handles=("reduction",))
def squeeze_excite(g: Graph, layer: SqueezeExcite, x: str, name: str) -> str:
    c, rest = layer.input_shape[0], layer.input_shape[1:]
    s = g.op("Flatten", [g.op("GlobalAveragePool", [x], f"{name}/pool")], f"{name}/squeeze", axis=1)
    a = g.op("Relu", [dense(g, layer.fc1, s, _at(name, "fc1"))], f"{name}/relu")
    gate = g.op("Sigmoid", [dense(g, layer.fc2, a, _at(name, "fc2"))], f"{name}/gate")
    shape = g.ints(f"{name}/gate_shape", [-1, c, *[1] * len(rest)])
    return g.op("Mul", [x, g.op("Reshape", [gate, shape], f"{name}/gate_nc11")], name)


# ------------------------------------------------------------------- weighted layers
CONV_KEYS = ("filters", "kernel_size", "stride", "padding", "bias", "fit", "init")


def _window(layer) -> dict:
    """kernel_shape, strides and pads (every "before" then every "after", as ONNX orders them)
    of a built window layer, from its resolved window: "same" padding's split included."""
    win = layer.win
    axes = (win.h, win.w) if layer.ndim == 2 else (win.w,)
    return {"kernel_shape": [a.kernel for a in axes], "strides": [a.stride for a in axes],
            "pads": [a.pad[0] for a in axes] + [a.pad[1] for a in axes]}


@converts(Conv2D, Conv1D, handles=(*CONV_KEYS, "dilation", "groups"))
def conv(g: Graph, layer: Conv2D, x: str, name: str) -> str:
    """Conv; a dilated window as `dilations` (the pads are the resolved window's, so "same" with
    dilation splits as cnnlab does), grouped and depthwise as `group` (the weight (K, C/g, F, F)
    is ONNX's layout)."""
    inputs = [x, g.const(f"{name}.weight", layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.const(f"{name}.bias", layer.bias.data))
    window = _window(layer)
    dilation = layer._dilation() if layer.ndim == 2 else (layer._dilation()[1],)
    if any(d != 1 for d in dilation):
        window["dilations"] = list(dilation)
    if layer.groups != 1:
        window["group"] = layer.groups
    return g.op("Conv", inputs, name, **window)


@converts(ConvTranspose2D, handles=("filters", "kernel_size", "stride", "padding", "output_padding",
                                    "bias", "init"))
def conv_transpose(g: Graph, layer: ConvTranspose2D, x: str, name: str) -> str:
    """ConvTranspose with the weight (C, K, F, F), ONNX's layout too; output size
    (H − 1)·S − 2P + F + output_padding, the same rule."""
    inputs = [x, g.const(f"{name}.weight", layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.const(f"{name}.bias", layer.bias.data))
    (ph, pw), (oh, ow) = layer.padding, layer.output_padding
    return g.op("ConvTranspose", inputs, name, kernel_shape=list(layer.kernel_size),
                strides=list(layer.stride), pads=[ph, pw, ph, pw], output_padding=[oh, ow])


@converts(Dense, handles=("units", "bias", "init"))
def dense(g: Graph, layer: Dense, x: str, name: str) -> str:
    inputs = [x, g.const(f"{name}.weight", layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.const(f"{name}.bias", layer.bias.data))
    return g.op("Gemm", inputs, name, transB=1)


@converts(LocallyConnected2D, LocallyConnected1D, handles=CONV_KEYS)
def locally_connected(g: Graph, layer: LocallyConnected2D, x: str, name: str) -> str:
    """y = Reshape(Transpose(MatMul(Transpose(Gather(x_pad flat, windows)), W_pdk))) + b."""
    win, c, k = layer.win, layer.input_shape[0], layer.filters
    (top, bottom), (left, right) = win.pad
    if top or bottom or left or right:
        pads = [0, 0, top, left, 0, 0, bottom, right] if layer.ndim == 2 else [0, 0, left, 0, 0, right]
        x = g.op("Pad", [x, g.ints(f"{name}/pads", pads)], f"{name}/pad")
    flat = g.op("Flatten", [x], f"{name}/flat", axis=1)  # (N, C·Hp·Wp)
    windows = g.const(f"{name}/windows", _window_indices(win, c))  # int64 (P, D)
    patches = g.op("Gather", [flat, windows], f"{name}/patches", axis=1)  # (N, P, D)
    positions = math.prod(win.out)
    w_pdk = layer.weight.data.reshape(positions, k, -1).transpose(0, 2, 1)  # (P, D, K)
    pnd = g.op("Transpose", [patches], f"{name}/patches_pnd", perm=[1, 0, 2])
    pnk = g.op("MatMul", [pnd, g.const(f"{name}.weight_pdk", w_pdk)], f"{name}/matmul")
    nkp = g.op("Transpose", [pnk], f"{name}/nkp", perm=[1, 2, 0])
    shape = g.ints(f"{name}/shape", [-1, *layer.out_shape])
    if layer.bias is None:
        return g.op("Reshape", [nkp, shape], name)
    y = g.op("Reshape", [nkp, shape], f"{name}/y")
    return g.op("Add", [y, g.const(f"{name}.bias", layer.bias.data)], name)


def _window_indices(win, c: int) -> np.ndarray:
    """(P, C·F_h·F_w): for output position p = (i, j) and window entry d = (c, u, v), its index
    c·Hp·Wp + (i·S_h + u)·Wp + (j·S_w + v) in one padded sample flattened; d in the order of
    the weights' (K, C, F_h, F_w) rows, p in (H2, W2) order."""
    hp = win.h.size + sum(win.h.pad)
    wp = win.w.size + sum(win.w.pad)
    rows = np.arange(win.h.out)[:, None] * win.h.stride + np.arange(win.h.kernel)  # (H2, Fh)
    cols = np.arange(win.w.out)[:, None] * win.w.stride + np.arange(win.w.kernel)  # (W2, Fw)
    index = (np.arange(c)[None, None, :, None, None] * (hp * wp)
             + rows[:, None, None, :, None] * wp + cols[None, :, None, None, :])
    return index.reshape(win.h.out * win.w.out, -1)


# --------------------------------------------------------------------------- pooling
POOL_KEYS = ("kernel_size", "stride", "padding", "fit")


@converts(MaxPool2D, MaxPool1D, handles=POOL_KEYS)
def max_pool(g: Graph, layer: MaxPool2D, x: str, name: str) -> str:
    return g.op("MaxPool", [x], name, **_window(layer))


@converts(AvgPool2D, AvgPool1D, handles=(*POOL_KEYS, "count_include_pad"))
def avg_pool(g: Graph, layer: AvgPool2D, x: str, name: str) -> str:
    return g.op("AveragePool", [x], name, count_include_pad=int(layer.count_include_pad),
                **_window(layer))


@converts(GlobalAvgPool2D)
def global_avg_pool(g: Graph, layer: GlobalAvgPool2D, x: str, name: str) -> str:
    return g.op("Flatten", [g.op("GlobalAveragePool", [x], f"{name}/pool")], name, axis=1)


# ------------------------------------------------------------- shapes and statistics
@converts(Flatten)
def flatten(g: Graph, layer: Flatten, x: str, name: str) -> str:
    return g.op("Flatten", [x], name, axis=1)


@converts(Dropout, handles=("rate",))
def dropout(g: Graph, layer: Dropout, x: str, name: str) -> str:
    return x  # the identity at inference: no node


@converts(BatchNorm2D, BatchNorm1D, handles=("momentum", "eps"))
def batch_norm(g: Graph, layer, x: str, name: str) -> str:
    inputs = [x] + [g.const(f"{name}.{part}", array) for part, array in (
        ("weight", layer.weight.data), ("bias", layer.bias.data),
        ("running_mean", layer.running_mean), ("running_var", layer.running_var))]
    return g.op("BatchNormalization", inputs, name, epsilon=layer.eps)


@converts(LocalResponseNorm, handles=("size", "alpha", "beta", "k"))
def local_response_norm(g: Graph, layer: LocalResponseNorm, x: str, name: str) -> str:
    """ONNX's LRN sums channels c − ⌊(n−1)/2⌋ … c + ⌈(n−1)/2⌉, cnnlab's (PyTorch's)
    c − ⌊n/2⌋ … c + ⌊(n−1)/2⌋: the same window for odd n. onnxruntime runs LRN on 4-D input
    and odd n only; elsewhere the window sum is a Conv of ones over the channel axis."""
    n, shape = layer.size, layer.input_shape
    if n % 2 and len(shape) == 3:
        return g.op("LRN", [x], name, size=n, alpha=layer.alpha, beta=layer.beta, bias=layer.k)
    c, positions = shape[0], math.prod(shape[1:])
    squares = g.op("Reshape", [g.op("Mul", [x, x], f"{name}/square"),
                               g.ints(f"{name}/column_shape", [-1, 1, c, positions])], f"{name}/columns")
    ones = g.const(f"{name}/window", np.ones((1, 1, n, 1), np.float32))
    sums = g.op("Conv", [squares, ones], f"{name}/window_sum", kernel_shape=[n, 1],
                pads=[n // 2, 0, (n - 1) // 2, 0])
    sums = g.op("Reshape", [sums, g.ints(f"{name}/shape", [-1, *shape])], f"{name}/sum")
    d = g.op("Add", [g.op("Mul", [sums, g.scalar(f"{name}/alpha_n", layer.alpha / n)],
                          f"{name}/scaled"), g.scalar(f"{name}/k", layer.k)], f"{name}/d")
    scale = g.op("Pow", [d, g.scalar(f"{name}/minus_beta", -layer.beta)], f"{name}/scale")
    return g.op("Mul", [x, scale], name)


# ----------------------------------------------------------------------- activations
SIMPLE = {Sigmoid: "Sigmoid", Tanh: "Tanh", ReLU: "Relu", Hardswish: "HardSwish"}


@converts(*SIMPLE)
def simple(g: Graph, layer: Layer, x: str, name: str) -> str:
    return g.op(SIMPLE[type(layer)], [x], name)


@converts(LeakyReLU, handles=("alpha",))
def leaky_relu(g: Graph, layer: LeakyReLU, x: str, name: str) -> str:
    return g.op("LeakyRelu", [x], name, alpha=layer.alpha)


@converts(ELU, handles=("alpha",))
def elu(g: Graph, layer: ELU, x: str, name: str) -> str:
    return g.op("Elu", [x], name, alpha=layer.alpha)


@converts(PReLU, handles=("init",))
def prelu(g: Graph, layer: PReLU, x: str, name: str) -> str:
    c, rest = layer.input_shape[0], layer.input_shape[1:]
    slope = g.const(f"{name}.weight", layer.weight.data.reshape(c, *[1] * len(rest)))
    return g.op("PRelu", [x, slope], name)


@converts(Swish, SiLU, handles=("beta",))
def swish(g: Graph, layer: Swish, x: str, name: str) -> str:
    bx = x if layer.beta == 1 else g.op("Mul", [x, g.scalar(f"{name}/beta", layer.beta)], f"{name}/bx")
    return g.op("Mul", [x, g.op("Sigmoid", [bx], f"{name}/sigmoid")], name)


@converts(Maxout, handles=("pieces",))
def maxout(g: Graph, layer: Maxout, x: str, name: str) -> str:
    c, rest, p = layer.input_shape[0], layer.input_shape[1:], layer.pieces
    groups = g.op("Reshape", [x, g.ints(f"{name}/shape", [-1, c // p, p, *rest])], f"{name}/groups")
    return g.reduce("ReduceMax", groups, [2], name)


@converts(ReLU6)
def relu6(g: Graph, layer: ReLU6, x: str, name: str) -> str:
    return g.op("Clip", [x, g.scalar(f"{name}/min", 0.0), g.scalar(f"{name}/max", 6.0)], name)


@converts(GELU, handles=("approximate",))
def gelu(g: Graph, layer: GELU, x: str, name: str) -> str:
    """x·Φ(x) with Φ(x) = ½(1 + Erf(x/√2)) (opset 17 has no Gelu), or ½(1 + tanh u) with
    u = √(2/π)(x + 0.044715x³) on x clipped to ±1e4, as the layer computes it."""
    if layer.approximate == "tanh":
        xc = g.op("Clip", [x, g.scalar(f"{name}/lo", -1e4), g.scalar(f"{name}/hi", 1e4)], f"{name}/xc")
        cube = g.op("Mul", [g.op("Mul", [xc, xc], f"{name}/x2"), xc], f"{name}/x3")
        inner = g.op("Add", [xc, g.op("Mul", [cube, g.scalar(f"{name}/kappa", 0.044715)],
                                      f"{name}/kx3")], f"{name}/cubic")
        u = g.op("Mul", [inner, g.scalar(f"{name}/sqrt_2_pi", math.sqrt(2 / math.pi))], f"{name}/u")
        t = g.op("Tanh", [u], f"{name}/tanh")
    else:
        scaled = g.op("Mul", [x, g.scalar(f"{name}/inv_sqrt2", math.sqrt(0.5))], f"{name}/x_sqrt2")
        t = g.op("Erf", [scaled], f"{name}/erf")
    one_plus = g.op("Add", [t, g.scalar(f"{name}/one", 1.0)], f"{name}/one_plus")
    gate = g.op("Mul", [one_plus, g.scalar(f"{name}/half", 0.5)], f"{name}/gate")
    return g.op("Mul", [x, gate], name)
