"""How the demos write numbers: a typographic minus, as the lecture's slides do."""

from __future__ import annotations


def minus(v: float) -> str:
    """An integer-valued number with a typographic minus: −3."""
    text = f"{v:g}"
    return text.replace("-", "−")
