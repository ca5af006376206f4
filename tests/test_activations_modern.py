"""ReLU6, SiLU, Hardswish, GELU: cnnlab's erf against math.erf, values computed by hand, no
overflow at the ends of the float range, the error wording, and their life in model files.
(Shapes and numeric gradients: test_layer_contract.py; PyTorch: test_parity_torch.py.)"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import io
from cnnlab.layers.activation_modern import erf_erfc, normal_cdf


def run(layer: cl.Layer, x, dtype=np.float64):
    """(y, dx) for dy = 1 after a training forward of a standalone layer."""
    x = np.asarray(x, dtype=dtype).reshape(1, -1)
    layer.build(x.shape[1:], dtype=dtype)
    y = layer.forward(x, training=True)
    return y[0], layer.backward(np.ones_like(y))[0]


# -------------------------------------------------------------------------------------- erf
def test_erf_and_erfc_agree_with_math_to_a_few_units_in_the_last_place():
    # every region of the approximation: [0, 0.84375), [0.84375, 1.25), [1.25, 1/0.35), [1/0.35, 28)
    a = np.concatenate([np.linspace(0, 30, 300_001), [1e-300, 5e-324, 0.84375, 1.25, 1 / 0.35, 6, 28]])
    erf, erfc = erf_erfc(a)
    want_erf = np.array([math.erf(v) for v in a])
    want_erfc = np.array([math.erfc(v) for v in a])
    assert np.max(np.abs(erf - want_erf) / np.spacing(want_erf)) <= 1
    normal = want_erfc > 1e-300  # below it erfc is subnormal and holds fewer digits
    ulps = np.abs(erfc - want_erfc)[normal] / np.spacing(want_erfc[normal])
    assert np.max(ulps) <= 4
    assert np.all(erfc[~normal] <= 1e-300)


def test_erf_special_values():
    erf, erfc = erf_erfc(np.array([0.0, np.inf, np.nan, 1e300]))
    np.testing.assert_array_equal(erf, [0.0, 1.0, np.nan, 1.0])
    np.testing.assert_array_equal(erfc, [1.0, 0.0, np.nan, 0.0])


def test_normal_cdf_keeps_the_left_tail_and_its_shape():
    x = np.array([[-37.0, -8.0, -1.0], [0.0, 1.0, 9.0]])
    want = [[0.5 * math.erfc(-v / math.sqrt(2)) for v in row] for row in x]
    cdf = normal_cdf(x)
    assert cdf.shape == x.shape
    # relative, even at Φ(−37) ≈ 5.7e−300: what is left is the rounding of x/√2, which erfc
    # magnifies by 2(x/√2)² ≈ 1400 there
    np.testing.assert_allclose(cdf, want, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(normal_cdf(np.array([-np.inf, np.inf, np.nan])), [0, 1, np.nan])


# ----------------------------------------------------------------------- values by hand
def test_relu6_caps_at_six_and_its_derivative_is_zero_at_both_corners():
    y, dx = run(cl.ReLU6(), [-1, 0, 3, 6, 7])
    np.testing.assert_array_equal(y, [0, 0, 3, 6, 6])
    np.testing.assert_array_equal(dx, [0, 0, 1, 0, 0])  # PyTorch's choice at 0 and 6


def test_hardswish_values_and_slopes():
    y, dx = run(cl.Hardswish(), [-4, -3, -1.5, 0, 1, 3, 4])
    np.testing.assert_allclose(y, [0, 0, -1.5 * 1.5 / 6, 0, 4 / 6, 3, 4], rtol=1e-15, atol=0)
    np.testing.assert_allclose(dx, [0, 0, 0, 0.5, 1 / 3 + 0.5, 1, 1], rtol=1e-15)  # PyTorch's at ±3


def test_silu_is_swish_with_beta_one():
    x = np.linspace(-6, 6, 25)
    np.testing.assert_array_equal(run(cl.SiLU(), x)[0], run(cl.Swish(), x)[0])
    assert cl.SiLU().beta == 1.0 and cl.SiLU().config() == {}


def test_gelu_values_by_hand():
    phi1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))  # Φ(1) = 0.8413447460685429
    y, dx = run(cl.GELU(), [0, 1, -1])
    np.testing.assert_allclose(y, [0, phi1, -(1 - phi1)], rtol=1e-15, atol=0)
    pdf1 = math.exp(-0.5) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(dx, [0.5, phi1 + pdf1, (1 - phi1) - pdf1], rtol=1e-15)
    u = math.sqrt(2 / math.pi) * (1 + 0.044715)
    y, _ = run(cl.GELU("tanh"), [1])
    assert y[0] == pytest.approx(0.5 * (1 + math.tanh(u)), rel=1e-15)


LAYERS = [cl.ReLU6, cl.SiLU, cl.Hardswish, cl.GELU, lambda: cl.GELU("tanh")]


@pytest.mark.parametrize("dtype, big", [(np.float32, 3e38), (np.float64, 1e300)])
@pytest.mark.parametrize("make", LAYERS, ids=["relu6", "silu", "hardswish", "gelu", "gelu_tanh"])
def test_no_overflow_at_the_ends_of_the_range(make, dtype, big):
    # pytest turns an overflow warning into an error; large inputs saturate as the formulas say
    y, dx = run(make(), [-big, -50, 50, big], dtype)
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    capped = make is cl.ReLU6
    assert y[0] == 0 and dx[0] == 0 and dx[-1] == (0 if capped else 1)
    assert y[-1] == (6 if capped else dtype(big))


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", ["exact", "Tanh", "", None, 1])
def test_gelu_names_the_allowed_approximations(bad):
    with pytest.raises(ValueError, match=r"^GELU: approximate must be 'none' \(exact, erf\) or "
                                         rf"'tanh'\. Received: approximate={re.escape(repr(bad))}$"):
        cl.GELU(bad)


def test_silu_takes_no_beta():
    with pytest.raises(TypeError):
        cl.SiLU(beta=2.0)


# -------------------------------------------------------------------------------- files
def model() -> cl.Sequential:
    return cl.Sequential([cl.Conv2D(4, 3), cl.ReLU6(), cl.Conv2D(4, 1), cl.SiLU(), cl.Hardswish(),
                          cl.GELU(), cl.Flatten(), cl.Dense(6), cl.GELU("tanh"), cl.Dense(3)],
                         input_shape=(2, 5, 5))


def test_model_files_save_and_load_them_under_their_own_names(tmp_path, rng):
    original = model()
    path = tmp_path / "modern.safetensors"
    cl.save(original, path)
    loaded = cl.load(path)
    types = [spec["type"] for spec in io.architecture(loaded)["layers"]]
    assert types == ["Conv2D", "ReLU6", "Conv2D", "SiLU", "Hardswish", "GELU", "Flatten", "Dense",
                     "GELU", "Dense"]
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in original.layers]
    assert loaded.layers[8].approximate == "tanh"
    x = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), original.forward(x))


@pytest.mark.parametrize("spec, message", [
    ({"type": "GELU", "approximate": "fast"},
     r"layers\[1\]: cannot create GELU: GELU: approximate must be 'none' \(exact, erf\) or 'tanh'\. "
     r"Received: approximate='fast'"),
    ({"type": "SiLU", "beta": 2.0}, r"layers\[1\]: SiLU takes no argument beta"),
    ({"type": "ReLU6", "cap": 6}, r"layers\[1\]: ReLU6 takes no argument cap"),
])
def test_a_file_with_wrong_arguments_is_refused(spec, message):
    arch = io.architecture(model())
    arch["layers"][1] = spec
    with pytest.raises(cl.ModelFileError, match=message):
        io.from_architecture(arch)


def test_they_ask_for_he_initialisation_and_explain_themselves():
    net = cl.Sequential([cl.Dense(4), cl.GELU(), cl.Dense(4), cl.Hardswish(), cl.Dense(4), cl.SiLU(),
                         cl.Dense(4), cl.ReLU6(), cl.Dense(2)], input_shape=(3,))
    assert [net.layers[i].init_hint for i in (0, 2, 4, 6)] == ["he"] * 4
    assert cl.GELU().arithmetic((3,)) == "elementwise x·Φ(x), Φ(x) = ½(1 + erf(x/√2))"
    assert cl.GELU("tanh").arithmetic((3,)) == "elementwise ½x(1 + tanh(√(2/π)(x + 0.044715x³)))"
    assert cl.ReLU6().arithmetic((3,)) == "elementwise min(max(0, x), 6)"
    assert cl.Hardswish().arithmetic((3,)) == "elementwise x·min(max(x + 3, 0), 6)/6"
    assert cl.SiLU().arithmetic((3,)) == "elementwise x·σ(x)"
