"""Range-checked number types for ``argparse`` flags, shared by every command.

A flag declared ``type=integer(minimum=1)`` rejects ``0`` while the command line is parsed, before any
pipeline or training starts, with argparse's usual ``argument --flag: ...`` message and exit code 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _describe(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def _bounded(kind: type, low, high, low_open: bool, high_open: bool) -> Callable[[str], float | int]:
    what = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if ((low is not None and (value < low or (low_open and value == low)))
                or (high is not None and (value > high or (high_open and value == high)))):
            bounds = _describe(low, high, low_open, high_open)
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {bounds}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An ``int`` in ``[minimum, maximum]`` (either bound may be ``None``)."""
    return _bounded(int, minimum, maximum, False, False)


def number(minimum: float | None = None, maximum: float | None = None, *, above: float | None = None,
           below: float | None = None) -> Callable[[str], float]:
    """A finite ``float`` in ``[minimum, maximum]``; ``above``/``below`` are exclusive bounds instead."""
    low, low_open = (above, True) if above is not None else (minimum, False)
    high, high_open = (below, True) if below is not None else (maximum, False)
    return _bounded(float, low, high, low_open, high_open)


FRACTION = number(0.0, 1.0)
"""A share in ``[0, 1]``."""
