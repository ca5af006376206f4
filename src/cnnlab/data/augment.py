"""Augmentation written as text, as `cnnlab train --augment` and config.toml take it:
terms separated by commas, each a transform with an optional parameter, applied in order.

    flip[=P]             RandomFlip(P): mirror left–right with probability P (default 0.5)
    crop[=PAD]           RandomCrop(PAD): shift by up to ±PAD pixels, zero padded (default 2)
    erase[=P]            RandomErasing(P): blank a random rectangle with probability P (0.5)
    rotate[=DEG]         RandomRotation(DEG): rotate by up to ±DEG degrees, edges repeated (15)
    resized-crop[=MIN]   RandomResizedCrop(scale=(MIN, 1)): a random part of area MIN–100%,
                         ratio 3/4–4/3, stretched back to the image's size (0.08)
    brightness[=B]       ColorJitter(brightness=B): pixels × U[1 − B, 1 + B], clipped (0.2)
    contrast[=C]         ColorJitter(contrast=C): towards or away from the mean grey (0.2)

The presets are names for lists: none (no augmentation), flip-crop = flip,crop=2 and
flip-crop-erase = flip,crop=2,erase. `canonical(text)` checks a spec and writes it with every
value given ("flip,rotate" → "flip=0.5,rotate=15"; a preset stays its name), so a run records
exactly what it used and reads it back unchanged; `augmentation(text)` builds the transform.
"""

from __future__ import annotations

import math

from cnnlab.data import transforms as t

PRESETS = {"none": "", "flip-crop": "flip,crop=2", "flip-crop-erase": "flip,crop=2,erase"}


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError
    return value


def _padding(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _between(low: float, high: float, *, open_low: bool = False):
    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or value > high or value < low or (open_low and value == low):
            raise ValueError
        return value

    return parse


#: term → (parameter's name in the help, default, what it must be, reader, transform builder)
TERMS = {
    "flip": ("P", 0.5, "a probability in [0, 1]", _probability, lambda v: t.RandomFlip(v)),
    "crop": ("PAD", 2, "an integer ≥ 0 (pixels)", _padding, lambda v: t.RandomCrop(v)),
    "erase": ("P", 0.5, "a probability in [0, 1]", _probability, lambda v: t.RandomErasing(v)),
    "rotate": ("DEG", 15.0, "degrees in [0, 180]", _between(0, 180), lambda v: t.RandomRotation(v)),
    "resized-crop": ("MIN", 0.08, "the smallest area, a fraction in (0, 1]",
                     _between(0, 1, open_low=True), lambda v: t.RandomResizedCrop((v, 1.0))),
    "brightness": ("B", 0.2, "a number in [0, 1]", _between(0, 1), lambda v: t.ColorJitter(brightness=v)),
    "contrast": ("C", 0.2, "a number in [0, 1]", _between(0, 1), lambda v: t.ColorJitter(contrast=v)),
}

#: the syntax in one line, for help texts and errors
SYNTAX = (", ".join(f"{name}[={spec[0]}]" for name, spec in TERMS.items())
          + "; or a preset: " + ", ".join(PRESETS))


def _terms(text: str) -> list[tuple[str, float | int]]:
    """(term, value) of every term of `text`, presets expanded; a ValueError names the bad term."""
    text = text.strip()
    if text in PRESETS:
        text = PRESETS[text]
        if not text:
            return []
    if not text:
        raise ValueError(f"empty augmentation; give terms such as flip,crop=2,rotate=15 ({SYNTAX})")
    found = []
    for raw in text.split(","):
        term = raw.strip()
        name, _, value = (part.strip() for part in term.partition("="))
        if not term:
            raise ValueError(f"an empty term in {text!r}: separate terms with single commas")
        if name in PRESETS and not value and name != "none":
            found += _terms(name)
            continue
        if name not in TERMS:
            why = ("'none' stands alone" if name == "none"
                   else f"unknown term {term!r} in {text!r}; the terms are {SYNTAX}")
            raise ValueError(why)
        _, default, rule, read, _ = TERMS[name]
        if "=" in term and not value:
            raise ValueError(f"term {term!r}: give a value after '=', {rule}, or leave out '='")
        try:
            found.append((name, read(value) if value else default))
        except ValueError:
            raise ValueError(f"term {term!r}: expected {rule}") from None
    return found


def canonical(text: str) -> str:
    """`text` checked and written with every value explicit; a preset name stays as it is."""
    if not isinstance(text, str):
        raise ValueError(f"augmentation must be text such as flip,crop=2. Received: {text!r}")
    terms = _terms(text)
    if text.strip() in PRESETS:
        return text.strip()
    return ",".join(f"{name}={_number(value)}" for name, value in terms)


def _number(value: float | int) -> str:
    """The shortest text that reads back as the same value: 0.5, 15, 1e-05."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def augmentation(text: str):
    """The transform `text` names: a transforms.Compose of its terms in order, None for "none"."""
    terms = _terms(text)
    if not terms:
        return None
    return t.Compose(TERMS[name][4](value) for name, value in terms)
