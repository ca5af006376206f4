"""The direct path's correlation as explicit vector code: LLVM IR written out here, compiled once
per process (about 0.6 s, on the first direct convolution) by llvmlite (the LLVM binding Numba is
built on, installed with it as a wheel), for x86-64 processors with AVX-512 or AVX2 + FMA,
float32.

Numba's loop (direct.correlate3x3) is vectorized over positions, but keeps its running sums in
memory: two filters' rows are read and written once per input channel. This kernel holds F
filters × P vectors of V positions in registers across all C channels and nine taps, and writes
each output once:

    for each block of F filters k0 … k0 + F − 1 and of P·V positions p0 … p0 + P·V − 1:
        acc[f, p] = 0
        for c = 0 … C − 1, then (u, v) = (0, 0), (0, 1), … (2, 2):
            acc[f, p] = fma(w[k0 + f, c, u, v], xs[c, p + u·Wp + v], acc[f, p])
        out[k0 + f, p] = acc[f, p]

These are the multiply-adds correlate3x3 makes, in the order its compiled loop makes them (each
filter's nine fused products added onto the running sum, channel by channel), so the results are
the same bits (tests/test_simd.py compares them for every shape the path takes). On AVX-512,
V = 16, F = 4, P = 4: 16 accumulators, four inputs and a weight in flight, of 32 vector
registers; on AVX2, V = 8, F = 4, P = 3: 12, three and one, of 16. Each (c, tap) loads P input
vectors and F weights (broadcast) for F·P fused multiply-adds, so the loop is bound by the
multiply-adds, not by loads or stores. One thread, 16 → 16 at 28×28 (8 samples): 150–160
GFLOP/s against Numba's loop's 49–79 in the same runs (AVX-512; of (F, P) = (8, 3), (8, 2),
(4, 6), (16, 1), (16, 2) and (4, 4), (4, 4) was within 6% of the fastest on that layer, and the
fastest at 14×14 and on a first layer; docs/performance.md).

Callers pad: the filters to a multiple of F (zero filters, outputs dropped), and the positions to
a multiple of P·V, with the input readable that far past its last position (Kernel.slack): the
positions past `count` are junk, like the wide layout's, and dropped.

The kernel is None (callers run Numba's loop) for float64, on other processors, with an
llvmlite too old to build it, or with CNNLAB_SIMD=0 in the environment.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import NamedTuple

import numpy as np

#: (lanes V, position vectors P, filters F) per instruction set
SHAPES = {"avx512": (16, 4, 4), "avx2": (8, 3, 4)}


class Kernel(NamedTuple):
    """The compiled correlation (correlate, its weights from pack), and the blocking its
    callers pad to."""

    lanes: int
    vectors: int
    filters: int
    fn: object
    engine: object  # keeps the compiled code alive

    @property
    def block(self) -> int:
        """Positions per block (P·V): callers round `count` up to a multiple of it."""
        return self.lanes * self.vectors

    def slack(self, wp: int) -> int:
        """Values the input must be readable past its last position: a block and the window."""
        return self.block + 2 * wp + 2

    def pack(self, w: np.ndarray) -> np.ndarray:
        """w (K, C, 3, 3) as (⌈K/F⌉, C, 9, F) float32, zero filters appended to a multiple of F."""
        k, c = w.shape[:2]
        kb = -(-k // self.filters)
        packed = np.zeros((kb * self.filters, c, 9), np.float32)
        packed[:k] = w.reshape(k, c, 9)
        return np.ascontiguousarray(packed.reshape(kb, self.filters, c, 9).transpose(0, 2, 3, 1))

    def correlate(self, xs: np.ndarray, packed: np.ndarray, out: np.ndarray, start: int,
                  count: int, wp: int) -> None:
        """out[k, p] = Σ_c Σ_{u,v} w[k, c, u, v] · xs[c, start + p + u·wp + v] for every p of
        ⌈count / block⌉ blocks. xs (C, L) and out (K', ≥ those blocks) float32 with contiguous
        rows; xs readable slack(wp) values past start + count on its last row (the rows before
        run into the next); packed from pack (K' = its filters)."""
        blocks = -(-count // self.block)
        if blocks == 0:
            return
        c = xs.shape[0]
        # the kernel writes through raw pointers: arrays it would misread or overrun are refused
        # here, never passed on (a check that stays under python -O, unlike an assert)
        if not (xs.dtype == out.dtype == packed.dtype == np.float32
                and xs.strides[1] == out.strides[1] == 4 and packed.flags.c_contiguous
                and packed.ndim == 4 and packed.shape[1:] == (c, 9, self.filters)
                and out.shape[0] >= packed.shape[0] * self.filters
                and out.shape[1] >= blocks * self.block and 0 <= start <= xs.shape[1] - count):
            raise ValueError(
                f"simd.Kernel.correlate: needs float32 xs (C, L) and out (≥ {packed.shape[0]} × "
                f"{self.filters} filters, ≥ {blocks * self.block} positions) with contiguous rows, "
                f"weights from pack for C = {c}, and start + count within xs's rows. Received: "
                f"xs {xs.dtype} {xs.shape}, out {out.dtype} {out.shape}, packed {packed.shape}, "
                f"start={start}, count={count}")
        self.fn(xs.ctypes.data + 4 * start, xs.strides[0] // 4, packed.ctypes.data,
                out.ctypes.data, out.strides[0] // 4, c, packed.shape[0], blocks, wp)


def kernel(dtype) -> Kernel | None:
    """The compiled correlation for `dtype` on this processor, or None (see the module's
    docstring)."""
    if np.dtype(dtype) != np.float32 or os.environ.get("CNNLAB_SIMD", "1") == "0":
        return None
    isa = _isa()
    return None if isa is None else _built(isa)


@functools.cache
def _built(isa: str) -> Kernel | None:
    """The kernel for `isa`, or None where this llvmlite cannot build it (releases before 0.44
    lack the opaque pointers and pass builder it uses): Numba's loop runs then, the same bits."""
    try:
        return _compiled(*SHAPES[isa])
    except (AttributeError, RuntimeError):
        return None


@functools.cache
def _isa() -> str | None:
    """"avx512", "avx2" or None, from LLVM's view of the host processor."""
    try:
        import llvmlite.binding as llvm
    except ImportError:
        return None
    if llvm.get_process_triple().split("-")[0] not in ("x86_64", "amd64"):
        return None
    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        return "avx512"
    if features.get("avx2") and features.get("fma"):
        return "avx2"
    return None


@functools.cache
def _compiled(lanes: int, vectors: int, filters: int) -> Kernel:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fn, engine = jit(ir(lanes, vectors, filters), "correlate3x3",
                     (ptr, i64, ptr, ptr, i64, i64, i64, i64, i64))
    return Kernel(lanes, vectors, filters, fn, engine)


def jit(text: str, name: str, args: tuple) -> tuple[object, object]:
    """The function `name` of the LLVM IR `text`, compiled for this processor (optimized at
    level 3) and callable through ctypes with `args`, and the engine that keeps its code alive."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)
    module = llvm.parse_assembly(text)
    module.verify()
    builder = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=3))
    builder.getModulePassManager().run(module, builder)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    return ctypes.CFUNCTYPE(None, *args)(engine.get_function_address(name)), engine


def ir(lanes: int, vectors: int, filters: int) -> str:
    """The LLVM IR of the kernel: loops over filter blocks (kb), position blocks (b) and channels
    (c), the nine taps and the F × P accumulators written out in the channel loop's body
    (_taps), stored once per block (_stores)."""
    vt = f"<{lanes} x float>"
    head = [
        f"declare {vt} @llvm.fma.v{lanes}f32({vt}, {vt}, {vt})",
        "define void @correlate3x3(ptr noalias %xs, i64 %xstride, ptr noalias %w, ptr noalias %out,"
        " i64 %ostride, i64 %C, i64 %KB, i64 %NB, i64 %wp) #0 {",
        "entry:",
        "  %wp2 = shl i64 %wp, 1",
        "  br label %kbloop",
        "kbloop:",
        "  %kb = phi i64 [0, %entry], [%kbn, %kbnext]",
        "  %kbc = mul i64 %kb, %C",
        "  br label %bloop",
        "bloop:",
        "  %b = phi i64 [0, %kbloop], [%bn, %store]",
        f"  %p0 = mul i64 %b, {lanes * vectors}",
        "  br label %cloop",
        "cloop:",
        "  %c = phi i64 [0, %bloop], [%cn, %cloop]",
    ]
    head += [f"  %a{f}_{p}_0 = phi {vt} [zeroinitializer, %bloop], [%a{f}_{p}_9, %cloop]"
             for f in range(filters) for p in range(vectors)]
    head += [
        "  %xrow = mul i64 %c, %xstride",
        "  %xat = add i64 %xrow, %p0",
        "  %x = getelementptr float, ptr %xs, i64 %xat",
        "  %wrow = add i64 %kbc, %c",
        f"  %wat = mul i64 %wrow, {9 * filters}",
        "  %wc = getelementptr float, ptr %w, i64 %wat",
    ]
    tail = [
        "  %bn = add i64 %b, 1",
        "  %bdone = icmp eq i64 %bn, %NB",
        "  br i1 %bdone, label %kbnext, label %bloop",
        "kbnext:",
        "  %kbn = add i64 %kb, 1",
        "  %kbdone = icmp eq i64 %kbn, %KB",
        "  br i1 %kbdone, label %exit, label %kbloop",
        "exit:",
        "  ret void",
        "}",
        f'attributes #0 = {{ nounwind "min-legal-vector-width"="{32 * lanes}" '
        f'"prefer-vector-width"="{32 * lanes}" }}',
    ]
    return "\n".join(head + _taps(lanes, vectors, filters) + _stores(lanes, vectors, filters)
                     + tail)


def _taps(lanes: int, vectors: int, filters: int) -> list[str]:
    """The channel loop's body: per tap t = 3u + v, P input vectors loaded at offset u·Wp + v,
    F weights broadcast, F·P fused multiply-adds a{f}_{p}_{t+1} = fma(w, x, a{f}_{p}_{t})."""
    vt, lines = f"<{lanes} x float>", []
    for t in range(9):
        u, v = divmod(t, 3)
        lines.append(f"  %off{t} = add i64 {('0', '%wp', '%wp2')[u]}, {v}")
        for p in range(vectors):
            lines += [f"  %xi{t}_{p} = add i64 %off{t}, {p * lanes}",
                      f"  %xq{t}_{p} = getelementptr float, ptr %x, i64 %xi{t}_{p}",
                      f"  %x{t}_{p} = load {vt}, ptr %xq{t}_{p}, align 4"]
        for f in range(filters):
            lines += [f"  %wq{t}_{f} = getelementptr float, ptr %wc, i64 {t * filters + f}",
                      f"  %ws{t}_{f} = load float, ptr %wq{t}_{f}, align 4",
                      f"  %wi{t}_{f} = insertelement {vt} poison, float %ws{t}_{f}, i64 0",
                      f"  %wv{t}_{f} = shufflevector {vt} %wi{t}_{f}, {vt} poison, "
                      f"<{lanes} x i32> zeroinitializer"]
            lines += [f"  %a{f}_{p}_{t + 1} = call {vt} @llvm.fma.v{lanes}f32({vt} %wv{t}_{f}, "
                      f"{vt} %x{t}_{p}, {vt} %a{f}_{p}_{t})" for p in range(vectors)]
    return lines + ["  %cn = add i64 %c, 1",
                    "  %cdone = icmp eq i64 %cn, %C",
                    "  br i1 %cdone, label %store, label %cloop"]


def _stores(lanes: int, vectors: int, filters: int) -> list[str]:
    """After the last channel: each accumulator stored to out[kb·F + f, p0 + p·V …]."""
    vt, lines = f"<{lanes} x float>", ["store:"]
    for f in range(filters):
        lines += [f"  %kf{f} = mul i64 %kb, {filters}",
                  f"  %k{f} = add i64 %kf{f}, {f}",
                  f"  %orow{f} = mul i64 %k{f}, %ostride",
                  f"  %oat{f} = add i64 %orow{f}, %p0"]
        for p in range(vectors):
            lines += [f"  %oi{f}_{p} = add i64 %oat{f}, {p * lanes}",
                      f"  %oq{f}_{p} = getelementptr float, ptr %out, i64 %oi{f}_{p}",
                      f"  store {vt} %a{f}_{p}_9, ptr %oq{f}_{p}, align 4"]
    return lines
