"""``--option name=value`` parsing for anything that declares keyword options with defaults."""

from __future__ import annotations

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
        default = spec.options[name]
        try:
            options[name] = _convert(text, default)
        except ValueError:
            raise UsageError(f"{flag} {item}: expected a {type(default).__name__}") from None
    return options


def _convert(text: str, default):
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    return type(default)(text) if default is not None else text


def stack_options(*decorators):
    """Several click decorators as one, so commands can share a group of options."""

    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply
