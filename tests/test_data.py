"""Dataset readers on real files (Debian's Fashion-MNIST, the bundled subset) and on files the
tests write (IDX, CIFAR-10 binary records), corrupt inputs, dataset lookup, the Loader,
preprocessing and augmentation."""

from __future__ import annotations

import gzip
import lzma
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.data import datasets, transforms
from cnnlab.data.cifar import RECORD, read_cifar_batch
from cnnlab.data.idx import load_idx_pair, read_idx, write_idx
from cnnlab.data.loader import Loader, Preprocess

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


@pytest.fixture(scope="module")
def debian() -> Path:
    """Debian's dataset-fashion-mnist; .ci/run installs it, so CI fails without it."""
    if not (DEBIAN / f"{IMAGES}.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{DEBIAN} is missing: CI must install dataset-fashion-mnist")
        pytest.skip(f"{DEBIAN} not found (apt-get install dataset-fashion-mnist)")
    return DEBIAN


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No $CNNLAB_DATA and an empty cache, whatever the machine has."""
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))


def write_pair(folder: Path, x: np.ndarray, y: np.ndarray, split: str = "train", ext: str = "") -> None:
    stem = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}[split]
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / (stem[0] + ext), x)
    write_idx(folder / (stem[1] + ext), y)


def tiny(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


# ---------------------------------------------------------------- real files
def test_debian_fashion_mnist(debian, no_env):
    x, y = cl.data.load("fashion-mnist", "train")  # found by the lookup, not by root
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.uint8
    assert y.shape == (60000,) and y.dtype == np.int64
    assert np.array_equal(np.bincount(y), np.full(10, 6000))
    assert 60 < x.mean() < 90 and x.max() == 255 and x.min() == 0  # real images, not noise
    xt, yt = cl.data.load("fashion-mnist", "test", root=debian)
    assert xt.shape == (10000, 1, 28, 28) and np.array_equal(np.bincount(yt), np.full(10, 1000))
    # the first test labels, as published: ankle boot, pullover, trouser, trouser, shirt
    assert yt[:5].tolist() == [9, 2, 1, 1, 6]
    # the bundled test subset is real: every image (with its label) is one of Debian's
    xb, yb = cl.data.load(split="test")
    real = {img.tobytes() + bytes([lab]) for img, lab in zip(xt, yt, strict=True)}
    assert all(img.tobytes() + bytes([lab]) in real for img, lab in zip(xb, yb, strict=True))


def test_bundled_subset_is_stratified():
    for split, n in (("train", 10000), ("test", 2000)):
        x, y = cl.data.load(split=split)
        assert x.shape == (n, 1, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
        assert np.array_equal(np.bincount(y, minlength=10), np.full(10, n // 10))
        assert len({img.tobytes() for img in x[:500]}) == 500  # distinct images
    assert cl.data.load(cl.data.DEFAULT)[0].shape[0] == 10000
    assert cl.data.class_names(cl.data.DEFAULT)[9] == "Ankle boot"
    assert cl.data.is_available(cl.data.DEFAULT)
    size = sum(p.stat().st_size for p in datasets.BUNDLED.iterdir())
    assert size < 5 << 20


# --------------------------------------------------------------- IDX writing
@pytest.mark.parametrize("ext", ["", ".gz", ".xz"])
def test_idx_round_trip(tmp_path, ext):
    x, y = tiny()
    write_idx(tmp_path / f"images{ext}", x)
    write_idx(tmp_path / f"labels{ext}", y)
    raw = (tmp_path / f"images{ext}").read_bytes()
    assert raw[:2] == {"": b"\x00\x00", ".gz": b"\x1f\x8b", ".xz": b"\xfd7"}[ext]
    back = read_idx(tmp_path / f"images{ext}")
    assert back.dtype == np.uint8 and np.array_equal(back, x)
    assert np.array_equal(read_idx(tmp_path / f"labels{ext}", expect_ndim=1), y)
    images, labels = load_idx_pair(tmp_path / f"images{ext}", tmp_path / f"labels{ext}")
    assert np.array_equal(images, x[:, None]) and np.array_equal(labels, y) and labels.dtype == np.int64


def test_idx_reads_other_value_types(tmp_path):
    values = np.arange(-6, 6, dtype=">i4").reshape(3, 4)
    header = bytes([0, 0, 0x0C, 2]) + np.array([3, 4], ">u4").tobytes()
    (tmp_path / "ints").write_bytes(header + values.tobytes())
    back = read_idx(tmp_path / "ints")
    assert back.dtype == np.int32 and back.dtype.isnative and np.array_equal(back, values)


def test_write_idx_only_writes_uint8(tmp_path):
    with pytest.raises(ValueError, match="only uint8"):
        write_idx(tmp_path / "x", np.zeros((2, 2), np.float32))


# ------------------------------------------------------------ IDX corruption
def _header(*shape: int, kind: int = 0x08) -> bytes:
    return bytes([0, 0, kind, len(shape)]) + np.array(shape, ">u4").tobytes()


CORRUPT = {
    "empty file": (b"", "not an IDX file .*an empty file"),
    "bad magic": (b"\x08\x03\x00\x00" + bytes(100), "not an IDX file .*found 08 03 00 00"),
    "unknown value type": (_header(2, kind=0x07) + bytes(2), "unknown IDX value type 0x07"),
    "truncated header": (_header(2, 28, 28)[:10], r"truncated IDX header \(10 bytes, need 16\)"),
    "truncated data": (_header(2, 28, 28) + bytes(1000), "truncated: header says shape \\(2, 28, 28\\)"),
    "trailing bytes": (_header(2, 28, 28) + bytes(2 * 784 + 3), "has trailing bytes"),
    "wrong rank": (_header(6) + bytes(6), "IDX file has 1 dimensions, expected 3"),
    "absurd dimensions": (_header(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF) + bytes(64), "too large to be real"),
}


@pytest.mark.parametrize("case", CORRUPT)
def test_corrupt_idx_raises_data_error_naming_the_file(tmp_path, case):
    data, message = CORRUPT[case]
    path = tmp_path / f"{case.replace(' ', '-')}-idx3-ubyte"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(cl.DataError, match=message) as error:
            read_idx(path, expect_ndim=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(error.value)
    assert peak < 1 << 20  # nothing the size of the claimed data was allocated


def test_idx_claiming_just_under_the_limit_is_not_allocated(tmp_path):
    # 1.5 GiB claimed, 40 bytes present: refused as truncated, before any allocation
    path = tmp_path / "big"
    path.write_bytes(_header(3 << 9, 1 << 10, 1 << 10) + bytes(24))
    tracemalloc.start()
    try:
        with pytest.raises(cl.DataError, match=f"{path}: truncated"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("kind", ["gzip", "xz"])
def test_corrupt_or_truncated_compressed_idx(tmp_path, kind):
    x, _ = tiny(50)
    ext, compress = (".gz", gzip.compress) if kind == "gzip" else (".xz", lzma.compress)
    good = compress(_header(*x.shape) + x.tobytes())
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(cl.DataError, match=f"{cut}: corrupt or truncated {kind} data"):
        read_idx(cut)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    bad = tmp_path / f"flipped{ext}"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(cl.DataError, match=f"{bad}: corrupt or truncated {kind} data"):
        read_idx(bad)
    # a compressed empty file is an empty IDX file
    empty = tmp_path / f"empty{ext}"
    empty.write_bytes(compress(b""))
    with pytest.raises(cl.DataError, match=f"{empty}: not an IDX file"):
        read_idx(empty)


def test_idx_pair_counts_must_agree(tmp_path):
    x, y = tiny(6)
    write_idx(tmp_path / "images", x)
    write_idx(tmp_path / "labels", y[:5])
    with pytest.raises(cl.DataError, match=f"{tmp_path / 'images'}: 6 images but labels has 5 labels"):
        load_idx_pair(tmp_path / "images", tmp_path / "labels")


def test_missing_idx_file(tmp_path):
    with pytest.raises(cl.DataError, match=f"{tmp_path / 'nothing'}: cannot read"):
        read_idx(tmp_path / "nothing")


# ------------------------------------------------------------------ CIFAR-10
def cifar_records(n: int, seed: int = 0, labels=None) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n) if labels is None else np.asarray(labels)
    raw = b"".join(bytes([int(label)]) + img.tobytes() for img, label in zip(x, y, strict=True))
    return raw, x, y


def test_cifar_records_read_back_exactly(tmp_path):
    raw, x, y = cifar_records(5)
    assert len(raw) == 5 * RECORD == 5 * 3073
    (tmp_path / "data_batch_1.bin").write_bytes(raw)
    images, labels = read_cifar_batch(tmp_path / "data_batch_1.bin")
    assert images.shape == (5, 3, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(images, x) and labels.dtype == np.int64 and np.array_equal(labels, y)
    # R, G, B planes in that order: the first pixel bytes after the label are the red plane
    assert np.array_equal(images[0, 0].ravel(), np.frombuffer(raw[1:1025], np.uint8))


def test_cifar_dataset_concatenates_the_batches(tmp_path, no_env):
    parts = [cifar_records(2 + i, seed=i) for i in range(6)]
    for i, (raw, _, _) in enumerate(parts[:5], 1):
        (tmp_path / f"data_batch_{i}.bin").write_bytes(raw)
    (tmp_path / "test_batch.bin").write_bytes(parts[5][0])
    x, y = cl.data.load("cifar10", "train", root=tmp_path)
    assert x.shape == (2 + 3 + 4 + 5 + 6, 3, 32, 32)
    assert np.array_equal(x, np.concatenate([p[1] for p in parts[:5]]))
    assert np.array_equal(y, np.concatenate([p[2] for p in parts[:5]]))
    xt, yt = cl.data.load("cifar10", "test", root=tmp_path)
    assert np.array_equal(xt, parts[5][1]) and np.array_equal(yt, parts[5][2])
    assert cl.data.class_names("cifar10")[0] == "airplane"


def test_cifar_truncated_empty_and_bad_labels(tmp_path):
    raw, _, _ = cifar_records(3)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(raw[:-10])
    with pytest.raises(cl.DataError, match=f"{cut}: 9,209 bytes is not a whole number of CIFAR-10 records"):
        read_cifar_batch(cut)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(cl.DataError, match=f"{empty}: 0 bytes"):
        read_cifar_batch(empty)
    bad = tmp_path / "cifar100.bin"
    bad.write_bytes(cifar_records(3, labels=[1, 57, 2])[0])
    with pytest.raises(cl.DataError, match=f"{bad}: label 57 is not a CIFAR-10 class"):
        read_cifar_batch(bad)
    with pytest.raises(cl.DataError, match="cannot read"):
        read_cifar_batch(tmp_path / "missing.bin")


# -------------------------------------------------------------------- lookup
def test_lookup_order_root_then_env_then_debian(tmp_path, monkeypatch, no_env):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    write_pair(explicit, *tiny(3, seed=1))
    write_pair(env / "fashion-mnist", *tiny(4, seed=2), ext=".gz")
    write_pair(env, *tiny(5, seed=3))
    monkeypatch.setenv("CNNLAB_DATA", str(env))
    assert datasets.candidates("fashion-mnist", explicit) == [explicit]
    assert datasets.candidates("fashion-mnist")[:3] == [
        env / "fashion-mnist", env, Path("/usr/share/datasets/fashion-mnist")]
    assert len(cl.data.load("fashion-mnist", root=explicit)[0]) == 3  # the explicit root wins
    assert len(cl.data.load("fashion-mnist")[0]) == 4  # then $CNNLAB_DATA/<name>
    assert cl.data.locate("fashion-mnist")[0] == env / "fashion-mnist" / f"{IMAGES}.gz"
    assert len(cl.data.load("mnist")[0]) == 5  # then $CNNLAB_DATA itself
    # the bundled set ignores all of it
    assert len(cl.data.load(cl.data.DEFAULT, root=explicit)[0]) == 10000


def test_lookup_falls_back_to_debian_then_the_cache(tmp_path, monkeypatch, no_env, debian):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "nothing-here"))
    assert cl.data.locate("fashion-mnist", "test")[0].parent == debian
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    write_pair(cache / "cnnlab" / "mnist", *tiny(2), split="test", ext=".xz")
    if not Path("/usr/share/datasets/mnist").exists():
        assert len(cl.data.load("mnist", "test")[0]) == 2


def test_missing_dataset_error_lists_where_it_looked(tmp_path, monkeypatch, no_env):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    with pytest.raises(cl.DataError) as error:
        cl.data.load("cifar10", "test")
    message = str(error.value)
    assert "cifar10 (test): files test_batch.bin not found. Looked in:" in message
    for place in (tmp_path / "env" / "cifar10", tmp_path / "env", "/usr/share/datasets/cifar10",
                  tmp_path / "empty-cache" / "cnnlab" / "cifar10"):
        assert f"  {place}\n" in message
    assert "binary version" in message  # and how to get it
    with pytest.raises(cl.DataError, match=f"Looked in:\n  {tmp_path}\nOn Debian/Ubuntu"):
        cl.data.load("fashion-mnist", root=tmp_path)
    assert not cl.data.is_available("fashion-mnist", root=tmp_path)


def test_half_a_dataset_in_a_folder_is_not_found(tmp_path, no_env):
    x, _ = tiny()
    write_idx(tmp_path / IMAGES, x)  # the labels are missing
    with pytest.raises(cl.DataError, match="not found"):
        cl.data.load("fashion-mnist", root=tmp_path)


def test_unknown_dataset_or_split():
    with pytest.raises(cl.DataError, match="unknown dataset 'imagenet'; known: fashion-mnist, mnist"):
        cl.data.load("imagenet")
    with pytest.raises(cl.DataError, match="unknown dataset"):
        cl.data.class_names("svhn")
    with pytest.raises(cl.DataError, match="fashion-mnist: unknown split 'val'; expected one of train, test"):
        cl.data.load("fashion-mnist", "val")


# -------------------------------------------------------------------- Loader
def _ids(batches) -> list[np.ndarray]:
    return [yb for _, yb in batches]


def test_loader_gives_every_sample_once_per_epoch_with_a_partial_last_batch():
    x = np.arange(103, dtype=np.float32).reshape(103, 1, 1, 1)
    loader = Loader(x, np.arange(103), 10, shuffle=True, seed=3)
    assert len(loader) == 11
    batches = list(loader.batches(0))
    assert [len(yb) for _, yb in batches] == [10] * 10 + [3]
    seen = np.concatenate([yb for _, yb in batches])
    assert np.array_equal(np.sort(seen), np.arange(103))
    for xb, yb in batches:  # images stay with their labels
        assert np.array_equal(xb.ravel(), yb.astype(np.float32))
    assert not np.array_equal(seen, np.arange(103))  # shuffled


def test_loader_drop_last():
    loader = Loader(np.zeros((103, 1, 2, 2)), np.arange(103), 10, shuffle=True, drop_last=True)
    assert len(loader) == 10
    batches = _ids(loader.batches(4))
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)
    assert len(np.unique(np.concatenate(batches))) == 100


def test_loader_order_depends_on_seed_and_epoch_only():
    x, y = np.zeros((50, 1, 2, 2)), np.arange(50)
    a, b = Loader(x, y, 8, shuffle=True, seed=1), Loader(x, y, 8, shuffle=True, seed=1)
    order = lambda loader, epoch: np.concatenate(_ids(loader.batches(epoch)))  # noqa: E731
    assert np.array_equal(order(a, 0), order(b, 0)) and np.array_equal(order(a, 5), order(b, 5))
    assert not np.array_equal(order(a, 0), order(a, 1))
    assert not np.array_equal(order(a, 0), order(Loader(x, y, 8, shuffle=True, seed=2), 0))
    unshuffled = Loader(x, y, 8)
    assert np.array_equal(order(unshuffled, 3), y) and np.array_equal(np.concatenate(_ids(unshuffled)), y)


def test_loader_batches_from_start_are_the_tail_of_the_epoch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((45, 1, 6, 6)).astype(np.float32)
    augment = transforms.Compose([transforms.RandomCrop(1), transforms.RandomFlip(),
                                  transforms.RandomErasing(p=0.5)])
    loader = Loader(x, np.arange(45), 7, shuffle=True, seed=9, transform=augment)
    full = list(loader.batches(2))
    for start in (0, 1, 4, 6):
        tail = list(loader.batches(2, start))
        assert len(tail) == len(full) - start
        for (xa, ya), (xb, yb) in zip(full[start:], tail, strict=True):
            assert np.array_equal(ya, yb) and np.array_equal(xa, xb)  # augmentation included
    assert list(loader.batches(2, 7)) == []


def test_loader_applies_preprocess_then_transform():
    x = np.full((4, 1, 2, 2), 51, np.uint8)
    calls = []

    def transform(xb, rng):
        calls.append(xb.dtype)
        return xb + 1

    loader = Loader(x, np.zeros(4, np.int64), 4, preprocess=Preprocess([0.0], [1.0]),
                    transform=transform)
    xb, _ = next(iter(loader))
    assert calls == [np.float32] and np.allclose(xb, 51 / 255 + 1)


def test_loader_refuses_bad_input():
    with pytest.raises(cl.DataError, match="empty"):
        Loader(np.zeros((0, 1, 2, 2)), np.zeros(0, int))
    with pytest.raises(cl.DataError, match="x has 3 samples, y has shape \\(2,\\)"):
        Loader(np.zeros((3, 1, 2, 2)), np.zeros(2, int))
    with pytest.raises(cl.DataError, match="labels must be integers"):
        Loader(np.zeros((3, 1, 2, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        Loader(np.zeros((3, 1, 2, 2)), np.zeros(3, int), 0)


# ---------------------------------------------------------------- Preprocess
def test_preprocess_fit_matches_numpy(rng):
    x = rng.integers(0, 256, (20000, 3, 5, 4), dtype=np.uint8)  # more than one 8192 chunk
    x[:, 1] //= 4
    p = Preprocess.fit(x)
    scaled = x.astype(np.float64) / 255
    assert np.allclose(p.mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-6)
    assert np.allclose(p.std, scaled.std(axis=(0, 2, 3)), rtol=1e-5)
    assert p.mean.dtype == np.float32 and p.std.dtype == np.float32
    out = p(x[:50])
    assert out.dtype == np.float32 and out.shape == (50, 3, 5, 4)
    expected = (scaled[:50] - p.mean[None, :, None, None]) / p.std[None, :, None, None]
    assert np.allclose(out, expected, atol=1e-5)
    whole = p(x)
    assert np.allclose(whole.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    assert np.allclose(whole.std(axis=(0, 2, 3)), 1, atol=1e-4)


def test_preprocess_config_round_trip_and_checks():
    x, _ = cl.data.load()
    p = Preprocess.fit(x[:2000])
    assert 0.2 < p.mean[0] < 0.4 and 0.3 < p.std[0] < 0.4  # Fashion-MNIST: 0.286, 0.353
    q = Preprocess(**p.config())
    assert np.array_equal(q.mean, p.mean) and np.array_equal(q.std, p.std) and q.scale == p.scale
    assert np.array_equal(q(x[:10]), p(x[:10]))
    constant = Preprocess.fit(np.zeros((4, 1, 3, 3), np.uint8))
    assert constant.std[0] == 1.0  # no division by zero
    with pytest.raises(cl.DataError, match=r"expected images \(N, 1, ...\) with 1 channel"):
        p(np.zeros((2, 3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="std > 0"):
        Preprocess([0.5], [0.0])
    with pytest.raises(cl.DataError, match="non-empty batch"):
        Preprocess.fit(np.zeros((0, 1, 2, 2), np.uint8))


# ---------------------------------------------------------------- transforms
TRANSFORMS = {
    "crop": transforms.RandomCrop(3),
    "flip": transforms.RandomFlip(0.5),
    "erasing": transforms.RandomErasing(p=0.7),
    "compose": transforms.Compose([transforms.RandomCrop(2), transforms.RandomFlip(),
                                   transforms.RandomErasing()]),
}


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transforms_keep_shape_dtype_and_input_and_follow_the_rng(name, dtype, rng):
    t = TRANSFORMS[name]
    x = rng.standard_normal((16, 3, 10, 9)).astype(dtype)
    original = x.copy()
    a = t(x, np.random.default_rng(5))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert np.array_equal(x, original)  # the input is not modified
    assert a is not x and not np.shares_memory(a, x)
    assert np.array_equal(a, t(x, np.random.default_rng(5)))  # same rng state, same output
    assert not np.array_equal(a, t(x, np.random.default_rng(6)))
    assert not np.array_equal(a, x)
    assert isinstance(t.config(), dict)


def test_flip_mirrors_left_right(rng):
    x = rng.standard_normal((40, 2, 4, 5)).astype(np.float32)
    y = transforms.RandomFlip(0.5)(x, np.random.default_rng(0))
    flipped = np.array([np.array_equal(y[i], x[i, :, :, ::-1]) for i in range(40)])
    kept = np.array([np.array_equal(y[i], x[i]) for i in range(40)])
    assert (flipped | kept).all() and 5 < flipped.sum() < 35
    assert np.array_equal(transforms.RandomFlip(1.0)(x, rng), x[..., ::-1])
    assert np.array_equal(transforms.RandomFlip(0.0)(x, rng), x)


def test_crop_shifts_by_at_most_padding_and_padding_0_is_identity(rng):
    x = rng.standard_normal((30, 1, 8, 8)).astype(np.float32) + 10  # no zeros of its own
    assert np.array_equal(transforms.RandomCrop(0)(x, rng), x)
    y = transforms.RandomCrop(2)(x, np.random.default_rng(1))
    shifts = set()
    for i in range(30):
        # find the shift (dy, dx) that explains sample i: y[r, c] = x[r + dy, c + dx] or 0
        padded = np.pad(x[i, 0], 2)
        match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(y[i, 0], padded[2 + dy : 10 + dy, 2 + dx : 10 + dx])]
        assert len(match) == 1
        shifts.add(match[0])
    assert len(shifts) > 5


def test_erasing_sets_one_rectangle_and_p_0_is_identity(rng):
    x = rng.standard_normal((50, 2, 12, 12)).astype(np.float32) + 10
    assert np.array_equal(transforms.RandomErasing(p=0.0)(x, rng), x)
    y = transforms.RandomErasing(p=1.0, value=0.0)(x, np.random.default_rng(2))
    for i in range(50):
        erased = y[i] == 0
        assert np.array_equal(erased[0], erased[1])  # the same rectangle in every channel
        rows, cols = np.nonzero(erased[0])
        assert rows.size > 0
        box = erased[0][rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all()  # a filled rectangle
        area = box.size / 144
        assert 0.02 * 0.5 <= area <= 0.33 * 1.5  # scale, give or take the rounding
        assert np.array_equal(y[i][~erased], x[i][~erased])


def test_transforms_refuse_bad_arguments():
    with pytest.raises(ValueError, match="padding must be an int ≥ 0"):
        transforms.RandomCrop(-1)
    with pytest.raises(ValueError, match="p must be in \\[0, 1\\]"):
        transforms.RandomFlip(1.5)
    with pytest.raises(ValueError, match="RandomErasing: need"):
        transforms.RandomErasing(scale=(0.5, 0.1))
