"""cl.viz: every figure decodes and shows something; the convolution demo reproduces the lecture
and a naive loop; the report holds every section; `cnnlab report` and `cnnlab demo` end to end."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import cnnlab as cl
from cnnlab.cli import main
from cnnlab.viz import demo_gif, html_report
from cnnlab.viz.figures import worst_mistakes
from tests.test_lecture import O0, O1, W0, W1, X

FASHION = cl.data.class_names("fashion-mnist")


def picture(data: bytes, kind: str = "PNG") -> np.ndarray:
    """Decodes `data` as a `kind` image and checks it is not blank: pixel variance > 0 and more
    than one colour. Returns the pixels (H, W, 3)."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == kind
        pixels = np.asarray(image.convert("RGB")).astype(np.int32)
    colours = np.unique(pixels[..., 0] << 16 | pixels[..., 1] << 8 | pixels[..., 2])
    assert pixels.var() > 0 and len(colours) > 1
    return pixels


def demo_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="demo-data">(.*?)</script>', page, re.S)
    assert found, "the page embeds its numbers as JSON"
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """LeNet-5 after one short epoch on the bundled set, its run folder and 200 test images."""
    run = tmp_path_factory.mktemp("run")
    x, y = cl.data.load("fashion-mnist-mini", "train")
    xt, yt = cl.data.load("fashion-mnist-mini", "test")
    model = cl.zoo.get("lenet5")
    model.class_names = FASHION
    cl.fit(model, (x[:256], y[:256]), loss=cl.SoftmaxCrossEntropy(), epochs=1, batch_size=64,
           optimizer=cl.optim.SGD(model, lr=0.05, momentum=0.9), val=(xt[:200], yt[:200]),
           out=run, verbose=False, progress=False)
    return model, run, xt[:200], yt[:200]


# ---------------------------------------------------------------------- figures
def test_every_figure_decodes_and_is_not_blank(trained, tmp_path):
    model, run, x, y = trained
    probs = cl.predict(model, x)
    matrix = cl.evaluate(model, (x, y))["confusion"]
    figures = {
        "filters": cl.viz.filters(model, path=tmp_path / "filters.png"),
        "maps": cl.viz.feature_maps(model, x[0]),
        "curves": cl.viz.curves(run / "metrics.csv"),
        "confusion": cl.viz.confusion(matrix, FASHION),
        "mistakes": cl.viz.mistakes(model, x, y, FASHION, probs=probs),
    }
    for name, data in figures.items():
        assert picture(data).shape[0] > 100, name
    assert (tmp_path / "filters.png").read_bytes() == figures["filters"]


def test_curves_take_a_history_or_its_rows_with_one_epoch_and_no_validation():
    rows = [{"epoch": 1, "train_loss": 1.2, "train_acc": 0.6, "val_loss": None, "val_acc": None,
             "lr": 0.05, "seconds": 1.0}]
    picture(cl.viz.curves(cl.History(rows)))
    with pytest.raises(ValueError, match="no epochs"):
        cl.viz.curves([])


def test_filters_in_colour_as_mlp_templates_and_refused_without_weights():
    rgb = cl.Sequential([cl.Conv2D(6, 5), cl.ReLU()], input_shape=(3, 12, 12))
    assert picture(cl.viz.filters(rgb)).shape[0] > 50
    mlp = cl.zoo.get("mlp")  # no convolution: the first Dense layer's rows as 28×28 templates
    picture(cl.viz.filters(mlp, max_filters=8))
    with pytest.raises(ValueError, match="no 2-D convolution"):
        cl.viz.filters(cl.Sequential([cl.GlobalAvgPool2D(), cl.Dense(3)], input_shape=(2, 4, 4)))


def test_feature_maps_reach_convolutions_inside_containers_and_leave_the_model_as_it_was():
    model = cl.zoo.get("resnet8")
    image = np.random.default_rng(0).integers(0, 256, model.input_shape, dtype=np.uint8)
    names = [name for name, _ in cl.viz.activations(model, image)]
    assert names[0] == "conv2d_1" and "residual_2.shortcut.conv2d_1" in names and len(names) == 9
    assert not any("forward" in vars(layer) for _, layer in cl.core.walk(model))
    scores = model.forward(model.preprocess(image[None]) if model.preprocess else image[None] / 255)
    assert scores.shape == (1, 10)


def test_mistakes_are_the_most_confident_wrong_predictions():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.95, 0.05]])
    labels = np.array([0, 0, 1, 0, 1])  # wrong: 1 (0.8), 2 (0.6), 3 (0.7), 4 (0.95)
    np.testing.assert_array_equal(worst_mistakes(probs, labels, k=3), [4, 1, 3])
    model = cl.Sequential([cl.Flatten(), cl.Dense(2)], input_shape=(1, 4, 4))
    x = np.zeros((5, 1, 4, 4), np.uint8)
    picture(cl.viz.mistakes(model, x, labels, ["a", "b"], probs=probs))
    picture(cl.viz.mistakes(model, x, probs.argmax(1), probs=probs))  # no mistakes: says so


# ------------------------------------------------------------------------- demo
def test_the_default_demo_shows_the_lectures_output_maps(tmp_path):
    demo = cl.viz.conv_demo(out=tmp_path)
    assert demo.lecture
    np.testing.assert_array_equal(demo.output, [O0, O1])
    data = demo_data((tmp_path / "demo.html").read_text(encoding="utf-8"))
    assert data["output"] == [O0, O1]
    assert data["input"] == X.tolist() and data["weights"] == [W0, W1] and data["bias"] == [1, 0]
    assert (data["stride"], data["pad"]) == (2, 1)
    page = (tmp_path / "demo.html").read_text(encoding="utf-8")
    assert '<td id="o-0-1-1">−8</td>' in page and "toggle movement" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert demo.equation(0, 0, 0).startswith("  (−1·0) + (0·0) + (−1·0)")
    assert demo.equation(0, 0, 0).endswith("= −3   = o[0, 0, 0]")
    gif = (tmp_path / "demo.gif").read_bytes()
    picture(gif, "GIF")
    with Image.open(io.BytesIO(gif)) as image:
        assert image.n_frames == 18  # one frame per output value: 3·3·2
        image.seek(0)
        first = np.asarray(image.convert("RGB"))
        image.seek(1)
        assert not np.array_equal(first, np.asarray(image.convert("RGB")))


def naive_convolution(x, w, b, stride, pad):
    """y[k, i, j] = b[k] + Σ w[k] · x_pad[:, i·S : i·S + F, j·S : j·S + F], one value at a time."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    f = w.shape[-1]
    h2, w2 = (xp.shape[1] - f) // stride + 1, (xp.shape[2] - f) // stride + 1
    y = np.zeros((len(w), h2, w2))
    for k in range(len(w)):
        for i in range(h2):
            for j in range(w2):
                window = xp[:, i * stride : i * stride + f, j * stride : j * stride + f]
                y[k, i, j] = b[k] + np.sum(w[k] * window)
    return y


@pytest.mark.parametrize("shape, filters, size, stride, pad, seed", [
    ((7, 7, 1), 1, 3, 2, 0, None), ((6, 5, 2), 2, 2, 1, 1, 3), ((5, 5, 3), 2, 3, 2, 1, 7)])
def test_other_demos_match_a_naive_loop(shape, filters, size, stride, pad, seed):
    demo = cl.viz.conv_demo(shape, filters, size, stride, pad, seed=seed)
    assert not demo.lecture
    data = demo_data(demo.to_html())
    x, w, b = (np.array(data[key]) for key in ("input", "weights", "bias"))
    assert x.shape == (shape[2], shape[0], shape[1]) and w.shape == (filters, shape[2], size, size)
    assert set(np.unique(x)) <= {0, 1, 2} and set(np.unique(w)) <= {-1, 0, 1}
    np.testing.assert_array_equal(data["output"], naive_convolution(x, w, b, stride, pad))
    np.testing.assert_array_equal(demo.output, data["output"])
    for k, i, j in demo.steps:  # every line of the worked dot product adds up
        assert demo.equation(k, i, j).splitlines()[-1].startswith(
            "= " + f"{demo.output[k, i, j]:g}".replace("-", "−"))


def test_demo_refuses_what_does_not_fit_or_is_too_big():
    with pytest.raises(cl.ShapeError, match=r"\(7 − 3 \+ 2·0\)/3 \+ 1 = 2.33"):
        cl.viz.conv_demo((7, 7, 1), 1, 3, 3, 0)
    with pytest.raises(ValueError, match="at most 16×16 after padding"):
        cl.viz.conv_demo((20, 20, 1), 1, 3, 1, 0)
    with pytest.raises(ValueError, match="H×W×D such as 5x5x3"):
        cl.viz.conv_demo("5x5", 1, 3, 1, 0)


#: the most frames an accepted demo has: 16×16 after padding, F = 1, stride 1, 4 filters
LARGEST = ("16x16x4", 4, 1, 1, 0)
PEAK_LIMIT_MIB = 500

# runs `cnnlab ARGS` in a process of its own and prints that process's peak resident memory:
# VmHWM, which starts afresh at exec (ru_maxrss does not: it keeps the forked test runner's size)
PEAK = """
import sys
from pathlib import Path
from cnnlab.cli import main
status = main(sys.argv[1:])
hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
print("peak_kib", hwm.split()[1])
sys.exit(status)
"""


def peak_mib(*args) -> tuple[float, subprocess.CompletedProcess]:
    """`cnnlab ARGS` in a subprocess: (its peak resident memory in MiB, the finished process).
    A child that passes 4× the limit is stopped at once (the demo once took 10.8 GiB)."""
    child = subprocess.Popen([sys.executable, "-c", PEAK, *map(str, args)], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    status = f"/proc/{child.pid}/status"
    while child.poll() is None:
        try:
            with open(status) as f:
                rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS")), 0)
        except OSError:  # not Linux, or the child just ended
            rss = 0
        if rss > 4 * PEAK_LIMIT_MIB * 1024:
            child.kill()
            child.communicate()
            pytest.fail(f"cnnlab {' '.join(map(str, args))} passed {rss / 1024:.0f} MiB; stopped")
        time.sleep(0.2)
    out, err = child.communicate()
    found = re.search(r"^peak_kib (\d+)$", out, re.M)
    assert child.returncode == 0 and found, err[-2000:]
    return int(found.group(1)) / 1024, subprocess.CompletedProcess(child.args, 0, out, err)


def test_the_largest_accepted_demo_writes_every_frame_in_little_memory(tmp_path):
    shape, filters, size, stride, pad = LARGEST
    demo = cl.viz.conv_demo(shape, filters, size, stride, pad)
    assert demo.output.shape == (4, 16, 16)  # no accepted demo has more output values
    with pytest.raises(ValueError, match="at most 16×16 after padding, depth 4 and 4 filters"):
        cl.viz.conv_demo("16x16x4", 4, 1, 1, 1)
    peak, done = peak_mib("demo", "conv", "--input", shape, "--filters", filters, "--size", size,
                          "--stride", stride, "--pad", pad, "--out", tmp_path)
    assert peak < PEAK_LIMIT_MIB, f"peak {peak:.0f} MiB"
    # the numbers, then the two paths, then PEAK's own line
    assert done.stdout.splitlines()[-3:-1] == [str(tmp_path / "demo.html"), str(tmp_path / "demo.gif")]
    with Image.open(tmp_path / "demo.gif") as image:  # one frame per output value, none capped
        assert image.n_frames == len(demo.steps) == 4 * 16 * 16
        assert image.info["duration"] == 900 and image.info["loop"] == 0
    data = demo_data((tmp_path / "demo.html").read_text(encoding="utf-8"))
    assert data["output"] == demo.output.astype(int).tolist()


@pytest.mark.parametrize("args", [(), ((4, 4, 2), 2, 3, 1, 1), ((7, 5, 3), 3, 3, 2, 1)])
def test_every_gif_frame_is_its_step_drawn_whole(args):
    """Each decoded frame equals that step drawn from scratch and mapped to one 64-colour
    palette taken from the first frame, without dithering: what the demo always drew."""
    demo = cl.viz.conv_demo(*args)
    canvas = demo_gif._Canvas(demo)
    palette = None
    with Image.open(io.BytesIO(demo.to_gif())) as image:
        assert image.n_frames == len(demo.steps)
        for n, (k, i, j) in enumerate(demo.steps):
            drawn = canvas.frame(k, i, j)
            palette = palette or drawn.quantize(64, dither=Image.Dither.NONE)
            expected = drawn.quantize(palette=palette, dither=Image.Dither.NONE).convert("RGB")
            image.seek(n)
            assert image.info["duration"] == 900
            np.testing.assert_array_equal(np.asarray(image.convert("RGB")), np.asarray(expected),
                                          err_msg=f"frame {n}")


# ----------------------------------------------------------------------- report
def test_the_report_holds_every_section_with_images_inline(trained):
    model, run, x, y = trained
    path = cl.viz.report(run, model, x, y, FASHION, data="200 test images", examples=2)
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    for key, heading in html_report.SECTIONS.items():
        assert f'<section id="{key}"><h2>{heading}</h2>' in page
    assert "Total params: 61,706" in page  # the summary table
    assert all(f"<td>{name}</td>" in page for name in FASHION)  # the per-class table
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 6  # curves, confusion, filters, 2 feature maps, mistakes
    for data in images:
        picture(base64.b64decode(data))
    assert "http://" not in page and "https://" not in page
    accuracy = cl.evaluate(model, (x, y))["accuracy"]
    assert f"Test accuracy <b>{100 * accuracy:.2f}%</b>" in page


# -------------------------------------------------------------------------- cli
def cnnlab(capsys, *args) -> tuple[int, str, str]:
    """`cnnlab ARGS...` in this process (tests/test_cli.py runs it as a subprocess):
    (exit status, stdout, stderr)."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as stop:  # argparse: usage errors and --help
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


def test_train_writes_the_report_and_cnnlab_report_rewrites_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = cnnlab(capsys, "train", "--model", "lenet5", "--data", "fashion-mnist-mini",
                              "--limit", "200", "--epochs", "1", "-b", "50", "--out", "run")
    assert status == 0, err
    assert "report: run/report.html" in err
    assert out.count("\n") == 1  # the accuracy line stays the only output
    report = tmp_path / "run" / "report.html"
    assert '<section id="mistakes">' in report.read_text(encoding="utf-8")
    report.unlink()
    status, out, err = cnnlab(capsys, "report", "run")
    assert status == 0, err
    assert out == "run/report.html\n" and report.is_file()
    page = report.read_text(encoding="utf-8")
    assert "fashion-mnist-mini (the bundled subset of Fashion-MNIST), test split" in page
    status, out, err = cnnlab(capsys, "report", "nowhere")
    assert status == 1 and err.startswith("cnnlab: error: nowhere: no such run")


def test_cnnlab_demo_conv(tmp_path, capsys):
    status, out, err = cnnlab(capsys, "demo", "conv", "--out", tmp_path / "lecture")
    assert status == 0, err
    assert out.splitlines()[-2:] == [str(tmp_path / "lecture" / "demo.html"),
                                     str(tmp_path / "lecture" / "demo.gif")]
    assert out.startswith("Input Volume (+pad 1) (7×7×3)\n")
    assert demo_data((tmp_path / "lecture" / "demo.html").read_text(encoding="utf-8"))["output"] == [O0, O1]
    status, out, err = cnnlab(capsys, "demo", "conv", "--input", "7x7x1", "--stride", "3", "--pad", "0",
                              "--out", tmp_path / "x")
    assert status == 1 and "2.33 is not a whole number" in err and not (tmp_path / "x").exists()
    assert out == ""
    status, out, _ = cnnlab(capsys, "demo", "conv", "--help")
    assert status == 0 and "examples:" in out and "--stride S" in out
    assert "examples:" in cnnlab(capsys, "report", "--help")[1]


def test_cnnlab_demo_conv_prints_the_slides_numbers(tmp_path, capsys, monkeypatch):
    """Without --out: the numbers only, as the lecture's slide lays them out, no file written."""
    monkeypatch.chdir(tmp_path)
    status, out, err = cnnlab(capsys, "demo", "conv")
    assert status == 0 and list(tmp_path.iterdir()) == []
    assert "Input 5×5×3, K = 2 filters of 3×3×3" in err
    sections = out.split("\n\n")
    assert [s.splitlines()[0] for s in sections[:4]] == [
        "Input Volume (+pad 1) (7×7×3)", "Filter W0 (3×3×3), Bias b0 (1×1×1)",
        "Filter W1 (3×3×3), Bias b1 (1×1×1)", "Output Volume (3×3×2)"]
    assert sections[0].splitlines()[1].split() == ["x[:,", ":,", "0]", "x[:,", ":,", "1]", "x[:,",
                                                   ":,", "2]"]
    # the padded input, row by row, the three slices side by side (the slide's x[:, :, d])
    x_pad = np.pad(X, ((0, 0), (1, 1), (1, 1)))
    rows = [[int(v.replace("−", "-")) for v in line.split()] for line in sections[0].splitlines()[2:]]
    np.testing.assert_array_equal(np.array(rows).reshape(7, 3, 7).transpose(1, 0, 2), x_pad)
    w0 = [line.split() for line in sections[1].splitlines()[2:]]
    assert w0[0] == ["−1", "0", "−1", "0", "−1", "1", "0", "0", "0", "1"]  # w0[0, :, d] …, b0 = 1
    assert [line.split() for line in sections[2].splitlines()[2:]][0][-1] == "0"  # b1 = 0
    out_rows = [[int(v.replace("−", "-")) for v in line.split()] for line in sections[3].splitlines()[2:]]
    np.testing.assert_array_equal(np.array(out_rows).reshape(3, 2, 3).transpose(1, 0, 2), [O0, O1])
    assert sections[4] == "H2 = (H − F + 2P)/S + 1 = (5 − 3 + 2·1)/2 + 1 = 3;  W2 = (5 − 3 + 2·1)/2 + 1 = 3\n"


def test_the_terminal_text_wraps_wide_volumes_and_keeps_every_number():
    shown = cl.viz.conv_demo("14x14x4", 4, 3, 1, 1, seed=0)
    text = shown.to_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert text.count("x[:, :, ") == 4 and text.count("Filter W") == 4 and text.count("o[:, :, ") == 4
    grids = text.split("Output Volume")[1].splitlines()[1:-2]  # labels, rows; wrapped 2 a row
    numbers = [v for line in grids if not line.startswith("o[") for v in line.split()]
    assert sorted(int(v.replace("−", "-")) for v in numbers) == sorted(shown.output.astype(int).ravel())


def test_import_cnnlab_does_not_import_matplotlib():
    code = "import sys, cnnlab; cnnlab.viz.conv_demo; assert 'matplotlib' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
