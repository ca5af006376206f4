"""Optimizers, gradient clipping and learning-rate schedules.

Every optimizer is checked against torch.optim: the same small CNN, the same initial weights and
batches, 20 steps of forward, SoftmaxCrossEntropy, backward and step (the lr halved after step 10
in both, through the plain `lr` attribute), then every parameter compared. Also: clip_grad_norm
against torch.nn.utils.clip_grad_norm_, frozen parameters, dtypes, a state_dict round trip that
must continue bit for bit, schedules against hand-computed values and torch's schedulers, and
the wording of every argument error.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import optim

TOL = 1e-5
_DRAW = np.random.default_rng(7)
#: four batches of 16 8×8 images, cycled through the 20 steps
BATCHES = [(_DRAW.standard_normal((16, 1, 8, 8)).astype(np.float32), _DRAW.integers(0, 10, 16))
           for _ in range(4)]


def make_model(last: int = 10) -> cl.Sequential:
    model = cl.Sequential(
        [cl.Conv2D(4, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(), cl.Dense(last)],
        input_shape=(1, 8, 8), seed=0,
    )
    # biases start at zero; give them values so weight decay acts on them too
    for name, p in model.parameters().items():
        if name.endswith("bias"):
            p.data[...] = np.random.default_rng(1).standard_normal(p.shape) * 0.1
    return model


def torch_copy(torch, model: cl.Sequential):
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(64, 10))
    with torch.no_grad():
        for p_t, p in zip(net.parameters(), model.parameters().values(), strict=True):
            p_t.copy_(torch.from_numpy(p.data))
    return net


def train_step(model: cl.Sequential, step: int) -> None:
    x, y = BATCHES[step % len(BATCHES)]
    loss = cl.SoftmaxCrossEntropy()
    loss.forward(model.forward(x, training=True), y)
    model.backward(loss.backward())


OPTIMIZERS = {
    "sgd": ({"lr": 0.1}, "SGD", "SGD"),
    "sgd-momentum-dampening": ({"lr": 0.05, "momentum": 0.9, "dampening": 0.3}, "SGD", "SGD"),
    "sgd-nesterov-decay": ({"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
                           "SGD", "SGD"),
    "adam": ({"lr": 1e-2}, "Adam", "Adam"),
    "adam-amsgrad-decay": ({"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.1, "amsgrad": True},
                           "Adam", "Adam"),
    "adamw": ({"lr": 1e-2, "weight_decay": 0.1}, "AdamW", "AdamW"),
    "rmsprop": ({"lr": 1e-3}, "RMSProp", "RMSprop"),
    "rmsprop-centered-momentum": ({"lr": 1e-3, "alpha": 0.9, "momentum": 0.5, "centered": True,
                                   "weight_decay": 1e-2}, "RMSProp", "RMSprop"),
    "adagrad-decay": ({"lr": 0.05, "lr_decay": 0.1, "weight_decay": 1e-2,
                       "initial_accumulator_value": 0.1}, "AdaGrad", "Adagrad"),
}


@pytest.mark.parametrize("case", list(OPTIMIZERS))
def test_optimizer_matches_torch_after_20_steps(case, torch, parity):
    kwargs, ours, theirs = OPTIMIZERS[case]
    model = make_model()
    net = torch_copy(torch, model)
    opt = getattr(optim, ours)(model, **kwargs)
    opt_t = getattr(torch.optim, theirs)(net.parameters(), **kwargs, foreach=False)
    start = {name: p.data.copy() for name, p in model.parameters().items()}
    for step in range(20):
        if step == 10:
            opt.lr /= 2
            opt_t.param_groups[0]["lr"] /= 2
        train_step(model, step)
        opt.step()
        x, y = BATCHES[step % len(BATCHES)]
        opt_t.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt_t.step()
    for (name, p), p_t in zip(model.parameters().items(), net.parameters(), strict=True):
        assert p.data.dtype == np.float32
        assert not np.array_equal(p.data, start[name]), f"{name} never moved"
        parity(p.data, p_t, TOL, name)
    assert opt.iterations == 20 and set(opt.param_steps.values()) == {20}


# ------------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("max_norm", [0.05, 1e3])
def test_clip_grad_norm_matches_torch(max_norm, torch, parity):
    model = make_model()
    train_step(model, 0)
    params = list(model.parameters().values())
    tensors = []
    for p in params:
        tensors.append(torch.tensor(p.data, requires_grad=True))
        tensors[-1].grad = torch.tensor(p.grad)
    before = [p.grad.copy() for p in params]
    norm = optim.clip_grad_norm(model, max_norm)
    norm_t = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    assert norm == pytest.approx(float(norm_t), rel=1e-6)
    assert norm == pytest.approx(math.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in before)))
    for p, p_t, g in zip(params, tensors, before, strict=True):
        assert p.grad.dtype == np.float32
        parity(p.grad, p_t.grad, TOL, "clipped grad")
        if max_norm > norm:
            assert np.array_equal(p.grad, g)  # below the limit the grads are left alone
    if max_norm < norm:
        clipped = math.sqrt(sum(np.sum(p.grad.astype(np.float64) ** 2) for p in params))
        assert clipped == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_norm_skips_frozen_and_reports_nonfinite():
    model = make_model()
    train_step(model, 0)
    params = model.parameters()
    params["conv2d_1.weight"].trainable = False
    frozen = params["conv2d_1.weight"].grad.copy()
    expected = math.sqrt(sum(np.sum(p.grad.astype(np.float64) ** 2)
                             for p in params.values() if p.trainable))
    assert optim.clip_grad_norm(model, 1e-3) == pytest.approx(expected)
    assert np.array_equal(params["conv2d_1.weight"].grad, frozen)
    params["dense_1.bias"].grad[0] = np.inf
    kept = params["dense_1.weight"].grad.copy()
    assert optim.clip_grad_norm(model, 1e-3) == math.inf
    assert np.array_equal(params["dense_1.weight"].grad, kept)
    with pytest.raises(RuntimeError, match="clip_grad_norm: the gradient norm is inf; training has"):
        optim.clip_grad_norm(model, 1e-3, error_if_nonfinite=True)


# ------------------------------------------------------------------ what step() touches
def test_step_skips_frozen_parameters_and_missing_grads():
    model = make_model()
    params = model.parameters()
    params["conv2d_1.weight"].trainable = False
    train_step(model, 0)
    params["dense_1.bias"].grad = None
    before = {name: p.data.copy() for name, p in params.items()}
    arrays = {name: p.data for name, p in params.items()}
    opt = optim.Adam(model, lr=0.1)
    opt.step()
    assert np.array_equal(params["conv2d_1.weight"].data, before["conv2d_1.weight"])
    assert np.array_equal(params["dense_1.bias"].data, before["dense_1.bias"])
    assert not np.array_equal(params["dense_1.weight"].data, before["dense_1.weight"])
    assert not np.array_equal(params["conv2d_1.bias"].data, before["conv2d_1.bias"])
    assert all(params[name].data is a for name, a in arrays.items())  # updated in place
    assert sorted(opt.state) == ["conv2d_1.bias", "dense_1.weight"]


@pytest.mark.parametrize("case", list(OPTIMIZERS))
def test_float32_stays_float32_even_with_float64_grads(case):
    kwargs, ours, _ = OPTIMIZERS[case]
    model = make_model()
    opt = getattr(optim, ours)(model, **kwargs)
    for step in range(2):
        train_step(model, step)
        for p in model.parameters().values():
            p.grad = p.grad.astype(np.float64)
        opt.step()
    arrays, _ = opt.state_dict()
    assert all(p.data.dtype == np.float32 for p in model.parameters().values())
    assert all(a.dtype == np.float32 for a in arrays.values())


def test_step_without_gradients_raises():
    opt = optim.SGD(make_model())
    with pytest.raises(RuntimeError, match=re.escape("SGD.step(): no trainable parameter has a "
                                                     "gradient. Run a training forward and call "
                                                     "model.backward first")):
        opt.step()


# ---------------------------------------------------------------------------- checkpoints
FULL_STATE = {  # every state array in use
    "sgd": optim.SGD(make_model(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": optim.Adam(make_model(), lr=1e-2, amsgrad=True, weight_decay=1e-2),
    "adamw": optim.AdamW(make_model(), lr=1e-2, amsgrad=True),
    "rmsprop": optim.RMSProp(make_model(), lr=1e-3, momentum=0.5, centered=True),
    "adagrad": optim.AdaGrad(make_model(), lr=0.05, lr_decay=0.1, initial_accumulator_value=0.1),
}


def _fresh(opt: optim.Optimizer) -> optim.Optimizer:
    """The same optimizer and hyperparameters on a new copy of the untrained model."""
    return type(opt)(make_model(), lr=opt.lr, **opt.hyperparameters())


@pytest.mark.parametrize("case", list(FULL_STATE))
def test_state_dict_round_trip_continues_bit_identically(case):
    whole = _fresh(FULL_STATE[case])
    for step in range(10):
        train_step(whole.model, step)
        whole.step()
    first = _fresh(FULL_STATE[case])
    for step in range(5):
        train_step(first.model, step)
        first.step()
    arrays, meta = first.state_dict()
    meta = json.loads(json.dumps(meta))
    assert meta["type"] == whole.kind and meta["step"] == 5
    resumed = type(whole)(make_model())  # default hyperparameters: load must restore them
    for name, p in resumed.model.parameters().items():
        p.data[...] = first.model.parameters()[name].data
    resumed.load_state_dict(arrays, meta)
    assert resumed.hyperparameters() == whole.hyperparameters() and resumed.lr == whole.lr
    for step in range(5, 10):
        train_step(resumed.model, step)
        resumed.step()
    for name, p in whole.model.parameters().items():
        assert np.array_equal(resumed.model.parameters()[name].data, p.data), name
    final, final_meta = resumed.state_dict()
    expected, expected_meta = whole.state_dict()
    assert final.keys() == expected.keys() and final_meta == expected_meta
    assert all(np.array_equal(final[key], expected[key]) for key in expected)


def _trained(opt_type=optim.Adam, **kwargs) -> optim.Optimizer:
    opt = opt_type(make_model(), **kwargs)
    train_step(opt.model, 0)
    opt.step()
    return opt


def test_load_state_dict_rejects_another_optimizer():
    arrays, meta = _trained().state_dict()
    with pytest.raises(ValueError, match=re.escape("SGD.load_state_dict: the state was saved by "
                                                   "'Adam', not SGD. Create a Adam to load it.")):
        optim.SGD(make_model()).load_state_dict(arrays, meta)


def test_load_state_dict_rejects_another_model():
    arrays, meta = _trained().state_dict()
    other = optim.Adam(make_model(last=5))
    with pytest.raises(ValueError, match=re.escape(
            "Adam.load_state_dict: the state is for a different model; dense_1.weight saved "
            "(10, 64), model (5, 64); dense_1.bias saved (10,), model (5,).")):
        other.load_state_dict(arrays, meta)


def test_load_state_dict_names_extra_parameters_and_missing_metadata():
    arrays, meta = _trained().state_dict()
    bigger = cl.Sequential([cl.Conv2D(4, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2), cl.Flatten(),
                            cl.Dense(10), cl.Dense(10)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=re.escape("the state is for a different model; dense_2.weight "
                                                   "saved nothing, model (10, 10); dense_2.bias saved "
                                                   "nothing, model (10,).")):
        optim.Adam(bigger).load_state_dict(arrays, meta)
    del meta["param_steps"]
    with pytest.raises(ValueError, match=re.escape("Adam.load_state_dict: the metadata has no "
                                                   "['param_steps']; pass what state_dict() returned.")):
        optim.Adam(make_model()).load_state_dict(arrays, meta)


def test_load_state_dict_rejects_missing_or_misshapen_arrays():
    arrays, meta = _trained(amsgrad=True).state_dict()
    opt = optim.Adam(make_model())
    partial = {k: v for k, v in arrays.items() if k != "dense_1.bias.max_exp_avg_sq"}
    with pytest.raises(ValueError, match=re.escape("no saved array dense_1.bias.max_exp_avg_sq")):
        opt.load_state_dict(partial, meta)
    wrong = {**arrays, "dense_1.bias.exp_avg": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=re.escape("array 'dense_1.bias.exp_avg' has shape (3,), "
                                                   "parameter dense_1.bias has (10,)")):
        opt.load_state_dict(wrong, meta)
    with pytest.raises(ValueError, match=re.escape("unexpected array 'dense_1.bias.momentum'")):
        opt.load_state_dict({**arrays, "dense_1.bias.momentum": arrays["dense_1.bias.exp_avg"]}, meta)
    with pytest.raises(ValueError, match=re.escape("Adam: eps must be a finite number ≥ 0")):
        opt.load_state_dict(arrays, {**meta, "hyperparameters": {**meta["hyperparameters"], "eps": -1}})
    assert opt.state == {} and opt.iterations == 0  # failed loads leave the optimizer untouched


# ----------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("schedule, values", [
    (optim.ConstantLR(0.3), {0: 0.3, 7.5: 0.3}),
    (optim.StepLR(0.1, 3, 0.5), {0: 0.1, 2.9: 0.1, 3.0: 0.05, 6.5: 0.025}),
    (optim.ExponentialLR(0.1, 0.5), {0: 0.1, 0.5: 0.1 / math.sqrt(2), 1: 0.05, 3: 0.0125}),
    (optim.CosineLR(1.0, 10, warmup=2, min_lr=0.1),
     {0: 0.0, 1: 0.5, 2: 1.0, 6: 0.55, 10: 0.1, 12: 0.1}),
    (optim.CosineLR(0.2, 4), {0: 0.2, 2: 0.1, 4: 0.0}),
    (optim.OneCycleLR(0.1, 10), {0: 0.004, 1.5: 0.052, 3: 0.1, 6.5: (0.1 + 4e-7) / 2,
                                 10: 4e-7, 11: 4e-7}),
])
def test_schedule_hand_computed_values(schedule, values):
    for epoch, lr in values.items():
        assert schedule(epoch) == pytest.approx(lr, rel=1e-12, abs=1e-15), f"epoch {epoch}"
    again = optim.Schedule.from_config(json.loads(json.dumps(schedule.config())))
    assert type(again) is type(schedule) and again.config() == schedule.config()
    assert all(again(e) == schedule(e) for e in values)
    assert schedule.describe().startswith("lr")


def test_schedule_describe_shows_the_numbers():
    assert optim.StepLR(0.1, 30).describe() == "lr = 0.1·0.1^⌊epoch/30⌋"
    assert optim.CosineLR(0.1, 50, warmup=5).describe() == (
        "lr = 0.1·epoch/5 until epoch 5, then lr = 0 + 0.1·(1 + cos(π·(epoch − 5)/45))/2 until epoch 50")
    assert optim.OneCycleLR(0.1, 10).describe() == (
        "lr rises from 0.004 to 0.1 along half a cosine until epoch 3, then falls to 4e-07 at epoch 10")


@pytest.mark.parametrize("epochs, steps_per_epoch, pct_start", [(5, 7, 0.3), (3, 10, 0.25), (2, 50, 0.5)])
def test_one_cycle_matches_torch_at_every_step(epochs, steps_per_epoch, pct_start, torch):
    ours = optim.OneCycleLR(0.1, epochs, pct_start, div_factor=20.0, final_div_factor=100.0,
                            steps_per_epoch=steps_per_epoch)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    theirs = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.1, total_steps=epochs * steps_per_epoch, pct_start=pct_start,
        div_factor=20.0, final_div_factor=100.0, cycle_momentum=False)
    continuous = optim.OneCycleLR(0.1, epochs, pct_start, div_factor=20.0, final_div_factor=100.0)
    for step in range(epochs * steps_per_epoch):
        lr_t = opt.param_groups[0]["lr"]
        assert ours(step / steps_per_epoch) == pytest.approx(lr_t, rel=1e-12, abs=1e-15), step
        # without steps_per_epoch the phases end one step later: within one step's change
        assert abs(continuous(step / steps_per_epoch) - lr_t) <= 0.1 * math.pi / (pct_start * epochs
                                                                                 * steps_per_epoch)
        opt.step()
        theirs.step()


def test_step_exponential_and_cosine_match_torch_at_whole_epochs(torch):
    sched = torch.optim.lr_scheduler
    cases = [(optim.StepLR(0.1, 3, 0.5), lambda o: sched.StepLR(o, 3, 0.5)),
             (optim.ExponentialLR(0.1, 0.8), lambda o: sched.ExponentialLR(o, 0.8)),
             (optim.CosineLR(0.1, 12, min_lr=0.01), lambda o: sched.CosineAnnealingLR(o, 12, 0.01))]
    for ours, make in cases:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        theirs = make(opt)
        for epoch in range(13):
            # CosineAnnealingLR updates recursively, so rounding accumulates a little
            assert ours(epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), (ours, epoch)
            opt.step()
            theirs.step()


# ------------------------------------------------------------------------ argument errors
BAD_ARGUMENTS = [
    (lambda m: optim.SGD(m, lr=-0.1), "SGD: lr must be a finite number ≥ 0. Received: lr=-0.1"),
    (lambda m: optim.SGD(m, nesterov=True),
     "SGD: nesterov requires momentum > 0 and dampening = 0. Received: momentum=0.0, dampening=0.0"),
    (lambda m: optim.SGD(m, momentum=0.9, dampening=0.1, nesterov=True),
     "SGD: nesterov requires momentum > 0 and dampening = 0. Received: momentum=0.9, dampening=0.1"),
    (lambda m: optim.SGD(m, dampening=2), "SGD: dampening must be a finite number in [0, 1]. "
                                          "Received: dampening=2"),
    (lambda m: optim.SGD("model"), "SGD: expected a cnnlab model (a Layer such as Sequential). "
                                   "Received: str"),
    (lambda m: optim.Adam(m, betas=(0.9, 1.0)),
     "Adam: betas[1] must be a finite number in [0, 1). Received: betas[1]=1.0"),
    (lambda m: optim.Adam(m, betas=0.9), "Adam: betas must be a pair (β₁, β₂). Received: betas=0.9"),
    (lambda m: optim.Adam(m, lr=True), "Adam: lr must be a finite number ≥ 0. Received: lr=True"),
    (lambda m: optim.AdamW(m, weight_decay=-1),
     "AdamW: weight_decay must be a finite number ≥ 0. Received: weight_decay=-1"),
    (lambda m: optim.RMSProp(m, alpha=1.5), "RMSProp: alpha must be a finite number in [0, 1]. "
                                            "Received: alpha=1.5"),
    (lambda m: optim.RMSProp(m, momentum=-0.5), "RMSProp: momentum must be a finite number ≥ 0"),
    (lambda m: optim.AdaGrad(m, lr_decay=-0.1), "AdaGrad: lr_decay must be a finite number ≥ 0. "
                                                "Received: lr_decay=-0.1"),
    (lambda m: optim.AdaGrad(m, eps=math.nan), "AdaGrad: eps must be a finite number ≥ 0. "
                                               "Received: eps=nan"),
    (lambda m: optim.clip_grad_norm(m, 0), "clip_grad_norm: max_norm must be a finite number > 0. "
                                           "Received: max_norm=0"),
    (lambda m: optim.StepLR(0.1, 0), "StepLR: step_size must be a finite number > 0. "
                                     "Received: step_size=0"),
    (lambda m: optim.StepLR(0.1, 3)(-1), "StepLR: epoch must be a finite number ≥ 0. Received: epoch=-1"),
    (lambda m: optim.ExponentialLR(0.1, 0.0), "ExponentialLR: gamma must be a finite number > 0"),
    (lambda m: optim.CosineLR(0.1, 10, warmup=10),
     "CosineLR: warmup must be a finite number in [0, 10). Received: warmup=10"),
    (lambda m: optim.CosineLR(0.1, 10, min_lr=0.2),
     "CosineLR: min_lr must be a finite number in [0, 0.1]. Received: min_lr=0.2"),
    (lambda m: optim.OneCycleLR(0.1, 10, pct_start=1.0),
     "OneCycleLR: pct_start must be a finite number in (0, 1). Received: pct_start=1.0"),
    (lambda m: optim.OneCycleLR(0.1, 1, steps_per_epoch=3),
     "OneCycleLR: the warm-up phase is shorter than one step: pct_start·epochs·steps_per_epoch = "
     "0.3·1·3 must be > 1."),
    (lambda m: optim.OneCycleLR(0.1, 10, steps_per_epoch=2.5),
     "OneCycleLR: steps_per_epoch must be a positive int or None. Received: steps_per_epoch=2.5"),
    (lambda m: optim.Schedule.from_config({"type": "Cyclic"}),
     "Schedule.from_config: unknown type 'Cyclic'. Expected one of ['ConstantLR', 'CosineLR', "),
]


@pytest.mark.parametrize("make, message", BAD_ARGUMENTS, ids=[m[:40] for _, m in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make(make_model())


def test_lr_set_between_steps_is_validated():
    opt = optim.SGD(make_model())
    train_step(opt.model, 0)
    opt.lr = -1.0
    with pytest.raises(ValueError, match=re.escape("SGD: lr must be a finite number ≥ 0. Received: lr=-1.0")):
        opt.step()


class _Params(cl.Layer):
    """A bare layer holding parameters of given shapes, for driving an optimizer by hand."""

    def __init__(self, shapes, dtype) -> None:
        super().__init__()
        rng = np.random.default_rng(3)
        self.params = {f"p{i}": cl.Parameter(rng.standard_normal(s).astype(dtype))
                       for i, s in enumerate(shapes)}

    def parameters(self):
        return self.params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("settings", [
    {}, {"momentum": 0.9}, {"momentum": 0.9, "weight_decay": 5e-4},
    {"momentum": 0.8, "dampening": 0.3, "weight_decay": 1e-2},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}, {"weight_decay": 0.1},
], ids=["plain", "momentum", "decay", "dampening", "nesterov", "decay-only"])
def test_sgd_compiled_update_equals_numpy_bit_for_bit(dtype, settings, n_threads, monkeypatch):
    """kernels.sgd_update against SGD's NumPy expressions: 4 steps on a large parameter (split
    over the threads), a small one, and values that test the roundings (NaN, ±inf, ±0, tiny),
    with a group of its own lr scale and decay."""
    from cnnlab.kernels import compiled

    shapes = [(300, 1000), (7, 3), (64,)]
    runs = []
    for on in (True, False):
        monkeypatch.setattr(compiled, "HAVE_NUMBA", on)
        model = _Params(shapes, dtype)
        small = model.params["p1"].data
        small[0] = [np.nan, np.inf, -np.inf]
        small[1] = [0.0, -0.0, 1e-30]
        groups = [{"params": ["p2"], "lr_scale": 0.37, "weight_decay": 0.02}]
        opt = cl.optim.SGD(model, lr=0.05, groups=groups, **settings)
        rng = np.random.default_rng(4)
        for _ in range(4):
            for p in model.params.values():
                p.grad = rng.standard_normal(p.shape).astype(dtype)
            model.params["p1"].grad[1] = [-0.0, 0.0, -1e-30]
            big = model.params["p0"]
            assert cl.kernels.sgd_applies(big.data, big.grad, None) == on  # the loop runs
            with np.errstate(invalid="ignore", over="ignore"):
                opt.step()
            opt.lr *= 0.9
        runs.append(([p.data.copy() for p in model.params.values()],
                     {k: v.copy() for s in opt.state.values() for k, v in s.items()}))
    (ours, our_state), (ref, ref_state) = runs
    for a, b in zip(ours, ref, strict=True):
        assert a.dtype == b.dtype == dtype
        assert a.tobytes() == b.tobytes()
    assert our_state.keys() == ref_state.keys()
    for k in ref_state:
        assert our_state[k].tobytes() == ref_state[k].tobytes(), k


def test_sgd_takes_numpy_expressions_for_arrays_the_loop_does_not_take(monkeypatch):
    """A grad in another memory order (a transposed view) or a momentum buffer restored as a
    non-contiguous array: the NumPy path, the same result."""
    from cnnlab import kernels

    model = _Params([(40, 30)], np.float32)
    p = model.params["p0"]
    g = np.asfortranarray(np.random.default_rng(5).standard_normal((40, 30)).astype(np.float32))
    assert not kernels.sgd_applies(p.data, g, None)
    expected = p.data - np.float32(0.1) * g
    p.grad = g
    cl.optim.SGD(model, lr=0.1).step()
    assert p.data.tobytes() == expected.tobytes()
