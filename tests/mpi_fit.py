"""Run under mpiexec -n K by tests/test_distributed.py: trains one small network data-parallel
(cl.fit(distributed=True), or one process when K = 1) on fixed data for 21 steps and, on rank 0,
saves the weights to the file named by argv[1]. argv[2]: float32 or float64; argv[3]: the
network ("dense" or "conv"); argv[4] "disagree": rank 1 asks for another batch size."""

from __future__ import annotations

import sys

import numpy as np

import cnnlab as cl

out, dtype, net = sys.argv[1], np.dtype(sys.argv[2]), sys.argv[3]
disagree = sys.argv[4:] == ["disagree"]  # rank 1 asks for another batch size
rng = np.random.default_rng(0)
x = rng.standard_normal((640, 1, 8, 8)).astype(dtype)
y = rng.integers(0, 4, 640)
layers = ([cl.Flatten(), cl.Dense(32), cl.Tanh(), cl.Dense(4)] if net == "dense" else
          [cl.Conv2D(4, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(), cl.Dense(4)])
model = cl.Sequential(layers, input_shape=(1, 8, 8), dtype=dtype, seed=0)
optimizer = cl.optim.SGD(model, lr=0.1, momentum=0.9)
comm = cl.distributed.Comm() if cl.distributed.launched() else None
batch = 31 if disagree and comm is not None and comm.rank == 1 else 30
cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=optimizer, epochs=1, batch_size=batch,
       distributed=comm, verbose=False, progress=False)  # 640/30: 21 steps, the last one of 10
if comm is None or comm.rank == 0:
    cl.save(model, out)
