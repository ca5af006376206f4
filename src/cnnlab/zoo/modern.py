"""Two recent ImageNet networks in torchvision's layouts: MobileNetV2 and ConvNeXt-T.

Both take `weights=PATH`, a safetensors file of torchvision's state_dict for the same
architecture (cnnlab.zoo.layouts names every tensor), as the builders of imagenet.py do.

    mobilenet_v2    depthwise separable convolutions, inverted residuals, linear bottlenecks
    convnext_tiny   a ResNet modernised: 4×4 patchify stem, 7×7 depthwise convolutions,
                    LayerNorm, GELU, LayerScale, stochastic depth
"""

from __future__ import annotations

from cnnlab.core import Shape
from cnnlab.layers import (
    GELU,
    Conv2D,
    Dense,
    Dropout,
    DropPath,
    GlobalAvgPool2D,
    LayerNorm,
    LayerScale,
    Residual,
    Sequential,
)
from cnnlab.zoo._common import (
    CONVNEXT_TINY,
    IMAGENET,
    MOBILENET_V2,
    _conv_bn_relu6,
    _floor,
    _inverted_residual,
    _inverted_settings,
)
from cnnlab.zoo.imagenet import Weights, _finish

#: ConvNeXt's LayerNorm ε (torchvision's and the paper's code: 1e-6, not PyTorch's default 1e-5)
CONVNEXT_EPS = 1e-6


def mobilenet_v2(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
                 dropout: float = 0.2, build: bool = True, weights: Weights = None) -> Sequential:
    """Sandler et al. 2018 (torchvision's mobilenet_v2, width 1.0): 3,504,872 parameters.
    A 3×3/2 conv–BN–ReLU6 stem (32 channels), 17 inverted residual blocks (expansion t: 1×1
    conv to t·C, depthwise 3×3, 1×1 linear projection; a Residual where stride 1 keeps the
    channels), 1×1 conv to 1280, global average pooling, dropout 0.2, Dense. Strided layers
    floor their sizes as PyTorch does (224 → 112 → 56 → 28 → 14 → 7)."""
    layers = _conv_bn_relu6(32, 3, 2)
    for t, c_in, c_out, stride in _inverted_settings(MOBILENET_V2, 32):
        layers += _inverted_residual(t, c_in, c_out, stride)
    layers += [*_conv_bn_relu6(1280, 1), GlobalAvgPool2D(), Dropout(dropout), Dense(num_classes)]
    return _finish(layers, "mobilenet-v2", input_shape, seed, build, weights)


def _convnext_block(dim: int, drop: float) -> Residual:
    """ConvNeXt's block (torchvision's CNBlock): depthwise 7×7 (bias) → LayerNorm over the
    channels → 1×1 conv to 4·dim (the paper's Linear on channels-last) → GELU (erf) → 1×1 conv
    back to dim → LayerScale γ (1e-6) → DropPath (when drop > 0); added to the input."""
    branch = [Conv2D(dim, 7, padding=3, groups=dim), LayerNorm(CONVNEXT_EPS),
              Conv2D(4 * dim, 1), GELU(), Conv2D(dim, 1), LayerScale(1e-6)]
    return Residual(branch + ([DropPath(drop)] if drop > 0 else []))


def convnext_tiny(num_classes: int = 1000, input_shape: Shape = IMAGENET, seed: int = 0, *,
                  stochastic_depth: float = 0.1, build: bool = True,
                  weights: Weights = None) -> Sequential:
    """Liu et al. 2022, ConvNeXt-T (torchvision's convnext_tiny): 28,589,128 parameters.
    A 4×4/4 "patchify" conv (96 channels) and LayerNorm, four stages of 3, 3, 9, 3 ConvNeXt
    blocks (96, 192, 384, 768 channels) with LayerNorm and a 2×2/2 conv between stages,
    global average pooling, LayerNorm, Dense. Block i of 18 drops its path with probability
    stochastic_depth·i/17 in training (torchvision's rule; 0 turns DropPath off)."""
    layers = [Conv2D(CONVNEXT_TINY[0][1], 4, 4, fit=_floor(4)), LayerNorm(CONVNEXT_EPS)]
    total, index = sum(blocks for blocks, _ in CONVNEXT_TINY), 0
    for stage, (blocks, dim) in enumerate(CONVNEXT_TINY):
        if stage:
            layers += [LayerNorm(CONVNEXT_EPS), Conv2D(dim, 2, 2, fit=_floor(2))]
        for _ in range(blocks):
            layers.append(_convnext_block(dim, stochastic_depth * index / (total - 1)))
            index += 1
    layers += [GlobalAvgPool2D(), LayerNorm(CONVNEXT_EPS), Dense(num_classes)]
    return _finish(layers, "convnext-tiny", input_shape, seed, build, weights)
