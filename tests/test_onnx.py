"""ONNX export (cnnlab.io.onnx_export): every layer family, every small zoo model and ResNet-18
run in onnxruntime and match cnnlab's forward to max|a − b| / max|b| ≤ 1e-5 (1e-4 with
BatchNorm, which onnxruntime folds into the convolution before it); the ImageNet models pass
onnx.checker (VGG-13/16/19, a minute more, with CNNLAB_ONNX_LARGE=1). The extras onnx and
onnxruntime must be installed under CI; elsewhere these tests skip without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.cli import main
from cnnlab.core import Layer, walk
from cnnlab.data.loader import Preprocess
from cnnlab.io.onnx_export import DEFAULT_OPSET, metadata

SMALL = ["fmnist-cnn", "fmnist-cnn-bn", "lenet5", "mlp", "vgg-small", "resnet8", "resnet20"]


@pytest.fixture(scope="session")
def ort():
    return onnx_runtime()


def onnx_runtime():
    """onnxruntime, with onnx installed; skips without them locally, fails under CI."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI must run the ONNX tests: pip install '.[onnx,test]' (onnx, onnxruntime)")
        pytest.skip("onnx or onnxruntime is not installed (pip install '.[onnx,test]')")
    return onnxruntime


def run_onnx(ort, proto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def randomise(model: cl.Sequential, rng: np.random.Generator) -> cl.Sequential:
    """Every parameter moved off its initial value (zero classifiers, unit BatchNorm scales,
    PReLU's equal slopes) and BatchNorm's running statistics made non-trivial."""
    for p in model.parameters().values():
        p.data += rng.normal(0, 0.5 * max(float(p.data.std()), 0.1), p.shape).astype(p.data.dtype)
    for name, b in model.buffers().items():
        b[...] = rng.uniform(0.5, 2, b.shape) if name.endswith("running_var") else rng.normal(0, 0.2, b.shape)
    return model


def relative(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def tolerance(model: cl.Sequential) -> float:
    has_bn = any(layer.kind.startswith("BatchNorm") for _, layer in walk(model))
    return 1e-4 if has_bn else 1e-5


def check(ort, model: cl.Sequential, rng, *, batch: int = 3, scale: float = 1.0,
          opset: int = DEFAULT_OPSET) -> float:
    x = (scale * rng.standard_normal((batch, *model.input_shape))).astype(np.float32)
    err = relative(run_onnx(ort, cl.io.to_onnx(model, opset=opset), x), model.forward(x))
    assert err <= tolerance(model), err
    return err


# ------------------------------------------------------------------ every layer family
FAMILIES = {
    "conv2d-padding": lambda: ([cl.Conv2D(4, 3, padding=1), cl.Conv2D(5, (3, 2), stride=(2, 1),
                                padding=(0, 1), fit="floor"), cl.Conv2D(3, 1, bias=False)], (3, 9, 8)),
    # 11×10, F = 4, S = 2: total padding 3 → 1 before, 2 after (and 1, 1); then 6×5, F = 3, S = 3:
    # 0 and 0 + 1 (the extra column last); ≥ 4 channels, so cnnlab runs kernels/same.py
    "conv2d-same-stride": lambda: ([cl.Conv2D(4, 4, stride=2, padding="same"), cl.Conv2D(
        6, 3, stride=3, padding="same"), cl.Conv2D(2, 2, padding="valid")], (5, 11, 10)),
    "conv1d": lambda: ([cl.Conv1D(4, 3, stride=2, padding="same"), cl.Conv1D(3, 2, padding=1)], (3, 12)),
    "maxpool2d": lambda: ([cl.MaxPool2D(2), cl.MaxPool2D(3, 2, padding=1, fit="floor"),
                           cl.MaxPool2D(2, padding="same")], (3, 12, 14)),
    "avgpool2d": lambda: ([cl.AvgPool2D(2), cl.AvgPool2D(3, 2, padding=1, fit="floor"),
                          cl.AvgPool2D(2, padding="same")], (3, 12, 14)),
    # 14 → 7 → "same" 4 (padding 0 before, 1 after, counted in the mean) → 2 → 2
    "pool1d": lambda: ([cl.MaxPool1D(2), cl.AvgPool1D(2, padding="same"),
                        cl.AvgPool1D(3, 2, padding=1, fit="floor"), cl.MaxPool1D(3, 1, padding=1)], (3, 14)),
    "global-avgpool-dense": lambda: ([cl.Conv2D(4, 3), cl.GlobalAvgPool2D(), cl.Dense(5),
                                      cl.Dense(3, bias=False)], (2, 6, 6)),
    "flatten-dropout": lambda: ([cl.Flatten(), cl.Dropout(0.5), cl.Dense(7), cl.ReLU(),
                                 cl.Dropout(0.2), cl.Dense(3)], (2, 4, 4)),
    "batchnorm2d": lambda: ([cl.Conv2D(4, 3, padding=1, bias=False), cl.BatchNorm2D(eps=1e-3),
                            cl.ReLU()], (3, 6, 6)),
    "batchnorm1d": lambda: ([cl.Flatten(), cl.Dense(8), cl.BatchNorm1D(), cl.ReLU(), cl.Dense(3)],
                            (2, 3, 3)),
    "batchnorm1d-sequence": lambda: ([cl.Conv1D(4, 3), cl.BatchNorm1D()], (3, 9)),
    "residual": lambda: ([cl.Conv2D(4, 3, padding=1), cl.Residual(
        [cl.Conv2D(4, 3, padding=1), cl.BatchNorm2D(), cl.ReLU(), cl.Conv2D(4, 3, padding=1)]),
        cl.ReLU(), cl.Residual([cl.Conv2D(6, 3, stride=2, padding=1, fit="floor")],
                               shortcut=[cl.Conv2D(6, 1, stride=2, fit="floor"), cl.BatchNorm2D()]),
        cl.Residual([cl.Dropout(0.1)])], (3, 7, 7)),
    "concat": lambda: ([cl.Concat([[cl.Conv2D(2, 1)], [cl.Conv2D(3, 3, padding=1), cl.ReLU()],
                                   [cl.MaxPool2D(3, 1, padding=1), cl.Conv2D(2, 1)], [cl.Dropout(0.3)]]),
                        cl.Conv2D(3, 1)], (4, 7, 7)),
    "squeeze-excite": lambda: ([cl.Conv2D(8, 3, padding=1), cl.SqueezeExcite(4), cl.GlobalAvgPool2D(),
                                cl.Dense(3)], (3, 6, 6)),
    "squeeze-excite-1d": lambda: ([cl.Conv1D(8, 3), cl.SqueezeExcite(2)], (3, 10)),
    # the second: 7×6, F = (2, 3), S = 2, "same": 4×3, padding 0 before and 1 after on each axis
    "locally-connected2d": lambda: ([cl.LocallyConnected2D(3, 3, padding=1), cl.ReLU(),
                                     cl.LocallyConnected2D(2, (2, 3), stride=2, padding="same",
                                                           bias=False)], (2, 7, 6)),
    "locally-connected1d": lambda: ([cl.LocallyConnected1D(3, 3, stride=2),
                                     cl.LocallyConnected1D(2, 2, padding="same")], (2, 9)),
    # the lecture's: 7 inputs, 3 hidden units of extent 3, stride 2, no bias
    "locally-connected1d-lecture": lambda: ([cl.LocallyConnected1D(3, 3, stride=2, bias=False)], (1, 7)),
    "maxout-dense": lambda: ([cl.Flatten(), cl.Dense(12), cl.Maxout(3), cl.Dense(2)], (2, 3, 3)),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_layer_family_matches_in_onnxruntime(ort, family, rng):
    layers, shape = FAMILIES[family]()
    check(ort, randomise(cl.Sequential(layers, input_shape=shape), rng), rng)


ACTIVATIONS = {
    "sigmoid": cl.Sigmoid, "tanh": cl.Tanh, "relu": cl.ReLU, "leaky-relu": lambda: cl.LeakyReLU(0.2),
    "elu": lambda: cl.ELU(0.7), "prelu": cl.PReLU, "swish-beta": lambda: cl.Swish(1.7),
    "swish": cl.Swish, "silu": cl.SiLU, "maxout2": lambda: cl.Maxout(2), "maxout3": lambda: cl.Maxout(3),
    "relu6": cl.ReLU6, "hardswish": cl.Hardswish, "gelu": cl.GELU, "gelu-tanh": lambda: cl.GELU("tanh"),
}


@pytest.mark.parametrize("shape", [(6, 5, 4), (6, 7), (6,)], ids=["NCHW", "NCL", "ND"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_matches_on_every_rank(ort, activation, shape, rng):
    # inputs up to about ±12: ReLU6's 6, Hardswish's ±3 and the tails of GELU and the sigmoid
    model = randomise(cl.Sequential([ACTIVATIONS[activation]()], input_shape=shape), rng)
    check(ort, model, rng, scale=4.0)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(7, 4, 5), (7, 6)], ids=["NCHW", "NCL"])
def test_local_response_norm_matches_for_odd_and_even_windows(ort, size, shape, rng):
    # odd sizes on 4-D input run as ONNX's LRN; even ones (whose window ONNX centres the other
    # way) and 3-D input as a Conv of ones over the channels
    model = cl.Sequential([cl.LocalResponseNorm(size, alpha=0.3, beta=0.75, k=1.5)], input_shape=shape)
    proto = cl.io.to_onnx(model)
    assert ("LRN" in {node.op_type for node in proto.graph.node}) == (size % 2 == 1 and len(shape) == 3)
    check(ort, model, rng, scale=2.0)


def everything() -> cl.Sequential:
    return cl.Sequential([
        cl.Conv2D(8, 3, stride=2, padding="same"), cl.BatchNorm2D(), cl.PReLU(),
        cl.LocalResponseNorm(3, 1e-2), cl.LocalResponseNorm(4, 1e-2), cl.SqueezeExcite(2),
        cl.Residual([cl.Conv2D(8, 3, padding=1), cl.GELU()]), cl.Maxout(2), cl.Hardswish(),
        cl.Concat([[cl.LocallyConnected2D(2, 3, padding=1)], [cl.AvgPool2D(3, 1, padding=1)]]),
        cl.MaxPool2D(2, padding="same"), cl.Flatten(), cl.Dense(6), cl.SiLU(), cl.Dense(3),
    ], input_shape=(3, 9, 10))


@pytest.mark.parametrize("opset", [14, 17, 18, 21])
def test_opsets_14_to_21_give_the_same_scores(ort, opset, rng):
    # ReduceMax's axes move from an attribute to an input at opset 18 (Maxout)
    check(ort, randomise(everything(), rng), rng, opset=opset)


def test_a_float64_model_exports_as_float32(ort, rng):
    model = randomise(cl.zoo.lenet5(), rng)
    wide = cl.Sequential(cl.zoo.lenet5(build=False).layers, input_shape=(1, 28, 28), dtype=np.float64)
    for name, p in wide.parameters().items():
        p.data[...] = model.parameters()[name].data
    proto = cl.io.to_onnx(wide)
    assert {t.data_type for t in proto.graph.initializer if "/" not in t.name} == {1}  # FLOAT
    x = rng.standard_normal((2, 1, 28, 28))
    assert relative(run_onnx(ort, proto, x.astype(np.float32)), wide.forward(x)) <= 1e-5


# ------------------------------------------------------------------------------- the zoo
@pytest.mark.parametrize("name", SMALL)
def test_every_small_zoo_model_matches_in_onnxruntime(ort, name, rng):
    check(ort, randomise(cl.zoo.get(name), rng), rng, batch=4)


def test_resnet18_at_imagenet_size_matches_in_onnxruntime(ort, rng):
    model = randomise(cl.zoo.resnet18(), rng)
    assert check(ort, model, rng, batch=2) <= 1e-4


IMAGENET = ["alexnet", "googlenet", "resnet34", "resnet50", "se-resnet50", "vgg11"]
#: VGG-13/16/19 repeat VGG-11's layers at about 15 s each: run with CNNLAB_ONNX_LARGE=1
LARGE = ["vgg13", "vgg16", "vgg19"] if os.environ.get("CNNLAB_ONNX_LARGE") else []


@pytest.mark.parametrize("name", IMAGENET + LARGE)
def test_imagenet_models_export_and_pass_the_checker(ort, name):
    import onnx

    model = cl.zoo.get(name, **({"lrn": True} if name == "alexnet" else {}))
    proto = cl.io.to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)  # with shape inference
    inferred = onnx.shape_inference.infer_shapes(proto).graph.output[0].type.tensor_type.shape
    assert [d.dim_param or d.dim_value for d in inferred.dim] == ["N", 1000]
    # every parameter and buffer, under its own name; structural constants are "<layer>/<what>"
    weights = [t for t in proto.graph.initializer if "/" not in t.name]
    assert sum(int(np.prod(t.dims)) for t in weights) == model.count_params() + sum(
        b.size for b in model.buffers().values())


# ------------------------------------------------------------------- the file and its form
def test_the_batch_dimension_is_free_and_metadata_holds_preprocessing_and_classes(ort, rng, tmp_path):
    model = randomise(cl.zoo.lenet5(num_classes=3), rng)
    model.preprocess = Preprocess([0.25], [0.5])
    model.class_names = ["cat", "dog", "ünïcode"]
    proto = cl.export_onnx(model, tmp_path / "lenet.onnx")
    session = ort.InferenceSession(str(tmp_path / "lenet.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
        assert relative(session.run(None, {"input": x})[0], model.forward(x)) <= 1e-5
    assert [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [
        "N", 1, 28, 28]
    assert metadata(proto) == {
        "class_names": ["cat", "dog", "ünïcode"],
        "preprocess": {"mean": [0.25], "std": [0.5], "scale": 1 / 255, "channels": "L",
                       "resize": "stretch", "input_size": [28, 28]}}
    meta = session.get_modelmeta()
    assert json.loads(meta.custom_metadata_map["class_names"])[2] == "ünïcode"
    assert meta.producer_name == "cnnlab" and proto.opset_import[0].version == 17
    assert proto.ir_version == 8  # the oldest that holds opset 17: older runtimes load it
    # the constants carry the parameters' names
    assert {"conv2d_1.weight", "dense_3.bias"} <= {t.name for t in proto.graph.initializer}


def test_a_model_without_preprocessing_records_null(ort):
    proto = cl.io.to_onnx(cl.Sequential([cl.Dropout(0.5)], input_shape=(4,)))
    assert metadata(proto) == {"preprocess": None, "class_names": None}
    assert [node.op_type for node in proto.graph.node] == ["Identity"]


class Doubler(Layer):
    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, *, training=False):
        return 2 * x


def test_a_layer_without_a_converter_is_named(ort):
    model = cl.Sequential([cl.Conv2D(2, 3), cl.Residual([cl.Conv2D(2, 1), Doubler()])],
                          input_shape=(1, 5, 5))
    with pytest.raises(ValueError, match=r"residual_1\.branch\.doubler_1 \(Doubler\) has no ONNX "
                                         r"converter. Layers that export: AdaptiveAvgPool2D, "):
        cl.io.to_onnx(model)


def test_an_argument_the_converter_does_not_read_stops_the_export(ort, monkeypatch):
    # a layer gaining an argument (a convolution's new "shift", say) is refused until its
    # converter handles it, unless the argument is at its default
    model = cl.Sequential([cl.Conv2D(2, 3)], input_shape=(1, 5, 5))
    conv = model.layers[0]
    monkeypatch.setattr(conv, "config", lambda: {**cl.Conv2D.config(conv), "shift": (2, 2)})
    with pytest.raises(ValueError, match=r"conv2d_1 \(Conv2D\): shift=\(2, 2\) is not exported"):
        cl.io.to_onnx(model)


@pytest.mark.parametrize("opset", [13, 10_000, "17", True])
def test_an_opset_out_of_range_is_refused(ort, opset):
    with pytest.raises(ValueError, match="opset must be an int from 14 to "):
        cl.io.to_onnx(cl.zoo.mlp(), opset=opset)


def test_an_unbuilt_model_is_refused(ort):
    with pytest.raises(ValueError, match="expected a built cnnlab Sequential"):
        cl.io.to_onnx(cl.zoo.mlp(build=False))


def test_without_onnx_the_error_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    message = r'^ONNX export needs the onnx package: pip install "cnnlab\[onnx\]"$'
    with pytest.raises(ImportError, match=message):
        cl.export_onnx(cl.zoo.mlp(), tmp_path / "m.onnx")
    cl.save(cl.zoo.mlp(), tmp_path / "m.safetensors")
    assert main(["export", str(tmp_path / "m.safetensors"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err == 'cnnlab: error: ONNX export needs the onnx package: pip install "cnnlab[onnx]"\n'
    assert not (tmp_path / "m.onnx").exists()


def test_importing_cnnlab_does_not_import_onnx():
    code = "import sys, cnnlab, cnnlab.cli; assert 'onnx' not in sys.modules, 'onnx was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------- the command
def test_cnnlab_export_writes_a_file_onnxruntime_runs(ort, tmp_path, capsys, rng):
    model = randomise(cl.zoo.fmnist_cnn(), rng)
    model.class_names = [f"class {i}" for i in range(10)]
    cl.save(model, tmp_path / "model.safetensors")
    out = tmp_path / "model.onnx"
    assert main(["export", str(tmp_path / "model.safetensors"), "--onnx", str(out)]) == 0
    line = capsys.readouterr().out
    assert line == (f"{out}: ONNX opset 17, input (N, 1, 28, 28) float32, output (N, 10), 10 nodes, "
                    f"421,642 parameters, 1.7 MB; metadata: class names\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.safetensors"]  # no temporary
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert relative(session.run(None, {"input": x})[0], model.forward(x)) <= 1e-5
    assert main(["export", str(tmp_path / "model.safetensors"), "--onnx", str(out), "--opset", "18"]) == 0
    assert "ONNX opset 18" in capsys.readouterr().out


def test_cnnlab_export_errors_are_one_line(ort, tmp_path, capsys):
    cl.save(cl.zoo.mlp(), tmp_path / "m.safetensors")
    assert main(["export", str(tmp_path / "m.safetensors"), "--onnx", str(tmp_path / "m.onnx"),
                 "--opset", "9"]) == 2
    assert "--opset must be from 14 to " in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.safetensors"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: ") and len(err.splitlines()) == 1
    assert main(["export", str(tmp_path / "m.safetensors"), "--onnx",
                 str(tmp_path / "no" / "such" / "m.onnx")]) == 1
    assert "could not write" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
