"""Model and checkpoint files: safetensors plus JSON metadata. No pickle, no eval.

    tensors.py       the container: tensors, string metadata, the SHA-256 of every tensor,
                     read_file / write_file, a model's tensors in and out
    architecture_json.py  a model as JSON and back, through the closed list of cnnlab's layers
    model.py         model files: save, load
    limits.py        what a file may ask for, checked before anything is built: JSON depth and
                     sizes, finite numbers, Limits (parameters, activations, layers)
    checkpoint.py    training checkpoints: the one owner of their format
    onnx_export.py   ONNX export: export_onnx, to_onnx (the onnx package imported on use);
                     onnx_graph.py the graph being built, onnx_layers.py a converter per layer,
                     onnx_modern.py those of LayerNorm, GroupNorm, AdaptiveAvgPool2D, …
    foreign.py       safetensors files cnnlab did not write (torchvision's, timm's weights): the
                     header checked first, then tensors read one by one, by name

A file holds the tensors ("param.<name>", "buffer.<name>", in a checkpoint also
"optim.<name>.<slot>") and string metadata:
    format        "cnnlab/1" (FORMAT: "cnnlab/<FORMAT_VERSION>"); a newer version is refused
                  with "upgrade cnnlab", files of older versions are read
    architecture  JSON: {"type": "Sequential", "input_shape": [...], "dtype": "float32",
                  "layers": [{"type": "Conv2D", "filters": 32, ...}, ...]} — only the layer
                  types of cnnlab.layers and their constructor arguments are accepted
    preprocess    JSON of the input preprocessing (or "null");  class_names  JSON list or null
    sha256        of every tensor's name, dtype, shape and bytes; checked on load
    training      (checkpoints) JSON: epoch, step, optimizer, RNG states, history
Reading never unpickles or evaluates anything: the header and metadata are JSON, the layer types
come from a closed list (the layers of cnnlab.layers), their arguments must be plain values,
the tensors must match their SHA-256, and the architecture may not ask for more weights than the
file holds (a hostile file cannot make cnnlab allocate what it does not contain).
Writes are atomic (cnnlab.files.atomic_write). docs/security.md lists these promises and the
tests that check them.

io may import core, files, layers and data (for Preprocess); never train, viz or cli.
"""

from cnnlab.io.architecture_json import MAX_DEPTH, WEIGHT_SLACK, architecture, from_architecture
from cnnlab.io.checkpoint import (
    CHECKPOINT,
    Checkpoint,
    read_checkpoint,
    restore,
    training_state,
    write_checkpoint,
)
from cnnlab.io.limits import (
    LIMITS_VARIABLE,
    MAX_JSON_DEPTH,
    MAX_JSON_ITEMS,
    MAX_JSON_STRING,
    Footprint,
    Limits,
    check_footprint,
    footprint,
)
from cnnlab.io.model import load, model_from, model_metadata, save
from cnnlab.io.onnx_export import export_onnx, to_onnx
from cnnlab.io.tensors import (
    FORMAT,
    FORMAT_VERSION,
    MAX_HEADER,
    assign,
    digest,
    model_tensors,
    read_file,
    rng_states,
    set_rng_states,
    write_file,
)

__all__ = [
    "CHECKPOINT", "FORMAT", "FORMAT_VERSION", "LIMITS_VARIABLE", "MAX_DEPTH", "MAX_HEADER", "MAX_JSON_DEPTH",
    "MAX_JSON_ITEMS", "MAX_JSON_STRING", "WEIGHT_SLACK", "Checkpoint", "Footprint", "Limits",
    "architecture", "check_footprint", "export_onnx", "footprint", "to_onnx",
    "assign", "digest", "from_architecture", "load", "model_from", "model_metadata", "model_tensors",
    "read_checkpoint", "read_file", "restore", "rng_states", "save", "set_rng_states",
    "training_state", "write_checkpoint", "write_file",
]
