"""Model files: an exact save/load round trip for every layer type, atomic writes, and refusal
(cl.ModelFileError) of anything that is not an intact cnnlab file. Loading never unpickles."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import cnnlab as cl
from cnnlab import io
from cnnlab.data import Preprocess


def every_layer() -> cl.Sequential:
    """Every 2-D layer type, most with non-default constructor arguments, and a nested Sequential."""
    return cl.Sequential(
        [
            cl.Conv2D(4, (3, 2), stride=(1, 2), padding=(1, 0), bias=False), cl.BatchNorm2D(momentum=0.3),
            cl.LeakyReLU(0.2), cl.MaxPool2D(3, stride=2, fit="floor"),
            cl.Conv2D(6, 3, padding="same", init="xavier"), cl.PReLU(init=0.1),
            cl.AvgPool2D(2, fit="floor"), cl.Maxout(pieces=3), cl.ELU(alpha=0.5),
            cl.Sequential([cl.Conv2D(4, 1), cl.Swish(beta=1.5), cl.Dropout(0.25)]),
            cl.LocallyConnected2D(3, 2, stride=1, padding=1, bias=False), cl.Sigmoid(),
            cl.GlobalAvgPool2D(), cl.Dense(7, bias=False), cl.BatchNorm1D(momentum=0.2, eps=1e-3),
            cl.Tanh(), cl.Dropout(0.5), cl.Dense(3),
        ],
        input_shape=(2, 11, 12), seed=3,
    )


def sequences() -> cl.Sequential:
    return cl.Sequential(
        [cl.Conv1D(4, 3, padding="same"), cl.ReLU(), cl.MaxPool1D(2), cl.LocallyConnected1D(3, 2, stride=2),
         cl.AvgPool1D(2, fit="floor"), cl.Conv1D(2, 1, padding="valid"), cl.Flatten(), cl.Dense(5)],
        input_shape=(2, 20), seed=1,
    )


def float64_mlp() -> cl.Sequential:
    return cl.Sequential([cl.Flatten(), cl.Dense(6), cl.ReLU(), cl.Dense(2)], input_shape=(1, 3, 3),
                         dtype=np.float64)


MODELS = {"every-layer": every_layer, "sequences": sequences, "float64": float64_mlp,
          "zoo-bn": cl.zoo.fmnist_cnn_bn, "lenet5": cl.zoo.lenet5}


def tensors(model) -> dict[str, np.ndarray]:
    return io.model_tensors(model)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip_is_exact(name, tmp_path, rng):
    model = MODELS[name]()
    x = rng.standard_normal((5, *model.input_shape)).astype(model.dtype)
    for _ in range(2):  # move BatchNorm's running statistics off their initial values
        model.forward(x, training=True)
    for p in model.parameters().values():  # and every parameter off its initial value
        p.data += rng.standard_normal(p.shape).astype(p.data.dtype) * 0.01
    model.preprocess = Preprocess([0.25] * model.input_shape[0], [0.5] * model.input_shape[0])
    model.class_names = [f"class {i}" for i in range(model.out_shape[0])]
    path = tmp_path / "model.safetensors"
    cl.save(model, path)
    loaded = cl.load(path)
    assert io.architecture(loaded) == io.architecture(model)
    assert loaded.dtype == model.dtype and loaded.input_shape == model.input_shape
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    ours, theirs = tensors(model), tensors(loaded)
    assert ours.keys() == theirs.keys()
    assert any(k.startswith("buffer.") for k in ours) == (name in ("every-layer", "zoo-bn"))
    for key in ours:
        assert theirs[key].dtype == ours[key].dtype and np.array_equal(theirs[key], ours[key]), key
    assert np.array_equal(loaded.forward(x), model.forward(x))
    assert loaded.preprocess.config() == model.preprocess.config()
    assert loaded.class_names == model.class_names
    assert loaded.summary() == model.summary()


def test_round_trip_keeps_constructor_arguments(tmp_path):
    model = every_layer()
    cl.save(model, tmp_path / "m.safetensors")
    loaded = cl.load(tmp_path / "m.safetensors")
    pairs = [(a, b) for a, b in zip(model.layers, loaded.layers, strict=True)]
    pairs += list(zip(model.layers[9].layers, loaded.layers[9].layers, strict=True))
    for a, b in pairs:
        assert type(a) is type(b) and a.config() == b.config(), a.label
    conv, bn = loaded.layers[0], loaded.layers[1]
    assert conv.kernel_size == (3, 2) and conv.stride == (1, 2) and not conv.use_bias
    assert loaded.layers[4].padding == "same" and loaded.layers[3].fit == "floor"
    assert bn.momentum == 0.3 and loaded.layers[2].alpha == 0.2 and loaded.layers[8].alpha == 0.5
    assert loaded.layers[9].layers[1].beta == 1.5 and loaded.layers[9].layers[2].rate == 0.25
    assert loaded.layers[7].pieces == 3 and loaded.layers[14].eps == 1e-3
    assert loaded.preprocess is None and loaded.class_names is None


def test_save_refuses_an_unbuilt_model(tmp_path):
    with pytest.raises(ValueError, match="built cnnlab Sequential"):
        cl.save(cl.Sequential([cl.Dense(3)]), tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


# -------------------------------------------------------------- atomic writes
def test_write_goes_through_a_temporary_file_in_the_same_folder(tmp_path, monkeypatch):
    moves = []
    real_replace = os.replace

    def spy(src, dst):
        moves.append((Path(src), Path(dst)))
        assert Path(src).is_file() and Path(src).stat().st_size > 0
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    cl.save(float64_mlp(), tmp_path / "m.safetensors")
    [(src, dst)] = moves
    assert dst == tmp_path / "m.safetensors" and src.parent == dst.parent and src != dst
    assert sorted(tmp_path.iterdir()) == [dst]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, failure):
    path = tmp_path / "m.safetensors"
    cl.save(float64_mlp(), path)
    old = path.read_bytes()

    def broken(src, dst):
        raise failure

    monkeypatch.setattr(os, "replace", broken)
    model = float64_mlp()
    model.layers[1].weight.data += 1
    with pytest.raises(type(failure)) as error:
        cl.save(model, path)
    if isinstance(failure, OSError):
        assert f"could not write {path}" in str(error.value) and "unchanged" in str(error.value)
    assert sorted(tmp_path.iterdir()) == [path]  # no partial or temporary file
    assert path.read_bytes() == old
    # a failure before any file existed leaves nothing at all
    with pytest.raises(type(failure)):
        cl.save(model, tmp_path / "new.safetensors")
    assert sorted(tmp_path.iterdir()) == [path]


# ------------------------------------------------------------ refused files
def _expect_refused(path: Path, match: str) -> None:
    with pytest.raises(cl.ModelFileError, match=match) as error:
        cl.load(path)
    assert str(path) in str(error.value) or "architecture" in str(error.value)


class Marker:
    """Unpickling this object creates the file `path`."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_loading_never_unpickles(tmp_path):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps({"state_dict": Marker(str(marker))})
    assert not marker.exists()
    for name in ("model.safetensors", "model.pt", "last.ckpt.safetensors"):
        path = tmp_path / name
        path.write_bytes(payload)
        _expect_refused(path, "not a safetensors file")
    # resuming from it is refused just the same
    with pytest.raises(cl.ModelFileError):
        cl.fit(float64_mlp(), (np.zeros((4, 1, 3, 3)), np.zeros(4, np.int64)), loss=cl.SoftmaxCrossEntropy(),
               optimizer=cl.optim.SGD(float64_mlp()), epochs=1, resume=tmp_path / "last.ckpt.safetensors",
               verbose=False)
    assert not marker.exists()
    pickle.loads(payload)["state_dict"].close()  # the payload is real: unpickling creates the marker
    assert marker.exists()


@pytest.mark.parametrize("content, match", [
    (b"", r"not a safetensors file \(0 bytes\)"),
    (b"\x01\x02\x03", r"not a safetensors file \(3 bytes\)"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "header length .* impossible"),
    (struct.pack("<Q", 1 << 60) + b"{}", "header length 1152921504606846976 is impossible"),
    (struct.pack("<Q", 100) + b"{}" + bytes(200), "the header is not JSON"),
    (struct.pack("<Q", 2) + b"[]", "the header is not JSON"),
    (struct.pack("<Q", 2) + b"{}", "not a cnnlab model file"),
])
def test_non_safetensors_files_are_refused(tmp_path, content, match):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    _expect_refused(path, match)


def test_a_safetensors_file_from_elsewhere_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    path.write_bytes(st_save({"weight": np.zeros((2, 2), np.float32)}, metadata={"format": "pt"}))
    _expect_refused(path, "not a cnnlab model file \\(format 'pt', expected 'cnnlab/1'\\)")


def test_missing_file(tmp_path):
    _expect_refused(tmp_path / "nothing.safetensors", "cannot read")


@pytest.fixture
def saved(tmp_path) -> Path:
    model = cl.Sequential([cl.Conv2D(2, 3), cl.ReLU(), cl.Flatten(), cl.Dense(3)], input_shape=(1, 5, 5))
    path = tmp_path / "model.safetensors"
    cl.save(model, path)
    return path


def rewrite(path: Path, *, tensors=None, **metadata) -> None:
    """Rewrites a cnnlab file with some metadata replaced (values: JSON-able or raw strings),
    keeping the tensors and their SHA-256 unless `tensors` replaces them."""
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8 : 8 + size])["__metadata__"]
    for key, value in metadata.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    path.write_bytes(st_save(st_load(raw) if tensors is None else tensors, metadata=meta))


def architecture(path: Path) -> dict:
    (size,) = struct.unpack("<Q", path.read_bytes()[:8])
    return json.loads(json.loads(path.read_bytes()[8 : 8 + size])["__metadata__"]["architecture"])


@pytest.mark.parametrize("layer_type", ["os.system", "Lambda", "__import__('os').system", "eval", "conv2d"])
def test_tampered_architecture_naming_an_unknown_layer(saved, layer_type):
    arch = architecture(saved)
    arch["layers"][1]["type"] = layer_type
    rewrite(saved, architecture=arch)
    _expect_refused(saved, r"architecture.layers\[1\]: unknown layer type .*may only name the layers")


@pytest.mark.parametrize("change, match", [
    ({"layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 3, "activation": "os.system"}]},
     r"layers\[0\]: Conv2D takes no argument activation"),
    ({"layers": [{"type": "Conv2D", "filters": {"__class__": "x"}, "kernel_size": 3}]},
     "filters=.* is not a plain value"),
    ({"layers": [{"type": "Conv2D", "filters": -2, "kernel_size": 3}]}, "cannot create Conv2D"),
    ({"layers": [{"filters": 2}]}, "a layer must be an object with a string 'type'"),
    ({"layers": [{"type": "Sequential", "layers": [], "seed": 1}]}, "a nested Sequential takes only"),
    ({"layers": []}, "'layers' must be a non-empty list"),
    ({"type": "Residual"}, "expected an object of type 'Sequential'"),
    ({"input_shape": [1, -5, 5]}, "input_shape must be 1 to 3 positive ints"),
    ({"input_shape": [1, 1 << 40, 5]}, "input_shape must be 1 to 3 positive ints"),
    ({"dtype": "object"}, "dtype must be float32 or float64"),
    ({"layers": [{"type": "Dense", "units": 3}]}, "architecture does not build"),
])
def test_tampered_architecture_is_refused(saved, change, match):
    arch = {**architecture(saved), **change}
    rewrite(saved, architecture=arch)
    _expect_refused(saved, match)


def test_architecture_disagreeing_with_the_tensors_is_refused(saved):
    arch = architecture(saved)
    arch["layers"][3]["units"] = 4
    rewrite(saved, architecture=arch)
    _expect_refused(saved, r"dense_1.weight is float32\(3, 18\), the architecture needs float32\(4, 18\)")


def test_missing_or_extra_tensors_are_refused(saved, tmp_path):
    stored = st_load(saved.read_bytes())
    fewer = {k: v for k, v in stored.items() if k != "param.dense_1.bias"}
    rewrite(saved, tensors=fewer, sha256=io.digest(fewer))
    _expect_refused(saved, "tensors missing for param.dense_1.bias")
    more = {**stored, "param.evil.weight": np.zeros(3, np.float32)}
    rewrite(saved, tensors=more, sha256=io.digest(more))
    _expect_refused(saved, "tensors param.evil.weight belong to no layer")


def test_bad_metadata_is_refused(saved):
    original = saved.read_bytes()
    for change, match in (({"architecture": "{not json"}, "'architecture' is not valid JSON"),
                          ({"class_names": [1, 2, 3]}, "class_names must be a list of strings"),
                          ({"preprocess": {"mean": [0.5], "std": [0.0]}}, "bad preprocess metadata"),
                          ({"preprocess": {"mean": [0.5], "std": [1], "code": "x"}}, "bad preprocess"),
                          ({"format": "cnnlab/999"}, "not a cnnlab model file")):
        saved.write_bytes(original)
        rewrite(saved, **change)
        _expect_refused(saved, match)


def test_a_flipped_byte_in_the_tensor_data_is_detected(saved):
    raw = bytearray(saved.read_bytes())
    raw[-5] ^= 0x01  # the last tensor's bytes
    saved.write_bytes(bytes(raw))
    _expect_refused(saved, "do not match their SHA-256")


def test_a_missing_checksum_is_refused(saved):
    raw = saved.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8 : 8 + size])["__metadata__"]
    del meta["sha256"]
    saved.write_bytes(st_save(st_load(raw), metadata=meta))
    _expect_refused(saved, "SHA-256")


def test_a_truncated_file_is_refused(saved):
    raw = saved.read_bytes()
    for cut in (len(raw) - 7, 12, 8):
        saved.write_bytes(raw[:cut])
        _expect_refused(saved, "not a safetensors file|corrupt safetensors data")
