"""Run under mpiexec -n K by tests/test_distributed.py: evaluates one model on 103 samples split
over the K processes (counts reduced) and in each process alone, and prints, on rank 0, "same"
when the accuracy, top-3, confusion matrix and per-class accuracy are equal and the loss agrees
to 1e-12 (float64), else what differs."""

from __future__ import annotations

import numpy as np

import cnnlab as cl

rng = np.random.default_rng(1)
x = rng.standard_normal((103, 1, 6, 6))
y = rng.integers(0, 5, 103)
model = cl.Sequential([cl.Flatten(), cl.Dense(5)], input_shape=(1, 6, 6), dtype=np.float64)
comm = cl.distributed.Comm()
loss = cl.SoftmaxCrossEntropy()
split = cl.evaluate(model, (x, y), loss=loss, k=3, comm=comm, batch_size=16)
whole = cl.evaluate(model, (x, y), loss=loss, k=3, batch_size=16)
problems = [key for key in ("n", "accuracy", "top3") if split[key] != whole[key]]
problems += [] if np.array_equal(split["confusion"], whole["confusion"]) else ["confusion"]
problems += [] if np.array_equal(split["per_class"], whole["per_class"], equal_nan=True) else ["per_class"]
problems += [] if abs(split["loss"] - whole["loss"]) <= 1e-12 * abs(whole["loss"]) else ["loss"]
if comm.rank == 0:
    print("same" if not problems else f"differ: {problems}")
