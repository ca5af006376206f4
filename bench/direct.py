"""The compiled 3×3 paths, direct (cnnlab.kernels.direct), Winograd F(2×2, 3×3)
(cnnlab.kernels.winograd) and gather (cnnlab.kernels.gather, vector code over filters, where
it applies), against the NumPy "same" path and PyTorch, per 3×3 stride-1
padding-1 layer shape: where Conv2D._path takes each, and the chunk sizes they use.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/direct.py [--chunk 131072 262144]
        [--wchunk 262144 1048576]

Printed per shape (batch 128, float32, 2 threads each): the forward and the forward + backward
(dW and dx) in milliseconds of cnnlab's NumPy path (kernels.conv_forward_same, im2col and
GEMM), of the direct path, of the Winograd path, of the gather path ("—" where its vector code
does not apply), and of PyTorch, the medians of 7 calls after a
warm-up; with --chunk or --wchunk, the direct or Winograd path for each value of its
CHUNK_VALUES. Not a test: numbers go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from cnnlab import kernels  # noqa: E402
from cnnlab.kernels import direct, gather, winograd  # noqa: E402
from cnnlab.runtime import threads  # noqa: E402

PAD = ((1, 1), (1, 1))
#: (C → K, H = W): ResNet-8/20's stages, fmnist-cnn(-bn)'s layers after the first, and others
SHAPES = [(16, 16, 28), (32, 32, 14), (64, 64, 7), (32, 64, 14), (64, 128, 7), (16, 32, 28),
          (8, 8, 28), (16, 16, 14), (4, 16, 28), (16, 16, 56), (32, 32, 28), (64, 64, 8),
          (1, 16, 28), (1, 32, 28), (3, 16, 32)]


def numpy_path(x, w, dy):
    y, saved = kernels.conv_forward_same(x, w.reshape(w.shape[0], -1), None, 3, 3, 1, PAD)
    kernels.conv_backward_same(dy, saved, w, 1, PAD, bias_grad=False)


def direct_path(x, w, dy):
    y, saved = kernels.conv_forward_direct(x, w, None)
    kernels.conv_backward_direct(dy, saved, w, bias_grad=False)


def winograd_path(x, w, dy):
    y, saved = kernels.conv_forward_winograd(x, w, None)
    kernels.conv_backward_winograd(dy, saved, w, bias_grad=False)


def gather_path(x, w, dy):
    y, saved = kernels.conv_forward_gather(x, w, None)
    kernels.conv_backward_gather(dy, saved, w, bias_grad=False)


def torch_both(torch, x, w, dy):
    xt, wt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(w).requires_grad_(True)
    torch.nn.functional.conv2d(xt, wt, padding=1).backward(torch.from_numpy(dy))


def row(c: int, k: int, hw: int, chunks: list[int], wchunks: list[int], torch) -> str:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, c, hw, hw)).astype(np.float32)
    w = (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    dy = rng.standard_normal((128, k, hw, hw)).astype(np.float32)

    def ms(fn):
        with threads.single_blas():
            return 1e3 * common.median_seconds(fn, 7)

    cells = [ms(lambda: kernels.conv_forward_same(x, w.reshape(k, -1), None, 3, 3, 1, PAD)),
             ms(lambda: numpy_path(x, w, dy))]
    for value in chunks:
        direct.CHUNK_VALUES = value
        cells += [ms(lambda: kernels.conv_forward_direct(x, w, None)),
                  ms(lambda: direct_path(x, w, dy))]
    for value in wchunks:
        winograd.CHUNK_VALUES = value
        cells += [ms(lambda: kernels.conv_forward_winograd(x, w, None)),
                  ms(lambda: winograd_path(x, w, dy))]
    if gather.conv_gather_applies(3, 3, 1, PAD, c, k, np.float32):
        cells += [ms(lambda: kernels.conv_forward_gather(x, w, None)),
                  ms(lambda: gather_path(x, w, dy))]
    else:
        cells += [float("nan")] * 2
    if torch is not None:
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        with torch.no_grad():
            cells.append(ms(lambda: torch.nn.functional.conv2d(xt, wt, padding=1)))
        cells.append(ms(lambda: torch_both(torch, x, w, dy)))
    return f"{c:3d} → {k:3d} at {hw:2d}×{hw:<2d} " + "".join(
        f"{'—':>9}" if v != v else f"{v:9.2f}" for v in cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, nargs="+", default=[direct.CHUNK_VALUES],
                        help="values of direct.CHUNK_VALUES to time (default: cnnlab's)")
    parser.add_argument("--wchunk", type=int, nargs="+", default=[winograd.CHUNK_VALUES],
                        help="values of winograd.CHUNK_VALUES to time (default: cnnlab's)")
    args = parser.parse_args()
    common.limit_threads()
    torch = common.torch_or_none()
    print(f"BLAS: {common.blas_info()}   threads: {common.THREADS}   "
          f"NumPy sgemm 2048×2048: {common.sgemm_gflops():.1f} GFLOP/s")
    heads = ["numpy fwd", "+bwd"]
    for value in args.chunk:
        heads += [f"dir{value >> 10}K", "+bwd"]
    for value in args.wchunk:
        heads += [f"win{value >> 10}K", "+bwd"]
    heads += ["gather", "+bwd"]
    heads += ["torch fwd", "+bwd"] if torch is not None else []
    print("ms, batch 128, float32".ljust(19) + "".join(f"{h:>9}" for h in heads))
    for c, k, hw in SHAPES:
        print(row(c, k, hw, args.chunk, args.wchunk, torch), flush=True)


if __name__ == "__main__":
    main()
