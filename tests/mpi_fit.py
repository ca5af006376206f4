"""Run under mpiexec -n K by tests/test_distributed.py: trains one small network data-parallel
(cl.fit(distributed=True), or one process when K = 1) on fixed data for 21 steps an epoch and, on
rank 0, saves the weights to the file named by argv[1]. argv[2]: float32 or float64; argv[3]: the
network ("dense", "conv", "bn": convolution + BatchNorm, "dropout"); then any of:
  disagree      rank 1 asks for another batch size
  sync          synchronized BatchNorm
  every-rank    every rank saves its model, to argv[1] + ".rankR"
  epochs=N      N epochs (default 1)
  out=DIR       fit's run folder (checkpoints)
  resume=CKPT   continue from a checkpoint"""

from __future__ import annotations

import sys

import numpy as np

import cnnlab as cl

out, dtype, net = sys.argv[1], np.dtype(sys.argv[2]), sys.argv[3]
flags = dict(arg.partition("=")[::2] for arg in sys.argv[4:])
rng = np.random.default_rng(0)
x = rng.standard_normal((640, 1, 8, 8)).astype(dtype)
y = rng.integers(0, 4, 640)
layers = {
    "dense": [cl.Flatten(), cl.Dense(32), cl.Tanh(), cl.Dense(4)],
    "conv": [cl.Conv2D(4, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(), cl.Dense(4)],
    "bn": [cl.Conv2D(4, 3, padding=1), cl.BatchNorm2D(), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(),
           cl.Dense(8), cl.BatchNorm1D(), cl.Tanh(), cl.Dense(4)],
    "dropout": [cl.Flatten(), cl.Dense(32), cl.ReLU(), cl.Dropout(0.3), cl.Dense(4)],
}[net]
model = cl.Sequential(layers, input_shape=(1, 8, 8), dtype=dtype, seed=0)
optimizer = cl.optim.SGD(model, lr=0.1, momentum=0.9)
comm = cl.distributed.Comm() if cl.distributed.launched() else None
batch = 31 if "disagree" in flags and comm is not None and comm.rank == 1 else 30
cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=optimizer,
       epochs=int(flags.get("epochs", 1)), batch_size=batch, distributed=comm, verbose=False,
       progress=False, sync_batchnorm="sync" in flags, out=flags.get("out"),
       resume=flags.get("resume"))  # 640/30: 21 steps an epoch, the last one of 10
if "every-rank" in flags and comm is not None:
    cl.save(model, f"{out}.rank{comm.rank}")
if comm is None or comm.rank == 0:
    cl.save(model, out)
