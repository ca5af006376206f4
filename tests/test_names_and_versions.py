"""Issue 17: names that are not UTF-8, a test split of another size, and file format versions.

Non-UTF-8 names are real folders and files made from bytes (os.mkdir(b"caf\\xe9")); Python gives
them as surrogate escapes ("caf\\udce9"). The commands run as subprocesses with a strict UTF-8
stdout (PYTHONIOENCODING=utf-8:strict), where printing a surrogate would raise.

The fixtures cnnlab-0.1.0-*.safetensors were written by cnnlab 0.1.0 (commit 69befa0) with
tests/fixtures/make_fixtures.py; cnnlab-0.1.0-expected.json holds their training data, a probe
input and the probabilities 0.1.0 predicted for it.
"""

import json
import os
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.cli.parser import build_parser
from cnnlab.cli.runs import read_config, recorded_data, write_config
from cnnlab.data.idx import write_idx
from cnnlab.data.sources import readable
from tests.test_cli import cnnlab

Image = pytest.importorskip("PIL.Image")
FIXTURES = Path(__file__).parent / "fixtures"
CAFE = os.fsdecode(b"caf\xe9")  # "caf\udce9": a name that is not UTF-8


@pytest.fixture(autouse=True)
def strict_stdout(monkeypatch):
    monkeypatch.setenv("PYTHONIOENCODING", "utf-8:strict")  # the subprocesses inherit it


def _png(path: bytes, value: np.ndarray) -> None:
    Image.fromarray(value).save(os.fsdecode(path), format="PNG")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """<tmp>/caf\\xe9/{a, b\\xe9}/NN.png: 20 noise images and 20 flat ones, 8×8 grayscale."""
    root = os.path.join(os.fsencode(tmp_path_factory.mktemp("names")), b"caf\xe9")
    rng = np.random.default_rng(0)
    for name in (b"a", b"b\xe9"):
        os.makedirs(os.path.join(root, name))
        for i in range(20):
            value = rng.integers(0, 256, (8, 8), dtype=np.uint8) if name == b"a" else np.full(
                (8, 8), 200 + i, np.uint8)
            _png(os.path.join(root, name, b"%02d.png" % i), value)
    return Path(os.fsdecode(root))


@pytest.fixture(scope="module")
def run(photos) -> Path:
    """One epoch of mlp on the folder: the run directory."""
    result = cnnlab("train", "--data", photos, "--model", "mlp", "--input", "1x8x8", "--epochs", "1",
                    "-b", "8", "-q", "--out", "run", cwd=photos.parent)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return photos.parent / "run"


def test_readable_shows_the_bytes_that_are_not_utf8():
    assert readable(CAFE) == "caf\\xe9" and readable("café") == "café"
    assert readable("x\ud800") == "x\\ud800"  # a lone surrogate that is no escaped byte
    readable(CAFE).encode("utf-8")  # strict UTF-8 takes it


def test_config_records_a_path_that_is_not_utf8_so_that_it_reads_back(tmp_path):
    folder = tmp_path / CAFE / "data"
    config = tmp_path / "config.toml"
    write_config(config, {"model": "mlp", "data": str(folder), "epochs": 2})
    text = config.read_bytes().decode("utf-8")  # valid UTF-8, valid TOML
    assert tomllib.loads(text)["data"] == "file://" + str(tmp_path / "caf%E9" / "data")
    assert read_config(config, build_parser().parse_args(["train"]).actions)["data"] == str(folder)
    assert recorded_data(tmp_path) == str(folder)


def test_training_on_names_that_are_not_utf8_records_resumes_and_reports(run, photos):
    config = (run / "config.toml").read_text("utf-8")
    assert tomllib.loads(config)["data"].startswith("file://")
    assert recorded_data(run) == str(photos.resolve())
    assert cl.load(run / "model.safetensors").class_names == ["a", "b\udce9"]
    page = (run / "report.html").read_bytes().decode("utf-8")
    assert "b\\xe9" in page and "caf\\xe9" in page
    resumed = cnnlab("train", "--resume", run, "--epochs", "2", "-q", cwd=photos.parent)
    assert resumed.returncode == 0, resumed.stderr
    assert len((run / "metrics.csv").read_text().splitlines()) == 3  # header + 2 epochs
    assert resumed.stdout.rstrip().endswith(f"model saved to {run}/model.safetensors")
    report = cnnlab("report", run, cwd=photos.parent)
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    evaluate = cnnlab("evaluate", run / "model.safetensors", cwd=photos.parent)
    assert evaluate.returncode == 0, evaluate.stderr
    assert "caf\\xe9" in evaluate.stdout and "b\\xe9" in evaluate.stdout


def test_predict_goes_on_past_a_file_name_that_is_not_utf8(run, photos):
    odd = os.path.join(os.fsencode(photos), b"b\xe9", b"05.png")
    files = [photos / "a" / "03.png", os.fsdecode(odd)]
    result = cnnlab("predict", run / "model.safetensors", *files, cwd=photos.parent)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("caf\\xe9/a/03.png") and lines[3].endswith("caf\\xe9/b\\xe9/05.png")
    assert lines[4].split()[0] == "b\\xe9"  # a flat image: the flat class
    as_json = cnnlab("predict", run / "model.safetensors", *files, "--json", cwd=photos.parent)
    assert as_json.returncode == 0, as_json.stderr
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [os.fsencode(row["file"]) for row in rows] == [os.fsencode(files[0]), odd]


def test_a_test_split_of_another_size_is_refused_before_training(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "digits"
    data.mkdir()
    write_idx(data / "train-images-idx3-ubyte", rng.integers(0, 256, (60, 8, 8), dtype=np.uint8))
    write_idx(data / "train-labels-idx1-ubyte", (np.arange(60) % 10).astype(np.uint8))
    write_idx(data / "t10k-images-idx3-ubyte", rng.integers(0, 256, (20, 10, 10), dtype=np.uint8))
    write_idx(data / "t10k-labels-idx1-ubyte", (np.arange(20) % 10).astype(np.uint8))
    result = cnnlab("train", "--data", data, "--model", "mlp", "--epochs", "1", "-q", "--out", "run",
                    cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"cnnlab: error: {data}: the test images are 10×10×1 but the training images are 8×8×1 "
        "(H×W×D); a model takes one size: give both splits images of the same size")
    assert "epoch 1" not in result.stderr and not (tmp_path / "run" / "last.ckpt.safetensors").exists()


# ------------------------------------------------------------------ file format versions
@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((FIXTURES / "cnnlab-0.1.0-expected.json").read_text())


def test_a_model_file_of_cnnlab_0_1_0_loads_and_predicts_as_it_did(expected):
    model = cl.load(FIXTURES / "cnnlab-0.1.0-model.safetensors")
    assert model.class_names == ["cat", "dog", "bird"] and model.input_shape == (1, 8, 8)
    probs = cl.predict(model, np.array(expected["x_probe"], np.uint8))
    np.testing.assert_allclose(probs, expected["probs"], rtol=1e-6, atol=1e-7)


def test_a_checkpoint_of_cnnlab_0_1_0_resumes_with_fit(expected):
    path = FIXTURES / "cnnlab-0.1.0-checkpoint.safetensors"
    saved = cl.io.read_checkpoint(path)
    assert saved.training["epoch"] == 1
    model = saved.model()
    train = np.array(expected["x_train"], np.uint8), np.array(expected["y_train"], np.int64)
    history = cl.fit(model, train, loss=cl.SoftmaxCrossEntropy(),
                     optimizer=cl.optim.SGD(model, lr=0.05, momentum=0.9), epochs=2,
                     batch_size=expected["batch_size"], seed=expected["seed"], resume=path,
                     progress=False, verbose=False)
    assert [row["epoch"] for row in history.rows] == [1, 2]
    assert np.isfinite(history.rows[1]["train_loss"])


def _rewritten(tmp_path, **metadata) -> Path:
    """The 0.1.0 model file with some metadata changed (the checksum covers only the tensors)."""
    tensors, meta = cl.io.read_file(FIXTURES / "cnnlab-0.1.0-model.safetensors")
    meta.pop("sha256")
    path = tmp_path / "model.safetensors"
    cl.io.write_file(path, tensors, {**meta, **metadata})
    return path


@pytest.mark.parametrize("metadata, version, said", [
    ({"format": "cnnlab/2"}, 2, "cnnlab/2"), ({"format": "cnnlab/17"}, 17, "cnnlab/17"),
    ({"format": "cnnlab/1", "format_version": "3"}, 3, "cnnlab/1, format_version 3"),
])
def test_a_file_of_a_newer_format_is_refused_naming_both_versions(tmp_path, metadata, version, said):
    path = _rewritten(tmp_path, **metadata)
    message = (f"not a cnnlab model file this cnnlab can read: format version {version} ({said}) is "
               f"newer than ours (version {cl.io.FORMAT_VERSION}, cnnlab/1); upgrade cnnlab "
               "(pip install --upgrade cnnlab) to load it")
    with pytest.raises(cl.ModelFileError, match="^" + re.escape(f"{path}: {message}")):
        cl.load(path)
    result = cnnlab("predict", path, FIXTURES / "x.png", cwd=tmp_path)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "upgrade cnnlab" in result.stderr


@pytest.mark.parametrize("metadata", [
    {"format": "cnnlab/0"}, {"format": "cnnlab/one"}, {"format": "keras"}, {"format": "cnnlab/1 "},
    {"format_version": "two"},
])
def test_an_unknown_format_is_refused_as_before(tmp_path, metadata):
    path = _rewritten(tmp_path, **metadata)
    with pytest.raises(cl.ModelFileError, match="not a cnnlab model file|not a version number"):
        cl.load(path)


def test_this_cnnlab_writes_its_own_format(tmp_path):
    assert cl.io.FORMAT == f"cnnlab/{cl.io.FORMAT_VERSION}" == "cnnlab/1"
    model = cl.load(FIXTURES / "cnnlab-0.1.0-model.safetensors")
    cl.save(model, tmp_path / "again.safetensors")
    assert cl.io.read_file(tmp_path / "again.safetensors")[1]["format"] == cl.io.FORMAT
