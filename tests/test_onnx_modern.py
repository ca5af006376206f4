"""ONNX export of the layers of recent networks (issue 20; cnnlab.io.onnx_modern): LayerNorm,
GroupNorm, LayerScale, DropPath, GlobalMaxPool2D, AdaptiveAvgPool2D and AvgPool's
count_include_pad=False run in onnxruntime and match cnnlab's forward to max|a − b| / max|b| ≤
1e-5 in float32 with a free batch dimension, as tests/test_onnx.py checks the other layers."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from tests.test_onnx import check, onnx_runtime, randomise, relative, run_onnx


@pytest.fixture(scope="session")
def ort():
    return onnx_runtime()


def ops(model: cl.Sequential, opset: int = 17) -> list[str]:
    return [node.op_type for node in cl.io.to_onnx(model, opset=opset).graph.node]


def convnext_block(c: int = 16) -> list:
    """ConvNeXt's block, x + DropPath(γ·W₂(GELU(W₁(LayerNorm(dwconv(x))))))."""
    return [cl.Residual([cl.Conv2D(c, 7, padding=3, groups=c), cl.LayerNorm(eps=1e-6), cl.Conv2D(4 * c, 1),
                         cl.GELU(), cl.Conv2D(c, 1), cl.LayerScale(), cl.DropPath(0.1)])]


def convnext_tiny_ish() -> cl.Sequential:
    return cl.Sequential([
        cl.Conv2D(16, 4, stride=4), cl.LayerNorm(eps=1e-6),  # the patchify stem
        *convnext_block(), *convnext_block(),
        cl.LayerNorm(eps=1e-6), cl.Conv2D(24, 2, stride=2),  # downsampling
        *convnext_block(24), cl.GlobalAvgPool2D(), cl.LayerNorm(eps=1e-6), cl.Dense(10),
    ], input_shape=(3, 32, 32))


def group_norm_net() -> cl.Sequential:
    return cl.Sequential([
        cl.Conv2D(8, 3, padding=1), cl.GroupNorm(2), cl.ReLU(),
        cl.Residual([cl.Conv2D(8, 3, padding=1), cl.GroupNorm(4), cl.SiLU(), cl.Conv2D(8, 3, padding=1),
                     cl.GroupNorm(4, eps=1e-3)]),
        cl.ReLU(), cl.AdaptiveAvgPool2D((4, 3)), cl.Flatten(), cl.Dense(5),
    ], input_shape=(3, 14, 10))


FAMILIES = {
    "layernorm-features": lambda: ([cl.Flatten(), cl.Dense(8), cl.LayerNorm(), cl.ReLU(), cl.Dense(3)],
                                   (2, 3, 3)),
    "layernorm-channels": lambda: ([cl.Conv2D(6, 3, padding=1), cl.LayerNorm(eps=1e-6)], (3, 5, 6)),
    "layernorm-sequence": lambda: ([cl.Conv1D(5, 3), cl.LayerNorm(eps=1e-3)], (3, 9)),
    "groupnorm": lambda: ([cl.Conv2D(8, 3, padding=1), cl.GroupNorm(4), cl.ReLU(), cl.GroupNorm(1),
                           cl.GroupNorm(8, eps=1e-3)], (3, 6, 5)),
    "groupnorm-sequence-features": lambda: ([cl.Conv1D(6, 3), cl.GroupNorm(3), cl.Flatten(), cl.Dense(6),
                                             cl.GroupNorm(2)], (2, 9)),
    "layerscale-droppath": lambda: ([cl.Conv2D(4, 1), cl.LayerScale(0.5), cl.DropPath(0.3), cl.Flatten(),
                                     cl.Dense(5), cl.LayerScale(), cl.DropPath(0.5)], (2, 3, 3)),
    "layerscale-sequence": lambda: ([cl.Conv1D(4, 3), cl.LayerScale(2.0)], (2, 7)),
    "global-maxpool": lambda: ([cl.Conv2D(5, 3), cl.GlobalMaxPool2D(), cl.Dense(3)], (3, 7, 6)),
    # 7×6 → 3×2 windows: rows [0, 3) [2, 5) [4, 7) overlap; columns [0, 3) [3, 6)
    "avgpool2d-without-padding-counted": lambda: ([
        cl.AvgPool2D(3, 2, padding=1, fit="floor", count_include_pad=False),
        cl.AvgPool2D((2, 3), padding="same", count_include_pad=False),
        cl.AvgPool2D(3, 1, padding=1, count_include_pad=False)], (3, 9, 8)),
    "avgpool1d-without-padding-counted": lambda: ([
        cl.AvgPool1D(3, 2, padding=1, fit="floor", count_include_pad=False),
        cl.AvgPool1D(2, padding="same", count_include_pad=False)], (3, 11)),
    "convnext": lambda: (convnext_tiny_ish().layers, (3, 32, 32)),
    # dilation (with "same" and its split), groups, depthwise (also with K = 2·C), and the
    # transposed convolution with output_padding
    "conv2d-dilated": lambda: ([cl.Conv2D(4, 3, dilation=2), cl.Conv2D(5, 3, padding="same", dilation=(2, 3)),
                                cl.Conv2D(3, 2, stride=2, padding="same", dilation=2)], (3, 13, 12)),
    "conv2d-groups": lambda: ([cl.Conv2D(6, 3, padding=1, groups=3), cl.Conv2D(6, 3, stride=2, groups=6,
                               fit="floor", bias=False), cl.Conv2D(12, 1, groups=6)], (3, 9, 8)),
    "conv1d-dilated-groups": lambda: ([cl.Conv1D(4, 3, dilation=3, groups=2), cl.Conv1D(8, 3, padding="same",
                                       groups=4)], (4, 17)),
    "mobilenet-block": lambda: ([cl.Conv2D(24, 1, bias=False), cl.BatchNorm2D(), cl.ReLU6(),
                                 cl.Conv2D(24, 3, stride=2, padding=1, groups=24, bias=False),
                                 cl.BatchNorm2D(), cl.ReLU6(), cl.Conv2D(8, 1, bias=False),
                                 cl.BatchNorm2D()], (8, 9, 9)),
    "conv-transpose": lambda: ([cl.ConvTranspose2D(4, 3, stride=2, padding=1, output_padding=1),
                                cl.ConvTranspose2D(3, 4, stride=2, padding=1, bias=False),
                                cl.ConvTranspose2D(2, (2, 3), stride=(1, 2))], (5, 4, 3)),
    "groupnorm-net": lambda: (group_norm_net().layers, (3, 14, 10)),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_new_layer_family_matches_in_onnxruntime(ort, family, rng):
    layers, shape = FAMILIES[family]()
    check(ort, randomise(cl.Sequential(layers, input_shape=shape), rng), rng)


@pytest.mark.parametrize("size, out", [
    ((12, 8), (3, 2)), ((12, 8), 1), ((7, 6), (3, 2)), ((7, 10), (5, 3)), ((6, 9), (None, 4)),
    ((5, 7), (2, None)), ((4, 3), (9, 5)), ((12, 7), (4, 3)), ((3, 3), (3, 3)), ((1, 1), (2, 3))])
def test_adaptive_avg_pool_matches_for_every_kind_of_window(ort, size, out, rng):
    # blocks (H_out | H, W_out | W) as AveragePool; otherwise 0/1 MatMuls on the axes that pool,
    # one Div: uneven and overlapping windows, None (the input's size), more outputs than inputs
    model = cl.Sequential([cl.AdaptiveAvgPool2D(out)], input_shape=(3, *size))
    (h, w), (h_out, w_out) = size, model.out_shape[1:]
    even = h % h_out == 0 and w % w_out == 0
    expected = ["AveragePool"] if even else ["MatMul"] * ((h_out != h) + (w_out != w)) + ["Div"]
    assert ops(model) == expected
    check(ort, model, rng, scale=3.0)


@pytest.mark.parametrize("opset", [14, 16, 17, 18, 21])
def test_layer_norm_uses_layer_normalization_from_opset_17(ort, opset, rng):
    model = randomise(cl.Sequential([cl.Conv2D(4, 3), cl.LayerNorm(eps=1e-6), cl.Flatten(), cl.Dense(6),
                                     cl.LayerNorm(eps=1e-2)], input_shape=(2, 5, 5)), rng)
    graph_ops = ops(model, opset)
    assert graph_ops.count("LayerNormalization") == (2 if opset >= 17 else 0)
    assert ("Transpose" in graph_ops) == (opset >= 17)  # channels last and back, for the first
    check(ort, model, rng, opset=opset)


def modern() -> cl.Sequential:
    return cl.Sequential([
        cl.Conv2D(8, 3, padding=1), cl.GroupNorm(2), cl.GELU("tanh"), *convnext_block(8),
        cl.AvgPool2D(3, 2, padding=1, count_include_pad=False), cl.LayerNorm(), cl.Hardswish(),
        cl.AdaptiveAvgPool2D((3, 2)), cl.ReLU6(), cl.GlobalMaxPool2D(), cl.LayerNorm(), cl.Dense(3),
    ], input_shape=(3, 9, 7))


@pytest.mark.parametrize("opset", [14, 17, 18, 21])
def test_opsets_14_to_21_give_the_same_scores_with_the_new_layers(ort, opset, rng):
    # ReduceMean's axes move from an attribute to an input at 18 (GroupNorm, LayerNorm below 17);
    # GroupNormalization (18, per-channel only from 21) is never used
    model = randomise(modern(), rng)
    assert "GroupNormalization" not in ops(model, opset)
    check(ort, model, rng, opset=opset)


def test_drop_path_and_layer_scale_follow_dropout_and_keep_their_names(ort, rng):
    model = cl.Sequential([cl.DropPath(0.5)], input_shape=(3, 4, 4))
    assert ops(model) == ["Identity"]  # DropPath has no node
    net = randomise(convnext_tiny_ish(), rng)
    proto = cl.io.to_onnx(net)
    names = {t.name for t in proto.graph.initializer}
    assert {"residual_1.branch.layerscale_1.weight", "layernorm_1.weight", "layernorm_1.bias"} <= names
    weights = [t for t in proto.graph.initializer if "/" not in t.name]
    assert sum(int(np.prod(t.dims)) for t in weights) == net.count_params()
    x = rng.standard_normal((5, 3, 32, 32)).astype(np.float32)  # another batch size
    assert relative(run_onnx(ort, proto, x), net.forward(x)) <= 1e-5


def test_the_export_of_a_new_layer_is_refused_when_an_argument_is_not_read(ort, monkeypatch):
    # the table's rule holds for the new converters too: an unread key must be at its default
    model = cl.Sequential([cl.GroupNorm(2)], input_shape=(4, 3, 3))
    norm = model.layers[0]
    monkeypatch.setattr(norm, "config", lambda: {**cl.GroupNorm.config(norm), "affine": False})
    with pytest.raises(ValueError, match=r"groupnorm_1 \(GroupNorm\): affine=False is not exported"):
        cl.io.to_onnx(model)
