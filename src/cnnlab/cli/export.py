"""`cnnlab export MODEL --onnx OUT.onnx [--opset N]`: a model file as an ONNX file, written with
the optional extra cnnlab[onnx] (its flags and examples are in parser.py).
"""

from __future__ import annotations

import os

import cnnlab as cl
from cnnlab.cli.common import Failure, UsageError, printable
from cnnlab.io.onnx_export import MIN_OPSET, require_onnx


def cmd_export(args) -> int:
    """Loads MODEL, writes OUT.onnx atomically (checked by onnx.checker), and says in one line
    what the file holds."""
    try:
        onnx = require_onnx()
    except ImportError as error:
        raise Failure(str(error)) from None
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= args.opset <= newest:
        raise UsageError(f"--opset must be from {MIN_OPSET} to {newest} (the installed onnx "
                         f"package's newest); got {args.opset}")
    model = cl.load(args.model)
    proto = cl.export_onnx(model, args.onnx, opset=args.opset)
    shape = ", ".join(map(str, model.input_shape))
    out = ", ".join(map(str, model.out_shape))
    recorded = [what for what, present in (("preprocessing", model.preprocess is not None),
                                           ("class names", bool(model.class_names))) if present]
    print(printable(
        f"{args.onnx}: ONNX opset {args.opset}, input (N, {shape}) float32, output (N, {out}), "
        f"{len(proto.graph.node)} nodes, {model.count_params():,} parameters, "
        f"{os.path.getsize(args.onnx) / 1e6:.1f} MB; metadata: {' and '.join(recorded) or 'none'}"))
    return 0
