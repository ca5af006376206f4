"""Output-size and parameter arithmetic, and the strings that explain it.

The lecture's rule for a sliding window of extent F, stride S and zero padding P:
    W2 = (W1 − F + 2P)/S + 1
A window dilated by d (a convolution's taps d apart) spans F' = d·(F − 1) + 1 pixels, and F'
takes F's place in the rule, in "same" padding and in the "doesn't fit" messages.
When the padding is split unevenly (padding="same" with an odd total), 2P becomes P_before + P_after.
fit="exact" refuses a W2 that is not whole; fit="floor" drops the leftover rows and columns.

The fixes an error suggests name the Python API's arguments (`padding=1`, `stride 1 or 2`,
`fit="floor"`); a front end with names of its own (the `cnnlab` command's flags) words them
through `hints_named(Names(...))` around the call, and the arithmetic stays the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from cnnlab.core import ShapeError

FITS = ("exact", "floor")


def fmt(value: float) -> str:
    """2.3333 → "2.33", 32.0 → "32"."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def as_pair(value, what: str, owner: str, *, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, each ≥ `minimum`, as a pair."""
    pair = (value, value) if isinstance(value, int | np.integer) else value
    try:
        a, b = pair
        if isinstance(a, bool) or isinstance(b, bool) or int(a) != a or int(b) != b:
            raise TypeError
        a, b = int(a), int(b)
    except (TypeError, ValueError):
        raise ValueError(
            f"{owner}: {what} must be an int or a pair of ints. Received: {what}={value!r}"
        ) from None
    if a < minimum or b < minimum:
        raise ValueError(f"{owner}: {what} must be ≥ {minimum}. Received: {what}={value!r}")
    return a, b


def check_fit(fit: str, owner: str) -> str:
    if fit not in FITS:
        raise ValueError(f'{owner}: fit must be "exact" or "floor". Received: fit={fit!r}')
    return fit


def check_padding(padding, owner: str):
    """`padding` as given, validated: "same", "valid", or a pair of ints ≥ 0."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(
                f'{owner}: padding must be an int, a pair, "same" or "valid". '
                f"Received: padding={padding!r}"
            )
        return padding
    return as_pair(padding, "padding", owner, minimum=0)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same": W2 = ceil(W1/S); an odd total pad puts the extra row/column last."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class Names:
    """How shape errors name the fixes they suggest; each template's {} gets the value.

    The defaults are the Python API's arguments; `one_value` writes an equal pair as one number
    (for flags that take one: `--pad ≤ 1`, not `padding ≤ (1, 1)`). `floor=""` leaves fit="floor"
    out of the suggestions.
    """

    padding: str = "padding={}"  # "padding=1"; also "Received: …, padding=0"
    padding_at_most: str = "padding ≤ {}"  # pooling's limit, half the window
    stride: str = "stride {}"  # {} is "1 or 2"
    floor: str = 'fit="floor"'
    one_value: bool = False

    def value(self, pair: tuple) -> str:
        return str(pair[0]) if self.one_value and len(set(pair)) == 1 else str(pair)


API_NAMES = Names()
_names: ContextVar[Names] = ContextVar("cnnlab_shape_hint_names", default=API_NAMES)


@contextmanager
def hints_named(names: Names) -> Iterator[None]:
    """Inside the block, shape errors word their suggested fixes with `names`; restored after."""
    token = _names.set(names)
    try:
        yield
    finally:
        _names.reset(token)


@dataclass(frozen=True)
class Axis:
    """One spatial axis of a sliding window: input size, extent F, stride S, padding per side,
    dilation d (taps d pixels apart: the window spans F' = d·(F − 1) + 1)."""

    name: str
    size: int
    kernel: int
    stride: int
    pad: tuple[int, int]
    dilation: int = 1

    @property
    def extent(self) -> int:
        """F' = d·(F − 1) + 1, the pixels the window spans (F when not dilated)."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def span(self) -> int:
        """W − F' + 2P: how far the window travels."""
        return self.size + self.pad[0] + self.pad[1] - self.extent

    @property
    def fits(self) -> bool:
        return self.span >= 0 and self.span % self.stride == 0

    @property
    def out(self) -> int:
        return self.span // self.stride + 1

    def formula(self, *, show_zero_pad: bool = True, floor_arrow: bool = True) -> str:
        """ "(32 − 5 + 2·2)/1 + 1 = 32", or "(7 − 3 + 2·0)/3 + 1 = 2.33 → 2" when floored."""
        p0, p1 = self.pad
        if p0 != p1:
            pad = f" + {p0} + {p1}"
        elif p0 or show_zero_pad:
            pad = f" + 2·{p0}"
        else:
            pad = ""
        text = f"({self.size} − {self.extent}{pad})/{self.stride} + 1 = {fmt(self.span / self.stride + 1)}"
        return text if self.fits or not floor_arrow else f"{text} → {self.out}"


def equations(axes, **options) -> str:
    """ "H2 = W2 = (…) = 32" when the axes agree, else "H2 = (…); W2 = (…)"."""
    texts = [(f"{a.name}2", a.formula(**options)) for a in axes]
    if len(texts) == 2 and texts[0][1] == texts[1][1]:
        return f"{texts[0][0]} = {texts[1][0]} = {texts[0][1]}"
    return "; ".join(f"{name} = {text}" for name, text in texts)


@dataclass(frozen=True)
class Window:
    """A sliding window over the (H, W) plane. 1-D layers use H = 1, F_h = 1 and show W only."""

    h: Axis
    w: Axis
    ndim: int

    @property
    def kernel(self) -> tuple[int, int]:
        return self.h.kernel, self.w.kernel

    @property
    def stride(self) -> tuple[int, int]:
        return self.h.stride, self.w.stride

    @property
    def pad(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return self.h.pad, self.w.pad

    @property
    def out(self) -> tuple[int, int]:
        return self.h.out, self.w.out

    @property
    def dilation(self) -> tuple[int, int]:
        return self.h.dilation, self.w.dilation

    @property
    def shown(self) -> tuple[Axis, ...]:
        return (self.w,) if self.ndim == 1 else (self.h, self.w)

    def extent(self) -> str:
        """ "5×5", or "3×3 dilated by 2 (extent 5×5)" for a dilated window."""
        kernel = "×".join(str(a.kernel) for a in self.shown)
        if all(a.dilation == 1 for a in self.shown):
            return kernel
        dilations = [a.dilation for a in self.shown]
        by = str(dilations[0]) if len(set(dilations)) == 1 else "×".join(map(str, dilations))
        return f"{kernel} dilated by {by} (extent {'×'.join(str(a.extent) for a in self.shown)})"

    def dilation_text(self) -> str:
        """ "F' = d·(F − 1) + 1 = 2·(3 − 1) + 1 = 5" (per axis when they differ: "F'_H = …,
        F'_W = …"); "" for an undilated window."""
        if all(a.dilation == 1 for a in self.shown):
            return ""
        texts = [f"{a.dilation}·({a.kernel} − 1) + 1 = {a.extent}" for a in self.shown]
        if len(set(texts)) == 1:
            return f"F' = d·(F − 1) + 1 = {texts[0]}"
        return ", ".join(f"F'_{a.name} = {text}" for a, text in zip(self.shown, texts, strict=True))

    def size_text(self) -> str:
        return "×".join(str(a.size) for a in self.shown)

    def stride_text(self) -> str:
        strides = [a.stride for a in self.shown]
        return str(strides[0]) if len(set(strides)) == 1 else "×".join(map(str, strides))

    def formulas(self, *, show_zero_pad: bool = True) -> str:
        """ "H2 = W2 = (32 − 5 + 2·2)/1 + 1 = 32" (W2 only in 1-D)."""
        return equations(self.shown, show_zero_pad=show_zero_pad)


def window(
    owner: str,
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding,
    fit: str,
    *,
    ndim: int = 2,
    max_pad: tuple[int, int] | None = None,
    dilation: tuple[int, int] = (1, 1),
) -> Window:
    """Resolves padding and checks that the window fits; raises ShapeError with the arithmetic.

    `owner` names the layer in messages; `max_pad` limits explicit padding (pooling allows at
    most half the window, as PyTorch does); `dilation` spaces a convolution's taps (the window
    then spans F' = d·(F − 1) + 1, which "same" padding and the fit use).
    """
    if padding == "same":
        pads = [same_padding(n, d * (k - 1) + 1, s)
                for n, k, s, d in zip(size, kernel, stride, dilation, strict=True)]
    elif padding == "valid":
        pads = [(0, 0), (0, 0)]
    else:
        pads = [(p, p) for p in padding]
        if max_pad is not None and any(p > m for p, m in zip(padding, max_pad, strict=True)):
            names = _names.get()
            limit = names.padding_at_most.format(names.value(tuple(max_pad)[2 - ndim:]))
            raise ShapeError(
                f"{owner}: padding {tuple(padding)[2 - ndim:]} is more than half the window "
                f"{kernel[2 - ndim:]}; the edge windows would hold only padding. Use {limit}."
            )
    h, w = (Axis(name, *args) for name, args in zip(
        "HW", zip(size, kernel, stride, pads, dilation, strict=True), strict=True
    ))
    win = Window(h, w, ndim)
    for axis in win.shown:
        if axis.span < 0:
            padded = "H + 2·padding" if axis.name == "H" else "W + 2·padding"
            received = _names.get().padding.format(
                axis.pad[0] if axis.pad[0] == axis.pad[1] else axis.pad)
            raise ShapeError(
                f"{owner}: window {win.extent()} does not fit the padded input. "
                f"Expected {padded} ≥ {axis.extent}. Received: input size {win.size_text()}, {received}"
            )
    # "same" fixes the output at ceil(W/S); any leftover is dropped, as TensorFlow does
    if fit == "exact" and padding != "same":
        bad = [a for a in win.shown if not a.fits]
        if bad:
            text = equations(bad, floor_arrow=False)
            verb = "are not whole numbers" if ";" in text else "is not a whole number"
            raise ShapeError(
                f"{owner}: {text} {verb}: "
                f"a {win.extent()} window with stride "
                f"{win.stride_text()} doesn't fit a {win.size_text()} input. "
                f"{suggest(win, max_pad)}"
            )
    return win


def suggest(win: Window, max_pad: tuple[int, int] | None) -> str:
    """Paddings and strides that would make every shown axis whole, and fit="floor", worded with
    the names `hints_named` set (the API's by default)."""
    names = _names.get()
    axes = win.shown
    pad_limit = min(max_pad[2 - win.ndim:]) if max_pad else max(a.extent for a in axes) - 1
    paddings = [
        p for p in range(0, pad_limit + 1)
        if p != axes[0].pad[0]
        and all((a.size + 2 * p - a.extent) % a.stride == 0 and a.size + 2 * p >= a.extent
                for a in axes)
    ][:1]
    strides = [
        s for s in range(1, max(a.extent for a in axes) + 1)
        if s != axes[0].stride and all(a.span % s == 0 for a in axes)
    ]
    options = [names.padding.format(p) for p in paddings]
    if strides:
        options.append(names.stride.format(" or ".join(map(str, strides))))
    if names.floor:
        options.append(names.floor)
    head = ", ".join(options[:-1])
    return f"Use {head + ', or ' if head else ''}{options[-1]}."


def param_formula(factors: list[int], bias: bool, copies: list[int]) -> str:
    """Parameters of a weighted layer as the lecture writes them.

    factors: the weights of one unit (F·F·D1 for a filter), copies: how many units (K, or
    K·H2·W2 without weight sharing). bias=True → "(5·5·3 + 1)·10 = 760", else "5·5·3·10 = 750".
    """
    total = (int(np.prod(factors)) + int(bias)) * int(np.prod(copies))
    inner = "·".join(map(str, factors))
    times = "·".join(map(str, copies))
    if bias:
        return f"({inner} + 1)·{times} = {total:,}"
    return f"{inner}·{times} = {total:,}"
