"""cnnlab.data.sources without the command: Source on an image folder (the held-out tenth, the
train/ test/ layout, labels matched to a model's classes by name), on an IDX folder, and the notes
it hands to `report` instead of printing."""

from types import SimpleNamespace

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.data.sources import Source, default_data, remap_labels

Image = pytest.importorskip("PIL.Image")


def _folder(root, classes=("cat", "dog"), per_class=12, size=8):
    """Gray PNGs root/<class>/00.png, 01.png, ...; image i of class c is filled with 20·c + i."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(np.full((size, size), 20 * c + i, np.uint8)).save(root / name / f"{i:02}.png")
    return root


def test_an_image_folder_keeps_every_tenth_image_of_each_class_apart(tmp_path):
    notes = []
    source = Source(str(_folder(tmp_path / "pets")), holdout=True, report=notes.append)
    x, y, classes, what = source.load("train", (1, 8, 8))
    xt, yt, test_classes, test_what = source.load("test", (1, 8, 8))
    assert (what, test_what) == ("training", "held-out")
    assert classes == test_classes == ["cat", "dog"] and source.kind == "folder"
    assert x.shape == (22, 1, 8, 8) and x.dtype == np.uint8 and len(y) == 22
    assert yt.tolist() == [0, 1] and xt[:, 0, 0, 0].tolist() == [9, 29]  # the 10th file of each class
    assert sorted(x[:, 0, 0, 0].tolist() + xt[:, 0, 0, 0].tolist()) == sorted(
        list(range(12)) + list(range(20, 32)))
    # decoded once for both splits: one note from the folder reader
    assert notes == [f"{tmp_path / 'pets'}: 24 images in 2 classes; no conversion needed"]
    x, y, _, what = Source(str(tmp_path / "pets"), holdout=False).load("test", (1, 8, 8))
    assert what == "all" and len(y) == 24


def test_train_and_test_subfolders_are_used_as_they_are(tmp_path):
    _folder(tmp_path / "shop" / "train", per_class=3)
    _folder(tmp_path / "shop" / "test", classes=("dog",), per_class=2)  # matched to train/ by name
    source = Source(str(tmp_path / "shop"), holdout=True)
    x, y, classes, what = source.load("train", (1, 8, 8))
    assert (classes, what, y.tolist()) == (["cat", "dog"], "train", [0, 0, 0, 1, 1, 1])
    xt, yt, classes, what = source.load("test", (1, 8, 8))
    assert (classes, what, yt.tolist()) == (["cat", "dog"], "test", [1, 1])
    _folder(tmp_path / "lonely" / "train", per_class=3)
    with pytest.raises(cl.DataError, match="lonely: no test/ folder beside train/"):
        Source(str(tmp_path / "lonely"), holdout=True).load("test", (1, 8, 8))


def test_too_few_images_to_hold_out_a_tenth(tmp_path):
    source = Source(str(_folder(tmp_path / "few", per_class=5)), holdout=True)
    with pytest.raises(cl.DataError, match="too few images to hold out one in ten"):
        source.load("test", (1, 8, 8))


def test_load_for_maps_folder_labels_to_the_model_classes_by_name(tmp_path):
    source = Source(str(_folder(tmp_path / "wear", classes=("T-shirt_top", "trouser"), per_class=2)),
                    holdout=False)
    model = SimpleNamespace(preprocess=None, input_shape=(1, 6, 6), out_shape=(3,),
                            class_names=["Trouser", "Bag", "T-shirt/top"])
    x, y, classes, what = source.load_for(model, "test", "m.safetensors")
    assert x.shape == (4, 1, 6, 6) and what == "all"
    assert classes == model.class_names and y.tolist() == [2, 2, 0, 0]
    assert remap_labels(np.array([1, 0]), ["a", "B_c"], ["bc", "x", "A"], "here").tolist() == [0, 2]
    bags = SimpleNamespace(preprocess=None, input_shape=(1, 6, 6), out_shape=(1,), class_names=["Bag"])
    with pytest.raises(cl.DataError, match="^.*wear: class folder\\(s\\) T-shirt_top, trouser are not "
                                           "among the model's classes \\(Bag\\)$"):
        source.load_for(bags, "test", "m.safetensors")
    unnamed = SimpleNamespace(preprocess=None, input_shape=(1, 6, 6), out_shape=(1,), class_names=None)
    with pytest.raises(cl.DataError, match="^m.safetensors has 1 classes; .*wear has labels up to 1$"):
        source.load_for(unnamed, "test", "m.safetensors")
    small = SimpleNamespace(preprocess=None, input_shape=(1, 8, 8), out_shape=(10,), class_names=None)
    with pytest.raises(cl.DataError, match="^m.safetensors takes 8×8×1 inputs \\(H×W×D\\); "
                                           "fashion-mnist-mini has 28×28×1 images$"):
        Source("fashion-mnist-mini", holdout=False).load_for(small, "test", "m.safetensors")


def test_a_dataset_name_an_idx_folder_and_a_wrong_spec(tmp_path):
    source = Source("fashion-mnist-mini", holdout=True)
    assert source.describe() == "fashion-mnist-mini (the bundled subset of Fashion-MNIST)"
    assert source.stored == "fashion-mnist-mini" and source.classes == cl.data.class_names("fashion-mnist")
    idx = tmp_path / "my-fashion"
    idx.mkdir()
    (idx / "train-images-idx3-ubyte").write_bytes(b"")
    notes = []
    source = Source(str(idx), holdout=True, report=notes.append)
    assert source.kind == "fashion-mnist" and source.stored == str(idx.resolve())
    assert notes == [f"{idx}: IDX files, read as fashion-mnist (by the folder's name) with classes "
                     "T-shirt/top, Trouser, Pullover, ..."]
    with pytest.raises(cl.DataError, match="is neither a dataset .* nor a folder \\(it is a file\\)"):
        Source(str(idx / "train-images-idx3-ubyte"), holdout=True)


def test_default_data_tells_report_which_set(monkeypatch):
    notes = []
    monkeypatch.setattr("cnnlab.data.sources.is_available", lambda name, root=None: False)
    assert default_data(notes.append) == "fashion-mnist-mini" and "bundled subset" in notes[0]


def test_nothing_is_printed_without_report(tmp_path, capsys):
    source = Source(str(_folder(tmp_path / "quiet", per_class=10)), holdout=True)
    source.load("train", (1, 8, 8))
    assert capsys.readouterr() == ("", "")
