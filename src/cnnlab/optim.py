"""Optimizers: how the grads left by `model.backward` become new weights.

Each optimizer applies exactly PyTorch's update rule (torch.optim 2.13, one parameter at a time).
Symbols: p a parameter, g its gradient ∂L/∂p, lr the learning rate, λ the weight decay, t the
number of updates this parameter has had (1 on its first step). Weight decay is L2, g ← g + λ·p
before the rule, except AdamW's decoupled p ← p·(1 − lr·λ). Per batch, after model.backward:
`opt.lr = schedule(epoch); opt.step()`. Every optimizer also takes `groups` (per-group lr scale
and weight decay) and `no_decay` (no weight decay for biases and BatchNorm's γ, β): see
cnnlab.param_groups; lr and λ above are then each parameter's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from cnnlab import kernels, param_groups
from cnnlab.clip import clip_grad_norm
from cnnlab.core import Layer
from cnnlab.schedules import (
    ConstantLR,
    CosineLR,
    ExponentialLR,
    OneCycleLR,
    Schedule,
    StepLR,
    _number,
)


class Optimizer:
    """Base class: walks `model.parameters()` and updates each trainable one that has a grad.

    State (momentum buffers, moment estimates) lives per parameter in `state[name][slot]`, in the
    parameter's dtype; `param_steps[name]` is that parameter's t; `iterations` counts step() calls.
    `lr` is a plain attribute: a training loop or a `Schedule` may set it between steps.
    Subclasses list `_hyper` (constructor arguments other than lr) and implement `_slots` and
    `_update(p, g, state, t, lr)`, which changes p and state in place and never g; g arrives with
    the L2 decay λ·p already added (a decoupled class's decay is already applied to p), and lr
    is the parameter's own (its group's scale applied).
    """

    _hyper: tuple[str, ...] = ()
    weight_decay = 0.0
    _decoupled = False  # True: decoupled decay, p ← p·(1 − lr·λ) before the rule (AdamW)
    #: state slot → the hyperparameter that switches it on (None: always there)
    _slot_rules: dict[str, str | None] = {}

    def __init__(self, model: Layer, lr: float, *, groups=None, no_decay: bool = False) -> None:
        if not isinstance(model, Layer):
            raise ValueError(f"{self.kind}: expected a cnnlab model (a Layer such as Sequential). "
                             f"Received: {type(model).__name__}")
        self.model = model
        self.lr = _number(self.kind, "lr", lr)
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.param_steps: dict[str, int] = {}
        self.iterations = 0
        self._set_groups(groups, no_decay)

    def _set_groups(self, groups, no_decay) -> None:
        """Checks and keeps the parameter groups (cnnlab.param_groups) and no_decay."""
        params = self.model.parameters()
        self.groups = param_groups.check_groups(self.kind, groups, params)
        self.no_decay = bool(no_decay)
        self._group_of = param_groups.table(self.groups, params)

    def settings(self, name: str, p) -> tuple[float, float]:
        """(lr scale, weight decay λ) of the parameter `name` (cnnlab.param_groups)."""
        i = self._group_of.get(name)
        group = None if i is None else self.groups[i]
        decay = self.weight_decay if group is None or group["weight_decay"] is None \
            else group["weight_decay"]
        if self.no_decay and param_groups.exempt(name, p):
            decay = 0.0
        return (1.0 if group is None else group["lr_scale"]), decay

    @property
    def kind(self) -> str:
        return type(self).__name__

    @property
    def _slots(self) -> tuple[str, ...]:
        """The state arrays each updated parameter has with these hyperparameters."""
        return tuple(s for s, on in self._slot_rules.items() if on is None or getattr(self, on))

    def hyperparameters(self) -> dict:
        """The constructor arguments other than lr, as JSON values."""
        return {k: list(v) if isinstance(v, tuple) else v for k in self._hyper
                for v in [getattr(self, k)]}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {"lr": self.lr, **self.hyperparameters()}.items())
        if self.groups:
            args += f", groups=[{param_groups.describe(self.groups, self.model.parameters())}]"
        return f"{self.kind}({args}{', no_decay=True' if self.no_decay else ''})"

    def step(self) -> None:
        """Applies one update to every parameter with trainable=True and a grad, in place on .data."""
        lr = _number(self.kind, "lr", self.lr)
        todo = [(name, p) for name, p in self.model.parameters().items()
                if p.trainable and p.grad is not None]
        if not todo:
            raise RuntimeError(
                f"{self.kind}.step(): no trainable parameter has a gradient. Run a training "
                "forward and call model.backward first: model.backward(loss.backward())."
            )
        for name, p in todo:  # check everything before changing anything
            if np.shape(p.grad) != p.data.shape:
                raise ValueError(f"{self.kind}.step(): {name}.grad has shape {np.shape(p.grad)}, "
                                 f"the parameter has {p.data.shape}.")
        for name, p in todo:
            # a float64 grad must not turn float32 weights or state into float64
            g = np.asarray(p.grad).astype(p.data.dtype, copy=False)
            scale, decay = self.settings(name, p)
            lr_p = lr * scale  # × 1.0 without groups: exactly lr
            t = self.param_steps.get(name, 0) + 1
            state = self.state.setdefault(name, {})
            if self._decoupled or not self._update_compiled(p.data, g, state, lr_p, decay):
                if decay and not self._decoupled:
                    g = g + decay * p.data
                elif decay:  # AdamW: p ← p·(1 − lr·λ) before the rule
                    p.data *= 1 - lr_p * decay
                self._update(p.data, g, state, t, lr_p)
            self.param_steps[name] = t
        self.iterations += 1

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict, t: int, lr: float) -> None:
        raise NotImplementedError

    def _update_compiled(self, p: np.ndarray, g: np.ndarray, state: dict, lr: float,
                         decay: float) -> bool:
        """The L2 decay and _update as one compiled pass, the same bits; False (the default)
        where there is none and the NumPy expressions run."""
        return False

    @staticmethod
    def _buffer(state: dict, slot: str, p: np.ndarray, fill: float = 0.0) -> np.ndarray:
        if slot not in state:
            state[slot] = np.full_like(p, fill)
        return state[slot]

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays keyed "conv2d_1.weight.exp_avg", JSON metadata: type, lr, hyperparameters,
        step counts and the model's parameter shapes). Arrays are copies."""
        arrays = {f"{name}.{slot}": a.copy() for name, slots in self.state.items()
                  for slot, a in slots.items()}
        params = self.model.parameters()
        meta = {
            "type": self.kind, "lr": float(self.lr), "hyperparameters": self.hyperparameters(),
            "step": self.iterations, "param_steps": dict(self.param_steps),
            "parameters": {n: list(p.shape) for n, p in params.items()},
            "groups": [dict(g, params=list(g["params"])) for g in self.groups],
            "no_decay": self.no_decay,
            "frozen": [n for n, p in params.items() if not p.trainable],
        }
        return arrays, meta

    def load_state_dict(self, arrays: Mapping[str, np.ndarray], meta: Mapping) -> None:
        """Restores `state_dict()`'s output exactly (hyperparameters and lr included), so later
        steps are bit-identical to an uninterrupted run. Raises ValueError on any mismatch."""
        who = f"{self.kind}.load_state_dict"
        if meta.get("type") != self.kind:
            raise ValueError(f"{who}: the state was saved by {meta.get('type')!r}, not {self.kind}. "
                             f"Create a {meta.get('type')} to load it.")
        if missing := [k for k in ("lr", "hyperparameters", "step", "param_steps", "parameters")
                       if k not in meta]:
            raise ValueError(f"{who}: the metadata has no {missing}; pass what state_dict() returned.")
        params = self.model.parameters()
        ours = {n: tuple(p.shape) for n, p in params.items()}
        saved = {str(n): tuple(s) for n, s in meta["parameters"].items()}
        if saved != ours:
            names = [*ours, *(n for n in saved if n not in ours)]
            diff = [f"{n} saved {saved.get(n, 'nothing')}, model {ours.get(n, 'nothing')}"
                    for n in names if saved.get(n) != ours.get(n)]
            raise ValueError(f"{who}: the state is for a different model; {'; '.join(diff)}.")
        if set(meta["hyperparameters"]) != set(self._hyper):
            raise ValueError(f"{who}: expected hyperparameters {sorted(self._hyper)}. "
                             f"Received: {sorted(meta['hyperparameters'])}")
        # validates them (groups and no_decay: absent from checkpoints before 0.3)
        fresh = type(self)(self.model, lr=meta["lr"], **meta["hyperparameters"],
                           groups=meta.get("groups"), no_decay=meta.get("no_decay", False))
        frozen = sorted(n for n, p in params.items() if not p.trainable)
        if "frozen" in meta and sorted(map(str, meta["frozen"])) != frozen:
            raise ValueError(f"{who}: the state was saved with {_listed(meta['frozen'])} frozen; "
                             f"this model has {_listed(frozen)} frozen. Freeze the same layers "
                             "(model.freeze) before loading it")
        steps = {str(n): int(t) for n, t in meta["param_steps"].items()}
        if unknown := sorted(set(steps) - set(params)):
            raise ValueError(f"{who}: step counts for parameters not in the model: {', '.join(unknown)}.")
        state: dict[str, dict[str, np.ndarray]] = {n: {} for n in steps}
        for key, a in arrays.items():
            name, _, slot = key.rpartition(".")
            if name not in state or slot not in fresh._slots:
                raise ValueError(f"{who}: unexpected array {key!r}; expected "
                                 f"<updated parameter>.{{{', '.join(fresh._slots)}}}.")
            if np.shape(a) != params[name].shape:
                raise ValueError(f"{who}: array {key!r} has shape {np.shape(a)}, "
                                 f"parameter {name} has {params[name].shape}.")
            state[name][slot] = np.array(a, dtype=params[name].data.dtype)  # a copy
        for name, slots in state.items():
            if missing := [f"{name}.{s}" for s in fresh._slots if s not in slots]:
                raise ValueError(f"{who}: no saved array {', '.join(missing)}.")
        for k in ("lr", *self._hyper, "groups", "no_decay", "_group_of"):
            setattr(self, k, getattr(fresh, k))
        self.state, self.param_steps, self.iterations = state, steps, int(meta["step"])


def _listed(names) -> str:
    """"nothing", "conv2d_1.weight" or "conv2d_1.weight, conv2d_1.bias and 3 more"."""
    names = list(names)
    if not names:
        return "nothing"
    return ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum μ and dampening d.

        g ← g + λ·p
        v ← g on the first step, then v ← μ·v + (1 − d)·g        (only when μ > 0)
        g ← g + μ·v  (nesterov)   or   g ← v
        p ← p − lr·g
    """

    _hyper = ("momentum", "dampening", "nesterov", "weight_decay")
    _slot_rules = {"momentum_buffer": "momentum"}

    def __init__(self, model: Layer, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, *, groups=None,
                 no_decay: bool = False) -> None:
        super().__init__(model, lr, groups=groups, no_decay=no_decay)
        self.momentum = _number("SGD", "momentum", momentum)
        self.dampening = _number("SGD", "dampening", dampening, 0.0, 1.0)
        self.weight_decay = _number("SGD", "weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov requires momentum > 0 and dampening = 0. "
                             f"Received: momentum={momentum!r}, dampening={dampening!r}")

    def _update_compiled(self, p, g, state, lr, decay):
        """kernels.sgd_update: one pass instead of six, the same bits."""
        v = state.get("momentum_buffer") if self.momentum else None
        first = bool(self.momentum) and v is None
        if not kernels.sgd_applies(p, g, v):
            return False
        if first:
            v = state["momentum_buffer"] = np.empty_like(p)
        kernels.sgd_update(p, g, v, decay=decay, momentum=self.momentum,
                           dampening=self.dampening, nesterov=self.nesterov, lr=lr, first=first)
        return True

    def _update(self, p, g, state, t, lr):
        if self.momentum:
            v = state.get("momentum_buffer")
            if v is None:
                v = state["momentum_buffer"] = g.copy()
            else:
                v *= self.momentum
                v += (1 - self.dampening) * g
            g = g + self.momentum * v if self.nesterov else v
        p -= lr * g


class Adam(Optimizer):
    """Adam: bias-corrected moving averages of g and g², optionally AMSGrad.

        g ← g + λ·p                         (AdamW instead: p ← p·(1 − lr·λ))
        m ← β₁·m + (1 − β₁)·g               v ← β₂·v + (1 − β₂)·g²
        v̂ ← max(v̂, v) (amsgrad)  or  v̂ ← v
        p ← p − lr/(1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + ε)
    """

    _hyper = ("betas", "eps", "weight_decay", "amsgrad")
    _slot_rules = {"exp_avg": None, "exp_avg_sq": None, "max_exp_avg_sq": "amsgrad"}

    def __init__(self, model: Layer, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 groups=None, no_decay: bool = False) -> None:
        super().__init__(model, lr, groups=groups, no_decay=no_decay)
        if not (isinstance(betas, tuple | list) and len(betas) == 2):
            raise ValueError(f"{self.kind}: betas must be a pair (β₁, β₂). Received: betas={betas!r}")
        self.betas = tuple(_number(self.kind, f"betas[{i}]", b, 0.0, 1.0, open_high=True)
                           for i, b in enumerate(betas))
        self.eps = _number(self.kind, "eps", eps)
        self.weight_decay = _number(self.kind, "weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)

    def _update(self, p, g, state, t, lr):
        b1, b2 = self.betas
        m, v = self._buffer(state, "exp_avg", p), self._buffer(state, "exp_avg_sq", p)
        m += (1 - b1) * (g - m)  # = β₁·m + (1 − β₁)·g, written as torch's lerp_ computes it
        v *= b2
        v += (1 - b2) * (g * g)
        if self.amsgrad:
            v_max = self._buffer(state, "max_exp_avg_sq", p)
            v = np.maximum(v_max, v, out=v_max)
        denom = np.sqrt(v) / math.sqrt(1 - b2**t) + self.eps
        p -= (lr / (1 - b1**t)) * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): the decay skips m and v.

        p ← p·(1 − lr·λ)
        then Adam's update with g unchanged (see `Adam`; amsgrad works the same way).
    """

    _decoupled = True

    def __init__(self, model: Layer, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False, *,
                 groups=None, no_decay: bool = False) -> None:
        super().__init__(model, lr, betas, eps, weight_decay, amsgrad, groups=groups,
                         no_decay=no_decay)


class RMSProp(Optimizer):
    """RMSProp: divide g by a moving root mean square (centered: by a moving standard deviation).

        g ← g + λ·p
        s ← α·s + (1 − α)·g²
        a ← α·a + (1 − α)·g;  d ← √(s − a²) + ε   (centered)   or   d ← √s + ε
        b ← μ·b + g/d;  p ← p − lr·b             (μ > 0)       or   p ← p − lr·g/d
    ε is added outside the square root, as in PyTorch (TensorFlow/Keras put it inside).
    """

    _hyper = ("alpha", "eps", "weight_decay", "momentum", "centered")
    _slot_rules = {"square_avg": None, "grad_avg": "centered", "momentum_buffer": "momentum"}

    def __init__(self, model: Layer, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 groups=None, no_decay: bool = False) -> None:
        super().__init__(model, lr, groups=groups, no_decay=no_decay)
        self.alpha = _number("RMSProp", "alpha", alpha, 0.0, 1.0)
        self.eps = _number("RMSProp", "eps", eps)
        self.weight_decay = _number("RMSProp", "weight_decay", weight_decay)
        self.momentum = _number("RMSProp", "momentum", momentum)
        self.centered = bool(centered)

    def _update(self, p, g, state, t, lr):
        s = self._buffer(state, "square_avg", p)
        s *= self.alpha
        s += (1 - self.alpha) * (g * g)
        if self.centered:
            a = self._buffer(state, "grad_avg", p)
            a += (1 - self.alpha) * (g - a)  # torch's lerp_
            # s ≥ a² in exact arithmetic; rounding can leave −1e-12, whose root would be NaN
            d = np.sqrt(np.maximum(s - a * a, 0))
        else:
            d = np.sqrt(s)
        d += self.eps
        if self.momentum > 0:
            b = self._buffer(state, "momentum_buffer", p)
            b *= self.momentum
            b += g / d
            p -= lr * b
        else:
            p -= lr * (g / d)


class AdaGrad(Optimizer):
    """AdaGrad: each weight's step shrinks with the sum of its squared gradients.

        g ← g + λ·p
        S ← S + g²                     (S starts at initial_accumulator_value)
        p ← p − lr/(1 + (t − 1)·lr_decay) · g / (√S + ε)
    """

    _hyper = ("lr_decay", "weight_decay", "initial_accumulator_value", "eps")
    _slot_rules = {"sum": None}

    def __init__(self, model: Layer, lr: float = 0.01, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, groups=None,
                 no_decay: bool = False) -> None:
        super().__init__(model, lr, groups=groups, no_decay=no_decay)
        self.lr_decay = _number("AdaGrad", "lr_decay", lr_decay)
        self.weight_decay = _number("AdaGrad", "weight_decay", weight_decay)
        self.initial_accumulator_value = _number(
            "AdaGrad", "initial_accumulator_value", initial_accumulator_value)
        self.eps = _number("AdaGrad", "eps", eps)

    def _update(self, p, g, state, t, lr):
        s = self._buffer(state, "sum", p, self.initial_accumulator_value)
        s += g * g
        p -= (lr / (1 + (t - 1) * self.lr_decay)) * (g / (np.sqrt(s) + self.eps))


# the schedules live in cnnlab.schedules and clip_grad_norm in cnnlab.clip, re-exported here:
# cl.optim.StepLR, cl.optim.clip_grad_norm etc.
__all__ = ["SGD", "AdaGrad", "Adam", "AdamW", "ConstantLR", "CosineLR", "ExponentialLR", "OneCycleLR",
           "Optimizer", "RMSProp", "Schedule", "StepLR", "clip_grad_norm"]
