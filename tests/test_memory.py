"""cnnlab.memory: freed arrays stay in the process, so a training step does not fault its
memory in again every time."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from cnnlab import memory

GLIBC = platform.libc_ver()[0] == "glibc"


def test_glibc_accepts_both_settings():
    # the CI machine is Debian: glibc, so this asserts True there
    assert memory.keep_freed_memory(True) is GLIBC
    assert memory.keep_freed_memory(False) is GLIBC
    memory.keep_freed_memory(True)  # what the rest of the test session runs with


@pytest.fixture
def undecided(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_decided", False)
    monkeypatch.setattr(memory, "keep_freed_memory", lambda keep=True: calls.append(keep))
    return calls


def test_applied_once_per_process(undecided, monkeypatch):
    monkeypatch.delenv("CNNLAB_KEEP_MEMORY", raising=False)
    memory.apply_default()
    monkeypatch.setattr(memory, "_decided", True)  # what keep_freed_memory itself sets
    memory.apply_default()
    assert undecided == [True]


def test_environment_variable_leaves_malloc_alone(undecided, monkeypatch):
    monkeypatch.setenv("CNNLAB_KEEP_MEMORY", "0")
    memory.apply_default()
    memory.apply_default()
    assert undecided == []


STEPS = """
import resource, sys
import numpy as np
import cnnlab as cl
rng = np.random.default_rng(0)
x = rng.standard_normal((128, 1, 28, 28)).astype(np.float32)
y = rng.integers(0, 10, 128)
model = cl.zoo.get("resnet8", seed=0)
loss, opt = cl.SoftmaxCrossEntropy(), cl.optim.SGD(model, lr=0.01, momentum=0.9)
def step():
    loss.forward(model.forward(x, training=True), y)
    model.backward(loss.backward(), input_grad=False)
    opt.step()
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
"""


@pytest.mark.skipif(not GLIBC, reason="the policy exists for glibc's malloc only")
def test_a_training_step_reuses_its_memory():
    # ResNet-8, batch 128: about 16,000 page faults a step with glibc's defaults (measured),
    # about 0 with the policy that Sequential.forward applies
    env = {k: v for k, v in os.environ.items() if k != "CNNLAB_KEEP_MEMORY"}
    out = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True,
                         check=True, env=env)
    assert float(out.stdout.split()[-1]) < 200
