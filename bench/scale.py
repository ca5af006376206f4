"""Data-parallel scaling on this machine: training throughput of cnnlab on K processes against
one process, and PyTorch's DistributedDataParallel (gloo) the same way.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/scale.py [--nets fmnist-cnn resnet8]

For each network, global batch 128, 28×28×1, float32, SGD with momentum: images/s of a training
step for (a) 1 process with 2 threads, (b) K = 2 processes with 1 thread each (mpiexec), and the
share of (b)'s step spent in the gradient Allreduce; the same for PyTorch (b: DDP on gloo over a
file store in a temporary folder, launched by the same mpiexec). Each configuration: 3 warm-up
steps, then the median of STEPS steps. The sgemm rate of this machine is printed with the table.
The runs are sequential; ratios compare what ran minutes apart, so read them with the spread of
bench/speed.py in mind.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

BATCH, STEPS, WARMUP = 128, 12, 3


def _cnnlab(net: str) -> dict:
    import cnnlab as cl

    comm = cl.distributed.Comm() if cl.distributed.launched() else None
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    share = slice(None) if comm is None else comm.share(BATCH)
    xs, ys = x[share], y[share]
    model = cl.zoo.get(net, seed=0)
    cl.runtime.apply_defaults()
    loss, opt = cl.SoftmaxCrossEntropy(), cl.optim.SGD(model, lr=0.01, momentum=0.9)
    times, comms = [], []
    for i in range(WARMUP + STEPS):
        started = time.perf_counter()
        loss.forward(model.forward(xs, training=True), ys)
        model.backward(loss.backward(), input_grad=False)
        reduced = time.perf_counter()
        if comm is not None:
            comm.average_gradients(model, len(ys) / BATCH)
            comm.average_buffers(model)
        done = time.perf_counter()
        opt.step()
        if i >= WARMUP:
            times.append(time.perf_counter() - started)
            comms.append(done - reduced)
    return {"step": float(np.median(times)), "comm": float(np.median(comms)),
            "rank": 0 if comm is None else comm.rank}


def _torch(net: str, store: str) -> dict:
    import torch

    import cnnlab as cl

    size = int(os.environ.get("PMI_SIZE", "1"))
    rank = int(os.environ.get("PMI_RANK", "0"))
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    model_t = common.to_torch(cl.zoo.get(net, seed=0), torch)
    if size > 1:
        torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                             world_size=size)
        model_t = torch.nn.parallel.DistributedDataParallel(model_t)
    rng = np.random.default_rng(0)
    base, extra = divmod(BATCH, size)  # the shares cnnlab.distributed.Comm.share gives
    lo = rank * base + min(rank, extra)
    share = slice(lo, lo + base + (rank < extra))
    x = torch.from_numpy(rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32))[share]
    y = torch.from_numpy(rng.integers(0, 10, BATCH))[share]
    opt = torch.optim.SGD(model_t.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(WARMUP + STEPS):
        started = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model_t(x), y).backward()
        opt.step()
        if i >= WARMUP:
            times.append(time.perf_counter() - started)
    if size > 1:
        torch.distributed.destroy_process_group()
    return {"step": float(np.median(times)), "comm": float("nan"), "rank": rank}


def launch(framework: str, net: str, processes: int, threads: int) -> dict:
    """One configuration in fresh processes; rank 0's result."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               CNNLAB_NUM_THREADS=str(threads), BENCH_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, __file__, "--worker", framework, net, str(Path(tmp) / "store")]
        if processes > 1:
            mpiexec = str(Path(sys.executable).parent / "mpiexec")
            command = [mpiexec, "-n", str(processes), *command]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("{")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", default=["fmnist-cnn", "resnet8"])
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        framework, net, store = args.worker
        result = _cnnlab(net) if framework == "cnnlab" else _torch(net, store)
        if result["rank"] == 0:  # one line: the processes' prints could interleave
            print(json.dumps(result), flush=True)
        return
    print(f"BLAS: {common.blas_info()}")
    print(f"NumPy sgemm 2048×2048: {common.sgemm_gflops():.1f} GFLOP/s   global batch {BATCH}")
    for net in args.nets:
        print(f"\n{net}: images/s of a training step (median of {STEPS})")
        print(f"{'':28}{'cnnlab':>10}{'PyTorch':>10}{'ratio':>8}")
        for label, k, t in (("1 process × 2 threads", 1, 2), ("2 processes × 1 thread", 2, 1)):
            ours, theirs = launch("cnnlab", net, k, t), launch("torch", net, k, t)
            a, b = BATCH / ours["step"], BATCH / theirs["step"]
            print(f"{label:<28}{a:>10.0f}{b:>10.0f}{a / b:>8.2f}")
            if k > 1:
                print(f"{'  allreduce share of a step':<28}{100 * ours['comm'] / ours['step']:>9.1f}%")


if __name__ == "__main__":
    main()
