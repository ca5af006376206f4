"""A MobileNetV2 block against PyTorch CPU: the depthwise convolution in its usual company.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/mobilenet_block.py [--size 14 28]

The block (an inverted residual, stride 1): 1×1 expand 32 → 192, BatchNorm, ReLU6, depthwise
3×3 (groups = 192), BatchNorm, ReLU6, 1×1 project 192 → 32, BatchNorm, the input added back;
batch 64, float32, H×W = 14×14 and 28×28 by default. Each framework runs in its own subprocess
on the same BENCH_THREADS threads (2), the two taking turns as bench/speed.py's do (the one
waiting sleeps): per round, 3 calls of one then 3 of the other, for each row in turn. Rows: the
block's training pass (forward in training mode and backward, dx included; no optimizer), its
inference forward, and the depthwise layer alone on its input (forward; forward + backward).
Printed: the median milliseconds of each, and the time ratio cnnlab/PyTorch per round (median
and range; < 1: cnnlab faster). Issue 20's bar: the depthwise layer at most 2× PyTorch's time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

BATCH, ROUNDS, WARMUP, PER_TURN, PAUSE = 64, 10, 2, 3, 0.3
ROWS = ("block-train", "block-infer", "dw-fwd", "dw-fwd+bwd")


def block(cl, expand: int = 192, channels: int = 32):
    return cl.Residual([
        cl.Conv2D(expand, 1, bias=False), cl.BatchNorm2D(), cl.ReLU6(),
        cl.Conv2D(expand, 3, padding=1, groups=expand, bias=False), cl.BatchNorm2D(), cl.ReLU6(),
        cl.Conv2D(channels, 1, bias=False), cl.BatchNorm2D()])


def calls(framework: str, size: int) -> dict:
    """The timed calls of one framework: a dict row → zero-argument function."""
    import cnnlab as cl

    common.limit_threads()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 32, size, size)).astype(np.float32)
    model = cl.Sequential([block(cl)], input_shape=(32, size, size), seed=0)
    branch = model.layers[0].branch
    dw = branch.layers[3]
    a = branch.layers[2](branch.layers[1](branch.layers[0](x)))  # the depthwise layer's input
    if framework == "cnnlab":
        cl.runtime.apply_defaults()
        dy, dy_dw = np.ones_like(x), np.ones_like(a)

        def train():
            model.forward(x, training=True)
            model.backward(dy)

        def dw_both():
            dw.forward(a, training=True)
            dw.backward(dy_dw)

        return {"block-train": train, "block-infer": lambda: model.forward(x),
                "dw-fwd": lambda: dw.forward(a, training=True), "dw-fwd+bwd": dw_both}
    import torch

    net = common.to_torch(model, torch)
    dw_t = net[0].branch[3]
    xt = torch.from_numpy(x).requires_grad_(True)
    at = torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True)

    def train_t():
        net.train()
        net(xt).backward(torch.ones_like(xt))

    def infer_t():
        net.eval()
        with torch.no_grad():
            net(xt)

    def dw_fwd_t():
        with torch.enable_grad():
            dw_t(at)

    return {"block-train": train_t, "block-infer": infer_t, "dw-fwd": dw_fwd_t,
            "dw-fwd+bwd": lambda: dw_t(at).backward(torch.ones_like(at))}


def serve(framework: str, size: int) -> None:
    """A subprocess: answers "ROW K" with K timings (a JSON list of seconds); sleeps between."""
    fns = calls(framework, size)
    for line in sys.stdin:
        row, count = line.split()
        times = []
        for _ in range(int(count)):
            start = time.perf_counter()
            fns[row]()
            times.append(time.perf_counter() - start)
        print(json.dumps(times), flush=True)


class Worker:
    def __init__(self, framework: str, size: int):
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", framework, "--size", str(size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, row: str, count: int) -> float:
        time.sleep(PAUSE)  # the other process's idle threads stop spinning first
        self.proc.stdin.write(f"{row} {count}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker failed (exit {self.proc.wait()})")
        return float(np.median(json.loads(line)))


def run(size: int, rounds: int) -> None:
    workers = [Worker("cnnlab", size), Worker("torch", size)]
    try:
        print(f"\n{BATCH}×32×{size}×{size}, expand to 192 (per round {PER_TURN} calls of each in "
              f"turn, {rounds} rounds; ratio cnnlab/PyTorch time: median [min–max])")
        print(f"  {'':12}{'cnnlab ms':>11}{'PyTorch ms':>12}{'ratio':>8}")
        for row in ROWS:
            for w in workers:
                w.ask(row, WARMUP)
            ours, theirs = [], []
            for _ in range(rounds):
                ours.append(workers[0].ask(row, PER_TURN))
                theirs.append(workers[1].ask(row, PER_TURN))
            ratios = np.array(ours) / np.array(theirs)
            print(f"  {row:12}{1e3 * np.median(ours):11.2f}{1e3 * np.median(theirs):12.2f}"
                  f"{np.median(ratios):8.2f}  [{ratios.min():.2f}–{ratios.max():.2f}]")
    finally:
        for w in workers:
            w.proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs="+", default=[14, 28], help="H = W of the block")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--worker", choices=["cnnlab", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(args.worker, args.size[0])
        return
    common.limit_threads()
    print(f"BLAS: {common.blas_info()}   threads: {common.THREADS}   float32")
    if common.torch_or_none() is None:
        return
    for size in args.size:
        run(size, max(1, args.rounds))


if __name__ == "__main__":
    main()
