"""Weight initialisation from an explicit `numpy.random.Generator`.

fan_in = inputs per output unit (C·F·F for a convolution), fan_out = K·F·F.
    "he"            normal, std = √(2 / fan_in)          He et al. 2015, for the ReLU family
    "he_uniform"    uniform ±√(6 / fan_in)
    "xavier"        uniform ±√(6 / (fan_in + fan_out))  Glorot & Bengio 2010, for sigmoid and tanh
    "xavier_normal" normal, std = √(2 / (fan_in + fan_out))
    "zeros"         all zero (every unit then learns the same thing: a lesson, not a default),
                    except in a classifier head: its units see different labels, so they part
                    at once, and every class starts at probability 1/C, loss ln C (the zoo's
                    small models end in one)
"auto" lets a Sequential choose from the activation that follows the layer: He before the
ReLU family, ELU, Swish and Maxout; Xavier before sigmoid and tanh and for the final scores.
"""

from __future__ import annotations

import numpy as np

INITS = ("auto", "he", "he_uniform", "xavier", "glorot", "xavier_normal", "zeros")


def check_init(init: str, owner: str) -> str:
    if init not in INITS:
        raise ValueError(f"{owner}: init must be one of {', '.join(INITS)}. Received: init={init!r}")
    return init


def initialize(
    init: str, rng: np.random.Generator, shape, fan_in: int, fan_out: int, dtype
) -> np.ndarray:
    """An array of `shape` drawn by the named rule (see the module docstring)."""
    if init == "he":
        values = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif init == "he_uniform":
        values = rng.uniform(-1.0, 1.0, shape) * np.sqrt(6.0 / fan_in)
    elif init in ("xavier", "glorot"):
        values = rng.uniform(-1.0, 1.0, shape) * np.sqrt(6.0 / (fan_in + fan_out))
    elif init == "xavier_normal":
        values = rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))
    elif init == "zeros":
        values = np.zeros(shape)
    else:
        raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS[1:])}")
    return values.astype(dtype)
