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
    features.2.conv.1.0.weight (MobileNetV2)        conv2d_5.weight  (depthwise: (C, 1, 3, 3) both)
    features.1.0.block.3.weight (ConvNeXt)          residual_1.branch.conv2d_2.weight
                                 torchvision's Linear (4C, C) → our 1×1 conv (4C, C, 1, 1)
    features.1.0.layer_scale     residual_1.branch.layerscale_1.weight   (C, 1, 1) → (C,)

Dense and Conv2D keep PyTorch's (out, in) layouts, so nothing is transposed; only unit axes are
added or dropped (`squeezed`, `expanded`). A file may also hold
what no cnnlab layer keeps: BatchNorm's num_batches_tracked, and torchvision GoogLeNet's auxiliary
heads aux1.*, aux2.* (training only); the tables name those as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from cnnlab.zoo._common import CONVNEXT_TINY, MOBILENET_V2, VGG, _inverted_settings


class Layout(NamedTuple):
    """An architecture's names: (file name, cnnlab name) pairs; the file's tensors whose last two
    unit axes cnnlab drops (timm's 1×1 convolutions that are our Dense layers, (O, I, 1, 1) →
    (O, I); ConvNeXt's layer_scale, (C, 1, 1) → (C,)); names skipped when present; the
    classifier's names; whose names they are; the first Dense when its inputs fix the input
    size (VGG, AlexNet: torchvision's adaptive pooling before it is not in cnnlab); and the
    file's Linear weights that are our 1×1 convolutions ((O, I) → (O, I, 1, 1): ConvNeXt's)."""

    pairs: list[tuple[str, str]]
    squeezed: frozenset[str]
    skipped: frozenset[str]
    head: tuple[str, str]
    source: str
    sized: str | None = None
    expanded: frozenset[str] = frozenset()

    def file_shape(self, file_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape the file holds for the cnnlab tensor of `shape` named `file_name` there."""
        if file_name in self.squeezed:
            return (*shape, 1, 1)
        return tuple(shape[:-2]) if file_name in self.expanded else tuple(shape)


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


def _mobilenet_v2() -> Layout:
    """torchvision's MobileNetV2: features.0 (conv .0, BN .1), features.I.conv for the 17 blocks
    (t ≠ 1: expansion .0.0/.0.1, depthwise .1.0/.1.1, projection .2 and its BN .3; t = 1:
    depthwise .0.0/.0.1, projection .1, BN .2), features.18 (.0, .1), classifier.1 (after the
    Dropout). A block with a residual is our residual_R.branch.*; the other blocks' layers are
    the model's own, numbered on from the stem's conv2d_1."""
    pairs = [("features.0.0.weight", "conv2d_1.weight"), *_bn("features.0.1", "batchnorm2d_1")]
    convs, residuals = 1, 0  # the model's top-level Conv2D layers so far, its Residuals
    for i, (t, c_in, c_out, stride) in enumerate(_inverted_settings(MOBILENET_V2, 32), 1):
        steps = 2 if t == 1 else 3  # (expansion,) depthwise, projection: each a conv and a BN
        files = [(f"conv.{k}.0", f"conv.{k}.1") for k in range(steps - 1)]
        files.append((f"conv.{steps - 1}", f"conv.{steps}"))  # the projection: no activation
        if stride == 1 and c_in == c_out:
            residuals += 1
            ours = [f"residual_{residuals}.branch.{{}}_{k}" for k in range(1, steps + 1)]
        else:
            ours = [f"{{}}_{convs + k}" for k in range(1, steps + 1)]
            convs += steps
        for (conv, bn), name in zip(files, ours, strict=True):
            pairs += [(f"features.{i}.{conv}.weight", f"{name.format('conv2d')}.weight"),
                      *_bn(f"features.{i}.{bn}", name.format("batchnorm2d"))]
    pairs += [("features.18.0.weight", f"conv2d_{convs + 1}.weight"),
              *_bn("features.18.1", f"batchnorm2d_{convs + 1}"),
              *_weight_bias("classifier.1", "dense_1")]
    return Layout(pairs, frozenset(), frozenset(_batches(pairs)),
                  ("classifier.1.weight", "classifier.1.bias"), "torchvision")


def _convnext_tiny() -> Layout:
    """torchvision's ConvNeXt: features.0 (stem conv .0, LayerNorm2d .1), features.2S−1.B for
    the blocks (block.0 depthwise conv, block.2 LayerNorm, block.3 and block.5 Linear, layer_scale),
    features.2S (LayerNorm2d .0, conv .1) between stages, classifier.0 (LayerNorm2d) and
    classifier.2 (Linear)."""
    pairs = [*_weight_bias("features.0.0", "conv2d_1"), *_weight_bias("features.0.1", "layernorm_1")]
    squeezed, expanded, index = set(), set(), 0
    for stage, (blocks, _) in enumerate(CONVNEXT_TINY):
        if stage:
            pairs += [*_weight_bias(f"features.{2 * stage}.0", f"layernorm_{stage + 1}"),
                      *_weight_bias(f"features.{2 * stage}.1", f"conv2d_{stage + 1}")]
        for block in range(blocks):
            index += 1
            file, ours = f"features.{2 * stage + 1}.{block}", f"residual_{index}.branch"
            for part, layer in (("0", "conv2d_1"), ("2", "layernorm_1"), ("3", "conv2d_2"),
                                ("5", "conv2d_3")):
                pairs += _weight_bias(f"{file}.block.{part}", f"{ours}.{layer}")
            expanded |= {f"{file}.block.3.weight", f"{file}.block.5.weight"}
            pairs.append((f"{file}.layer_scale", f"{ours}.layerscale_1.weight"))
            squeezed.add(f"{file}.layer_scale")
    pairs += [*_weight_bias("classifier.0", f"layernorm_{len(CONVNEXT_TINY) + 1}"),
              *_weight_bias("classifier.2", "dense_1")]
    return Layout(pairs, frozenset(squeezed), frozenset(), ("classifier.2.weight", "classifier.2.bias"),
                  "torchvision", expanded=frozenset(expanded))


#: every architecture whose weights load, by zoo name
LAYOUTS: dict[str, Callable[[], Layout]] = {
    "resnet18": lambda: _resnet([2, 2, 2, 2], False),
    "resnet34": lambda: _resnet([3, 4, 6, 3], False),
    "resnet50": lambda: _resnet([3, 4, 6, 3], True),
    "se-resnet50": lambda: _resnet([3, 4, 6, 3], True, se=True),
    **{f"vgg{d}": (lambda d=d: _vgg(d)) for d in VGG},
    "alexnet": _alexnet,
    "googlenet": _googlenet,
    "mobilenet-v2": _mobilenet_v2,
    "convnext-tiny": _convnext_tiny,
}


def layout(name: str) -> Layout:
    key = name.replace("_", "-").lower()
    if key not in LAYOUTS:
        raise ValueError(f"no pretrained-weight layout for {name!r}; weights load into "
                         f"{', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[key]()
