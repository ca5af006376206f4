"""Features: the activations of one named layer (the lecture's "CNN as a feature extractor"),
and the nearest neighbours of images in that space.

    f = cl.features(model, x, layer="globalavgpool2d_1")   # (N, 512) for a ResNet-18
    idx, dist = cl.train.nearest(f[:4], f, k=5)             # cosine distance by default

A layer is named as summary() names it ("conv2d_2", "residual_3") or, inside a container, by its
qualified name as in the parameter names ("residual_3.branch.conv2d_1"). Without a name: the
layer before the head (the last Dense layer), whose output is what the classifier sees.
"""

from __future__ import annotations

import numpy as np

from cnnlab import runtime
from cnnlab.core import walk
from cnnlab.runtime import threads
from cnnlab.train.evaluate import _batches

#: the distances nearest() measures
DISTANCES = ("cosine", "euclidean")


def feature_layer(model, layer: str | None = None) -> tuple[str, int]:
    """(the qualified name of the layer `layer` names, the position in model.layers of the
    top-level layer holding it). None: the layer before the head. A ValueError lists the names."""
    if layer is None:
        try:
            head = model.head_index("features")
        except ValueError as error:
            raise ValueError(f"{error} Name the layer whose output you want (layer=...)") from None
        if head == 0:
            raise ValueError(f"features: the head {model.layers[0].label} is the first layer: "
                             "name the layer whose output you want (layer=...)")
        return model.layers[head - 1].name, head - 1
    if not isinstance(layer, str):
        raise ValueError(f"features: layer must be a layer's name, e.g. {model.layers[0].name!r}. "
                         f"Received: layer={layer!r}")
    top = layer.split(".")[0]
    names = [item.name for item in model.layers]
    if top in names and layer in dict(walk(model)):
        return layer, names.index(top)
    raise ValueError(f"features: no layer named {layer!r}; the layers are {', '.join(names)} (as "
                     "summary() names them; a layer inside a container by its qualified name, "
                     "e.g. residual_1.branch.conv2d_1)")


def features(model, x: np.ndarray, *, layer: str | None = None, batch_size: int = 256,
             pixel_range: float | None = None) -> np.ndarray:
    """The output of the layer named `layer` (see the module docstring) for every sample of x,
    in inference mode, in batches: (N, *that layer's output shape), in the model's dtype.

    x as for cl.predict: uint8 pixels (the model's preprocessing applied), float pixels on
    0–`pixel_range`, or normalised float input. Only the layers up to the one named run."""
    runtime.apply_defaults()
    name, top = feature_layer(model, layer)
    target = dict(walk(model))[name]
    outputs = []
    for xb, _ in _batches(model, (np.asarray(x), None), batch_size, pixel_range, "features"):
        outputs.append(_forward_to(model, xb.astype(model.dtype, copy=False), top, target))
    if not outputs:
        return np.empty((0, *target.out_shape), model.dtype)
    return np.concatenate(outputs)


def _forward_to(model, x: np.ndarray, top: int, target) -> np.ndarray:
    """The output of `target` for the batch x: the top-level layers 0 … top run in inference
    mode; a target inside the container at `top` is recorded by wrapping its forward for the
    duration of the call (as cl.viz.activations does: not thread-safe on a shared model)."""
    seen = []
    if target is not model.layers[top]:
        forward = target.forward

        def recording(inputs, *, training=False):
            seen.append(forward(inputs, training=training))
            return seen[-1]

        target.forward = recording
    try:
        with threads.single_blas():  # cnnlab's threads split the work, as in model.forward
            for item in model.layers[: top + 1]:
                x = item.forward(x)
    finally:
        vars(target).pop("forward", None)
    return seen[0] if seen else x


def nearest(queries: np.ndarray, pool: np.ndarray, k: int = 5, *, distance: str = "cosine",
            exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices (Q, k'), distances (Q, k')) of the k nearest rows of `pool` to each row of
    `queries`, nearest first (ties: the lower index), k' = min(k, number of candidates).
    Features are flattened per sample and compared in float64:

        cosine:     d(a, b) = 1 − a·b / (‖a‖·‖b‖)     (0: same direction, 2: opposite; a zero
                    vector is at distance 1 from everything)
        euclidean:  d(a, b) = ‖a − b‖

    exclude: for each query, the index in `pool` of the query itself (−1: none), left out."""
    if distance not in DISTANCES:
        raise ValueError(f"nearest: distance must be one of {', '.join(DISTANCES)}. "
                         f"Received: distance={distance!r}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"nearest: k must be a positive int. Received: k={k!r}")
    a = np.asarray(queries, np.float64).reshape(len(queries), -1)
    b = np.asarray(pool, np.float64).reshape(len(pool), -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"nearest: queries have {a.shape[1]} features per sample, the pool "
                         f"{b.shape[1]}; compare features of the same layer")
    d = _distances(a, b, distance)
    if exclude is not None:
        rows = np.flatnonzero(np.asarray(exclude) >= 0)
        d[rows, np.asarray(exclude)[rows]] = np.inf
    count = min(k, len(b) - (0 if exclude is None else int(np.any(np.asarray(exclude) >= 0))))
    order = np.argsort(d, axis=1, kind="stable")[:, : max(count, 0)]
    return order, np.take_along_axis(d, order, axis=1)


def _distances(a: np.ndarray, b: np.ndarray, distance: str) -> np.ndarray:
    """(Q, P) distances between the rows of a and b (see nearest)."""
    if distance == "cosine":
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        cos = (a @ b.T) / np.maximum(np.outer(na, nb), np.finfo(np.float64).tiny)
        return 1 - np.clip(cos, -1, 1)
    # ‖a‖² + ‖b‖² − 2a·b can round below 0 for near-equal rows: clipped before the root
    squared = np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None] - 2 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0))
