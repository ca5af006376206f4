"""The gather path: 3×3 stride-1 convolutions with padding 1, float32, as explicit vector code
over filters (gather_ir.py, compiled by llvmlite like simd.py), batch chunk by chunk, no column
matrix.

The input is zero-padded once as (C, N, H + 2, W + 2) memory (the planes backward reads again).
Output position p = (n, i, j) of a chunk reads, at tap t = (u, v) and channel c, the value at
c·cs + base[p] + tap[t], base[p] = n·(H + 2)·(W + 2) + i·(W + 2) + j, tap[t] = u·(W + 2) + v.
The kernel broadcasts that one value to every lane and multiplies it by a vector of filters:

    forward   y[k, p] = Σ_t Σ_c w[k, c, t] · x_pad[c, base[p] + tap[t]]
    dx        dx[c, p] = Σ_t Σ_k w[k, c, 8 − t] · dy_pad[k, base[p] + tap[t]]
              (the same kernel on dy padded like x, the kernel flipped, K and C swapped)
    dW        dW[k, c, t] = Σ_p x_pad[c, base[p] + tap[t]] · dy[k, p]   (per chunk, added in
              chunk order by chunks.conv_backward_chunks)

Only the output positions are computed, so a 7×7 map costs its 49 positions (the direct path's
padded rows computed 63 of every 81), and the window's edges cost nothing (the broadcast values
come from the zero padding). Each step of the forward loop loads KV vectors of weights and
broadcasts P input values for P·KV fused multiply-adds; the sums stay in registers over all
taps and channels. One thread, 32 samples: 176–181 GFLOP/s on 64 → 64 at 7×7, 148 on 32 → 32 at
14×14 (dW 187–207), where the same layers' "same" and Winograd paths ran the whole layer at
60–110 (docs/performance.md).

The sums are in another order than the other paths' (taps outer, channels inner, each product
fused), so the last bits differ from theirs: tests/test_gather.py bounds the difference
against a float64 reference. For a given thread count the results are bit-identical.

Applies (conv_gather_applies) where the kernel runs (float32 on x86-64 with AVX-512 or AVX2 +
FMA, llvmlite ≥ 0.44, CNNLAB_SIMD not 0) and both the channels and the filters are a multiple
of the vector width (16 on AVX-512, 8 on AVX2): dx is vectorized over channels.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import NamedTuple

import numpy as np

from cnnlab.kernels import gather_ir, simd
from cnnlab.kernels.chunks import _spans, conv_backward_chunks
from cnnlab.kernels.geometry import _pairs
from cnnlab.kernels.wide import fill_wide_planes
from cnnlab.runtime.threads import map_chunks

#: per instruction set: lanes V, and per filter vectors KV (1 or 2) the positions P of the
#: forward kernel and the channels R of the dW kernel: P·KV = 24 and R·KV = 16 sums in
#: registers on AVX-512's 32 vector registers, 12 and 8 on AVX2's 16
SHAPES = {"avx512": (16, 24, 16), "avx2": (8, 12, 8)}

#: input plus output values a chunk holds (samples × planes), 1 MiB of float32: a chunk's
#: padded input, its dy and its dy transposed stay in L2 while dW's loop reads them 9·C/R times
CHUNK_VALUES = 1 << 18

PAD = ((1, 1), (1, 1))


class Kernels(NamedTuple):
    """The two compiled loops for KV filter vectors, and their blocking."""

    lanes: int
    kv: int
    positions: int
    rows: int
    conv: object
    wgrad: object
    engines: tuple  # keep the compiled code alive


def kernels(dtype, filters: int) -> Kernels | None:
    """The compiled loops for `filters` per vector block (a multiple of the lanes; two vectors
    where it is a multiple of two), or None where they do not run (see the module's docstring)."""
    if np.dtype(dtype) != np.float32 or os.environ.get("CNNLAB_SIMD", "1") == "0":
        return None
    isa = simd._isa()
    if isa is None:
        return None
    lanes = SHAPES[isa][0]
    return _built(isa, 2 if filters % (2 * lanes) == 0 else 1)


@functools.cache
def _built(isa: str, kv: int) -> Kernels | None:
    lanes, positions, rows = SHAPES[isa]
    positions, rows = positions // kv, rows // kv
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    args = (ptr, i64, ptr, ptr, i64, ptr, ptr, i64, i64, i64, i64)
    try:
        conv, e1 = simd.jit(gather_ir.conv_ir(lanes, kv, positions), "gather_conv", args)
        wgrad, e2 = simd.jit(gather_ir.wgrad_ir(lanes, kv, rows), "gather_wgrad", args)
    except (AttributeError, RuntimeError):  # an llvmlite before 0.44
        return None
    return Kernels(lanes, kv, positions, rows, conv, wgrad, (e1, e2))


def conv_gather_applies(kh: int, kw: int, stride, padding, channels: int, filters: int,
                        dtype) -> bool:
    """The gather path's conditions: a 3×3 kernel, stride 1, padding 1 on every side, channels
    and filters multiples of the vector width, and the kernels compiled for `dtype` here."""
    (sh, sw), pad = _pairs(stride, padding)
    if (kh, kw) != (3, 3) or (sh, sw) != (1, 1) or pad != PAD:
        return False
    found = kernels(dtype, filters)
    return found is not None and channels % found.lanes == 0 and filters % found.lanes == 0


@functools.cache
def _geometry(m: int, h: int, w: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """bases (m·h·w offsets rounded up to a multiple of block with readable 0s) and the nine
    taps, for m samples of (h + 2, w + 2) padded planes."""
    hp, wp = h + 2, w + 2
    count = m * h * w
    bases = np.zeros(-(-count // block) * block, np.int64)
    bases[:count] = (np.arange(m)[:, None, None] * (hp * wp) + np.arange(h)[:, None] * wp
                     + np.arange(w)).reshape(-1)
    taps = np.array([u * wp + v for u in range(3) for v in range(3)], np.int64)
    bases.flags.writeable = taps.flags.writeable = False
    return bases, taps


def _pack(weight: np.ndarray, block: int) -> np.ndarray:
    """weight (K, C, 3, 3) as (K/block, C, 9, block) float32: filter vectors per channel and tap."""
    k, c = weight.shape[:2]
    return np.ascontiguousarray(weight.reshape(k // block, block, c, 9).transpose(0, 2, 3, 1),
                                dtype=np.float32)


def _conv(found: Kernels, planes: np.ndarray, n0: int, m: int, packed: np.ndarray,
          out: np.ndarray, h: int, w: int) -> None:
    """out[k, n0·h·w + p] for the m samples from n0: the conv kernel on planes (C, N, h+2, w+2)."""
    c, n, hp, wp = planes.shape
    bases, taps = _geometry(m, h, w, found.positions)
    _check(planes, out, packed, c, n0 + m <= n and out.shape[1] >= (n0 + m) * h * w)
    found.conv(planes.ctypes.data + 4 * n0 * hp * wp, n * hp * wp, bases.ctypes.data,
               taps.ctypes.data, 9, packed.ctypes.data, out.ctypes.data + 4 * n0 * h * w,
               out.shape[1], c, packed.shape[0], m * h * w)


def _check(planes, out, packed, c, fits) -> None:
    """The kernels write through raw pointers: arrays they would misread are refused."""
    if not (planes.dtype == out.dtype == packed.dtype == np.float32 and planes.flags.c_contiguous
            and out.flags.c_contiguous and packed.flags.c_contiguous and packed.shape[1] == c
            and out.shape[0] == packed.shape[0] * packed.shape[3] and fits):
        raise ValueError(
            f"gather: needs C-contiguous float32 planes, out and packed weights for C = {c} "
            f"covering the chunk. Received: planes {planes.dtype} {planes.shape}, out "
            f"{out.dtype} {out.shape}, packed {packed.shape}")


def _chunk_spans(n: int, rows: int, plane: int):
    return _spans(n, max(1, CHUNK_VALUES // max(1, rows * plane)))


def conv_forward_gather(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                        epilogue=None) -> tuple[np.ndarray, np.ndarray]:
    """y = x ⋆ weight + bias (conv_gather_applies). Returns y as an (N, K, H, W) view of
    (K, N, H, W) memory, and the padded input (C, N, H + 2, W + 2) that backward needs.
    epilogue: as conv_forward_direct's."""
    n, c, h, w = x.shape
    k = weight.shape[0]
    found = kernels(x.dtype, k)
    packed = _pack(weight, found.kv * found.lanes)
    planes = np.empty((c, n, h + 2, w + 2), x.dtype)
    y = np.empty((k, n, h, w), x.dtype)
    flat = y.reshape(k, -1)

    def chunk(span):
        n0, n1 = span
        fill_wide_planes(planes, x, PAD, n0, n1)
        _conv(found, planes, n0, n1 - n0, packed, flat, h, w)
        if bias is not None:
            y[:, n0:n1] += bias.reshape(k, 1, 1, 1)
        if epilogue is not None:
            epilogue(y[:, n0:n1])

    map_chunks(chunk, _chunk_spans(n, c + k, (h + 2) * (w + 2)))
    return y.transpose(1, 0, 2, 3), planes


def conv_backward_gather(dy: np.ndarray, planes: np.ndarray, weight: np.ndarray,
                         input_grad: bool = True, bias_grad: bool = True):
    """Gradients of conv_forward_gather: (dW, db, dx), dx None when input_grad is False and db
    None when bias_grad is False. Per chunk: dW by the dW kernel on the padded input and dy as
    (positions, K); dx by the forward kernel on dy padded like x, the kernel flipped."""
    k, c = weight.shape[:2]
    n, _, h, w = dy.shape
    hp, wp = h + 2, w + 2
    found = kernels(dy.dtype, k)
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None
    if input_grad:
        found_dx = kernels(dy.dtype, c)
        flipped = _pack(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), found_dx.kv * found_dx.lanes)
        dy_planes = np.empty((k, n, hp, wp), dy.dtype)
    block = found.kv * found.lanes

    def part(i, span, dy_chunk):
        n0, n1 = span
        m = n1 - n0
        count = m * h * w
        dyt = np.ascontiguousarray(dy_chunk.reshape(k, count).T)
        bases, taps = _geometry(m, h, w, 1)
        dw_part = np.empty((9, c, k), np.float32)
        if not (dyt.dtype == np.float32 and c % found.rows == 0 and k % block == 0):
            raise ValueError(f"gather: dW needs float32 dy and C a multiple of {found.rows}")
        found.wgrad(planes.ctypes.data + 4 * n0 * hp * wp, n * hp * wp, bases.ctypes.data,
                    taps.ctypes.data, 9, dyt.ctypes.data, k, dw_part.ctypes.data, c,
                    k // block, count)
        if input_grad:
            fill_wide_planes(dy_planes[:, n0:n1], dy_chunk.transpose(1, 0, 2, 3), PAD)
            _conv(found_dx, dy_planes, n0, m, flipped, dx.reshape(c, -1), h, w)
        return dw_part.transpose(2, 1, 0).reshape(k, c * 9)

    dw, db = conv_backward_chunks(dy, _chunk_spans(n, c + k, hp * wp), part, bias_grad)
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)
