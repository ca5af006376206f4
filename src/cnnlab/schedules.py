"""Learning-rate schedules: the learning rate as a pure function of the fractional epoch.

Per batch the training loop sets `opt.lr = schedule(epoch + step/steps_per_epoch)`; since a
schedule has no state, a resumed run needs only its position.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping


def _number(owner: str, name: str, value, low: float = 0.0, high: float | None = None, *,
            open_low: bool = False, open_high: bool = False) -> float:
    """`value` as a float, or a ValueError naming the rule: `SGD: lr must be … ≥ 0. Received: lr=-1`."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)
        ok = (v > low if open_low else v >= low) and (
            high is None or (v < high if open_high else v <= high))
    if not ok:
        if high is None:
            rule = f"{'>' if open_low else '≥'} {low:g}"
        else:
            rule = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{owner}: {name} must be a finite number {rule}. Received: {name}={value!r}")
    return float(value)

class Schedule:
    """A learning rate as a pure function of the (fractional) epoch: resuming needs only the epoch.

    `schedule(epoch) -> lr`; `describe()` gives the formula with its numbers; `config()` the
    type and arguments as JSON, which `Schedule.from_config` turns back into the schedule.
    """

    _args: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return type(self).__name__

    def __call__(self, epoch: float) -> float:
        return float(self._lr(_number(self.kind, "epoch", epoch)))

    def _lr(self, epoch: float) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        """The formula with this schedule's numbers, for logs and reports."""
        raise NotImplementedError

    def config(self) -> dict:
        """{"type": "StepLR", "lr": …, …}: the constructor's arguments, JSON-serialisable."""
        return {"type": self.kind, **{k: getattr(self, k) for k in self._args}}

    def __repr__(self) -> str:
        return f"{self.kind}({', '.join(f'{k}={getattr(self, k)!r}' for k in self._args)})"

    @staticmethod
    def from_config(config: Mapping) -> Schedule:
        """The schedule `config()` describes."""
        kinds = {cls.__name__: cls for cls in (ConstantLR, StepLR, ExponentialLR, CosineLR, OneCycleLR)}
        args = dict(config)
        kind = args.pop("type", None)
        if kind not in kinds:
            raise ValueError(f"Schedule.from_config: unknown type {kind!r}. Expected one of {sorted(kinds)}.")
        return kinds[kind](**args)


class ConstantLR(Schedule):
    """lr(epoch) = lr. (Not torch's ConstantLR, which multiplies by a factor for a while.)"""

    _args = ("lr",)

    def __init__(self, lr: float) -> None:
        self.lr = _number("ConstantLR", "lr", lr)

    def _lr(self, epoch):
        return self.lr

    def describe(self) -> str:
        return f"lr = {self.lr:g} (constant)"


class StepLR(Schedule):
    """lr(epoch) = lr·γ^⌊epoch/step_size⌋: multiplied by γ every step_size epochs."""

    _args = ("lr", "step_size", "gamma")

    def __init__(self, lr: float, step_size: float, gamma: float = 0.1) -> None:
        self.lr = _number("StepLR", "lr", lr)
        self.step_size = _number("StepLR", "step_size", step_size, open_low=True)
        self.gamma = _number("StepLR", "gamma", gamma, open_low=True)

    def _lr(self, epoch):
        return self.lr * self.gamma ** math.floor(epoch / self.step_size)

    def describe(self) -> str:
        return f"lr = {self.lr:g}·{self.gamma:g}^⌊epoch/{self.step_size:g}⌋"


class ExponentialLR(Schedule):
    """lr(epoch) = lr·γ^epoch, continuous in the epoch (torch's ExponentialLR at whole epochs)."""

    _args = ("lr", "gamma")

    def __init__(self, lr: float, gamma: float) -> None:
        self.lr = _number("ExponentialLR", "lr", lr)
        self.gamma = _number("ExponentialLR", "gamma", gamma, open_low=True)

    def _lr(self, epoch):
        return self.lr * self.gamma**epoch

    def describe(self) -> str:
        return f"lr = {self.lr:g}·{self.gamma:g}^epoch"


class CosineLR(Schedule):
    """Linear warm-up, then half a cosine from lr down to min_lr at `epochs` (min_lr after).

    Given steps_per_epoch = S (what fit takes per epoch: ⌈N/batch_size⌉), the warm-up is
    counted in whole steps, n = max(1, ⌈W·S⌉), and step s = ⌊e·S⌋ gets
        lr(e) = lr·(s + 1)/n                                   s < n: lr/n first, lr at step n − 1
        lr(e) = min_lr + (lr − min_lr)·(1 + cos(π·(e − n/S)/(E − n/S)))/2       n/S ≤ e ≤ E
    so every step of a warm-up learns, and a warm-up shorter than a step is one step at lr.
    Without S the ramp is continuous, lr(e) = lr·e/W for e < W (cosine from W): lr(0) = 0,
    and the first step of fit learns nothing. Give S whenever the warm-up is a few steps.
    """

    _args = ("lr", "epochs", "warmup", "min_lr", "steps_per_epoch")

    def __init__(self, lr: float, epochs: float, warmup: float = 0.0, min_lr: float = 0.0,
                 steps_per_epoch: int | None = None) -> None:
        self.lr = _number("CosineLR", "lr", lr)
        self.epochs = _number("CosineLR", "epochs", epochs, open_low=True)
        self.warmup = _number("CosineLR", "warmup", warmup, 0.0, self.epochs, open_high=True)
        self.min_lr = _number("CosineLR", "min_lr", min_lr, 0.0, self.lr)
        self.steps_per_epoch = _steps("CosineLR", steps_per_epoch)

    @property
    def warmup_steps(self) -> int | None:
        """n, the warm-up in whole steps (None without steps_per_epoch, 0 without a warm-up)."""
        if self.steps_per_epoch is None:
            return None
        return max(1, math.ceil(self.warmup * self.steps_per_epoch - 1e-9)) if self.warmup else 0

    def _lr(self, epoch):
        n, start = self.warmup_steps, self.warmup
        if n is None and epoch < start:
            return self.lr * epoch / start
        if n is not None:
            start = n / self.steps_per_epoch
            step = math.floor(epoch * self.steps_per_epoch + 1e-9)  # s/S·S may fall just below s
            if step < n:
                return self.lr * (step + 1) / n
        span = self.epochs - start  # ≤ 0 when a one-step warm-up fills the whole run
        return _cos(self.lr, self.min_lr, 1.0 if span <= 0 else min(1.0, (epoch - start) / span))

    def describe(self) -> str:
        n, start = self.warmup_steps, self.warmup
        if n:
            start = n / self.steps_per_epoch
            warm = f"lr = {self.lr:g}·(step + 1)/{n} for the first {n} step{'s' * (n > 1)}, then "
        else:
            warm = f"lr = {self.lr:g}·epoch/{start:g} until epoch {start:g}, then " if start else ""
        return (f"{warm}lr = {self.min_lr:g} + {self.lr - self.min_lr:g}·(1 + cos(π·(epoch − "
                f"{start:g})/{self.epochs - start:g}))/2 until epoch {self.epochs:g}")


class OneCycleLR(Schedule):
    """One cycle (Smith): half a cosine up from max_lr/div_factor to max_lr, then down to
    min_lr = max_lr/(div_factor·final_div_factor); torch's OneCycleLR with anneal_strategy='cos'.

        c(a, b, x) = b + (a − b)·(1 + cos(π·x))/2
        lr(e) = c(max_lr/div_factor, max_lr, e/P)            e ≤ P = pct_start·E
        lr(e) = c(max_lr, min_lr, (e − P)/(E − P))           P < e ≤ E;   min_lr after E
    torch counts in steps and ends each phase one step early (peak at step pct_start·T − 1, end
    at T − 1). Give steps_per_epoch to do the same, so that lr(step/steps_per_epoch) equals
    torch's lr at that step; without it, the phases end exactly at P and E.
    """

    _args = ("max_lr", "epochs", "pct_start", "div_factor", "final_div_factor", "steps_per_epoch")

    def __init__(self, max_lr: float, epochs: float, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, steps_per_epoch: int | None = None) -> None:
        self.max_lr = _number("OneCycleLR", "max_lr", max_lr, open_low=True)
        self.epochs = _number("OneCycleLR", "epochs", epochs, open_low=True)
        self.pct_start = _number("OneCycleLR", "pct_start", pct_start, 0.0, 1.0,
                                 open_low=True, open_high=True)
        self.div_factor = _number("OneCycleLR", "div_factor", div_factor, open_low=True)
        self.final_div_factor = _number("OneCycleLR", "final_div_factor", final_div_factor, open_low=True)
        self.steps_per_epoch = _steps("OneCycleLR", steps_per_epoch)
        if self.steps_per_epoch and self.pct_start * self.epochs * self.steps_per_epoch <= 1:
            raise ValueError(
                "OneCycleLR: the warm-up phase is shorter than one step: pct_start·epochs·"
                f"steps_per_epoch = {self.pct_start:g}·{self.epochs:g}·{self.steps_per_epoch} must be > 1.")
        self.initial_lr = self.max_lr / self.div_factor
        self.min_lr = self.initial_lr / self.final_div_factor

    def _lr(self, epoch):
        # positions in torch's steps (one step early) or in epochs (exact)
        unit, early = (self.steps_per_epoch, 1.0) if self.steps_per_epoch else (1, 0.0)
        u, peak, end = epoch * unit, self.pct_start * (self.epochs * unit) - early, self.epochs * unit - early
        if u <= peak:
            return _cos(self.initial_lr, self.max_lr, u / peak)
        if u >= end:
            return self.min_lr
        return _cos(self.max_lr, self.min_lr, (u - peak) / (end - peak))

    def describe(self) -> str:
        return (f"lr rises from {self.initial_lr:g} to {self.max_lr:g} along half a cosine until epoch "
                f"{self.pct_start * self.epochs:g}, then falls to {self.min_lr:g} at epoch {self.epochs:g}")


def _steps(owner: str, value) -> int | None:
    """steps_per_epoch as a positive int, or None."""
    if value is not None and not (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                                  and value > 0):
        raise ValueError(f"{owner}: steps_per_epoch must be a positive int or None. "
                         f"Received: steps_per_epoch={value!r}")
    return None if value is None else int(value)


def _cos(start: float, end: float, pct: float) -> float:
    """Half a cosine from start (pct = 0) to end (pct = 1), written as torch writes it."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
