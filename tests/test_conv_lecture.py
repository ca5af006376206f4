"""Dilated, grouped and transposed convolutions (issue 20) as the lecture explains them: the
arithmetic lines of explain and summary, the errors, parameter counts from shapes alone, and
model files (exact round trip, arguments validated on load, the default Conv2D's file
unchanged)."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import io
from tests.test_viz import cnnlab as here  # in this process: (status, out, err)


# ------------------------------------------------------------------------- explain, summary
def test_dilated_explain_shows_the_effective_extent():
    text = cl.Conv2D(8, 3, padding=2, dilation=2).explain((3, 32, 32))
    assert text.splitlines()[1:] == [
        "requires K = 8 filters, extent F = 3, stride S = 1, dilation d = 2, zero padding P = 2",
        "produces a volume H2×W2×D2 = 32×32×8",
        "  F' = d·(F − 1) + 1 = 2·(3 − 1) + 1 = 5 (the dilated window's extent)",
        "  H2 = (H1 − F' + 2P)/S + 1 = (32 − 5 + 2·2)/1 + 1 = 32",
        "  W2 = (W1 − F' + 2P)/S + 1 = (32 − 5 + 2·2)/1 + 1 = 32",
        "  D2 = K = 8",
        "weights: F·F·D1 = 3·3·3 = 27 per filter, shared by every output position, plus K = 8 biases",
        "parameters: (3·3·3 + 1)·8 = 224",
    ]


def test_grouped_and_depthwise_explain_count_parameters_per_group():
    text = cl.Conv2D(64, 3, padding=1, groups=4).explain((32, 14, 14))
    assert "groups g = 4" in text
    assert ("weights: F·F·D1/g = 3·3·32/4 = 72 per filter (4 groups of 16 filters, each on 8 of "
            "the 32 channels), shared by every output position, plus K = 64 biases") in text
    assert text.endswith("parameters: (3·3·32/4 + 1)·64 = 4,672")
    depthwise = cl.Conv2D(192, 3, padding=1, groups=192, bias=False).explain((192, 14, 14))
    assert "(depthwise: 1 filter on each channel)" in depthwise
    assert depthwise.endswith("parameters: (3·3·192/192)·192 = 1,728")


def test_summary_rows():
    model = cl.Sequential([cl.Conv2D(192, 3, padding=1, groups=192),
                           cl.Conv2D(32, 3, padding="same", dilation=2, groups=4),
                           cl.Flatten()], input_shape=(192, 14, 14))
    rows = model.summary().splitlines()
    assert rows[2].endswith("H2 = W2 = (14 − 3 + 2·1)/1 + 1 = 14;  params = (3·3·192/192 + 1)·192 = 1,920")
    assert rows[3].endswith("F' = d·(F − 1) + 1 = 2·(3 − 1) + 1 = 5, H2 = W2 = (14 − 5 + 2·2)/1 + 1 "
                            "= 14;  params = (3·3·192/4 + 1)·32 = 13,856")
    assert model.layers[0].count_params() == 1_920 and model.layers[1].count_params() == 13_856
    assert model.layers[0].macs((192, 14, 14)) == 192 * 9 * 14 * 14


def test_conv_transpose_explain_is_the_convolutions_backward_pass():
    layer = cl.ConvTranspose2D(32, 3, stride=2, padding=1, output_padding=1)
    assert layer.explain((64, 7, 7)).splitlines()[1:] == [
        "requires K = 32 filters, extent F = 3, stride S = 2, padding P = 1, output_padding = 1",
        "produces a volume H2×W2×D2 = 14×14×32",
        "  H2 = W2 = (H1 − 1)·S − 2P + F + output_padding = (7 − 1)·2 − 2·1 + 3 + 1 = 14",
        "  D2 = K = 32",
        "  the backward pass of the convolution F = 3, S = 2, P = 1 from 14×14×32 to 7×7×64: "
        "(14 − 3 + 2·1)/2 + 1 = 7.5 → 7 (output_padding = 1 adds back what its floor drops)",
        "weights: F·F·D1 = 3·3·64 = 576 per filter, shared by every input position, plus K = 32 biases",
        "parameters: (3·3·64 + 1)·32 = 18,464",
    ]
    assert layer.arithmetic((64, 7, 7)) == ("H2 = W2 = (7 − 1)·2 − 2·1 + 3 + 1 = 14;  params = "
                                            "(3·3·64 + 1)·32 = 18,464")
    assert layer.macs((64, 7, 7)) == 64 * 32 * 9 * 7 * 7
    rect = cl.ConvTranspose2D(2, (4, 3), stride=(2, 1), padding=(1, 0)).arithmetic((3, 5, 6))
    assert rect.startswith("H2 = (5 − 1)·2 − 2·1 + 4 + 0 = 10; W2 = (6 − 1)·1 − 2·0 + 3 + 0 = 8;")


def test_same_padding_uses_the_dilated_extent():
    layer = cl.Conv2D(2, 3, stride=2, padding="same", dilation=3).build((1, 9, 10))
    assert layer.out_shape == (2, 5, 5)  # ceil(H/S)
    assert layer.win.pad == ((3, 3), (2, 3))  # totals (5 − 1)·2 + 7 − 9 = 6, 8 + 7 − 10 = 5


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("make, error, match", [
    (lambda: cl.Conv2D(6, 3, groups=4), ValueError,
     r"^Conv2D: groups=4 must divide filters=6 \(each group has K/g filters\)\. "
     r"Received: filters=6, groups=4$"),
    (lambda: cl.Conv2D(4, 3, groups=0), ValueError, "groups must be a positive int"),
    (lambda: cl.Conv2D(4, 3, groups=True), ValueError, "groups must be a positive int"),
    (lambda: cl.Conv2D(4, 3, dilation=0), ValueError, r"dilation must be ≥ 1\. Received: dilation=0"),
    (lambda: cl.Conv2D(4, 3, dilation=(1, 2.5)), ValueError, "dilation must be an int or a pair"),
    (lambda: cl.Conv1D(4, 3, dilation=(2, 2)), ValueError, r"^Conv1D: dilation must be an int ≥ 1"),
    (lambda: cl.Conv2D(4, 3, groups=4).build((6, 8, 8)), cl.ShapeError,
     r"^Conv2D: groups=4 must divide the input depth D1 = 6 \(each group of filters sees D1/g "
     r"channels\)\. Received: input_shape=\(6, 8, 8\), groups=4$"),
    (lambda: cl.Conv2D(1, 3, dilation=3).build((1, 6, 6)), cl.ShapeError,
     r"window 3×3 dilated by 3 \(extent 7×7\) does not fit the padded input\. Expected "
     r"H \+ 2·padding ≥ 7\. Received: input size 6×6, padding=0"),
    (lambda: cl.Conv2D(1, 3, stride=2, dilation=2).build((1, 8, 8)), cl.ShapeError,
     r"H2 = W2 = \(8 − 5 \+ 2·0\)/2 \+ 1 = 2\.5 is not a whole number: a 3×3 dilated by 2 "
     r"\(extent 5×5\) window with stride 2 doesn't fit a 8×8 input\. Use stride 1 or 3, or "
     r'fit="floor"\.$'),
    (lambda: cl.ConvTranspose2D(4, 3, stride=2, output_padding=2), ValueError,
     r"^ConvTranspose2D: output_padding must be smaller than the stride .* Received: "
     r"output_padding=\(2, 2\), stride=\(2, 2\)$"),
    (lambda: cl.ConvTranspose2D(4, 3, padding=3).build((1, 2, 2)), cl.ShapeError,
     r"^ConvTranspose2D: the output would be empty: H2 = W2 = \(2 − 1\)·1 − 2·3 \+ 3 \+ 0 = -2"),
    (lambda: cl.ConvTranspose2D(4, 3).build((1, 8)), cl.ShapeError, r"expects per-sample input \(C, H, W\)"),
    (lambda: cl.ConvTranspose2D(4, 3, padding="same"), ValueError, "padding must be an int or a pair"),
])
def test_bad_arguments_get_one_clear_line(make, error, match):
    with pytest.raises(error, match=match) as raised:
        make()
    assert "\n" not in str(raised.value)


def test_explain_says_doesnt_fit_for_groups_that_do_not_divide_the_depth():
    assert "doesn't fit: Conv2D: groups=4 must divide the input depth D1 = 6" in \
        cl.Conv2D(4, 3, groups=4).explain((6, 8, 8))


def test_locally_connected_takes_neither_dilation_nor_groups():
    with pytest.raises(TypeError):
        cl.LocallyConnected2D(4, 3, groups=2)


# ------------------------------------------------------------------ counts from shapes alone
LAYERS = [(cl.Conv2D(8, 3, groups=4, dilation=2), (4, 9, 9)),
          (cl.Conv2D(8, 3, groups=8, bias=False), (8, 5, 5)),
          (cl.Conv1D(6, 3, groups=3), (3, 9)),
          (cl.ConvTranspose2D(5, (2, 3), stride=2), (3, 4, 4)),
          (cl.LocallyConnected2D(2, 3), (2, 5, 5))]


@pytest.mark.parametrize("layer, shape", LAYERS)
def test_parameter_counts_from_shapes_equal_the_built_layer(layer, shape):
    """What a file's limits (io.footprint) and the zoo count before building."""
    expected = layer.param_count(shape)
    assert io.footprint([layer], shape).params == expected
    assert layer.build(shape).count_params() == expected


# ------------------------------------------------------------------------------- files
def new_layers_model() -> cl.Sequential:
    return cl.Sequential([
        cl.Conv2D(8, 3, padding="same", dilation=2), cl.ReLU(),
        cl.Conv2D(16, 1, groups=4), cl.Conv2D(16, 3, stride=2, padding=1, groups=16, fit="floor"),
        cl.ConvTranspose2D(4, 3, stride=2, padding=1, output_padding=1, bias=False),
        cl.Conv2D(4, (3, 2), padding=1, dilation=(1, 2), groups=2),
    ], input_shape=(2, 9, 8), seed=2)


def test_round_trip_is_exact(tmp_path, rng):
    model = new_layers_model()
    for p in model.parameters().values():
        p.data += rng.standard_normal(p.shape).astype(p.data.dtype) * 0.1
    cl.save(model, tmp_path / "m.safetensors")
    loaded = cl.load(tmp_path / "m.safetensors")
    assert io.architecture(loaded) == io.architecture(model)
    for a, b in zip(model.layers, loaded.layers, strict=True):
        assert type(a) is type(b) and a.config() == b.config(), a.label
    x = rng.standard_normal((3, 2, 9, 8)).astype(np.float32)
    assert np.array_equal(loaded.forward(x), model.forward(x))
    assert loaded.summary() == model.summary()


def test_a_default_convolution_writes_the_arguments_it_always_did():
    """Files of ordinary convolutions stay readable by cnnlab 0.2 (no new keys)."""
    assert cl.Conv2D(4, 3).config() == {
        "filters": 4, "kernel_size": (3, 3), "stride": (1, 1), "padding": (0, 0), "bias": True,
        "fit": "exact", "init": "auto"}
    assert cl.Conv1D(4, 3, dilation=2, groups=2).config()["dilation"] == 2
    assert cl.Conv2D(4, 3, groups=2).config()["groups"] == 2


def spec(**kwargs) -> dict:
    return {"type": "Sequential", "input_shape": [4, 8, 8], "dtype": "float32",
            "layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 3} | kwargs]}


@pytest.mark.parametrize("arch, match", [
    (spec(filters=6, groups=3), "architecture does not build: .*groups=3 must divide the input "
     "depth D1 = 4"),
    (spec(groups=8), "cannot create Conv2D: .*groups=8 must divide filters=4"),
    (spec(groups="2"), "cannot create Conv2D: .*groups must be a positive int"),
    (spec(dilation=[0, 1]), r"cannot create Conv2D: .*dilation must be ≥ 1"),
    (spec(dilation=[1, 2, 3]), "cannot create Conv2D: .*dilation must be an int or a pair"),
    (spec(dilation=9), "architecture does not build: .*extent 19×19"),
    ({**spec(), "layers": [{"type": "LocallyConnected2D", "filters": 2, "kernel_size": 3,
                            "groups": 2}]}, "LocallyConnected2D takes no argument groups"),
    ({**spec(), "layers": [{"type": "ConvTranspose2D", "filters": 2, "kernel_size": 3,
                            "stride": 2, "output_padding": 2}]},
     "cannot create ConvTranspose2D: .*output_padding must be smaller than the stride"),
    ({**spec(), "layers": [{"type": "ConvTranspose2D", "filters": 1 << 20, "kernel_size": 64}]},
     r"needs? .*weights but the file holds"),
])
def test_a_file_cannot_smuggle_bad_arguments(arch, match):
    with pytest.raises(cl.ModelFileError, match=match):
        io.from_architecture(arch, max_weights=1000)


# ------------------------------------------------------------------------------- command
def test_explain_conv_takes_dilation_and_groups(capsys):
    status, out, err = here(capsys, "explain", "conv", "--input", "14x14x192", "--filters", "192",
                            "--size", "3", "--pad", "1", "--groups", "192")
    assert status == 0, err
    assert out.splitlines()[-1] == "parameters: (3·3·192/192 + 1)·192 = 1,920"
    status, out, _ = here(capsys, "explain", "conv", "--input", "8x8x3", "--filters", "4",
                          "--size", "3", "--stride", "2", "--dilation", "2")
    assert status == 0 and "(extent 5×5) window with stride 2 doesn't fit a 8×8 input. Use " \
        "--stride 1 or 3" in out
