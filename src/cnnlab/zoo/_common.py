"""What the zoo's builders share: the ImageNet input, the papers' top-5 errors, the stage tables
of VGG, MobileNetV2 and ConvNeXt (the builders and the weights' name tables read the same), and
small helpers (a model from a layer list, PyTorch's rounding, conv + BatchNorm, ResNet's basic
block, MobileNetV2's inverted residual)."""

from __future__ import annotations

from cnnlab.core import Layer, Shape
from cnnlab.layers import BatchNorm2D, Conv2D, Dense, ReLU, ReLU6, Residual, Sequential

IMAGENET: Shape = (3, 224, 224)

#: VGG's convolution widths by depth, "M" a 2×2 max pooling (torchvision's cfgs A, B, D, E)
VGG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M"],
}

#: MobileNetV2's inverted residual blocks (Sandler et al. 2018, Table 2; torchvision's
#: inverted_residual_setting): (expansion t, output channels c, blocks n, first block's stride s)
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))

#: mobilenet-small's blocks, the same rows for 28×28 and 32×32 input: MobileNetV2's first 12
#: blocks, fewer repeated, the stem unstrided and the first block strided instead (28 → 14 → 7 → 4)
MOBILENET_SMALL = ((1, 16, 1, 2), (6, 24, 2, 1), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1))

#: ConvNeXt-T's stages (Liu et al. 2022): (blocks, channels); a downsampling layer between stages
CONVNEXT_TINY = ((3, 96), (3, 192), (9, 384), (3, 768))

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


def _model(layers: list[Layer], input_shape: Shape, seed: int, build: bool) -> Sequential:
    return Sequential(layers, input_shape=input_shape if build else None, seed=seed)


def _classifier(num_classes: int) -> Dense:
    """The small models' last layer, its weights zero (init="zeros"; the bias is zero anyway):
    every class starts at score 0, probability 1/C, so the first loss is ln C on any input
    (2.30 for 10 classes: the sanity check's value; a random head started fmnist-cnn at 3.2 and
    resnet20 far higher). The labels break the symmetry: row o of dW = dyᵀ·x is class o's.
    Fixup (Zhang et al. 2019) zero-initialises the classifier the same way."""
    return Dense(num_classes, init="zeros")


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


def _basic_block(filters: int, stride: int, in_channels: int) -> Residual:
    """ResNet's basic block: two 3×3 conv–BN, the first strided; projection shortcut (1×1 conv
    with the stride, BN) when the shape changes, identity otherwise."""
    branch = [*_conv_bn(filters, 3, stride, 1), ReLU(), *_conv_bn(filters, 3, 1, 1)]
    change = stride != 1 or in_channels != filters
    return Residual(branch, _conv_bn(filters, 1, stride) if change else None)


def _inverted_settings(settings, channels: int):
    """Each inverted residual block of `settings` ((t, c, n, s) rows) after a stem of `channels`:
    (t, input channels, output channels, stride), the stride on each row's first block."""
    for t, out, n, s in settings:
        for i in range(n):
            yield t, channels, out, s if i == 0 else 1
            channels = out


def _conv_bn_relu6(filters: int, size: int, stride: int = 1, groups: int = 1) -> list:
    """torchvision's Conv2dNormActivation of MobileNetV2: conv (no bias, padding (F − 1)/2),
    BatchNorm, ReLU6; groups = filters is the depthwise convolution."""
    return [Conv2D(filters, size, stride, (size - 1) // 2, groups=groups, bias=False,
                   fit=_floor(stride)), BatchNorm2D(), ReLU6()]


def _inverted_residual(t: int, in_channels: int, out_channels: int, stride: int) -> list:
    """MobileNetV2's block: 1×1 expansion to t·C channels (left out when t = 1), depthwise 3×3
    (the stride), 1×1 linear projection to the output channels (BatchNorm, no activation: the
    paper's linear bottleneck); a Residual around it when stride 1 keeps the channels."""
    hidden = round(in_channels * t)
    layers = [] if t == 1 else _conv_bn_relu6(hidden, 1)
    layers += [*_conv_bn_relu6(hidden, 3, stride, groups=hidden),
               Conv2D(out_channels, 1, bias=False), BatchNorm2D()]
    return [Residual(layers)] if stride == 1 and in_channels == out_channels else layers
