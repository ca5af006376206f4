"""Shared by the benchmarks: the BLAS in use, thread control, and cnnlab models in PyTorch.

Run benchmarks with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for that command only
(they force slow kernels on these machines):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/NAME.py
"""

from __future__ import annotations

import os
import resource
import sys
import time

import numpy as np

THREADS = int(os.environ.get("BENCH_THREADS", "2"))


def blas_info() -> str:
    """Which BLAS and kernel ran, and how many threads (threadpoolctl when installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return f"numpy {np.__version__} (install threadpoolctl to see the BLAS kernel)"
    rows = [f"{i['internal_api']} {i.get('version')} {i.get('architecture', '')} "
            f"threads={i['num_threads']}" for i in threadpool_info()]
    return "; ".join(rows)


def limit_threads(n: int = THREADS):
    """Both NumPy's BLAS and PyTorch on n threads, so the comparison is like for like."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        print("threadpoolctl missing: BLAS threads not pinned", file=sys.stderr)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def median_seconds(fn, steps: int, warmup: int = 1) -> float:
    """Median seconds of one call of fn after `warmup` calls: robust to the odd slow call of a
    shared machine."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def sgemm_gflops(repeats: int = 5) -> float:
    """GFLOP/s of NumPy's float32 GEMM on 2048×2048 matrices: the median of `repeats` after one
    warm-up call (printed with every table: ratios depend on it)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    return 2 * 2048**3 / median_seconds(lambda: a @ a, repeats) / 1e9


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def torch_or_none():
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: the PyTorch column is skipped (pip install torch==2.13.0)")
        return None
    return torch


def to_torch(model, torch):
    """The same network in PyTorch, with cnnlab's current weights copied in (Sequential layers,
    Residual blocks inside them, and the layers the zoo's small networks use)."""
    import cnnlab as cl

    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self, branch, shortcut):
            super().__init__()
            self.branch, self.shortcut = branch, shortcut

        def forward(self, x):
            return self.branch(x) + (x if self.shortcut is None else self.shortcut(x))

    def convert(layer):
        if isinstance(layer, cl.Sequential):
            return nn.Sequential(*(convert(part) for part in layer.layers))
        if isinstance(layer, cl.Residual):
            short = None if layer.shortcut is None else convert(layer.shortcut)
            return Residual(convert(layer.branch), short)
        if isinstance(layer, cl.Conv2D):
            (pt, pb), (pl, pr) = layer.win.pad
            symmetric = pt == pb and pl == pr  # else an explicit ZeroPad2d in front
            m = nn.Conv2d(layer.input_shape[0], layer.filters, layer.kernel_size, layer.stride,
                          (pt, pl) if symmetric else 0, dilation=layer.dilation,
                          groups=layer.groups, bias=layer.use_bias)
            if not symmetric:
                m = nn.Sequential(nn.ZeroPad2d((pl, pr, pt, pb)), m)
        elif isinstance(layer, cl.ConvTranspose2D):
            m = nn.ConvTranspose2d(layer.input_shape[0], layer.filters, layer.kernel_size,
                                   layer.stride, layer.padding, layer.output_padding,
                                   bias=layer.use_bias)
        elif isinstance(layer, cl.Dense):
            m = nn.Linear(layer.input_shape[0], layer.units, bias=layer.use_bias)
        elif isinstance(layer, cl.BatchNorm2D | cl.BatchNorm1D):
            cls = nn.BatchNorm2d if isinstance(layer, cl.BatchNorm2D) else nn.BatchNorm1d
            m = cls(layer.input_shape[0], eps=layer.eps, momentum=layer.momentum)
        elif isinstance(layer, cl.MaxPool2D | cl.AvgPool2D):
            cls = nn.MaxPool2d if isinstance(layer, cl.MaxPool2D) else nn.AvgPool2d
            m = cls(layer.kernel_size, layer.stride, layer.win.pad[0][0])
        elif isinstance(layer, cl.GlobalAvgPool2D):
            m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        else:
            simple = {cl.ReLU: nn.ReLU, cl.Flatten: nn.Flatten, cl.Tanh: nn.Tanh,
                      cl.Sigmoid: nn.Sigmoid, cl.ReLU6: nn.ReLU6}
            if type(layer) in simple:
                m = simple[type(layer)]()
            elif isinstance(layer, cl.Dropout):
                m = nn.Dropout(layer.rate)
            else:
                raise ValueError(f"to_torch: no PyTorch counterpart for {layer.kind}")
        target = m[-1] if isinstance(m, nn.Sequential) and isinstance(m[-1], nn.Conv2d) else m
        with torch.no_grad():
            for name, p in layer.parameters().items():
                getattr(target, name).copy_(torch.from_numpy(p.data))
        return m

    return convert(model)
