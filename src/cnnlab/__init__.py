"""cnnlab: convolutional neural networks in NumPy — exact, explained and fast.

    import cnnlab as cl
    model = cl.Sequential([cl.Conv2D(32, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2),
                           cl.Flatten(), cl.Dense(10)], input_shape=(1, 28, 28))
    print(model.summary())

The public names (docs/design.md) and nothing else. The parts, bottom to top, each importing only
those below it: core, files, runtime; shapes, init, kernels; layers, losses; optim, schedules,
metrics; data; io, zoo; train; viz; cli; and `testing` (gradient checks), on core alone.
`cl.viz` loads on first use (matplotlib).
"""

from cnnlab import data, distributed, optim, runtime, testing, zoo
from cnnlab.core import DataError, Layer, ModelFileError, Parameter, ShapeError, __version__
from cnnlab.io import export_onnx, load, save
from cnnlab.layers import (
    ELU,
    GELU,
    AdaptiveAvgPool2D,
    AvgPool1D,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Concat,
    Conv1D,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Dropout,
    DropPath,
    Flatten,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    GroupNorm,
    Hardswish,
    LayerNorm,
    LayerScale,
    LeakyReLU,
    LocallyConnected1D,
    LocallyConnected2D,
    LocalResponseNorm,
    Maxout,
    MaxPool1D,
    MaxPool2D,
    PReLU,
    ReLU,
    ReLU6,
    Residual,
    Sequential,
    Sigmoid,
    SiLU,
    SqueezeExcite,
    Swish,
    Tanh,
)
from cnnlab.losses import MulticlassSVM, SoftmaxCrossEntropy
from cnnlab.train import (
    Callback,
    EarlyStopping,
    History,
    PixelRangeWarning,
    evaluate,
    features,
    fit,
    lr_find,
    predict,
)

__all__ = [
    "ELU", "AvgPool1D", "AvgPool2D", "BatchNorm1D", "BatchNorm2D", "Concat", "Conv1D", "Conv2D",
    "ConvTranspose2D", "DataError", "Dense", "Dropout", "Flatten", "GELU",
    "GlobalAvgPool2D", "Hardswish", "Layer", "LeakyReLU", "LocalResponseNorm", "LocallyConnected1D",
    "LocallyConnected2D", "Maxout", "MaxPool1D", "MaxPool2D", "ModelFileError", "MulticlassSVM",
    "PReLU", "Parameter", "PixelRangeWarning", "ReLU", "ReLU6", "Residual", "Sequential", "ShapeError",
    "SiLU", "Sigmoid",
    "SoftmaxCrossEntropy", "SqueezeExcite", "Swish", "Tanh",
    "Callback", "EarlyStopping", "History", "data", "evaluate", "features", "fit", "load", "lr_find",
    "optim", "predict", "export_onnx", "runtime", "save", "testing", "viz", "zoo", "distributed",
    "__version__",
    "AdaptiveAvgPool2D", "DropPath", "GlobalMaxPool2D", "GroupNorm", "LayerNorm", "LayerScale",
]


def __getattr__(name: str):
    # cl.viz loads on first use: `import cnnlab` stays free of matplotlib
    if name == "viz":
        from importlib import import_module

        return import_module("cnnlab.viz")
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
