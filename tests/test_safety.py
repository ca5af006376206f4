"""Hostile files: model files and checkpoints that would run code if cnnlab ever unpickled or
evaluated them (each payload creates a marker file if it runs: the marker must never appear),
damaged safetensors headers, tampered architectures and training states, through the API and
through the `cnnlab` command. Bad input other than files: test_safety_input.py. docs/security.md
lists these promises."""

from __future__ import annotations

import json
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import cnnlab as cl
from cnnlab import io
from cnnlab.data import Preprocess
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


def small_model(*middle: cl.Layer) -> cl.Sequential:
    """Conv2D, `middle` (a ReLU by default), Flatten, Dense: 3 classes of 5×5 images, with
    preprocessing and class names, as a saved model has them."""
    model = cl.Sequential([cl.Conv2D(2, 3), *(middle or [cl.ReLU()]), cl.Flatten(), cl.Dense(3)],
                          input_shape=(1, 5, 5))
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
    "builtins.eval", "builtins.exec", "subprocess.Popen", "cnnlab.files.atomic_write", "Layer",
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
    with pytest.raises(cl.ModelFileError, match=match):
        resume(checkpoint)
    assert not marker.exists()


# Dropout's Generator state ("rng"): restored on resume, so the masks after a resume are those of
# the uninterrupted run. The state lies outside the tensors' SHA-256: a wrongly typed one is
# refused; a well-typed other one is accepted, and shows in the weights.
def dropout_fit(epochs: int, **kwargs) -> dict[str, np.ndarray]:
    """The weights after `epochs` of a seeded run whose Dropout draws a mask at every step."""
    model = cl.Sequential([cl.Conv2D(2, 3), cl.ReLU(), cl.Dropout(0.5), cl.Flatten(), cl.Dense(3)],
                          input_shape=(1, 5, 5), seed=0)
    x, y = np.random.default_rng(0).standard_normal((16, 1, 5, 5)).astype(np.float32), np.arange(16) % 3
    cl.fit(model, (x, y), loss=LOSS, optimizer=cl.optim.SGD(model, momentum=0.9), epochs=epochs,
           batch_size=8, verbose=False, progress=False, **kwargs)
    return {name: p.data.copy() for name, p in model.parameters().items()}


@pytest.fixture(scope="module")
def dropout_run(tmp_path_factory) -> tuple[bytes, dict[str, np.ndarray]]:
    """The checkpoint after epoch 1 of 2, and the weights of the uninterrupted 2 epochs."""
    out = tmp_path_factory.mktemp("dropout") / "run"
    dropout_fit(1, out=out)
    return (out / "last.ckpt.safetensors").read_bytes(), dropout_fit(2)


def with_rng(tmp_path: Path, raw: bytes, change) -> Path:
    """The checkpoint `raw` with its "rng" replaced by change(rng)."""
    path = tmp_path / "last.ckpt.safetensors"
    path.write_bytes(raw)
    header, data = header_of(path)
    training = json.loads(header["__metadata__"]["training"])
    assert set(training["rng"]) == {"dropout_1"}
    training["rng"] = change(training["rng"])
    header["__metadata__"]["training"] = json.dumps(training)
    write_raw(path, header, data)
    return path


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_a_resumed_dropout_draws_the_masks_of_the_uninterrupted_run(dropout_run, tmp_path):
    raw, uninterrupted = dropout_run
    intact = with_rng(tmp_path, raw, lambda rng: rng)
    assert same_weights(dropout_fit(2, resume=intact), uninterrupted)

    def other_state(rng):  # well typed, another point of the PCG64 stream
        state = rng["dropout_1"]["state"]
        return {"dropout_1": {**rng["dropout_1"], "state": {**state, "state": (state["state"] + 1) % 2**128}}}

    # accepted (the state is not under the checksum), but the run it resumes is another one
    assert not same_weights(dropout_fit(2, resume=with_rng(tmp_path, raw, other_state)), uninterrupted)


def _entry(**changes):
    return lambda rng: {"dropout_1": {**rng["dropout_1"], **changes}}


def _state(value):
    def change(rng):
        return {"dropout_1": {**rng["dropout_1"], "state": {**rng["dropout_1"]["state"], "state": value}}}
    return change


@pytest.mark.parametrize("change, match", [
    (_entry(bit_generator="CODE"), "state must be for a PCG64"),
    (_entry(bit_generator="MT19937"), "state must be for a PCG64"),
    (_entry(state="CODE"), "does not fit this run"),
    (_state("CODE"), "does not fit this run"),
    (_entry(has_uint32="CODE"), "does not fit this run"),
    (lambda rng: {**rng, "conv2d_1": rng["dropout_1"]}, "conv2d_1, which own no Generator"),
    (_state(2**200), "does not fit this run"),  # out of PCG64's range: an OverflowError before
    (_state(-1), "does not fit this run"),
    (lambda rng: {}, "no Generator state for dropout_1"),  # before: a fresh Generator, silently
    (lambda rng: {"dropout_9": rng["dropout_1"]}, "no Generator state for dropout_1"),
], ids=["bit_generator=CODE", "bit_generator=MT19937", "state=CODE", "state.state=CODE",
        "has_uint32=CODE", "a layer without Generator", "state.state=2**200", "state.state=-1",
        "no state", "renamed state"])
def test_a_wrongly_typed_dropout_generator_state_is_refused(dropout_run, tmp_path, change, match):
    raw, _ = dropout_run
    marker = tmp_path / "ran"
    path = with_rng(tmp_path, raw, lambda rng: fill(change(rng), marker))
    with pytest.raises(cl.ModelFileError, match=match):
        dropout_fit(2, resume=path)
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
def hostile(tmp_path, checkpoint) -> tuple[Path, Path]:
    """A folder with hostile files of each kind and the marker any of them would create. The
    tampered architecture sits in a checkpoint, so every command (resuming too) reaches it."""
    marker = tmp_path / "ran"
    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps({"state_dict": Marker(str(marker))}))
    np.savez(tmp_path / "objects.npz", w=np.array([Marker(str(marker))], dtype=object))
    (tmp_path / "npz.safetensors").write_bytes((tmp_path / "objects.npz").read_bytes())
    (tmp_path / "arch.safetensors").write_bytes(checkpoint.read_bytes())
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


def test_every_test_docs_security_names_exists():
    """docs/security.md backs each promise with tests: they must exist under those names."""
    tests = Path(__file__).parent
    doc = (tests.parent / "docs" / "security.md").read_text()
    named = set(re.findall(r"(test_\w+\.py)::(test_\w+)", doc))
    assert len(named) > 40
    missing = [f"{file}::{name}" for file, name in sorted(named)
               if not re.search(rf"^def {name}\(", (tests / file).read_text(), re.MULTILINE)]
    assert missing == []
