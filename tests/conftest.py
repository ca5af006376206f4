"""Shared fixtures: a seeded RNG, cnnlab's thread count at 1 and 2, PyTorch as the reference, and
a record of parity errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cnnlab.runtime import threads

#: largest relative parity error seen per test, printed at the end of the run
PARITY_ERRORS: dict[str, float] = {}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def n_threads(request):
    """cnnlab's thread count set to 1, then 2, for one test; restored after."""
    before = threads.num_threads()
    threads.set_num_threads(request.param)
    yield request.param
    threads.set_num_threads(before)


@pytest.fixture(scope="session")
def torch():
    """PyTorch 2.13 CPU, the reference. Missing torch skips locally and fails under CI."""
    try:
        import torch
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PyTorch parity tests: pip install torch==2.13.0")
        pytest.skip("PyTorch not installed (pip install torch==2.13.0) — parity tests skipped")
    torch.manual_seed(0)
    return torch


@pytest.fixture
def parity(request):
    """`parity(ours, theirs, rtol)`: asserts closeness and records the relative error
    max|a − b| / max(1, max|b|) for the end-of-run report."""

    def check(ours, theirs, tol: float = 1e-5, what: str = "") -> float:
        theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
        ours = np.asarray(ours)
        assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
        scale = max(1.0, float(np.max(np.abs(theirs)))) if theirs.size else 1.0
        err = float(np.max(np.abs(ours.astype(np.float64) - theirs))) / scale if ours.size else 0.0
        key = request.node.nodeid
        PARITY_ERRORS[key] = max(PARITY_ERRORS.get(key, 0.0), err)
        assert err <= tol, f"{what}: relative error {err:.3g} > {tol:.1g}"
        return err

    return check


def pytest_terminal_summary(terminalreporter):
    if PARITY_ERRORS:
        worst = max(PARITY_ERRORS, key=PARITY_ERRORS.get)
        terminalreporter.write_line(
            f"PyTorch parity: {len(PARITY_ERRORS)} checks, largest relative error "
            f"{PARITY_ERRORS[worst]:.3g} ({worst})"
        )
