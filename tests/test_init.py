"""Initialisation: the variances the papers prescribe, from a seeded Generator."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.init import initialize


@pytest.mark.parametrize(
    "init, fan_in, fan_out, std",
    [
        ("he", 400, 200, np.sqrt(2 / 400)),
        ("he_uniform", 400, 200, np.sqrt(2 / 400)),
        ("xavier", 400, 200, np.sqrt(2 / 600)),
        ("xavier_normal", 400, 200, np.sqrt(2 / 600)),
    ],
)
def test_standard_deviation(init, fan_in, fan_out, std):
    w = initialize(init, np.random.default_rng(0), (200, 400), fan_in, fan_out, np.float32)
    assert w.dtype == np.float32
    assert w.std() == pytest.approx(std, rel=0.02)
    assert abs(w.mean()) < 0.01 * std * 10


def test_uniform_bounds():
    w = initialize("xavier", np.random.default_rng(0), (50, 60), 60, 50, np.float64)
    assert np.abs(w).max() <= np.sqrt(6 / 110)


def test_same_generator_state_same_weights():
    a = initialize("he", np.random.default_rng(5), (3, 3), 3, 3, np.float32)
    b = initialize("he", np.random.default_rng(5), (3, 3), 3, 3, np.float32)
    np.testing.assert_array_equal(a, b)


def test_unknown_init():
    with pytest.raises(ValueError, match="unknown init 'lecun'"):
        initialize("lecun", np.random.default_rng(0), (2,), 1, 1, np.float32)
