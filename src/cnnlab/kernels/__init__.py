"""The kernels: the convolution and pooling math on NCHW arrays, the only code that plays with
strides. The layers (cnnlab.layers) are thin classes around them.

    geometry.py   the window's arguments (Pair, Padding), out_size, pad, dilated extents, one
                  kernel offset's view
    chunks.py     samples per chunk, the batch's chunks, the backward skeleton the conv paths
                  share, the depthwise paths' blocks of channels and samples
    plain.py      im2col, col2im and the plain convolution path (conv_forward_cols, any window,
                  dilation and groups)
    wide.py       the wide path: stride-1 convolutions over whole padded rows (conv_forward_wide)
    same.py       the "same" path: output (H/S, W/S) by phases and shifted runs (conv_forward_same)
    depthwise.py  groups = C: tap-by-tap multiply-adds over padded phases (any window), and
                  the dispatch to depthwise_same.py, the same on the input's own memory when
                  the output is (H/S, W/S)
    direct.py     the direct path: 3×3 stride-1 convolutions with padding 1 tap by tap in
                  compiled loops (Numba), no column matrix (conv_forward_direct)
    simd.py       the direct path's correlation as explicit AVX-512/AVX2 vector code (LLVM IR
                  compiled by llvmlite, Numba's own LLVM binding), the same bits as its Numba loop
    gather.py     the gather path: 3×3 stride-1 convolutions with padding 1 as vector code over
                  filters, each input value broadcast (conv_forward_gather); gather_ir.py
                  writes its two loops' LLVM IR, compiled by simd.jit
    winograd.py   the Winograd path: 3×3 stride-1 convolutions with padding 1 as F(2×2, 3×3),
                  transforms compiled (Numba), 16 products in the BLAS (conv_forward_winograd)
    pointwise.py  ReLU's backward in one compiled pass (Numba), NumPy's two otherwise
    update.py     SGD's update of a parameter in one compiled pass, NumPy's exact roundings
    batchnorm.py  batch normalisation's training passes over channel rows, compiled (Numba)
    compiled.py   Numba found, its flags, and the compilation of every compiled loop (direct,
                  winograd, batchnorm, pool2x2, pointwise, update)
    transpose.py  the transposed convolution: col2im of W_matᵀ·X forward, im2col of dy backward
    pool.py       max and average pooling over any window
    pool2x2.py    the 2×2/2 max pooling fast path (one compiled pass with Numba)
    adaptive.py   adaptive average pooling (PyTorch's windows): gathers, or a reshape and a sum

Every path is tested equal to the plain one (tests/test_kernels.py). The functions keep no
state between calls, but they are not pure functions of their arguments alone: the chunked
convolution paths (plain, wide, same, direct, Winograd, gather) also depend on cnnlab's thread count
(cnnlab.runtime.threads.num_threads), which decides how the batch is chunked and in what order
the chunks' partial weight gradients are added (chunks.py). Their results are bit-identical for
a given thread count, and may differ in the last bits from one count to another. The pooling
kernels split work over the threads too (2×2/2) but add nothing across it: the same bits on any
count.

The package may import NumPy, Numba (compiled.py only, on first use), llvmlite (simd.py only, on
first use; gather.py compiles through simd.jit) and cnnlab.runtime.threads (and cnnlab.core, if
ever needed); never the layers, io, train, data, viz or the CLI, which all build on the kernels.
"""

from cnnlab.kernels import batchnorm
from cnnlab.kernels.adaptive import (
    adaptive_avgpool_backward,
    adaptive_avgpool_forward,
    adaptive_windows,
)
from cnnlab.kernels.batchnorm import batchnorm_compiled
from cnnlab.kernels.depthwise import (
    depthwise_backward,
    depthwise_backward_padded,
    depthwise_forward,
    depthwise_forward_padded,
)
from cnnlab.kernels.depthwise_same import (
    depthwise_backward_same,
    depthwise_forward_same,
    depthwise_same_applies,
)
from cnnlab.kernels.direct import (
    conv_backward_direct,
    conv_direct_applies,
    conv_forward_direct,
)
from cnnlab.kernels.gather import (
    conv_backward_gather,
    conv_forward_gather,
    conv_gather_applies,
    gather_trains_ahead_of_direct,
    gather_trains_ahead_of_winograd,
)
from cnnlab.kernels.geometry import Padding, Pair, dilated, out_size, pad
from cnnlab.kernels.plain import col2im, conv_backward_cols, conv_forward_cols, im2col
from cnnlab.kernels.pointwise import relu_grad
from cnnlab.kernels.pool import (
    avgpool_backward,
    avgpool_counts,
    avgpool_forward,
    maxpool_backward,
    maxpool_forward,
)
from cnnlab.kernels.pool2x2 import maxpool2x2_applies, maxpool2x2_backward, maxpool2x2_forward
from cnnlab.kernels.same import (
    col2im_same,
    conv_backward_same,
    conv_forward_same,
    conv_same_applies,
    im2col_same,
)
from cnnlab.kernels.transpose import conv_transpose_backward, conv_transpose_forward
from cnnlab.kernels.update import sgd_applies, sgd_update
from cnnlab.kernels.wide import (
    conv_backward_wide,
    conv_forward_wide,
    conv_wide_applies,
    im2col_wide,
    wide_planes,
)
from cnnlab.kernels.winograd import (
    conv_backward_winograd,
    conv_forward_winograd,
    conv_winograd_applies,
)

__all__ = [
    "Padding", "Pair", "avgpool_backward", "avgpool_forward", "col2im", "col2im_same",
    "conv_backward_cols", "conv_backward_direct", "conv_backward_gather", "conv_forward_gather",
    "conv_gather_applies", "gather_trains_ahead_of_direct", "gather_trains_ahead_of_winograd",
    "conv_backward_same", "conv_backward_wide",
    "conv_direct_applies", "conv_forward_cols", "conv_forward_direct", "conv_forward_same",
    "conv_forward_wide", "conv_same_applies", "conv_transpose_backward",
    "conv_transpose_forward", "conv_wide_applies", "depthwise_backward",
    "depthwise_backward_padded", "depthwise_backward_same", "depthwise_forward",
    "depthwise_forward_padded", "depthwise_forward_same", "depthwise_same_applies", "dilated",
    "im2col",
    "im2col_same", "im2col_wide", "maxpool2x2_applies", "maxpool2x2_backward", "maxpool2x2_forward",
    "maxpool_backward", "maxpool_forward", "out_size", "pad", "wide_planes",
    # issue 20: adaptive average pooling, average pooling without the padding in the mean
    "adaptive_avgpool_backward", "adaptive_avgpool_forward", "adaptive_windows",
    "avgpool_counts",
    # issue 19: the Winograd path, BatchNorm's and ReLU's compiled passes
    "conv_backward_winograd", "conv_forward_winograd", "conv_winograd_applies",
    "batchnorm", "batchnorm_compiled", "relu_grad", "sgd_applies", "sgd_update",
]
