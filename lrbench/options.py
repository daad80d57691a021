"""``--option name=value`` parsing for anything that declares keyword options with defaults."""

from __future__ import annotations

import math
import re

from .errors import UsageError


def parse_options(spec, items: tuple[str, ...] | list[str], flag: str = "--option") -> dict:
    """``name=value`` strings → keyword options of a backbone or degradation, typed like its defaults."""
    options = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"{flag} {item}: expected name=value")
        if name not in spec.options:
            available = ", ".join(f"{k} (default {v})" for k, v in spec.options.items()) or "none"
            raise UsageError(f"{flag} {name}: {spec.name!r} has no such option; available: {available}")
        if name in options:
            raise UsageError(f"{flag} {item}: {name} is already set to {options[name]!r}")
        default = spec.options[name]
        try:
            options[name] = _convert(text, default)
        except ValueError as exc:
            raise UsageError(f"{flag} {item}: expected {exc}") from None
    return options


# ASCII only: int() and float() also read '٣' and '1_000', and float() reads 'inf' and 'nan'.
_INT = re.compile(r"[+-]?[0-9]{1,18}", re.ASCII)  # 18 digits: beyond any option, within int64
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


def _convert(text: str, default):
    """``text`` as the type of ``default``; a ValueError says what was expected instead."""
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("true or false (also 1/0, yes/no, on/off)")
    if isinstance(default, int):
        if not _INT.fullmatch(text):
            raise ValueError("a whole number like 20")
        return int(text)
    if isinstance(default, float):
        value = float(text) if _FLOAT.fullmatch(text) else math.nan
        if not math.isfinite(value):
            raise ValueError("a finite number like 0.5 or 1e-3")
        return value
    if default is None or isinstance(default, str):
        return text
    try:
        return type(default)(text)
    except (TypeError, ValueError):
        raise ValueError(f"a {type(default).__name__}") from None


def stack_options(*decorators):
    """Several click decorators as one, so commands can share a group of options."""

    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply
