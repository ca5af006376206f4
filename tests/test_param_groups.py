"""Optimizer parameter groups (cnnlab.param_groups): a learning-rate scale and a weight decay per
group, `no_decay` for biases and BatchNorm's γ and β, checked against a hand-computed step, and
against torch.optim's param groups; the groups saved and restored by state_dict, so a resumed
run continues bit for bit; and the wording of every error.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import optim
from cnnlab.param_groups import exempt

LOSS = cl.SoftmaxCrossEntropy()
_DRAW = np.random.default_rng(5)
BATCHES = [(_DRAW.standard_normal((8, 2, 6, 6)), _DRAW.integers(0, 4, 8)) for _ in range(3)]


def model64(seed: int = 0) -> cl.Sequential:
    """conv → BatchNorm → ReLU → flatten → Dense: weights, biases and 1-D γ, β; in float64, with
    non-zero biases so that weight decay would move them."""
    model = cl.Sequential([cl.Conv2D(3, 3), cl.BatchNorm2D(), cl.ReLU(), cl.Flatten(), cl.Dense(4)],
                          input_shape=(2, 6, 6), seed=seed, dtype=np.float64)
    for name, p in model.parameters().items():
        if name.endswith("bias"):
            p.data[...] = np.random.default_rng(1).standard_normal(p.shape) * 0.1
    return model


def backward(model: cl.Sequential, step: int = 0) -> None:
    x, y = BATCHES[step % len(BATCHES)]
    LOSS.forward(model.forward(x, training=True), y)
    model.backward(LOSS.backward())


def one_step(opt_type, **kwargs) -> tuple[dict, dict, dict]:
    """(weights before, gradients, weights after) of one step of opt_type(model64(), **kwargs)."""
    model = model64()
    opt = opt_type(model, **kwargs)
    backward(model)
    params = model.parameters()
    before = {n: p.data.copy() for n, p in params.items()}
    grads = {n: p.grad.copy() for n, p in params.items()}
    opt.step()
    return before, grads, {n: p.data.copy() for n, p in params.items()}


BODY = ["conv2d_1", "batchnorm2d_1"]
EXEMPT = {"conv2d_1.bias", "batchnorm2d_1.weight", "batchnorm2d_1.bias", "dense_1.bias"}


# ---------------------------------------------------------------- the update, numerically
def test_no_decay_exempts_biases_and_batchnorm_from_weight_decay():
    lr, wd = 0.1, 0.05
    before, g, after = one_step(optim.SGD, lr=lr, weight_decay=wd, no_decay=True)
    assert {n for n in before if exempt(n, cl.Parameter(before[n]))} == EXEMPT
    for name in before:
        decay = 0.0 if name in EXEMPT else wd
        expected = before[name] - lr * (g[name] + decay * before[name])  # SGD, no momentum
        np.testing.assert_allclose(after[name], expected, rtol=0, atol=1e-15, err_msg=name)
    # the decay is what moves the weights away from the plain step, and only theirs
    _, _, plain = one_step(optim.SGD, lr=lr)
    assert {n for n in before if not np.array_equal(after[n], plain[n])} == {
        "conv2d_1.weight", "dense_1.weight"}


def test_no_decay_with_decoupled_adamw():
    lr, wd = 0.01, 0.1
    _, _, exempted = one_step(optim.AdamW, lr=lr, weight_decay=wd, no_decay=True)
    _, _, undecayed = one_step(optim.AdamW, lr=lr, weight_decay=0.0)
    _, _, decayed = one_step(optim.AdamW, lr=lr, weight_decay=wd)
    for name in exempted:
        reference = undecayed if name in EXEMPT else decayed
        assert np.array_equal(exempted[name], reference[name]), name


@pytest.mark.parametrize("scale", [0.0, 0.1, 0.5])
def test_a_body_group_moves_by_its_scale_times_the_full_step(scale):
    lr = 0.2
    before, _, full = one_step(optim.SGD, lr=lr)
    _, _, scaled = one_step(optim.SGD, lr=lr,
                            groups=[{"name": "body", "params": BODY, "lr_scale": scale}])
    for name in before:
        if name.startswith("dense_1"):  # the head: the full step, bit for bit
            assert np.array_equal(scaled[name], full[name]), name
        elif scale == 0:  # the body does not move at all
            assert np.array_equal(scaled[name], before[name]), name
        else:
            np.testing.assert_allclose(scaled[name] - before[name], scale * (full[name] - before[name]),
                                       rtol=1e-12, atol=1e-16, err_msg=name)


def test_a_group_weight_decay_overrides_the_optimizer_and_no_decay_overrides_the_group():
    lr = 0.1
    before, g, after = one_step(optim.SGD, lr=lr, weight_decay=0.01, no_decay=True,
                                groups=[{"params": ["dense_1"], "weight_decay": 0.3}])
    for name, decay in {"dense_1.weight": 0.3, "dense_1.bias": 0.0, "conv2d_1.weight": 0.01,
                        "conv2d_1.bias": 0.0}.items():
        np.testing.assert_allclose(after[name], before[name] - lr * (g[name] + decay * before[name]),
                                   rtol=0, atol=1e-15, err_msg=name)


def test_groups_follow_the_schedule_through_lr():
    model = model64()
    opt = optim.SGD(model, lr=1.0, groups=[{"params": ["dense_1.weight"], "lr_scale": 0.25}])
    backward(model)
    p = model.parameters()["dense_1.weight"]
    before, g = p.data.copy(), p.grad.copy()
    opt.lr = 0.4  # what cl.fit does before each step
    opt.step()
    np.testing.assert_allclose(p.data, before - 0.1 * g, rtol=0, atol=1e-15)
    assert opt.settings("dense_1.weight", p) == (0.25, 0.0)


def test_groups_match_torch_param_groups(torch, parity):
    """SGD with Nesterov momentum and AdamW, 8 steps, against torch.optim with the same groups:
    the body at lr/10, biases and BatchNorm without weight decay."""
    nn = torch.nn
    for ours, theirs, kwargs in ((optim.SGD, torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
                                 (optim.AdamW, torch.optim.AdamW, {})):
        model = model64()
        net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                            nn.Linear(48, 4)).double()
        named = dict(zip(model.parameters(), net.parameters(), strict=True))
        with torch.no_grad():
            for name, p in model.parameters().items():
                named[name].copy_(torch.from_numpy(p.data))
        opt = ours(model, lr=0.05, weight_decay=0.02, no_decay=True, **kwargs,
                   groups=[{"name": "body", "params": BODY, "lr_scale": 0.1}])
        groups = [{"params": [named[n] for n in named if (n in EXEMPT) == exempt
                              and n.startswith("dense") != body],
                   "lr": 0.05 * (0.1 if body else 1), "weight_decay": 0.0 if exempt else 0.02}
                  for body in (True, False) for exempt in (True, False)]
        reference = theirs(groups, lr=0.05, **kwargs)
        for step in range(8):
            backward(model, step)
            opt.step()
            x, y = BATCHES[step % len(BATCHES)]
            reference.zero_grad()
            nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            reference.step()
        for name, p in model.parameters().items():
            parity(p.data, named[name], 1e-8, f"{ours.__name__} {name}")


# ------------------------------------------------------------------------- checkpoints
def test_state_dict_keeps_the_groups_and_resumes_bit_for_bit():
    def make():
        model = model64()
        model.freeze(up_to=1)  # conv2d_1 frozen: the state records it
        return optim.SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-2, no_decay=True,
                         groups=[{"name": "bn", "params": ["batchnorm2d_1"], "lr_scale": 0.3}])

    whole, first = make(), make()
    for step in range(6):
        backward(whole.model, step)
        whole.step()
    for step in range(3):
        backward(first.model, step)
        first.step()
    arrays, meta = first.state_dict()
    meta = json.loads(json.dumps(meta))
    assert meta["groups"] == [{"name": "bn", "params": ["batchnorm2d_1"], "lr_scale": 0.3,
                               "weight_decay": None}]
    assert meta["no_decay"] is True and meta["frozen"] == ["conv2d_1.weight", "conv2d_1.bias"]
    model = model64()
    model.freeze(up_to=1)
    for name, p in model.parameters().items():
        p.data[...] = first.model.parameters()[name].data
    resumed = optim.SGD(model)  # no groups, no no_decay: the state brings them back
    resumed.load_state_dict(arrays, meta)
    assert resumed.groups == whole.groups and resumed.no_decay and repr(resumed) == repr(whole)
    for step in range(3, 6):
        backward(resumed.model, step)
        resumed.step()
    for name, p in whole.model.parameters().items():
        assert np.array_equal(resumed.model.parameters()[name].data, p.data), name
    assert resumed.state_dict()[1] == whole.state_dict()[1]


def test_loading_a_state_with_other_frozen_layers_is_refused():
    model = model64()
    model.freeze(up_to=1)
    opt = optim.SGD(model, lr=0.1)
    backward(model)
    opt.step()
    arrays, meta = opt.state_dict()
    fresh = optim.SGD(model64())
    with pytest.raises(ValueError, match=re.escape(
            "SGD.load_state_dict: the state was saved with conv2d_1.weight, conv2d_1.bias frozen; "
            "this model has nothing frozen. Freeze the same layers (model.freeze) before loading it")):
        fresh.load_state_dict(arrays, meta)
    older = {k: v for k, v in meta.items() if k not in ("groups", "no_decay", "frozen")}
    fresh.load_state_dict(arrays, older)  # a state from before 0.3 has none of them
    assert fresh.groups == [] and not fresh.no_decay


def test_repr_names_the_groups():
    opt = optim.Adam(model64(), lr=1e-3, no_decay=True,
                     groups=[{"name": "body", "params": BODY, "lr_scale": 0.1},
                             {"params": ["dense_1.bias"], "weight_decay": 0.5}])
    assert repr(opt).endswith("groups=[body: 4 parameters, lr×0.1; group2: 1 parameter, "
                              "weight_decay=0.5], no_decay=True)")


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("groups, message", [
    ({"params": ["conv2d_1"]}, "SGD: groups must be a list of dicts such as"),
    (["conv2d_1"], "SGD: group 1 must be a dict. Received: 'conv2d_1'"),
    ([{"params": ["conv2d_1"], "lr": 0.1}], "SGD: group 1 has unknown keys ['lr']; a group has "
                                            "name, params, lr_scale, weight_decay"),
    ([{"params": []}], "SGD: group 'group1': params must be a non-empty list of parameter or layer "
                       "names"),
    ([{"params": ["relu_1"]}], "SGD: group 'group1': 'relu_1' is neither a parameter nor a layer "
                               "with parameters; the layers with parameters are conv2d_1, "
                               "batchnorm2d_1, dense_1"),
    ([{"params": ["conv2d_1"], "lr_scale": -1}], "SGD: group 'group1': lr_scale must be a finite "
                                                 "number ≥ 0. Received: lr_scale=-1"),
    ([{"params": ["conv2d_1"]}, {"params": ["conv2d_1.bias"]}],
     "SGD: group 'group2': conv2d_1.bias is already in group 'group1'; a parameter may be in one "
     "group only"),
    ([{"name": "a", "params": ["conv2d_1"]}, {"name": "a", "params": ["dense_1"]}],
     "SGD: two groups have the same name: ['a', 'a']"),
])
def test_bad_groups_are_refused_naming_the_group(groups, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        optim.SGD(model64(), groups=groups)
