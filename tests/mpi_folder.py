"""Run under mpiexec -n K by tests/test_distributed.py: trains on the image folder argv[1] read
lazily (as `mpiexec cnnlab train` reads one) and writes, per rank, the images it decoded and the
weights' checksum as JSON to argv[2].rankR.json (a file each: the ranks' stdout may interleave)."""

from __future__ import annotations

import json
import sys

import numpy as np

import cnnlab as cl
from cnnlab.data import folder

decoded: list[str] = []
original = folder._decode
folder._decode = lambda path, *args: decoded.append(str(path)) or original(path, *args)

comm = cl.distributed.Comm() if cl.distributed.launched() else None
source = cl.data.Source(sys.argv[1], holdout=False, lazy=True)
x, y, names, _ = source.load("all", (1, 8, 8))
model = cl.Sequential([cl.Flatten(), cl.Dense(len(names))], input_shape=(1, 8, 8), seed=0)
cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.SGD(model, lr=0.1),
       epochs=2, batch_size=10, distributed=comm, verbose=False, progress=False)
weights = float(sum(np.abs(p.data).sum() for p in model.parameters().values()))
rank = 0 if comm is None else comm.rank
with open(f"{sys.argv[2]}.rank{rank}.json", "w") as f:
    json.dump({"rank": rank, "decoded": decoded, "weights": weights}, f)
