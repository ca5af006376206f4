"""Ready-made models: each builder returns a built `Sequential`.

    cl.zoo.resnet50()                    ImageNet layout: 224×224×3 input, 1000 classes
    cl.zoo.resnet8(input_shape=(3, 32, 32))
    cl.zoo.get("fmnist-cnn", num_classes=10, input_shape=(1, 28, 28))
    cl.zoo.count("vgg16")                parameters and multiply-adds, nothing allocated
    cl.zoo.resnet50(weights="resnet50.safetensors")   torchvision's/timm's pretrained weights

Every builder takes `num_classes`, `input_shape` and `seed` (and `build=False` for the unbuilt
model). The ImageNet models follow torchvision's layouts exactly (same layers and parameter
counts; fit="floor" where PyTorch rounds sizes down; no bias on a convolution before BatchNorm).
The small models train on a CPU at 28×28×1 and 32×32×3. docs/zoo.md tabulates them all.

    small.py     the CPU-sized models        imagenet.py  the ImageNet winners
    modern.py    MobileNetV2 and ConvNeXt-T in torchvision's layouts
    _common.py   the registry and what the builders share
    layouts.py   pretrained weights' names: torchvision's/timm's beside cnnlab's, per architecture
    weights.py   load_weights, pretrained, ImageNet's class names (imagenet_classes.txt) and
                 preprocessing: a safetensors state_dict loaded by name and shape
zoo may import core, layers, and data and io (for pretrained weights: Preprocess, the foreign
safetensors reader).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import NamedTuple

from cnnlab.core import Layer, Shape
from cnnlab.layers import Conv2D, ConvTranspose2D, Dense, Sequential
from cnnlab.zoo import imagenet, modern, small
from cnnlab.zoo._common import IMAGENET, PAPER_TOP5
from cnnlab.zoo.imagenet import (
    alexnet,
    googlenet,
    resnet18,
    resnet34,
    resnet50,
    se_resnet50,
    vgg11,
    vgg13,
    vgg16,
    vgg19,
)
from cnnlab.zoo.layouts import LAYOUTS
from cnnlab.zoo.modern import convnext_tiny, mobilenet_v2
from cnnlab.zoo.small import (
    fmnist_cnn,
    fmnist_cnn_bn,
    lenet5,
    mlp,
    mobilenet_small,
    resnet8,
    resnet20,
    vgg_small,
)
from cnnlab.zoo.weights import (
    HeadMismatch,
    head_classes,
    imagenet_classes,
    imagenet_preprocess,
    load_weights,
    pretrained,
)

#: every builder by name ("fmnist-cnn"), the small models first, then the ImageNet winners in
#: the order of their years
MODELS: dict[str, Callable[..., Sequential]] = {
    fn.__name__.replace("_", "-"): fn for fn in (
        fmnist_cnn, fmnist_cnn_bn, lenet5, mlp, vgg_small, resnet8, resnet20, mobilenet_small,
        alexnet, vgg11, vgg13, vgg16, vgg19, googlenet, resnet18, resnet34, resnet50, se_resnet50,
        mobilenet_v2, convnext_tiny)
}

__all__ = ["IMAGENET", "LAYOUTS", "MODELS", "PAPER_TOP5", "Counts", "HeadMismatch", "count", "get",
           "head_classes", "imagenet", "imagenet_classes", "imagenet_preprocess", "load_weights",
           "modern", "names", "pretrained", "small", *(fn.__name__ for fn in MODELS.values())]


def names() -> list[str]:
    return sorted(MODELS)


def _key(name: str) -> str:
    key = name.replace("_", "-").lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}")
    return key


def get(name: str, **kwargs) -> Sequential:
    """The builder registered under `name` ("fmnist-cnn" or "fmnist_cnn"), called with kwargs."""
    return MODELS[_key(name)](**kwargs)


class Counts(NamedTuple):
    params: int
    macs: int
    input_shape: Shape


def count(name: str, **kwargs) -> Counts:
    """Parameters and multiply-adds per sample of a zoo model, from the shapes alone: no weight
    is allocated, so `count("vgg19")` is instant where `vgg19()` fills 144 M random numbers."""
    builder = MODELS[_key(name)]
    shape = tuple(kwargs.get("input_shape",
                             inspect.signature(builder).parameters["input_shape"].default))
    model = builder(**kwargs, build=False)
    model.output_shape(shape)  # ShapeError, as building would
    return Counts(_params(model, shape), model.macs(shape), shape)


def _params(layer: Layer, shape: Shape) -> int:
    if parts := layer.sublayer_inputs(shape):
        return sum(_params(part, part_shape) for part, part_shape in parts)
    if isinstance(layer, Conv2D | ConvTranspose2D):  # Conv1D and LocallyConnected are Conv2Ds
        return layer.param_count(shape)
    if isinstance(layer, Dense):
        return layer.units * (shape[0] + layer.use_bias)
    return layer.build(shape).count_params()  # BatchNorm, PReLU: a few values per channel
