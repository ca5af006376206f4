"""The ImageNet winners' building blocks: Residual (ResNet), Concat (Inception), SqueezeExcite (SENet).

Each is a layer made of layers, with the full layer contract. Naming inside a block: a branch is
a `Sequential` named after its role ("branch", "shortcut", "branch1", …) whose layers are named as
in any Sequential ("conv2d_1", …), so a model's parameters read
    residual_3.branch.conv2d_1.weight      residual_3.shortcut.batchnorm2d_1.running_mean
    concat_2.branch4.conv2d_1.weight       squeezeexcite_1.fc1.weight
Errors inside a branch name the block and the branch: "Residual #5 (residual_2), branch: …".
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cnnlab.core import Layer, Parameter, Shape, ShapeError, volume
from cnnlab.layers.activation import ReLU, sigmoid
from cnnlab.layers.containers import Sequential
from cnnlab.layers.dense import Dense
from cnnlab.runtime import threads


def chain(layers: Layer | Iterable[Layer], name: str, owner: str) -> Sequential:
    """A branch given as one layer, a list of layers or a Sequential, as a Sequential named `name`."""
    if isinstance(layers, Sequential):
        branch = layers
    elif isinstance(layers, Layer):
        branch = Sequential([layers])
    elif isinstance(layers, Iterable) and not isinstance(layers, str | dict):
        branch = Sequential(layers)
    else:
        raise ValueError(f"{owner}: {name} must be a layer or a list of layers. "
                         f"Received: {type(layers).__name__} {layers!r:.60}")
    if not branch.layers:
        raise ValueError(f"{owner}: {name} is empty; give it at least one layer.")
    branch.name, branch.index = name, None
    return branch


def _add(out, a, b):
    np.add(a, b, out=out)


def _add_relu(out, a, b):
    """out = max(0, a + b): the add, then the ReLU's max, the same operations as the two layers
    apart, on each thread's run while it is in cache."""
    np.add(a, b, out=out)
    np.maximum(out, 0, out=out)


class _Block(Layer):
    """What the blocks share: parameters and buffers of their parts, qualified by part name."""

    def parts(self) -> list[Layer]:
        return self.sublayers()

    def parameters(self) -> dict[str, Parameter]:
        return {f"{part.name}.{k}": p for part in self.parts() for k, p in part.parameters().items()}

    def buffers(self) -> dict[str, np.ndarray]:
        return {f"{part.name}.{k}": b for part in self.parts() for k, b in part.buffers().items()}

    def _shape_of(self, part: Sequential, input_shape: Shape) -> Shape:
        try:
            return part.output_shape(input_shape)
        except ShapeError as error:
            raise ShapeError(f"{self.label}, {part.name}: {error}") from None

    def _build_parts(self, rng: np.random.Generator) -> None:
        for part in self.parts():
            # the last layers of each branch feed what follows the block (a ReLU after a Residual)
            part.init_hint = self.init_hint
            part.build(self.input_shape, rng, self.dtype)


class Residual(_Block):
    """ResNet's block (He et al. 2015): the branch learns a residual F(x) added to the input.

    Forward:   y = F(x) + s(x)     F: the branch's layers;  s: identity, or the shortcut's layers
               (a projection: 1×1 Conv2D with the branch's stride and BatchNorm2D)
    Backward:  dx = F.backward(dy) + s.backward(dy)   (identity: + dy, the gradient's highway)
    The ReLU after the addition is the next layer of the enclosing Sequential.

    Shape:
        x: (N, C, H, W) (any per-sample shape the branch takes)    y: F(x)'s shape, which must
        equal s(x)'s;  parameters: the branch's + the shortcut's (0 for identity).
    Names: "branch.<layer>", "shortcut.<layer>" (see the module docstring).
    Args:
        branch_layers: F, a list of layers (or a Sequential).
        shortcut: None for identity, or a list of layers (a projection).
    """

    def __init__(self, branch_layers, shortcut=None) -> None:
        super().__init__()
        self.branch = chain(branch_layers, "branch", self.kind)
        self.shortcut = None if shortcut is None else chain(shortcut, "shortcut", self.kind)

    def config(self) -> dict:
        shortcut = None if self.shortcut is None else self.shortcut.config()["layers"]
        return {"branch_layers": self.branch.config()["layers"], "shortcut": shortcut}

    def sublayers(self) -> list[Layer]:
        return [self.branch] if self.shortcut is None else [self.branch, self.shortcut]

    def sublayer_inputs(self, input_shape: Shape) -> list[tuple[Layer, Shape]]:
        return [(part, tuple(input_shape)) for part in self.sublayers()]

    def output_shape(self, input_shape: Shape) -> Shape:
        out = self._shape_of(self.branch, input_shape)
        short = input_shape if self.shortcut is None else self._shape_of(self.shortcut, input_shape)
        if out != tuple(short):
            what = "the input (identity shortcut)" if self.shortcut is None else "the shortcut"
            fix = ""
            if len(out) == 3 and len(short) == 3:
                stride = max(1, short[1] // max(out[1], 1))
                fix = (f" Give it a projection shortcut, e.g. shortcut=[Conv2D({out[0]}, 1, "
                       f"stride={stride}, bias=False), BatchNorm2D()], or keep the branch's "
                       "channels and size.")
            raise ShapeError(
                f"{self.label}: the branch gives {volume(out)} but {what} is {volume(short)}; "
                f"F(x) + x needs equal shapes.{fix}"
            )
        return out

    def _build(self, rng: np.random.Generator) -> None:
        self._build_parts(rng)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        return self._forward(x, training, _add)

    def forward_fused(self, after: Layer, x: np.ndarray, *, training: bool = False):
        """This block and a ReLU after it (ResNet's) in one pass (Layer.forward_fused):
        max(0, F(x) + s(x)) written once, where the add and the ReLU apart write and read the
        sum again; the same values. In training the ReLU keeps y for its own backward. None for
        any other layer after."""
        if type(after) is not ReLU:
            return None
        return after.computed(self._forward(x, training, _add_relu), training=training)

    def _forward(self, x: np.ndarray, training: bool, combine) -> np.ndarray:
        x = self._check_input(x)
        y = self.branch.forward(x, training=training)
        s = x if self.shortcut is None else self.shortcut.forward(x, training=training)
        if training:
            self._cache = x.shape[0]
        return threads.elementwise(combine, y, y, s)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        n = self._take_cache()
        dy = self._check_grad(dy, (n, *self.out_shape))
        dx = self.branch.backward(dy)
        return threads.elementwise(_add, dx, dx, dy if self.shortcut is None else self.shortcut.backward(dy))

    def arithmetic(self, input_shape: Shape) -> str:
        short = "x" if self.shortcut is None else "P(x)"
        text = f"y = F(x) + {short};  F: {describe(self.branch)}"
        return text if self.shortcut is None else f"{text};  P: {describe(self.shortcut)}"


class Concat(_Block):
    """Parallel branches joined on the channel axis: GoogLeNet's Inception module.

    Forward:   y = [B_1(x), B_2(x), …, B_k(x)] stacked on channels (axis 1)
    Backward:  dy is cut back into the branches' channel ranges; dx = Σ_i B_i.backward(dy_i)

    Shape:
        x: (N, C, H, W)    B_i(x): (N, K_i, H2, W2), the same H2, W2 for every branch
        y: (N, K_1 + … + K_k, H2, W2);  parameters: the sum of the branches'.
        Any per-sample rank works as long as the branches agree on every axis but the first.
    Names: "branch1.<layer>", "branch2.<layer>", … (torchvision's Inception names).
    Args:
        branches: a list of branches, each a list of layers (or one layer, or a Sequential).
    """

    def __init__(self, branches) -> None:
        super().__init__()
        if isinstance(branches, Layer) or not isinstance(branches, Iterable):
            raise ValueError(f"{self.kind}: branches must be a list of branches (each a list of "
                             f"layers). Received: {type(branches).__name__}")
        self.branches = [chain(b, f"branch{i}", self.kind) for i, b in enumerate(branches, 1)]
        if len(self.branches) < 2:
            raise ValueError(f"{self.kind}: needs at least 2 branches. "
                             f"Received: {len(self.branches)}")

    def config(self) -> dict:
        return {"branches": [b.config()["layers"] for b in self.branches]}

    def sublayers(self) -> list[Layer]:
        return list(self.branches)

    def sublayer_inputs(self, input_shape: Shape) -> list[tuple[Layer, Shape]]:
        return [(b, tuple(input_shape)) for b in self.branches]

    def output_shape(self, input_shape: Shape) -> Shape:
        shapes = [self._shape_of(b, input_shape) for b in self.branches]
        first = shapes[0]
        for branch, shape in zip(self.branches[1:], shapes[1:], strict=True):
            if len(shape) != len(first) or shape[1:] != first[1:]:
                raise ShapeError(
                    f"{self.label}: branch1 gives {volume(first)} but {branch.name} gives "
                    f"{volume(shape)}; branches are joined on channels, so every other axis must "
                    "agree. Keep each branch's size: stride 1 with padding (F − 1)/2 "
                    '(or padding="same") in every branch.'
                )
        return (sum(shape[0] for shape in shapes), *first[1:])

    def _build(self, rng: np.random.Generator) -> None:
        self._build_parts(rng)
        self.splits = np.cumsum([b.out_shape[0] for b in self.branches])[:-1]

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        outs = [b.forward(x, training=training) for b in self.branches]
        if training:
            self._cache = x.shape[0]
        # joined in (C, N, …) memory and returned as an (N, C, …) view: the next convolution's
        # im2col reads channels first, and convolutions already return such views (no copies)
        return np.concatenate([np.moveaxis(o, 1, 0) for o in outs]).swapaxes(0, 1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        n = self._take_cache()
        dy = self._check_grad(dy, (n, *self.out_shape))
        parts = np.split(dy, self.splits, axis=1)
        dx = self.branches[0].backward(parts[0])
        for branch, part in zip(self.branches[1:], parts[1:], strict=True):
            dx = dx + branch.backward(part)
        return dx

    def arithmetic(self, input_shape: Shape) -> str:
        depths = [b.output_shape(input_shape)[0] for b in self.branches]
        return (f"join on channels: {' + '.join(map(str, depths))} = {sum(depths)};  "
                + ";  ".join(f"{b.name}: {describe(b)}" for b in self.branches))


class SqueezeExcite(_Block):
    """SENet's channel gating (Hu et al. 2018): each channel scaled by a learned function of
    the global average of all channels.

    Forward, for x (N, C, H, W), hidden size R = max(1, C // reduction):
        s = mean_{H,W} x  (N, C)               squeeze
        z = s·W1ᵀ + b1   a = max(0, z)  (N, R)  excite: fc1, ReLU
        g = σ(a·W2ᵀ + b2)               (N, C)  fc2, sigmoid: one gate in (0, 1) per channel
        y[n, c, i, j] = x[n, c, i, j] · g[n, c]
    Backward:
        dg = Σ_{H,W} dy·x     dz2 = dg·g·(1 − g)  → fc2: dW2, db2, da
        dz = da·[z > 0]  → fc1: dW1, db1, ds      dx = dy·g + ds/(H·W)  (broadcast over H, W)

    Shape:
        x, y: (N, C, H, W) (or (N, C, L): the mean runs over every axis after C)
        fc1.weight: (R, C)  fc1.bias: (R,)  fc2.weight: (C, R)  fc2.bias: (C,)
        parameters: 2·C·R + R + C
    Args:
        reduction: r, the bottleneck ratio (16 in SENet).
    """

    def __init__(self, reduction: int = 16) -> None:
        super().__init__()
        if isinstance(reduction, bool) or not isinstance(reduction, int | np.integer) or reduction < 1:
            raise ValueError(f"{self.kind}: reduction must be a positive int. "
                             f"Received: reduction={reduction!r}")
        self.reduction = int(reduction)
        self.fc1: Dense | None = None
        self.fc2: Dense | None = None

    def config(self) -> dict:
        return {"reduction": self.reduction}

    def hidden(self, channels: int) -> int:
        return max(1, channels // self.reduction)

    def sublayers(self) -> list[Layer]:
        return [] if self.fc1 is None else [self.fc1, self.fc2]

    def sublayer_inputs(self, input_shape: Shape) -> list[tuple[Layer, Shape]]:
        c = input_shape[0]
        fc1, fc2 = self._dense(c) if self.fc1 is None else (self.fc1, self.fc2)
        return [(fc1, (c,)), (fc2, (self.hidden(c),))]

    def _dense(self, c: int) -> tuple[Dense, Dense]:
        fc1, fc2 = Dense(self.hidden(c)), Dense(c)
        fc1.name, fc2.name = "fc1", "fc2"
        fc1.init_hint, fc2.init_hint = "he", "xavier"  # ReLU after fc1, sigmoid after fc2
        return fc1, fc2

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 2:
            raise ShapeError(f"{self.label}: expects per-sample input (C, H, W) or (C, L). "
                             f"Received: input_shape={tuple(input_shape)}")
        return tuple(input_shape)

    def _build(self, rng: np.random.Generator) -> None:
        c = self.input_shape[0]
        self.fc1, self.fc2 = self._dense(c)
        self.fc1.build((c,), rng, self.dtype)
        self.fc2.build((self.hidden(c),), rng, self.dtype)

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        axes = tuple(range(2, x.ndim))
        s = x.mean(axis=axes)
        z = self.fc1.forward(s, training=training)
        a = np.maximum(z, 0)
        g = sigmoid(self.fc2.forward(a, training=training))
        gate = g.reshape(*g.shape, *([1] * len(axes)))
        if training:
            self._cache = (x, z, g)
        return x * gate

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, z, g = self._take_cache()
        dy = self._check_grad(dy, x.shape)
        axes = tuple(range(2, x.ndim))
        dg = np.sum(dy * x, axis=axes)
        da = self.fc2.backward(dg * g * (1 - g))
        ds = self.fc1.backward(da * (z > 0))
        size = x.dtype.type(np.prod(x.shape[2:]))
        expand = (*g.shape, *([1] * len(axes)))
        return dy * g.reshape(expand) + (ds / size).reshape(expand)

    def arithmetic(self, input_shape: Shape) -> str:
        c, r = input_shape[0], self.hidden(input_shape[0])
        params = 2 * c * r + r + c
        return (f"mean over {'×'.join(map(str, input_shape[1:]))} → Dense {c}→{r}, ReLU → "
                f"Dense {r}→{c}, σ → scale the {c} channels;  params = 2·{c}·{r} + {r} + {c} "
                f"= {params:,}")


def describe(branch: Sequential) -> str:
    """A branch in a few words: "conv3×3/2·128 → BN → ReLU → conv3×3·128 → BN"."""
    words = []
    for layer in branch.layers:
        kind = layer.kind
        if kind in ("Conv2D", "Conv1D"):
            size = "×".join(map(str, np.atleast_1d(layer.kernel_size)))
            stride = max(np.atleast_1d(layer.stride))
            words.append(f"conv{size}{f'/{stride}' if stride > 1 else ''}·{layer.filters}")
        elif kind.startswith("BatchNorm"):
            words.append("BN")
        elif kind in ("MaxPool2D", "AvgPool2D"):
            size = "×".join(map(str, layer.kernel_size))
            stride = max(layer.stride)
            words.append(f"{kind[:3].lower()}pool{size}{f'/{stride}' if stride > 1 else ''}")
        elif kind == "SqueezeExcite":
            words.append(f"SE/{layer.reduction}")
        else:
            words.append(kind)
    return " → ".join(words)
