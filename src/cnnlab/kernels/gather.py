"""The gather path: 3×3 convolutions with padding 1 and stride 1 or 2, float32, as explicit
vector code over filters (gather_ir.py, compiled by llvmlite like simd.py), batch chunk by
chunk, no column matrix.

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

At stride 2, base[p] = n·(H + 2)·(W + 2) + 2i·(W + 2) + 2j, and dx is four small correlations,
one per phase of dx, of 1, 2, 2 and 4 taps (_dx_stride2).

Only the output positions are computed, so a 7×7 map costs its 49 positions (the direct path's
padded rows computed 81), and the window's edges cost nothing (the broadcast values come from
the zero padding). Each step of the forward loop loads KV vectors of weights and broadcasts P
input values for P·KV fused multiply-adds, the sums held in registers over all channels and
taps; the dW loop likewise holds R channels × KV vectors over all positions. One thread, chunks
of 16 samples: 150–157 GFLOP/s on 64 → 64 at 7×7 and 136–144 on 32 → 32 at 14×14 (the forward
kernel alone), where "same" and Winograd ran those whole layers at 60–110 (docs/performance.md).

The sums are in another order than the other paths' (channels outer, taps inner, each product
fused), so the last bits differ from theirs: tests/test_gather.py bounds the difference against
a float64 definition. For a given thread count the results are bit-identical; the forward's are
the same on any thread count (each output is one chain of sums).

Applies (conv_gather_applies; Conv2D._path decides, by measurement, which layers take it)
where the kernel runs (float32 on x86-64 with AVX-512 or AVX2 + FMA, llvmlite ≥ 0.44,
CNNLAB_SIMD not 0) and both the channels and the filters are a multiple of the vector width (16
on AVX-512, 8 on AVX2): dx is vectorized over channels. Each set of tap offsets (a padded width,
a phase) gets its forward loop compiled on first use (about 0.1 s; the offsets are constants in
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

#: per instruction set: lanes V, P·KV (the forward kernel's positions P times its filter
#: vectors KV, 1 or 2: sums in registers) and, per KV, the channels R of the dW kernel. AVX-512
#: (32 vector registers): 24 sums, and 16 in dW (R = 16, 8). AVX2 (16): 12 sums, and 8 or 12 in
#: dW: R = 8 for one vector, 6 for two. One thread, AMD EPYC Zen 3, KV = 2: 48 → 64 at 7×7
#: 63–72 GFLOP/s against R = 4's 57–60, 48 → 128 at 7×7 46–59 against 39–51, 14×14 and 28×28
#: within 5%; KV = 1 with R = 12 was slower than R = 8 (19–41 against 34–39). A layer whose
#: channels are not a multiple of R takes its last C mod R channels in a loop of that R
SHAPES = {"avx512": (16, 24, {1: 16, 2: 8}), "avx2": (8, 12, {1: 8, 2: 6})}

#: per instruction set: whether a training layer (forward and backward) takes the gather path
#: where Winograd also applies. On AVX2 the dW loop holds only R·KV = 8 sums, 7 loads for 8
#: fused multiply-adds, and ran at 36–53 GFLOP/s where the forward ran at 65–90 (AMD EPYC Zen 3,
#: 2 threads): 32 → 64 at 14×14 trained in 43–50 ms against Winograd's 35–39, and 32 → 32 at
#: 14×14 tied (22–25 ms each). On AVX-512 it was faster than Winograd on both (docs/performance.md)
TRAINS_AHEAD_OF_WINOGRAD = {"avx512": True, "avx2": False}

#: per instruction set: whether a 16 → 16 training layer (the most the direct path takes)
#: takes the gather path rather than the direct loops. On AVX2 (AMD EPYC Zen 3, 2 threads, batch
#: 128, interleaved A/Bs) the gather path trained 16 → 16 at 28×28 in 24.0–25.9 ms against
#: 29.1–30.0 and at 14×14 in 7.1–7.8 against 8.6–9.6 (Winograd: 38.8 and 12.2), and ResNet-20's
#: training step took 464 ms against 504. Inference keeps the direct loops: alone the gather
#: path was 3–20% faster, but inside ResNet-8 and ResNet-20 (the batch-norm epilogue fused) the
#: forward took 2–5% longer. Layers of 8 channels or filters tied. On AVX-512 the two measured
#: equal, and the direct loops stay (docs/performance.md)
TRAINS_AHEAD_OF_DIRECT = {"avx512": False, "avx2": True}

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

    def conv(self, offsets: tuple[int, ...]):
        """The forward loop for these tap offsets (u·Wp + v for a 3×3 window)."""
        return _conv_loop(self.isa, self.kv, offsets)[0]


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
    try:
        wgrad, engine = _wgrad_loop(isa, kv, rows[kv])
        _conv_loop(isa, kv, _offsets(9))  # the build fails here, not in a layer, where it cannot
    except (AttributeError, RuntimeError):  # an llvmlite before 0.44
        return None
    return Kernels(lanes, kv, positions // kv, rows[kv], isa, wgrad, engine)


def _wgrad_loop(isa: str, kv: int, rows: int):
    """The dW loop for blocks of `rows` channels (SHAPES' R, or a layer's last C mod R) and its
    engine, held for the process's life in _WGRAD_LOOPS (filled under _LOCK, as _CONV_LOOPS)."""
    with _LOCK:
        if (isa, kv, rows) not in _WGRAD_LOOPS:
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            _WGRAD_LOOPS[isa, kv, rows] = simd.jit(
                gather_ir.wgrad_ir(SHAPES[isa][0], kv, rows), "gather_wgrad",
                (ptr, i64, ptr, ptr, i64, ptr, i64, ptr, i64, i64, i64, i64))
        return _WGRAD_LOOPS[isa, kv, rows]


#: the forward loops compiled so far, (isa, kv, offsets) → (function, engine); held for the
#: process's life (an engine freed frees its code), filled under _LOCK: chunks on two threads
#: may ask for new offsets at once, and a loop compiled twice would free one copy while in use
_CONV_LOOPS: dict = {}
_WGRAD_LOOPS: dict = {}
_LOCK = threading.Lock()

#: the 3×3 window's taps (u, v), in the order of weight.reshape(K, C, 9)
TAPS = tuple((u, v) for u in range(3) for v in range(3))


def _conv_loop(isa: str, kv: int, offsets: tuple[int, ...]):
    with _LOCK:
        if (isa, kv, offsets) not in _CONV_LOOPS:
            lanes, positions, _ = SHAPES[isa]
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            _CONV_LOOPS[isa, kv, offsets] = simd.jit(
                gather_ir.conv_ir(lanes, kv, positions // kv, offsets), "gather_conv",
                (ptr, i64, ptr, ptr, ptr, i64, i64, i64, i64))
        return _CONV_LOOPS[isa, kv, offsets]


def _offsets(wp: int, taps=TAPS) -> tuple[int, ...]:
    """Each tap's offset u·wp + v in planes wp values wide."""
    return tuple(u * wp + v for u, v in taps)


def gather_trains_ahead_of_winograd() -> bool:
    """Whether, on this processor, a training layer that both paths apply to takes the gather
    path rather than Winograd (TRAINS_AHEAD_OF_WINOGRAD); inference takes it everywhere."""
    return TRAINS_AHEAD_OF_WINOGRAD.get(simd._isa(), False)


def gather_trains_ahead_of_direct() -> bool:
    """Whether, on this processor, a 16 → 16 training layer takes the gather path rather than
    the direct loops (TRAINS_AHEAD_OF_DIRECT); inference keeps the direct loops."""
    return TRAINS_AHEAD_OF_DIRECT.get(simd._isa(), False)


def conv_gather_applies(kh: int, kw: int, stride, padding, channels: int, filters: int,
                        dtype) -> bool:
    """The gather path's conditions: a 3×3 kernel, stride 1 or 2 (the same both ways), padding
    1 on every side, channels and filters multiples of the vector width, and the kernels
    compiled for `dtype` here."""
    (sh, sw), pad = _pairs(stride, padding)
    if (kh, kw) != (3, 3) or sh != sw or sh not in (1, 2) or pad != PAD:
        return False
    found = kernels(dtype, filters)
    return found is not None and channels % found.lanes == 0 and filters % found.lanes == 0


@functools.cache
def _bases(m: int, rows: int, cols: int, hp: int, wp: int, stride: int, block: int) -> np.ndarray:
    """Where each of m·rows·cols output positions' window starts in m planes of (hp, wp) values,
    n·hp·wp + s·i·wp + s·j, then readable 0s up to a multiple of block (read-only)."""
    count = m * rows * cols
    bases = np.zeros(-(-count // block) * block, np.int64)
    bases[:count] = (np.arange(m)[:, None, None] * (hp * wp)
                     + stride * np.arange(rows)[:, None] * wp + stride * np.arange(cols)).reshape(-1)
    bases.flags.writeable = False
    return bases


def _pack(w_taps: np.ndarray, block: int) -> np.ndarray:
    """w_taps (K, C, T) as (K/block, C, T, block) float32: filter vectors per channel and tap."""
    k, c, t = w_taps.shape
    return np.ascontiguousarray(w_taps.reshape(k // block, block, c, t).transpose(0, 2, 3, 1),
                                dtype=np.float32)


def _conv(found: Kernels, planes: np.ndarray, packed: np.ndarray, out: np.ndarray,
          bases: np.ndarray, offsets: tuple[int, ...]) -> None:
    """out (K, count) = the conv kernel on one chunk's planes (C, m, hp, wp), at the windows
    `bases` starts (at least count of them, padded to the kernel's blocks) and these taps."""
    c, m, hp, wp = planes.shape
    count = out.shape[1]
    _check(planes, out, packed, c, len(offsets) == packed.shape[2] and bases.size >= count
           and bases.size % found.positions == 0 and count > 0
           and int(bases.max()) + max(offsets) < planes.size // c)
    found.conv(offsets)(planes.ctypes.data, m * hp * wp, bases.ctypes.data, packed.ctypes.data,
                        out.ctypes.data, count, c, packed.shape[0], count)


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
    whole batch's: 1.3× faster on 64 → 64 at 7×7), the chunks (n0, n1) and the stride."""

    planes: list
    spans: list
    stride: int


def _chunk_spans(n: int, rows: int, plane: int):
    return _spans(n, max(1, CHUNK_VALUES // max(1, rows * plane)))


def _padded_chunk(x_cn: np.ndarray, n0: int, n1: int, padding=PAD) -> np.ndarray:
    """Samples n0:n1 of x_cn ((C, N, H, W), any strides) as (C, m, H + top + bottom,
    W + left + right) with a border of zeros."""
    c, _, h, w = x_cn.shape
    (top, bottom), (left, right) = padding
    planes = np.empty((c, n1 - n0, h + top + bottom, w + left + right), x_cn.dtype)
    fill_wide_planes(planes, x_cn[:, n0:n1].transpose(1, 0, 2, 3), padding)
    return planes


def conv_forward_gather(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                        stride: int = 1, epilogue=None) -> tuple[np.ndarray, Saved]:
    """y = x ⋆ weight + bias at `stride` (conv_gather_applies). Returns y as an
    (N, K, H_out, W_out) view of (K, N, H_out, W_out) memory, and what backward needs (Saved).
    Each chunk's output is computed into a block of its own (the kernel's scattered stores into
    the whole batch's rows were 1.1–1.5× slower) and copied into y with the bias added.
    epilogue: as conv_forward_direct's."""
    n, c, h, w = x.shape
    k = weight.shape[0]
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    found = kernels(x.dtype, k)
    packed = _pack(weight.reshape(k, c, 9), found.kv * found.lanes)
    offsets = _offsets(w + 2)
    spans = _chunk_spans(n, c + k, (h + 2) * (w + 2))
    planes = [None] * len(spans)
    y = np.empty((k, n, ho, wo), x.dtype)
    x_cn = x.transpose(1, 0, 2, 3)

    def chunk(i):
        n0, n1 = spans[i]
        m = n1 - n0
        planes[i] = _padded_chunk(x_cn, n0, n1)
        out = np.empty((k, m * ho * wo), x.dtype)
        bases = _bases(m, ho, wo, h + 2, w + 2, stride, found.positions)
        _conv(found, planes[i], packed, out, bases, offsets)
        block = out.reshape(k, m, ho, wo)
        if bias is None:
            y[:, n0:n1] = block
        else:
            np.add(block, bias.reshape(k, 1, 1, 1), out=y[:, n0:n1])
        if epilogue is not None:
            epilogue(y[:, n0:n1])

    map_chunks(chunk, range(len(spans)))
    return y.transpose(1, 0, 2, 3), Saved(planes, spans, stride)


def conv_backward_gather(dy: np.ndarray, saved: Saved, weight: np.ndarray,
                         input_grad: bool = True, bias_grad: bool = True):
    """Gradients of conv_forward_gather: (dW, db, dx), dx None when input_grad is False and db
    None when bias_grad is False. Per chunk: dW by the dW kernel on the chunk's padded input and
    dy as (positions, K); dx by the forward kernel on dy padded like x, the kernel flipped (at
    stride 2, one small correlation per phase of dx, _dx_stride2)."""
    k, c = weight.shape[:2]
    n, _, ho, wo = dy.shape
    _, _, hp, wp = saved.planes[0].shape
    h, w = hp - 2, wp - 2
    found = kernels(dy.dtype, k)
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None
    if input_grad:
        found_dx = kernels(dy.dtype, c)
        flipped = _pack(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(c, k, 9),
                        found_dx.kv * found_dx.lanes)

    def part(i, span, dy_chunk):
        n0, n1 = span
        m = n1 - n0
        bases = _bases(m, ho, wo, hp, wp, saved.stride, 1)
        dw_part = _weight_grad(found, saved.planes[i], dy_chunk.reshape(k, m * ho * wo), c, bases)
        if not input_grad:
            return dw_part
        if saved.stride == 2:
            _dx_stride2(found_dx, weight, dy_chunk, dx[:, n0:n1])
            return dw_part
        out = np.empty((c, m * h * w), dy.dtype)
        _conv(found_dx, _padded_chunk(dy_chunk, 0, m), flipped, out,
              _bases(m, h, w, ho + 2, wo + 2, 1, found_dx.positions), _offsets(wo + 2))
        dx[:, n0:n1] = out.reshape(c, m, h, w)
        return dw_part

    dw, db = conv_backward_chunks(dy, saved.spans, part, bias_grad)
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)


def _dx_stride2(found: Kernels, weight: np.ndarray, dy_chunk: np.ndarray, dx: np.ndarray) -> None:
    """dx (C, m, H, W) of a stride-2 chunk, phase by phase. Input row y = 2a + r took, with
    padding 1, kernel row u from output row i = (y + 1 − u)/2 where that is whole: r = 0 only u
    = 1 (i = a), r = 1 u = 0 (i = a + 1) and u = 2 (i = a); likewise for columns. So each of the
    four phases of dx is a correlation of dy (padded by one zero row and column after) with
    the taps of its phase: 1, 2, 2 and 4 taps, the nine in all, no multiply by a zero."""
    k, c = weight.shape[:2]
    _, m, ho, wo = dy_chunk.shape
    _, _, h, w = dx.shape
    dyp = _padded_chunk(dy_chunk, 0, m, ((0, 1), (0, 1)))
    for r in (0, 1):
        for q in (0, 1):
            us = [u for u in range(3) if (r + 1 - u) % 2 == 0]
            vs = [v for v in range(3) if (q + 1 - v) % 2 == 0]
            taps = [((r + 1 - u) // 2, (q + 1 - v) // 2) for u in us for v in vs]
            w_taps = np.stack([weight[:, :, u, v].T for u in us for v in vs], axis=-1)
            rows, cols = (h - r + 1) // 2, (w - q + 1) // 2
            if rows * cols == 0:  # a map of one row or column has no odd phase
                continue
            out = np.empty((c, m * rows * cols), dy_chunk.dtype)
            _conv(found, dyp, _pack(w_taps, found.kv * found.lanes), out,
                  _bases(m, rows, cols, ho + 1, wo + 1, 1, found.positions),
                  _offsets(wo + 1, taps))
            dx[:, :, r::2, q::2] = out.reshape(c, m, rows, cols)


def _weight_grad(found: Kernels, planes: np.ndarray, dy_mat: np.ndarray, c: int,
                 bases: np.ndarray) -> np.ndarray:
    """One chunk's dW (K, C·9) from its planes (C, m, h + 2, w + 2), dy (K, count) and the
    windows' starts (count of them): the channels in blocks of R (found.rows), then the last
    C mod R in a loop of its own, the same sums (gather_ir.wgrad_ir)."""
    k, count = dy_mat.shape
    _, m, hp, wp = planes.shape
    dyt = np.ascontiguousarray(dy_mat.T)
    taps = np.array(_offsets(wp), np.int64)
    dw_part = np.empty((9, c, k), np.float32)
    block = found.kv * found.lanes
    if not (dyt.dtype == planes.dtype == np.float32 and planes.flags.c_contiguous
            and planes.shape[0] == c and c > 0 and k % block == 0
            and count == bases.size and count > 0
            and int(bases.max()) + int(taps.max()) < m * hp * wp):
        raise ValueError(f"gather: dW needs float32 planes and dy, and K a multiple of {block}. "
                         f"Received: planes {planes.dtype} {planes.shape}, dy {dy_mat.dtype} "
                         f"{dy_mat.shape}")
    whole = c - c % found.rows
    parts = [(0, whole, found.wgrad)] if whole else []
    if whole < c:
        parts.append((whole, c - whole, _wgrad_loop(found.isa, found.kv, c - whole)[0]))
    plane = m * hp * wp
    for c0, channels, loop in parts:
        loop(planes.ctypes.data + 4 * c0 * plane, plane, bases.ctypes.data, taps.ctypes.data, 9,
             dyt.ctypes.data, k, dw_part.ctypes.data + 4 * c0 * k, channels, c, k // block, count)
    return dw_part.transpose(2, 1, 0).reshape(k, c * 9)
