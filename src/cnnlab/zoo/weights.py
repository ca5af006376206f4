"""Pretrained weights: a torchvision or timm state_dict, saved as safetensors, loaded into a zoo
model by an explicit table of names (cnnlab.zoo.layouts), every name and shape checked before a
tensor is read.

    model = cl.zoo.resnet50(weights="resnet50.safetensors")   # + ImageNet preprocessing, classes
    cl.zoo.load_weights(model, "resnet50.safetensors", "resnet50", head=False)

Anything missing, extra or of another shape is one ModelFileError listing it all (each list
shortened to its first few); nothing is matched by position, and the model is changed only when
every tensor has been read.

Architectures: resnet18/34/50, vgg11/13/16/19, alexnet, googlenet, mobilenet-v2 and
convnext-tiny in torchvision's names (timm's resnets use the same); se-resnet50 in timm's
`seresnet50` names. The zoo builds them as
torchvision does (ResNet-50 v1.5: the stride on the 3×3 convolution; GoogLeNet's BatchNorm
convolutions, ε = 0.001, without the auxiliary heads). VGG and AlexNet end in torchvision's
adaptive average pooling, which cnnlab lacks: their first Dense fits only inputs that reach it
at 7×7 (VGG) or 6×6 (AlexNet), as 224×224 does; another input size is refused by the shape check.
"""

from __future__ import annotations

import os
from importlib import resources

from cnnlab.core import ModelFileError
from cnnlab.data.loader import Preprocess
from cnnlab.io.foreign import FLOATS, ForeignFile
from cnnlab.layers import Sequential
from cnnlab.zoo.layouts import Layout, layout

#: ImageNet's per-channel mean and std of pixels on 0–1 (torchvision's and timm's defaults)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the published accuracies' protocol: shorter side to 256, the centre 224×224 (a ratio of 0.875)
RESIZE_FOR_224 = 256
#: weights published with another resize before the 224 crop (torchvision's ConvNeXt-T: 236)
RESIZE_BY_MODEL = {"convnext-tiny": 236}
#: weights trained on pixels mapped to −1…1: torchvision's GoogLeNet (its transform_input turns
#: ImageNet-normalised input into (x − 0.5)/0.5 before the first convolution)
HALF = {"googlenet"}
#: what a state_dict's names begin with when saved from a wrapper (DataParallel, EMA, compile)
PREFIXES = ("module.", "model.", "_orig_mod.")
#: how many names an error lists of each kind
SHOWN = 6


class HeadMismatch(ModelFileError):
    """The file's classifier has another number of classes than the model's; all else fits."""

    def __init__(self, message: str, file_classes: int, model_classes: int) -> None:
        super().__init__(message)
        self.file_classes, self.model_classes = file_classes, model_classes


def load_weights(model: Sequential, path: str | os.PathLike, name: str, *,
                 head: bool = True) -> Sequential:
    """Copies the weights and BatchNorm statistics of the safetensors file at `path`, a `name`
    state_dict in torchvision's or timm's names, into `model` (the zoo's `name`, built), and
    returns it. head=False leaves the model's classifier as it is (a new one for other classes:
    the file's, of any shape, is skipped). ModelFileError listing every missing, extra and
    mis-shaped tensor (HeadMismatch when only the classifier's class count differs)."""
    table = layout(name)
    ours = {k: p.data for k, p in model.parameters().items()} | model.buffers()
    if mismatch := sorted(set(ours) ^ {o for _, o in table.pairs}):
        raise ValueError(f"load_weights: the model is not the zoo's {name} (its tensors differ at "
                         f"{_short(mismatch)}); build it with cl.zoo.get({name!r}, ...)")
    wanted = {f: table.file_shape(f, ours[o].shape) for f, o in table.pairs
              if head or f not in table.head}
    with ForeignFile(path) as file:
        _check(file, wanted, table, name, ours)
        values = {f: file.read(f) for f in wanted}
    for f, o in table.pairs:
        if f in values:
            ours[o][...] = values[f].reshape(ours[o].shape)
    return model


def _check(file: ForeignFile, wanted: dict, table: Layout, name: str, ours: dict) -> None:
    """One ModelFileError for everything in `file` that does not fit `wanted`."""
    entries = file.entries
    skipped = table.skipped | (set() if wanted.keys() & set(table.head) else set(table.head))
    missing = [f for f in wanted if f not in entries]
    # a counter of PyTorch's that a table does not know says least: listed last
    extra = sorted((f for f in entries if f not in wanted and f not in skipped),
                   key=lambda f: f.endswith("num_batches_tracked"))
    shaped = [f for f in wanted if f in entries and entries[f].shape != wanted[f]]
    typed = [f for f in wanted if f in entries and entries[f].dtype not in FLOATS]
    if not (missing or extra or shaped or typed):
        return
    if not (missing or extra or typed) and _other_classes(entries, wanted, table, shaped):
        raise _head_mismatch(file, table, name, ours)
    parts = [f"{len(missing)} missing: {_short(missing)}" if missing else "",
             f"{len(extra)} unexpected: {_short(extra)}" if extra else "",
             f"{len(shaped)} of another shape: " + _short(
                 [f"{f} {entries[f].shape} (needs {wanted[f]})" for f in shaped]) if shaped else "",
             f"{len(typed)} not float: " + _short(
                 [f"{f} {entries[f].dtype}" for f in typed]) if typed else ""]
    raise ModelFileError(f"{file.path}: not {name}'s weights in {table.source}'s names "
                         f"({len(wanted)} tensors checked by name and shape; nothing was loaded): "
                         + "; ".join(p for p in parts if p) + _hint(entries, wanted, table, shaped))


def _other_classes(entries: dict, wanted: dict, table: Layout, shaped: list[str]) -> bool:
    """Whether the classifier alone differs, by its number of classes only."""
    weight, bias = table.head
    found = entries[weight].shape
    return set(shaped) <= {weight, bias} and len(found) == 2 and found[1:] == wanted[weight][1:] \
        and entries[bias].shape == found[:1]


def _head_mismatch(file: ForeignFile, table: Layout, name: str, ours: dict) -> HeadMismatch:
    weight = table.head[0]
    found = file.entries[weight].shape
    model_classes = ours[dict(table.pairs)[weight]].shape[0]
    return HeadMismatch(
        f"{file.path}: the classifier {weight} {found} has {found[0]} classes, the model "
        f"{model_classes}; build the model with num_classes={found[0]}, or keep its own "
        f"classifier: cl.zoo.load_weights(model, path, {name!r}, head=False)", found[0], model_classes)


def _short(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" … and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _hint(entries: dict, wanted: dict, table: Layout, shaped: list[str]) -> str:
    """What to do when the names are another model's, all carry a wrapper's prefix, or the
    input size does not fit VGG's or AlexNet's first Dense."""
    if table.sized in shaped:
        return (". The first Dense's inputs follow from the input size: these weights fit a "
                "224×224 input (torchvision's adaptive pooling before it is not in cnnlab)")
    for prefix in PREFIXES:
        if entries and all(f.startswith(prefix) for f in entries):
            return (f". Every name begins with {prefix!r} (a wrapped model's state_dict): save "
                    "the inner model's state_dict, or remove the prefix from the names")
    if len(wanted.keys() & entries.keys()) < len(wanted) / 2:
        return ". Most names differ: are these another architecture's weights?"
    return ""


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names in the order of the classifiers' outputs (torchvision's
    and timm's), as WordNet's first lemma; the two names used twice are told apart: "crane
    (bird)" (134) and "crane (machine)" (517), "maillot" (638) and "tank suit" (639)."""
    text = resources.files("cnnlab.zoo").joinpath("imagenet_classes.txt").read_text("utf-8")
    return text.splitlines()


def imagenet_preprocess(name: str, input_shape, resize: int | None = None) -> Preprocess:
    """The preprocessing the published weights expect: ImageNet's mean and std (GoogLeNet's
    torchvision weights: 0.5 and 0.5, what its transform_input does), and the shorter side
    resized to `resize` before the centre crop (default: 256/224 of the input, 256 at 224;
    ConvNeXt-T's 236/224)."""
    key = name.replace("_", "-").lower()
    side = resize or round(min(input_shape[1:]) * RESIZE_BY_MODEL.get(key, RESIZE_FOR_224) / 224)
    if key in HALF:
        return Preprocess((0.5,) * 3, (0.5,) * 3, resize=f"center-crop:{side}")
    return Preprocess(IMAGENET_MEAN, IMAGENET_STD, resize=f"center-crop:{side}")


def pretrained(model: Sequential, name: str, path: str | os.PathLike, *, head: bool = True
               ) -> Sequential:
    """load_weights, then the published weights' preprocessing (imagenet_preprocess) and, for a
    1,000-class head, ImageNet's class names: a model `cl.predict` and `cnnlab predict` can use."""
    load_weights(model, path, name, head=head)
    model.preprocess = imagenet_preprocess(name, model.input_shape)
    model.class_names = imagenet_classes() if model.out_shape == (1000,) else None
    return model


def head_classes(path: str | os.PathLike, name: str) -> int:
    """The number of classes of the file's classifier, from its header alone (cnnlab convert
    builds the model to match); ModelFileError when the file has no such tensor."""
    weight = layout(name).head[0]
    with ForeignFile(path) as file:
        entry = file.entries.get(weight)
    if entry is None or len(entry.shape) != 2:
        raise ModelFileError(f"{path}: no classifier {weight} (classes, features) in the file: not "
                             f"{name}'s weights in {layout(name).source}'s names")
    return entry.shape[0]
