"""Ready-made models: each builder returns a built `Sequential`.

    cl.zoo.resnet50()                    ImageNet layout: 224×224×3 input, 1000 classes
    cl.zoo.resnet8(input_shape=(3, 32, 32))
    cl.zoo.get("fmnist-cnn", num_classes=10, input_shape=(1, 28, 28))
    cl.zoo.count("vgg16")                parameters and multiply-adds, nothing allocated

Every builder takes `num_classes`, `input_shape` and `seed` (and `build=False` for the unbuilt
model). The ImageNet models follow torchvision's layouts exactly (same layers and parameter
counts; fit="floor" where PyTorch rounds sizes down; no bias on a convolution before BatchNorm).
The small models train on a CPU at 28×28×1 and 32×32×3. docs/zoo.md tabulates them all.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import NamedTuple

from cnnlab.core import Layer, Shape
from cnnlab.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Concat,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LocalResponseNorm,
    MaxPool2D,
    ReLU,
    Residual,
    Sequential,
    SqueezeExcite,
    Tanh,
)

IMAGENET: Shape = (3, 224, 224)
MODELS: dict[str, Callable[..., Sequential]] = {}

#: the ImageNet top-5 error (%) each model's paper reported, and under which protocol (papers by
#: arXiv year; ResNet-18's paper gives its top-1 error only: 27.88%, Table 2)
PAPER_TOP5: dict[str, tuple[float, str]] = {
    "alexnet": (16.4, "Krizhevsky et al. 2012: 5 CNNs averaged, ILSVRC-2012 test "
                      "(one CNN: 18.2% val; 15.3% with extra pre-training data)"),
    "vgg11": (10.4, "Simonyan & Zisserman 2014, Table 3: net A, one test scale, val"),
    "vgg13": (9.9, "Simonyan & Zisserman 2014, Table 3: net B, one test scale, val"),
    "vgg16": (8.1, "Simonyan & Zisserman 2014, Table 3: net D, scale jitter, one test scale, "
                   "val (7.5% multi-scale, Table 4)"),
    "vgg19": (8.0, "Simonyan & Zisserman 2014, Table 3: net E, scale jitter, one test scale, "
                   "val (7.5% multi-scale, Table 4)"),
    "googlenet": (6.67, "Szegedy et al. 2014: 7 models, 144 crops, ILSVRC-2014 test "
                        "(1 model, 1 crop: 10.07%)"),
    "resnet34": (5.71, "He et al. 2015, Table 4: ResNet-34 B, single model, val"),
    "resnet50": (5.25, "He et al. 2015, Table 4: single model, val"),
    "se-resnet50": (6.62, "Hu et al. 2017, Table 2: single 224 crop, val (their ResNet-50 "
                          "re-implementation: 7.48%)"),
}


def _register(fn: Callable[..., Sequential]) -> Callable[..., Sequential]:
    MODELS[fn.__name__.replace("_", "-")] = fn
    return fn


def _model(layers: list[Layer], input_shape: Shape, seed: int, build: bool) -> Sequential:
    return Sequential(layers, input_shape=input_shape if build else None, seed=seed)


def _shape_after(layers: list[Layer], input_shape: Shape) -> Shape:
    shape = tuple(input_shape)
    for layer in layers:
        shape = layer.output_shape(shape)
    return shape


def _floor(stride: int) -> str:
    """PyTorch rounds output sizes down: a strided window needs fit="floor" to do the same."""
    return "floor" if stride > 1 else "exact"


def _conv_bn(filters: int, size: int, stride: int = 1, padding: int = 0, eps: float = 1e-5) -> list:
    return [Conv2D(filters, size, stride, padding, bias=False, fit=_floor(stride)),
            BatchNorm2D(eps=eps)]


# ---------------------------------------------------------------- small models
@_register
def fmnist_cnn(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
               build: bool = True) -> Sequential:
    """Two 3×3 convolutions (32, 64 filters, padding 1) each with ReLU and 2×2 max pooling, then
    Dense 128 and the classifier: 421,642 parameters at 28×28×1."""
    return _model([Conv2D(32, 3, padding=1), ReLU(), MaxPool2D(2),
                   Conv2D(64, 3, padding=1), ReLU(), MaxPool2D(2),
                   Flatten(), Dense(128), ReLU(), Dense(num_classes)], input_shape, seed, build)


@_register
def fmnist_cnn_bn(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
                  build: bool = True) -> Sequential:
    """The stronger recipe's network: three conv–BatchNorm–ReLU stages (32, 64, 128 filters of
    3×3; 2×2 max pooling after the first two), dropout, Dense 256 with BatchNorm and dropout.
    About twice the reference CNN's multiply-adds; most of its gain comes from training."""

    def block(filters: int) -> list:
        return [Conv2D(filters, 3, padding=1, bias=False), BatchNorm2D(), ReLU()]

    return _model(
        [*block(32), MaxPool2D(2), *block(64), MaxPool2D(2), *block(128), Dropout(0.25),
         Flatten(), Dense(256, bias=False), BatchNorm1D(), ReLU(), Dropout(0.4), Dense(num_classes)],
        input_shape, seed, build)


@_register
def lenet5(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
           build: bool = True) -> Sequential:
    """LeCun et al. 1998 as commonly rebuilt: conv 6@5×5 (padding 2 for 28×28 input) – tanh –
    avg pool 2 – conv 16@5×5 – tanh – avg pool 2 – Dense 120 – 84 – classes."""
    pad = 2 if input_shape[1] == 28 else 0
    return _model([Conv2D(6, 5, padding=pad), Tanh(), AvgPool2D(2),
                   Conv2D(16, 5), Tanh(), AvgPool2D(2),
                   Flatten(), Dense(120), Tanh(), Dense(84), Tanh(), Dense(num_classes)],
                  input_shape, seed, build)


@_register
def mlp(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
        build: bool = True) -> Sequential:
    """The lecture's stretched-pixel baseline: every pixel into one vector, two hidden layers."""
    return _model([Flatten(), Dense(512), ReLU(), Dense(256), ReLU(), Dense(num_classes)],
                  input_shape, seed, build)


@_register
def vgg_small(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
              build: bool = True) -> Sequential:
    """VGG's recipe at CPU size: three stages of two 3×3 conv–BatchNorm–ReLU (32, 64, 128 filters)
    each ending in 2×2 max pooling (28 → 14 → 7 → 3, 32 → 16 → 8 → 4), then dropout, Dense 256
    and the classifier."""

    def block(filters: int) -> list:
        return [Conv2D(filters, 3, padding=1, bias=False), BatchNorm2D(), ReLU()]

    layers = []
    for filters in (32, 64, 128):
        layers += [*block(filters), *block(filters), MaxPool2D(2, fit="floor")]
    return _model([*layers, Flatten(), Dropout(0.5), Dense(256), ReLU(), Dropout(0.5),
                   Dense(num_classes)], input_shape, seed, build)


def _basic_block(filters: int, stride: int, in_channels: int) -> Residual:
    """ResNet's basic block: two 3×3 conv–BN, the first strided; projection shortcut (1×1 conv
    with the stride, BN) when the shape changes, identity otherwise."""
    branch = [*_conv_bn(filters, 3, stride, 1), ReLU(), *_conv_bn(filters, 3, 1, 1)]
    change = stride != 1 or in_channels != filters
    return Residual(branch, _conv_bn(filters, 1, stride) if change else None)


def _cifar_resnet(blocks: int, num_classes: int) -> list:
    layers, channels = [*_conv_bn(16, 3, 1, 1), ReLU()], 16
    for stage, filters in enumerate((16, 32, 64)):
        for i in range(blocks):
            layers += [_basic_block(filters, 2 if stage and not i else 1, channels), ReLU()]
            channels = filters
    return [*layers, GlobalAvgPool2D(), Dense(num_classes)]


@_register
def resnet8(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
            build: bool = True) -> Sequential:
    """A CPU-sized ResNet: 3×3 conv 16 stem, three stages of one basic residual block (16, 32,
    64 filters, stride 2 between stages, projection shortcuts), global average pooling, Dense."""
    return _model(_cifar_resnet(1, num_classes), input_shape, seed, build)


@_register
def resnet20(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
             build: bool = True) -> Sequential:
    """He et al.'s CIFAR ResNet-20 (6n + 2 layers, n = 3): three stages of three basic blocks
    (16, 32, 64 filters); projection shortcuts where the shape changes (the paper's CIFAR net
    pads with zeros instead: 2,752 fewer parameters, 0.27 M at 32×32×3)."""
    return _model(_cifar_resnet(3, num_classes), input_shape, seed, build)


# -------------------------------------------------------------- ImageNet models
@_register
def alexnet(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
            lrn: bool = False, build: bool = True) -> Sequential:
    """Krizhevsky et al. 2012 in torchvision's layout (64-192-384-256-256 filters, no LRN):
    61,100,840 parameters. At 224×224 the first layer's (224 − 11 + 2·2)/4 + 1 = 55.25 is not
    whole: fit="floor" drops the leftover, as PyTorch does (the famous 224 vs 227). At 227×227 it
    uses the paper's padding 0: (227 − 11)/4 + 1 = 55 exactly. lrn=True adds the paper's local
    response normalisation after the first two convolutions (no parameters)."""
    pad = 0 if input_shape[1:] == (227, 227) else 2

    def norm() -> list:
        return [LocalResponseNorm(5, 1e-4, 0.75, 2.0)] if lrn else []

    return _model(
        [Conv2D(64, 11, 4, pad, fit="floor"), ReLU(), *norm(), MaxPool2D(3, 2, fit="floor"),
         Conv2D(192, 5, padding=2), ReLU(), *norm(), MaxPool2D(3, 2, fit="floor"),
         Conv2D(384, 3, padding=1), ReLU(), Conv2D(256, 3, padding=1), ReLU(),
         Conv2D(256, 3, padding=1), ReLU(), MaxPool2D(3, 2, fit="floor"),
         Flatten(), Dropout(0.5), Dense(4096), ReLU(), Dropout(0.5), Dense(4096), ReLU(),
         Dense(num_classes)], input_shape, seed, build)


VGG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M"],
}


def _vgg(depth: int, num_classes: int, input_shape: Shape, seed: int, build: bool) -> Sequential:
    layers = [MaxPool2D(2, fit="floor") if v == "M" else Conv2D(v, 3, padding=1) for v in VGG[depth]]
    layers = [y for x in layers for y in ([x] if isinstance(x, MaxPool2D) else [x, ReLU()])]
    return _model([*layers, Flatten(), Dense(4096), ReLU(), Dropout(0.5), Dense(4096), ReLU(),
                   Dropout(0.5), Dense(num_classes)], input_shape, seed, build)


@_register
def vgg11(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
          build: bool = True) -> Sequential:
    """Simonyan & Zisserman 2014, net A (torchvision's vgg11): 8 conv 3×3 + 3 Dense."""
    return _vgg(11, num_classes, input_shape, seed, build)


@_register
def vgg13(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
          build: bool = True) -> Sequential:
    """Simonyan & Zisserman 2014, net B (torchvision's vgg13): 10 conv 3×3 + 3 Dense."""
    return _vgg(13, num_classes, input_shape, seed, build)


@_register
def vgg16(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
          build: bool = True) -> Sequential:
    """Simonyan & Zisserman 2014, net D (torchvision's vgg16): 13 conv 3×3 + 3 Dense, 138 M
    parameters, 102.8 M of them in the first Dense (7·7·512 → 4096)."""
    return _vgg(16, num_classes, input_shape, seed, build)


@_register
def vgg19(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
          build: bool = True) -> Sequential:
    """Simonyan & Zisserman 2014, net E (torchvision's vgg19): 16 conv 3×3 + 3 Dense."""
    return _vgg(19, num_classes, input_shape, seed, build)


def _conv_bn_relu(filters: int, size: int, stride: int = 1, padding: int = 0) -> list:
    """torchvision's BasicConv2d of GoogLeNet: conv (no bias), BatchNorm (ε = 0.001), ReLU."""
    return [*_conv_bn(filters, size, stride, padding, eps=1e-3), ReLU()]


def _inception(c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> Concat:
    return Concat([
        _conv_bn_relu(c1, 1),
        [*_conv_bn_relu(c3r, 1), *_conv_bn_relu(c3, 3, padding=1)],
        # torchvision's "5×5" branch is a 3×3 (a known quirk kept for its weights); the paper's is 5×5
        [*_conv_bn_relu(c5r, 1), *_conv_bn_relu(c5, 3, padding=1)],
        [MaxPool2D(3, 1, padding=1), *_conv_bn_relu(pool, 1)],
    ])


def _ceil_pool(size: int, stride: int, layers: list, input_shape: Shape) -> MaxPool2D:
    """PyTorch's MaxPool2d(ceil_mode=True) at the current size: one more window at the bottom and
    right when the last doesn't fit, which is padding="same" for these windows (exact otherwise)."""
    h = _shape_after(layers, input_shape)[1]
    return MaxPool2D(size, stride, padding="same" if (h - size) % stride else 0)


@_register
def googlenet(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
              build: bool = True) -> Sequential:
    """Szegedy et al. 2014, Inception v1, as torchvision's googlenet with BatchNorm and without
    the auxiliary heads: nine Inception modules (Concat of 1×1, 1×1→3×3, 1×1→3×3, pool→1×1
    branches), global average pooling, dropout 0.2: 6,624,904 parameters."""
    layers = [*_conv_bn_relu(64, 7, 2, 3)]
    layers += [_ceil_pool(3, 2, layers, input_shape), *_conv_bn_relu(64, 1),
               *_conv_bn_relu(192, 3, padding=1)]
    layers += [_ceil_pool(3, 2, layers, input_shape),
               _inception(64, 96, 128, 16, 32, 32), _inception(128, 128, 192, 32, 96, 64)]
    layers += [_ceil_pool(3, 2, layers, input_shape),
               _inception(192, 96, 208, 16, 48, 64), _inception(160, 112, 224, 24, 64, 64),
               _inception(128, 128, 256, 24, 64, 64), _inception(112, 144, 288, 32, 64, 64),
               _inception(256, 160, 320, 32, 128, 128)]
    layers += [_ceil_pool(2, 2, layers, input_shape),
               _inception(256, 160, 320, 32, 128, 128), _inception(384, 192, 384, 48, 128, 128),
               GlobalAvgPool2D(), Dropout(0.2), Dense(num_classes)]
    return _model(layers, input_shape, seed, build)


def _bottleneck(width: int, stride: int, in_channels: int, se: int = 0) -> Residual:
    """ResNet-50's block: 1×1 conv (width) → 3×3 conv (width, the stride: torchvision's v1.5)
    → 1×1 conv (4·width), each with BN, ReLU between; SENet gates the result before the add."""
    out = 4 * width
    branch = [*_conv_bn(width, 1), ReLU(), *_conv_bn(width, 3, stride, 1), ReLU(), *_conv_bn(out, 1)]
    if se:
        branch.append(SqueezeExcite(se))
    change = stride != 1 or in_channels != out
    return Residual(branch, _conv_bn(out, 1, stride) if change else None)


def _resnet(blocks: list[int], bottleneck: bool, num_classes: int, se: int = 0) -> list:
    layers = [*_conv_bn(64, 7, 2, 3), ReLU(), MaxPool2D(3, 2, padding=1, fit="floor")]
    channels = 64
    for stage, count in enumerate(blocks):
        width = 64 << stage
        for i in range(count):
            stride = 2 if stage and not i else 1
            if bottleneck:
                layers += [_bottleneck(width, stride, channels, se), ReLU()]
                channels = 4 * width
            else:
                layers += [_basic_block(width, stride, channels), ReLU()]
                channels = width
    return [*layers, GlobalAvgPool2D(), Dense(num_classes)]


@_register
def resnet18(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
             build: bool = True) -> Sequential:
    """He et al. 2015 (torchvision's resnet18): 7×7/2 stem, max pool, four stages of two basic
    blocks (64, 128, 256, 512 filters), global average pooling, Dense: 11,689,512 parameters."""
    return _model(_resnet([2, 2, 2, 2], False, num_classes), input_shape, seed, build)


@_register
def resnet34(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
             build: bool = True) -> Sequential:
    """He et al. 2015 (torchvision's resnet34): basic blocks 3, 4, 6, 3: 21,797,672 parameters."""
    return _model(_resnet([3, 4, 6, 3], False, num_classes), input_shape, seed, build)


@_register
def resnet50(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
             build: bool = True) -> Sequential:
    """He et al. 2015 (torchvision's resnet50, stride on the 3×3): bottleneck blocks 3, 4, 6, 3:
    25,557,032 parameters, 4.1 G multiply-adds at 224×224."""
    return _model(_resnet([3, 4, 6, 3], True, num_classes), input_shape, seed, build)


@_register
def se_resnet50(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
                reduction: int = 16, build: bool = True) -> Sequential:
    """Hu et al. 2017 (SENet): ResNet-50 with a squeeze-and-excitation gate (r = 16, biased
    Dense layers) at the end of every residual branch: 28,088,024 parameters."""
    return _model(_resnet([3, 4, 6, 3], True, num_classes, se=reduction), input_shape, seed, build)


# ------------------------------------------------------------------------ lookup
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
    if isinstance(layer, Conv2D):  # Conv1D and LocallyConnected are Conv2Ds
        kernel = layer.kernel_size
        per_filter = shape[0] * (math.prod(kernel) if isinstance(kernel, tuple) else kernel)
        local = type(layer).__name__.startswith("LocallyConnected")
        copies = math.prod(layer.output_shape(shape)[1:]) if local else 1
        return layer.filters * (per_filter + layer.use_bias) * copies
    if isinstance(layer, Dense):
        return layer.units * (shape[0] + layer.use_bias)
    return layer.build(shape).count_params()  # BatchNorm, PReLU: a few values per channel
