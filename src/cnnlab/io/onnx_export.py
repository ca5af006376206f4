"""ONNX export: a cnnlab model as one .onnx file that onnxruntime (or any ONNX runtime) runs.

    cl.export_onnx(model, "model.onnx")            # opset 17; the batch dimension "N" is free
    proto = cl.io.to_onnx(model, opset=18)         # the onnx.ModelProto, nothing written

The graph takes `input`, float32 (N, C, H, W) (or (N, C, L), (N, D)) already normalised as
the model's preprocessing says, and gives `output`, the model's forward: class scores (logits,
no softmax) for a classifier. Weights are written as float32 (a float64 model is rounded).
The file's metadata_props carry, as JSON strings under the keys of cnnlab's own model files,
"preprocess" (mean, std, scale, channels, resize, input_size: x̂ = (pixels·scale − mean[c])/std[c])
and "class_names". Each layer maps to standard operators (onnx_layers.py); a layer without a
converter stops the export with an error naming it.

The `onnx` package is an optional extra (pip install "cnnlab[onnx]"), imported only when a
model is exported: `import cnnlab` never loads it.
"""

from __future__ import annotations

import json
import os

from cnnlab.core import __version__
from cnnlab.files import atomic_write
from cnnlab.io import onnx_modern  # noqa: F401 (registers the converters of issue 20's layers)
from cnnlab.io.model import model_metadata
from cnnlab.io.onnx_graph import Graph
from cnnlab.io.onnx_layers import convert
from cnnlab.layers import Sequential

#: the oldest opset the converters support (HardSwish came in 14) and the default
MIN_OPSET, DEFAULT_OPSET = 14, 17
#: the graph's input and output names
INPUT, OUTPUT = "input", "output"
#: a protobuf message, and so one .onnx file without external data, stays below 2 GiB
MAX_BYTES = 2**31 - 2**24

DOC = ("cnnlab {version} model. input: float32 (N, {shape}) normalised per channel, "
       "x̂ = (pixels·scale − mean[c])/std[c] with metadata 'preprocess'; output: the model's "
       "forward (class scores, no softmax, for a classifier; names in metadata 'class_names').")


def require_onnx():
    """The onnx package, or an ImportError saying how to install it (one line)."""
    try:
        import onnx
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: pip install "cnnlab[onnx]"') from None
    return onnx


def to_onnx(model: Sequential, *, opset: int = DEFAULT_OPSET):
    """The onnx.ModelProto of a built model, checked by onnx.checker; nothing is written.

    Raises ValueError naming the layer that cannot be exported, or the opset out of range;
    ImportError without the onnx package."""
    if not isinstance(model, Sequential) or not model.built:
        raise ValueError("export_onnx: expected a built cnnlab Sequential (give input_shape). "
                         f"Received: {type(model).__name__}")
    onnx = require_onnx()
    opset = _check_opset(opset, onnx.defs.onnx_opset_version())
    size = 4 * (model.count_params() + sum(b.size for b in model.buffers().values()))
    if size > MAX_BYTES:
        raise ValueError(f"export_onnx: the weights take {size / 2**30:.2f} GiB as float32, over the "
                         "2 GiB one .onnx file can hold (external data is not supported)")
    graph = Graph(onnx, opset)
    graph.fresh(INPUT)
    y = convert(graph, model, INPUT, "")
    if y == INPUT:  # nothing but Dropout
        y = graph.op("Identity", [INPUT], OUTPUT)
    else:
        last = next(node for node in reversed(graph.nodes) if node.output[0] == y)
        last.output[0] = OUTPUT  # the last node's output, consumed by no other node
    proto = _model_proto(onnx, graph, model)
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model: Sequential, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET):
    """Writes `model` as an ONNX file at `path` (atomically: the old file stays intact on any
    failure) and returns its onnx.ModelProto. See the module docstring for the graph's form."""
    proto = to_onnx(model, opset=opset)
    atomic_write(path, proto.SerializeToString())
    return proto


def _check_opset(opset, newest: int) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export_onnx: opset must be an int from {MIN_OPSET} to {newest} (the "
                         f"installed onnx package's newest). Received: opset={opset!r}")
    return opset


def _model_proto(onnx, graph: Graph, model: Sequential):
    helper, floats = onnx.helper, onnx.TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(INPUT, floats, ["N", *model.input_shape])]
    outputs = [helper.make_tensor_value_info(OUTPUT, floats, ["N", *model.out_shape])]
    body = helper.make_graph(graph.nodes, "cnnlab", inputs, outputs, initializer=graph.initializers)
    opsets = [helper.make_opsetid("", graph.opset)]
    proto = helper.make_model(
        body, opset_imports=opsets, producer_name="cnnlab", producer_version=__version__,
        doc_string=DOC.format(version=__version__, shape=", ".join(map(str, model.input_shape))))
    # the oldest IR version that can hold this opset: older onnxruntimes load the file too
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    recorded = model_metadata(model)
    helper.set_model_props(proto, {key: recorded[key] for key in ("preprocess", "class_names")})
    return proto


def metadata(proto) -> dict:
    """The JSON metadata of an exported model, decoded: {"preprocess": ..., "class_names": ...}."""
    return {entry.key: json.loads(entry.value) for entry in proto.metadata_props}
