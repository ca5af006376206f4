"""Builds the Fashion-MNIST subset shipped inside the package (src/cnnlab/data/bundled/).

A stratified sample with a fixed seed: 1,000 training images per class from the official
training set and 200 test images per class from the official test set, xz-compressed IDX
(about 4.5 MB). Run from the repository root with Debian's dataset-fashion-mnist installed:
    python scripts/make_bundled_subset.py
"""

from pathlib import Path

import numpy as np

from cnnlab.data.idx import load_idx_pair, write_idx

SOURCE = Path("/usr/share/datasets/fashion-mnist")
TARGET = Path(__file__).resolve().parents[1] / "src/cnnlab/data/bundled"


def stratified(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def main() -> None:
    rng = np.random.default_rng(0)
    for split, prefix, per_class in (("train", "train", 1000), ("test", "t10k", 200)):
        x, y = load_idx_pair(SOURCE / f"{prefix}-images-idx3-ubyte.gz",
                             SOURCE / f"{prefix}-labels-idx1-ubyte.gz")
        keep = stratified(y, per_class, rng)
        write_idx(TARGET / f"{prefix}-images-idx3-ubyte.xz", x[keep, 0])
        write_idx(TARGET / f"{prefix}-labels-idx1-ubyte.xz", y[keep].astype(np.uint8))
        print(f"{split}: {len(keep)} images")


if __name__ == "__main__":
    main()
