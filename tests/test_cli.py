"""The `cnnlab` command end to end, each call a subprocess (`python -m cnnlab ...`)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.cli.common import Failure, say
from cnnlab.cli.runs import recorded_data
from cnnlab.data import Preprocess, sources
from tests.test_viz import cnnlab as here  # in this process: (status, out, err)

Image = pytest.importorskip("PIL.Image")
FASHION = cl.data.class_names("fashion-mnist")


def cnnlab(*args, cwd, timeout=120):
    env = {**os.environ, "PYTHONWARNINGS": "error", "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_failure(result, code=1):
    """Exit `code`, exactly one line on stderr and no traceback."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def run(work):
    """One short training run on the bundled set; the config says 3 epochs, the flag says 1."""
    (work / "short.toml").write_text('data = "fashion-mnist-mini"\nepochs = 3\nlimit = 1000\n')
    result = cnnlab("train", "-c", "short.toml", "--epochs", "1", "--out", "run", cwd=work)
    assert result.returncode == 0, result.stderr
    return work / "run", result


def test_train_writes_a_run_and_ends_with_the_test_accuracy(run):
    folder, result = run
    # --val-split's default 0.1 of the 1,000 training images (--limit), stratified by class
    counts = re.search(r"fashion-mnist-mini \(the bundled subset of Fashion-MNIST\): (\d+) training, "
                       r"(\d+) validation, 2,000 test images", result.stderr)
    assert counts and int(counts[1]) + int(counts[2]) == 1000 and 95 <= int(counts[2]) <= 105
    assert "test  loss " in result.stderr and "on 2,000 test images, evaluated once, after training" \
        in result.stderr
    assert "epoch 1/1" in result.stderr and "epoch 2/" not in result.stderr
    line = result.stdout.strip()
    assert line.startswith("test accuracy ") and line.endswith(
        "on 2,000 images — model saved to run/model.safetensors")
    for name in ("model.safetensors", "best.safetensors", "last.ckpt.safetensors", "config.toml"):
        assert (folder / name).is_file()
    assert len((folder / "metrics.csv").read_text().splitlines()) == 2  # header + 1 epoch
    model = cl.load(folder / "model.safetensors")
    assert model.class_names == FASHION and model.input_shape == (1, 28, 28)


def test_evaluate_prints_accuracy_per_class_and_confusion(run, work):
    result = cnnlab("evaluate", run[0] / "model.safetensors", cwd=work)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "fashion-mnist-mini" in out and "test split: 2,000 images" in out  # data from config.toml
    assert "accuracy " in out and "top-5 " in out
    assert all(name in out for name in FASHION)
    assert "true \\ predicted" in out
    test_accuracy = float(run[1].stdout.split()[2].rstrip("%"))
    assert f"accuracy {test_accuracy:.2f}%" in out


@pytest.fixture(scope="module")
def images(work):
    """A PNG and a JPEG from the test set, resized to 56×40 (H×W) and made RGB."""
    x, y = cl.data.load("fashion-mnist-mini", "test")
    paths = []
    for i, name in enumerate(["first.png", "second.jpg"]):
        Image.fromarray(x[i, 0]).resize((40, 56)).convert("RGB").save(work / name)
        paths.append(name)
    return paths, y[:2]


def test_predict_json(run, work, images):
    files, _ = images
    result = cnnlab("predict", run[0] / "model.safetensors", *files, "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "first.png: RGB 56×40 → grayscale 28×28" in result.stderr
    assert "second.jpg: RGB 56×40 → grayscale 28×28" in result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["file"] for row in rows] == files
    for row in rows:
        # the same keys whatever --top is (0.2.0: "top", where 0.1 had "top5", "top10", ...)
        assert set(row) == {"file", "top"} and len(row["top"]) == 5
        probs = [entry["prob"] for entry in row["top"]]
        assert all(set(entry) == {"class", "prob"} for entry in row["top"])
        assert all(entry["class"] in FASHION for entry in row["top"])
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6

    every = cnnlab("predict", run[0] / "model.safetensors", files[0], "--json", "--top", "10", cwd=work)
    row = json.loads(every.stdout)
    assert set(row) == {"file", "top"}
    assert sorted(entry["class"] for entry in row["top"]) == sorted(FASHION)
    assert sum(entry["prob"] for entry in row["top"]) == pytest.approx(1, abs=1e-4)


def test_predict_text(run, work, images):
    result = cnnlab("predict", run[0] / "model.safetensors", images[0][0], "--top", "3", cwd=work)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "first.png" and len(lines) == 4 and lines[1].endswith("%")


def test_summary_of_a_zoo_name_and_of_a_model_file(run, work):
    result = cnnlab("summary", "fmnist-cnn", cwd=work)
    assert result.returncode == 0 and "Total params: 421,642" in result.stdout
    result = cnnlab("summary", "lenet5", "--input", "3×32×32", "--classes", "100", cwd=work)
    assert result.returncode == 0 and "Input: 32×32×3" in result.stdout
    result = cnnlab("summary", run[0] / "model.safetensors", cwd=work)
    assert result.returncode == 0 and "Total params: 421,642" in result.stdout
    assert "Classes: T-shirt/top, Trouser" in result.stdout


def test_explain_the_lectures_examples(work):
    result = cnnlab("explain", "conv", "--input", "32x32x3", "--filters", "10", "--size", "5",
                    "--stride", "1", "--pad", "2", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "produces a volume H2×W2×D2 = 32×32×10" in result.stdout
    assert "parameters: (5·5·3 + 1)·10 = 760" in result.stdout
    result = cnnlab("explain", "pool", "--input", "7x7x3", "--size", "3", "--stride", "3", cwd=work)
    assert result.returncode == 0, result.stderr  # explaining a misfit is a success
    assert "(7 − 3 + 2·0)/3 + 1 = 2.33 is not a whole number" in result.stdout
    assert "doesn't fit" in result.stdout and 'fit="floor"' in result.stdout


def test_zoo_lists_the_models(work):
    result = cnnlab("zoo", cwd=work)
    assert result.returncode == 0
    assert "fmnist-cnn" in result.stdout and "421,642" in result.stdout and "28×28×1" in result.stdout


def test_resume_continues_the_run(run, work):
    folder = work / "resumed"
    shutil.copytree(run[0], folder)
    result = cnnlab("train", "--resume", "resumed", "--epochs", "2", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr and "epoch 2/2" in result.stderr
    assert "epoch 1/" not in result.stderr
    assert len((folder / "metrics.csv").read_text().splitlines()) == 3
    assert "model saved to resumed/model.safetensors" in result.stdout


def test_image_folders_train_with_a_held_out_part_and_evaluate_by_class_name(run, work):
    x, y = cl.data.load("fashion-mnist-mini", "test")
    for i in range(60):  # 3 classes × 20 images; "T-shirt_top" matches the class T-shirt/top
        folder = work / "shop" / ["T-shirt_top", "Trouser", "Bag"][i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i, 0]).resize((32, 32)).save(folder / f"{i}.png")
    result = cnnlab("train", "--data", "shop", "--model", "mlp", "--epochs", "1", "--out", "shoprun",
                    cwd=work)
    assert result.returncode == 0, result.stderr
    assert "60 images in 3 classes; converted: 60 resized to 28×28 (from 32×32)" in result.stderr
    # 18 training images a class: 2 of each (0.1, rounded) held out for validation
    assert "48 training, 6 validation, 6 held-out images" in result.stderr
    assert result.stdout.startswith("held-out accuracy ")
    assert "(top-3 100.0%) on 6 images" in result.stdout
    # evaluate scores exactly what train held out: the 10th and 20th image of each class
    result = cnnlab("evaluate", "shoprun/model.safetensors", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "held-out split: 6 images" in result.stdout
    # the Fashion-MNIST model on the folder: its classes are matched by name, all 60 images used
    result = cnnlab("evaluate", run[0] / "model.safetensors", "--data", "shop", "--split", "all", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "all split: 60 images" in result.stdout
    table = dict(line.split(None, 1) for line in result.stdout.splitlines()
                 if line.startswith(("Trouser ", "Bag ", "Sandal ")))
    assert table["Trouser"].split()[1] == "20" and table["Sandal"].split() == ["—", "0"]


@pytest.mark.parametrize("args", [
    [],
    ["train", "--epochs", "0"],
    ["train", "--optimizer", "nesterov"],
    ["train", "--model", "resnet9000"],
    ["train", "--bogus"],
    ["summary", "fmnist-cnn", "--input", "3x32"],
    ["explain", "conv", "--input", "32x32", "--filters", "10", "--size", "5"],
    ["explain", "pool", "--input", "7x7x3"],
    ["predict", "model.safetensors"],
])
def test_usage_errors_exit_2(work, args):
    result = cnnlab(*args, cwd=work)
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr


def test_own_usage_errors_are_one_line(work):
    err = one_line_failure(cnnlab("train", "--optimizer", "adam", "--momentum", "0.9", cwd=work), 2)
    assert err.startswith("cnnlab train: error: --momentum applies to sgd and rmsprop")
    (work / "typo.toml").write_text("epochs = 1\nlearning-rate = 0.1\n")
    err = one_line_failure(cnnlab("train", "-c", "typo.toml", cwd=work), 2)
    assert "unknown key 'learning-rate'" in err
    (work / "wrong.toml").write_text('epochs = "five"\n')
    assert "epochs" in one_line_failure(cnnlab("train", "-c", "wrong.toml", cwd=work), 2)
    err = one_line_failure(cnnlab("summary", "resnet9000", cwd=work), 2)
    assert "unknown model 'resnet9000'" in err and "fmnist-cnn" in err


def test_failures_exit_1_with_one_line(run, work):
    model = run[0] / "model.safetensors"
    err = one_line_failure(cnnlab("evaluate", "missing.safetensors", cwd=work))
    assert err.startswith("cnnlab: error: missing.safetensors: cannot read")
    err = one_line_failure(cnnlab("predict", model, "nothere.png", cwd=work))
    assert err == "cnnlab: error: nothere.png: no such file\n"
    (work / "junk.safetensors").write_bytes(b"\x00" * 64)
    assert "not a safetensors file" in one_line_failure(cnnlab("summary", "junk.safetensors", cwd=work))
    (work / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert "broken.png" in one_line_failure(cnnlab("predict", model, "broken.png", cwd=work))
    err = one_line_failure(cnnlab("evaluate", model, "--data", "no/such/folder", cwd=work))
    assert "neither a dataset" in err
    err = one_line_failure(cnnlab("train", "--resume", "no-such-run", cwd=work))
    assert "no checkpoint to resume" in err


def test_debug_shows_the_traceback(work):
    result = cnnlab("--debug", "evaluate", "missing.safetensors", cwd=work)
    assert result.returncode == 1 and "Traceback" in result.stderr and "ModelFileError" in result.stderr


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "summary", "explain", "explain conv",
                                     "explain pool", "zoo", "lr-find", "demo conv", "export"])
def test_every_command_has_help_with_examples(work, command):
    result = cnnlab(*command.split(), "--help", cwd=work)
    assert result.returncode == 0 and "example" in result.stdout


def test_the_console_script_is_declared():
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"cnnlab": "cnnlab.cli:main"}
    assert any(dep.lower().startswith("pillow") for dep in project["dependencies"])


def test_train_says_which_fashion_mnist_it_uses(monkeypatch, capsys):
    monkeypatch.setattr(sources, "is_available", lambda name, root=None: False)
    assert sources.default_data(report=say) == "fashion-mnist-mini"
    err = capsys.readouterr().err
    assert "bundled subset" in err and "sudo apt-get install dataset-fashion-mnist" in err
    monkeypatch.setattr(sources, "is_available", lambda name, root=None: True)
    monkeypatch.setattr(sources, "locate", lambda name, split: [Path("/data/fm/train-images-idx3-ubyte")])
    assert sources.default_data(report=say) == "fashion-mnist"
    assert capsys.readouterr().err == "data: Fashion-MNIST, the full set, from /data/fm\n"


# ------------------------------------------------- the data recorded in a run's config.toml
def test_recorded_data_is_none_without_it_and_a_failure_naming_a_damaged_file(tmp_path):
    config = tmp_path / "config.toml"
    assert recorded_data(tmp_path) is None  # no config.toml
    config.write_text("epochs = 3\n")
    assert recorded_data(tmp_path) is None  # a config.toml without data
    config.write_text('data = "mnist"\n')
    assert recorded_data(tmp_path) == "mnist"
    for content, match in ((b"\xff\xfe", "not valid TOML"), (b"data = [1, 2\n", "not valid TOML"),
                           (b"data = " + b"[" * 5000 + b"]" * 5000, "not valid TOML"),
                           (b"data = 3\n", "data = 3 is not a dataset name or folder")):
        config.write_bytes(content)
        with pytest.raises(Failure, match=f"^{re.escape(str(config))}: {match}.*; give --data$"):
            recorded_data(tmp_path)


@pytest.fixture(scope="module")
def small_run(work):
    """A run directory made by hand: an MLP for 8×8 grayscale images of the classes dark and light,
    and an image folder of those (12 images each) for its config.toml to name."""
    shapes = work / "shapes"
    for i in range(24):
        folder = shapes / ["dark", "light"][i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 40 + 170 * (i % 2), np.uint8)).save(folder / f"{i:02}.png")
    model = cl.zoo.mlp(num_classes=2, input_shape=(1, 8, 8))
    model.preprocess = Preprocess([0.5], [0.25])
    model.class_names = ["dark", "light"]
    (work / "small").mkdir()
    cl.save(model, work / "small" / "model.safetensors")
    return work / "small", shapes


def test_evaluate_and_report_use_the_data_recorded_in_config_toml(small_run, work):
    run, shapes = small_run
    (run / "config.toml").write_text(f"data = {json.dumps(str(shapes))}\nepochs = 1\n")
    result = cnnlab("evaluate", run / "model.safetensors", cwd=work)
    assert result.returncode == 0, result.stderr
    # evaluate and report score the same images: the tenth of each class that train holds out
    assert f"model.safetensors on {shapes}, held-out split: 2 images" in result.stdout
    assert "24 images in 2 classes" in result.stderr
    result = cnnlab("report", run, cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{run / 'report.html'}\n"
    assert f"{shapes}, held-out split" in (run / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("content, match", [
    (b"\xff\xfe", "not valid TOML"),
    (b"data = 3\n", "data = 3 is not a dataset name or folder"),
])
def test_evaluate_and_report_refuse_a_damaged_config_toml_naming_it(small_run, work, content, match):
    run, _ = small_run
    (run / "config.toml").write_bytes(content)
    for args in (["evaluate", run / "model.safetensors"], ["report", run]):
        err = one_line_failure(cnnlab(*args, cwd=work))
        assert err.startswith(f"cnnlab: error: {run / 'config.toml'}: {match}"), err
        assert err.endswith("; give --data\n"), err
    # --data overrides the damaged record
    result = cnnlab("evaluate", run / "model.safetensors", "--data", small_run[1], cwd=work)
    assert result.returncode == 0, result.stderr


# ------------------------------ issue 15: summary's class count, explain's flags, the order of sizes


@pytest.mark.parametrize("args, header, total", [
    # the count cnnlab zoo lists (25.6 M), not the 23.5 M of a 10-class head
    (["resnet50"], "resnet50: 1000 classes, input 3x224x224 (C×H×W)", "25,557,032"),
    (["resnet50", "--classes", "10"], "resnet50: 10 classes, input 3x224x224 (C×H×W)", "23,528,522"),
    (["lenet5"], "lenet5: 10 classes, input 1x28x28 (C×H×W)", "61,706"),
    (["lenet5", "--input", "3x32x32", "--classes", "100"], "lenet5: 100 classes, input 3x32x32 (C×H×W)",
     "Total params: 69,656"),
])
def test_summary_of_a_zoo_name_defaults_to_its_own_classes_and_says_them_first(capsys, args, header,
                                                                              total):
    status, out, err = here(capsys, "summary", *args)
    assert status == 0, err
    assert out.splitlines()[0] == f"{header}; --classes N and --input CxHxW change them"
    assert total in out
    if len(args) == 1:
        assert f"Total params: {cl.zoo.count(args[0]).params:,}" in out


def test_summary_of_a_model_file_says_its_classes_and_input_first(capsys, tmp_path):
    cl.save(cl.zoo.mlp(num_classes=3, input_shape=(1, 8, 8)), tmp_path / "m.safetensors")
    status, out, err = here(capsys, "summary", tmp_path / "m.safetensors")
    assert status == 0, err
    assert out.splitlines()[0] == f"{tmp_path / 'm.safetensors'}: 3 classes, input 1x8x8 (C×H×W)"


def test_explain_words_its_fixes_with_its_flags_and_the_api_keeps_its_arguments(capsys):
    status, out, err = here(capsys, "explain", "pool", "--input", "7x7x3", "--size", "3", "--stride", "3")
    assert status == 0, err
    assert out.splitlines()[-1].endswith(
        "doesn't fit a 7×7 input. Use --pad 1, --stride 1 or 2, or drop the leftover rows and "
        'columns as PyTorch does (fit="floor" in Python).')
    assert "padding=" not in out
    status, out, _ = here(capsys, "explain", "pool", "--input", "7x7x3", "--size", "3", "--pad", "2")
    assert status == 0 and out.endswith("the edge windows would hold only padding. Use --pad ≤ 1.\n")
    status, out, _ = here(capsys, "explain", "conv", "--input", "2x2x1", "--filters", "1", "--size", "3")
    assert status == 0 and out.endswith("Received: input size 2×2, --pad 0\n")
    # the Python API, after the command as before it: the layer's argument names
    with pytest.raises(cl.ShapeError, match=re.escape('Use padding=1, stride 1 or 2, or fit="floor".')):
        cl.MaxPool2D(3, 3).output_shape((3, 7, 7))
    with pytest.raises(cl.ShapeError, match=re.escape("Use padding ≤ (1, 1).")):
        cl.MaxPool2D(3, padding=2).output_shape((3, 7, 7))


@pytest.mark.parametrize("args, fix", [
    (["summary", "fmnist-cnn", "--input", "28x28x1"],
     "argument --input: expected C×H×W (channels first), got '28x28x1': did you mean 1x28x28?"),
    (["train", "--input", "64×64×3"],
     "expected C×H×W (channels first), got '64×64×3': did you mean 3x64x64?"),
    (["explain", "conv", "--input", "3x32x32", "--filters", "10", "--size", "5"],
     "argument --input: expected H×W×D (depth last), got '3x32x32': did you mean 32x32x3?"),
    (["explain", "pool", "--input", "1x28x28", "--size", "2"], "did you mean 28x28x1?"),
    (["demo", "conv", "--input", "4x9x9", "--out", "unused"], "did you mean 9x9x4?"),
])
def test_a_size_in_the_other_order_is_a_usage_error_that_shows_the_fix(capsys, args, fix):
    status, out, err = here(capsys, *args)
    assert status == 2 and fix in err and out == ""


def test_a_config_files_input_in_the_other_order_shows_the_fix(capsys, tmp_path):
    (tmp_path / "r.toml").write_text('input = "32x32x3"\n')
    status, _, err = here(capsys, "train", "-c", tmp_path / "r.toml")
    assert status == 2
    assert "input: expected C×H×W (channels first), got '32x32x3': did you mean 3x32x32?" in err


@pytest.mark.parametrize("text, chw, hwd", [  # what each flag type reads; None: refused
    ("3x32x32", (3, 32, 32), None),      # as C×H×W: fine; as H×W×D: 32x32x3 was meant
    ("32x32x3", None, (32, 32, 3)),
    ("1×28×28", (1, 28, 28), None),
    ("3x3x64", (3, 3, 64), (3, 3, 64)),  # a 3×3 map of 64 channels: taken as written
    ("64x3x3", (64, 3, 3), (64, 3, 3)),
    ("1x1x512", (1, 1, 512), (1, 1, 512)),
    ("512x1x1", (512, 1, 1), (512, 1, 1)),
    ("3x5x4", (3, 5, 4), (3, 5, 4)),     # channels-like at both ends: taken as written
    ("7x7x7", (7, 7, 7), (7, 7, 7)),
])
def test_size_flags_refuse_only_what_looks_written_in_the_other_order(text, chw, hwd):
    import argparse

    from cnnlab.cli.common import shape_chw, shape_hwd

    for parse, expected in ((shape_chw, chw), (shape_hwd, hwd)):
        if expected is None:
            with pytest.raises(argparse.ArgumentTypeError, match="did you mean"):
                parse(text)
        else:
            assert parse(text) == expected


@pytest.mark.parametrize("command, order", [
    ("train", "C×H×W: channels first"), ("summary", "C×H×W: channels first"),
    ("explain conv", "H×W×D: depth last"), ("explain pool", "H×W×D: depth last"),
    ("demo conv", "H×W×D: depth last"),
])
def test_help_says_which_order_input_takes(capsys, command, order):
    status, out, _ = here(capsys, *command.split(), "--help")
    assert status == 0
    assert order in " ".join(out.split())


def test_evaluate_json_has_a_stable_key_set(run, work):
    keys = {"model", "data", "split", "tta", "n", "accuracy", "top_k", "top", "loss", "classes", "per_class",
            "confusion"}
    result = cnnlab("evaluate", run[0] / "model.safetensors", "--data", "fashion-mnist-mini", "--json",
                    cwd=work)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == keys and report["n"] == 2000 and report["top_k"] == 5
    assert report["split"] == "test" and len(report["classes"]) == 10
    assert sum(row["n"] for row in report["per_class"]) == 2000
    assert np.array(report["confusion"]).sum() == 2000
    assert 0 <= report["accuracy"] <= report["top"] <= 1


def test_quiet_is_accepted_before_and_after_the_command(run, work):
    for args in (["--quiet", "evaluate"], ["evaluate", "-q"]):
        result = cnnlab(*args, run[0] / "model.safetensors", "--data", "fashion-mnist-mini", cwd=work)
        assert result.returncode == 0, result.stderr

