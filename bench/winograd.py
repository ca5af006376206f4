"""A probe, not a kernel of cnnlab: Winograd F(2×2, 3×3) in NumPy alone for the stride-1,
padding-1 3×3 convolutions of issue 19's networks, timed against cnnlab's own forward on the
same layer. It showed that the transforms as NumPy passes cost more than the 2.25× fewer
multiplications save; cnnlab's Winograd path (kernels/winograd.py) compiles them instead, and
bench/direct.py times that path.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/winograd.py

Winograd (Lavin and Gray 2016): each 2×2 output tile is A^T·[(G·g·G^T) ⊙ (B^T·d·B)]·A for its
4×4 input tile d, so the multiplications become 16 matrix products (K × C) · (C × tiles), one per
position of the 4×4 transformed tile: 16 multiply-adds per tile and channel pair where the
direct convolution needs 36 (2.25× fewer). The transforms are additions over strided views.
Printed per layer: both forwards on one thread (cnnlab's threads set to 1, the BLAS held to one
thread), and the largest error of each against a float64 direct convolution, relative to the
largest output. Not a test: numbers go in docs/performance.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import cnnlab as cl  # noqa: E402
from cnnlab.runtime import threads  # noqa: E402

#: G (4×3): the filter transform
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
#: (C → K, H = W) of the 3×3 stride-1 convolutions in fmnist-cnn(-bn), resnet8 and resnet20
SHAPES = [(16, 16, 28), (32, 32, 14), (32, 64, 14), (64, 64, 7), (64, 128, 7)]


def filters(w: np.ndarray) -> np.ndarray:
    """U = G·g·G^T for every (k, c): (16, K, C), position-major for the 16 products."""
    u = np.einsum("ai,kcij,bj->abkc", G, w.astype(np.float64), G)
    return np.ascontiguousarray(u.reshape(16, *w.shape[:2]).astype(w.dtype))


def forward(xc: np.ndarray, u: np.ndarray) -> np.ndarray:
    """y (K, N, H, W) of xc (C, N, H, W) with padding 1; H and W need not be even."""
    c, n, h, w = xc.shape
    th, tw = -(-h // 2), -(-w // 2)
    xp = np.zeros((c, n, 2 * th + 2, 2 * tw + 2), xc.dtype)
    xp[:, :, 1 : h + 1, 1 : w + 1] = xc
    d = [xp[:, :, a : a + 2 * th : 2, :] for a in range(4)]  # the tiles' rows a
    rows = [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]  # B^T·d
    v = np.empty((4, 4, c, n, th, tw), xc.dtype)
    for a, r in enumerate(rows):  # (B^T·d)·B, column by column
        e = [r[..., b : b + 2 * tw : 2] for b in range(4)]
        np.subtract(e[0], e[2], out=v[a, 0])
        np.add(e[1], e[2], out=v[a, 1])
        np.subtract(e[2], e[1], out=v[a, 2])
        np.subtract(e[1], e[3], out=v[a, 3])
    k = u.shape[1]
    m = np.matmul(u, v.reshape(16, c, -1)).reshape(4, 4, k, n, th, tw)
    r0, r1 = m[0] + m[1] + m[2], m[1] - m[2] - m[3]  # A^T·M, then ·A
    y = np.empty((k, n, 2 * th, 2 * tw), xc.dtype)
    for a, r in enumerate((r0, r1)):
        y[:, :, a::2, 0::2] = r[0] + r[1] + r[2]
        y[:, :, a::2, 1::2] = r[1] - r[2] - r[3]
    return y[:, :, :h, :w]


def exact(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    return np.einsum("nchwij,kcij->nkhw", windows, w.astype(np.float64), optimize=True)


def main(batch: int = 128) -> None:
    common.limit_threads()
    print(f"BLAS: {common.blas_info()}   NumPy sgemm 2048×2048: {common.sgemm_gflops():.1f} GFLOP/s")
    threads.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"batch {batch}, float32, one thread each; error: max |y − exact| / max |exact|")
    for c, k, hw in SHAPES:
        x = rng.standard_normal((batch, c, hw, hw)).astype(np.float32)
        conv = cl.layers.Conv2D(k, 3, padding=1, bias=False)
        conv.build((c, hw, hw))
        xc = np.ascontiguousarray(x.transpose(1, 0, 2, 3))
        u = filters(conv.weight.data)
        reference = exact(x, conv.weight.data)
        scale = np.abs(reference).max()
        wino_error = np.abs(forward(xc, u).transpose(1, 0, 2, 3) - reference).max() / scale
        direct_error = np.abs(conv.forward(x) - reference).max() / scale
        with threads.single_blas():
            wino = 1e3 * common.median_seconds(lambda xc=xc, u=u: forward(xc, u), 9)
            direct = 1e3 * common.median_seconds(lambda conv=conv, x=x: conv.forward(x), 9)
        print(f"{c:3d} → {k:3d} at {hw:2d}×{hw:<2d}  Winograd {wino:7.2f} ms  cnnlab {direct:7.2f} ms  "
              f"({direct / wino:.2f}×)   error {wino_error:.1e} (cnnlab {direct_error:.1e})")


if __name__ == "__main__":
    main()
