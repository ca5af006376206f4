"""cnnlab's own threads: a layer's work split over the cores.

NumPy runs elementwise work (im2col's copies, col2im's adds) on one core, and OpenBLAS's worker
threads busy-wait for about 0.1 s after every GEMM, so a second core is never free for it. So
inside Sequential.forward and backward cnnlab sets the BLAS to one thread (threadpoolctl) and
splits the work itself: each of n threads takes every n-th chunk of a convolution's batch
(im2col, GEMM, col2im, all in cache) and returns its chunks' parts of the weight gradients,
which are added in chunk order, so a run is reproducible bit for bit for a given number of
threads; Dense layers split their rows, and ReLU, BatchNorm, 2×2 max pooling and residual
additions their memory or channels (what this gained: docs/performance.md).

    cnnlab.runtime.threads.set_num_threads(4)    # or CNNLAB_NUM_THREADS=4; 1 = NumPy and BLAS as they are

The default is the number of threads the BLAS has when cnnlab first needs to know (what
OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or threadpoolctl set; the number of cores otherwise).
Without threadpoolctl, cnnlab stays on one thread of its own and leaves the BLAS alone.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

_lock = threading.Lock()
_local = threading.local()  # .worker: this thread is one of the pool's; .depth: single_blas nesting
_count: int | None = None
_pool: ThreadPoolExecutor | None = None
_controller = None


def _blas_threads() -> int:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return 1
    counts = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    return max(counts, default=1)


def num_threads() -> int:
    """The number of threads cnnlab splits a layer's work over (see the module docstring)."""
    global _count
    if _count is None:
        env = os.environ.get("CNNLAB_NUM_THREADS", "").strip()
        set_num_threads(int(env) if env else _blas_threads(), _source="CNNLAB_NUM_THREADS" if env else None)
    return _count


def set_num_threads(n: int, _source: str | None = None) -> None:
    """Splits layer work over n threads (n ≥ 1); 1 leaves NumPy and the BLAS as they are."""
    global _count, _pool, _controller
    what = _source or "set_num_threads"
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"cnnlab.runtime.threads: {what} needs a whole number ≥ 1. Received: {n!r}")
    if n > 1:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            n = 1  # without it the BLAS cannot be kept to one thread: stay serial
        else:
            _controller = _controller or ThreadpoolController()
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _count = n
        _pool = ThreadPoolExecutor(n - 1, thread_name_prefix="cnnlab", initializer=_mark) if n > 1 else None


def one_per_process() -> None:
    """K processes of one job sharing a machine's cores (data-parallel training under mpiexec):
    cnnlab and the BLAS on one thread each, unless CNNLAB_NUM_THREADS, OPENBLAS_NUM_THREADS,
    OMP_NUM_THREADS or MKL_NUM_THREADS set a count (then that count holds)."""
    told = ("CNNLAB_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    if any(os.environ.get(name, "").strip() for name in told):
        return
    set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1, user_api="blas")  # process-wide: this process is one of K


def _mark() -> None:
    _local.worker = True


def _after_fork_in_child() -> None:
    """A forked child has none of the pool's threads: it starts a pool of its own when needed."""
    global _lock, _count, _pool
    _lock, _count, _pool = threading.Lock(), None, None


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def single_blas():
    """The BLAS on one thread while cnnlab's own threads work (re-entrant; a no-op with one
    cnnlab thread): its idle workers would otherwise busy-wait on the cores they need."""
    depth = getattr(_local, "depth", 0)
    if depth or num_threads() == 1:
        _local.depth = depth + 1
        try:
            yield
        finally:
            _local.depth = depth
        return
    _local.depth = 1
    try:
        with _controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _local.depth = 0


def map_chunks(fn: Callable, items: Iterable) -> list:
    """[fn(item) for item in items], the items dealt round-robin to the threads: thread t
    runs items t, t + n, t + 2n, … in order. fn must write only its own item's outputs."""
    items = list(items)
    n = num_threads()
    if n == 1 or len(items) < 2 or getattr(_local, "worker", False):
        return [fn(item) for item in items]
    groups = [items[t::n] for t in range(min(n, len(items)))]

    def run(group):
        return [fn(item) for item in group]

    with single_blas():
        # each in a copy of the caller's context: np.errstate lives there (NumPy 2)
        futures = [_pool.submit(contextvars.copy_context().run, run, group) for group in groups[1:]]
        parts = [run(groups[0])] + [f.result() for f in futures]
    out = [None] * len(items)
    for t, part in enumerate(parts):
        out[t::len(groups)] = part
    return out


def _row_spans(m: int) -> list[tuple[int, int]]:
    step = -(-m // num_threads())
    return [(r0, min(m, r0 + step)) for r0 in range(0, m, step)]


def _large(m: int, k: int, n: int) -> bool:
    """Worth splitting: about 8·10⁶ multiply-adds (0.1 ms of one core) and more."""
    return num_threads() > 1 and m * k * n >= 1 << 23


def matmul(a, b):
    """a @ b (2-D), rows of a split over the threads when large."""
    m = a.shape[0]
    if not _large(m, a.shape[1], b.shape[1]):
        return a @ b
    out = np.empty((m, b.shape[1]), np.result_type(a, b))

    def rows(span):
        np.matmul(a[span[0]:span[1]], b, out=out[span[0]:span[1]])

    map_chunks(rows, _row_spans(m))
    return out


def matmul_tn(a, b):
    """aᵀ @ b (2-D, summed over the rows they share), the rows split over the threads when
    large and the parts added in row order."""
    m = a.shape[0]
    if not _large(m, a.shape[1], b.shape[1]):
        return a.T @ b
    return total(map_chunks(lambda span: a[span[0]:span[1]].T @ b[span[0]:span[1]], _row_spans(m)))


def total(parts: list[np.ndarray]) -> np.ndarray:
    """Partial sums (of chunks or row spans) added in their order: the same sum, bit for bit,
    however the parts were dealt to the threads."""
    out = parts[0].copy()
    for part in parts[1:]:
        out += part
    return out


def _memory_order(a) -> tuple[int, ...] | None:
    """The axis order in which a's memory is C-contiguous, or None."""
    order = tuple(int(i) for i in np.argsort([-abs(s) for s in a.strides], kind="stable"))
    return order if a.transpose(order).flags.c_contiguous else None


def elementwise(fn: Callable, like, *inputs):
    """out = fn(out, *inputs) with out a new array laid out like `like`, split over the threads
    as flat runs of memory when every array has the same shape and memory order and the arrays
    are large (2¹⁸ elements and more); otherwise one call on the whole arrays."""
    out = np.empty_like(like)
    order = _memory_order(out)
    if (num_threads() == 1 or out.size < 1 << 18 or order is None
            or any(a.shape != out.shape or _memory_order(a) != order for a in inputs)):
        fn(out, *inputs)
        return out
    flat = [a.transpose(order).reshape(-1) for a in (out, *inputs)]
    step = -(-out.size // num_threads())
    map_chunks(lambda s: fn(*(f[s:s + step] for f in flat)), range(0, out.size, step))
    return out


def row_spans(a) -> list[tuple[int, int]]:
    """a's rows (first axis) as one span per thread when a is large (2¹⁸ elements and more),
    else one span: for work that is independent per row, such as BatchNorm's channels."""
    return spans(a.shape[0], a.size)


def spans(m: int, size: int) -> list[tuple[int, int]]:
    """row_spans for m rows holding `size` elements in all."""
    if num_threads() == 1 or size < 1 << 18 or m < 2:
        return [(0, m)]
    return _row_spans(m)
