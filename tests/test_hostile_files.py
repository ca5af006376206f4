"""Issue 17: model files and paths that are valid-looking but hostile. Each gets one clear error
(cl.ModelFileError from the API, exit status 1 and one line from the command), never a traceback,
a hang, or memory filled (docs/security.md, section 3)."""

from __future__ import annotations

import json
import math
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import io
from cnnlab.cli.use import _evaluation_json, _finite
from cnnlab.files import read_regular
from tests.test_cli import cnnlab, one_line_failure
from tests.test_safety import header_of
from tests.test_safety import small_model as safety_model

Image = pytest.importorskip("PIL.Image")
ROOT = Path(__file__).resolve().parents[1]


def small_model() -> cl.Sequential:
    """test_safety's model with BatchNorm statistics and an ELU argument to tamper with."""
    return safety_model(cl.BatchNorm2D(), cl.ELU())


@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "model.safetensors"
    cl.save(small_model(), path)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "x.png")
    return path


def set_metadata(path: Path, key: str, text: str) -> None:
    """Replaces one metadata entry, leaving the tensors (and their checksum) as they are."""
    header, data = header_of(path)
    header["__metadata__"][key] = text
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)


def architecture(path: Path) -> dict:
    return json.loads(header_of(path)[0]["__metadata__"]["architecture"])


def every_command_refuses(folder: Path, name: str, match: str) -> None:
    for args in (["evaluate", name, "--data", "fashion-mnist-mini"], ["predict", name, "x.png"],
                 ["summary", name]):
        err = one_line_failure(cnnlab(*args, cwd=folder, timeout=60))
        assert err.startswith("cnnlab: error: ") and match in err, (args, err)


# ------------------------------------------------------------------ 1. deep nesting
def test_a_layer_argument_nested_hundreds_deep_is_one_error(saved):
    """Before: RecursionError from the recursive check of plain values, from every entry point."""
    arch = architecture(saved)
    deep = 1
    for _ in range(600):
        deep = [deep]
    arch["layers"][2]["alpha"] = deep
    set_metadata(saved, "architecture", json.dumps(arch))
    with pytest.raises(cl.ModelFileError, match=f"JSON nested more than {io.MAX_JSON_DEPTH} deep"):
        cl.load(saved)
    with pytest.raises(cl.ModelFileError, match="nested more than"):
        io.from_architecture(arch)
    every_command_refuses(saved.parent, saved.name, "nested more than")


@pytest.mark.parametrize("key, value", [("class_names", "[" * 300 + "]" * 300),
                                        ("preprocess", '{"mean": ' + "[" * 300 + "0" + "]" * 300 + "}")])
def test_other_metadata_nested_hundreds_deep_is_one_error(saved, key, value):
    set_metadata(saved, key, value)
    with pytest.raises(cl.ModelFileError, match=f"metadata '{key}': JSON nested more than"):
        cl.load(saved)


def test_long_strings_and_lists_are_refused(saved):
    set_metadata(saved, "class_names", json.dumps(["a" * (io.MAX_JSON_STRING + 1), "b", "c"]))
    with pytest.raises(cl.ModelFileError, match="a string of 65,537 characters"):
        cl.load(saved)


# ------------------------------------------------------------------ 2. non-finite content
@pytest.mark.parametrize("name", ["param.conv2d_1.weight", "buffer.batchnorm2d_1.running_var",
                                  "buffer.batchnorm2d_1.running_mean", "param.dense_1.bias"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_and_statistics_are_refused_under_a_valid_checksum(saved, name, bad):
    tensors, metadata = io.read_file(saved)
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] = bad
    io.write_file(saved, tensors, {k: v for k, v in metadata.items() if k != "sha256"})
    with pytest.raises(cl.ModelFileError, match=f"tensor {name} holds 1 non-finite values"):
        cl.load(saved)


def test_the_command_refuses_nan_weights_instead_of_printing_loss_nan(saved):
    tensors, metadata = io.read_file(saved)
    tensors["param.dense_1.weight"] = np.full_like(tensors["param.dense_1.weight"], np.nan)
    io.write_file(saved, tensors, {k: v for k, v in metadata.items() if k != "sha256"})
    every_command_refuses(saved.parent, saved.name, "param.dense_1.weight holds 54 non-finite")


@pytest.mark.parametrize("layer, key", [({"type": "ELU"}, "alpha"), ({"type": "Swish"}, "beta"),
                                        ({"type": "LeakyReLU"}, "alpha"), ({"type": "Dropout"}, "rate")])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_layer_arguments_are_refused_naming_the_argument(saved, layer, key, bad):
    arch = architecture(saved)
    arch["layers"][2] = {**layer, key: bad}
    set_metadata(saved, "architecture", json.dumps(arch))  # json writes NaN, Infinity
    with pytest.raises(cl.ModelFileError, match=rf"layers\[2\]\.{key}: -?(nan|inf) is not a finite"):
        cl.load(saved)
    arch["layers"][2][key] = bad * 1e308 if math.isinf(bad) else bad
    with pytest.raises(cl.ModelFileError, match=f"{key}: .* is not a finite number"):
        io.from_architecture(arch)


@pytest.mark.parametrize("field", ["mean", "std"])
@pytest.mark.parametrize("bad", ["NaN", "Infinity", "1e999"])
def test_non_finite_preprocessing_is_refused(saved, field, bad):
    recorded = json.loads(header_of(saved)[0]["__metadata__"]["preprocess"])
    text = json.dumps({**recorded, field: ["BAD"]}).replace('"BAD"', bad)
    set_metadata(saved, "preprocess", text)
    with pytest.raises(cl.ModelFileError, match="metadata 'preprocess'.*not a finite number"):
        cl.load(saved)


def test_json_output_stays_json_whatever_the_numbers():
    assert _finite(np.float32(np.nan)) is None and _finite(np.inf) is None and _finite(0.5) == 0.5
    result = {"n": 2, "accuracy": 0.5, "top2": 1.0, "loss": math.nan,
              "per_class": np.array([np.nan, 1.0]), "confusion": np.array([[0, 0], [1, 1]])}
    text = json.dumps(_evaluation_json("m", SimpleNamespace(describe=lambda: "data"), "test",
                                       ["a", "b"], 2, result), allow_nan=False)
    decoded = json.loads(text)
    assert decoded["loss"] is None and decoded["per_class"][0]["accuracy"] is None


# ------------------------------------------------------------------ 3. contradicting metadata
@pytest.mark.parametrize("names", [["a", "b"], ["a", "b", "c", "d"]])
def test_class_names_must_match_the_outputs(saved, names):
    set_metadata(saved, "class_names", json.dumps(names))
    with pytest.raises(cl.ModelFileError, match=f"class_names lists {len(names)} classes but the "
                                                "model has 3 outputs"):
        cl.load(saved)
    err = one_line_failure(cnnlab("predict", saved.name, "x.png", cwd=saved.parent, timeout=60))
    assert f"class_names lists {len(names)} classes" in err


# ------------------------------------------------------------------ 4. resource bombs
def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))


def limited(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python ARGS` with its address space limited to 3 GiB and 120 s: a bomb that allocates
    fails with MemoryError (a traceback) instead of being refused."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, preexec_fn=_limit_memory,
                          env={**os.environ, "PYTHONWARNINGS": "error", **(env or {})})


BOMBS = {  # (input shape, layers), the limit that refuses it
    "layers": ([1, 5, 5], [{"type": "ReLU"}] * 300_000, "300,000 layers exceed the limit of 10,000"),
    "filters": ([3, 64, 64], [{"type": "Conv2D", "filters": 300_000, "kernel_size": 1}],
                "activation values for one sample exceed the limit of 268,435,456"),
    "input": ([1, 65536, 65536], [{"type": "ReLU"}],
              "activation values for one sample exceed"),
}


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_resource_bombs_are_refused_before_anything_is_built(saved, bomb):
    shape, layers, match = BOMBS[bomb]
    arch = {**architecture(saved), "input_shape": shape, "layers": layers}
    set_metadata(saved, "architecture", json.dumps(arch))
    set_metadata(saved, "preprocess", "null")
    set_metadata(saved, "class_names", "null")
    assert saved.stat().st_size < 8 << 20  # the file is small: it asks, it does not hold
    code = f"import cnnlab as cl; cl.load({str(saved)!r})"
    result = limited("-c", code)
    assert result.returncode == 1 and "ModelFileError" in result.stderr and match in result.stderr, \
        result.stderr[-2000:]
    assert "MemoryError" not in result.stderr
    err = one_line_failure(cnnlab("summary", saved, cwd=saved.parent, timeout=120))
    assert match in err and "CNNLAB_LIMITS" in err


def test_limits_can_be_raised_and_lowered(saved):
    assert cl.load(saved).built
    with pytest.raises(cl.ModelFileError, match=r"5 layers exceed the limit of 2 \(Limits.layers\)"):
        cl.load(saved, limits=io.Limits(layers=2))
    with pytest.raises(cl.ModelFileError, match=r"parameters exceed the limit of 10 \(Limits.params\)"):
        cl.load(saved, limits=io.Limits(params=10))
    err = one_line_failure(limited("-m", "cnnlab", "summary", str(saved),
                                   env={"CNNLAB_LIMITS": "activations=50"}))
    assert "75 activation values for one sample exceed the limit of 50 (Limits.activations)" in err
    ok = limited("-m", "cnnlab", "summary", str(saved), env={"CNNLAB_LIMITS": "layers=2e4, params=1e10"})
    assert ok.returncode == 0, ok.stderr
    err = one_line_failure(limited("-m", "cnnlab", "summary", str(saved), env={"CNNLAB_LIMITS": "rows=3"}))
    assert "CNNLAB_LIMITS: expected params=N" in err


def test_every_zoo_model_fits_the_default_limits():
    limits = io.Limits()
    for name in cl.zoo.names():
        shape = cl.zoo.count(name).input_shape
        need = io.footprint([cl.zoo.get(name, build=False)], shape)
        io.check_footprint(need, limits, name)
        # Conv and Dense weights and biases: all but the per-channel values of BatchNorm, PReLU,
        # LayerNorm and LayerScale (3.5% of mobilenet-small's, whose convolutions are small)
        assert 0.96 * cl.zoo.count(name).params <= need.params <= cl.zoo.count(name).params, name


def test_a_summary_of_a_huge_input_or_class_count_is_refused_unbuilt(tmp_path):
    for args, match in ((["--input", "3x3000x3000"], "resnet50 at input 3x3000x3000: 8,006,813,776 "
                                                     "activation values"),
                        (["--classes", "100000000"], "parameters exceed the limit")):
        result = limited("-m", "cnnlab", "summary", "resnet50", *args)
        err = one_line_failure(result)
        assert match in err, err


# ------------------------------------------------------------------ 5. special files
@pytest.fixture
def specials(tmp_path) -> dict[str, Path]:
    os.mkfifo(tmp_path / "fifo.safetensors")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "zero.safetensors").symlink_to("/dev/zero")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    return {"fifo": tmp_path / "fifo.safetensors", "zero-link": tmp_path / "zero.safetensors",
            "dev-zero": Path("/dev/zero"), "fifo-image": tmp_path / "fifo.png",
            "zero-image": tmp_path / "zero.png"}


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="POSIX only")
@pytest.mark.parametrize("kind", ["fifo", "zero-link", "dev-zero"])
def test_a_fifo_or_a_device_as_model_path_is_refused_at_once(specials, kind):
    """Before: a FIFO blocked forever, /dev/zero was read until memory ran out. Under a timeout and
    a memory limit, in a subprocess, so that a regression cannot hang or exhaust the suite."""
    path = specials[kind]
    result = limited("-c", f"import cnnlab as cl; cl.load({str(path)!r})")
    assert result.returncode == 1 and "ModelFileError" in result.stderr, result.stderr[-2000:]
    assert "not a regular file" in result.stderr
    for args in (["predict", path, "x.png"], ["summary", path]):
        err = one_line_failure(cnnlab(*args, cwd=path.parent, timeout=60))
        assert "cannot read (not a regular file" in err, err


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="POSIX only")
@pytest.mark.parametrize("kind", ["fifo-image", "zero-image"])
def test_a_fifo_or_a_device_as_image_is_refused_at_once(specials, saved, kind):
    image = specials[kind]
    code = ("import cnnlab as cl; from cnnlab.data.folder import read_image; "
            f"read_image({str(image)!r}, (1, 5, 5))")
    result = limited("-c", code)
    assert result.returncode == 1 and "DataError" in result.stderr and "not a regular file" in \
        result.stderr, result.stderr[-2000:]
    result = subprocess.run([sys.executable, "-m", "cnnlab", "predict", str(saved), str(image)],
                            capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory)
    err = one_line_failure(result)
    assert "not a regular file" in err, err


def test_read_regular_reads_at_most_the_declared_size(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    assert read_regular(path) == b"12345"
    with pytest.raises(OSError, match="5 bytes, more than the 4 allowed"):
        read_regular(path, 4)
    with pytest.raises(IsADirectoryError):
        read_regular(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "missing")
