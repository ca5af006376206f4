"""Every layer family, one module each, and the containers.

    conv.py Conv2D, Conv1D (dilation, groups)   transpose.py ConvTranspose2D
    local.py LocallyConnected2D/1D     dense.py Dense, Flatten
    pool.py max/avg/global pooling  activation.py Sigmoid … Maxout   norm.py BatchNorm
    activation_modern.py ReLU6, SiLU, Hardswish, GELU (and its erf)  dropout.py Dropout
    containers.py Sequential      blocks.py Residual, Concat, SqueezeExcite
    _window.py what window layers share
    pool_adaptive.py GlobalMaxPool2D, AdaptiveAvgPool2D   dropout.py also DropPath
    norm_modern.py LayerNorm, GroupNorm, LayerScale (per sample, no running statistics)
    lrn.py LocalResponseNorm (AlexNet's, across channels)

A layer knows nothing of the loop, files or pictures: layers may import core, runtime, kernels,
shapes and init; never data, io, train, viz or cli.
"""

from cnnlab.layers.activation import ELU, LeakyReLU, Maxout, PReLU, ReLU, Sigmoid, Swish, Tanh
from cnnlab.layers.activation_modern import GELU, Hardswish, ReLU6, SiLU
from cnnlab.layers.blocks import Concat, Residual, SqueezeExcite
from cnnlab.layers.containers import Sequential
from cnnlab.layers.conv import Conv1D, Conv2D
from cnnlab.layers.dense import Dense, Flatten
from cnnlab.layers.dropout import Dropout, DropPath
from cnnlab.layers.local import LocallyConnected1D, LocallyConnected2D
from cnnlab.layers.lrn import LocalResponseNorm
from cnnlab.layers.norm import BatchNorm1D, BatchNorm2D
from cnnlab.layers.norm_modern import GroupNorm, LayerNorm, LayerScale
from cnnlab.layers.pool import AvgPool1D, AvgPool2D, GlobalAvgPool2D, MaxPool1D, MaxPool2D
from cnnlab.layers.pool_adaptive import AdaptiveAvgPool2D, GlobalMaxPool2D
from cnnlab.layers.transpose import ConvTranspose2D

__all__ = [
    "AvgPool1D", "AvgPool2D", "BatchNorm1D", "BatchNorm2D", "Concat", "Conv1D", "Conv2D",
    "ConvTranspose2D", "Dense",
    "Dropout", "ELU", "Flatten", "GELU", "GlobalAvgPool2D", "Hardswish", "LeakyReLU",
    "LocalResponseNorm", "LocallyConnected1D", "LocallyConnected2D", "Maxout", "MaxPool1D",
    "MaxPool2D", "PReLU", "ReLU", "ReLU6", "Residual", "Sequential", "SiLU", "Sigmoid",
    "SqueezeExcite", "Swish", "Tanh",
    # issue 20: pooling to a size, per-sample normalisation, stochastic depth
    "AdaptiveAvgPool2D", "DropPath", "GlobalMaxPool2D", "GroupNorm", "LayerNorm", "LayerScale",
]
