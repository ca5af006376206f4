"""Where images come from: a named dataset, a folder of IDX or CIFAR-10 files, or an image folder
with one subfolder per class, read the same way for training, evaluation and reports.

    source = Source("photos/", holdout=True, report=print)
    x, y, classes, what = source.load("train", (3, 64, 64))   # what: "training"
    xt, yt, _, what = source.load("test", (3, 64, 64))        # what: "held-out"

An image folder without train/ and test/ subfolders keeps one image in ten of each class apart
(the 10th, 20th, ... file of the class in name order) when `holdout` is true: "train" is the other
nine, "test" (any other split but "all") the tenth, and "all" every image. Training and
evaluation use the same rule, so `cnnlab evaluate` scores exactly the images `train` held out.
Without `holdout` every image is used ("all"). A folder with train/ may also have its own
validation images in val/ (or validation/): has_own_validation().

Nothing here prints: what the user should be told (which dataset was chosen, how an IDX folder is
read, what an image folder's decoding converted) goes to the `report` callable, one line a call.

Names from the file system need not be UTF-8: Python gives a byte that is not (a folder named
b"caf\xe9") as a surrogate escape ("caf\udce9"), which opens the same file again but which no
UTF-8 writer (TOML, HTML, a strict terminal) accepts. readable() shows such bytes as \xe9 for
the user; the path itself is kept as it is for opening files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cnnlab.core import DataError, volume
from cnnlab.data.datasets import DATASETS, DEFAULT, class_names, is_available, load, locate
from cnnlab.data.folder import class_folders, load_folder, take

Report = Callable[[str], None]
#: the folder names an image folder's own validation images may have, beside train/
VALIDATION = ("val", "validation")


def _silent(text: str) -> None:
    pass


def readable(text: str) -> str:
    """`text` (a file or folder name, a path, a class name) as valid UTF-8 for the user: the bytes
    of a name that were not UTF-8 (surrogate escapes) shown as \\xNN, any other lone surrogate
    (from a file's JSON) as \\udNNN. Text that was valid is returned as it was."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte (U+D800–U+DC7F)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Source:
    """Images from `spec`: a dataset name (fashion-mnist, mnist, cifar10, fashion-mnist-mini) or a
    folder (IDX files, CIFAR-10 .bin files, or class subfolders of images).

    `holdout`: an image folder without train/ and test/ keeps one image in ten apart for testing.
    `report`: receives what the user should be told (e.g. the cli's stderr), one line a call.
    `lazy`: how an image folder is read (cnnlab.data.folder.load_folder): True, decoded when a
    batch needs each image (data-parallel training: each process decodes only its share);
    None, whole up to folder.EAGER_BYTES of pixels and lazily above.
    Attributes: `spec` (as given), `kind` (a dataset name or "folder"), `root` (the folder or
    None), `classes` (class names; None for an image folder, whose classes load() returns),
    `stored` (what a run's config.toml records: the name, or the folder's absolute path).
    Raises DataError when `spec` is neither a dataset nor a folder.
    """

    def __init__(self, spec: str, *, holdout: bool, report: Report | None = None,
                 lazy: bool | None = None) -> None:
        self.spec, self.holdout, self.kind, self.root = spec, holdout, spec, None
        self.lazy = lazy
        self.report = report or _silent
        self.classes: list[str] | None = None
        self._decoded: dict = {}  # an image folder is decoded once for both splits
        if spec in DATASETS:
            self.classes, self.stored = class_names(spec), spec
            return
        path = Path(spec)
        if not path.is_dir():
            raise DataError(f"{spec!r} is neither a dataset ({', '.join(DATASETS)}) nor "
                            "a folder" + (" (it is a file)" if path.exists() else ""))
        self.root, self.stored = path, str(path.resolve())
        if any(path.glob("*-idx[13]-ubyte*")):
            self.kind = "fashion-mnist" if "fashion" in str(path.resolve()).lower() else "mnist"
            self.classes = class_names(self.kind)
            self.report(f"{spec}: IDX files, read as {self.kind} (by the folder's name) with classes "
                        f"{', '.join(self.classes[:3])}, ...")
        elif any(path.glob("*_batch*.bin")):
            self.kind, self.classes = "cifar10", class_names("cifar10")
        else:
            self.kind = "folder"

    def describe(self) -> str:
        """The spec (readable()), and what the bundled set is."""
        if self.spec == DEFAULT:
            return f"{self.spec} (the bundled subset of Fashion-MNIST)"
        return readable(self.spec)

    def load(self, split: str, input_shape: Sequence[int] | None = None, resize: str = "stretch"
             ) -> tuple[np.ndarray, np.ndarray, list[str], str]:
        """(x, y, class names, what the images are: the split's name, "training", "held-out" or
        "all"). An image folder needs `input_shape` (C, H, W): its images are converted to it by
        the `resize` rule (cnnlab.data.folder.RESIZE)."""
        if self.kind != "folder":
            if split not in ("train", "test"):
                raise DataError(f"{self.spec} has the splits train and test, not {split!r}")
            x, y = load(self.kind, split, root=self.root)
            return x, y, list(self.classes), split
        root, what, layout = self.root, split, (self.root / "train").is_dir()
        if split == "all" and layout:
            raise DataError(f"{self.root}: split 'all' is for an image folder without train/ and "
                            "test/ subfolders; give --split train or test")
        if layout:  # root/train/<class>/..., root/test/<class>/...
            names = {"train": ("train",), "val": VALIDATION}.get(split, (split, "test", *VALIDATION))
            root = next((self.root / n for n in names if (self.root / n).is_dir()), None)
            if root is None:
                raise DataError(f"{self.root}: no {split}/ folder beside train/")
        key = root, tuple(input_shape), resize
        if key not in self._decoded:
            self._decoded[key] = load_folder(root, input_shape, report=self.report, resize=resize,
                                             lazy=self.lazy)
        x, y, classes = self._decoded[key]
        if layout and split != "train":
            train_classes = [p.name for p in class_folders(self.root / "train")]
            y, classes = remap_labels(y, classes, train_classes, root), train_classes
        elif not layout and self.holdout and split != "all":  # one in 10 of each class held out
            rank = np.arange(len(y)) - np.searchsorted(y, y)  # files come grouped by class
            keep = (rank % 10 == 9) == (split != "train")
            x, y, what = take(x, keep), y[keep], ("training" if split == "train" else "held-out")
            if len(y) == 0:
                raise DataError(f"{self.root}: too few images to hold out one in ten for testing; "
                                "give it train/ and test/ subfolders")
        elif not layout:
            what = "all"
        return x, y, classes, what

    def has_own_validation(self) -> bool:
        """An image folder with train/ and a val/ (or validation/) folder beside it."""
        return self.kind == "folder" and (self.root / "train").is_dir() and any(
            (self.root / name).is_dir() for name in VALIDATION)

    def load_for(self, model, split: str, label) -> tuple[np.ndarray, np.ndarray, list[str], str]:
        """load() for a trained model (anything with input_shape, out_shape and class_names):
        (x, y, the model's class names, what), with an image folder's labels mapped to the model's
        classes by name. DataError naming `label` (the model file) when the images' shape or the
        number of classes does not match the model."""
        rule = model.preprocess.resize if model.preprocess is not None else "stretch"
        x, y, names, what = self.load(split, model.input_shape, rule)
        if x.shape[1:] != model.input_shape:
            raise DataError(f"{label} takes {volume(model.input_shape)} inputs (H×W×D); "
                            f"{self.spec} has {volume(x.shape[1:])} images")
        classes = model.class_names or names
        if self.kind == "folder" and model.class_names:
            y = remap_labels(y, names, model.class_names, self.spec)
        if len(classes) != model.out_shape[-1] or y.max() >= len(classes):
            raise DataError(f"{label} has {model.out_shape[-1]} classes; {self.spec} has labels up "
                            f"to {y.max()}")
        return x, y, classes, what


def remap_labels(y: np.ndarray, names: list[str], target: list[str], where) -> np.ndarray:
    """Labels by class name: y indexes `names` (folder names), the result indexes `target`.
    Names match ignoring case and punctuation: a folder T-shirt_top is the class T-shirt/top.
    DataError, naming `where`, when a name is not among `target`."""
    def key(name: str) -> str:
        return "".join(ch for ch in name.lower() if ch.isalnum())

    index = {key(n): i for i, n in enumerate(target)}
    if missing := [n for n in names if key(n) not in index]:
        raise DataError(f"{where}: class folder(s) {', '.join(missing[:5])} are not among the "
                        f"model's classes ({', '.join(target[:10])})")
    return np.array([index[key(n)] for n in names], np.int64)[y]


def default_data(report: Report) -> str:
    """The dataset to use when none is given: the full Fashion-MNIST when installed, else the
    bundled subset; `report` is told which, and where the full set comes from."""
    if is_available("fashion-mnist"):
        files = locate("fashion-mnist", "train")
        report(f"data: Fashion-MNIST, the full set, from {files[0].parent}")
        return "fashion-mnist"
    report(f"data: {DEFAULT}, the bundled subset of Fashion-MNIST (10,000 training and "
           "2,000 test images); for the full set: sudo apt-get install dataset-fashion-mnist")
    return DEFAULT
