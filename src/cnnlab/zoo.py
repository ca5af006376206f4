"""Ready-made models: each builder returns a built `Sequential`.

    cl.zoo.fmnist_cnn()                  DESIGN.md's reference CNN for 28×28×1
    cl.zoo.get("fmnist-cnn", num_classes=10, input_shape=(1, 28, 28))

Every builder takes `num_classes`, `input_shape` and `seed`.
"""

from __future__ import annotations

from collections.abc import Callable

from cnnlab.layers import (
    AvgPool2D,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    ReLU,
    Sequential,
    Tanh,
)
from cnnlab.layers.dropout import Dropout
from cnnlab.layers.norm import BatchNorm1D, BatchNorm2D

Shape = tuple[int, ...]
MODELS: dict[str, Callable[..., Sequential]] = {}


def _register(fn: Callable[..., Sequential]) -> Callable[..., Sequential]:
    MODELS[fn.__name__.replace("_", "-")] = fn
    return fn


@_register
def fmnist_cnn(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0) -> Sequential:
    """Two 3×3 convolutions (32, 64 filters, padding 1) each with ReLU and 2×2 max pooling, then
    Dense 128 and the classifier: 421,642 parameters at 28×28×1."""
    return Sequential(
        [
            Conv2D(32, 3, padding=1), ReLU(), MaxPool2D(2),
            Conv2D(64, 3, padding=1), ReLU(), MaxPool2D(2),
            Flatten(), Dense(128), ReLU(), Dense(num_classes),
        ],
        input_shape=input_shape, seed=seed,
    )


@_register
def fmnist_cnn_bn(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0) -> Sequential:
    """The stronger recipe's network: three conv–BatchNorm–ReLU stages (32, 64, 128 filters of
    3×3; 2×2 max pooling after the first two), dropout, Dense 256 with BatchNorm and dropout.
    About twice the reference CNN's multiply-adds; most of its gain comes from training."""

    def block(filters: int) -> list:
        return [Conv2D(filters, 3, padding=1, bias=False), BatchNorm2D(), ReLU()]

    return Sequential(
        [*block(32), MaxPool2D(2), *block(64), MaxPool2D(2), *block(128), Dropout(0.25),
         Flatten(), Dense(256, bias=False), BatchNorm1D(), ReLU(), Dropout(0.4), Dense(num_classes)],
        input_shape=input_shape, seed=seed,
    )


@_register
def lenet5(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0) -> Sequential:
    """LeCun et al. 1998 as commonly rebuilt: conv 6@5×5 (padding 2 for 28×28 input) – tanh –
    avg pool 2 – conv 16@5×5 – tanh – avg pool 2 – Dense 120 – 84 – classes."""
    pad = 2 if input_shape[1] == 28 else 0
    return Sequential(
        [
            Conv2D(6, 5, padding=pad), Tanh(), AvgPool2D(2),
            Conv2D(16, 5), Tanh(), AvgPool2D(2),
            Flatten(), Dense(120), Tanh(), Dense(84), Tanh(), Dense(num_classes),
        ],
        input_shape=input_shape, seed=seed,
    )


@_register
def mlp(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0) -> Sequential:
    """The lecture's stretched-pixel baseline: every pixel into one vector, two hidden layers."""
    return Sequential(
        [Flatten(), Dense(512), ReLU(), Dense(256), ReLU(), Dense(num_classes)],
        input_shape=input_shape, seed=seed,
    )


def names() -> list[str]:
    return sorted(MODELS)


def get(name: str, **kwargs) -> Sequential:
    """The builder registered under `name` ("fmnist-cnn" or "fmnist_cnn"), called with kwargs."""
    key = name.replace("_", "-").lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}")
    return MODELS[key](**kwargs)
