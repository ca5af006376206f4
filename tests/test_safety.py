"""Hostile files and bad input: model files and checkpoints that would run code if cnnlab ever
unpickled or evaluated them (each payload creates a marker file if it runs: the marker must never
appear), damaged safetensors headers, and one clear error for each kind of bad input, through
the API and through the `cnnlab` command. docs/security.md lists these promises."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import cnnlab as cl
from cnnlab import cli, io
from cnnlab.data import Preprocess
from cnnlab.data.folder import load_image, read_image
from tests.test_cli import cnnlab, one_line_failure

Image = pytest.importorskip("PIL.Image")
LOSS = cl.SoftmaxCrossEntropy()


class Marker:
    """Unpickling this object creates the file `path`."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def code(marker: Path) -> str:
    """Python source that creates `marker` if anything ever evaluates it."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def fill(value, marker: Path):
    """`value` with every "CODE" replaced by code(marker)."""
    if value == "CODE":
        return code(marker)
    if isinstance(value, list):
        return [fill(v, marker) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, marker) for k, v in value.items()}
    return value


def small_model() -> cl.Sequential:
    model = cl.Sequential([cl.Conv2D(2, 3), cl.ReLU(), cl.Flatten(), cl.Dense(3)], input_shape=(1, 5, 5))
    model.preprocess = Preprocess([0.5], [0.25])
    model.class_names = ["a", "b", "c"]
    return model


@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "model.safetensors"
    cl.save(small_model(), path)
    return path


def header_of(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


def write_raw(path: Path, header: dict, data: bytes, *, length: int | None = None) -> None:
    """A safetensors file exactly as given: no validation, optionally a false header length."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)


def set_architecture(path: Path, arch: dict) -> None:
    header, data = header_of(path)
    header["__metadata__"]["architecture"] = json.dumps(arch)
    write_raw(path, header, data)


def refused(path: Path, match: str) -> str:
    with pytest.raises(cl.ModelFileError, match=match) as error:
        cl.load(path)
    return str(error.value)


# ------------------------------------------------------------ no unpickling
def test_an_npz_with_an_object_array_renamed_safetensors_is_refused(tmp_path):
    marker = tmp_path / "unpickled"
    npz = tmp_path / "weights.npz"
    np.savez(npz, weight=np.array([Marker(str(marker))], dtype=object))
    path = tmp_path / "model.safetensors"
    path.write_bytes(npz.read_bytes())
    refused(path, "not a safetensors file")
    with pytest.raises(cl.ModelFileError):
        cl.fit(small_model(), (np.zeros((4, 1, 5, 5), np.float32), np.zeros(4, np.int64)), loss=LOSS,
               optimizer=cl.optim.SGD(small_model()), epochs=1, resume=path, verbose=False)
    assert not marker.exists()
    # the payload is real: NumPy with allow_pickle=True runs it
    with np.load(npz, allow_pickle=True) as archive:
        archive["weight"][0].close()
    assert marker.exists()


def test_no_source_file_can_unpickle_or_evaluate():
    """The audit, kept as a test: no pickle, eval, exec or np.load anywhere in cnnlab."""
    source = Path(cl.__file__).parent
    banned = [r"\bpickle\b", r"\beval\(", r"\bexec\(", r"\bcompile\(", r"np\.load\(", r"numpy\.load\(",
              "allow_pickle", "__import__", r"\bmarshal\b", r"\bshelve\b", r"yaml\.load",
              r"import_module\((?!f?[\"']cnnlab\.)"]  # import_module("cnnlab.viz") is a lazy import
    found = [f"{path.relative_to(source)}: {line.strip()}" for path in sorted(source.rglob("*.py"))
             for line in path.read_text().splitlines()
             if any(re.search(word, line) for word in banned) and not line.lstrip().startswith("#")]
    # the only mentions are in docstrings saying cnnlab never unpickles
    assert all("pickle" in line and ("never" in line or "No pickle" in line or "not unpickle" in line
                                     or "pickles" in line) for line in found), found


# --------------------------------------------------- damaged safetensors data
def tensor_entry(dtype="F32", shape=(1,), offsets=(0, 4)) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.mark.parametrize("tensors, data, match", [
    ({"param.a": tensor_entry(shape=(2**62, 2**62))}, bytes(4), "corrupt safetensors data.*overflow"),
    ({"param.a": tensor_entry(shape=(2**31,), offsets=(0, 2**33))}, bytes(16), "corrupt safetensors data"),
    ({"param.a": tensor_entry(), "param.b": tensor_entry()}, bytes(4), "corrupt safetensors data.*offset"),
    ({"param.a": tensor_entry(offsets=(0, 4)), "param.b": tensor_entry(offsets=(2, 6))}, bytes(6),
     "corrupt safetensors data"),
    ({"param.a": tensor_entry(offsets=(0, 10**6))}, bytes(16), "corrupt safetensors data"),
    ({"param.a": tensor_entry(offsets=(2**64 - 4, 2**64))}, bytes(4), "corrupt safetensors data"),
    ({"param.a": tensor_entry(offsets=(8, 4))}, bytes(8), "corrupt safetensors data"),
    ({"param.a": tensor_entry(shape=(-1,))}, bytes(4), "corrupt safetensors data"),
    ({"param.a": tensor_entry(shape=(1,) * 100)}, bytes(4), "corrupt safetensors data"),
    ({"param.a": tensor_entry(shape=(0, 2**62), offsets=(0, 0))}, b"", "corrupt safetensors data"),
    ({"param.a": tensor_entry(dtype="BF16", shape=(2,))}, bytes(4), "unsupported tensor dtype 'BF16'"),
    ({"param.a": tensor_entry(dtype="F8_E4M3", shape=(4,))}, bytes(4), "unsupported tensor dtype"),
    ({"param.a": tensor_entry(dtype="OBJECT")}, bytes(4), "corrupt safetensors data"),
])
def test_absurd_sizes_and_offsets_are_refused(tmp_path, tensors, data, match):
    path = tmp_path / "model.safetensors"
    write_raw(path, {"__metadata__": {"format": io.FORMAT}, **tensors}, data)
    refused(path, match)


def test_header_lengths_larger_than_the_file_are_refused(saved):
    header, data = header_of(saved)
    size = len(json.dumps(header).encode())
    for length in (size + len(data) + 1, size + len(data) + 8, 2**64 - 1, io.MAX_HEADER + 1):
        write_raw(saved, header, data, length=length)
        refused(saved, f"header length {length} is impossible")
    write_raw(saved, header, data, length=size - 1)  # shorter: the JSON is cut
    refused(saved, "the header is not JSON")


def test_a_header_nested_thousands_deep_is_refused(tmp_path):
    # json.loads raises RecursionError here: it used to escape as a crash
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 200_000) + b"[" * 200_000)
    refused(path, "the header is not JSON")
    path.write_bytes(struct.pack("<Q", 200_000) + b'{"a":' * 40_000)
    refused(path, "the header is not JSON")


def test_metadata_nested_thousands_deep_is_refused(saved):
    header, data = header_of(saved)
    header["__metadata__"]["class_names"] = "[" * 100_000 + "]" * 100_000
    write_raw(saved, header, data)
    refused(saved, "'class_names' is not valid JSON")


def test_tensors_of_a_foreign_dtype_are_refused_even_with_a_valid_checksum(saved):
    tensors = {k: v.astype(np.complex64) if k == "param.dense_1.bias" else v
               for k, v in st_load(saved.read_bytes()).items()}
    header, _ = header_of(saved)
    saved.write_bytes(st_save(tensors, metadata={**header["__metadata__"], "sha256": io.digest(tensors)}))
    refused(saved, r"dense_1.bias is complex64\(3,\), the architecture needs float32\(3,\)")


# ------------------------------------------------------ tampered architecture
@pytest.mark.parametrize("layer_type", [
    "builtins.eval", "builtins.exec", "subprocess.Popen", "cnnlab.io.atomic_write", "Layer",
    "__builtins__", "Conv2D.__init__", "CODE",
])
def test_an_architecture_naming_a_callable_as_layer_type_is_refused(saved, tmp_path, layer_type):
    marker = tmp_path / "ran"
    arch = json.loads(header_of(saved)[0]["__metadata__"]["architecture"])
    arch["layers"][1]["type"] = code(marker) if layer_type == "CODE" else layer_type
    set_architecture(saved, arch)
    refused(saved, r"architecture.layers\[1\]: unknown layer type .* may only name the layers of cnnlab")
    assert not marker.exists()


@pytest.mark.parametrize("change, match", [
    ({"__class__": "builtins.eval"}, "ReLU takes no argument __class__"),
    ({"__reduce__": ["os.system", "CODE"]}, "ReLU takes no argument __reduce__"),
    ({"type": "ReLU", "self": "CODE"}, "ReLU takes no argument self"),
    ({"type": "Dense", "units": "CODE"}, "cannot create Dense"),
    ({"type": "Dense", "units": {"__class__": "builtins.eval", "args": ["CODE"]}}, "is not a plain value"),
    ({"type": "Conv2D", "filters": 2, "kernel_size": 3, "init": "CODE"}, "cannot create Conv2D"),
    ({"type": "Conv2D", "filters": 2, "kernel_size": ["CODE", 3]}, "cannot create Conv2D"),
    ({"type": "Dropout", "rate": "CODE"}, "cannot create Dropout"),
    ({"type": "LeakyReLU", "alpha": [[["CODE"]]]}, "cannot create LeakyReLU"),
    ({"type": "LeakyReLU", "alpha": [{"f": "CODE"}]}, "is not a plain value"),
])
def test_an_architecture_with_callables_as_arguments_is_refused(saved, tmp_path, change, match):
    marker = tmp_path / "ran"
    arch = json.loads(header_of(saved)[0]["__metadata__"]["architecture"])
    arch["layers"][1] = {"type": "ReLU", **fill(change, marker)}
    set_architecture(saved, arch)
    refused(saved, match)
    assert not marker.exists()


def test_nested_sequentials_are_limited_in_depth(saved):
    arch = json.loads(header_of(saved)[0]["__metadata__"]["architecture"])
    inner = {"type": "ReLU"}
    for _ in range(io.MAX_DEPTH + 2):
        inner = {"type": "Sequential", "layers": [inner]}
    arch["layers"][1] = inner
    set_architecture(saved, arch)
    refused(saved, f"Sequentials nested more than {io.MAX_DEPTH} deep")


@pytest.mark.parametrize("layer", [
    {"type": "Dense", "units": 2**40},
    {"type": "Dense", "units": 10**7},
    {"type": "LocallyConnected2D", "filters": 4096, "kernel_size": 3},
])
def test_an_architecture_asking_for_more_weights_than_the_file_holds_is_refused_unbuilt(saved, layer):
    """A file holds its weights: a header promising billions more is refused before anything is
    allocated (without the check, Dense(2**40) would try to allocate 4 TiB)."""
    arch = json.loads(header_of(saved)[0]["__metadata__"]["architecture"])
    arch["input_shape"] = [3, 512, 512]
    arch["layers"] = [layer] if layer["type"] != "Dense" else [{"type": "Flatten"}, layer]
    set_architecture(saved, arch)
    message = refused(saved, "architecture: its layers need .* weights but the file holds 77 parameter")
    assert "refusing to allocate them" in message


# ---------------------------------------------------------------- checkpoints
@pytest.fixture
def checkpoint(tmp_path) -> Path:
    model = small_model()
    x, y = np.random.default_rng(0).standard_normal((16, 1, 5, 5)).astype(np.float32), np.arange(16) % 3
    cl.fit(model, (x, y), loss=LOSS, optimizer=cl.optim.SGD(model, momentum=0.9), epochs=1, batch_size=8,
           out=tmp_path / "run", verbose=False, progress=False)
    return tmp_path / "run" / "last.ckpt.safetensors"


def resume(path: Path, epochs: int = 2):
    model = small_model()
    x, y = np.random.default_rng(0).standard_normal((16, 1, 5, 5)).astype(np.float32), np.arange(16) % 3
    return cl.fit(model, (x, y), loss=LOSS, optimizer=cl.optim.SGD(model, momentum=0.9), epochs=epochs,
                  batch_size=8, resume=path, verbose=False, progress=False)


def set_training(path: Path, **changes) -> None:
    header, data = header_of(path)
    training = json.loads(header["__metadata__"]["training"])
    for key, value in changes.items():
        if value is KeyError:
            del training[key]
        elif isinstance(value, dict) and isinstance(training.get(key), dict):
            training[key].update(value)
        else:
            training[key] = value
    header["__metadata__"]["training"] = json.dumps(training)
    write_raw(path, header, data)


@pytest.mark.parametrize("changes, match", [
    ({"optimizer": {"type": "CODE"}}, "does not fit this run: SGD.load_state_dict: the state was saved by"),
    ({"optimizer": {"hyperparameters": {"momentum": "CODE", "dampening": 0, "nesterov": False,
                                        "weight_decay": 0}}}, "does not fit this run"),
    ({"optimizer": {"hyperparameters": {"__class__": "CODE"}}}, "does not fit this run"),
    ({"rng": {"dropout_1": {"bit_generator": "CODE"}}}, None),  # no dropout: nothing restored
    ({"history": [{"epoch": "CODE"}]}, r"corrupt training state \(history = "),
    ({"callbacks": "CODE"}, r"corrupt training state \(callbacks = "),
    ({"partial": {"seen": "CODE"}}, r"corrupt training state \(partial = "),
    ({"epoch": "CODE"}, r"corrupt training state \(epoch = "),
    ({"epoch": True}, r"corrupt training state \(epoch = true\)"),
    ({"base_lr": float("nan")}, r"corrupt training state \(base_lr = NaN\)"),
    ({"step": KeyError}, r"corrupt training state \(no 'step'\)"),
    ({"stop": ["CODE"]}, r"corrupt training state \(stop = "),
])
def test_a_tampered_training_state_is_refused_and_runs_nothing(checkpoint, tmp_path, changes, match):
    marker = tmp_path / "ran"
    set_training(checkpoint, **fill(changes, marker))
    if match is None:
        resume(checkpoint)
    else:
        with pytest.raises(cl.ModelFileError, match=match):
            resume(checkpoint)
    assert not marker.exists()


def test_a_checkpoint_from_a_different_data_size_is_refused(checkpoint):
    set_training(checkpoint, step=5, partial={"seen": 40})
    with pytest.raises(ValueError, match=r"resume: .* stopped after batch 5 of an epoch; this data has 2 "
                                         "batches an epoch"):
        resume(checkpoint)


def test_a_model_file_is_not_a_checkpoint(saved):
    with pytest.raises(cl.ModelFileError, match="a model file, not a training checkpoint"):
        resume(saved)


# ------------------------------------------------------------ via the command
@pytest.fixture
def hostile(tmp_path) -> tuple[Path, Path]:
    """A folder with hostile files of each kind and the marker any of them would create."""
    marker = tmp_path / "ran"
    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"state_dict": Marker(str(marker))}))
    np.savez(tmp_path / "objects.npz", w=np.array([Marker(str(marker))], dtype=object))
    (tmp_path / "npz.safetensors").write_bytes((tmp_path / "objects.npz").read_bytes())
    cl.save(small_model(), tmp_path / "arch.safetensors")
    arch = json.loads(header_of(tmp_path / "arch.safetensors")[0]["__metadata__"]["architecture"])
    arch["layers"][1] = {"type": "builtins.eval", "expression": code(marker)}
    set_architecture(tmp_path / "arch.safetensors", arch)
    return tmp_path, marker


@pytest.mark.parametrize("name, match", [
    ("pickle.safetensors", "not a safetensors file"),
    ("npz.safetensors", "not a safetensors file"),
    ("arch.safetensors", "unknown layer type 'builtins.eval'"),
])
def test_the_command_refuses_hostile_files_in_one_line(hostile, name, match):
    folder, marker = hostile
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(folder / "x.png")
    for args in (["evaluate", name, "--data", "fashion-mnist-mini"], ["predict", name, "x.png"],
                 ["summary", name], ["train", "--resume", name, "--data", "fashion-mnist-mini"]):
        err = one_line_failure(cnnlab(*args, cwd=folder))
        assert err.startswith("cnnlab: error: ") and match in err, (args, err)
    assert not marker.exists()


# --------------------------------------------------------------- bad input
def test_fit_checks_every_label_before_the_first_step(tmp_path):
    model = small_model()
    x = np.zeros((20, 1, 5, 5), np.float32)
    y = np.arange(20) % 3
    y[17] = 3
    with pytest.raises(cl.DataError, match=r"fit: the train labels run from 0 to 3, but the model has 3 "
                                           r"outputs; labels must be class indices in \[0, 2\]"):
        cl.fit(model, (x, y), loss=LOSS, optimizer=cl.optim.SGD(model), epochs=1, out=tmp_path, verbose=False)
    assert not (tmp_path / "last.ckpt.safetensors").exists()  # nothing trained, nothing written
    with pytest.raises(cl.DataError, match="the val labels run from -1 to 2"):
        cl.fit(model, (x, np.arange(20) % 3), val=(x[:4], np.array([0, 1, 2, -1])), loss=LOSS,
               optimizer=cl.optim.SGD(model), epochs=1, verbose=False)


def test_fit_refuses_float_labels_and_an_empty_dataset():
    model = small_model()
    x = np.zeros((4, 1, 5, 5), np.float32)
    with pytest.raises(cl.DataError, match="labels must be integers. Received: dtype=float64"):
        cl.fit(model, (x, np.array([0.0, 1.0, 2.0, 1.0])), loss=LOSS, optimizer=cl.optim.SGD(model),
               epochs=1, verbose=False)
    with pytest.raises(cl.DataError, match=r"the dataset is empty \(0 samples\)"):
        cl.fit(model, (x[:0], np.zeros(0, np.int64)), loss=LOSS, optimizer=cl.optim.SGD(model), epochs=1,
               verbose=False)
    with pytest.raises(cl.DataError, match="need one label per image: x has 4 samples, y has shape"):
        cl.fit(model, (x, np.zeros(3, np.int64)), loss=LOSS, optimizer=cl.optim.SGD(model), epochs=1,
               verbose=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_and_evaluate_at_scores_of_1e4(dtype):
    """Scores of ±1e4 (exp would overflow at ~89 in float32): probabilities stay exact, no
    warnings (pytest turns them into errors)."""
    model = cl.Sequential([cl.Dense(3)], input_shape=(2,), dtype=dtype)
    model.layers[0].weight.data[...] = np.array([[1e4, 0], [-1e4, 0], [0, 1e4]], dtype)
    model.layers[0].bias.data[...] = 0
    x = np.array([[1, 0], [0, 1], [-1, -1], [1, 1]], dtype)  # scores ±1e4, ties at +1e4
    probs = cl.predict(model, x)
    assert probs.dtype == dtype and np.isfinite(probs).all()
    np.testing.assert_allclose(probs, [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0.5, 0, 0.5]], atol=1e-7)
    result = cl.evaluate(model, (x, np.array([0, 2, 1, 1])), loss=LOSS)
    # only the last sample is wrong: its class scores −1e4, two others +1e4: −log p = 2e4 + log 2
    assert result["loss"] == pytest.approx((2e4 + np.log(2)) / 4)
    assert np.isfinite(cl.MulticlassSVM().forward(model.forward(x), np.array([0, 2, 1, 1])))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header for a width×height image, with no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_a_real_decompression_bomb_is_refused_without_allocating(tmp_path):
    # 40,000 × 40,000 = 1.6 gigapixels from 60 bytes: refused from the header alone
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(40_000, 40_000))
    with pytest.raises(cl.DataError, match=r"bomb\.png: refused as a possible decompression bomb"):
        load_image(path, (1, 28, 28))


@pytest.mark.parametrize("ext", [".gz", ".xz"])
def test_a_compressed_idx_bomb_stops_at_the_size_limit(tmp_path, monkeypatch, ext):
    """64 MiB of zeros compress to a few kB; with the limit lowered to 1 MiB reading stops after
    one 4 MiB piece (the real limit, 2 GiB, is above any IDX file published)."""
    import gzip
    import lzma
    import tracemalloc

    from cnnlab.data import idx

    monkeypatch.setattr(idx, "_MAX_BYTES", 1 << 20)
    payload = bytes([0, 0, 8, 1]) + struct.pack(">I", 64 << 20) + bytes(64 << 20)
    path = tmp_path / f"train-images-idx3-ubyte{ext}"
    path.write_bytes(gzip.compress(payload) if ext == ".gz" else lzma.compress(payload))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(cl.DataError, match=r"corrupt or truncated (gzip|xz) data \(decompresses to "
                                               r"more than 1 MiB\)"):
            idx.read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20  # the decompressor's buffers and one piece, not the 64 MiB


def test_formats_outside_the_list_are_not_decoded(tmp_path):
    """EPS (Ghostscript), PSD, ICO, ... are refused whatever the file's name."""
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="ICO")
    with pytest.raises(cl.DataError, match=r"photo\.png: not an image file cnnlab reads \(PNG, JPEG"):
        load_image(path, (1, 8, 8))
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n" + code(tmp_path / "m").encode())
    with pytest.raises(cl.DataError, match="not an image file cnnlab reads"):
        load_image(path, (1, 8, 8))


def test_a_grayscale_image_for_an_rgb_model_is_converted_and_said(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    image, note = read_image(path, (3, 8, 8))
    assert image.shape == (3, 8, 8) and (image[0] == image[1]).all() and (image[1] == image[2]).all()
    assert note == f"{path}: grayscale 8×8 → RGB 8×8"


def test_a_folder_or_unreadable_file_as_model_path(tmp_path, saved):
    refused(tmp_path, "cannot read")  # a folder
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading")
    saved.chmod(0)
    try:
        refused(saved, "cannot read .*Permission denied")
    finally:
        saved.chmod(0o644)


def test_config_files_that_are_not_text_or_nest_too_deep_are_usage_errors(tmp_path):
    actions = cli.build_parser().parse_args(["train"]).actions
    for content, match in ((b"\xff\xfe\x00epochs = 1", "not valid TOML"),
                           (b"epochs = " + b"[" * 5000 + b"]" * 5000, "nested too deep"),
                           (b"[train]\nepochs = 3\n", "unknown key 'train'"),
                           (b"epochs = 2\nlearning_rate = 0.1\n", "unknown key 'learning_rate'")):
        (tmp_path / "c.toml").write_bytes(content)
        with pytest.raises(cli.UsageError, match=match):
            cli.read_config(tmp_path / "c.toml", actions)


# ------------------------------------------------------ bad input, via the command
@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rgb")
    model = cl.zoo.mlp(num_classes=3, input_shape=(3, 12, 12))
    model.preprocess = Preprocess([0.5] * 3, [0.25] * 3)
    model.class_names = ["red", "green", "blue"]
    cl.save(model, folder / "rgb.safetensors")
    return folder / "rgb.safetensors"


def test_the_command_converts_grayscale_for_an_rgb_model_and_says_so(rgb_model):
    folder = rgb_model.parent
    Image.fromarray(np.arange(100, dtype=np.uint8).reshape(10, 10)).save(folder / "gray.png")
    result = cnnlab("predict", rgb_model, "gray.png", "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "gray.png: grayscale 10×10 → RGB 12×12\n"
    assert json.loads(result.stdout)["file"] == "gray.png"


def test_the_command_refuses_bad_images_and_model_paths_in_one_line(rgb_model):
    folder = rgb_model.parent
    (folder / "bomb.png").write_bytes(png_claiming(40_000, 40_000))
    Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20).astype(np.uint8)).save(folder / "cut.png")
    (folder / "cut.png").write_bytes((folder / "cut.png").read_bytes()[:-40])
    (folder / "text.jpg").write_text("not a picture")
    for name, match in (("bomb.png", "refused as a possible decompression bomb"),
                        ("cut.png", "corrupt or truncated image"), ("text.jpg", "not an image file")):
        err = one_line_failure(cnnlab("predict", rgb_model, name, cwd=folder))
        assert err.startswith(f"cnnlab: error: {name}: {match}"), err
    (folder / "dir.safetensors").mkdir(exist_ok=True)
    for command in ("evaluate", "summary"):
        err = one_line_failure(cnnlab(command, "dir.safetensors", cwd=folder))
        assert err.startswith("cnnlab: error: dir.safetensors: cannot read"), err
    err = one_line_failure(cnnlab("predict", "dir.safetensors", "cut.png", cwd=folder))
    assert "cannot read" in err


def test_the_command_refuses_a_damaged_config_in_one_line(rgb_model):
    folder = rgb_model.parent
    (folder / "deep.toml").write_bytes(b"epochs = " + b"[" * 5000 + b"]" * 5000)
    err = one_line_failure(cnnlab("train", "-c", "deep.toml", cwd=folder), 2)
    assert "deep.toml: not valid TOML (nested too deep)" in err
    (folder / "binary.toml").write_bytes(b"\x00\xff\xfe")
    err = one_line_failure(cnnlab("train", "-c", "binary.toml", cwd=folder), 2)
    assert "binary.toml: not valid TOML" in err
    # evaluate reads the model folder's config.toml for its data: a damaged one is said, not a crash
    (folder / "config.toml").write_bytes(b"\xff\xfe")
    err = one_line_failure(cnnlab("evaluate", rgb_model, cwd=folder))
    assert "config.toml: not valid TOML" in err and "give --data" in err
    (folder / "config.toml").unlink()


def test_every_test_docs_security_names_exists():
    """docs/security.md backs each promise with tests: they must exist under those names."""
    tests = Path(__file__).parent
    doc = (tests.parent / "docs" / "security.md").read_text()
    named = set(re.findall(r"(test_\w+\.py)::(test_\w+)", doc))
    assert len(named) > 40
    missing = [f"{file}::{name}" for file, name in sorted(named)
               if not re.search(rf"^def {name}\(", (tests / file).read_text(), re.MULTILINE)]
    assert missing == []
