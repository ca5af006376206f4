"""Every layer family, one module each."""

from cnnlab.layers.activation import ELU, LeakyReLU, Maxout, PReLU, ReLU, Sigmoid, Swish, Tanh
from cnnlab.layers.blocks import Concat, Residual, SqueezeExcite
from cnnlab.layers.containers import Sequential
from cnnlab.layers.conv import Conv1D, Conv2D
from cnnlab.layers.dense import Dense, Flatten
from cnnlab.layers.dropout import Dropout
from cnnlab.layers.local import LocallyConnected1D, LocallyConnected2D
from cnnlab.layers.norm import BatchNorm1D, BatchNorm2D, LocalResponseNorm
from cnnlab.layers.pool import AvgPool1D, AvgPool2D, GlobalAvgPool2D, MaxPool1D, MaxPool2D

__all__ = [
    "AvgPool1D", "AvgPool2D", "BatchNorm1D", "BatchNorm2D", "Concat", "Conv1D", "Conv2D", "Dense",
    "Dropout", "ELU", "Flatten", "GlobalAvgPool2D", "LeakyReLU", "LocalResponseNorm",
    "LocallyConnected1D", "LocallyConnected2D", "Maxout", "MaxPool1D", "MaxPool2D", "PReLU", "ReLU",
    "Residual", "Sequential", "Sigmoid", "SqueezeExcite", "Swish", "Tanh",
]
