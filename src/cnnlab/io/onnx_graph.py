"""An ONNX graph under construction: nodes, constant tensors and unique value names.

The layer converters (onnx_layers.py) speak only to `Graph`: they never touch the `onnx`
package, which `onnx_export` imports lazily and hands in. Names follow cnnlab's own: a layer's
last node and output are its qualified name ("residual_1.branch.conv2d_1"), its intermediate
values "<name>/<what>", its constants "<name>.<parameter>" as in the model's parameters()
("residual_1.branch.conv2d_1.weight").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Graph:
    """The nodes and initializers of one graph, built in order from the input to the output.

    Args:
        onnx: the imported `onnx` package (its helper and numpy_helper build the protos).
        opset: the ONNX operator set the nodes must follow (ops whose form changed between
            opsets, such as ReduceMax's axes, ask `self.opset`).
    """

    def __init__(self, onnx, opset: int) -> None:
        self.onnx = onnx
        self.opset = int(opset)
        self.nodes: list = []
        self.initializers: list = []
        self._used: set[str] = set()

    def fresh(self, name: str) -> str:
        """`name`, or `name_2`, `name_3`, … if a value of that name exists already."""
        candidate, k = name, 1
        while candidate in self._used:
            k += 1
            candidate = f"{name}_{k}"
        self._used.add(candidate)
        return candidate

    def const(self, name: str, array) -> str:
        """A constant tensor (initializer): floats as float32, integers as int64."""
        array = np.asarray(array)
        dtype = np.float32 if array.dtype.kind == "f" else np.int64
        array = np.ascontiguousarray(array, dtype=dtype)
        name = self.fresh(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def ints(self, name: str, values: Sequence[int]) -> str:
        """A 1-D int64 constant: shapes, pads, axes, indices."""
        return self.const(name, np.asarray(list(values), np.int64))

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attributes) -> str:
        """Appends one node with one output named `name` (made unique) and returns that name.
        An empty string in `inputs` is an omitted optional input."""
        out = self.fresh(name)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out,
                                                     **attributes))
        return out

    def reduce(self, op_type: str, x: str, axes: Sequence[int], name: str, *,
               keepdims: int = 0) -> str:
        """ReduceMax/ReduceMean/... over `axes`: an attribute up to opset 17, an input from 18."""
        if self.opset >= 18:
            return self.op(op_type, [x, self.ints(f"{name}/axes", axes)], name, keepdims=keepdims)
        return self.op(op_type, [x], name, axes=list(axes), keepdims=keepdims)

    def scalar(self, name: str, value: float) -> str:
        """A float32 scalar constant (for Add, Mul, Pow, Clip)."""
        return self.const(name, np.float32(value))
