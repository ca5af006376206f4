"""The gather path: 3×3 stride-1 convolutions with padding 1, float32, as explicit vector code
over filters (gather_ir.py, compiled by llvmlite like simd.py), batch chunk by chunk, no column
matrix.

Each chunk of m samples is zero-padded into a block of its own, (C, m, H + 2, W + 2) (kept for
backward). Output position p = (n, i, j) of the chunk reads, at tap t = (u, v) and channel c,
the value at c·cs + base[p] + u·(W + 2) + v, cs = m·(H + 2)·(W + 2) and
base[p] = n·(H + 2)·(W + 2) + i·(W + 2) + j. The kernel broadcasts that one value to every lane
and multiplies it by a vector of filters:

    forward   y[k, p] = Σ_c Σ_t w[k, c, t] · x_pad[c, base[p] + tap[t]]
    dx        dx[c, p] = Σ_k Σ_t w[k, c, 8 − t] · dy_pad[k, base[p] + tap[t]]
              (the same kernel on the chunk's dy padded like x, the kernel flipped, K and C
              swapped)
    dW        dW[k, c, t] = Σ_p x_pad[c, base[p] + tap[t]] · dy[k, p]   (per chunk, added in
              chunk order by chunks.conv_backward_chunks)

Only the output positions are computed, so a 7×7 map costs its 49 positions (the direct path's
padded rows computed 81), and the window's edges cost nothing (the broadcast values come from
the zero padding). Each step of the forward loop loads KV vectors of weights and broadcasts P
input values for P·KV fused multiply-adds, the sums held in registers over all channels and
taps; the dW loop likewise holds R channels × KV vectors over all positions. One thread, chunks
of 16 samples: 150–157 GFLOP/s on 64 → 64 at 7×7 and 136–144 on 32 → 32 at 14×14 (the forward
kernel alone), where "same" and Winograd ran those whole layers at 60–110 (docs/performance.md).
Which layers take it: Conv2D._path and GATHER_LIMITS, by measurement.

The sums are in another order than the other paths' (channels outer, taps inner, each product
fused), so the last bits differ from theirs: tests/test_gather.py bounds the difference against
a float64 definition. For a given thread count the results are bit-identical; the forward's are
the same on any thread count (each output is one chain of sums).

Applies (conv_gather_applies) where the kernel runs (float32 on x86-64 with AVX-512 or AVX2 +
FMA, llvmlite ≥ 0.44, CNNLAB_SIMD not 0) and both the channels and the filters are a multiple
of the vector width (16 on AVX-512, 8 on AVX2): dx is vectorized over channels. Each padded
width's forward loop is compiled on first use (about 0.1 s; the taps' offsets are constants in
it), the dW loop once per process.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
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
    """The compiled dW loop for KV filter vectors, the forward loops (conv(wp), compiled once per
    padded width: the taps' offsets are constants in it), and their blocking."""

    lanes: int
    kv: int
    positions: int
    rows: int
    isa: str
    wgrad: object
    engine: object  # keeps the compiled code alive

    def conv(self, wp: int):
        """The forward loop for padded rows of wp values."""
        return _conv_loop(self.isa, self.kv, wp)[0]


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
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    try:
        wgrad, engine = simd.jit(gather_ir.wgrad_ir(lanes, kv, rows // kv), "gather_wgrad",
                                 (ptr, i64, ptr, ptr, i64, ptr, i64, ptr, i64, i64, i64))
        _conv_loop(isa, kv, 9)  # the build fails here, not in a layer, where it cannot
    except (AttributeError, RuntimeError):  # an llvmlite before 0.44
        return None
    return Kernels(lanes, kv, positions // kv, rows // kv, isa, wgrad, engine)


#: the forward loops compiled so far, (isa, kv, wp) → (function, engine); held for the
#: process's life (an engine freed frees its code), filled under _LOCK: chunks on two threads
#: may ask for a new width at once, and a loop compiled twice would free one copy while in use
_CONV_LOOPS: dict = {}
_LOCK = threading.Lock()


def _conv_loop(isa: str, kv: int, wp: int):
    with _LOCK:
        if (isa, kv, wp) not in _CONV_LOOPS:
            lanes, positions, _ = SHAPES[isa]
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            _CONV_LOOPS[isa, kv, wp] = simd.jit(
                gather_ir.conv_ir(lanes, kv, positions // kv, wp), "gather_conv",
                (ptr, i64, ptr, ptr, ptr, i64, i64, i64, i64))
        return _CONV_LOOPS[isa, kv, wp]


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


def _conv(found: Kernels, planes: np.ndarray, packed: np.ndarray, out: np.ndarray) -> None:
    """out (K, m·h·w) = the conv kernel on one chunk's planes (C, m, h + 2, w + 2)."""
    c, m, hp, wp = planes.shape
    h, w = hp - 2, wp - 2
    bases, _ = _geometry(m, h, w, found.positions)
    _check(planes, out, packed, c, out.shape[1] == m * h * w)
    found.conv(wp)(planes.ctypes.data, m * hp * wp, bases.ctypes.data, packed.ctypes.data,
                   out.ctypes.data, out.shape[1], c, packed.shape[0], m * h * w)


def _check(planes, out, packed, c, fits) -> None:
    """The kernels write through raw pointers: arrays they would misread are refused."""
    if not (planes.dtype == out.dtype == packed.dtype == np.float32 and planes.flags.c_contiguous
            and out.flags.c_contiguous and packed.flags.c_contiguous and packed.shape[1] == c
            and out.shape[0] == packed.shape[0] * packed.shape[3] and fits):
        raise ValueError(
            f"gather: needs C-contiguous float32 planes, out and packed weights for C = {c} "
            f"covering the chunk. Received: planes {planes.dtype} {planes.shape}, out "
            f"{out.dtype} {out.shape}, packed {packed.shape}")


class Saved(NamedTuple):
    """What backward needs: each chunk's padded input planes (C, m, H + 2, W + 2), one
    contiguous block per chunk (a chunk's channels at m·(H + 2)·(W + 2) values apart, not the
    whole batch's: 1.3× faster on 64 → 64 at 7×7), and the chunks (n0, n1)."""

    planes: list
    spans: list


def _chunk_spans(n: int, rows: int, plane: int):
    return _spans(n, max(1, CHUNK_VALUES // max(1, rows * plane)))


def _padded_chunk(x_cn: np.ndarray, n0: int, n1: int) -> np.ndarray:
    """Samples n0:n1 of x_cn ((C, N, H, W), any strides) as (C, m, H + 2, W + 2) with a border
    of zeros."""
    c, _, h, w = x_cn.shape
    planes = np.empty((c, n1 - n0, h + 2, w + 2), x_cn.dtype)
    fill_wide_planes(planes, x_cn[:, n0:n1].transpose(1, 0, 2, 3), PAD)
    return planes


def conv_forward_gather(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                        epilogue=None) -> tuple[np.ndarray, Saved]:
    """y = x ⋆ weight + bias (conv_gather_applies). Returns y as an (N, K, H, W) view of
    (K, N, H, W) memory, and what backward needs (Saved). Each chunk's output is computed into
    a block of its own (the kernel's scattered stores into the whole batch's rows were 1.1–1.5×
    slower) and copied into y with the bias added. epilogue: as conv_forward_direct's."""
    n, c, h, w = x.shape
    k = weight.shape[0]
    found = kernels(x.dtype, k)
    packed = _pack(weight, found.kv * found.lanes)
    spans = _chunk_spans(n, c + k, (h + 2) * (w + 2))
    planes = [None] * len(spans)
    y = np.empty((k, n, h, w), x.dtype)
    x_cn = x.transpose(1, 0, 2, 3)

    def chunk(i):
        n0, n1 = spans[i]
        planes[i] = _padded_chunk(x_cn, n0, n1)
        out = np.empty((k, (n1 - n0) * h * w), x.dtype)
        _conv(found, planes[i], packed, out)
        block = out.reshape(k, n1 - n0, h, w)
        if bias is None:
            y[:, n0:n1] = block
        else:
            np.add(block, bias.reshape(k, 1, 1, 1), out=y[:, n0:n1])
        if epilogue is not None:
            epilogue(y[:, n0:n1])

    map_chunks(chunk, range(len(spans)))
    return y.transpose(1, 0, 2, 3), Saved(planes, spans)


def conv_backward_gather(dy: np.ndarray, saved: Saved, weight: np.ndarray,
                         input_grad: bool = True, bias_grad: bool = True):
    """Gradients of conv_forward_gather: (dW, db, dx), dx None when input_grad is False and db
    None when bias_grad is False. Per chunk: dW by the dW kernel on the chunk's padded input and
    dy as (positions, K); dx by the forward kernel on dy padded like x, the kernel flipped."""
    k, c = weight.shape[:2]
    n, _, h, w = dy.shape
    found = kernels(dy.dtype, k)
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None
    if input_grad:
        found_dx = kernels(dy.dtype, c)
        flipped = _pack(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), found_dx.kv * found_dx.lanes)

    def part(i, span, dy_chunk):
        n0, n1 = span
        m = n1 - n0
        dw_part = _weight_grad(found, saved.planes[i], dy_chunk.reshape(k, m * h * w), c)
        if input_grad:
            out = np.empty((c, m * h * w), dy.dtype)
            _conv(found_dx, _padded_chunk(dy_chunk, 0, m), flipped, out)
            dx[:, n0:n1] = out.reshape(c, m, h, w)
        return dw_part

    dw, db = conv_backward_chunks(dy, saved.spans, part, bias_grad)
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)


def _weight_grad(found: Kernels, planes: np.ndarray, dy_mat: np.ndarray, c: int) -> np.ndarray:
    """One chunk's dW (K, C·9) from its planes (C, m, h + 2, w + 2) and dy (K, m·h·w)."""
    k, count = dy_mat.shape
    _, m, hp, wp = planes.shape
    dyt = np.ascontiguousarray(dy_mat.T)
    bases, taps = _geometry(m, hp - 2, wp - 2, 1)
    dw_part = np.empty((9, c, k), np.float32)
    block = found.kv * found.lanes
    if not (dyt.dtype == planes.dtype == np.float32 and planes.flags.c_contiguous
            and planes.shape[0] == c and c % found.rows == 0 and k % block == 0
            and count == bases.size):
        raise ValueError(f"gather: dW needs float32 planes and dy, C a multiple of {found.rows} "
                         f"and K of {block}. Received: planes {planes.dtype} {planes.shape}, dy "
                         f"{dy_mat.dtype} {dy_mat.shape}")
    found.wgrad(planes.ctypes.data, m * hp * wp, bases.ctypes.data, taps.ctypes.data, 9,
                dyt.ctypes.data, k, dw_part.ctypes.data, c, k // block, count)
    return dw_part.transpose(2, 1, 0).reshape(k, c * 9)
