"""The layer contract: `Parameter`, `Layer` and cnnlab's error types.

A layer's life:
    __init__(...)                   stores and validates hyperparameters, nothing else
    output_shape(input_shape)       pure: per-sample shapes (no batch axis), raises ShapeError
    build(input_shape, rng, dtype)  creates the parameters, returns the layer
    forward(x, training=...)        checks x; when training, keeps what backward needs
    backward(dy)                    consumes that cache, assigns every .grad, returns dx
Every other hook a container, the training loop or a file may use is declared on `Layer` with
its default, so a new layer's author reads one class (see "Optional hooks" there).

core imports nothing of cnnlab: every other part may import it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Shape = tuple[int, ...]

#: cnnlab's version (pyproject.toml's too): files record it, and processes that train together
#: check they share it
__version__ = "0.2.0"


class ShapeError(ValueError):
    """A layer cannot take the shape it was given (output size not whole, wrong rank, ...)."""


class DataError(ValueError):
    """A dataset, a batch of labels or an image cannot be used as given."""


class ModelFileError(ValueError):
    """A model or checkpoint file cannot be read safely."""


class Parameter:
    """A learned array and its gradient ∂L/∂data (assigned by the owning layer's `backward`)."""

    __slots__ = ("data", "grad", "trainable")

    def __init__(self, data: np.ndarray, *, trainable: bool = True):
        self.data = data
        self.grad: np.ndarray | None = None
        self.trainable = trainable

    @property
    def shape(self) -> Shape:
        return self.data.shape

    @property
    def size(self) -> int:
        return int(self.data.size)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


def describe_shape(shape: Sequence[int]) -> str:
    """Names the axes of a per-sample shape the way the docstrings do: (C, H, W), (C, L), (D,)."""
    names = {3: "C, H, W", 2: "C, L", 1: "features"}.get(len(shape))
    return f"(N, {names})" if names else f"rank {len(shape) + 1}"


class Layer:
    """Base class of every layer and container.

    Subclasses implement `output_shape`, `forward` and `backward`; layers with weights
    also implement `_build` and `parameters`. `name` ("conv2d_1") and `index` (1-based
    position in its Sequential) are set by the container and used in every error message.

    Optional hooks, each with a default that suits a layer which does not need it:
        preferred_init      an activation's wish for the weighted layer before it
        init_hint           set by a container before build: what the activation after asks
        fit                 "exact" or "floor" for window layers (the summary marks "floor")
        rng                 a layer that draws at training time (Dropout) keeps its Generator here
        batch_statistics    True for a layer whose training forward reduces over the batch
        reduce              filled in by a data-parallel runner: a sum over the processes
        parameters, buffers, sublayers, sublayer_inputs, macs, arithmetic, config
        backward_params(dy) the gradients of the parameters only (a network's first layer)
        clear_cache()       forget a training forward's cache that will not be consumed
        forward_fused(after, x)  this layer and the next in one pass (BatchNorm + ReLU, ReLU +
                            MaxPool), or None
        inference_map(after)  this layer's inference forward as an in-place map on chunks of
                            the layer before's output (BatchNorm2D, ReLU after a Conv2D), or None
    """

    #: the initialisation an activation asks of the weighted layer before it ("he", "xavier")
    preferred_init: str | None = None
    #: set by the enclosing container before build: the init the first activation after this
    #: layer asks for (a weighted layer's init="auto" follows it; a container hands it on to
    #: the last layers of its branches)
    init_hint: str | None = None
    #: window layers: "exact" refuses an output size that is not whole, "floor" drops the rest
    fit: str | None = None
    #: the Generator of a layer that draws random numbers when training (Dropout's masks);
    #: checkpoints save and restore its state, so a resumed run draws what the whole run drew
    rng: np.random.Generator | None = None
    #: a layer whose training forward takes statistics over the batch (BatchNorm): with
    #: synchronized statistics a data-parallel runner gives it `reduce`
    batch_statistics: bool = False
    #: None (the batch on this process is the whole batch), or, filled in by a data-parallel
    #: runner (cnnlab.train.parallel, synchronized BatchNorm): a function returning the
    #: element-wise sum of a float64 array over the processes. Every process calls it in the
    #: same order, so a layer calls it on every training forward and backward, never
    #: conditionally on its own data.
    reduce: Callable[[np.ndarray], np.ndarray] | None = None

    def __init__(self) -> None:
        self.name: str | None = None
        self.index: int | None = None
        self.input_shape: Shape | None = None
        self.dtype: np.dtype | None = None
        self._cache: object = None

    # ----------------------------------------------------------------- identity
    @property
    def kind(self) -> str:
        return type(self).__name__

    @property
    def label(self) -> str:
        """How errors name this layer: `Conv2D #3 (conv2d_2)`, or just `Conv2D` standalone."""
        text = self.kind if self.index is None else f"{self.kind} #{self.index}"
        return text if self.name is None else f"{text} ({self.name})"

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def config(self) -> dict:
        """The constructor arguments, as JSON-friendly values (used by summaries and files)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{self.kind}({args})"

    # ------------------------------------------------------------------ shapes
    def output_shape(self, input_shape: Shape) -> Shape:
        raise NotImplementedError

    def build(
        self, input_shape: Sequence[int], rng: np.random.Generator | None = None, dtype=np.float32
    ) -> Layer:
        input_shape = tuple(int(d) for d in input_shape)
        out_shape = self.output_shape(input_shape)  # raises ShapeError before anything exists
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"{self.label}: dtype must be a float type. Received: dtype={dtype}")
        self.input_shape = input_shape
        self.out_shape: Shape = out_shape
        self.dtype = dtype
        self._build(rng if rng is not None else np.random.default_rng(0))
        return self

    def _build(self, rng: np.random.Generator) -> None:
        """Creates the parameters; `self.input_shape` and `self.dtype` are set."""

    # -------------------------------------------------------------- parameters
    def parameters(self) -> dict[str, Parameter]:
        return {}

    def buffers(self) -> dict[str, np.ndarray]:
        """Non-learned state saved with the model (BatchNorm's running statistics)."""
        return {}

    def count_params(self) -> int:
        return sum(p.size for p in self.parameters().values())

    def sublayers(self) -> list[Layer]:
        """The layers a container holds (empty for a plain layer)."""
        return []

    def sublayer_inputs(self, input_shape: Shape) -> list[tuple[Layer, Shape]]:
        """Each sublayer with the per-sample shape it receives when this layer gets
        `input_shape` (pure, like output_shape: nothing needs to be built)."""
        return []

    def macs(self, input_shape: Shape) -> int:
        """Multiply-adds of a forward pass, per sample (pure: nothing needs to be built).

        The convention of the papers' "FLOPs" tables: only the products with weights count,
        one per weight use — Conv2D K·C·F·F·H2·W2, Conv1D K·C·F·L2, LocallyConnected likewise
        (a weight per position, but the same number of products), Dense D_in·units. Biases,
        BatchNorm, activations, pooling, residual additions and SqueezeExcite's channel scaling
        are a few operations per value and count 0. A container sums its sublayers.
        """
        return sum(layer.macs(shape) for layer, shape in self.sublayer_inputs(input_shape))

    # ------------------------------------------------------------- the lecture
    def arithmetic(self, input_shape: Shape) -> str:
        """One line of the summary: the lecture's arithmetic with this layer's numbers."""
        return ""

    def explain(self, input_shape: Sequence[int]) -> str:
        """The lecture's "accepts … requires … produces …" for this layer and input."""
        input_shape = tuple(int(d) for d in input_shape)
        lines = [f"{self.label}: accepts {volume(input_shape)}"]
        try:
            out = self.output_shape(input_shape)
        except ShapeError as error:
            return "\n".join([*lines, f"doesn't fit: {error}"])
        lines.append(f"produces {volume(out)}")
        if text := self.arithmetic(input_shape):
            lines.append(text)
        return "\n".join(lines)

    # ----------------------------------------------------------- forward/back
    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward_params(self, dy: np.ndarray) -> None:
        """Fills every parameter's .grad as backward does, without returning dx: what a
        network's first trainable layer is asked, since nothing below it needs dx. The default
        runs backward and drops dx; a layer that can skip dx's work overrides it (Conv2D)."""
        self.backward(dy)

    def forward_fused(self, after: Layer, x: np.ndarray, *, training: bool = False):
        """The output of this layer and `after` (the next layer of a Sequential) computed in one
        pass, or None (the default) when the two do not fuse and each runs its own forward. A
        layer that fuses computes the same values as the two forwards, leaves `after` ready for
        its backward, and in its own backward applies `after`'s (BatchNorm2D with a ReLU), or
        leaves its own to `after` (ReLU with a MaxPool2D)."""
        return None

    def inference_map(self, after: Layer | None):
        """This layer's inference forward as a function that maps a block of its input in
        place, or None (the default). The block is (C, n, …): channels first, any n samples of
        the batch. A Sequential hands the maps of the layers after a Conv2D to it
        (Conv2D.forward_mapped), which applies them to each chunk of its output while the chunk
        is in cache, in inference only. A map computes exactly what forward(x) would: the same
        operations on each value, so the same bits. `after` is the layer after this one (None
        at the end): a layer declines where it fuses with `after` to more effect."""
        return None

    def clear_cache(self) -> None:
        """Forgets a training forward's cache that no backward will consume (frozen layers
        below the first trainable one)."""
        self._cache = None

    def __call__(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        return self.forward(x, training=training)

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        """Rank, per-sample shape and dtype of `x`, with an error that says what differs."""
        if self.input_shape is None:
            raise RuntimeError(
                f"{self.label}: not built. Call build(input_shape) first, or put the layer "
                "in a Sequential(..., input_shape=...)."
            )
        x = np.asarray(x)
        expected = self.input_shape
        if x.ndim != len(expected) + 1:
            raise ShapeError(
                f"{self.label}: expected a batch of rank {len(expected) + 1} "
                f"{describe_shape(expected)} = (N, {', '.join(map(str, expected))}). "
                f"Received: x.shape={x.shape}"
            )
        if x.shape[1:] != expected:
            what = ""
            if len(expected) > 1 and x.shape[1] != expected[0]:
                what = f": {x.shape[1]} channels instead of {expected[0]}"
            elif len(expected) > 1:
                what = f": spatial size {x.shape[2:]} instead of {expected[1:]}"
            raise ShapeError(
                f"{self.label}: expected input (N, {', '.join(map(str, expected))}) "
                f"{describe_shape(expected)}, received x.shape={x.shape}{what}"
            )
        if x.dtype != self.dtype:
            if x.dtype.kind != "f":
                raise ValueError(
                    f"{self.label}: expected floating-point input, received dtype={x.dtype}. "
                    "Convert first, e.g. x.astype(np.float32) / 255 for uint8 images."
                )
            x = x.astype(self.dtype)
        return x

    def _take_cache(self):
        """Returns the training forward's cache and forgets it (a cache is used once)."""
        cache, self._cache = self._cache, None
        if cache is None:
            raise RuntimeError(
                f"{self.label}: backward() needs the cache of a training forward. "
                "Call forward(x, training=True) before backward(dy)."
            )
        return cache

    def _check_grad(self, dy: np.ndarray, shape: Shape) -> np.ndarray:
        dy = np.asarray(dy)
        if dy.shape != shape:
            raise ShapeError(
                f"{self.label}: dy must have the shape of the forward output {shape}. "
                f"Received: dy.shape={dy.shape}"
            )
        return dy


def walk(layer: Layer, prefix: str = ""):
    """Every layer inside `layer`, depth first, with its qualified name ("sequential_1.conv2d_1")."""
    for child in layer.sublayers():
        name = f"{prefix}{child.name}"
        yield name, child
        yield from walk(child, name + ".")


def volume(shape: Sequence[int]) -> str:
    """A per-sample shape the lecture's way, depth last: (C, H, W) = (3, 32, 32) → "32×32×3"."""
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}×{w}×{c}"
    if len(shape) == 2:
        c, length = shape
        return f"{length}×{c}"
    return "×".join(map(str, shape))
