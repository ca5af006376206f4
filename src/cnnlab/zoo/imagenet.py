"""The ImageNet winners in torchvision's layouts: AlexNet, VGG, GoogLeNet, ResNet, SE-ResNet.

Every builder takes `weights=PATH`: a safetensors file of torchvision's (timm's for SE-ResNet-50)
state_dict for the same architecture, loaded by name and shape (cnnlab.zoo.weights), with the
preprocessing the published weights expect and, for 1,000 classes, ImageNet's class names.
"""

from __future__ import annotations

import os

import numpy as np

from cnnlab.core import Shape, walk
from cnnlab.layers import (
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
)
from cnnlab.zoo._common import IMAGENET, VGG, _basic_block, _conv_bn, _model, _shape_after
from cnnlab.zoo.weights import pretrained

#: a weights file for `weights=`, or None for random weights
Weights = str | os.PathLike | None


def _finish(layers: list, name: str, input_shape: Shape, seed: int, build: bool,
            weights: Weights) -> Sequential:
    """The model of `layers`: built with random weights, unbuilt (build=False), or given the
    weights of the file `weights` (cnnlab.zoo.weights.pretrained). That one is built with zero
    weights first: VGG-16's 138 M random numbers, about to be replaced, are never drawn."""
    if weights is None:
        return _model(layers, input_shape, seed, build)
    if not build:
        raise ValueError(f"{name}: weights= loads into the built model; leave out build=False")
    model = _model(layers, input_shape, seed, False)
    inits = [(layer, layer.init) for _, layer in walk(model) if isinstance(layer, Conv2D | Dense)]
    for layer, _ in inits:
        layer.init = "zeros"
    try:
        model.build(input_shape, np.random.default_rng(seed))
    finally:
        for layer, init in inits:
            layer.init = init
    return pretrained(model, name, weights)


def alexnet(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
            lrn: bool = False, build: bool = True, weights: Weights = None) -> Sequential:
    """Krizhevsky et al. 2012 in torchvision's layout (64-192-384-256-256 filters, no LRN):
    61,100,840 parameters. At 224×224 the first layer's (224 − 11 + 2·2)/4 + 1 = 55.25 is not
    whole: fit="floor" drops the leftover, as PyTorch does (the famous 224 vs 227). At 227×227 it
    uses the paper's padding 0: (227 − 11)/4 + 1 = 55 exactly. lrn=True adds the paper's local
    response normalisation after the first two convolutions (no parameters)."""
    pad = 0 if input_shape[1:] == (227, 227) else 2

    def norm() -> list:
        return [LocalResponseNorm(5, 1e-4, 0.75, 2.0)] if lrn else []

    return _finish(
        [Conv2D(64, 11, 4, pad, fit="floor"), ReLU(), *norm(), MaxPool2D(3, 2, fit="floor"),
         Conv2D(192, 5, padding=2), ReLU(), *norm(), MaxPool2D(3, 2, fit="floor"),
         Conv2D(384, 3, padding=1), ReLU(), Conv2D(256, 3, padding=1), ReLU(),
         Conv2D(256, 3, padding=1), ReLU(), MaxPool2D(3, 2, fit="floor"),
         Flatten(), Dropout(0.5), Dense(4096), ReLU(), Dropout(0.5), Dense(4096), ReLU(),
         Dense(num_classes)], "alexnet", input_shape, seed, build, weights)


def _vgg(depth: int, num_classes: int, input_shape: Shape, seed: int, build: bool,
         weights: Weights) -> Sequential:
    layers = [MaxPool2D(2, fit="floor") if v == "M" else Conv2D(v, 3, padding=1) for v in VGG[depth]]
    layers = [y for x in layers for y in ([x] if isinstance(x, MaxPool2D) else [x, ReLU()])]
    return _finish([*layers, Flatten(), Dense(4096), ReLU(), Dropout(0.5), Dense(4096), ReLU(),
                    Dropout(0.5), Dense(num_classes)], f"vgg{depth}", input_shape, seed, build, weights)


def vgg11(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
          build: bool = True, weights: Weights = None) -> Sequential:
    """Simonyan & Zisserman 2014, net A (torchvision's vgg11): 8 conv 3×3 + 3 Dense."""
    return _vgg(11, num_classes, input_shape, seed, build, weights)


def vgg13(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
          build: bool = True, weights: Weights = None) -> Sequential:
    """Simonyan & Zisserman 2014, net B (torchvision's vgg13): 10 conv 3×3 + 3 Dense."""
    return _vgg(13, num_classes, input_shape, seed, build, weights)


def vgg16(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
          build: bool = True, weights: Weights = None) -> Sequential:
    """Simonyan & Zisserman 2014, net D (torchvision's vgg16): 13 conv 3×3 + 3 Dense, 138 M
    parameters, 102.8 M of them in the first Dense (7·7·512 → 4096)."""
    return _vgg(16, num_classes, input_shape, seed, build, weights)


def vgg19(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
          build: bool = True, weights: Weights = None) -> Sequential:
    """Simonyan & Zisserman 2014, net E (torchvision's vgg19): 16 conv 3×3 + 3 Dense."""
    return _vgg(19, num_classes, input_shape, seed, build, weights)


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


def googlenet(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
              build: bool = True, weights: Weights = None) -> Sequential:
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
    return _finish(layers, "googlenet", input_shape, seed, build, weights)


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


def resnet18(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
             build: bool = True, weights: Weights = None) -> Sequential:
    """He et al. 2015 (torchvision's resnet18): 7×7/2 stem, max pool, four stages of two basic
    blocks (64, 128, 256, 512 filters), global average pooling, Dense: 11,689,512 parameters."""
    return _finish(_resnet([2, 2, 2, 2], False, num_classes), "resnet18", input_shape, seed, build, weights)


def resnet34(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
             build: bool = True, weights: Weights = None) -> Sequential:
    """He et al. 2015 (torchvision's resnet34): basic blocks 3, 4, 6, 3: 21,797,672 parameters."""
    return _finish(_resnet([3, 4, 6, 3], False, num_classes), "resnet34", input_shape, seed, build, weights)


def resnet50(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
             build: bool = True, weights: Weights = None) -> Sequential:
    """He et al. 2015 (torchvision's resnet50, stride on the 3×3): bottleneck blocks 3, 4, 6, 3:
    25,557,032 parameters, 4.1 G multiply-adds at 224×224."""
    return _finish(_resnet([3, 4, 6, 3], True, num_classes), "resnet50", input_shape, seed, build, weights)


def se_resnet50(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
                reduction: int = 16, build: bool = True, weights: Weights = None) -> Sequential:
    """Hu et al. 2017 (SENet): ResNet-50 with a squeeze-and-excitation gate (r = 16, biased
    Dense layers) at the end of every residual branch: 28,088,024 parameters."""
    return _finish(_resnet([3, 4, 6, 3], True, num_classes, se=reduction), "se-resnet50",
                   input_shape, seed, build, weights)
