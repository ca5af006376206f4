"""Zero-padded planes: the copy of its input that the compiled convolution paths make (direct,
gather and wide, forward and backward; wide.fill_wide_planes), as vector code.

NumPy's assignment of x (C, m, H, W) into the inside of planes (C, m, Hp, Wp) makes one call of
its copy loop per row of W values and one per row of each one-value border. This loop writes
each row with vector loads and stores, one value at a time only for a row's last W mod V values
(masked stores, one per row, were 3× slower on Zen 3): the left border, the W values, the right
border, and whole rows of zeros above and below. Values are copied, never computed, so the
planes are the same bits as NumPy's (tests/test_planes.py). AMD EPYC Zen 3 (AVX2), 2 threads:
- 128 × 16 × 28 × 28 into (16, 128, 31, 30) planes, one call: 1.6 ms against NumPy's 3.1; in
  chunks of 16 samples 1.9 against 2.4;
- the direct path's 16 → 16 forward at 28×28: the copy 1.2–1.4 ms of each thread's time
  against 1.4–2.1, the layer 6.7–6.8 ms against 7.5;
- inference, interleaved A/Bs of 11–15 rounds: ResNet-8 52.9–57.1 ms against 57.3–61.1,
  ResNet-20 136.3–150.4 against 141.1–155.9; fmnist-cnn-bn and training steps moved by less
  than their noise.

The loop runs where the gather path's vector code does (float32 on x86-64 with AVX2 + FMA or
AVX-512, an llvmlite of 0.44 or later, CNNLAB_SIMD not 0), compiled once per process on the
first use (about 0.1 s), for planes of SMALLEST values or more; fill() says False elsewhere and
its callers make NumPy's copy.
"""

from __future__ import annotations

import ctypes
import functools
import os

import numpy as np

from cnnlab.kernels import simd

#: planes of fewer values take NumPy's copy: the call and its checks cost about 20 µs in
#: Python, more than the copy of a first layer's chunk (1 × 16 × 31 × 30: 15 µs in NumPy)
SMALLEST = 1 << 15


def fill(planes: np.ndarray, inside: np.ndarray, top: int, left: int) -> bool:
    """planes (C, m, Hp, Wp) = inside (C, m, H, W) at rows top … top + H − 1 and columns
    left … left + W − 1, zeros everywhere else. Both float32 with contiguous rows (any other
    strides, whole values), not overlapping. Returns False, having written nothing, where the
    vector code does not run or the arrays are not such: the caller copies with NumPy then."""
    if planes.size < SMALLEST:
        return False
    fn = _loop()
    c, m, hp, wp = planes.shape
    h, w = inside.shape[2:]
    if fn is None or not (
            planes.dtype == inside.dtype == np.float32 and inside.shape[:2] == (c, m)
            and planes.strides[3] == inside.strides[3] == 4
            and all(s % 4 == 0 for s in planes.strides + inside.strides)
            and 0 <= top and top + h <= hp and 0 <= left and left + w <= wp
            and planes.flags.writeable and not np.may_share_memory(planes, inside)):
        return False
    fn(planes.ctypes.data, inside.ctypes.data, c, m,
       *(s // 4 for s in planes.strides[:3]), *(s // 4 for s in inside.strides[:3]),
       h, w, hp, wp, top, left)
    return True


def _loop():
    """The compiled loop, or None where it does not run (see the module's docstring)."""
    if os.environ.get("CNNLAB_SIMD", "1") == "0":
        return None
    isa = simd._isa()
    return None if isa is None else _built(simd.SHAPES[isa][0])


@functools.cache
def _built(lanes: int):
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    try:
        fn, engine = simd.jit(ir(lanes), "fill_planes", (ptr, ptr) + (i64,) * 14)
    except (AttributeError, RuntimeError):  # an llvmlite before 0.44
        return None
    _ENGINES.append(engine)
    return fn


#: the engines of the loops built: an engine freed frees its code
_ENGINES: list = []


def _row_op(name: str, lanes: int, copy: bool) -> list[str]:
    """@zero(d, n) or @copy(d, s, n): n values of a row, whole vectors of `lanes` values while
    they fit, then one value at a time (masked stores were 3× slower on Zen 3)."""
    vt = f"<{lanes} x float>"
    args = "ptr noalias %d, ptr noalias %s, i64 %n" if copy else "ptr noalias %d, i64 %n"
    vector = ["  %sv = getelementptr float, ptr %s, i64 %j",
              f"  %v = load {vt}, ptr %sv, align 4"] if copy else []
    scalar = ["  %st = getelementptr float, ptr %s, i64 %t",
              "  %f = load float, ptr %st, align 4"] if copy else []
    return [
        f"define internal void @{name}({args}) alwaysinline {{",
        "entry:",
        f"  %full = icmp sge i64 %n, {lanes}",
        "  br i1 %full, label %vloop, label %vdone",
        "vloop:",
        "  %j = phi i64 [0, %entry], [%jn, %vloop]",
        *vector,
        "  %dv = getelementptr float, ptr %d, i64 %j",
        f"  store {vt} {'%v' if copy else 'zeroinitializer'}, ptr %dv, align 4",
        f"  %jn = add i64 %j, {lanes}",
        f"  %jend = add i64 %jn, {lanes}",
        "  %vmore = icmp sle i64 %jend, %n",
        "  br i1 %vmore, label %vloop, label %vdone",
        "vdone:",
        "  %t0 = phi i64 [0, %entry], [%jn, %vloop]",
        "  %some = icmp slt i64 %t0, %n",
        "  br i1 %some, label %tloop, label %done",
        "tloop:",
        "  %t = phi i64 [%t0, %vdone], [%tn, %tloop]",
        *scalar,
        "  %dt = getelementptr float, ptr %d, i64 %t",
        f"  store float {'%f' if copy else '0.0'}, ptr %dt, align 4",
        "  %tn = add i64 %t, 1",
        "  %tmore = icmp slt i64 %tn, %n",
        "  br i1 %tmore, label %tloop, label %done",
        "done:",
        "  ret void",
        "}",
    ]


#: the loops over planes and rows, calling the row functions _row_op writes
_FILL = """
define void @fill_planes(ptr noalias %dst, ptr noalias %src, i64 %C, i64 %M, i64 %dc, i64 %dn,
                         i64 %dr, i64 %sc, i64 %sn, i64 %sr, i64 %H, i64 %W, i64 %HP, i64 %WP,
                         i64 %PT, i64 %PL) {
entry:
  %Q = mul i64 %C, %M
  %PB = add i64 %PT, %H
  %PR = add i64 %PL, %W
  %RW = sub i64 %WP, %PR
  %any = icmp sgt i64 %Q, 0
  br i1 %any, label %plane, label %done
plane:
  %q = phi i64 [0, %entry], [%qn, %pnext]
  %c = udiv i64 %q, %M
  %n = urem i64 %q, %M
  %dco = mul i64 %c, %dc
  %dno = mul i64 %n, %dn
  %do = add i64 %dco, %dno
  %dp = getelementptr float, ptr %dst, i64 %do
  %sco = mul i64 %c, %sc
  %sno = mul i64 %n, %sn
  %so = add i64 %sco, %sno
  %sp = getelementptr float, ptr %src, i64 %so
  br label %row
row:
  %i = phi i64 [0, %plane], [%in, %rnext]
  %dro = mul i64 %i, %dr
  %drow = getelementptr float, ptr %dp, i64 %dro
  %above = icmp slt i64 %i, %PT
  %below = icmp sge i64 %i, %PB
  %blank = or i1 %above, %below
  br i1 %blank, label %zeros, label %values
zeros:
  call void @zero(ptr %drow, i64 %WP)
  br label %rnext
values:
  call void @zero(ptr %drow, i64 %PL)
  %si = sub i64 %i, %PT
  %sro = mul i64 %si, %sr
  %srow = getelementptr float, ptr %sp, i64 %sro
  %dinside = getelementptr float, ptr %drow, i64 %PL
  call void @copy(ptr %dinside, ptr %srow, i64 %W)
  %dright = getelementptr float, ptr %drow, i64 %PR
  call void @zero(ptr %dright, i64 %RW)
  br label %rnext
rnext:
  %in = add i64 %i, 1
  %rmore = icmp slt i64 %in, %HP
  br i1 %rmore, label %row, label %pnext
pnext:
  %qn = add i64 %q, 1
  %pmore = icmp slt i64 %qn, %Q
  br i1 %pmore, label %plane, label %done
done:
  ret void
}
"""


def ir(lanes: int) -> str:
    """The LLVM IR of fill_planes(planes, inside, C, m, planes' strides (c, n, row), inside's
    strides (c, n, row) in values, H, W, Hp, Wp, top, left): one loop over the C·m planes, one
    over each plane's Hp rows."""
    head = [
        *_row_op("zero", lanes, False),
        *_row_op("copy", lanes, True),
    ]
    return "\n".join(head) + _FILL
