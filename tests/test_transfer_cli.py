"""Transfer learning and features from the command line, end to end on the tiny image folder
tests/fixtures/shapes (3 classes): `cnnlab train --model FILE|resnet18 --freeze body|N
--body-lr-scale S`, a resumed transfer run bit for bit, and `cnnlab features --out --neighbours`.
Each command runs in this process (cnnlab.cli.main)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import io
from cnnlab.cli import main
from cnnlab.data.folder import load_image
from tests.test_viz import cnnlab

SHAPES = Path(__file__).with_name("fixtures") / "shapes"
CLASSES = ["hstripes", "square", "vstripes"]


def tensors(path: Path) -> dict[str, np.ndarray]:
    return io.read_file(path)[0]


def differing(a: dict, b: dict) -> set[str]:
    """The tensors of a and b that are not the same bits (or are in one only)."""
    return {k for k in {*a, *b} if k not in a or k not in b or a[k].shape != b[k].shape
            or a[k].tobytes() != b[k].tobytes()}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A model trained by cnnlab on 2 of the 3 classes (with BatchNorm and Dropout):
    fmnist-cnn-bn on 16×16 RGB images."""
    work = tmp_path_factory.mktemp("transfer")
    for name in ("hstripes", "vstripes"):
        shutil.copytree(SHAPES / name, work / "two" / name)
    status = main(["train", "--model", "fmnist-cnn-bn", "--data", str(work / "two"), "--input",
                   "3x16x16", "--epochs", "2", "--out", str(work / "base"), "-q"])
    assert status == 0
    return work / "base" / "model.safetensors"


def train(capsys, base: Path, out: Path, *flags) -> str:
    status, _, err = cnnlab(capsys, "train", "--model", base, "--data", SHAPES, "--epochs", "2",
                            "--out", out, "-q", *flags)
    assert status == 0, err
    return err


def test_freeze_body_replaces_the_head_and_trains_only_it(base, tmp_path, capsys):
    err = train(capsys, base, tmp_path / "run", "--freeze", "body")
    assert ("new head dense_2: Dense(3) for hstripes, square, vstripes (was 2 classes: hstripes, "
            "vstripes), initialised afresh from --seed 0 (init=zeros)") in err
    assert ("frozen: conv2d_1 … dropout_2 (17 layers, 618,272 parameters; their 4 BatchNorm "
            "layers use their running statistics); training 771 parameters") in err
    before, after = tensors(base), tensors(tmp_path / "run" / "model.safetensors")
    # every weight and running statistic of the body bit for bit; the head new and trained
    assert differing(before, after) == {"param.dense_2.weight", "param.dense_2.bias"}
    assert after["param.dense_2.weight"].shape == (3, 256) and after["param.dense_2.weight"].any()
    model = cl.load(tmp_path / "run" / "model.safetensors")
    assert model.class_names == CLASSES
    config = (tmp_path / "run" / "config.toml").read_text()
    assert f'model = "{base.resolve()}"' in config and 'freeze = "body"' in config


def test_freeze_n_freezes_the_first_n_layers(base, tmp_path, capsys):
    err = train(capsys, base, tmp_path / "run", "--freeze", "5")
    assert "frozen: conv2d_1 … conv2d_2 (5 layers, 19,360 parameters; their 1 BatchNorm" in err
    changed = differing(tensors(base), tensors(tmp_path / "run" / "model.safetensors"))
    assert not {k for k in changed if "conv2d_1" in k or "conv2d_2" in k or "batchnorm2d_1" in k}
    assert {"param.batchnorm2d_2.weight", "buffer.batchnorm2d_2.running_mean",
            "param.conv2d_3.weight", "param.dense_1.weight"} <= changed


def test_body_lr_scale_zero_leaves_the_body_weights(base, tmp_path, capsys):
    err = train(capsys, base, tmp_path / "run", "--body-lr-scale", "0")
    assert "body (conv2d_1 … batchnorm1d_1) at lr × 0" in err
    assert "groups=[body: 12 parameters, lr×0]" in err
    changed = differing(tensors(base), tensors(tmp_path / "run" / "model.safetensors"))
    # the body is not frozen: its BatchNorm layers learn the new data's statistics
    assert {k for k in changed if k.startswith("param.")} == {"param.dense_2.weight",
                                                              "param.dense_2.bias"}
    assert "buffer.batchnorm2d_1.running_mean" in changed


def test_a_resumed_transfer_run_ends_bit_for_bit_as_the_whole_run(base, tmp_path, capsys):
    flags = ("--freeze", "2", "--body-lr-scale", "0.1", "--schedule", "constant")
    train(capsys, base, tmp_path / "whole", *flags)
    status, _, err = cnnlab(capsys, "train", "--model", base, "--data", SHAPES, "--epochs", "1",
                            "--out", tmp_path / "part", "-q", *flags)
    assert status == 0, err
    status, _, err = cnnlab(capsys, "train", "--resume", tmp_path / "part", "--epochs", "2", "-q")
    assert status == 0, err
    assert "resuming" in err and "frozen: conv2d_1 … batchnorm2d_1" in err
    whole, part = (tensors(tmp_path / name / "model.safetensors") for name in ("whole", "part"))
    assert differing(whole, part) == set()
    status, _, err = cnnlab(capsys, "train", "--resume", tmp_path / "part", "--epochs", "3",
                            "--freeze", "body")
    assert status == 2 and "--freeze body contradicts the run being resumed (2)" in err


@pytest.mark.parametrize("flags, status, message", [
    (("--freeze", "body", "--body-lr-scale", "0.1"), 2,
     "--body-lr-scale is for a body that trains; --freeze body freezes it"),
    (("--freeze", "30"), 2, "--freeze 30: the model has 18 layers"),
    (("--freeze", "18"), 2, "--freeze 18 leaves nothing to train: the head dense_2 is layer 18 of 18"),
    (("--freeze", "some"), 2, "argument --freeze: expected body or a number of layers ≥ 0, got 'some'"),
    (("--input", "1x28x28"), 2, "which takes 3x16x16 (C×H×W); leave out --input"),
])
def test_transfer_flags_refuse_what_cannot_work(base, tmp_path, capsys, flags, status, message):
    code, _, err = cnnlab(capsys, "train", "--model", base, "--data", SHAPES, "--out",
                          tmp_path / "run", *flags)
    assert code == status and "Traceback" not in err
    assert message in err.strip().splitlines()[-1] and "error:" in err.strip().splitlines()[-1]


def test_model_must_be_a_zoo_name_or_a_file(tmp_path, capsys):
    code, _, err = cnnlab(capsys, "train", "--model", "resnet99", "--data", SHAPES)
    assert code == 2 and "argument --model: expected a zoo model (alexnet" in err


def test_resnet18_from_the_zoo_freeze_body(tmp_path, capsys):
    """The issue's command without --weights: random ImageNet-style weights, the body frozen."""
    status, _, err = cnnlab(capsys, "train", "--model", "resnet18", "--data", SHAPES, "--input",
                            "3x32x32", "--freeze", "body", "--epochs", "1", "--out",
                            tmp_path / "run", "-q")
    assert status == 0, err
    assert "frozen: conv2d_1 … globalavgpool2d_1 (21 layers" in err and "20 BatchNorm" in err
    start = cl.zoo.get("resnet18", num_classes=3, input_shape=(3, 32, 32), seed=0)
    changed = differing(io.model_tensors(start), tensors(tmp_path / "run" / "model.safetensors"))
    assert changed == {"param.dense_1.weight", "param.dense_1.bias"}


# ---------------------------------------------------------------------------- features
def test_features_writes_an_npz_without_pickle_and_a_neighbours_page(base, tmp_path, capsys):
    odd = tmp_path / 'a<b>&"c".png'  # a name that must be escaped in the page
    shutil.copy(SHAPES / "square" / "03.png", odd)
    queries = [SHAPES / "hstripes" / "00.png", odd, SHAPES / "square" / "05.png"]
    status, out, err = cnnlab(capsys, "features", base, *queries, "--layer", "relu_3", "--out",
                              tmp_path / "f.npz", "--neighbours", SHAPES, "--top", "3", "--page",
                              tmp_path / "nn.html")
    assert status == 0, err
    assert out == "" and "features of relu_3 (4×4×128) for 3 images" in err
    assert "the 3 nearest of 36 images (cosine distance on relu_3) for 3 queries" in err
    with np.load(tmp_path / "f.npz", allow_pickle=False) as saved:
        assert sorted(saved.files) == ["features", "files", "layer", "model"]
        model = cl.load(base)
        pixels = np.stack([load_image(q, model.input_shape) for q in queries])
        assert np.array_equal(saved["features"], cl.features(model, pixels, layer="relu_3"))
        assert saved["files"].tolist() == [str(q) for q in queries] and str(saved["layer"]) == "relu_3"
    page = (tmp_path / "nn.html").read_text(encoding="utf-8")
    assert page.count("<section>") == 3 and page.count('src="data:image/png;base64,') == 3 * 4
    assert "a&lt;b&gt;&amp;&quot;c&quot;.png" in page and 'a<b>&"c"' not in page
    first = page.split("<section>")[1]
    assert "hstripes/00.png" not in first.split("</figure>", 1)[1]  # not its own neighbour
    assert "cosine distance 1 − a·b/(‖a‖·‖b‖)" in page


def test_features_folders_as_images_and_unreadable_files(base, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    status, _, err = cnnlab(capsys, "features", base, SHAPES / "square", tmp_path / "bad.png",
                            "--out", tmp_path / "f.npz")
    assert status == 1 and "bad.png: not an image file cnnlab reads" in err
    with np.load(tmp_path / "f.npz") as saved:  # the default layer: the one before the head
        assert saved["features"].shape == (12, 256) and str(saved["layer"]) == "dropout_2"


@pytest.mark.parametrize("flags, message", [
    ((), "say what to write: --out FILE.npz (the features), --neighbours FOLDER"),
    (("--out", "f.npz", "--layer", "conv9"), "--layer: features: no layer named 'conv9'; the layers "
                                             "are conv2d_1, batchnorm2d_1"),
])
def test_features_usage_errors(base, capsys, flags, message):
    status, _, err = cnnlab(capsys, "features", base, SHAPES / "square" / "00.png", *flags)
    assert status == 2 and message in err, err
