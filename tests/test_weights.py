"""Pretrained weights (cnnlab.zoo.weights, cnnlab.io.foreign, `cnnlab convert`, `train --weights`).

The oracle: plain-torch twins of torchvision's and timm's architectures with their state_dict
names (tests/reference_nets.py), random weights and non-trivial BatchNorm statistics, saved with
safetensors.torch; cnnlab's logits on the same input must equal torch's, max|a − b| / max|b| ≤
1e-4 in float32, eval mode. Then what is refused (missing, extra, mis-shaped, non-float, NaN,
wrapped names, a damaged header, a classifier of other classes) as one error naming it all; every
name table against its model; ImageNet's class names; the "center-crop:N" resize rule; and the
command line: convert → predict / evaluate, train --weights.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

import cnnlab as cl
from cnnlab.cli import main
from cnnlab.core import ModelFileError
from cnnlab.data.folder import check_resize, load_image, read_image
from cnnlab.zoo.layouts import layout

Image = pytest.importorskip("PIL.Image")

#: (zoo name, input size): the smallest input each architecture's torchvision twin agrees on
#: (VGG and AlexNet: the size whose maps reach their adaptive pooling at 7×7 and 6×6)
REFERENCES = [("resnet18", 64), ("resnet50", 112), ("se-resnet50", 112), ("googlenet", 64),
              ("alexnet", 224), ("vgg16", 224)]


@pytest.fixture(scope="module")
def nets(torch):
    """tests/reference_nets.py, with torch on one thread meanwhile: on 2 busy cores its own
    threads made a ResNet-50 pass 10× slower."""
    from tests import reference_nets  # imports torch: only once the fixture found it

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield reference_nets
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name, size", REFERENCES, ids=[n for n, _ in REFERENCES])
def test_logits_equal_the_torchvision_or_timm_twins(torch, nets, tmp_path, name, size):
    from safetensors.torch import save_file as save_torch

    torch.manual_seed(0)
    reference = nets.randomize(nets.build(name), torch.randn(4, 3, size, size))
    save_torch(reference.state_dict(), tmp_path / "weights.safetensors")
    model = cl.zoo.get(name, input_shape=(3, size, size), weights=tmp_path / "weights.safetensors")
    x = torch.randn(1 if size > 200 else 2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x).numpy()
    logits = model.forward(x.numpy())
    assert logits.dtype == np.float32
    assert np.abs(logits - expected).max() / np.abs(expected).max() <= 1e-4


# ------------------------------------------------------------------ files made without torch
def state_dict(model: cl.Sequential, name: str, batches: bool = True) -> dict[str, np.ndarray]:
    """`model`'s tensors under the torchvision/timm names of `name` (the table read backwards),
    with PyTorch's num_batches_tracked beside every BatchNorm, as a real state_dict has."""
    table = layout(name)
    ours = {k: p.data for k, p in model.parameters().items()} | model.buffers()
    out = {f: ours[o].reshape(table.file_shape(f, ours[o].shape)) for f, o in table.pairs}
    if batches:
        out |= {f: np.array(7, np.int64) for f in table.skipped if f.endswith("num_batches_tracked")
                and not f.startswith("aux")}
    return out


@pytest.fixture(scope="module")
def resnet18_32():
    """A resnet18 for 32×32 input with random weights and statistics, and its state_dict."""
    model = cl.zoo.resnet18(num_classes=10, input_shape=(3, 32, 32), seed=1)
    rng = np.random.default_rng(2)
    for array in model.buffers().values():
        array[...] = rng.uniform(0.5, 1.5, array.shape)
    return model, state_dict(model, "resnet18")


def tensors(model: cl.Sequential) -> dict[str, np.ndarray]:
    return {k: p.data.copy() for k, p in model.parameters().items()} | {
        k: b.copy() for k, b in model.buffers().items()}


@pytest.mark.parametrize("name", sorted(cl.zoo.LAYOUTS))
def test_every_table_names_each_tensor_of_its_model_once(name):
    table = layout(name)
    size = 64 if name == "alexnet" else 32  # AlexNet's three strided poolings need 64
    model = cl.zoo.get(name, num_classes=7, input_shape=(3, size, size))
    files, ours = [f for f, _ in table.pairs], [o for _, o in table.pairs]
    assert sorted(ours) == sorted(tensors(model)) and len(set(files)) == len(files)
    assert not table.skipped & set(files) and set(table.head) <= set(files)
    assert all(f.endswith(("num_batches_tracked",)) or f.startswith("aux") for f in table.skipped)


@pytest.mark.parametrize("name", ["resnet18", "se-resnet50"])
def test_a_state_dict_loads_back_into_the_same_weights(tmp_path, name):
    source = cl.zoo.get(name, num_classes=5, input_shape=(3, 32, 32), seed=3)
    save_file(state_dict(source, name), tmp_path / "w.safetensors")
    model = cl.zoo.get(name, num_classes=5, input_shape=(3, 32, 32), weights=tmp_path / "w.safetensors")
    loaded, expected = tensors(model), tensors(source)
    assert all(np.array_equal(loaded[k], expected[k]) for k in expected)
    assert model.preprocess.resize == "center-crop:37" and model.class_names is None


def test_missing_extra_and_misshaped_tensors_are_one_error_and_nothing_is_loaded(tmp_path, resnet18_32):
    model, weights = resnet18_32
    weights = dict(weights)
    del weights["layer1.0.bn1.running_var"]
    weights["layer5.0.conv1.weight"] = np.zeros((3, 3), np.float32)
    weights["layer2.0.conv1.weight"] = np.zeros((128, 64, 1, 1), np.float32)
    save_file(weights, tmp_path / "w.safetensors")
    target = cl.zoo.resnet18(num_classes=10, input_shape=(3, 32, 32), seed=9)
    before = tensors(target)
    with pytest.raises(ModelFileError) as caught:
        cl.zoo.load_weights(target, tmp_path / "w.safetensors", "resnet18")
    assert str(caught.value) == (
        f"{tmp_path / 'w.safetensors'}: not resnet18's weights in torchvision's names (102 tensors "
        "checked by name and shape; nothing was loaded): 1 missing: layer1.0.bn1.running_var; "
        "1 unexpected: layer5.0.conv1.weight; 1 of another shape: layer2.0.conv1.weight "
        "(128, 64, 1, 1) (needs (128, 64, 3, 3))")
    after = tensors(target)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_long_lists_are_shortened_and_another_architecture_is_suspected(tmp_path, resnet18_32):
    save_file({"conv1.weight": resnet18_32[1]["conv1.weight"]}, tmp_path / "w.safetensors")
    with pytest.raises(ModelFileError, match=r"101 missing: bn1\.weight, .* … and 95 more\. Most "
                                             r"names differ: are these another architecture's weights\?$"):
        cl.zoo.resnet18(num_classes=10, input_shape=(3, 32, 32), weights=tmp_path / "w.safetensors")


def test_a_wrapped_models_names_get_the_fix(tmp_path, resnet18_32):
    save_file({f"module.{k}": v for k, v in resnet18_32[1].items()}, tmp_path / "w.safetensors")
    with pytest.raises(ModelFileError, match="Every name begins with 'module.'"):
        cl.zoo.resnet18(num_classes=10, input_shape=(3, 32, 32), weights=tmp_path / "w.safetensors")


def test_a_classifier_of_other_classes_is_named_or_left_out_with_head_false(tmp_path, resnet18_32):
    model, weights = resnet18_32
    save_file(weights, tmp_path / "w.safetensors")
    target = cl.zoo.resnet18(num_classes=4, input_shape=(3, 32, 32), seed=5)
    with pytest.raises(cl.zoo.HeadMismatch, match=r"the classifier fc\.weight \(10, 512\) has 10 "
                                                  r"classes, the model 4; build the model with "
                                                  r"num_classes=10, or .* head=False\)") as caught:
        cl.zoo.load_weights(target, tmp_path / "w.safetensors", "resnet18")
    assert (caught.value.file_classes, caught.value.model_classes) == (10, 4)
    head = target.layers[-1].weight.data.copy()
    cl.zoo.load_weights(target, tmp_path / "w.safetensors", "resnet18", head=False)
    assert np.array_equal(target.layers[-1].weight.data, head)
    assert np.array_equal(target.layers[0].weight.data, model.layers[0].weight.data)


def test_vgg_weights_at_another_input_size_say_why(tmp_path):
    source = cl.zoo.vgg11(num_classes=2, input_shape=(3, 32, 32))
    save_file(state_dict(source, "vgg11"), tmp_path / "w.safetensors")
    with pytest.raises(ModelFileError, match=r"classifier\.0\.weight \(4096, 512\) \(needs \(4096, "
                                             r"2048\)\)\. The first Dense's inputs follow from the input "
                                             r"size: these weights fit a 224×224 input"):
        cl.zoo.vgg11(num_classes=2, input_shape=(3, 64, 64), weights=tmp_path / "w.safetensors")


def test_load_weights_refuses_a_model_that_is_not_the_named_one(tmp_path, resnet18_32):
    save_file(resnet18_32[1], tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"the model is not the zoo's resnet18 .* cl\.zoo\.get"):
        cl.zoo.load_weights(cl.zoo.resnet8(), tmp_path / "w.safetensors", "resnet18")
    with pytest.raises(ValueError, match="no pretrained-weight layout for 'lenet5'"):
        cl.zoo.load_weights(cl.zoo.lenet5(), tmp_path / "w.safetensors", "lenet5")
    with pytest.raises(ValueError, match="weights= loads into the built model"):
        cl.zoo.resnet18(build=False, weights=tmp_path / "w.safetensors")


def raw_file(path, entries: dict, length: int | None = None) -> None:
    """A safetensors file written byte by byte: entries {name: (dtype, shape, bytes)}, the header
    length as given (default: the true one)."""
    header, data = {}, b""
    for name, (dtype, shape, blob) in entries.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)


def test_half_precision_and_bfloat16_weights_load_as_float32(tmp_path):
    model = cl.zoo.resnet18(num_classes=3, input_shape=(3, 32, 32))
    weights = state_dict(model, "resnet18", batches=False)
    save_file({k: v.astype(np.float16) for k, v in weights.items()}, tmp_path / "half.safetensors")
    half = cl.zoo.resnet18(num_classes=3, input_shape=(3, 32, 32), weights=tmp_path / "half.safetensors")
    assert np.array_equal(half.layers[0].weight.data, weights["conv1.weight"].astype(np.float16))
    # bfloat16: the top 16 bits of each float32
    raw_file(tmp_path / "bf16.safetensors", {k: ("BF16", v.shape, (v.astype("<f4").view("<u4") >> 16)
                                                 .astype("<u2").tobytes()) for k, v in weights.items()})
    bf16 = cl.zoo.resnet18(num_classes=3, input_shape=(3, 32, 32), weights=tmp_path / "bf16.safetensors")
    truncated = (weights["conv1.weight"].view(np.uint32) & 0xFFFF0000).view(np.float32)
    assert np.array_equal(bf16.layers[0].weight.data, truncated)


@pytest.mark.parametrize("damage, match", [
    ("length", r"not a safetensors file \(header length 1099511627776 is impossible for a \d+-byte "
               r"file\)"),
    ("json", r"not a safetensors file \(the header is not JSON\)"),
    ("offsets", r"tensor 'conv1\.weight' holds 4 bytes; F32 \(64, 3, 7, 7\) needs 37,632\)"),
    ("dtype", r"1 not float: conv1\.weight I32"),
    ("nan", r"tensor bn1\.bias holds 1 non-finite values"),
], ids=["length", "json", "offsets", "dtype", "nan"])
def test_damaged_or_hostile_files_are_refused_naming_the_tensor(tmp_path, resnet18_32, damage, match):
    weights = dict(resnet18_32[1])
    path = tmp_path / "w.safetensors"
    if damage == "nan":
        weights["bn1.bias"] = weights["bn1.bias"].copy()
        weights["bn1.bias"][3] = np.nan
    if damage in ("length", "offsets", "dtype"):
        entries = {k: ("I64" if v.dtype == np.int64 else "F32", v.shape, v.tobytes())
                   for k, v in weights.items()}
        if damage == "offsets":
            entries["conv1.weight"] = ("F32", (64, 3, 7, 7), b"\0" * 4)
        if damage == "dtype":
            entries["conv1.weight"] = ("I32", (64, 3, 7, 7), b"\0" * 4 * 64 * 3 * 49)
        raw_file(path, entries, 1 << 40 if damage == "length" else None)
    elif damage == "json":
        path.write_bytes(struct.pack("<Q", 5) + b"{oops" + b"\0" * 8)
    else:
        save_file(weights, path)
    with pytest.raises(ModelFileError, match=match):
        cl.zoo.resnet18(num_classes=10, input_shape=(3, 32, 32), weights=path)


def test_imagenet_has_1000_distinct_class_names_in_the_classifiers_order():
    names = cl.zoo.imagenet_classes()
    assert len(names) == len(set(names)) == 1000
    assert all(n and n == n.strip() for n in names)
    assert (names[0], names[1], names[134], names[517], names[639], names[999]) == (
        "tench", "goldfish", "crane (bird)", "crane (machine)", "tank suit", "toilet tissue")


def test_the_preprocessing_is_the_published_protocol_for_the_input_size(tmp_path, resnet18_32):
    save_file(resnet18_32[1], tmp_path / "w.safetensors")
    model = cl.zoo.resnet18(num_classes=10, input_shape=(3, 32, 32), weights=tmp_path / "w.safetensors")
    assert model.preprocess.config() == {
        "mean": pytest.approx([0.485, 0.456, 0.406]), "std": pytest.approx([0.229, 0.224, 0.225]),
        "scale": 1 / 255, "channels": "RGB", "resize": "center-crop:37"}
    assert cl.zoo.imagenet_preprocess("resnet50", (3, 224, 224)).resize == "center-crop:256"
    google = cl.zoo.imagenet_preprocess("googlenet", (3, 224, 224))
    assert google.mean.tolist() == google.std.tolist() == [0.5] * 3
    cl.save(model, tmp_path / "m.safetensors")
    assert cl.load(tmp_path / "m.safetensors").preprocess.resize == "center-crop:37"


def test_center_crop_n_scales_the_shorter_side_to_n_then_cuts_the_middle(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (60, 90, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", (3, 32, 32), "center-crop:40")
    expected = Image.fromarray(pixels).resize((60, 40), Image.Resampling.LANCZOS).crop((14, 4, 46, 36))
    assert np.array_equal(x, np.asarray(expected).transpose(2, 0, 1))
    Image.fromarray(pixels[:32, :32]).save(tmp_path / "square.png")  # the model's size: cropped too
    _, note = read_image(tmp_path / "square.png", (3, 32, 32), "center-crop:40")
    assert note.endswith("RGB 32×32 → RGB 32×32, center-crop:40")
    assert check_resize("center-crop:256") == "center-crop:256"
    for bad in ("center-crop:0", "center-crop:", "center-crop:07", "center-crop:1e3", "center-crop:99999"):
        with pytest.raises(ValueError, match="resize must be one of stretch, center-crop, center-crop:N"):
            check_resize(bad)


# ------------------------------------------------------------------ the command line
def cnnlab(capsys, *args) -> tuple[int, str, str]:
    """`cnnlab ARGS...` in this process: (exit status, stdout, stderr)."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as stop:  # argparse: usage errors and --help
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


def test_convert_then_predict_and_evaluate(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = cl.zoo.resnet18(num_classes=2, input_shape=(3, 32, 32), seed=4)
    save_file(state_dict(source, "resnet18"), "w.safetensors")
    (tmp_path / "names.txt").write_text("tench\ngoldfish\n")
    rng = np.random.default_rng(0)
    for i, name in enumerate(["tench", "tench", "goldfish", "goldfish"]):
        (tmp_path / "fish" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), np.uint8)).save(f"fish/{name}/{i}.png")
    status, _, err = cnnlab(capsys, "convert", "w.safetensors", "--model", "resnet18", "--out",
                            "m.safetensors", "--classes", "names.txt", "--input", "3x32x32")
    assert status == 0, err
    assert "m.safetensors: resnet18 (11,177,538 parameters) from w.safetensors; 2 classes (names " \
           "from names.txt); input 32×32×3 (H×W×D); preprocessing: mean [0.485, 0.456, 0.406]" in err
    model = cl.load("m.safetensors")
    assert model.class_names == ["tench", "goldfish"] and model.preprocess.resize == "center-crop:37"
    status, out, err = cnnlab(capsys, "predict", "m.safetensors", "fish/tench/0.png", "--json")
    assert status == 0, err
    image = load_image("fish/tench/0.png", (3, 32, 32), "center-crop:37")
    expected = cl.predict(model, image[None])[0]
    top = json.loads(out)["top"]
    assert top[0] == {"class": model.class_names[int(expected.argmax())],
                      "prob": round(float(expected.max()), 6)}
    status, out, err = cnnlab(capsys, "evaluate", "m.safetensors", "--data", "fish", "--split", "all",
                              "--json")
    assert status == 0, err
    assert json.loads(out)["n"] == 4
    status, _, err = cnnlab(capsys, "convert", "w.safetensors", "--model", "resnet18", "--out", "x",
                            "--classes", "imagenet")
    assert status == 1 and "--classes imagenet gives 1000 class names; the weights' classifier has " \
                           "2 classes" in err


def test_convert_gives_a_1000_class_head_imagenets_names(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_file(state_dict(cl.zoo.resnet18(input_shape=(3, 32, 32)), "resnet18"), "w.safetensors")
    status, _, err = cnnlab(capsys, "convert", "w.safetensors", "--model", "resnet18", "--out",
                            "m.safetensors", "--input", "3x32x32", "--resize", "36")
    assert status == 0 and "1000 classes (ImageNet's)" in err and "center-crop:36" in err
    assert cl.load("m.safetensors").class_names == cl.zoo.imagenet_classes()
    status, _, err = cnnlab(capsys, "convert", "w.safetensors", "--model", "resnet34", "--out", "y")
    assert status == 1 and "not resnet34's weights in torchvision's names" in err
    status, out, _ = cnnlab(capsys, "convert", "--help")
    assert status == 0 and "examples:" in out and "safetensors.torch.save_file" in out


def test_train_starts_from_the_weights_and_a_new_head_for_other_classes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(f"data/{label}/{i}.png")
    source = cl.zoo.resnet18(num_classes=2, input_shape=(3, 32, 32), seed=6)
    save_file(state_dict(source, "resnet18"), "two.safetensors")
    imagenet = cl.zoo.resnet18(input_shape=(3, 32, 32), seed=7)
    save_file(state_dict(imagenet, "resnet18"), "thousand.safetensors")
    common = ["train", "--model", "resnet18", "--data", "data", "--input", "3x32x32", "--epochs", "1",
              "--val-split", "0", "-b", "18"]
    # 1,000 classes in the file, 2 in the data: the body from the file, frozen; a new head trains
    status, _, err = cnnlab(capsys, *common, "--weights", "thousand.safetensors", "--freeze", "body",
                            "--lr", "0.01", "--out", "r1")
    assert status == 0, err
    assert "new head dense_1: Dense(2) for the data's classes (--weights thousand.safetensors has " \
           "1000), starting at zero" in err
    tuned = cl.load("r1/model.safetensors")
    body = [name for name in imagenet.parameters() if not name.startswith("dense_1.")]
    assert body and all(np.array_equal(tuned.parameters()[n].data, imagenet.parameters()[n].data)
                        for n in body)
    assert tuned.out_shape == (2,) and np.abs(tuned.layers[-1].weight.data).max() > 0
    status, _, err = cnnlab(capsys, "train", "--model", "lenet5", "--weights", "two.safetensors")
    assert status == 2 and err.strip().splitlines()[-1].endswith(
        "--weights loads into alexnet, convnext-tiny, googlenet, mobilenet-v2, resnet18, resnet34, "
        "resnet50, se-resnet50, vgg11, vgg13, vgg16, vgg19; not --model lenet5")
    # a learning rate of 1e-12: the trained weights are still the file's
    status, _, err = cnnlab(capsys, *common, "--weights", "two.safetensors", "--lr", "1e-12",
                            "--weight-decay", "0", "--out", "r2")
    assert status == 0, err
    model = cl.load("r2/model.safetensors")
    assert model.class_names == ["a", "b"] and model.preprocess.resize == "stretch"
    assert model.preprocess.mean.tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert np.allclose(model.layers[0].weight.data, source.layers[0].weight.data, atol=1e-6)
    assert np.allclose(model.layers[-1].weight.data, source.layers[-1].weight.data, atol=1e-6)
    assert "weights = " in (tmp_path / "r2" / "config.toml").read_text()
