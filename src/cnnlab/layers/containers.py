"""Containers: layers made of layers. `Sequential` chains them and explains the whole model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from cnnlab.core import Layer, Parameter, Shape, volume, walk
from cnnlab.layers._window import WeightedMixin
from cnnlab.layers.dense import Dense
from cnnlab.runtime import threads


class Sequential(Layer):
    """Layers applied one after the other: y = f_L(… f_2(f_1(x))).

    Forward:   x_0 = x,  x_l = f_l(x_{l−1})
    Backward:  dx_{l−1} = f_l.backward(dx_l), from the last layer to the first.

    `Sequential(layers, input_shape=(C, H, W), seed=0)` builds every layer at once, so a
    shape that does not fit fails here, naming the layer, not in the middle of training.
    Layers get unique names ("conv2d_1") used by the summary and by parameter names
    ("conv2d_1.weight"). The same seed gives the same weights, bit for bit.
    """

    def __init__(
        self, layers: Iterable[Layer], input_shape: Sequence[int] | None = None, *,
        seed: int = 0, dtype=np.float32,
    ) -> None:
        super().__init__()
        self.layers: list[Layer] = list(layers)
        seen: set[int] = set()
        for i, layer in enumerate(self.layers, 1):
            if not isinstance(layer, Layer):
                raise ValueError(
                    f"Sequential: item {i} is not a layer. Received: {type(layer).__name__} "
                    f"{layer!r:.60}. Did you mean to instantiate it, e.g. ReLU() not ReLU?"
                )
            if id(layer) in seen:
                raise ValueError(
                    f"Sequential: item {i} ({layer.kind}) is the same object as an earlier item; "
                    "a layer keeps its own weights and cache, so create a new one for each place."
                )
            seen.add(id(layer))
        self._name_layers()
        self.seed = seed
        #: what a file keeps beside the weights: the input preprocessing and the class names
        self.preprocess = None
        self.class_names: list[str] | None = None
        if input_shape is not None:
            self.build(input_shape, np.random.default_rng(seed), dtype)

    def _name_layers(self) -> None:
        counts: dict[str, int] = {}
        for i, layer in enumerate(self.layers, 1):
            key = layer.kind.lower()
            counts[key] = counts.get(key, 0) + 1
            layer.name, layer.index = f"{key}_{counts[key]}", i

    def config(self) -> dict:
        return {"layers": [{"type": layer.kind, **layer.config()} for layer in self.layers]}

    def sublayers(self) -> list[Layer]:
        return self.layers

    def sublayer_inputs(self, input_shape: Shape) -> list[tuple[Layer, Shape]]:
        pairs, shape = [], tuple(input_shape)
        for layer in self.layers:
            pairs.append((layer, shape))
            shape = layer.output_shape(shape)
        return pairs

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    # ------------------------------------------------------------------ shapes
    def output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def _build(self, rng: np.random.Generator) -> None:
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            if isinstance(layer, WeightedMixin) or layer.sublayers():
                layer.init_hint = self._init_after(i)  # a container hands it to its last layers
            layer.build(shape, rng, self.dtype)
            shape = layer.out_shape

    def _init_after(self, i: int) -> str:
        """The initialisation the first activation after layer i asks for; Xavier when the
        layer's output reaches another weighted layer (or a container) or the scores without
        one; at the end of a container's branch, what follows the container."""
        for layer in self.layers[i + 1 :]:
            if layer.preferred_init:
                return layer.preferred_init
            if isinstance(layer, WeightedMixin) or layer.sublayers():
                return "xavier"
        return self.init_hint or "xavier"

    # -------------------------------------------------------------- parameters
    def parameters(self) -> dict[str, Parameter]:
        return {
            f"{layer.name}.{key}": p
            for layer in self.layers
            for key, p in layer.parameters().items()
        }

    def buffers(self) -> dict[str, np.ndarray]:
        return {
            f"{layer.name}.{key}": b for layer in self.layers for key, b in layer.buffers().items()
        }

    # ----------------------------------------------------------- forward/back
    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        if not self.built:
            raise RuntimeError(
                "Sequential: not built. Pass input_shape=(C, H, W) when creating it, "
                "or call build(input_shape)."
            )
        layers, i = self.layers, 0
        with threads.single_blas():  # cnnlab's threads split the work (cnnlab.runtime.threads)
            while i < len(layers):
                # in inference, a Conv2D applies the maps of the layers after it (BatchNorm2D,
                # ReLU) to each chunk of its output while in cache (Conv2D.forward_mapped)
                maps = [] if training else _maps_after(layers, i)
                if maps:
                    x, i = layers[i].forward_mapped(maps, x), i + 1 + len(maps)
                    continue
                # a layer and the next in one pass where they fuse (Layer.forward_fused):
                # BatchNorm2D + ReLU, ReLU + MaxPool2D; never when either forward is wrapped
                # (a recording hook, cnnlab.viz.activations) and would be skipped
                y = None
                if i + 1 < len(layers) and not _wrapped(layers[i]) and not _wrapped(layers[i + 1]):
                    y = layers[i].forward_fused(layers[i + 1], x, training=training)
                if y is None:
                    x, i = layers[i].forward(x, training=training), i + 1
                else:
                    x, i = y, i + 2
        return x

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """Fills every trainable .grad and returns dL/dx. With input_grad=False (what the
        training loop asks) it stops after the first layer that has trainable parameters:
        frozen layers below it do no gradient work, and None is returned."""
        layers = self.layers
        if not input_grad:
            first = next((i for i, layer in enumerate(layers) if _trainable(layer)), len(layers))
            layers = layers[first:]
            for layer in self.layers[:first]:
                layer.clear_cache()
        with threads.single_blas():
            for i, layer in enumerate(reversed(layers)):
                if not input_grad and i == len(layers) - 1:
                    layer.backward_params(dy)  # the gradient below the first layer is not wanted
                    return None
                dy = layer.backward(dy)
        return dy if input_grad else None

    # -------------------------------------------------------- transfer learning
    def freeze(self, up_to: int | str | None = None) -> Sequential:
        """Freezes the parameters of the layers before `up_to`: an index, a layer name, "head"
        (the body: every layer before the head, see head_index) or None (every layer); the
        others are unfrozen. Frozen parameters get no update (the optimizer skips them) and,
        below the first trainable layer, no gradient work. A BatchNorm whose γ and β are frozen
        normalises with its running statistics even in a training forward and leaves them
        unchanged: frozen layers compute what they computed in inference."""
        stop = len(self.layers) if up_to is None else self.head_index() if up_to == "head" \
            else self._position(up_to)
        for i, layer in enumerate(self.layers):
            for p in layer.parameters().values():
                p.trainable = i >= stop
                if not p.trainable:
                    p.grad = None  # a stale gradient from before is not this layer's any more
        return self

    def unfreeze(self) -> Sequential:
        for p in self.parameters().values():
            p.trainable = True
        return self

    def head_index(self, who: str = "head_index") -> int:
        """The position in `layers` of the head, the last Dense layer (the classifier that
        transfer learning replaces); the layers before it are the body. ValueError (naming
        `who`) when there is no Dense layer or a weighted layer follows the last one."""
        i = max((i for i, layer in enumerate(self.layers) if isinstance(layer, Dense)), default=None)
        if i is None:
            raise ValueError(f"{who}: the model has no Dense layer (a head to replace).")
        # a container after it may hold the real head (rebuilding it would re-initialise it)
        if later := [layer for layer in self.layers[i + 1 :]
                     if any(isinstance(inner, WeightedMixin) for inner in [layer, *_inner(layer)])]:
            raise ValueError(f"{who}: {self.layers[i].label} is not the last weighted layer "
                             f"({later[0].label} follows it).")
        return i

    def body_names(self) -> list[str]:
        """The names of the body's layers that hold parameters (the body: every layer before
        the head, see head_index; what freeze(up_to="head") freezes): the params of an
        optimizer group that gives the body a lower learning rate."""
        return [layer.name for layer in self.layers[: self.head_index("body_names")]
                if layer.parameters()]

    def replace_head(self, num_classes: int, *, seed: int = 0) -> Sequential:
        """Replaces the head (head_index: the last Dense layer) by a new one with `num_classes`
        units, with the old one's bias and init setting and fresh weights from `seed` (what
        cnnlab gives a new layer: init="auto" is Xavier before the scores), keeping every
        other layer: the first step of transfer learning."""
        i = self.head_index("replace_head")
        old = self.layers[i]
        head = Dense(num_classes, bias=old.use_bias, init=old.init)
        head.name, head.index, head.init_hint = old.name, old.index, old.init_hint
        head.build(old.input_shape, np.random.default_rng(seed), self.dtype)
        self.layers[i] = head
        shape = head.out_shape
        for layer in self.layers[i + 1 :]:
            layer.build(shape, np.random.default_rng(seed), self.dtype)
            shape = layer.out_shape
        self.out_shape = shape
        self.class_names = None
        return self

    def _position(self, key: int | str) -> int:
        if isinstance(key, str):
            names = [layer.name for layer in self.layers]
            if key not in names:
                raise ValueError(f"no layer named {key!r}; the layers are {', '.join(names)}")
            return names.index(key)
        if not -len(self.layers) <= key <= len(self.layers):
            raise ValueError(f"layer index {key} is out of range for {len(self.layers)} layers")
        return key % (len(self.layers) + 1) if key >= 0 else key + len(self.layers)

    # ------------------------------------------------------------- the lecture
    def arithmetic(self, input_shape: Shape) -> str:
        return f"{len(self.layers)} layers"

    def explain(self, input_shape=None) -> str:
        shape = tuple(self.input_shape if input_shape is None else input_shape)
        parts = []
        for layer in self.layers:
            parts.append(layer.explain(shape))
            shape = layer.output_shape(shape)
        return "\n\n".join(parts)

    def summary(self) -> str:
        """One row per layer: output volume, parameters, multiply-adds and the lecture's
        arithmetic; then the totals. MACs follow `Layer.macs`'s convention (products with
        weights only); a container's row sums its inside."""
        if not self.built:
            raise RuntimeError("Sequential: summary() needs a built model (give input_shape).")
        itemsize = self.dtype.itemsize
        rows = [("Layer (type)", "Output", "Params", "MACs", "Arithmetic")]
        floored = []
        for layer, shape in self.sublayer_inputs(self.input_shape):
            text = layer.arithmetic(shape)
            rows.append((f"{layer.name} ({layer.kind})", volume(layer.out_shape),
                         f"{layer.count_params():,}", f"{layer.macs(shape):,}", text))
            if layer.fit == "floor" and "→" in text.split(";")[0]:
                floored.append(layer.name)
        widths = [max(len(row[i]) for row in rows) for i in range(4)]

        def line(row):
            name, out, params, macs, text = row
            return (f"{name:<{widths[0]}}  {out:<{widths[1]}}  {params:>{widths[2]}}  "
                    f"{macs:>{widths[3]}}  {text}").rstrip()

        body = [line(row) for row in rows[1:]]
        rule = "─" * min(max(len(text) for text in body), 120)
        table = [line(rows[0]), rule, *body]
        total = self.count_params()
        trainable = sum(p.size for p in self.parameters().values() if p.trainable)
        macs = self.macs(self.input_shape)
        # every array a forward creates: the outputs of the layers, those inside containers too
        activations = sum(int(np.prod(inner.out_shape)) for inner in [self, *_inner(self)]
                          if not isinstance(inner, Sequential))
        table += [
            rule,
            f"Input: {volume(self.input_shape)} (H×W×D)   dtype: {self.dtype.name}",
            f"Total params: {total:,} ({_bytes(total * itemsize)})"
            + ("" if trainable == total else f"   trainable: {trainable:,}"),
            f"Multiply-adds: {_si(macs)} per sample ({macs:,}; a training step costs about 3×: "
            "backward computes dx and dW)",
            f"Activations: {activations:,} values per sample ({_bytes(activations * itemsize)}"
            f" forward; training keeps caches of similar size for backward)",
        ]
        if floored:
            table.append(f'fit="floor" drops leftover rows and columns (as PyTorch) at: '
                         f"{', '.join(floored)}")
        return "\n".join(table)


def _inner(layer: Layer) -> list[Layer]:
    return [inner for _, inner in walk(layer)]


def _trainable(layer: Layer) -> bool:
    return any(p.trainable for p in layer.parameters().values())


def _bytes(n: float) -> str:
    unit = "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if n < 1024:
            break
        n, unit = n / 1024, bigger
    return f"{n:,.0f} B" if unit == "B" else f"{n:,.1f} {unit}"


def _si(n: float) -> str:
    """4_111_514_624 → "4.11 G" (decimal prefixes, as the papers' FLOP counts)."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}"
    return f"{n:g}"


def _maps_after(layers: list, i: int) -> list:
    """The inference maps (Layer.inference_map) of the run of layers after layers[i] that have
    one, when layers[i] can apply them (forward_mapped: Conv2D); none past a wrapped forward."""
    maps = []
    if getattr(layers[i], "forward_mapped", None) is None or _wrapped(layers[i]):
        return maps
    for j in range(i + 1, len(layers)):
        after = layers[j + 1] if j + 1 < len(layers) else None
        apply = None if _wrapped(layers[j]) else layers[j].inference_map(after)
        if apply is None:
            break
        maps.append(apply)
    return maps


def _wrapped(layer: Layer) -> bool:
    """Whether the layer's forward was replaced on the instance (a recording wrapper)."""
    return "forward" in vars(layer)
