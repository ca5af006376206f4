"""Named datasets and where to find them.

`load(name, split)` returns uint8 images (N, C, H, W) and int64 labels (N,). The files are
looked for, in order: the explicit `root`, `$CNNLAB_DATA/<name>` (or `$CNNLAB_DATA` itself),
`/usr/share/datasets/<name>` (Debian's dataset-fashion-mnist installs there), and the cache
`~/.cache/cnnlab/<name>`. "fashion-mnist-mini" is bundled inside the package: it always works,
offline, on a fresh machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.core import DataError
from cnnlab.data.cifar import load_cifar_batches
from cnnlab.data.idx import load_idx_pair

BUNDLED = Path(__file__).parent / "bundled"


@dataclass(frozen=True)
class Dataset:
    name: str
    classes: tuple[str, ...]
    files: dict[str, tuple[str, ...]]  # split → the files that must be present
    how_to_get: str
    suffixes: tuple[str, ...] = ("", ".gz", ".xz")  # the compressions its reader understands


FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

DATASETS = {
    "fashion-mnist": Dataset(
        "fashion-mnist", FASHION, _IDX,
        "On Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist. Online: python -c "
        "'import cnnlab; cnnlab.data.download()' (SHA-256 verified, into ~/.cache/cnnlab). Or put "
        "the four IDX files (github.com/zalandoresearch/fashion-mnist) in a folder and pass it as "
        "root/--data.",
    ),
    "mnist": Dataset(
        "mnist", tuple(str(d) for d in range(10)), _IDX,
        "Put the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) in a folder and pass "
        "it as root/--data, or set CNNLAB_DATA.",
    ),
    "fashion-mnist-mini": Dataset(
        "fashion-mnist-mini", FASHION, _IDX, "It ships inside the cnnlab package."
    ),
    "cifar10": Dataset(
        "cifar10",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
        "Download the CIFAR-10 *binary version* (cifar-10-binary.tar.gz, not the python "
        "pickles), extract it and pass the folder holding data_batch_1.bin ... as root/--data.",
        suffixes=("",),
    ),
}

#: the bundled default: a stratified subset of Fashion-MNIST (10,000 train, 2,000 test images)
DEFAULT = "fashion-mnist-mini"


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def class_names(name: str) -> list[str]:
    return list(_dataset(name).classes)


def candidates(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The folders `load` tries, in order."""
    if name == "fashion-mnist-mini":
        return [BUNDLED]
    if root is not None:
        return [Path(root)]
    places = []
    if env := os.environ.get("CNNLAB_DATA"):
        places += [Path(env) / name, Path(env)]
    places.append(Path("/usr/share/datasets") / name)
    places.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cnnlab" / name)
    return places


def _files_in(folder: Path, names: tuple[str, ...], suffixes: tuple[str, ...]) -> list[Path] | None:
    """The files, each as found raw or compressed (`suffixes`); None when one is missing."""
    found = []
    for stem in names:
        match = next((folder / (stem + ext) for ext in suffixes
                      if (folder / (stem + ext)).is_file()), None)
        if match is None:
            return None
        found.append(match)
    return found


def locate(name: str, split: str = "train", root: str | os.PathLike | None = None) -> list[Path]:
    """The files of `split`, from the first folder that has them all; DataError saying where
    it looked and how to get the data otherwise."""
    dataset = _dataset(name)
    if split not in dataset.files:
        raise DataError(f"{name}: unknown split {split!r}; expected one of {', '.join(dataset.files)}")
    places = candidates(name, root)
    for folder in places:
        if (files := _files_in(folder, dataset.files[split], dataset.suffixes)) is not None:
            return files
    tried = "\n".join(f"  {p}" for p in places)
    raise DataError(
        f"{name} ({split}): files {', '.join(dataset.files[split])} not found. Looked in:\n"
        f"{tried}\n{dataset.how_to_get}"
    )


def is_available(name: str, root: str | os.PathLike | None = None) -> bool:
    try:
        locate(name, "train", root)
        locate(name, "test", root)
    except DataError:
        return False
    return True


def load(name: str = DEFAULT, split: str = "train", root: str | os.PathLike | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, C, H, W) and int64 labels (N,) of a named dataset's split."""
    files = locate(name, split, root)
    if name == "cifar10":
        return load_cifar_batches(files)
    return load_idx_pair(*files)
