"""The small models: trained on a CPU at 28×28×1 and 32×32×3 (fmnist-cnn, lenet5, resnet8, ...).

Each ends in a zero-initialised classifier (`_common._classifier`): its first loss is ln C.
"""

from __future__ import annotations

from cnnlab.core import Shape
from cnnlab.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    MaxPool2D,
    ReLU,
    Sequential,
    Tanh,
)
from cnnlab.zoo._common import (
    MOBILENET_SMALL,
    _basic_block,
    _classifier,
    _conv_bn,
    _conv_bn_relu6,
    _inverted_residual,
    _inverted_settings,
    _model,
)


def fmnist_cnn(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
               build: bool = True) -> Sequential:
    """Two 3×3 convolutions (32, 64 filters, padding 1) each with ReLU and 2×2 max pooling, then
    Dense 128 and the classifier: 421,642 parameters at 28×28×1."""
    return _model([Conv2D(32, 3, padding=1), ReLU(), MaxPool2D(2),
                   Conv2D(64, 3, padding=1), ReLU(), MaxPool2D(2),
                   Flatten(), Dense(128), ReLU(), _classifier(num_classes)], input_shape, seed, build)


def fmnist_cnn_bn(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
                  build: bool = True) -> Sequential:
    """The stronger recipe's network: three conv–BatchNorm–ReLU stages (32, 64, 128 filters of
    3×3; 2×2 max pooling after the first two), dropout, Dense 256 with BatchNorm and dropout.
    About twice the reference CNN's multiply-adds; most of its gain comes from training."""

    def block(filters: int) -> list:
        return [Conv2D(filters, 3, padding=1, bias=False), BatchNorm2D(), ReLU()]

    return _model(
        [*block(32), MaxPool2D(2), *block(64), MaxPool2D(2), *block(128), Dropout(0.25),
         Flatten(), Dense(256, bias=False), BatchNorm1D(), ReLU(), Dropout(0.4),
         _classifier(num_classes)],
        input_shape, seed, build)


def lenet5(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
           build: bool = True) -> Sequential:
    """LeCun et al. 1998 as commonly rebuilt: conv 6@5×5 (padding 2 for 28×28 input) – tanh –
    avg pool 2 – conv 16@5×5 – tanh – avg pool 2 – Dense 120 – 84 – classes."""
    pad = 2 if input_shape[1] == 28 else 0
    return _model([Conv2D(6, 5, padding=pad), Tanh(), AvgPool2D(2),
                   Conv2D(16, 5), Tanh(), AvgPool2D(2),
                   Flatten(), Dense(120), Tanh(), Dense(84), Tanh(), _classifier(num_classes)],
                  input_shape, seed, build)


def mlp(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
        build: bool = True) -> Sequential:
    """The lecture's stretched-pixel baseline: every pixel into one vector, two hidden layers."""
    return _model([Flatten(), Dense(512), ReLU(), Dense(256), ReLU(), _classifier(num_classes)],
                  input_shape, seed, build)


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
                   _classifier(num_classes)], input_shape, seed, build)


def _cifar_resnet(blocks: int, num_classes: int) -> list:
    layers, channels = [*_conv_bn(16, 3, 1, 1), ReLU()], 16
    for stage, filters in enumerate((16, 32, 64)):
        for i in range(blocks):
            layers += [_basic_block(filters, 2 if stage and not i else 1, channels), ReLU()]
            channels = filters
    return [*layers, GlobalAvgPool2D(), _classifier(num_classes)]


def resnet8(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
            build: bool = True) -> Sequential:
    """A CPU-sized ResNet: 3×3 conv 16 stem, three stages of one basic residual block (16, 32,
    64 filters, stride 2 between stages, projection shortcuts), global average pooling, Dense."""
    return _model(_cifar_resnet(1, num_classes), input_shape, seed, build)


def resnet20(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
             build: bool = True) -> Sequential:
    """He et al.'s CIFAR ResNet-20 (6n + 2 layers, n = 3): three stages of three basic blocks
    (16, 32, 64 filters); projection shortcuts where the shape changes (the paper's CIFAR net
    pads with zeros instead: 2,752 fewer parameters, 0.27 M at 32×32×3)."""
    return _model(_cifar_resnet(3, num_classes), input_shape, seed, build)


def mobilenet_small(num_classes: int = 10, input_shape: Shape = (1, 28, 28), seed: int = 0, *,
                    build: bool = True) -> Sequential:
    """MobileNetV2 at CPU size: a 3×3 conv–BN–ReLU6 stem (16 channels, unstrided), 8 inverted
    residual blocks (16, 24, 24, 32, 32, 64, 64, 96 channels, expansion 6 after the first; the
    first block's depthwise convolution strided, then two more strides: 28 → 14 → 7 → 4), 1×1
    conv to 320, global average pooling, dropout 0.2 and the classifier: 215,978 parameters at
    28×28×1."""
    layers = _conv_bn_relu6(16, 3)
    for t, c_in, c_out, stride in _inverted_settings(MOBILENET_SMALL, 16):
        layers += _inverted_residual(t, c_in, c_out, stride)
    return _model([*layers, *_conv_bn_relu6(320, 1), GlobalAvgPool2D(), Dropout(0.2),
                   _classifier(num_classes)], input_shape, seed, build)
