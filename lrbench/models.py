"""Building a registered backbone from the command line's --weights and --option values."""

from __future__ import annotations

import torch

from .errors import LrbenchError, UsageError
from .progress import stderr_console
from .specs import BackboneSpec


def parse_options(spec: BackboneSpec, items: tuple[str, ...] | list[str]) -> dict:
    """``name=value`` strings → keyword options, each converted to the type of the backbone's default."""
    options = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--option {item}: expected name=value")
        if name not in spec.options:
            available = ", ".join(f"{k} (default {v})" for k, v in spec.options.items()) or "none"
            raise UsageError(f"--option {name}: backbone {spec.name!r} has no such option; available: {available}")
        default = spec.options[name]
        try:
            options[name] = _convert(text, default)
        except ValueError:
            raise UsageError(f"--option {item}: expected a {type(default).__name__}") from None
    return options


def _convert(text: str, default):
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    return type(default)(text) if default is not None else text


def build_backbone(spec: BackboneSpec, weights: str | None, options: dict | None = None) -> torch.nn.Module:
    """The backbone's network in eval mode; plugin errors about weights become one-line usage errors."""
    if spec.needs_weights and not weights:
        raise UsageError(
            f"backbone {spec.name!r} needs --weights (a checkpoint file, or 'random' for an untrained network)"
        )
    try:
        model = spec.build(weights, **(options or {}))
    except LrbenchError:
        raise
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise UsageError(f"backbone {spec.name!r}: {exc}") from exc
    if weights == "random":
        stderr_console.print(
            f"[bold yellow]warning:[/] {spec.name} is untrained (--weights random): its numbers measure the "
            "architecture and pipeline, not a face recognition model"
        )
    return model.eval()
