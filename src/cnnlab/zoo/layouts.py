"""The name tables of pretrained weights: for each architecture, every tensor of the cnnlab model
paired with its name in a torchvision or timm state_dict (cnnlab.zoo.weights loads by them).

    conv1.weight                 conv2d_1.weight                 (K, C, F, F) both
    bn1.running_mean             batchnorm2d_1.running_mean      (C,) both
    layer2.0.conv1.weight        residual_3.branch.conv2d_1.weight
    layer2.0.downsample.1.bias   residual_3.shortcut.batchnorm2d_1.bias
    layer1.0.se.fc1.weight       residual_1.branch.squeezeexcite_1.fc1.weight
                                 timm's 1×1 conv (C/16, C, 1, 1) → our Dense (C/16, C)
    fc.weight                    dense_1.weight                  (classes, features) both
    features.0.weight (VGG)      conv2d_1.weight
    inception3a.branch2.1.conv.weight (GoogLeNet)   concat_1.branch2.conv2d_2.weight

Dense and Conv2D keep PyTorch's (out, in) layouts, so nothing is transposed. A file may also hold
what no cnnlab layer keeps: BatchNorm's num_batches_tracked, and torchvision GoogLeNet's auxiliary
heads aux1.*, aux2.* (training only); the tables name those as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from cnnlab.zoo._common import VGG


class Layout(NamedTuple):
    """An architecture's names: (file name, cnnlab name) pairs; the file's 1×1 convolutions that
    are our Dense layers (weights (O, I, 1, 1) → (O, I)); names skipped when present; the
    classifier's names; whose names they are; and the first Dense when its inputs fix the input
    size (VGG, AlexNet: torchvision's adaptive pooling before it is not in cnnlab)."""

    pairs: list[tuple[str, str]]
    squeezed: frozenset[str]
    skipped: frozenset[str]
    head: tuple[str, str]
    source: str
    sized: str | None = None


def _bn(file: str, ours: str) -> list[tuple[str, str]]:
    return [(f"{file}.{k}", f"{ours}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]


def _batches(pairs: list[tuple[str, str]]) -> set[str]:
    """num_batches_tracked of every BatchNorm of `pairs`: PyTorch's counter, cnnlab keeps none."""
    return {f.removesuffix("running_mean") + "num_batches_tracked"
            for f, _ in pairs if f.endswith("running_mean")}


def _weight_bias(file: str, ours: str) -> list[tuple[str, str]]:
    return [(f"{file}.weight", f"{ours}.weight"), (f"{file}.bias", f"{ours}.bias")]


def _resnet(blocks: list[int], bottleneck: bool, se: bool = False) -> Layout:
    """torchvision's ResNet (timm's seresnet50 with se): conv1, bn1, layerS.B.convI / bnI /
    downsample.0-1 (/ se.fc1-2), fc; our Residual blocks are numbered through the stages."""
    pairs = [("conv1.weight", "conv2d_1.weight"), *_bn("bn1", "batchnorm2d_1")]
    squeezed, index = set(), 0
    for stage, count in enumerate(blocks, 1):
        for block in range(count):
            index += 1
            file, ours = f"layer{stage}.{block}", f"residual_{index}"
            for i in range(1, 4 if bottleneck else 3):
                pairs += [(f"{file}.conv{i}.weight", f"{ours}.branch.conv2d_{i}.weight"),
                          *_bn(f"{file}.bn{i}", f"{ours}.branch.batchnorm2d_{i}")]
            if se:
                for fc in ("fc1", "fc2"):
                    pairs += _weight_bias(f"{file}.se.{fc}", f"{ours}.branch.squeezeexcite_1.{fc}")
                    squeezed.add(f"{file}.se.{fc}.weight")
            if block == 0 and (stage > 1 or bottleneck):  # the shape changes: a projection
                pairs += [(f"{file}.downsample.0.weight", f"{ours}.shortcut.conv2d_1.weight"),
                          *_bn(f"{file}.downsample.1", f"{ours}.shortcut.batchnorm2d_1")]
    pairs += _weight_bias("fc", "dense_1")
    return Layout(pairs, frozenset(squeezed), frozenset(_batches(pairs)), ("fc.weight", "fc.bias"),
                  "timm" if se else "torchvision")


def _vgg(depth: int) -> Layout:
    """torchvision's VGG: features.I (a convolution every 2 indices, a pooling every 1),
    classifier.0, .3, .6 (Linear, ReLU, Dropout between)."""
    pairs, index, conv = [], 0, 0
    for width in VGG[depth]:
        if width != "M":
            conv += 1
            pairs += _weight_bias(f"features.{index}", f"conv2d_{conv}")
        index += 1 if width == "M" else 2
    for i, fc in enumerate((0, 3, 6), 1):
        pairs += _weight_bias(f"classifier.{fc}", f"dense_{i}")
    return Layout(pairs, frozenset(), frozenset(), ("classifier.6.weight", "classifier.6.bias"),
                  "torchvision", "classifier.0.weight")


def _alexnet() -> Layout:
    """torchvision's AlexNet: features.0, 3, 6, 8, 10; classifier.1, 4, 6 (Dropout first)."""
    pairs = [p for i, f in enumerate((0, 3, 6, 8, 10), 1)
             for p in _weight_bias(f"features.{f}", f"conv2d_{i}")]
    pairs += [p for i, f in enumerate((1, 4, 6), 1)
              for p in _weight_bias(f"classifier.{f}", f"dense_{i}")]
    return Layout(pairs, frozenset(), frozenset(), ("classifier.6.weight", "classifier.6.bias"),
                  "torchvision", "classifier.1.weight")


#: GoogLeNet's Inception modules in order, and the two convolutions of its branches 2 and 3
INCEPTIONS = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


def _googlenet() -> Layout:
    """torchvision's GoogLeNet: BasicConv2d conv1-3 (.conv, .bn), inceptionNx.branch1 / branch2.0-1
    / branch3.0-1 / branch4.1 (after its pooling), fc; the auxiliary heads skipped."""
    def basic(file: str, ours: str, i: int) -> list[tuple[str, str]]:
        return [(f"{file}.conv.weight", f"{ours}conv2d_{i}.weight"),
                *_bn(f"{file}.bn", f"{ours}batchnorm2d_{i}")]

    pairs = [p for i in (1, 2, 3) for p in basic(f"conv{i}", "", i)]
    for n, name in enumerate(INCEPTIONS, 1):
        file, ours = f"inception{name}", f"concat_{n}"
        pairs += basic(f"{file}.branch1", f"{ours}.branch1.", 1)
        for b in (2, 3):
            pairs += basic(f"{file}.branch{b}.0", f"{ours}.branch{b}.", 1)
            pairs += basic(f"{file}.branch{b}.1", f"{ours}.branch{b}.", 2)
        pairs += basic(f"{file}.branch4.1", f"{ours}.branch4.", 1)
    pairs += _weight_bias("fc", "dense_1")
    aux = [f"aux{i}.{name}" for i in (1, 2) for name in (
        "conv.conv.weight", *(f"conv.bn.{k}" for k in ("weight", "bias", "running_mean",
                                                        "running_var", "num_batches_tracked")),
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")]
    return Layout(pairs, frozenset(), frozenset(_batches(pairs) | set(aux)), ("fc.weight", "fc.bias"),
                  "torchvision")


#: every architecture whose weights load, by zoo name
LAYOUTS: dict[str, Callable[[], Layout]] = {
    "resnet18": lambda: _resnet([2, 2, 2, 2], False),
    "resnet34": lambda: _resnet([3, 4, 6, 3], False),
    "resnet50": lambda: _resnet([3, 4, 6, 3], True),
    "se-resnet50": lambda: _resnet([3, 4, 6, 3], True, se=True),
    **{f"vgg{d}": (lambda d=d: _vgg(d)) for d in VGG},
    "alexnet": _alexnet,
    "googlenet": _googlenet,
}


def layout(name: str) -> Layout:
    key = name.replace("_", "-").lower()
    if key not in LAYOUTS:
        raise ValueError(f"no pretrained-weight layout for {name!r}; weights load into "
                         f"{', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[key]()
