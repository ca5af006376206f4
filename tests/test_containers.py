"""Residual, Concat, SqueezeExcite and LocalResponseNorm: PyTorch parity (forward, dx, every .grad,
BatchNorm's running statistics), names, errors, init hints, multiply-adds and model files.

The PyTorch twin of a cnnlab layer is built by `twin` from the layer itself, reading every weight
by its qualified cnnlab name, so the same function checks a block and a whole zoo model.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl

TOL = 1e-9  # float64 on both sides


def twin(torch, layer: cl.Layer, prefix: str = ""):
    """f(x, params, buffers) computing `layer` with torch ops; params and buffers are torch tensors
    keyed by cnnlab's qualified names (BatchNorm updates its buffer copies as PyTorch does)."""
    F = torch.nn.functional
    kind, at = layer.kind, prefix

    def pair(value):
        return value if isinstance(value, tuple) else (value, value)

    if kind == "Sequential":
        steps = [twin(torch, inner, f"{at}{inner.name}.") for inner in layer.layers]

        def run(x, p, b):
            for step in steps:
                x = step(x, p, b)
            return x

        return run
    if kind == "Residual":
        branch = twin(torch, layer.branch, f"{at}branch.")
        short = None if layer.shortcut is None else twin(torch, layer.shortcut, f"{at}shortcut.")
        return lambda x, p, b: branch(x, p, b) + (x if short is None else short(x, p, b))
    if kind == "Concat":
        fns = [twin(torch, br, f"{at}{br.name}.") for br in layer.branches]
        return lambda x, p, b: torch.cat([f(x, p, b) for f in fns], dim=1)
    if kind == "SqueezeExcite":
        def se(x, p, b):
            s = x.mean(dim=tuple(range(2, x.ndim)))
            a = F.relu(F.linear(s, p[f"{at}fc1.weight"], p[f"{at}fc1.bias"]))
            g = torch.sigmoid(F.linear(a, p[f"{at}fc2.weight"], p[f"{at}fc2.bias"]))
            return x * g.reshape(*g.shape, *([1] * (x.ndim - 2)))
        return se
    if kind == "Conv2D":
        assert not isinstance(layer.padding, str), "twin: give explicit padding"
        return lambda x, p, b: F.conv2d(x, p[f"{at}weight"], p.get(f"{at}bias"),
                                        pair(layer.stride), pair(layer.padding))
    if kind.startswith("BatchNorm"):
        return lambda x, p, b: F.batch_norm(
            x, b[f"{at}running_mean"], b[f"{at}running_var"], p[f"{at}weight"], p[f"{at}bias"],
            training=True, momentum=layer.momentum, eps=layer.eps)
    if kind == "MaxPool2D":
        assert not isinstance(layer.padding, str), "twin: give explicit padding"
        return lambda x, p, b: F.max_pool2d(x, layer.kernel_size, layer.stride, layer.padding)
    if kind == "Dense":
        return lambda x, p, b: F.linear(x, p[f"{at}weight"], p.get(f"{at}bias"))
    if kind == "LocalResponseNorm":
        return lambda x, p, b: F.local_response_norm(x, layer.size, layer.alpha, layer.beta, layer.k)
    simple = {"ReLU": F.relu, "Tanh": torch.tanh, "Sigmoid": torch.sigmoid,
              "GlobalAvgPool2D": lambda x: x.mean(dim=(2, 3)), "Flatten": lambda x: x.flatten(1)}
    return lambda x, p, b: simple[kind](x)


def check_parity(torch, parity, layer: cl.Layer, x: np.ndarray, rng, tol: float = TOL) -> None:
    """y, dx, every .grad and every buffer after one training step, against `twin` + autograd."""
    for p in layer.parameters().values():  # away from the init (zero biases, unit γ)
        p.data += 0.1 * rng.standard_normal(p.shape)
    params, buffers = layer.parameters(), layer.buffers()
    p_t = {k: torch.tensor(p.data, requires_grad=True) for k, p in params.items()}
    b_t = {k: torch.tensor(v) for k, v in buffers.items()}
    x_t = torch.tensor(x, requires_grad=True)
    y_t = twin(torch, layer)(x_t, p_t, b_t)

    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    y_t.backward(torch.tensor(dy))
    parity(y, y_t, tol, "forward")
    parity(dx, x_t.grad, tol, "dx")
    assert params.keys() == p_t.keys()
    for key, p in params.items():
        parity(p.grad, p_t[key].grad, tol, f"d {key}")
    for key, value in layer.buffers().items():
        parity(value, b_t[key], tol, key)


def built(layer: cl.Layer, shape, seed: int = 0) -> cl.Layer:
    return layer.build(shape, np.random.default_rng(seed), np.float64)


def basic_block(filters=4, stride=1, project=False) -> cl.Residual:
    fit = "floor" if stride > 1 else "exact"
    branch = [cl.Conv2D(filters, 3, stride, 1, bias=False, fit=fit), cl.BatchNorm2D(), cl.ReLU(),
              cl.Conv2D(filters, 3, padding=1, bias=False), cl.BatchNorm2D()]
    shortcut = [cl.Conv2D(filters, 1, stride, bias=False, fit=fit), cl.BatchNorm2D()] if project else None
    return cl.Residual(branch, shortcut)


# ------------------------------------------------------------------------------ PyTorch parity
def test_residual_identity_matches_pytorch(torch, parity, rng):
    layer = built(basic_block(4), (4, 6, 6))
    check_parity(torch, parity, layer, rng.standard_normal((3, 4, 6, 6)), rng)


@pytest.mark.parametrize("size", [7, 8])
def test_residual_projection_matches_pytorch(size, torch, parity, rng):
    layer = built(basic_block(6, stride=2, project=True), (3, size, size))
    assert layer.out_shape == (6, (size - 1) // 2 + 1, (size - 1) // 2 + 1)  # floor, as PyTorch
    check_parity(torch, parity, layer, rng.standard_normal((2, 3, size, size)), rng)


def test_concat_matches_pytorch(torch, parity, rng):
    layer = built(cl.Concat([
        [cl.Conv2D(3, 1)],
        [cl.Conv2D(2, 1), cl.ReLU(), cl.Conv2D(4, 3, padding=1)],
        [cl.Conv2D(2, 1), cl.BatchNorm2D(), cl.Tanh(), cl.Conv2D(3, 5, padding=2)],
        [cl.MaxPool2D(3, stride=1, padding=1), cl.Conv2D(2, 1, bias=False)],
    ]), (5, 6, 7))
    assert layer.out_shape == (3 + 4 + 3 + 2, 6, 7)
    check_parity(torch, parity, layer, rng.standard_normal((2, 5, 6, 7)), rng)


@pytest.mark.parametrize("shape, reduction", [((32, 5, 4), 16), ((6, 3, 3), 4), ((5, 7), 2)])
def test_squeeze_excite_matches_pytorch(shape, reduction, torch, parity, rng):
    layer = built(cl.SqueezeExcite(reduction), shape)
    c, r = shape[0], max(1, shape[0] // reduction)
    assert {k: p.shape for k, p in layer.parameters().items()} == {
        "fc1.weight": (r, c), "fc1.bias": (r,), "fc2.weight": (c, r), "fc2.bias": (c,)}
    assert layer.count_params() == 2 * c * r + r + c
    check_parity(torch, parity, layer, rng.standard_normal((3, *shape)), rng)


@pytest.mark.parametrize("size, alpha, beta, k, shape", [
    (5, 1e-4, 0.75, 2.0, (8, 4, 4)),   # AlexNet's
    (4, 0.5, 0.6, 1.0, (6, 3, 5)),     # even size: the window is lopsided, as in PyTorch
    (3, 2.0, 1.5, 0.5, (5, 7)),        # sequences
    (7, 1.0, 0.75, 1.0, (3, 2, 2)),    # window wider than the channels
])
def test_local_response_norm_matches_pytorch(size, alpha, beta, k, shape, torch, parity, rng):
    layer = built(cl.LocalResponseNorm(size, alpha, beta, k), shape)
    x = 3 * rng.standard_normal((2, *shape))  # large enough that the denominator matters
    check_parity(torch, parity, layer, x, rng)


def test_blocks_nest_and_match_pytorch(torch, parity, rng):
    """A Residual whose branch holds a Concat and a SqueezeExcite, inside a Sequential."""
    model = cl.Sequential([
        cl.Conv2D(6, 3, padding=1), cl.LocalResponseNorm(3),
        cl.Residual([cl.Concat([[cl.Conv2D(2, 1)], [cl.Conv2D(4, 3, padding=1)]]),
                     cl.BatchNorm2D(), cl.SqueezeExcite(3)]),
        cl.ReLU(), cl.GlobalAvgPool2D(), cl.Dense(3),
    ], input_shape=(2, 5, 5), dtype=np.float64)
    assert "residual_1.branch.concat_1.branch2.conv2d_1.weight" in model.parameters()
    assert "residual_1.branch.squeezeexcite_1.fc2.bias" in model.parameters()
    check_parity(torch, parity, model, rng.standard_normal((2, 2, 5, 5)), rng)


# ---------------------------------------------------------------------------- names, errors
def test_parameter_names_are_qualified_by_role():
    model = cl.Sequential([cl.Conv2D(4, 3, padding=1), basic_block(4), cl.ReLU(),
                           basic_block(8, stride=2, project=True)], input_shape=(3, 8, 8))
    names = list(model.parameters())
    assert names[:4] == ["conv2d_1.weight", "conv2d_1.bias", "residual_1.branch.conv2d_1.weight",
                         "residual_1.branch.batchnorm2d_1.weight"]
    assert "residual_2.shortcut.conv2d_1.weight" in names
    assert "residual_2.shortcut.batchnorm2d_1.running_var" in model.buffers()
    assert len(names) == len(set(names))
    assert model.count_params() == sum(p.size for p in model.parameters().values())


def test_residual_shape_mismatch_names_the_block_and_the_fix():
    with pytest.raises(cl.ShapeError, match=(
            r"Residual #2 \(residual_1\): the branch gives 4×4×8 but the input \(identity "
            r"shortcut\) is 8×8×4; F\(x\) \+ x needs equal shapes. Give it a projection shortcut, "
            r"e.g. shortcut=\[Conv2D\(8, 1, stride=2, bias=False\), BatchNorm2D\(\)\]")):
        cl.Sequential([cl.Conv2D(4, 3, padding=1),
                       cl.Residual([cl.Conv2D(8, 3, stride=2, padding=1, fit="floor")])],
                      input_shape=(1, 8, 8))
    with pytest.raises(cl.ShapeError, match=r"the branch gives 6×6×4 but the shortcut is 8×8×4"):
        built(cl.Residual([cl.Conv2D(4, 3)], shortcut=[cl.Conv2D(4, 1)]), (4, 8, 8))


def test_errors_inside_a_branch_name_the_block_and_the_branch():
    with pytest.raises(cl.ShapeError, match=r"^Concat, branch2: Conv2D #1 \(conv2d_1\): window 9×9"):
        built(cl.Concat([[cl.Conv2D(2, 1)], [cl.Conv2D(2, 9)]]), (3, 5, 5))
    with pytest.raises(cl.ShapeError, match=r"^Residual, branch: Dense #1 \(dense_1\): expects flat"):
        built(cl.Residual([cl.Dense(3)]), (3, 5, 5))


def test_concat_spatial_mismatch_says_what_must_agree():
    with pytest.raises(cl.ShapeError, match=(
            r"Concat: branch1 gives 5×5×2 but branch2 gives 3×3×2; branches are joined on "
            r"channels, so every other axis must agree. Keep each branch's size")):
        built(cl.Concat([[cl.Conv2D(2, 1)], [cl.Conv2D(2, 3)]]), (3, 5, 5))


def test_construction_errors():
    with pytest.raises(ValueError, match="Concat: needs at least 2 branches"):
        cl.Concat([[cl.Conv2D(2, 1)]])
    with pytest.raises(ValueError, match="Residual: branch is empty"):
        cl.Residual([])
    with pytest.raises(ValueError, match=r"Sequential: item 1 is not a layer"):
        cl.Residual([cl.ReLU])
    with pytest.raises(ValueError, match="SqueezeExcite: reduction must be a positive int"):
        cl.SqueezeExcite(0)
    with pytest.raises(ValueError, match="LocalResponseNorm: k must be > 0"):
        cl.LocalResponseNorm(k=0)
    with pytest.raises(cl.ShapeError, match=r"SqueezeExcite: expects per-sample input \(C, H, W\)"):
        built(cl.SqueezeExcite(), (16,))


def test_branch_ends_take_the_init_of_what_follows_the_block():
    model = cl.Sequential([basic_block(4), cl.ReLU(), basic_block(4), cl.Sigmoid()],
                          input_shape=(4, 5, 5))
    last = [block.branch.layers[3] for block in (model[0], model[2])]
    assert [conv.resolved_init() for conv in last] == ["he", "xavier"]
    assert model[0].branch.layers[0].resolved_init() == "he"  # a ReLU inside the branch
    se = cl.SqueezeExcite(2).build((4, 3, 3))
    assert (se.fc1.resolved_init(), se.fc2.resolved_init()) == ("he", "xavier")


# ------------------------------------------------------------------- multiply-adds, summary
def test_macs_follow_the_stated_convention():
    assert cl.Conv2D(10, 5, padding=2).macs((3, 32, 32)) == 5 * 5 * 3 * 10 * 32 * 32
    assert cl.Conv1D(4, 3).macs((2, 10)) == 4 * 3 * 2 * 8
    assert cl.LocallyConnected2D(3, 2).macs((2, 5, 5)) == 3 * 2 * 2 * 2 * 4 * 4
    assert cl.Dense(10).macs((784,)) == 7840
    assert cl.BatchNorm2D().macs((3, 8, 8)) == cl.MaxPool2D(2).macs((3, 8, 8)) == 0
    block = basic_block(8, stride=2, project=True)
    convs = 3 * 3 * 4 * 8 * 16 + 3 * 3 * 8 * 8 * 16 + 4 * 8 * 16
    assert block.macs((4, 8, 8)) == convs  # the unbuilt block: macs is pure
    assert cl.SqueezeExcite(4).macs((16, 5, 5)) == 2 * 16 * 4
    concat = cl.Concat([[cl.Conv2D(2, 1)], [cl.MaxPool2D(3, 1, padding=1), cl.Conv2D(3, 1)]])
    assert concat.macs((4, 6, 6)) == (2 + 3) * 4 * 36


def test_summary_has_macs_per_layer_and_in_total():
    model = cl.Sequential([cl.Conv2D(10, 5, padding=2), cl.MaxPool2D(2), basic_block(10),
                           cl.Flatten(), cl.Dense(10)], input_shape=(3, 32, 32))
    text = model.summary()
    rows = text.splitlines()
    assert rows[0].split()[:5] == ["Layer", "(type)", "Output", "Params", "MACs"]
    assert rows[2].split()[:5] == ["conv2d_1", "(Conv2D)", "32×32×10", "760", "768,000"]
    block = 2 * 3 * 3 * 10 * 10 * 16 * 16
    assert f"{block:,}" in rows[4] and "y = F(x) + x;  F: conv3×3·10 → BN → ReLU → conv3×3·10 → BN" in rows[4]
    total = 768_000 + block + 2560 * 10
    assert f"Multiply-adds: {total / 1e6:.3g} M per sample ({total:,};" in text
    # inside the block, 5 layer outputs and the sum count as activations: 6 arrays of 16·16·10,
    # with the pooled volume and Flatten's 8 of them
    assert f"Activations: {32 * 32 * 10 + 16 * 16 * 10 * 8 + 10:,} values" in text


# ----------------------------------------------------------------------------------- files
def test_save_load_round_trip_with_every_block(tmp_path, rng):
    model = cl.Sequential([
        cl.Conv2D(8, 3, padding=1, bias=False), cl.BatchNorm2D(), cl.ReLU(), cl.LocalResponseNorm(3, k=1.5),
        basic_block(8), cl.ReLU(), basic_block(12, stride=2, project=True), cl.ReLU(),
        cl.Concat([[cl.Conv2D(4, 1)], [cl.MaxPool2D(3, 1, padding=1), cl.Conv2D(4, 1)]]),
        cl.SqueezeExcite(4), cl.GlobalAvgPool2D(), cl.Dense(3),
    ], input_shape=(2, 9, 9), seed=5)
    x = rng.standard_normal((4, 2, 9, 9)).astype(np.float32)
    model.forward(x, training=True)  # running statistics off their initial values
    for p in model.parameters().values():
        p.data += 0.01 * rng.standard_normal(p.shape).astype(np.float32)
    path = tmp_path / "blocks.safetensors"
    cl.save(model, path)
    loaded = cl.load(path)
    assert cl.io.architecture(loaded) == cl.io.architecture(model)
    assert loaded.summary() == model.summary()
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    for key, value in model.buffers().items():
        np.testing.assert_array_equal(loaded.buffers()[key], value, err_msg=key)


@pytest.mark.parametrize("spec, message", [
    ({"type": "Residual", "branch_layers": []}, r"branch_layers: expected a non-empty list"),
    ({"type": "Residual", "branch_layers": [{"type": "ReLU"}], "scale": 2}, r"no argument scale"),
    ({"type": "Residual", "branch_layers": [{"type": "Lambda"}]}, r"unknown layer type 'Lambda'"),
    ({"type": "Concat", "branches": [[{"type": "ReLU"}]]}, r"a list of 2 or more lists"),
    ({"type": "Concat", "branches": [[{"type": "ReLU"}], {"type": "ReLU"}]},
     r"branches\[1\]: expected a non-empty list"),
])
def test_architecture_with_bad_blocks_is_refused(spec, message):
    arch = {"type": "Sequential", "input_shape": [2, 4, 4], "layers": [spec]}
    with pytest.raises(cl.ModelFileError, match=message):
        cl.io.from_architecture(arch)
