"""Number lists typed on the command line (``8``, ``1-13``, ``1,2,4,8`` or a mix): one parser for every option.

Each item's ends are checked against the bounds before its numbers are made, so what a typo like
``1-999999999999`` costs is one comparison, not a set of a trillion numbers.
"""

from __future__ import annotations

import re

from .errors import UsageError

# ASCII digits only: ``\d`` would also take '٣' or '²', which int() reads differently or not at all.
_ITEM = re.compile(r"\s*(-?[0-9]+)\s*(?:-\s*(-?[0-9]+)\s*)?", re.ASCII)
# Python refuses int() on strings of more than 4300 digits; any number this long is far out of every bound.
_MAX_DIGITS = 30


def parse_ranges(text: str, option: str, *, unit: str, low: int, high: int, bound: str, example: str) -> list[int]:
    """The sorted unique numbers in ``text``, each within ``low…high``, or a UsageError naming ``option``.

    ``unit`` names one number in messages ("DF", "fold"), ``bound`` says where ``high`` comes from
    ("the 96×112 crop"), and ``example`` shows valid input ("8, 1-13 or 1,2,4,8").
    """
    spans = []
    for part in str(text).split(","):
        match = _ITEM.fullmatch(part)
        if not match:
            raise UsageError(f"{option} {text}: expected {unit}s like {example}")
        first, last = match[1], match[2] or match[1]
        start, stop = _integer(first), _integer(last)
        if start > stop:
            raise UsageError(f"{option} {text}: range {part.strip()} runs backwards")
        if start < low:
            raise UsageError(f"{option} {text}: {unit} must be at least {low}, got {first}")
        if stop > high:
            raise UsageError(f"{option} {text}: {unit} {last} is larger than {bound} (at most {high})")
        spans.append((start, stop))
    return sorted({number for start, stop in spans for number in range(start, stop + 1)})


def _integer(digits: str) -> int:
    """``int(digits)``, with numbers too long for int() standing in as ±10**_MAX_DIGITS (beyond any bound)."""
    if len(digits.lstrip("-0")) <= _MAX_DIGITS:
        return int(digits)
    return -(10**_MAX_DIGITS) if digits.startswith("-") else 10**_MAX_DIGITS
